-- Group commit carries Accepts too: a call's first Accept (switch.session.accept, decided by the
-- core from the row) is carried out like a Continue, and its row records when it was accepted
-- (n_accepted[k]; NULL for a Continue, and an accepted call keeps its first instant).
-- Otherwise as in 0004: per call its own linked chain, its row written only when that chain
-- applied, call rows locked in id order and skipped when another transaction holds them.
DROP FUNCTION call_advance_batch(
    uuid[], text[], integer[], integer[], integer[], integer[], integer[], integer[], uuid[],
    smallint[], text[], text[], bigint[], uuid[], integer[], boolean[], text[], text[],
    timestamptz, integer, text[], integer[], integer[], integer[], boolean[], uuid[], uuid[],
    bigint[], timestamptz);

CREATE FUNCTION call_advance_batch(
    p_call uuid[], p_state text[], p_period integer[], p_posted integer[], p_grant integer[],
    t_call integer[], t_first integer[], t_count integer[],
    t_id uuid[], t_kind smallint[], t_debit text[], t_credit text[], t_amount bigint[],
    t_hold uuid[], t_expires_in integer[], t_linked boolean[], t_code text[], t_ref text[],
    t_now timestamptz, t_expiry_max integer,
    n_state text[], n_period integer[], n_grant_until integer[], n_posted integer[],
    n_last boolean[], n_hold_call uuid[], n_hold_tax uuid[], n_shortfall bigint[],
    n_seen timestamptz, n_accepted timestamptz[])
RETURNS smallint[] LANGUAGE plpgsql AS $fn$
DECLARE
    n int := cardinality(p_call);
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
        codes := ledger_submit(t_id, t_kind, t_debit, t_credit, t_amount, t_hold, t_expires_in,
                               t_linked, t_code, t_ref, t_now, t_expiry_max);
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
    -- A live call is applied when none of its transfers was refused (a call with no transfers,
    -- e.g. a free call, is applied too).
    SELECT coalesce(array_agg(DISTINCT t_call[s.i]), '{}') INTO bad
      FROM unnest(sel, codes) s(i, r) WHERE s.r NOT IN (0, 23);
    SELECT array_agg(CASE WHEN NOT live[w.k] THEN 1 WHEN w.k = ANY (bad) THEN 2 ELSE 0 END::smallint
                     ORDER BY w.k)
      INTO out FROM generate_subscripts(p_call, 1) w(k);
    UPDATE call c SET state = n_state[w.k], period = n_period[w.k],
                      grant_until = n_grant_until[w.k], posted_until = n_posted[w.k],
                      last_grant = n_last[w.k], hold_call = n_hold_call[w.k],
                      hold_tax = n_hold_tax[w.k], shortfall_micros = n_shortfall[w.k],
                      last_seen_at = n_seen,
                      accepted_at = coalesce(c.accepted_at, n_accepted[w.k]),
                      transfer_ids = c.transfer_ids
                                     || t_id[t_first[w.k]:t_first[w.k] + t_count[w.k] - 1]
      FROM unnest(p_call) WITH ORDINALITY w(id, k)
     WHERE c.id = w.id AND out[w.k] = 0;
    RETURN out;
END
$fn$;
