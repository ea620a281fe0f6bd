-- Rating as billing operations need it: calendar bands (dates, recurring dates, the holiday list),
-- closed bands (not callable at these hours), spending ceilings that stop the call, and a
-- fallback plan per version for destinations the version does not price.

ALTER TABLE tariff_line
    ADD COLUMN dates      text[] NOT NULL DEFAULT '{}',       -- '2025-12-25', '12-25', 'holidays'
    ADD COLUMN closed     boolean NOT NULL DEFAULT false,     -- a closed band: no rate groups
    ADD COLUMN cap_action text NOT NULL DEFAULT 'free' CHECK (cap_action IN ('free', 'stop'));

ALTER TABLE tariff_version
    ADD COLUMN parent text CHECK (parent ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$');  -- 'agency' or a facility

CREATE TABLE tariff_holiday (
    version_id bigint NOT NULL REFERENCES tariff_version (id) ON DELETE CASCADE,
    position   integer NOT NULL CHECK (position >= 0),
    name       text NOT NULL,
    dates      text[] NOT NULL CHECK (cardinality(dates) > 0),
    PRIMARY KEY (version_id, position),
    UNIQUE (version_id, name)
);
