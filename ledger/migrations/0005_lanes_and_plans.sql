-- Two group-commit batches side by side, and plans that do not depend on statistics.
--
-- 1. The shard new money lands on: `ledger.shard` when the transaction set it (set_config(...,
--    true)), else the backend pid as before; taken modulo the account's shards either way. Group
--    commit runs each lane's batches on the lane's own shards, and each lane carries the calls of
--    its own funding accounts: the holds a batch posts are the ones its lane made, so two batches
--    in flight lock disjoint rows of revenue and tax (and of prepaid accounts) and no longer
--    queue behind each other. ledger_lock takes the same rows, so the lock order is unchanged:
--    open holds by id, then balance rows by (account, shard). Resolutions still land on their
--    hold's rows.
-- 2. Every table ledger_submit reads, it reads by key. With statistics older than the table (a
--    ledger that grew since autovacuum last analyzed it, as in the first minute of a busy core)
--    the planner hashed the whole of ledger_transfer for the batch's ids: 2 ms at 30,000
--    transfers, growing with the ledger. Sequential scans are off inside the function, so the
--    lookups are index probes whatever the statistics say.
-- 3. The holds the batch resolves are read once (with their shards), not four times.
-- Otherwise as 0004: results, locks and their order are unchanged (tests/ledger/
-- test_submit_as_0004.py compares the two on random batches).

CREATE OR REPLACE FUNCTION ledger_submit(
    p_id uuid[], p_kind smallint[], p_debit text[], p_credit text[], p_amount bigint[],
    p_hold uuid[], p_expires_in integer[], p_linked boolean[], p_code text[], p_ref text[],
    p_now timestamptz DEFAULT NULL, p_expiry_max integer DEFAULT 86400)
RETURNS smallint[] LANGUAGE plpgsql
SET enable_seqscan = off
AS $fn$
#variable_conflict use_column
DECLARE
    -- Mirror of ledger.results.TransferResult (a test compares the two).
    R_OK CONSTANT smallint := 0;
    R_LINKED_EVENT_FAILED CONSTANT smallint := 1;
    R_LINKED_EVENT_CHAIN_OPEN CONSTANT smallint := 2;
    R_ID_MUST_NOT_BE_ZERO CONSTANT smallint := 3;
    R_HOLD_ID_MUST_BE_NULL CONSTANT smallint := 4;
    R_DEBIT_ACCOUNT_REQUIRED CONSTANT smallint := 5;
    R_CREDIT_ACCOUNT_REQUIRED CONSTANT smallint := 6;
    R_HOLD_ID_REQUIRED CONSTANT smallint := 7;
    R_HOLD_ID_MUST_BE_DIFFERENT CONSTANT smallint := 8;
    R_ACCOUNTS_MUST_BE_DIFFERENT CONSTANT smallint := 9;
    R_AMOUNT_MUST_BE_POSITIVE CONSTANT smallint := 10;
    R_AMOUNT_OUT_OF_RANGE CONSTANT smallint := 11;
    R_EXPIRY_RESERVED_FOR_HOLD CONSTANT smallint := 12;
    R_EXPIRY_OUT_OF_RANGE CONSTANT smallint := 13;
    R_EXISTS_WITH_DIFFERENT_KIND CONSTANT smallint := 14;
    R_EXISTS_WITH_DIFFERENT_FLAGS CONSTANT smallint := 15;
    R_EXISTS_WITH_DIFFERENT_HOLD CONSTANT smallint := 16;
    R_EXISTS_WITH_DIFFERENT_EXPIRY CONSTANT smallint := 17;
    R_EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT CONSTANT smallint := 18;
    R_EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT CONSTANT smallint := 19;
    R_EXISTS_WITH_DIFFERENT_AMOUNT CONSTANT smallint := 20;
    R_EXISTS_WITH_DIFFERENT_CODE CONSTANT smallint := 21;
    R_EXISTS_WITH_DIFFERENT_REF CONSTANT smallint := 22;
    R_EXISTS CONSTANT smallint := 23;
    R_DEBIT_ACCOUNT_NOT_FOUND CONSTANT smallint := 24;
    R_CREDIT_ACCOUNT_NOT_FOUND CONSTANT smallint := 25;
    R_CURRENCY_MISMATCH CONSTANT smallint := 26;
    R_HOLD_NOT_FOUND CONSTANT smallint := 27;
    R_NOT_A_HOLD CONSTANT smallint := 28;
    R_HOLD_HAS_DIFFERENT_DEBIT_ACCOUNT CONSTANT smallint := 29;
    R_HOLD_HAS_DIFFERENT_CREDIT_ACCOUNT CONSTANT smallint := 30;
    R_EXCEEDS_HOLD_AMOUNT CONSTANT smallint := 31;
    R_HOLD_HAS_DIFFERENT_AMOUNT CONSTANT smallint := 32;
    R_HOLD_ALREADY_POSTED CONSTANT smallint := 33;
    R_HOLD_ALREADY_VOIDED CONSTANT smallint := 34;
    R_HOLD_EXPIRED CONSTANT smallint := 35;
    R_HOLD_NOT_EXPIRED CONSTANT smallint := 36;
    R_OVERFLOWS_DEBITS CONSTANT smallint := 37;
    R_OVERFLOWS_CREDITS CONSTANT smallint := 38;
    R_INSUFFICIENT_FUNDS CONSTANT smallint := 39;

    K_SINGLE CONSTANT smallint := 1;
    K_HOLD CONSTANT smallint := 2;
    K_POST CONSTANT smallint := 3;
    K_VOID CONSTANT smallint := 4;
    K_EXPIRE CONSTANT smallint := 5;
    -- Hold states, numbered as the kind of the transfer that resolved it.
    S_PENDING CONSTANT smallint := 2;

    BIGINT_MAX CONSTANT bigint := 9223372036854775807;
    AMOUNT_MAX CONSTANT bigint := 1000000000000000;   -- ledger.transfers.AMOUNT_MAX
    NIL CONSTANT uuid := '00000000-0000-0000-0000-000000000000';

    n int := coalesce(cardinality(p_id), 0);
    now_ timestamptz := coalesce(p_now, now());
    -- Picks this batch's shard of each account (see 1. above).
    pid_ int := coalesce(nullif(current_setting('ledger.shard', true), '')::int,
                         pg_backend_pid());

    -- Holds named by posts, voids and expires: one slot each, sorted by id.
    s_id uuid[]; s_found boolean[]; s_kind smallint[]; s_debit text[]; s_credit text[];
    s_dbal int[]; s_cbal int[]; s_amount bigint[]; s_expires_at timestamptz[];
    s_state smallint[]; s_code text[]; s_ref text[]; s_dshard smallint[]; s_cshard smallint[];
    t_slot int[]; t_own_slot int[];
    -- Balance rows touched by the batch, locked, sorted by (account, shard).
    b_account text[]; b_shard smallint[]; b_currency text[]; b_no_overdraft boolean[];
    b_dp bigint[]; b_dpo bigint[]; b_cp bigint[]; b_cpo bigint[]; b_dirty boolean[];
    t_dbal int[]; t_cbal int[];
    -- What the ids already are: an earlier transfer, a remembered rejection, an earlier line.
    x_found boolean[]; x_kind smallint[]; x_debit text[]; x_credit text[]; x_amount bigint[];
    x_hold uuid[]; x_expires_in int[]; x_linked boolean[]; x_code text[]; x_ref text[];
    x_rejected smallint[]; t_prev int[];
    -- Decisions.
    res smallint[]; acc boolean[];
    e_dbal int[]; e_cbal int[]; e_pend bigint[]; e_post bigint[]; e_amount bigint[];
    e_code text[]; e_ref text[];

    i int; j int; f int; s int; k smallint; amt bigint; r smallint; pr smallint;
    da int; ca int; pend bigint; post bigint;
    chain_start int := NULL; chain_failed boolean := false;
    c_kind smallint; c_linked boolean; c_hold uuid; c_expires_in int; c_debit text; c_credit text;
    c_amount bigint; c_code text; c_ref text; c_found boolean;
BEGIN
    IF n = 0 THEN
        RETURN '{}'::smallint[];
    END IF;
    IF cardinality(p_kind) <> n OR cardinality(p_debit) <> n OR cardinality(p_credit) <> n
       OR cardinality(p_amount) <> n OR cardinality(p_hold) <> n
       OR cardinality(p_expires_in) <> n OR cardinality(p_linked) <> n
       OR cardinality(p_code) <> n OR cardinality(p_ref) <> n THEN
        RAISE EXCEPTION 'ledger_submit: argument arrays differ in length' USING ERRCODE = '22023';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(p_kind, p_linked) u(k, l)
               WHERE k IS NULL OR k NOT BETWEEN 1 AND 5 OR l IS NULL) THEN
        RAISE EXCEPTION 'ledger_submit: kind must be 1..5 and linked not null' USING ERRCODE = '22023';
    END IF;

    -- 1. Lock the open holds this batch resolves, then read them (and how closed ones ended).
    SELECT coalesce(array_agg(h ORDER BY h), '{}') INTO s_id
    FROM (SELECT DISTINCT h FROM unnest(p_hold, p_kind) u(h, k) WHERE k >= K_POST AND h IS NOT NULL) d;
    IF cardinality(s_id) > 0 THEN
        PERFORM 1 FROM ledger_hold_open WHERE id = ANY (s_id) ORDER BY id FOR UPDATE;
        SELECT array_agg(h.id IS NOT NULL ORDER BY s.ord), array_agg(h.kind ORDER BY s.ord),
               array_agg(h.debit_account_id ORDER BY s.ord), array_agg(h.credit_account_id ORDER BY s.ord),
               array_agg(h.amount ORDER BY s.ord), array_agg(h.expires_at ORDER BY s.ord),
               array_agg(coalesce(rs.kind, S_PENDING) ORDER BY s.ord),
               array_agg(h.code ORDER BY s.ord), array_agg(h.ref ORDER BY s.ord),
               array_agg(h.debit_shard ORDER BY s.ord), array_agg(h.credit_shard ORDER BY s.ord)
        INTO s_found, s_kind, s_debit, s_credit, s_amount, s_expires_at, s_state, s_code, s_ref,
             s_dshard, s_cshard
        FROM unnest(s_id) WITH ORDINALITY s(id, ord)
        LEFT JOIN ledger_transfer h ON h.id = s.id
        LEFT JOIN ledger_transfer rs ON rs.pending_id = s.id;

        SELECT array_agg(hs.ord ORDER BY t.ord), array_agg(os.ord ORDER BY t.ord)
        INTO t_slot, t_own_slot
        FROM unnest(p_id, p_hold, p_kind) WITH ORDINALITY t(id, h, k, ord)
        LEFT JOIN unnest(s_id) WITH ORDINALITY hs(id, ord) ON hs.id = t.h AND t.k >= K_POST
        LEFT JOIN unnest(s_id) WITH ORDINALITY os(id, ord) ON os.id = t.id AND t.k <= K_HOLD;
    END IF;

    -- 2. Lock every balance row the batch may touch, in (account, shard) order, and read it.
    WITH named AS (
        SELECT a.id, (pid_ % a.shards)::smallint AS shard
        FROM ledger_account a
        WHERE a.id IN (SELECT unnest(p_debit) UNION SELECT unnest(p_credit))
    ), pairs AS (
        SELECT id AS account_id, shard FROM named
        UNION   -- the rows of the holds read in 1 (NULL: no such transfer)
        SELECT a, s FROM unnest(s_debit, s_dshard) u(a, s) WHERE a IS NOT NULL
        UNION
        SELECT a, s FROM unnest(s_credit, s_cshard) u(a, s) WHERE a IS NOT NULL
    )
    SELECT array_agg(q.account_id ORDER BY q.account_id, q.shard),
           array_agg(q.shard ORDER BY q.account_id, q.shard),
           array_agg(q.currency ORDER BY q.account_id, q.shard),
           array_agg(q.no_overdraft ORDER BY q.account_id, q.shard),
           array_agg(q.debits_pending ORDER BY q.account_id, q.shard),
           array_agg(q.debits_posted ORDER BY q.account_id, q.shard),
           array_agg(q.credits_pending ORDER BY q.account_id, q.shard),
           array_agg(q.credits_posted ORDER BY q.account_id, q.shard)
    INTO b_account, b_shard, b_currency, b_no_overdraft, b_dp, b_dpo, b_cp, b_cpo
    FROM (SELECT b.account_id, b.shard, a.currency, b.no_overdraft, b.debits_pending,
                 b.debits_posted, b.credits_pending, b.credits_posted
          FROM ledger_balance b JOIN ledger_account a ON a.id = b.account_id
          WHERE (b.account_id, b.shard) IN (SELECT account_id, shard FROM pairs)
          ORDER BY b.account_id, b.shard
          FOR UPDATE OF b) q;
    b_dirty := array_fill(false, ARRAY[coalesce(cardinality(b_account), 0)]);

    -- Where each new transfer lands: its accounts' rows for this connection's shard.
    -- (One row per account, made once: joined as a subquery it was made again for every
    -- transfer, a cost quadratic in the batch.)
    WITH own AS MATERIALIZED (
        SELECT u.a, u.ord
        FROM unnest(b_account, b_shard) WITH ORDINALITY u(a, s, ord)
        JOIN ledger_account a ON a.id = u.a
        WHERE u.s = pid_ % a.shards
    )
    SELECT array_agg(db.ord ORDER BY t.ord), array_agg(cb.ord ORDER BY t.ord)
    INTO t_dbal, t_cbal
    FROM unnest(p_debit, p_credit) WITH ORDINALITY t(d, c, ord)
    LEFT JOIN own db ON db.a = t.d
    LEFT JOIN own cb ON cb.a = t.c;
    -- Where each stored hold's resolution lands: the hold's own rows.
    IF cardinality(s_id) > 0 THEN
        SELECT array_agg(db.ord ORDER BY h.ord), array_agg(cb.ord ORDER BY h.ord)
        INTO s_dbal, s_cbal
        FROM unnest(s_debit, s_dshard, s_credit, s_cshard) WITH ORDINALITY h(d, ds, c, cs, ord)
        LEFT JOIN unnest(b_account, b_shard) WITH ORDINALITY db(a, s, ord)
               ON db.a = h.d AND db.s = h.ds
        LEFT JOIN unnest(b_account, b_shard) WITH ORDINALITY cb(a, s, ord)
               ON cb.a = h.c AND cb.s = h.cs;
    END IF;

    -- 3. What the ids already are (read after the locks, so a resolver that went first is seen).
    SELECT array_agg(x.id IS NOT NULL ORDER BY t.ord), array_agg(x.kind ORDER BY t.ord),
           array_agg(x.debit_account_id ORDER BY t.ord), array_agg(x.credit_account_id ORDER BY t.ord),
           array_agg(x.amount ORDER BY t.ord), array_agg(x.pending_id ORDER BY t.ord),
           array_agg(x.expires_in ORDER BY t.ord), array_agg(x.linked ORDER BY t.ord),
           array_agg(x.code ORDER BY t.ord), array_agg(x.ref ORDER BY t.ord),
           array_agg(rj.result ORDER BY t.ord), array_agg(t.prev ORDER BY t.ord)
    INTO x_found, x_kind, x_debit, x_credit, x_amount, x_hold, x_expires_in, x_linked, x_code,
         x_ref, x_rejected, t_prev
    FROM (SELECT u.id, u.ord, lag(u.ord) OVER (PARTITION BY u.id ORDER BY u.ord) AS prev
          FROM unnest(p_id) WITH ORDINALITY u(id, ord)) t
    LEFT JOIN ledger_transfer x ON x.id = t.id
    LEFT JOIN ledger_rejection rj ON rj.id = t.id;

    -- 4. Decide each transfer in input order.
    res := array_fill(NULL::smallint, ARRAY[n]);
    acc := array_fill(false, ARRAY[n]);
    e_dbal := array_fill(NULL::int, ARRAY[n]);
    e_cbal := array_fill(NULL::int, ARRAY[n]);
    e_pend := array_fill(0::bigint, ARRAY[n]);
    e_post := array_fill(0::bigint, ARRAY[n]);
    e_amount := array_fill(NULL::bigint, ARRAY[n]);
    e_code := array_fill(NULL::text, ARRAY[n]);
    e_ref := array_fill(NULL::text, ARRAY[n]);

    FOR i IN 1..n LOOP
        IF chain_start IS NULL AND p_linked[i] THEN
            chain_start := i;
        END IF;
        k := p_kind[i];
        amt := p_amount[i];
        r := R_OK;
        da := NULL; ca := NULL; s := NULL; pend := 0; post := 0;

        IF chain_failed THEN
            r := R_LINKED_EVENT_FAILED;
        ELSIF i = n AND p_linked[i] THEN
            r := R_LINKED_EVENT_CHAIN_OPEN;
        ELSIF p_id[i] IS NULL OR p_id[i] = NIL THEN
            r := R_ID_MUST_NOT_BE_ZERO;
        ELSIF k <= K_HOLD THEN
            IF p_hold[i] IS NOT NULL THEN r := R_HOLD_ID_MUST_BE_NULL;
            ELSIF p_debit[i] IS NULL THEN r := R_DEBIT_ACCOUNT_REQUIRED;
            ELSIF p_credit[i] IS NULL THEN r := R_CREDIT_ACCOUNT_REQUIRED;
            ELSIF p_debit[i] = p_credit[i] THEN r := R_ACCOUNTS_MUST_BE_DIFFERENT;
            ELSIF amt IS NULL OR amt <= 0 THEN r := R_AMOUNT_MUST_BE_POSITIVE;
            ELSIF amt > AMOUNT_MAX THEN r := R_AMOUNT_OUT_OF_RANGE;
            ELSIF k = K_SINGLE AND p_expires_in[i] IS NOT NULL THEN r := R_EXPIRY_RESERVED_FOR_HOLD;
            ELSIF k = K_HOLD AND (p_expires_in[i] IS NULL OR p_expires_in[i] <= 0
                                  OR p_expires_in[i] > p_expiry_max) THEN
                r := R_EXPIRY_OUT_OF_RANGE;
            END IF;
        ELSE
            IF p_hold[i] IS NULL OR p_hold[i] = NIL THEN r := R_HOLD_ID_REQUIRED;
            ELSIF p_hold[i] = p_id[i] THEN r := R_HOLD_ID_MUST_BE_DIFFERENT;
            ELSIF p_debit[i] = p_credit[i] THEN r := R_ACCOUNTS_MUST_BE_DIFFERENT;
            ELSIF amt < 0 THEN r := R_AMOUNT_MUST_BE_POSITIVE;
            ELSIF amt > AMOUNT_MAX THEN r := R_AMOUNT_OUT_OF_RANGE;
            ELSIF p_expires_in[i] IS NOT NULL THEN r := R_EXPIRY_RESERVED_FOR_HOLD;
            END IF;
        END IF;

        -- The id seen before: in this batch, in the ledger, or as a rejection.
        IF r = R_OK THEN
            -- Earlier lines with this id: one accepted, or the first rejection to remember.
            c_found := false; pr := NULL;
            f := t_prev[i];
            WHILE f IS NOT NULL LOOP
                IF acc[f] THEN
                    c_found := true;
                    c_kind := p_kind[f]; c_linked := p_linked[f]; c_hold := p_hold[f];
                    c_expires_in := p_expires_in[f]; c_amount := e_amount[f];
                    c_debit := b_account[e_dbal[f]]; c_credit := b_account[e_cbal[f]];
                    c_code := e_code[f]; c_ref := e_ref[f];
                    EXIT;
                END IF;
                IF res[f] >= R_HOLD_ID_MUST_BE_NULL
                   AND res[f] NOT BETWEEN R_EXISTS_WITH_DIFFERENT_KIND AND R_EXISTS THEN
                    pr := res[f];
                END IF;
                f := t_prev[f];
            END LOOP;
            IF c_found THEN
                NULL;
            ELSIF x_found[i] THEN
                c_found := true;
                c_kind := x_kind[i]; c_linked := x_linked[i]; c_hold := x_hold[i];
                c_expires_in := x_expires_in[i]; c_amount := x_amount[i];
                c_debit := x_debit[i]; c_credit := x_credit[i]; c_code := x_code[i]; c_ref := x_ref[i];
            ELSIF x_rejected[i] IS NOT NULL THEN
                r := x_rejected[i];
            ELSIF pr IS NOT NULL THEN
                r := pr;
            END IF;
            IF c_found THEN
                IF c_kind <> k THEN r := R_EXISTS_WITH_DIFFERENT_KIND;
                ELSIF c_linked <> p_linked[i] THEN r := R_EXISTS_WITH_DIFFERENT_FLAGS;
                ELSIF c_hold IS DISTINCT FROM p_hold[i] THEN r := R_EXISTS_WITH_DIFFERENT_HOLD;
                ELSIF c_expires_in IS DISTINCT FROM p_expires_in[i] THEN
                    r := R_EXISTS_WITH_DIFFERENT_EXPIRY;
                ELSIF p_debit[i] <> c_debit THEN r := R_EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT;
                ELSIF p_credit[i] <> c_credit THEN r := R_EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT;
                ELSIF amt <> 0 AND amt <> c_amount THEN r := R_EXISTS_WITH_DIFFERENT_AMOUNT;
                ELSIF p_code[i] <> c_code THEN r := R_EXISTS_WITH_DIFFERENT_CODE;
                ELSIF p_ref[i] <> c_ref THEN r := R_EXISTS_WITH_DIFFERENT_REF;
                ELSE r := R_EXISTS;
                END IF;
            END IF;
        END IF;

        -- Against the state: accounts and funds, or the hold.
        IF r = R_OK THEN
            IF k <= K_HOLD THEN
                da := t_dbal[i]; ca := t_cbal[i];
                IF da IS NULL THEN r := R_DEBIT_ACCOUNT_NOT_FOUND;
                ELSIF ca IS NULL THEN r := R_CREDIT_ACCOUNT_NOT_FOUND;
                ELSIF b_currency[da] <> b_currency[ca] THEN r := R_CURRENCY_MISMATCH;
                ELSIF amt > BIGINT_MAX - b_dp[da] - b_dpo[da] THEN r := R_OVERFLOWS_DEBITS;
                ELSIF amt > BIGINT_MAX - b_cp[ca] - b_cpo[ca] THEN r := R_OVERFLOWS_CREDITS;
                ELSIF b_no_overdraft[da] AND amt > b_cpo[da] - b_dp[da] - b_dpo[da] THEN
                    r := R_INSUFFICIENT_FUNDS;
                ELSE
                    IF k = K_SINGLE THEN post := amt; ELSE pend := amt; END IF;
                    e_amount[i] := amt;
                    e_code[i] := coalesce(p_code[i], 'other');
                    e_ref[i] := coalesce(p_ref[i], '');
                    s := t_own_slot[i];
                    IF s IS NOT NULL THEN   -- a transfer that a later one of this batch names
                        -- as its hold: a single is found there, and is not a hold
                        s_found[s] := true; s_kind[s] := k; s_state[s] := S_PENDING;
                        s_debit[s] := p_debit[i]; s_credit[s] := p_credit[i];
                        s_dbal[s] := da; s_cbal[s] := ca; s_amount[s] := amt;
                        s_expires_at[s] := now_ + make_interval(secs => p_expires_in[i]);
                        s_code[s] := e_code[i]; s_ref[s] := e_ref[i];
                    END IF;
                END IF;
            ELSE
                s := t_slot[i];
                IF s IS NULL OR NOT coalesce(s_found[s], false) THEN r := R_HOLD_NOT_FOUND;
                ELSIF s_kind[s] <> K_HOLD THEN r := R_NOT_A_HOLD;
                ELSIF p_debit[i] <> s_debit[s] THEN r := R_HOLD_HAS_DIFFERENT_DEBIT_ACCOUNT;
                ELSIF p_credit[i] <> s_credit[s] THEN r := R_HOLD_HAS_DIFFERENT_CREDIT_ACCOUNT;
                ELSIF k = K_POST AND amt > s_amount[s] THEN r := R_EXCEEDS_HOLD_AMOUNT;
                ELSIF k <> K_POST AND amt <> 0 AND amt <> s_amount[s] THEN
                    r := R_HOLD_HAS_DIFFERENT_AMOUNT;
                ELSIF s_state[s] = K_POST THEN r := R_HOLD_ALREADY_POSTED;
                ELSIF s_state[s] = K_VOID THEN r := R_HOLD_ALREADY_VOIDED;
                ELSIF s_state[s] = K_EXPIRE THEN r := R_HOLD_EXPIRED;
                ELSIF k <> K_EXPIRE AND now_ >= s_expires_at[s] THEN r := R_HOLD_EXPIRED;
                ELSIF k = K_EXPIRE AND now_ < s_expires_at[s] THEN r := R_HOLD_NOT_EXPIRED;
                ELSE
                    da := s_dbal[s]; ca := s_cbal[s];
                    IF da IS NULL OR ca IS NULL THEN
                        RAISE EXCEPTION 'ledger_submit: balance rows of hold % are missing', s_id[s]
                            USING ERRCODE = 'XX000';
                    END IF;
                    pend := -s_amount[s];
                    IF k = K_POST THEN
                        post := CASE WHEN coalesce(amt, 0) = 0 THEN s_amount[s] ELSE amt END;
                        e_amount[i] := post;
                    ELSE
                        e_amount[i] := s_amount[s];
                    END IF;
                    e_code[i] := coalesce(p_code[i], s_code[s]);
                    e_ref[i] := coalesce(p_ref[i], s_ref[s]);
                    s_state[s] := k;
                END IF;
            END IF;
        END IF;

        IF r = R_OK THEN
            b_dp[da] := b_dp[da] + pend;  b_cp[ca] := b_cp[ca] + pend;
            b_dpo[da] := b_dpo[da] + post; b_cpo[ca] := b_cpo[ca] + post;
            b_dirty[da] := true; b_dirty[ca] := true;
            e_dbal[i] := da; e_cbal[i] := ca; e_pend[i] := pend; e_post[i] := post;
            acc[i] := true;
        ELSIF r <> R_EXISTS AND chain_start IS NOT NULL AND NOT chain_failed THEN
            -- The chain fails as a whole: undo its members, latest first.
            chain_failed := true;
            FOR j IN REVERSE i - 1 .. chain_start LOOP
                IF acc[j] THEN
                    da := e_dbal[j]; ca := e_cbal[j];
                    b_dp[da] := b_dp[da] - e_pend[j];  b_cp[ca] := b_cp[ca] - e_pend[j];
                    b_dpo[da] := b_dpo[da] - e_post[j]; b_cpo[ca] := b_cpo[ca] - e_post[j];
                    IF p_kind[j] >= K_POST THEN
                        s_state[t_slot[j]] := S_PENDING;
                    ELSIF p_kind[j] <= K_HOLD AND t_own_slot[j] IS NOT NULL THEN
                        s_found[t_own_slot[j]] := false;
                    END IF;
                    acc[j] := false;
                END IF;
                res[j] := R_LINKED_EVENT_FAILED;
            END LOOP;
        END IF;
        res[i] := r;
        IF NOT p_linked[i] THEN
            chain_start := NULL;
            chain_failed := false;
        END IF;
    END LOOP;

    -- 5. Write: transfers, open holds, rejections, counters.
    INSERT INTO ledger_transfer (id, kind, debit_account_id, debit_shard, credit_account_id,
                                 credit_shard, amount, pending_id, expires_in, expires_at, linked,
                                 code, ref, created_at)
    SELECT t.id, t.k, b_account[t.da], b_shard[t.da], b_account[t.ca], b_shard[t.ca], t.amount,
           t.h, t.ei, CASE WHEN t.k = K_HOLD THEN now_ + make_interval(secs => t.ei) END,
           t.l, t.code, t.ref, now_
    FROM unnest(p_id, p_kind, e_dbal, e_cbal, e_amount, p_hold, p_expires_in, p_linked, e_code,
                e_ref, acc)
         WITH ORDINALITY t(id, k, da, ca, amount, h, ei, l, code, ref, ok, ord)
    WHERE t.ok
    ORDER BY t.ord;

    INSERT INTO ledger_hold_open (id, expires_at)
    SELECT t.id, now_ + make_interval(secs => t.ei)
    FROM unnest(p_id, p_kind, p_expires_in, acc) t(id, k, ei, ok)
    WHERE t.ok AND t.k = K_HOLD;
    DELETE FROM ledger_hold_open o
    USING unnest(p_hold, p_kind, acc) t(h, k, ok)
    WHERE t.ok AND t.k >= K_POST AND o.id = t.h;

    INSERT INTO ledger_rejection (id, result, kind, debit_account_id, credit_account_id, amount,
                                  pending_id, rejected_at)
    SELECT DISTINCT ON (t.id) t.id, t.r, t.k, t.d, t.c, t.a, t.h, now_
    FROM unnest(p_id, res, p_kind, p_debit, p_credit, p_amount, p_hold, x_rejected)
         WITH ORDINALITY t(id, r, k, d, c, a, h, xr, ord)
    WHERE t.r >= R_HOLD_ID_MUST_BE_NULL
      AND t.r NOT BETWEEN R_EXISTS_WITH_DIFFERENT_KIND AND R_EXISTS
      AND t.xr IS NULL
    ORDER BY t.id, t.ord
    ON CONFLICT (id) DO NOTHING;

    UPDATE ledger_balance b
    SET debits_pending = u.dp, debits_posted = u.dpo,
        credits_pending = u.cp, credits_posted = u.cpo
    FROM unnest(b_account, b_shard, b_dp, b_dpo, b_cp, b_cpo, b_dirty) u(a, s, dp, dpo, cp, cpo, dirty)
    WHERE u.dirty AND b.account_id = u.a AND b.shard = u.s;

    RETURN res;
END
$fn$;

-- The rows ledger_submit would take: the same shard rule.
CREATE OR REPLACE FUNCTION ledger_lock(p_holds uuid[], p_accounts text[])
RETURNS integer LANGUAGE plpgsql AS $fn$
DECLARE
    pid_ int := coalesce(nullif(current_setting('ledger.shard', true), '')::int,
                         pg_backend_pid());
    locked int;
BEGIN
    PERFORM 1 FROM ledger_hold_open WHERE id = ANY (p_holds) ORDER BY id FOR UPDATE;
    WITH pairs AS (
        SELECT a.id AS account_id, (pid_ % a.shards)::smallint AS shard
        FROM ledger_account a WHERE a.id = ANY (p_accounts)
        UNION
        SELECT h.debit_account_id, h.debit_shard FROM ledger_transfer h WHERE h.id = ANY (p_holds)
        UNION
        SELECT h.credit_account_id, h.credit_shard FROM ledger_transfer h WHERE h.id = ANY (p_holds)
    )
    SELECT count(*) INTO locked
    FROM (SELECT 1 FROM ledger_balance b
          WHERE (b.account_id, b.shard) IN (SELECT account_id, shard FROM pairs)
          ORDER BY b.account_id, b.shard
          FOR UPDATE OF b) q;
    RETURN locked;
END
$fn$;
