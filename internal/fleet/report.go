package fleet

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// ReportKind is the kind of every fleet scan report: the top-level "kind" that 'keyward evidence' selects by.
const ReportKind = "fleet-scan"

// Finding kinds.
const (
	KindDuplicateKey  = "duplicate-key"  // one public key certified for two subjects, or held by two keystore keys
	KindSharedPrime   = "shared-prime"   // RSA moduli with a common prime: each is factored
	KindNonceReuse    = "nonce-reuse"    // one key's signatures over two messages with one nonce
	KindRepeatedNonce = "repeated-nonce" // one signature nonce in the CSRs of different keys
	KindWeakKey       = "weak-key"       // a key on a weak or unknown curve, too small, or not a valid key
)

// Report is the result of a scan: its JSON is what 'fleet scan --json' prints and SaveReport stores.
type Report struct {
	Kind        string    `json:"kind"` // ReportKind
	Env         string    `json:"env"`
	Product     string    `json:"product"` // "" for every product line of Env
	GeneratedAt time.Time `json:"generated_at"`
	Scanned     Counts    `json:"scanned"`
	BatchGCD    GCDStats  `json:"batch_gcd"`
	Findings    []Finding `json:"findings"`
	// Unreadable names the keys the scan could not read at all (a CA certificate that does not parse).
	Unreadable []string           `json:"unreadable,omitempty"`
	Revocation *RevocationSummary `json:"revocation,omitempty"` // set by Revoke
}

// Counts says what a scan looked at.
type Counts struct {
	Certificates  int `json:"certificates"`   // issued here, in scope
	Imported      int `json:"imported"`       // imported for the environment
	CAKeys        int `json:"ca_keys"`        // CA certificates of the environment
	FirmwareKeys  int `json:"firmware_keys"`  // firmware roots and signing keys with an X.509 key
	CSRSignatures int `json:"csr_signatures"` // kept CSR signatures that share R with another (the rest need no look)
	RSAModuli     int `json:"rsa_moduli"`     // distinct RSA moduli given to batch GCD
}

// GCDStats reports the batch GCD run.
type GCDStats struct {
	Moduli  int     `json:"moduli"`
	Seconds float64 `json:"seconds"`
}

// Finding is one problem: what it is, who holds the key, and what to do.
type Finding struct {
	Kind    string `json:"kind"`
	Summary string `json:"summary"`
	// PrivateKeyRecovered is true only when the scan solved for a private key and confirmed it (d·G is the
	// public key, or the found prime divides the modulus); the key itself is never kept or shown.
	PrivateKeyRecovered bool     `json:"private_key_recovered"`
	Confirmation        string   `json:"confirmation,omitempty"`
	Rule                string   `json:"rule,omitempty"` // weak-key: hygiene.Weak*
	Holders             []Holder `json:"holders"`
	Recommendation      string   `json:"recommendation"`
}

// Holder kinds.
const (
	HolderCertificate  = "certificate"          // issued by Keyward
	HolderImported     = "imported"             // issued elsewhere, imported for the scan
	HolderCA           = "ca"                   // a CA's key
	HolderFirmwareKey  = "firmware-signing-key" // a firmware-signing key
	HolderFirmwareRoot = "firmware-root"        // an environment's firmware trust root
)

// Holder is one holder of a key a finding is about: a certificate (and its device), or a key of Keyward's own.
type Holder struct {
	Kind       string `json:"kind"`
	Serial     string `json:"serial,omitempty"`
	Issuer     string `json:"issuer,omitempty"`  // the issuing CA's id, or an imported certificate's issuer DN
	Subject    string `json:"subject,omitempty"` // the device, by its certificate's subject
	Status     string `json:"status,omitempty"`  // certificates issued here: valid, revoked, superseded
	Source     string `json:"source,omitempty"`  // imported: file#position
	KeyURI     string `json:"key_uri,omitempty"` // Keyward's own keys
	SPKISHA256 string `json:"spki_sha256"`
	Algorithm  string `json:"algorithm"`
	// InScope: a certificate of the scanned environment and product line (only those are revoked).
	InScope bool `json:"in_scope"`
	// Revocation is set by Revoke: "revoked (keyCompromise)", "already revoked", "not revoked: <why>".
	Revocation string `json:"revocation,omitempty"`
}

// RevocationSummary counts what Revoke did.
type RevocationSummary struct {
	Revoked         int `json:"revoked"`
	AlreadyRevoked  int `json:"already_revoked"`
	ImportedOnly    int `json:"imported_not_revoked"` // imported certificates (each once): reported, never revoked here
	OtherEnvOrOwned int `json:"out_of_scope"`         // certificates of another environment or product line, and Keyward's own keys (each once)
	Failed          int `json:"failed"`
}

// SaveReport writes rep as JSON to <dataDir>/reports/fleet-scan/<generated_at as YYYYMMDDTHHMMSSZ>-<env>.json,
// mode 0600, replacing the file atomically, and returns its path. 'keyward evidence' picks the newest file of
// that directory.
func SaveReport(dataDir string, rep *Report) (string, error) {
	dir := filepath.Join(dataDir, "reports", ReportKind)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("save fleet scan report: %w", err)
	}
	path := filepath.Join(dir, rep.GeneratedAt.UTC().Format("20060102T150405Z")+"-"+rep.Env+".json")
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return "", fmt.Errorf("save fleet scan report: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".fleet-scan-*")
	if err != nil {
		return "", fmt.Errorf("save fleet scan report: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		_ = tmp.Close()
		return "", fmt.Errorf("save fleet scan report %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return "", fmt.Errorf("save fleet scan report %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("save fleet scan report %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("save fleet scan report %s: %w", path, err)
	}
	return path, nil
}
