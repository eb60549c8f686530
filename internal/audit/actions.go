package audit

// Actions name what an audit event records. Every change appends exactly one event in its transaction, so these
// names are also how the change feed (internal/feed) and forensics select changes: they are declared once, here,
// and never built from strings elsewhere but for the families noted below.
const (
	// Certificates.
	ActionCertIssue      = "cert.issue"       // an operator or CLI issued a certificate from a CSR
	ActionCertRevoke     = "cert.revoke"      // one certificate revoked (also within a bulk revocation)
	ActionCertRevokeBulk = "cert.revoke-bulk" // the summary of a bulk revocation
	ActionCertUnhold     = "cert.unhold"      // a certificate released from certificateHold
	ActionESTEnroll      = "est.enroll"       // a factory station enrolled a device (RFC 7030 simpleenroll)
	ActionESTReenroll    = "est.reenroll"     // a device renewed its identity (RFC 7030 simplereenroll)
	ActionESTCSRAttrs    = "est.csrattrs"     // refusals only
	ActionESTCACerts     = "est.cacerts"      // refusals only
	ActionTLSIssue       = "tls.issue"        // the server's own TLS certificate

	// Keys and CAs.
	ActionKeyGenerate = "key.generate"
	ActionKeyDestroy  = "key.destroy"
	ActionCACreate    = "ca.create"
	ActionCAImport    = "ca.import"
	ActionCARequest   = "ca.request"   // a CA key generated, waiting for its certificate from a ceremony
	ActionCACancel    = "ca.cancel"    // a pending CA request abandoned, its key destroyed
	ActionCASupersede = "ca.supersede" // a CA replaced by its next generation (a rollover)
	ActionCARevoke    = "ca.revoke"
	ActionCARetire    = "ca.retire"
	ActionCAImportCRL = "ca.import-crl" // an offline root's CRL, signed in a ceremony, installed
	// Ceremony workspaces: each command's transcript entry.
	ActionCeremonyRoot     = "ceremony.root"
	ActionCeremonySign     = "ceremony.sign"
	ActionCeremonyCRL      = "ceremony.crl"
	ActionCeremonyRollover = "ceremony.root-rollover"
	ActionDelegate         = "revocation.signer" // a delegated OCSP responder or filter signer certified
	ActionFilter           = "revocation.filter" // a revocation filter published
	ActionTokenCreate      = "token.create"
	ActionTokenRevoke      = "token.revoke"
	ActionTokenList        = "token.list" // refusals only
	// ActionAuthRefuse: a request to the operator API refused at authentication (401: no, unknown, revoked or
	// expired token) or authorisation (403: a role the route does not allow).
	ActionAuthRefuse = "auth.refuse"
	// ActionAuthRefusals aggregates the requests refused before or at authentication over the network (no or
	// unknown client certificate, a missing, unknown, revoked or expired operator token, a role without the
	// right, a source over its rate limit): one refused event per reason per minute, its subject the reason,
	// instead of one event per request (ActionAuthRefuse stays for a refusal in a local CLI process).
	ActionAuthRefusals = "auth.refusals"

	// Stations ("station." + resume, suspend or revoke) and devices ("device." + allow-reprovision,
	// force-renew, suspend, resume or decommission).
	ActionStationAdd     = "station.add"
	ActionStation        = "station."
	ActionDevice         = "device."
	ActionDeviceRegister = "device.register" // a device recorded from a reconciled factory export
	// Forensics reads ('keyward device history', 'keyward cert history'): refusals only.
	ActionDeviceHistory = "device.history"
	ActionCertHistory   = "cert.history"

	// Firmware ("firmware.key." + retired or revoked).
	ActionFirmwareTrustCreate   = "firmware.trust.create"
	ActionFirmwareTrustUpdate   = "firmware.trust.update"
	ActionFirmwareKey           = "firmware.key."
	ActionFirmwareReleaseCreate = "firmware.release.create"
	ActionFirmwareApprove       = "firmware.release.approve"
	ActionFirmwareSign          = "firmware.release.sign"

	// Offline manufacturing.
	ActionSiteCreate       = "factory.site.create"
	ActionSitePackage      = "factory.site.package"
	ActionSiteInit         = "factory.site.init"
	ActionBatchStart       = "factory.batch.start"
	ActionBatchResume      = "factory.batch.resume"
	ActionBatchComplete    = "factory.batch.complete"
	ActionFactoryExport    = "factory.export"
	ActionFactoryReconcile = "factory.reconcile"
)

// The fleet key-hygiene scan.
const (
	// ActionFleetImport: certificates issued by other systems imported for the scan only (never trusted).
	ActionFleetImport = "fleet.import-certs"
)

// Prefixes of the actions whose changes caches follow (feed.Subscribe).
const (
	// PrefixKey and PrefixCA: a key destroyed or a CA created, imported or retired: the CA custodian re-checks
	// the subject.
	PrefixKey = "key."
	PrefixCA  = "ca."
	// PrefixStation: a station added, suspended, resumed or revoked.
	PrefixStation = "station."
	// PrefixToken: an operator token created or revoked.
	PrefixToken = "token."
	// PrefixCert: revocations and releases from hold, which the publisher follows.
	PrefixCert = "cert."
)

// The audit log itself: refusals only (a checkpoint appends no event: it would change the tree it describes).
const (
	ActionAuditCheckpoint = "audit.checkpoint"
	ActionAuditVerify     = "audit.verify"
	ActionAuditProve      = "audit.prove"
)

// ActionEvidenceGenerate: an evidence pack for a premarket submission generated and its manifest signed with
// the audit key ('keyward evidence').
const ActionEvidenceGenerate = "evidence.generate"

// Key-derivation keys and the device keys they derive.
const (
	ActionKDKCreate = "key.kdk.create" // the first version of a KDK for an environment, product line and purpose
	ActionKDKRotate = "key.kdk.rotate" // the next version; earlier ones keep re-deriving for their devices
	ActionKDKRetire = "key.kdk.retire" // a version derives no new device keys; it still re-derives existing ones
	ActionKeyDerive = "key.derive"     // a device key derived and handed out wrapped (online, e.g. a repair depot)
)
