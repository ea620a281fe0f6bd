-- The ledger's lock order, for a transaction that submits more than one batch: take up front,
-- in the order ledger_submit takes them (open holds by id, then balance rows by (account,
-- shard)), every row its batches may touch, so no later batch of the transaction waits for a
-- row while holding one that comes after it. Without this, a transaction that first resolves a
-- hold (its rows: the shards of the connection that made it) and then moves new money (this
-- connection's shards) can hold revenue shard 9 while waiting for shard 3, which a concurrent
-- batch holds while waiting for shard 9: a lock cycle PostgreSQL breaks by aborting one side.
-- p_holds: holds the transaction may post, void or expire (their rows come with them);
-- p_accounts: accounts its new transfers may name (their rows for this connection's shard).
-- Returns how many balance rows it locked.
CREATE FUNCTION ledger_lock(p_holds uuid[], p_accounts text[])
RETURNS integer LANGUAGE plpgsql AS $fn$
DECLARE
    pid_ int := pg_backend_pid();
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
