-- The charging loop (switch.session): the one open hold of a call named on its row, the tariff
-- version pinned when the call was authorized, and what could no longer be collected.
ALTER TABLE call
    ADD COLUMN tariff_version   integer,   -- the version in force at authorization prices the call
    ADD COLUMN hold_call        uuid,      -- the open hold: (posted_until, grant_until], call part
    ADD COLUMN hold_tax         uuid,      -- ... and tax part (NULL: no such part, or no hold)
    ADD COLUMN shortfall_micros bigint NOT NULL DEFAULT 0 CHECK (shortfall_micros >= 0);

ALTER TABLE cdr
    ADD COLUMN shortfall_micros bigint NOT NULL DEFAULT 0
        CHECK (shortfall_micros >= 0 AND shortfall_micros <= total_micros);

-- One round trip for the common Continue: check the call is exactly where the step was decided
-- from, carry out the step's transfers (one linked chain: all or nothing) and write the step's
-- row, in one statement. It never decides: the Step comes from switch.session.advance.
-- Returns NULL when the call has moved on (nothing done), else the ledger's result codes; the
-- row is written only when every transfer succeeded (0 ok, 23 exists), and a chain that did not
-- apply moved nothing, so no half of a step is ever committed.
DROP FUNCTION call_advance(uuid, text, integer, uuid[], smallint[], text[], text[], bigint[],
                           uuid[], integer[], boolean[], text[], text[], timestamptz, integer,
                           text, integer, integer, boolean, timestamptz);

CREATE FUNCTION call_advance(
    p_call uuid, p_state text, p_period integer, p_posted integer, p_grant integer,
    t_id uuid[], t_kind smallint[], t_debit text[], t_credit text[], t_amount bigint[],
    t_hold uuid[], t_expires_in integer[], t_linked boolean[], t_code text[], t_ref text[],
    t_now timestamptz, t_expiry_max integer,
    n_state text, n_period integer, n_grant_until integer, n_posted integer, n_last boolean,
    n_hold_call uuid, n_hold_tax uuid, n_shortfall bigint, n_seen timestamptz)
RETURNS smallint[] LANGUAGE plpgsql AS $fn$
DECLARE
    c record;
    codes smallint[];
BEGIN
    SELECT state, period, posted_until, grant_until INTO c FROM call WHERE id = p_call FOR UPDATE;
    IF NOT FOUND OR c.state <> p_state OR c.period <> p_period OR c.posted_until <> p_posted
       OR c.grant_until <> p_grant THEN
        RETURN NULL;
    END IF;
    codes := ledger_submit(t_id, t_kind, t_debit, t_credit, t_amount, t_hold, t_expires_in,
                           t_linked, t_code, t_ref, t_now, t_expiry_max);
    IF EXISTS (SELECT 1 FROM unnest(codes) AS r WHERE r NOT IN (0, 23)) THEN
        RETURN codes;
    END IF;
    UPDATE call SET state = n_state, period = n_period, grant_until = n_grant_until,
                    posted_until = n_posted, last_grant = n_last, hold_call = n_hold_call,
                    hold_tax = n_hold_tax, shortfall_micros = n_shortfall, last_seen_at = n_seen,
                    transfer_ids = transfer_ids || t_id
     WHERE id = p_call;
    RETURN codes;
END
$fn$;
