-- Group commit of Ends: many talking calls' End steps (switch.session.settle, decided by the core
-- from the row) carried out in one statement, one transaction and one ledger batch. Per call as
-- the careful path (Core._settle) does it: the call's transfers are one linked chain of their
-- own, applied whole or not at all whatever the other calls' chains do; only when it applied and
-- the row is exactly as the step was decided from is the call ended (the step's row, ended_at,
-- disposition, its transfer ids) and its one CDR written, from the call row as ended. Call rows
-- are locked in id order and a row another transaction holds is skipped (that call answers "moved
-- on" and takes the careful path), as in call_advance_batch.
-- Per call: e_ended (ended_at and last_seen_at), e_disposition, e_billed, e_call_micros,
-- e_tax_micros, e_charges (itemized, JSON), e_tariff_version, e_recording (kept only when the
-- call is recorded), e_trunk, e_sip_code; the CDR's talk seconds and shortfall are the row's.
-- Returns per call: 0 ended, 1 moved on (nothing done), 2 the ledger refused its chain.
CREATE FUNCTION call_end_batch(
    p_call uuid[], p_state text[], p_period integer[], p_posted integer[], p_grant integer[],
    t_call integer[], t_first integer[], t_count integer[],
    t_id uuid[], t_kind smallint[], t_debit text[], t_credit text[], t_amount bigint[],
    t_hold uuid[], t_expires_in integer[], t_linked boolean[], t_code text[], t_ref text[],
    t_now timestamptz, t_expiry_max integer,
    n_state text[], n_period integer[], n_grant_until integer[], n_posted integer[],
    n_last boolean[], n_hold_call uuid[], n_hold_tax uuid[], n_shortfall bigint[],
    e_ended timestamptz[], e_disposition text[], e_billed integer[], e_call_micros bigint[],
    e_tax_micros bigint[], e_charges text[], e_tariff_version text[], e_recording text[],
    e_trunk text[], e_sip_code integer[])
RETURNS smallint[] LANGUAGE plpgsql AS $fn$
DECLARE
    live boolean[];
    held uuid[];
    out smallint[];
    sel int[];
    bad int[];
    codes smallint[];
BEGIN
    SELECT coalesce(array_agg(id), '{}') INTO held
      FROM (SELECT id FROM call WHERE id = ANY (p_call) ORDER BY id FOR UPDATE SKIP LOCKED) l;
    SELECT array_agg(c.id IS NOT NULL AND c.id = ANY (held) AND c.state = w.s AND c.period = w.p
                     AND c.posted_until = w.po AND c.grant_until = w.g ORDER BY w.ord)
      INTO live
      FROM unnest(p_call, p_state, p_period, p_posted, p_grant)
           WITH ORDINALITY w(id, s, p, po, g, ord)
      LEFT JOIN call c ON c.id = w.id;
    SELECT coalesce(array_agg(t.ord ORDER BY t.ord), '{}') INTO sel
      FROM unnest(t_call) WITH ORDINALITY t(k, ord) WHERE live[t.k];
    IF cardinality(sel) = cardinality(t_id) THEN        -- the common case: every call live
        codes := CASE WHEN cardinality(t_id) = 0 THEN '{}'::smallint[] ELSE
                 ledger_submit(t_id, t_kind, t_debit, t_credit, t_amount, t_hold, t_expires_in,
                               t_linked, t_code, t_ref, t_now, t_expiry_max) END;
    ELSIF cardinality(sel) > 0 THEN
        codes := ledger_submit(
            ARRAY(SELECT t_id[i] FROM unnest(sel) WITH ORDINALITY u(i, o) ORDER BY o),
            ARRAY(SELECT t_kind[i] FROM unnest(sel) WITH ORDINALITY u(i, o) ORDER BY o),
            ARRAY(SELECT t_debit[i] FROM unnest(sel) WITH ORDINALITY u(i, o) ORDER BY o),
            ARRAY(SELECT t_credit[i] FROM unnest(sel) WITH ORDINALITY u(i, o) ORDER BY o),
            ARRAY(SELECT t_amount[i] FROM unnest(sel) WITH ORDINALITY u(i, o) ORDER BY o),
            ARRAY(SELECT t_hold[i] FROM unnest(sel) WITH ORDINALITY u(i, o) ORDER BY o),
            ARRAY(SELECT t_expires_in[i] FROM unnest(sel) WITH ORDINALITY u(i, o) ORDER BY o),
            ARRAY(SELECT t_linked[i] FROM unnest(sel) WITH ORDINALITY u(i, o) ORDER BY o),
            ARRAY(SELECT t_code[i] FROM unnest(sel) WITH ORDINALITY u(i, o) ORDER BY o),
            ARRAY(SELECT t_ref[i] FROM unnest(sel) WITH ORDINALITY u(i, o) ORDER BY o),
            t_now, t_expiry_max);
    ELSE
        codes := '{}';
    END IF;
    -- A live call is ended when none of its transfers was refused (a call with no transfers,
    -- e.g. a free call, is ended too).
    SELECT coalesce(array_agg(DISTINCT t_call[s.i]), '{}') INTO bad
      FROM unnest(sel, codes) s(i, r) WHERE s.r NOT IN (0, 23);
    SELECT array_agg(CASE WHEN NOT live[w.k] THEN 1 WHEN w.k = ANY (bad) THEN 2 ELSE 0 END::smallint
                     ORDER BY w.k)
      INTO out FROM generate_subscripts(p_call, 1) w(k);
    WITH ended AS (
        UPDATE call c SET state = n_state[w.k], period = n_period[w.k],
                          grant_until = n_grant_until[w.k], posted_until = n_posted[w.k],
                          last_grant = n_last[w.k], hold_call = n_hold_call[w.k],
                          hold_tax = n_hold_tax[w.k], shortfall_micros = n_shortfall[w.k],
                          last_seen_at = e_ended[w.k], ended_at = e_ended[w.k],
                          disposition = e_disposition[w.k],
                          transfer_ids = c.transfer_ids
                                         || t_id[t_first[w.k]:t_first[w.k] + t_count[w.k] - 1]
          FROM unnest(p_call) WITH ORDINALITY w(id, k)
         WHERE c.id = w.id AND out[w.k] = 0
        RETURNING c.*, w.k)
    INSERT INTO cdr (call_id, facility_id, kiosk_id, inmate_id, e164, jurisdiction, payment_type,
                     funding_account, privileged, authorized_at, accepted_at, ended_at,
                     talk_seconds, billed_seconds, disposition, call_micros, tax_micros,
                     total_micros, charges, tariff_version, transfer_ids, recording, worker_id,
                     trunk, sip_code, shortfall_micros)
    SELECT e.id, e.facility_id, e.kiosk_id, e.inmate_id, e.e164, e.jurisdiction, e.payment_type,
           e.funding_account, e.privileged, e.authorized_at, e.accepted_at, e.ended_at,
           e.posted_until, e_billed[e.k], e.disposition, e_call_micros[e.k], e_tax_micros[e.k],
           e_call_micros[e.k] + e_tax_micros[e.k], e_charges[e.k]::jsonb, e_tariff_version[e.k],
           e.transfer_ids, CASE WHEN e.record THEN e_recording[e.k] END, e.worker_id,
           e_trunk[e.k], e_sip_code[e.k], e.shortfall_micros
      FROM ended e;
    RETURN out;
END
$fn$;
