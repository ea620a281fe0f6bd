-- Tariffs: versions of a facility's rate table (facility NULL: the agency-wide default), each with
-- its lines, their rate groups, and the taxes and fees. Versions are never edited: an import adds
-- one. Validity beyond these checks (bands that cover the week, aligned rate groups) is enforced
-- by rating.tariff before anything is written.

CREATE TABLE tariff_version (
    id             bigserial PRIMARY KEY,
    facility_id    text REFERENCES facility (id),              -- NULL: agency-wide default
    number         integer NOT NULL CHECK (number > 0),        -- 1, 2, ... per facility
    effective_from timestamptz NOT NULL,
    imported_at    timestamptz NOT NULL DEFAULT now(),
    source         text NOT NULL DEFAULT ''                     -- file name of the deck
);
CREATE UNIQUE INDEX tariff_version_number ON tariff_version (coalesce(facility_id, ''), number);

CREATE TABLE tariff_line (
    version_id      bigint NOT NULL REFERENCES tariff_version (id) ON DELETE CASCADE,
    position        integer NOT NULL CHECK (position >= 0),
    name            text NOT NULL,
    destination     text NOT NULL,                             -- jurisdiction class or +prefix
    payment         text NOT NULL CHECK (payment IN ('prepaid', 'debit', 'collect', 'any')),
    days            smallint NOT NULL CHECK (days BETWEEN 1 AND 127),   -- bit 0 = Monday
    start_second    integer NOT NULL CHECK (start_second >= 0 AND start_second < 86400),
    weight          integer NOT NULL,
    connect_micros  bigint NOT NULL CHECK (connect_micros >= 0),
    minimum_seconds integer NOT NULL CHECK (minimum_seconds >= 0),
    cost_cap_micros bigint CHECK (cost_cap_micros >= 0),
    rounding        text NOT NULL CHECK (rounding IN ('none', 'up', 'half-up', 'down')),
    decimals        smallint NOT NULL CHECK (decimals BETWEEN 0 AND 6),
    PRIMARY KEY (version_id, position),
    UNIQUE (version_id, name)
);

CREATE TABLE tariff_rate_group (
    version_id        bigint NOT NULL,
    line_position     integer NOT NULL,
    position          integer NOT NULL CHECK (position >= 0),
    from_second       integer NOT NULL CHECK (from_second >= 0),
    price_micros      bigint NOT NULL CHECK (price_micros >= 0),
    per_seconds       integer NOT NULL CHECK (per_seconds > 0),
    increment_seconds integer NOT NULL CHECK (increment_seconds > 0),
    PRIMARY KEY (version_id, line_position, position),
    FOREIGN KEY (version_id, line_position) REFERENCES tariff_line (version_id, position)
        ON DELETE CASCADE
);

CREATE TABLE tariff_surcharge (
    version_id   bigint NOT NULL REFERENCES tariff_version (id) ON DELETE CASCADE,
    position     integer NOT NULL CHECK (position >= 0),
    kind         text NOT NULL CHECK (kind IN ('tax', 'fee')),
    name         text NOT NULL,
    destination  text NOT NULL,                                -- '*', a class or a +prefix
    payment      text NOT NULL CHECK (payment IN ('prepaid', 'debit', 'collect', 'any')),
    percent_ppm  integer CHECK (percent_ppm BETWEEN 0 AND 1000000),
    price_micros bigint CHECK (price_micros >= 0),
    per_seconds  integer CHECK (per_seconds > 0),
    PRIMARY KEY (version_id, position),
    CHECK ((percent_ppm IS NULL) = (price_micros IS NOT NULL AND per_seconds IS NOT NULL))
);
