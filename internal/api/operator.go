package api

import "time"

// StationCredentials is what POST /api/v1/stations answers, and what 'keyward station add' writes to its
// directory: the station's record, its certificate chain (the station certificate, then the station CA), its
// private key (PKCS #8; Keyward keeps only the public key, so this is the one copy) and the anchor that
// validates the Keyward server's TLS certificate.
type StationCredentials struct {
	Station        Station `json:"station"`
	CertificatePEM string  `json:"certificate_pem"`
	KeyPEM         string  `json:"key_pem"`
	TrustPEM       string  `json:"trust_pem"`
}

// NewTokenSecret is what POST /api/v1/tokens answers: the new operator token, shown this once (the store keeps
// only its hash), and when it expires (null: never).
type NewTokenSecret struct {
	Token     string     `json:"token"`
	Name      string     `json:"name"`
	Role      string     `json:"role"`
	ExpiresAt *time.Time `json:"expires_at"`
}
