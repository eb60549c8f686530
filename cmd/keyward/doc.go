// Command keyward is Keyward's one binary: the server and every operator command. It is thin by design: all of
// it is internal/cli's, and it may import nothing else.
package main
