-- Operators of the HTTP API and the CLI, their API tokens, the append-only audit trail, and the
-- money requests that wait on a second operator (adjustments) or are remembered per reference
-- (refunds).

CREATE TABLE operator (
    id          text PRIMARY KEY CHECK (id ~ '^[a-z][a-z0-9._-]{0,63}$'),
    role        text NOT NULL CHECK (role IN ('admin', 'billing', 'facility_staff', 'auditor')),
    facilities  text[] NOT NULL DEFAULT '{}',   -- facility_staff: the facilities they may see
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((role = 'facility_staff') = (cardinality(facilities) > 0))
);

-- A token is shown once; only its SHA-256 is kept (tokens carry 256 random bits, so a fast hash
-- is enough: nothing to brute-force).
CREATE TABLE operator_token (
    id          uuid PRIMARY KEY,
    operator_id text NOT NULL REFERENCES operator (id),
    token_hash  bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    label       text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX operator_token_by_operator ON operator_token (operator_id);

-- The audit trail: one row per change, from HTTP or the CLI. Rows are facts: a trigger refuses
-- UPDATE, DELETE and TRUNCATE, as the ledger's transfers do.
CREATE TABLE audit_event (
    seq        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    actor      text NOT NULL,                 -- operator id, or cli:<os user>
    via        text NOT NULL CHECK (via IN ('http', 'cli')),
    action     text NOT NULL,                 -- e.g. account.fund, operator.token.revoke
    target     text NOT NULL,                 -- what it acted on (account id, operator id, ...)
    before     jsonb,
    after      jsonb
);
CREATE INDEX audit_event_by_target ON audit_event (target, seq);
CREATE INDEX audit_event_by_actor ON audit_event (actor, seq);

CREATE FUNCTION audit_event_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only: % refused', TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END $$;
CREATE TRIGGER audit_event_immutable BEFORE UPDATE OR DELETE ON audit_event
    FOR EACH ROW EXECUTE FUNCTION audit_event_refuse_change();
CREATE TRIGGER audit_event_immutable_truncate BEFORE TRUNCATE ON audit_event
    FOR EACH STATEMENT EXECUTE FUNCTION audit_event_refuse_change();

-- An adjustment: a signed amount with a reason. Over the configured threshold it waits for a
-- second operator; its ledger transfer id is derived from its id, so applying it twice is one move.
CREATE TABLE adjustment (
    id           uuid PRIMARY KEY,
    ref          text NOT NULL UNIQUE CHECK (length(ref) BETWEEN 1 AND 200),
    account      text NOT NULL,               -- ledger account adjusted
    amount       bigint NOT NULL CHECK (amount <> 0),   -- > 0 credits the account
    reason       text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    state        text NOT NULL CHECK (state IN ('pending', 'applied', 'rejected')),
    requested_by text NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now(),
    decided_by   text,
    decided_at   timestamptz,
    transfer_id  uuid,
    -- the second operator is another person; under the threshold nobody decides (NULL)
    CHECK (decided_by IS NULL OR decided_by <> requested_by)
);
CREATE INDEX adjustment_pending ON adjustment (requested_at) WHERE state = 'pending';

-- A refund of unused balance, at most one per funding reference (the payment it goes back to).
CREATE TABLE refund (
    funding_ref  text PRIMARY KEY REFERENCES funding_credit (ref),
    account      text NOT NULL,
    amount       bigint NOT NULL CHECK (amount > 0),
    transfer_id  uuid NOT NULL,
    requested_by text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- CDR listing walks (ended_at, call_id) downwards, under any one filter.
CREATE INDEX cdr_ended_at ON cdr (ended_at, call_id);
CREATE INDEX cdr_facility_page ON cdr (facility_id, ended_at, call_id);
CREATE INDEX cdr_inmate_page ON cdr (inmate_id, ended_at, call_id);
CREATE INDEX cdr_e164_page ON cdr (e164, ended_at, call_id);

-- The key that signs cursors carrying running balances (statement pages), shared by every node
-- on this database so a cursor from one node works on another. Made on first use.
CREATE TABLE api_secret (
    name  text PRIMARY KEY,
    key   bytea NOT NULL CHECK (length(key) = 32)
);
