package api

import (
	"encoding/hex"
	"encoding/pem"
	"time"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/profile"
	"github.com/keyward/keyward/internal/ra"
	"github.com/keyward/keyward/internal/store"
	"github.com/keyward/keyward/pkg/auditproof"
)

// CA is a certificate authority.
type CA struct {
	ID          string    `json:"id"`
	Kind        string    `json:"kind"`
	Environment string    `json:"environment"`
	ProductLine string    `json:"product_line,omitempty"`
	Parent      string    `json:"parent,omitempty"`
	KeyURI      string    `json:"key_uri"` // "offline" for a root whose key this node never holds
	Subject     string    `json:"subject"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	Status      string    `json:"status"`
	Generation  int       `json:"generation"`
	// RevokedAt and RevocationReason are set for a CA its parent revoked.
	RevokedAt        *time.Time `json:"revoked_at,omitempty"`
	RevocationReason string     `json:"revocation_reason,omitempty"`
	PEM              string     `json:"pem,omitempty"`
}

// NewCA returns the JSON form of ca, with its certificate as PEM if withPEM.
func NewCA(ca *store.CA, withPEM bool) CA {
	key := ca.KeyURI
	if key == "" {
		key = "offline"
	}
	v := CA{ID: ca.ID, Kind: ca.Kind, Environment: ca.Environment, ProductLine: ca.ProductLine, Parent: ca.ParentID, KeyURI: key, Subject: ca.Subject,
		NotBefore: ca.NotBefore, NotAfter: ca.NotAfter, Status: ca.Status, Generation: ca.Generation, RevokedAt: ca.RevokedAt}
	if ca.RevokedAt != nil {
		v.RevocationReason = store.ReasonName(ca.RevocationReason)
	}
	if withPEM && len(ca.CertDER) > 0 {
		v.PEM = certPEM(ca.CertDER)
	}
	return v
}

// Certificate is an issued certificate.
type Certificate struct {
	Serial         string     `json:"serial"`
	Issuer         string     `json:"issuer"`
	Profile        string     `json:"profile"`
	ProfileVersion int        `json:"profile_version"`
	Subject        string     `json:"subject"`
	NotBefore      time.Time  `json:"not_before"`
	NotAfter       time.Time  `json:"not_after"`
	Status         string     `json:"status"`
	SPKISHA256     string     `json:"spki_sha256"`
	RevokedAt      *time.Time `json:"revoked_at,omitempty"`
	DERSize        int        `json:"der_size"`
	PEM            string     `json:"pem,omitempty"`
}

// NewCertificate returns the JSON form of c, with its PEM if withPEM.
func NewCertificate(c *store.Certificate, withPEM bool) Certificate {
	v := Certificate{c.Serial, c.IssuerID, c.Profile, c.ProfileVersion, c.Subject, c.NotBefore, c.NotAfter, c.Status,
		hex.EncodeToString(c.SPKISHA256), c.RevokedAt, len(c.DER), ""}
	if withPEM {
		v.PEM = certPEM(c.DER)
	}
	return v
}

// Key is an entry of the key glossary.
type Key struct {
	URI            string     `json:"uri"`
	Purpose        string     `json:"purpose"`
	Algorithm      string     `json:"algorithm"`
	Location       string     `json:"location"`
	State          string     `json:"state"`
	Owner          string     `json:"owner"`
	SPKISHA256     string     `json:"spki_sha256"`
	CreatedAt      time.Time  `json:"created_at"`
	StateChangedAt time.Time  `json:"state_changed_at"`
	DestroyedAt    *time.Time `json:"destroyed_at,omitempty"`
}

// NewKey returns the JSON form of k.
func NewKey(k *store.Key) Key {
	return Key{k.URI, k.Purpose, k.Algorithm, k.Location, k.State, k.Owner, hex.EncodeToString(k.SPKISHA256), k.CreatedAt, k.StateChangedAt, k.DestroyedAt}
}

// Event is an audit event with its chain hashes in hex.
type Event struct {
	Seq      int64             `json:"seq"`
	Time     time.Time         `json:"time"`
	Actor    string            `json:"actor"`
	Action   string            `json:"action"`
	Subject  string            `json:"subject"`
	Outcome  string            `json:"outcome"`
	Details  map[string]string `json:"details,omitempty"`
	PrevHash string            `json:"prev_hash"`
	Hash     string            `json:"hash"`
}

// NewEvent returns the JSON form of e.
func NewEvent(e *audit.Event) Event {
	return Event{e.Seq, e.Time, e.Actor, e.Action, e.Subject, e.Outcome, e.Details, hex.EncodeToString(e.PrevHash), hex.EncodeToString(e.Hash)}
}

func certPEM(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// Revocation is a certificate's revocation state after a revocation or a release from hold.
type Revocation struct {
	Serial         string     `json:"serial"`
	Issuer         string     `json:"issuer"`
	Status         string     `json:"status"`
	Reason         string     `json:"reason,omitempty"`
	RevokedAt      *time.Time `json:"revoked_at,omitempty"`
	InvalidityDate *time.Time `json:"invalidity_date,omitempty"`
}

// NewRevocation returns the JSON form of e.
func NewRevocation(e *store.RevocationEntry) Revocation {
	v := Revocation{Serial: e.Serial, Issuer: e.IssuerID, Status: e.Status, RevokedAt: e.RevokedAt, InvalidityDate: e.InvalidityDate}
	if e.Status == store.CertStatusRevoked {
		v.Reason = store.ReasonName(e.Reason)
	}
	return v
}

// Profile is a certificate profile, with the names and units of the profile's YAML file.
type Profile struct {
	Name                   string         `json:"name"`
	Version                int            `json:"version"`
	Description            string         `json:"description,omitempty"`
	Role                   string         `json:"role,omitempty"`
	KeyAlgorithms          []string       `json:"key_algorithms"`
	Validity               string         `json:"validity"`
	Backdate               string         `json:"backdate,omitempty"`
	Subject                ProfileSubject `json:"subject"`
	SANs                   ProfileSANs    `json:"sans"`
	KeyUsage               []string       `json:"key_usage"`
	ExtKeyUsage            []string       `json:"ext_key_usage"`
	IncludeSKI             bool           `json:"include_ski"`
	CRLDistributionPoints  []string       `json:"crl_distribution_points,omitempty"`
	OCSPServers            []string       `json:"ocsp_servers,omitempty"`
	IssuingCertificateURLs []string       `json:"issuing_certificate_urls,omitempty"`
	MaxDERSize             int            `json:"max_der_size,omitempty"`
	AllowedPrincipals      []string       `json:"allowed_principals"`
	RenewalWindow          float64        `json:"renewal_window"`
	ShortLived             bool           `json:"short_lived,omitempty"`
}

// ProfileSubject is a profile's subject rule.
type ProfileSubject struct {
	CommonName         string `json:"common_name,omitempty"` // the anchored pattern
	CommonNameRequired bool   `json:"common_name_required,omitempty"`
	Organization       string `json:"organization,omitempty"`
	OrganizationalUnit string `json:"organizational_unit,omitempty"`
}

// ProfileSANs is a profile's subject alternative name rule: a kind absent allows none.
type ProfileSANs struct {
	DNS *ProfileNames `json:"dns,omitempty"`
	URI *ProfileNames `json:"uri,omitempty"`
	IP  bool          `json:"ip,omitempty"`
}

// ProfileNames bounds one kind of SAN.
type ProfileNames struct {
	Regex string `json:"regex"`
	Max   int    `json:"max"`
}

// NewProfile returns the JSON form of p.
func NewProfile(p *profile.Profile) Profile {
	v := Profile{Name: p.Name, Version: p.Version, Description: p.Description, Role: string(p.Role), Validity: profile.FormatDuration(p.Validity),
		KeyUsage: profile.KeyUsageNames(p.KeyUsage), ExtKeyUsage: profile.ExtKeyUsageNames(p.ExtKeyUsage), IncludeSKI: p.IncludeSKI,
		CRLDistributionPoints: p.CRLDistributionPoints, OCSPServers: p.OCSPServers, IssuingCertificateURLs: p.IssuingCertificateURLs,
		MaxDERSize: p.MaxDERSize, AllowedPrincipals: p.AllowedPrincipals, RenewalWindow: p.RenewalWindow, ShortLived: p.ShortLived,
		Subject: ProfileSubject{CommonNameRequired: p.Subject.CommonNameRequired, Organization: p.Subject.Organization, OrganizationalUnit: p.Subject.OrganizationalUnit},
		SANs:    ProfileSANs{IP: p.SANs.IP}}
	if p.Backdate > 0 {
		v.Backdate = profile.FormatDuration(p.Backdate)
	}
	for _, a := range p.KeyAlgorithms {
		v.KeyAlgorithms = append(v.KeyAlgorithms, string(a))
	}
	if p.Subject.CommonName != nil {
		v.Subject.CommonName = p.Subject.CommonName.String()
	}
	names := func(r profile.NameRule) *ProfileNames {
		if r.Pattern == nil || r.Max == 0 {
			return nil
		}
		return &ProfileNames{Regex: r.Pattern.String(), Max: r.Max}
	}
	v.SANs.DNS, v.SANs.URI = names(p.SANs.DNS), names(p.SANs.URI)
	return v
}

// Station is a factory station.
type Station struct {
	ID           string    `json:"id"`
	Environment  string    `json:"environment"`
	Site         string    `json:"site"`
	ProductLines []string  `json:"product_lines"`
	Certificate  string    `json:"certificate"`
	Quota        int64     `json:"quota"`
	Used         int64     `json:"used"`
	ValidFrom    time.Time `json:"valid_from"`
	ValidUntil   time.Time `json:"valid_until"`
	State        string    `json:"state"`
}

// NewStation returns the JSON form of s.
func NewStation(s *store.Station) Station {
	return Station{s.ID, s.Environment, s.Site, s.ProductLines, s.CertSerial, s.Quota, s.Used, s.ValidFrom, s.ValidUntil, s.State}
}

// Token is an operator token as listings show it: never the token, nor its hash. Expires and LastUsed are null
// for a token that never expires or was never used; State is active, revoked or expired at the listing's time.
type Token struct {
	ID               string     `json:"id"`
	Name             string     `json:"name"`
	Role             string     `json:"role"`
	CreatedAt        time.Time  `json:"created_at"`
	LastUsedAt       *time.Time `json:"last_used_at"`
	ExpiresAt        *time.Time `json:"expires_at"`
	State            string     `json:"state"`
	RevokedAt        *time.Time `json:"revoked_at,omitempty"`
	RevocationReason string     `json:"revocation_reason,omitempty"`
}

// NewToken returns the JSON form of t, whose state at the listing's time is state.
func NewToken(t *store.Token, state string) Token {
	return Token{t.ID, t.Name, t.Role, t.CreatedAt, t.LastUsedAt, t.ExpiresAt, state, t.RevokedAt, t.RevocationReason}
}

// Device is an entry of the device registry.
type Device struct {
	Environment        string    `json:"environment"`
	ProductLine        string    `json:"product_line"`
	Serial             string    `json:"serial"`
	State              string    `json:"state"`
	Station            string    `json:"station"`
	Site               string    `json:"site"`
	EnrolledAt         time.Time `json:"enrolled_at"`
	Certificate        string    `json:"certificate"`
	ReprovisionAllowed bool      `json:"reprovision_allowed"`
	ForceRenew         bool      `json:"force_renew"`
	HardwareSerial     string    `json:"hardware_serial,omitempty"`
}

// NewDevice returns the JSON form of d.
func NewDevice(d *store.Device) Device {
	return Device{d.Environment, d.ProductLine, d.Serial, d.State, d.StationID, d.Site, d.EnrolledAt, d.CertSerial, d.ReprovisionAllowed, d.ForceRenew, d.HardwareSerial}
}

// FirmwareRelease is a firmware release with the release signers who approved it, in the order they did.
type FirmwareRelease struct {
	ID            string     `json:"id"`
	Environment   string     `json:"environment"`
	ProductLine   string     `json:"product_line"`
	Version       string     `json:"version"`
	Sequence      int64      `json:"sequence"`
	ImageSHA256   string     `json:"image_sha256"`
	ImageSize     int64      `json:"image_size"`
	MinBootloader string     `json:"min_bootloader,omitempty"`
	Threshold     int        `json:"threshold"`
	Hybrid        bool       `json:"hybrid"`
	Status        string     `json:"status"`
	Approvers     []string   `json:"approvers"`
	CreatedAt     time.Time  `json:"created_at"`
	SignedAt      *time.Time `json:"signed_at,omitempty"`
}

// NewFirmwareRelease returns the JSON form of r and its approvals.
func NewFirmwareRelease(r *store.FirmwareRelease, approvals []*store.FirmwareApproval) FirmwareRelease {
	v := FirmwareRelease{ID: r.ID, Environment: r.Environment, ProductLine: r.ProductLine, Version: r.Version, Sequence: r.Sequence,
		ImageSHA256: hex.EncodeToString(r.ImageSHA256), ImageSize: r.ImageSize, MinBootloader: r.MinBootloader, Threshold: r.Threshold,
		Hybrid: r.Hybrid, Status: r.Status, Approvers: make([]string, 0, len(approvals)), CreatedAt: r.CreatedAt, SignedAt: r.SignedAt}
	for _, a := range approvals {
		v.Approvers = append(v.Approvers, a.Signer)
	}
	return v
}

// FirmwareKey is a firmware-signing key of one environment.
type FirmwareKey struct {
	KID         string    `json:"kid"`
	Environment string    `json:"environment"`
	Algorithm   string    `json:"algorithm"`
	URI         string    `json:"uri"`
	RootVersion int64     `json:"root_version"`
	Status      string    `json:"status"`
	CreatedAt   time.Time `json:"created_at"`
}

// NewFirmwareKey returns the JSON form of k.
func NewFirmwareKey(k *store.FirmwareSigningKey) FirmwareKey {
	return FirmwareKey{hex.EncodeToString(k.KID), k.Environment, k.Algorithm, k.KeyURI, k.RootVersion, k.Status, k.CreatedAt}
}

// FirmwareTrust is one version of an environment's firmware trust: its root keys and how many signing keys it
// revokes.
type FirmwareTrust struct {
	Environment string    `json:"environment"`
	Version     int64     `json:"version"`
	RootKey     string    `json:"root_key"`
	PQRootKey   string    `json:"pq_root_key"`
	RevokedKeys int       `json:"revoked_keys"`
	CreatedAt   time.Time `json:"created_at"`
}

// NewFirmwareTrust returns the JSON form of fr.
func NewFirmwareTrust(fr *store.FirmwareRoot) FirmwareTrust {
	return FirmwareTrust{fr.Environment, fr.Version, fr.KeyURI, fr.PQKeyURI, len(fr.Revoked), fr.CreatedAt}
}

// History is the forensic record of a device ('keyward device history', GET .../history): its registry entry,
// every audit event about it, its certificates and keys with the events that began and ended each, and what it
// held at the instant asked for.
type History struct {
	Device       Device               `json:"device"`
	Events       []Event              `json:"events"`
	Certificates []HistoryCertificate `json:"certificates"`
	Keys         []HistoryKey         `json:"keys"`
	At           *HistoryAt           `json:"at,omitempty"`
	// Proofs are the inclusion proofs of Events, in their order, when asked for ('keyward audit check-proof').
	Proofs []*auditproof.InclusionProof `json:"proofs,omitempty"`
}

// HistoryCertificate is one certificate of a device over time. Sequence numbers name audit events.
type HistoryCertificate struct {
	Serial           string     `json:"serial"`
	Issuer           string     `json:"issuer"`
	NotBefore        time.Time  `json:"not_before"`
	NotAfter         time.Time  `json:"not_after"`
	SPKI             string     `json:"spki_sha256"`
	IssuedEvent      int64      `json:"issued_event"`
	IssuedAt         time.Time  `json:"issued_at"`
	EndedEvent       int64      `json:"ended_event,omitempty"`
	EndedAt          *time.Time `json:"ended_at,omitempty"`
	EndedBy          string     `json:"ended_by,omitempty"`
	RevokedEvent     int64      `json:"revoked_event,omitempty"`
	RevokedAt        *time.Time `json:"revoked_at,omitempty"`
	RevocationReason string     `json:"revocation_reason,omitempty"`
}

// HistoryKey is one key of a device over time.
type HistoryKey struct {
	URI        string     `json:"uri"`
	SPKI       string     `json:"spki_sha256"`
	SinceEvent int64      `json:"since_event"`
	Since      time.Time  `json:"since"`
	UntilEvent int64      `json:"until_event,omitempty"`
	Until      *time.Time `json:"until,omitempty"`
	EndedBy    string     `json:"ended_by,omitempty"`
}

// HistoryAt is what a device held at an instant.
type HistoryAt struct {
	Time         time.Time       `json:"time"`
	AsOfEvent    int64           `json:"as_of_event"`
	State        string          `json:"state"`
	Certificates []HistoryCertAt `json:"certificates"`
	Keys         []HistoryKeyAt  `json:"keys"`
}

// HistoryCertAt is a certificate a device had by an instant: held, and valid (held, in its validity period,
// unrevoked) then.
type HistoryCertAt struct {
	Serial           string    `json:"serial"`
	Issuer           string    `json:"issuer"`
	NotBefore        time.Time `json:"not_before"`
	NotAfter         time.Time `json:"not_after"`
	Held             bool      `json:"held"`
	Valid            bool      `json:"valid"`
	Revoked          bool      `json:"revoked"`
	RevocationReason string    `json:"revocation_reason,omitempty"`
}

// HistoryKeyAt is a key a device had by an instant, and whether it held it then.
type HistoryKeyAt struct {
	URI  string `json:"uri"`
	SPKI string `json:"spki_sha256"`
	Held bool   `json:"held"`
}

// NewHistory returns the JSON form of h.
func NewHistory(h *ra.History) History {
	out := History{Device: NewDevice(h.Device), Events: make([]Event, 0, len(h.Events)), Certificates: make([]HistoryCertificate, 0, len(h.Certificates)),
		Keys: make([]HistoryKey, 0, len(h.Keys))}
	for _, e := range h.Events {
		out.Events = append(out.Events, NewEvent(e))
	}
	for _, c := range h.Certificates {
		cert := c.Certificate
		out.Certificates = append(out.Certificates, HistoryCertificate{Serial: cert.Serial, Issuer: cert.IssuerID, NotBefore: cert.NotBefore, NotAfter: cert.NotAfter,
			SPKI: hex.EncodeToString(cert.SPKISHA256), IssuedEvent: c.IssuedSeq, IssuedAt: c.IssuedAt, EndedEvent: c.EndedSeq, EndedAt: c.EndedAt, EndedBy: c.EndedBy,
			RevokedEvent: c.RevokedSeq, RevokedAt: c.RevokedAt, RevocationReason: c.RevocationReason})
	}
	for _, k := range h.Keys {
		out.Keys = append(out.Keys, HistoryKey{URI: k.URI, SPKI: hex.EncodeToString(k.SPKISHA256), SinceEvent: k.SinceSeq, Since: k.Since,
			UntilEvent: k.UntilSeq, Until: k.Until, EndedBy: k.EndedBy})
	}
	if a := h.At; a != nil {
		at := &HistoryAt{Time: a.At, AsOfEvent: a.AsOfSeq, State: a.State, Certificates: make([]HistoryCertAt, 0, len(a.Certificates)), Keys: make([]HistoryKeyAt, 0, len(a.Keys))}
		for _, c := range a.Certificates {
			at.Certificates = append(at.Certificates, HistoryCertAt{c.Serial, c.Issuer, c.NotBefore, c.NotAfter, c.Held, c.Valid, c.Revoked, c.RevocationReason})
		}
		for _, k := range a.Keys {
			at.Keys = append(at.Keys, HistoryKeyAt{k.URI, hex.EncodeToString(k.SPKISHA256), k.Held})
		}
		out.At = at
	}
	return out
}
