-- Keyward schema, version 11 (SQLite): the delivery cursor of each audit sink ('keyward serve --audit-sink'):
-- every audit event up to delivered_seq has reached the sink at least once. Kept in the store so that a restarted
-- server resumes where delivery stopped, without a gap.

CREATE TABLE audit_sinks (
    name          TEXT PRIMARY KEY, -- the sink as configured: file:PATH or an https URL
    delivered_seq INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL  -- microseconds since the epoch
);
