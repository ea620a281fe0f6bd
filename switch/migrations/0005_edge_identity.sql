-- The edge's identity rules: the source networks each kiosk may call from, where each PIN attempt
-- came from, and an audit trail of what the edge refused (source mismatches, throttles, lockouts)
-- and of operators' unlocks.

ALTER TABLE kiosk ADD COLUMN sources cidr[] NOT NULL DEFAULT '{}';
UPDATE kiosk SET sources = ARRAY[cidr(source)] WHERE source IS NOT NULL;
ALTER TABLE kiosk DROP COLUMN source;
-- Readers of the single address that `source` used to be see the first network, derived (never
-- written): the truth is `sources`.
ALTER TABLE kiosk ADD COLUMN source inet GENERATED ALWAYS AS (sources[1]::inet) STORED;

ALTER TABLE pin_attempt ADD COLUMN source_ip inet;
CREATE INDEX pin_attempt_kiosk ON pin_attempt (kiosk, at);
CREATE INDEX pin_attempt_source_ip ON pin_attempt (source_ip, at);

CREATE TABLE edge_audit (
    id        bigserial PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    event     text NOT NULL,       -- kiosk_source_mismatch | pin_locked_out | pin_throttled
                                   -- | pin_session_refused | pin_unlocked
    kiosk     text,
    inmate_id text,
    source_ip inet,
    actor     text NOT NULL,       -- 'core', or the operator who acted
    detail    jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX edge_audit_at ON edge_audit (at);
