// Package goodkey decides whether a public key is of acceptable quality before Keyward certifies it, in the
// manner of Boulder's goodkey: weak curves, short or malformed RSA moduli, points off the curve and
// small-order Ed25519 points are refused. It knows nothing of profiles (which narrow the algorithms further)
// or of storage (which refuses a key already certified for another device, by SPKIHash).
//
// It may import only the standard library. It must never store or sign.
package goodkey
