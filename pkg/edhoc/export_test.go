package edhoc

import "crypto/ecdh"

// Test hooks: RFC 9529 fixes the ephemeral keys and the Responder's connection identifier.

func (i *Initiator) SetEphemeral(k *ecdh.PrivateKey) { i.x = k }

func (r *Responder) SetNext(y *ecdh.PrivateKey, cR []byte) { r.nextY, r.nextCR = y, cR }

var ParseMessage1ForTest = func(b []byte) error { _, err := parseMessage1(b); return err }
var ParsePlaintext2ForTest = func(b []byte) error { _, err := parsePlaintext2(b); return err }
var ParsePlaintext3ForTest = func(b []byte) error { _, err := parsePlaintext3(b); return err }
var ParseMessage2ForTest = func(b []byte) error { _, _, err := parseMessage2(b, 32); return err }
var ParseIDCredForTest = func(b []byte) error { _, err := parseIDCred(b); return err }

var PublicKeyForTest = publicKey
