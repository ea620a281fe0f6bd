-- Facilities: what rating needs to know about a site (its clock, its state and local exchanges for
-- jurisdiction, its size and kind for the rate-cap tier, and which regulatory profile applies).
-- Call control adds its own columns in its own migrations.

CREATE TABLE facility (
    id              text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    name            text NOT NULL CHECK (name <> ''),
    state           text NOT NULL CHECK (state ~ '^[A-Z]{2}$'),      -- USPS code of the site
    time_zone       text NOT NULL CHECK (time_zone <> ''),           -- IANA name, e.g. America/Chicago
    adp             integer NOT NULL CHECK (adp >= 0),               -- average daily population
    kind            text NOT NULL CHECK (kind IN ('prison', 'jail')),
    local_exchanges text[] NOT NULL DEFAULT '{}'                     -- NPA-NXX, e.g. '916-555'
                    CHECK (array_to_string(local_exchanges, ',', '?')
                           ~ '^([2-9][0-9]{2}-[2-9][0-9]{2}(,|$))*$'),
    profile         text NOT NULL,                                   -- config/profiles/<profile>.toml
    created_at      timestamptz NOT NULL DEFAULT now()
);
