// Package certpolicy names the role a Keyward certificate plays, as a certificate policy (RFC 5280 4.2.1.4).
//
// Every certificate Keyward issues under a profile carries one policy identifier of the form
// <arc>.<role number>, where <arc> is the operator's policy arc (keyward.yaml policy_arc; DefaultArc for
// demonstrations only):
//
//	role       number  who holds it
//	device     1       implants, wearables, pumps: the device identity
//	gateway    2       hospital gateways and clinician programmers
//	service    3       cloud services (TLS servers and clients)
//	station    4       factory stations (EST clients at the manufacturing line)
//	operator   5       people operating Keyward with a certificate
//
// CA certificates carry the policies of the roles they may issue under (a station CA only the station policy),
// so a relying party that checks the role by policy also learns that the CA was allowed to vouch for it. A
// relying party asks "does this certificate carry the policy of a role I accept?" (RoleOf) and never reads the
// role from a name or an extended key usage.
//
// It may import only the standard library: device, gateway and service software embeds it (through pkg/verify).
package certpolicy
