-- One round trip for the common Continue: check the call is where the core last saw it, move the
-- period's money through the ledger, and advance the call, in one statement (one transaction).
-- Returns NULL when the call has moved on (the core then takes its careful path), or the ledger's
-- result codes; the call row is advanced only when every transfer succeeded (0 ok, 23 exists).
-- Transfers that did apply stay applied: their ids are derived from (call, period, purpose), so
-- the careful path's resubmission answers `exists` and nothing moves twice.
CREATE FUNCTION call_advance(
    p_call uuid, p_state text, p_period integer,
    t_id uuid[], t_kind smallint[], t_debit text[], t_credit text[], t_amount bigint[],
    t_hold uuid[], t_expires_in integer[], t_linked boolean[], t_code text[], t_ref text[],
    t_now timestamptz, t_expiry_max integer,
    n_state text, n_period integer, n_grant_until integer, n_last boolean, n_seen timestamptz)
RETURNS smallint[] LANGUAGE plpgsql AS $fn$
DECLARE
    c record;
    codes smallint[];
BEGIN
    SELECT state, period INTO c FROM call WHERE id = p_call FOR UPDATE;
    IF NOT FOUND OR c.state <> p_state OR c.period <> p_period THEN
        RETURN NULL;
    END IF;
    codes := ledger_submit(t_id, t_kind, t_debit, t_credit, t_amount, t_hold, t_expires_in,
                           t_linked, t_code, t_ref, t_now, t_expiry_max);
    IF EXISTS (SELECT 1 FROM unnest(codes) AS r WHERE r NOT IN (0, 23)) THEN
        RETURN codes;
    END IF;
    UPDATE call SET state = n_state, period = n_period, grant_until = n_grant_until,
                    last_grant = n_last, last_seen_at = n_seen, posted_until = grant_until,
                    transfer_ids = transfer_ids || t_id
     WHERE id = p_call;
    RETURN codes;
END
$fn$;
