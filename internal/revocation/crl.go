package revocation

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/keyward/keyward/internal/ca"
	"github.com/keyward/keyward/internal/profile"
	"github.com/keyward/keyward/internal/store"
)

// CRLConfig says where CRLs are published and how often.
type CRLConfig struct {
	// BaseURL is the public listener's URL as certificates name it (default "http://127.0.0.1:8080"). The
	// base CRL's freshestCRL extension points to BaseURL/crl/<issuer>-delta.crl.
	BaseURL string
	// FullInterval is how often a complete CRL is issued (default 24h); its nextUpdate is twice that, so a
	// relying party that misses one publication still has a current CRL.
	FullInterval time.Duration
	// DeltaInterval is how often a delta CRL is issued when nothing changes (default 1h); revocations
	// trigger one at once. Its nextUpdate is twice the interval.
	DeltaInterval time.Duration
	// SpoolDir is where a CRL's entries are kept while it is built, once they pass a megabyte (default the
	// system's temporary directory, $TMPDIR). A CRL of ten million entries spools about 450 MB; the files are
	// removed from the directory as soon as they are created. Name a disk-backed directory: on a tmpfs the
	// spool would sit in memory.
	SpoolDir string
}

func (c *CRLConfig) defaults() {
	if c.BaseURL == "" {
		c.BaseURL = "http://127.0.0.1:8080"
	}
	c.BaseURL = strings.TrimRight(c.BaseURL, "/")
	if c.FullInterval <= 0 {
		c.FullInterval = 24 * time.Hour
	}
	if c.DeltaInterval <= 0 {
		c.DeltaInterval = time.Hour
	}
	if c.SpoolDir == "" {
		c.SpoolDir = os.TempDir()
	}
}

// CRLPath and DeltaCRLPath are the public listener paths of a CA's CRLs: the path profiles put in
// certificates ("/crl/{issuer}.crl", with {issuer} = profile.IssuerID of the CA certificate).
func CRLPath(caCert *x509.Certificate) string { return "/crl/" + profile.IssuerID(caCert) + ".crl" }

// DeltaCRLPath is the public path of a CA's delta CRL, which the base CRL's freshestCRL names.
func DeltaCRLPath(caCert *x509.Certificate) string {
	return "/crl/" + profile.IssuerID(caCert) + "-delta.crl"
}

// PublishCRLs issues a complete CRL for CA caID and, at the same time and with the same CRL number (RFC 5280
// 5.2.3: a complete and a delta CRL issued together share their number), an empty delta CRL referring to it,
// so that a delta is never served without its base. Both are stored in one transaction; a complete CRL larger
// than store.CRLChunkSize is stored in chunks before it. Its memory does not grow with the number of entries:
// they are read, encoded, signed and stored a part at a time (crlbuild.go). The row returned holds the DER
// only for a CRL stored whole; OpenCRL reads either kind.
func (s *Service) PublishCRLs(ctx context.Context, caID string, cfg CRLConfig) (*store.PublishedCRL, error) {
	cfg.defaults()
	iss, err := s.ca.StatusIssuer(ctx, caID)
	if err != nil {
		return nil, err
	}
	number, err := s.ra.NextCRLNumber(ctx, caID)
	if err != nil {
		return nil, err
	}
	head, err := s.rs.RevocationHead(ctx)
	if err != nil {
		return nil, err
	}
	now := s.now().Truncate(time.Second)
	start := time.Now()
	body, err := s.encodeRevoked(ctx, caID, now, cfg.SpoolDir)
	if err != nil {
		return nil, err
	}
	defer body.close()
	if iss.CA().Kind == store.CAKindRoot {
		// A root's CRL lists the CAs below it that it revoked, after its other entries.
		revoked, err := s.ra.RevokedChildren(ctx, caID)
		if err != nil {
			return nil, err
		}
		if err := body.appendEntries(now, cfg.SpoolDir, revoked); err != nil {
			return nil, err
		}
	}
	full, err := signCRL(iss, number, 0, now, now.Add(2*cfg.FullInterval), body.body(), cfg)
	if err != nil {
		return nil, err
	}
	var empty ca.CRLEntries
	delta, err := signCRL(iss, number, number, now, now.Add(2*cfg.DeltaInterval), empty.Body(), cfg)
	if err != nil {
		return nil, err
	}
	fullRow := &store.PublishedCRL{IssuerID: caID, Number: number, ThisUpdate: now, NextUpdate: now.Add(2 * cfg.FullInterval), MaxSeq: head, Entries: body.entries, CreatedAt: now}
	deltaRow := &store.PublishedCRL{IssuerID: caID, Number: number, Delta: true, BaseNumber: number, ThisUpdate: now, NextUpdate: now.Add(2 * cfg.DeltaInterval), MaxSeq: head, CreatedAt: now}
	if err := s.storeCRL(ctx, fullRow, full); err != nil {
		return nil, err
	}
	if err := s.storeCRL(ctx, deltaRow, delta); err != nil {
		return nil, err
	}
	if err := s.ra.RecordCRLs(ctx, fullRow, deltaRow); err != nil {
		return nil, err
	}
	s.pruneChunks(ctx, caID, false)
	s.log.InfoContext(ctx, "complete CRL published", "ca", caID, "number", number, "entries", fullRow.Entries, "bytes", fullRow.Size,
		"seconds", time.Since(start).Seconds())
	return fullRow, nil
}

// pruneChunks deletes the chunks of the CRLs that the one just recorded replaced. The CRL is published
// whatever happens here: a failure is logged, and the next publication prunes what is left.
func (s *Service) pruneChunks(ctx context.Context, caID string, delta bool) {
	if err := s.ra.PruneCRLChunks(ctx, caID, delta); err != nil {
		s.log.WarnContext(ctx, "pruning the chunks of replaced CRLs", "ca", caID, "delta", delta, "err", err)
	}
}

// storeCRL puts the signed crl in row: its DER if it fits in one chunk, else it stores its chunks now, for
// RecordCRLs to make visible with the row.
func (s *Service) storeCRL(ctx context.Context, row *store.PublishedCRL, crl *ca.SignedCRL) error {
	row.Size = crl.Size()
	if row.Size <= store.CRLChunkSize {
		der, err := crl.Bytes()
		row.DER = der
		return err
	}
	pr, pw := io.Pipe()
	go func() { _, err := crl.WriteTo(pw); pw.CloseWithError(err) }()
	n, err := s.ra.StoreCRLChunks(ctx, row.IssuerID, row.Delta, row.Number, pr)
	_ = pr.CloseWithError(errors.New("CRL chunks stored"))
	if err != nil {
		return err
	}
	if n != row.Size {
		return fmt.Errorf("CRL %d of %s: stored %d octets of %d", row.Number, row.IssuerID, n, row.Size)
	}
	return nil
}

// PublishDelta issues a delta CRL against the newest complete CRL of caID: every certificate whose
// revocation state changed after that CRL was built, revoked ones with their reason and released holds
// with removeFromCRL (RFC 5280 5.2.4, 5.3.1). Its CRL number is new; its base number is the complete CRL's.
func (s *Service) PublishDelta(ctx context.Context, caID string, cfg CRLConfig) (*store.PublishedCRL, error) {
	cfg.defaults()
	base, err := s.rs.LatestCRL(ctx, caID, false)
	if err != nil {
		return nil, fmt.Errorf("delta CRL of %s needs a complete CRL first: %w", caID, err)
	}
	iss, err := s.ca.StatusIssuer(ctx, caID)
	if err != nil {
		return nil, err
	}
	number, err := s.ra.NextCRLNumber(ctx, caID)
	if err != nil {
		return nil, err
	}
	head, err := s.rs.RevocationHead(ctx)
	if err != nil {
		return nil, err
	}
	now := s.now().Truncate(time.Second)
	body, err := encodeWalk(now, cfg.SpoolDir, func(add func(*store.RevocationEntry) error) error {
		return s.rs.WalkRevocationChanges(ctx, caID, base.MaxSeq, func(e *store.RevocationEntry) error {
			if e.NotAfter.Before(now) {
				return nil
			}
			if e.Status != store.CertStatusRevoked {
				// Released from hold after the base: RFC 5280 5.3.1 removeFromCRL, only in delta CRLs.
				e = &store.RevocationEntry{Serial: e.Serial, Reason: store.ReasonRemoveFromCRL, RevokedAt: &now}
			}
			return add(e)
		})
	})
	if err != nil {
		return nil, err
	}
	defer body.close()
	crl, err := signCRL(iss, number, base.Number, now, now.Add(2*cfg.DeltaInterval), body.body(), cfg)
	if err != nil {
		return nil, err
	}
	row := &store.PublishedCRL{IssuerID: caID, Number: number, Delta: true, BaseNumber: base.Number, ThisUpdate: now, NextUpdate: now.Add(2 * cfg.DeltaInterval),
		MaxSeq: head, Entries: body.entries, CreatedAt: now}
	if err := s.storeCRL(ctx, row, crl); err != nil {
		return nil, err
	}
	if err := s.ra.RecordCRLs(ctx, row); err != nil {
		return nil, err
	}
	if row.Chunked() {
		s.pruneChunks(ctx, caID, true)
	}
	return row, nil
}

// addCRLEntry adds the entry of a revoked certificate: its revocation date (now if the store has none), its
// reason and, if known, its invalidity date (RFC 5280 5.3.2: non-critical, GeneralizedTime).
func addCRLEntry(c *ca.CRLEntries, e *store.RevocationEntry, now time.Time) error {
	at := now
	if e.RevokedAt != nil {
		at = *e.RevokedAt
	}
	return c.Add(e.Serial, at, e.Reason, e.InvalidityDate)
}

// signCRL has CA iss sign the CRL of the entries in body. baseNumber 0 makes a complete CRL carrying
// freshestCRL; otherwise a delta CRL carrying the critical delta CRL indicator. Both carry the same issuing
// distribution point, as a delta and its base must (RFC 5280 5.2.4).
func signCRL(iss *ca.Issuer, number, baseNumber int64, thisUpdate, nextUpdate time.Time, body ca.CRLBody, cfg CRLConfig) (*ca.SignedCRL, error) {
	exts, err := crlExtensions(iss, baseNumber, cfg)
	if err != nil {
		return nil, err
	}
	// RFC 5280 5.1.2.5: conforming CRL issuers include nextUpdate.
	return iss.SignCRLBody(ca.CRLParams{Number: number, ThisUpdate: thisUpdate, NextUpdate: nextUpdate, Extensions: exts}, body)
}

// crlExtensions returns the DER Extensions of a CA's CRL that follow the AKI and CRL number.
func crlExtensions(iss *ca.Issuer, baseNumber int64, cfg CRLConfig) ([][]byte, error) {
	idpExt, err := ca.IssuingDistributionPoint(iss.CA().Kind == store.CAKindRoot)
	if err != nil {
		return nil, err
	}
	var ext []byte
	if baseNumber == 0 {
		// RFC 5280 5.2.6: freshestCRL, non-critical, in complete CRLs: where the delta CRLs are.
		fresh, err := distributionPoints(cfg.BaseURL + DeltaCRLPath(iss.Certificate()))
		if err != nil {
			return nil, err
		}
		ext, err = ca.ExtensionDER([]byte{0x55, 0x1d, 0x2e}, false, fresh)
		if err != nil {
			return nil, err
		}
	} else {
		// RFC 5280 5.2.4: the delta CRL indicator is critical; its value is the base CRL's number.
		var b cryptobyte.Builder
		b.AddASN1Int64(baseNumber)
		v, err := b.Bytes()
		if err != nil {
			return nil, err
		}
		if ext, err = ca.ExtensionDER([]byte{0x55, 0x1d, 0x1b}, true, v); err != nil {
			return nil, err
		}
	}
	return [][]byte{idpExt, ext}, nil
}

// distributionPoints encodes CRLDistributionPoints (RFC 5280 4.2.1.13, also the syntax of freshestCRL,
// 5.2.6) with one distribution point whose fullName is one URI.
func distributionPoints(uri string) ([]byte, error) {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // CRLDistributionPoints
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // DistributionPoint
			b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) { // distributionPoint [0]
				b.AddASN1(cbasn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) { // fullName [0]
					b.AddASN1(cbasn1.Tag(6).ContextSpecific(), func(b *cryptobyte.Builder) { // uniformResourceIdentifier [6]
						b.AddBytes([]byte(uri))
					})
				})
			})
		})
	})
	return b.Bytes()
}

// CRLPair is a consistent complete CRL and delta CRL of one CA.
type CRLPair struct {
	CA    *x509.Certificate
	Full  *store.PublishedCRL
	Delta *store.PublishedCRL // nil unless its base is Full
}

// CurrentCRLs returns the newest complete CRL of caID and the newest delta CRL whose base it is.
func (s *Service) CurrentCRLs(ctx context.Context, caID string) (*CRLPair, error) {
	row, err := s.rs.GetCA(ctx, caID)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(row.CertDER)
	if err != nil {
		return nil, err
	}
	full, err := s.rs.LatestCRL(ctx, caID, false)
	if err != nil {
		return nil, err
	}
	p := &CRLPair{CA: cert, Full: full}
	delta, err := s.rs.LatestCRL(ctx, caID, true)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	if delta != nil && delta.BaseNumber == full.Number {
		p.Delta = delta
	}
	return p, nil
}
