// Package hygiene finds what a weak or broken random number generator leaves behind in a fleet's keys and
// signatures: RSA moduli sharing a prime (batch GCD).
package hygiene
