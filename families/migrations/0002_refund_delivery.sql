-- A refund line is owed (refunds payable) from its commit; this is whether the provider has
-- taken it. `pending` lines are sent again, with back-off, under the same idempotency key (the
-- line's id) until the provider takes them; after `attempts_max` failures a line is `held` for an
-- operator (`ics family refunds retry`). Lines written before this migration were sent once at
-- the time; nothing recorded a failure, so they count as sent.
ALTER TABLE family_refund
    ADD COLUMN state text NOT NULL DEFAULT 'sent' CHECK (state IN ('pending', 'sent', 'held')),
    ADD COLUMN attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    ADD COLUMN next_attempt_at timestamptz,
    ADD COLUMN last_error text NOT NULL DEFAULT '',
    ADD COLUMN sent_at timestamptz;
ALTER TABLE family_refund ALTER COLUMN state SET DEFAULT 'pending';
CREATE INDEX family_refund_due ON family_refund (next_attempt_at) WHERE state = 'pending';

-- The test provider's refunds, one per idempotency key (a retried refund is taken once).
CREATE TABLE test_provider_refund (
    idem_key    text PRIMARY KEY,
    ref         text NOT NULL REFERENCES test_provider_charge (ref),
    amount      bigint NOT NULL CHECK (amount > 0),
    created_at  timestamptz NOT NULL
);
