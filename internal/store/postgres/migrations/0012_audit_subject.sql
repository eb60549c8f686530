-- Keyward schema, version 12 (PostgreSQL): forensics reads the audit events of one subject (a device
-- serial, a certificate serial, a key URI) in sequence order: 'keyward device history', 'keyward cert history'.

CREATE INDEX audit_events_subject ON audit_events (subject, seq);
