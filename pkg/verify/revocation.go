package verify

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/keyward/keyward/pkg/revocation/filter"
)

// oidNoRevAvail is id-ce-noRevAvail (RFC 9608 section 2): the CA publishes no revocation information for the
// certificate, which is short-lived.
var oidNoRevAvail = []int{2, 5, 29, 56}

// maxFetch bounds an OCSP response or a CRL read over the network.
const maxFetch = 16 << 20

// checkRevocation decides the revocation status of chain (verified, leaf first) and records it in res:
// the filter first (offline, and it also covers the CAs of the chain), then the leaf's OCSP responder and CRL
// when online. A source that answers "revoked" refuses at once; one that cannot answer passes the question to
// the next; when none answers, the policy decides.
func (v *Verifier) checkRevocation(ctx context.Context, chain []*x509.Certificate, now time.Time, res *Result) error {
	leaf := chain[0]
	for _, e := range leaf.Extensions {
		if e.Id.Equal(oidNoRevAvail) {
			res.Revocation = "none"
			return nil
		}
	}
	rv := v.o.Revocation
	var why []string
	if f := rv.Filter; f != nil {
		switch {
		case now.After(f.NextUpdate().Add(v.o.ClockSkew)):
			why = append(why, fmt.Sprintf("the revocation filter (v%d) is stale since %s", f.Version(), f.NextUpdate().UTC().Format(time.RFC3339)))
		default:
			if err := f.CheckChain(chain); err != nil {
				var re *filter.RevokedError
				c := leaf
				if errors.As(err, &re) && re.Certificate != nil {
					c = re.Certificate
				}
				return refuse(ErrRevoked, c, err, "listed by the revocation filter")
			}
			res.Revocation = "filter"
			return nil
		}
	}
	if rv.Online {
		issuer := chain[1]
		if len(leaf.OCSPServer) > 0 {
			revoked, err := v.ocsp(ctx, leaf, issuer, now)
			if err == nil {
				if revoked {
					return refuse(ErrRevoked, leaf, nil, "its OCSP responder %s answers revoked", leaf.OCSPServer[0])
				}
				res.Revocation = "ocsp"
				return nil
			}
			why = append(why, err.Error())
		}
		if len(leaf.CRLDistributionPoints) > 0 {
			revoked, err := v.crl(ctx, leaf, issuer, now)
			if err == nil {
				if revoked {
					return refuse(ErrRevoked, leaf, nil, "listed on its CRL %s", leaf.CRLDistributionPoints[0])
				}
				res.Revocation = "crl"
				return nil
			}
			why = append(why, err.Error())
		}
		if len(leaf.OCSPServer)+len(leaf.CRLDistributionPoints) == 0 {
			why = append(why, "the certificate names no OCSP responder or CRL")
		}
	}
	if len(why) == 0 {
		why = append(why, "no revocation source is configured (Revocation.Filter, Revocation.Online)")
	}
	reason := joinReasons(why)
	if rv.Policy == FailOpen {
		res.RevocationUnknown = reason
		return nil
	}
	return refuse(ErrRevocationUnknown, leaf, nil, "%s; the policy is fail-closed", reason)
}

func joinReasons(why []string) string {
	var b bytes.Buffer
	for i, w := range why {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(w)
	}
	return b.String()
}

// fetch GETs or POSTs url and returns the body of a 200 answer.
func (v *Verifier) fetch(ctx context.Context, method, url, contentType string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := v.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s %s: HTTP %d", method, url, resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxFetch+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxFetch {
		return nil, fmt.Errorf("%s %s: more than %d bytes", method, url, maxFetch)
	}
	return data, nil
}

// crl fetches the leaf's first http CRL distribution point and looks its serial up (RFC 5280 6.3): the CRL must
// be signed by the issuer, current at now (within the clock skew), and a complete CRL.
func (v *Verifier) crl(ctx context.Context, leaf, issuer *x509.Certificate, now time.Time) (bool, error) {
	var lastErr error
	for _, url := range leaf.CRLDistributionPoints {
		der, err := v.fetch(ctx, http.MethodGet, url, "", nil)
		if err != nil {
			lastErr = fmt.Errorf("CRL: %w", err)
			continue
		}
		revoked, err := CheckCRL(der, leaf, issuer, now, v.o.ClockSkew)
		if err != nil {
			lastErr = fmt.Errorf("CRL %s: %w", url, err)
			continue
		}
		return revoked, nil
	}
	return false, lastErr
}

// CheckCRL reports whether leaf is on the DER CRL der, after checking the CRL: it parses, issuer signed it,
// it is current at now (thisUpdate - skew <= now <= nextUpdate + skew), and it is not a delta CRL.
func CheckCRL(der []byte, leaf, issuer *x509.Certificate, now time.Time, skew time.Duration) (bool, error) {
	rl, err := x509.ParseRevocationList(der)
	if err != nil {
		return false, fmt.Errorf("parse: %w", err)
	}
	if err := rl.CheckSignatureFrom(issuer); err != nil {
		return false, fmt.Errorf("not signed by %s: %w", issuer.Subject, err)
	}
	for _, e := range rl.Extensions {
		if e.Id.Equal([]int{2, 5, 29, 27}) { // deltaCRLIndicator (RFC 5280 5.2.4): not a complete list
			return false, errors.New("is a delta CRL")
		}
	}
	if now.Add(skew).Before(rl.ThisUpdate) {
		return false, fmt.Errorf("issued in the future (%s)", rl.ThisUpdate.UTC().Format(time.RFC3339))
	}
	if rl.NextUpdate.IsZero() || now.After(rl.NextUpdate.Add(skew)) {
		return false, fmt.Errorf("stale since %s", rl.NextUpdate.UTC().Format(time.RFC3339))
	}
	for _, e := range rl.RevokedCertificateEntries {
		if e.SerialNumber != nil && e.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
			return true, nil
		}
	}
	return false, nil
}
