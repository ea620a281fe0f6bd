-- Proof of an owned number by a call that speaks a one-time code (families.number_proof). One row
-- per proof call asked for: the code (scrypt, salted; never in clear), its attempts and expiry,
-- and the call's own record (worker, trunk, SIP code, outcome, times): the CDR of a free call.
CREATE TABLE family_number_proof (
    id            uuid PRIMARY KEY,
    holder_id     uuid NOT NULL REFERENCES family_holder (id),
    e164          text NOT NULL CHECK (e164 ~ '^\+[1-9][0-9]{1,14}$'),
    language      text NOT NULL CHECK (language IN ('en', 'es')),
    code_salt     bytea NOT NULL CHECK (length(code_salt) = 16),
    code_hash     bytea NOT NULL CHECK (length(code_hash) = 32),
    state         text NOT NULL CHECK (state IN ('requested', 'calling', 'spoken', 'unanswered',
                                                 'failed', 'proven', 'exhausted', 'superseded')),
    attempts      integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    used_at       timestamptz,
    -- the call
    worker_id     text,
    trunk         text,
    sip_code      integer,
    outcome       text CHECK (outcome IN ('spoken', 'hung_up', 'no_answer', 'busy', 'failed',
                                          'no_worker')),
    talk_seconds  integer CHECK (talk_seconds >= 0),
    placed_at     timestamptz,
    ended_at      timestamptz,
    CHECK (expires_at > created_at),
    CHECK ((state = 'proven') = (used_at IS NOT NULL))
);
-- The limits count calls per number (whoever asked), per holder and per node.
CREATE INDEX family_number_proof_e164 ON family_number_proof (e164, created_at);
CREATE INDEX family_number_proof_holder ON family_number_proof (holder_id, created_at);
CREATE INDEX family_number_proof_created ON family_number_proof (created_at);
-- At most one open proof per holder and number: a new request supersedes the old one.
CREATE UNIQUE INDEX family_number_proof_open ON family_number_proof (holder_id, e164)
    WHERE state IN ('requested', 'calling', 'spoken');
