package evidence

import (
	"strings"

	"github.com/keyward/keyward/internal/profile"
)

// RevocationClass is how revocation reaches the relying parties of one device class: the certificates of one
// profile, as the profile's own fields decide it.
type RevocationClass struct {
	Profile      string   `json:"profile"`
	Version      int      `json:"version"`
	Role         string   `json:"role"`
	ProductLines []string `json:"product_lines"`
	Validity     string   `json:"validity"`
	// Strategy names the mechanisms, in the order a relying party should use them.
	Strategy              []string `json:"strategy"`
	CRLDistributionPoints []string `json:"crl_distribution_points"`
	OCSPServers           []string `json:"ocsp_servers"`
	// Rationale says why, in the reviewer's terms.
	Rationale string `json:"rationale"`
}

// Strategy names.
const (
	StrategyShortLived = "short-lived"
	StrategyCRL        = "crl"
	StrategyOCSP       = "ocsp"
	StrategyFilter     = "filter"
)

// revocationClasses derives the strategy of every in-scope profile.
func (in *Input) revocationClasses() []RevocationClass {
	names, used := in.profiles()
	out := make([]RevocationClass, 0, len(names))
	for _, n := range names {
		p := in.Profiles[n]
		c := RevocationClass{Profile: p.Name, Version: p.Version, Role: string(p.Role), ProductLines: used[n], Validity: profile.FormatDuration(p.Validity),
			CRLDistributionPoints: nonNil(p.CRLDistributionPoints), OCSPServers: nonNil(p.OCSPServers)}
		switch {
		case p.ShortLived:
			c.Strategy = []string{StrategyShortLived}
			c.Rationale = "Short-lived certificates (at most 7 days, CA/B BR 1.6.1) carry the RFC 9608 noRevAvail extension and no revocation pointer: " +
				"revocation is to stop renewing, and a compromise lasts at most the validity (" + c.Validity + ")."
		default:
			if len(p.OCSPServers) > 0 {
				c.Strategy = append(c.Strategy, StrategyOCSP)
			}
			if len(p.CRLDistributionPoints) > 0 {
				c.Strategy = append(c.Strategy, StrategyCRL)
			}
			c.Strategy = append(c.Strategy, StrategyFilter)
			if len(p.OCSPServers)+len(p.CRLDistributionPoints) == 0 {
				c.Rationale = "The certificate carries no revocation pointer (every byte counts: at most " + itoa(p.MaxDERSize) +
					" bytes encoded); relying parties carry the environment's signed revocation filter, synced when online, which answers for every certificate Keyward issued."
			} else {
				c.Rationale = "Online relying parties check " + strings.ToUpper(strings.Join(c.Strategy[:len(c.Strategy)-1], " then ")) +
					" at the URLs the certificate names; offline ones use the environment's signed revocation filter."
			}
		}
		out = append(out, c)
	}
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
