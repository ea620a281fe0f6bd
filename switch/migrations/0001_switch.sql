-- Call control: who may call whom (kiosks, inmates, contacts, blocks, schedules, routes),
-- who pays (prepaid phone accounts), and what happened (calls, billing periods, CDRs, PIN audit).

ALTER TABLE facility
    ADD COLUMN max_call_seconds  integer NOT NULL DEFAULT 900 CHECK (max_call_seconds > 0),
    ADD COLUMN default_language  text    NOT NULL DEFAULT 'en' CHECK (default_language IN ('en', 'es')),
    ADD COLUMN recording         boolean NOT NULL DEFAULT true,
    ADD COLUMN trunk             text;    -- default trunk URI template when no route matches

CREATE TABLE calling_window (
    id          bigserial PRIMARY KEY,
    facility_id text NOT NULL REFERENCES facility (id) ON DELETE CASCADE,
    unit        text,                    -- NULL: every housing unit without windows of its own
    spec        text NOT NULL            -- 'mon-fri 08:00-22:00' (switch.schedule.parse_window)
);
CREATE INDEX calling_window_facility ON calling_window (facility_id, unit);

CREATE TABLE kiosk (
    id          text PRIMARY KEY,        -- the SIP user of the kiosk (From / Authorization user)
    facility_id text NOT NULL REFERENCES facility (id),
    unit        text,
    source      inet,                    -- expected source address, NULL: any
    trusted     boolean NOT NULL DEFAULT false,  -- may pre-supply PIN and number in the INVITE
    active      boolean NOT NULL DEFAULT true
);

CREATE TABLE inmate (
    id               text PRIMARY KEY CHECK (id ~ '^[0-9]{3,15}$'),  -- keyed on a phone pad
    name             text NOT NULL,
    facility_id      text NOT NULL REFERENCES facility (id),
    unit             text,
    pin_hash         bytea NOT NULL,
    status           text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'released')),
    language         text NOT NULL DEFAULT 'en' CHECK (language IN ('en', 'es')),
    debit_account    text NOT NULL,      -- ledger account id of the inmate's debit (trust) account
    name_wav         text,               -- recorded name, a path under the data directory
    calls_per_day    integer CHECK (calls_per_day >= 0),
    minutes_per_day  integer CHECK (minutes_per_day >= 0),
    calls_per_month  integer CHECK (calls_per_month >= 0),
    minutes_per_month integer CHECK (minutes_per_month >= 0),
    contacts_max     integer NOT NULL DEFAULT 20 CHECK (contacts_max >= 0),
    created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE pin_attempt (
    id        bigserial PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    kiosk     text NOT NULL,
    inmate_id text,                      -- the inmate number keyed, when it names a real inmate
    ok        boolean NOT NULL,
    outcome   text NOT NULL,             -- ok | wrong_secret | locked | unknown_inmate | malformed
    source    text
);
CREATE INDEX pin_attempt_inmate ON pin_attempt (inmate_id, at);

CREATE TABLE contact (
    inmate_id      text NOT NULL REFERENCES inmate (id),
    e164           text NOT NULL CHECK (e164 ~ '^\+[1-9][0-9]{1,14}$'),
    name           text NOT NULL DEFAULT '',
    relationship   text NOT NULL DEFAULT '',
    status         text NOT NULL DEFAULT 'requested'
                   CHECK (status IN ('requested', 'approved', 'denied', 'removed')),
    privileged     boolean NOT NULL DEFAULT false,   -- attorney: free, never recorded
    passive_accept boolean NOT NULL DEFAULT false,   -- connects without a key press
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (inmate_id, e164)
);

CREATE TABLE block (
    id           bigserial PRIMARY KEY,
    pattern      text NOT NULL CHECK (pattern ~ '^\+[0-9]{1,15}$'),
    is_prefix    boolean NOT NULL DEFAULT false,
    scope        text NOT NULL CHECK (scope IN ('global', 'facility', 'inmate')),
    facility_id  text REFERENCES facility (id),
    inmate_id    text REFERENCES inmate (id),
    reason       text NOT NULL DEFAULT '',
    requested_by text NOT NULL CHECK (requested_by IN ('staff', 'called_party')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    CHECK ((scope = 'global' AND facility_id IS NULL AND inmate_id IS NULL)
        OR (scope = 'facility' AND facility_id IS NOT NULL AND inmate_id IS NULL)
        OR (scope = 'inmate' AND inmate_id IS NOT NULL))
);
CREATE UNIQUE INDEX block_once ON block (pattern, is_prefix, scope,
    coalesce(facility_id, ''), coalesce(inmate_id, ''));

CREATE TABLE phone_account (             -- AdvancePay: a prepaid account tied to a called number
    e164           text PRIMARY KEY CHECK (e164 ~ '^\+[1-9][0-9]{1,14}$'),
    owner          text NOT NULL,
    ledger_account text NOT NULL UNIQUE,
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE route (
    id          bigserial PRIMARY KEY,
    prefix      text NOT NULL CHECK (prefix ~ '^\+[0-9]*$'),   -- '+' matches everything
    priority    integer NOT NULL DEFAULT 0,  -- failover order among routes of one prefix
    trunk       text NOT NULL,               -- SIP URI template, e.g. sip:{e164}@10.0.0.5:5060
    capacity    integer NOT NULL DEFAULT 0 CHECK (capacity >= 0),  -- 0: unlimited
    UNIQUE (prefix, priority)
);

CREATE TABLE funding_credit (             -- idempotency record of deposits (`--ref`)
    ref         text PRIMARY KEY,
    account     text NOT NULL,            -- the ledger account credited
    amount      bigint NOT NULL CHECK (amount > 0),
    transfer_id uuid NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- A call from authorization to CDR. The row is the session's durable state: a restarted core
-- picks up from it, and every money movement is keyed on (id, period).
CREATE TABLE call (
    id              uuid PRIMARY KEY,
    state           text NOT NULL CHECK (state IN ('authorized', 'talking', 'last', 'ended')),
    facility_id     text NOT NULL REFERENCES facility (id),
    kiosk_id        text NOT NULL,
    inmate_id       text NOT NULL,
    e164            text NOT NULL,
    jurisdiction    text NOT NULL,
    payment_type    text,                -- prepaid | debit, NULL for privileged
    funding_account text,
    privileged      boolean NOT NULL,
    record          boolean NOT NULL,
    max_seconds     integer NOT NULL CHECK (max_seconds >= 0),
    limited_by      text NOT NULL,
    worker_id       text,
    authorized_at   timestamptz NOT NULL,
    accepted_at     timestamptz,
    ended_at        timestamptz,
    last_seen_at    timestamptz NOT NULL,
    period          integer NOT NULL DEFAULT 0,  -- the billing period held now (1-based)
    grant_until     integer NOT NULL DEFAULT 0,  -- talk seconds granted so far
    posted_until    integer NOT NULL DEFAULT 0,  -- talk seconds already charged
    last_grant      boolean NOT NULL DEFAULT false,
    transfer_ids    uuid[] NOT NULL DEFAULT '{}',  -- every ledger transfer of the call, in order
    trunks          text[] NOT NULL DEFAULT '{}',
    disposition     text
);
CREATE INDEX call_open ON call (last_seen_at) WHERE state <> 'ended';
CREATE INDEX call_inmate_day ON call (inmate_id, authorized_at);

CREATE TABLE cdr (
    call_id          uuid PRIMARY KEY REFERENCES call (id),
    facility_id      text NOT NULL,
    kiosk_id         text NOT NULL,
    inmate_id        text NOT NULL,
    e164             text NOT NULL,
    jurisdiction     text NOT NULL,
    payment_type     text,
    funding_account  text,
    privileged       boolean NOT NULL,
    authorized_at    timestamptz NOT NULL,
    accepted_at      timestamptz,
    ended_at         timestamptz NOT NULL,
    talk_seconds     integer NOT NULL CHECK (talk_seconds >= 0),
    billed_seconds   integer NOT NULL CHECK (billed_seconds >= 0),
    disposition      text NOT NULL,
    call_micros      bigint NOT NULL CHECK (call_micros >= 0),
    tax_micros       bigint NOT NULL CHECK (tax_micros >= 0),
    total_micros     bigint NOT NULL CHECK (total_micros = call_micros + tax_micros),
    charges          jsonb NOT NULL,      -- itemized spans and taxes, from the pricing function
    tariff_version   text,
    transfer_ids     uuid[] NOT NULL,
    recording        text,
    worker_id        text,
    trunk            text,
    sip_code         integer
);
CREATE INDEX cdr_facility_time ON cdr (facility_id, ended_at);
