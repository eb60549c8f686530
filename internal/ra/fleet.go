package ra

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/store"
)

// ImportedCert is one certificate issued by another system, as read from a file.
type ImportedCert struct {
	Source string // file name and position in it, for messages and the record: "legacy.pem#3"
	DER    []byte
}

// ImportCertsRequest imports certificates issued elsewhere into an environment's fleet scans.
type ImportCertsRequest struct {
	Environment string
	ProductLine string // optional: the product line the certificates belong to
	Certs       []ImportedCert
}

// ImportCertsResult says what an import stored.
type ImportCertsResult struct {
	Imported int `json:"imported"`
	// Already counts certificates imported for the environment before (the same DER), which are left as they are.
	Already int `json:"already_imported"`
}

// importers may add certificates to the fleet scan: those who may revoke what the scan finds.
var importers = []string{RoleAdmin, RoleCAOfficer}

// ImportCertificates stores certificates issued by other systems so that the fleet key-hygiene scan of the
// environment looks at their keys too. They are never trusted, served, revoked or counted as issued: they go to
// a table of their own. Every certificate must parse (the caller names and skips malformed ones first); all are
// stored in one transaction with one audit event, or none.
func (r *RA) ImportCertificates(ctx context.Context, p Principal, req ImportCertsRequest) (*ImportCertsResult, error) {
	subject := req.Environment
	if req.ProductLine != "" {
		subject += "/" + req.ProductLine
	}
	if err := r.authorize(ctx, p, audit.ActionFleetImport, subject, "import certificates into the fleet scan", importers...); err != nil {
		return nil, err
	}
	h := r.Hierarchy()
	env := h.Environments[req.Environment]
	if env == nil {
		return nil, FieldErrorf(KindBadRequest, "environment", "unknown environment %q (configured: %s)", req.Environment, strings.Join(h.EnvironmentNames(), ", "))
	}
	if req.ProductLine != "" && env.ProductLines[req.ProductLine] == nil {
		return nil, FieldErrorf(KindBadRequest, "product_line", "unknown product line %q in environment %q (configured: %s)", req.ProductLine, req.Environment, strings.Join(h.ProductLineNames(req.Environment), ", "))
	}
	if len(req.Certs) == 0 {
		return nil, errorf(KindBadRequest, "no certificates to import: name at least one file holding a PEM or DER certificate")
	}
	now := r.now()
	rows := make([]*store.ImportedCertificate, 0, len(req.Certs))
	digest := sha256.New()
	var files []string
	for _, c := range req.Certs {
		cert, err := x509.ParseCertificate(c.DER)
		if err != nil {
			return nil, errorf(KindBadRequest, "certificate %s does not parse (RFC 5280 4.1): %v", c.Source, err)
		}
		der := sha256.Sum256(cert.Raw)
		spki := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
		digest.Write(der[:])
		rows = append(rows, &store.ImportedCertificate{Environment: req.Environment, ProductLine: req.ProductLine, DERSHA256: der[:],
			SPKISHA256: spki[:], Subject: cert.Subject.String(), Serial: serialText(cert), Issuer: cert.Issuer.String(),
			NotAfter: cert.NotAfter.UTC(), Source: c.Source, DER: cert.Raw, ImportedAt: now})
		file, _, _ := strings.Cut(c.Source, "#")
		if !slices.Contains(files, file) {
			files = append(files, file)
		}
	}
	res := &ImportCertsResult{}
	err := r.tx(ctx, func(tx store.Tx) error {
		*res = ImportCertsResult{}
		for _, row := range rows {
			switch err := tx.InsertImportedCertificate(ctx, row); {
			case errors.Is(err, store.ErrExists):
				res.Already++
			case err != nil:
				return err
			default:
				res.Imported++
			}
		}
		return r.success(ctx, tx, p, audit.ActionFleetImport, subject, now, map[string]string{
			"environment": req.Environment, "product_line": req.ProductLine, "imported": strconv.Itoa(res.Imported),
			"already_imported": strconv.Itoa(res.Already), "files": strings.Join(files, ","),
			// Commits to exactly which certificates were offered: SHA-256 over their DER hashes in order.
			"der_sha256s_sha256": hex.EncodeToString(digest.Sum(nil)),
		})
	})
	if err != nil {
		return nil, wrap(KindUnavailable, fmt.Errorf("import certificates into %s: %w", subject, err))
	}
	return res, nil
}

// serialText writes a certificate's serial as the store writes serials: lower-case hex, no leading zeros; a
// negative serial (which RFC 5280 4.1.2.2 forbids, and other systems issued) keeps its sign.
func serialText(c *x509.Certificate) string {
	if c.SerialNumber == nil {
		return ""
	}
	return c.SerialNumber.Text(16)
}
