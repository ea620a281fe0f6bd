-- Console login: an operator's password (scrypt, parameters kept with the hash so they can be
-- raised later), and the failed attempts that throttle guessing per operator id and per source.
CREATE TABLE operator_password (
    operator_id  text PRIMARY KEY REFERENCES operator (id),
    hash         text NOT NULL CHECK (hash LIKE 'scrypt$%'),
    set_at       timestamptz NOT NULL DEFAULT now()
);

-- One row per failed login. Kept short: web/console/login.py counts the recent ones and deletes
-- those older than its longest window.
CREATE TABLE console_login_failure (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    operator_id  text NOT NULL CHECK (length(operator_id) <= 200),   -- as typed, maybe unknown
    source       text NOT NULL CHECK (length(source) <= 64),
    at           timestamptz NOT NULL
);
CREATE INDEX console_login_failure_by_operator ON console_login_failure (operator_id, at);
CREATE INDEX console_login_failure_by_source ON console_login_failure (source, at);
