// Package cli implements the keyward command line: 'keyward <noun> <verb>'. Every command accepts --help,
// listings accept --json, and the exit codes are documented in ExitCodes.
//
// It is a face: it opens a data directory through internal/node, asks internal/ra for every change and maps
// errors to exit codes in one place (exitCode, on ra.KindOf). It may import every internal package below it.
// It must never decide, open a store transaction or sign: it parses flags, calls the RA, prints.
package cli
