-- Families: account holders (email + scrypt password), one-time email tokens, the outbox, login
-- attempts (throttling), owned numbers, payments through a provider (and the built-in test
-- provider's own books), contact requests, facility policies, refunds, and an append-only audit.

CREATE TABLE family_holder (
    id              uuid PRIMARY KEY,
    email           text NOT NULL UNIQUE
                    CHECK (email = lower(email) AND length(email) BETWEEN 3 AND 254),
    password_hash   text NOT NULL CHECK (password_hash LIKE 'scrypt$%'),
    language        text NOT NULL DEFAULT 'en' CHECK (language IN ('en', 'es')),
    verified_at     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_request_at timestamptz NOT NULL DEFAULT now()   -- restarts the inactivity clock
);

-- A one-time token sent by email (verify the address, reset the password). Only its SHA-256 is
-- kept; it is used once (used_at) and expires.
CREATE TABLE family_token (
    token_hash  bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    holder_id   uuid NOT NULL REFERENCES family_holder (id),
    purpose     text NOT NULL CHECK (purpose IN ('verify', 'reset')),
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    CHECK (expires_at > created_at)
);
CREATE INDEX family_token_by_holder ON family_token (holder_id, purpose);

-- Mail to holders. Always written here (in the transaction that caused it); sent by SMTP only
-- when a server is configured. `ics outbox` shows it.
CREATE TABLE family_outbox (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at  timestamptz NOT NULL,
    holder_id   uuid REFERENCES family_holder (id),
    recipient   text NOT NULL,
    kind        text NOT NULL,      -- verify | reset | contact_decision | low_balance | ...
    subject     text NOT NULL,
    body        text NOT NULL,
    sent_at     timestamptz,
    attempts    integer NOT NULL DEFAULT 0,
    last_error  text
);
CREATE INDEX family_outbox_unsent ON family_outbox (id) WHERE sent_at IS NULL;

CREATE TABLE family_login_attempt (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      timestamptz NOT NULL,
    email   text NOT NULL,
    source  text NOT NULL,          -- the client's address as the node saw it
    ok      boolean NOT NULL
);
CREATE INDEX family_login_attempt_email ON family_login_attempt (email, at);
CREATE INDEX family_login_attempt_source ON family_login_attempt (source, at);

-- Every holder action that changes something (and every operator action on holders' things).
CREATE TABLE family_audit (
    seq     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      timestamptz NOT NULL,
    actor   text NOT NULL,          -- holder:<uuid>, an operator id, or 'node'
    action  text NOT NULL,
    target  text NOT NULL,
    detail  jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX family_audit_target ON family_audit (target, seq);
CREATE INDEX family_audit_actor ON family_audit (actor, seq);
CREATE FUNCTION family_audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'family audit rows are append-only: % refused', TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END $$;
CREATE TRIGGER family_audit_immutable BEFORE UPDATE OR DELETE ON family_audit
    FOR EACH ROW EXECUTE FUNCTION family_audit_refuse_change();
CREATE TRIGGER family_audit_immutable_truncate BEFORE TRUNCATE ON family_audit
    FOR EACH STATEMENT EXECUTE FUNCTION family_audit_refuse_change();

-- A number a holder says they own; proven by an operator (or a call that speaks a code). A
-- number is proven for one holder at most.
CREATE TABLE family_number (
    holder_id   uuid NOT NULL REFERENCES family_holder (id),
    e164        text NOT NULL CHECK (e164 ~ '^\+[1-9][0-9]{1,14}$'),
    state       text NOT NULL DEFAULT 'unproven' CHECK (state IN ('unproven', 'proven')),
    proven_by   text,
    proven_at   timestamptz,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (holder_id, e164),
    CHECK ((state = 'proven') = (proven_at IS NOT NULL))
);
CREATE UNIQUE INDEX family_number_one_owner ON family_number (e164) WHERE state = 'proven';

-- What a facility lets families see and do.
CREATE TABLE family_facility_policy (
    facility_id         text PRIMARY KEY REFERENCES facility (id),
    publishes_inmates   boolean NOT NULL DEFAULT true,   -- families may find its inmates
    deposits_approved_only boolean NOT NULL DEFAULT true, -- only approved contacts fund inmates
    debit_monthly_max   bigint NOT NULL DEFAULT 300000000 CHECK (debit_monthly_max >= 0)
);

-- A holder's request to become an approved contact; its state is the contact row's status.
CREATE TABLE family_contact_request (
    id          uuid PRIMARY KEY,
    holder_id   uuid NOT NULL REFERENCES family_holder (id),
    inmate_id   text NOT NULL REFERENCES inmate (id),
    e164        text NOT NULL,
    created_at  timestamptz NOT NULL,
    decided_by  text,
    decided_at  timestamptz,
    UNIQUE (inmate_id, e164)
);
CREATE INDEX family_contact_request_holder ON family_contact_request (holder_id);

-- A payment through a provider. Keyed on the holder's idempotency key (a resent form) and on
-- the provider's reference (a resent webhook); its transfers' ids derive from its id.
CREATE TABLE family_payment (
    id            uuid PRIMARY KEY,
    holder_id     uuid REFERENCES family_holder (id),
    idem_key      text NOT NULL,
    purpose       text NOT NULL CHECK (purpose IN ('prepaid', 'inmate')),
    target        text NOT NULL,            -- the number (prepaid) or inmate id
    account       text NOT NULL,            -- the ledger account credited
    amount        bigint NOT NULL CHECK (amount > 0),
    fee           bigint NOT NULL CHECK (fee >= 0),
    channel       text NOT NULL,
    profile       text NOT NULL,
    fee_rule      text NOT NULL,
    provider      text NOT NULL,
    provider_ref  text UNIQUE,              -- known once the provider has seen the charge
    state         text NOT NULL CHECK (state IN ('pending', 'confirmed', 'declined', 'failed')),
    reason        text NOT NULL DEFAULT '',
    refunded      bigint NOT NULL DEFAULT 0 CHECK (refunded >= 0 AND refunded <= amount),
    created_at    timestamptz NOT NULL,
    decided_at    timestamptz,
    UNIQUE (holder_id, idem_key)
);
CREATE INDEX family_payment_account ON family_payment (account, created_at);
CREATE INDEX family_payment_pending ON family_payment (created_at) WHERE state = 'pending';

-- A refund of unused balance to one payment's reference (several per request when the balance came
-- from several payments).
CREATE TABLE family_refund (
    id            uuid PRIMARY KEY,         -- also the ledger transfer id
    request_id    uuid NOT NULL,
    payment_id    uuid NOT NULL REFERENCES family_payment (id),
    amount        bigint NOT NULL CHECK (amount > 0),
    reason        text NOT NULL CHECK (reason IN ('requested', 'inactivity')),
    provider_ref  text NOT NULL,
    created_at    timestamptz NOT NULL,
    UNIQUE (request_id, payment_id)
);

-- The built-in test provider's own books: what a card processor would remember on its side. The
-- node writes them in transactions of their own, as a provider would commit before answering.
CREATE TABLE test_provider_charge (
    ref           text PRIMARY KEY,
    idem_key      text NOT NULL UNIQUE,
    token         text NOT NULL,
    amount        bigint NOT NULL CHECK (amount > 0),
    state         text NOT NULL CHECK (state IN ('approved', 'declined', 'pending')),
    refunded      bigint NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL
);

-- Signed webhooks already taken: a replay inside the time window is recognised and ignored.
CREATE TABLE family_webhook_seen (
    signature  text PRIMARY KEY,
    at         timestamptz NOT NULL
);

-- Low-balance notices sent, so one dip below the threshold mails once.
CREATE TABLE family_notice (
    account   text NOT NULL,
    kind      text NOT NULL,
    at        timestamptz NOT NULL,
    PRIMARY KEY (account, kind)
);
