-- Deposit references stored before they were normalized (switch.directory.normalize_ref: blanks
-- trimmed and collapsed to one space, letters upper-cased) take their normalized form, so a later
-- deposit or refund quoting `pay-123 ` finds the deposit stored as `PAY-123` (and funds nothing
-- twice). The ledger's transfers keep the reference they were made with (they are immutable);
-- funding_credit keeps each deposit's transfer id, which is what a repeated deposit answers.
--
-- Two stored references that normalize to the same key were two deposits (both moved money): they
-- are never merged. The one already in normal form, else the earliest, takes the key; each other
-- keeps its stored text and is listed in funding_ref_collision for an operator to review (a
-- warning names each one). A stored reference with no usable normal form (blank, or longer than
-- normalize_ref allows) is left as it is.
CREATE TABLE funding_ref_collision (
    ref          text PRIMARY KEY REFERENCES funding_credit (ref),  -- left as it was stored
    normalized   text NOT NULL,
    kept_ref     text NOT NULL,      -- the deposit that now holds the normalized key
    account      text NOT NULL,
    amount       bigint NOT NULL,
    transfer_id  uuid NOT NULL,
    found_at     timestamptz NOT NULL DEFAULT now()
);

DO $migrate$
DECLARE
    has_refund boolean := to_regclass('refund') IS NOT NULL;
    c record;
BEGIN
    CREATE TEMP TABLE ref_norm ON COMMIT DROP AS
        SELECT ref, account, amount, transfer_id, created_at,
               upper(regexp_replace(btrim(ref, E' \t\n\r\f\v'), '[[:space:]]+', ' ', 'g')) AS key
          FROM funding_credit;
    DELETE FROM ref_norm WHERE key = '' OR length(key) > 100;
    CREATE TEMP TABLE ref_pick ON COMMIT DROP AS
        SELECT DISTINCT ON (key) key, ref AS kept FROM ref_norm
         ORDER BY key, (ref = key) DESC, created_at, ref;
    INSERT INTO funding_ref_collision (ref, normalized, kept_ref, account, amount, transfer_id)
        SELECT n.ref, n.key, p.kept, n.account, n.amount, n.transfer_id
          FROM ref_norm n JOIN ref_pick p USING (key) WHERE n.ref <> p.kept;
    IF has_refund THEN
        -- A refund names its deposit by reference: it follows the deposit to its new key.
        ALTER TABLE refund DROP CONSTRAINT refund_funding_ref_fkey;
        UPDATE refund r SET funding_ref = p.key
          FROM ref_pick p WHERE r.funding_ref = p.kept AND p.kept <> p.key;
    END IF;
    UPDATE funding_credit f SET ref = p.key
      FROM ref_pick p WHERE f.ref = p.kept AND p.kept <> p.key;
    IF has_refund THEN
        ALTER TABLE refund ADD CONSTRAINT refund_funding_ref_fkey
            FOREIGN KEY (funding_ref) REFERENCES funding_credit (ref);
    END IF;
    FOR c IN SELECT * FROM funding_ref_collision ORDER BY normalized, ref LOOP
        RAISE WARNING 'deposit reference % (% micro-units to %) normalizes to %, the key of '
                      'deposit %: kept apart, listed in funding_ref_collision',
                      quote_literal(c.ref), c.amount, c.account, quote_literal(c.normalized),
                      quote_literal(c.kept_ref);
    END LOOP;
END
$migrate$;
