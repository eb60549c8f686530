-- Keyward schema, version 11 (PostgreSQL): the delivery cursor of each audit sink ('keyward serve --audit-sink'):
-- every audit event up to delivered_seq has reached the sink at least once. Kept in the store so that a restarted
-- server, or another node, resumes where delivery stopped, without a gap.

CREATE TABLE audit_sinks (
    name          text COLLATE "C" PRIMARY KEY, -- the sink as configured: file:PATH or an https URL
    delivered_seq bigint NOT NULL,
    updated_at    timestamptz NOT NULL
);
