// Package ra is Keyward's registration authority, the only decider. Every change anyone can ask for (issuance,
// EST enrollment and renewal, revocation and release from hold, bulk revocation, decommissioning, factory
// stations, the device registry, key destruction, operator tokens, CA creation and the offline-root ceremony,
// firmware trust and releases, offline manufacturing) is one method of RA that authorises the principal,
// validates the request against the profiles, the hierarchy and the registry, runs ONE store transaction
// holding the change and its audit event, and then notifies the change feed. Every such transaction records
// the state its writes leave in its audit events (recorder.go), and the RA signs the audit log's checkpoints,
// verifies the log against them and the tables, and proves events (auditlog.go). A refusal is audited in its
// own transaction and changes nothing else, with the strings the caller sent escaped and bounded; requests
// refused before authentication are counted instead and audited once per reason per minute (refused.go). The
// device registry is consulted on every path that issues for a device serial.
//
// Errors are one type, *Error, with a Kind the faces map once (HTTP status, exit code) and a message that names
// the input and the rule in the request's own terms, never a secret and never a command-line flag (Field names
// the request field instead).
//
// It may import internal/ca (the custodian: every key generation, signature and key erase goes through it),
// internal/store, internal/audit, internal/profile, internal/goodkey, internal/hierarchy, internal/issuer (types
// of prepared certificates), internal/keystore (purposes and algorithms) and the public firmware packages. It
// must never open a keystore signer, call x509.CreateCertificate or write a file: custody is internal/ca's,
// files are the faces' and internal/node's.
package ra
