// Package siem carries Keyward's audit trail to security information and event management systems: the
// encoders of 'keyward audit export' (JSON lines, one api.Event per line, and ArcSight Common Event Format), and
// the forwarder of 'keyward serve --audit-sink', which delivers new events to a file or an HTTPS collector at
// least once, in sequence order, keeping its cursor in the store.
//
// The forwarder holds no queue of its own: the audit table is the queue. Issuance appends events and never waits
// for a sink; the forwarder re-reads from its stored cursor, one bounded batch at a time, and advances the cursor
// only after the sink accepted the batch. A sink that is down makes it retry with backoff and fall behind, never
// drop an event or hold memory beyond one batch.
//
// It may import internal/api, internal/audit, internal/ra (to advance a cursor) and internal/store (to read).
// It must never append an audit event: a delivery is not a decision, and an event per delivery would feed
// itself.
package siem
