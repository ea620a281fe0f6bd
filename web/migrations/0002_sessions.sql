-- Browser sessions of operators (the console) and account holders (the portal). The cookie carries
-- a random token; only its SHA-256 is kept, so a copy of this table opens no session. A session
-- ends at its fixed expiry, after idle time (last_seen_at + the policy's idle limit, checked by
-- web/sessions.py), or when revoked (logout, login rotation, an operator revoking a subject).
CREATE TABLE web_session (
    id            uuid PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('operator', 'holder')),
    subject       text NOT NULL CHECK (length(subject) BETWEEN 1 AND 200),
    token_hash    bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    csrf_token    text NOT NULL CHECK (length(csrf_token) BETWEEN 32 AND 128),
    created_at    timestamptz NOT NULL,
    last_seen_at  timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    revoked_at    timestamptz,
    CHECK (expires_at > created_at),
    CHECK (last_seen_at >= created_at)
);
CREATE INDEX web_session_live_by_subject ON web_session (kind, subject) WHERE revoked_at IS NULL;
CREATE INDEX web_session_by_expiry ON web_session (expires_at);
