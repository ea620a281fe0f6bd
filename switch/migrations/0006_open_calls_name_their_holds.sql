-- Calls in progress at the upgrade to the charging loop's row (0003_charging) name no open hold:
-- their row was written before hold_call and hold_tax existed. Without a name the core would
-- treat their money as not held (collect the talk from the account while the old hold still
-- reserves it, and grant no further period). Name, for each such call, the open hold of each part
-- that the ledger holds for it (a hold of the call, on its funding account, not yet resolved;
-- the latest, as the old loop held one period at a time). A hold already past its expiry is named
-- too: the next step meets `hold_expired` and settles as for any expired hold. A call with no
-- open hold keeps NULL, which is what it means. Calls of the current loop always name theirs.
UPDATE call c
   SET hold_call = (SELECT t.id FROM ledger_hold_open h JOIN ledger_transfer t ON t.id = h.id
                     WHERE t.ref = c.id::text AND t.kind = 2 AND t.code = 'call_charge'
                       AND t.debit_account_id = c.funding_account
                     ORDER BY t.seq DESC LIMIT 1),
       hold_tax = (SELECT t.id FROM ledger_hold_open h JOIN ledger_transfer t ON t.id = h.id
                    WHERE t.ref = c.id::text AND t.kind = 2 AND t.code = 'tax'
                      AND t.debit_account_id = c.funding_account
                    ORDER BY t.seq DESC LIMIT 1)
 WHERE c.state IN ('talking', 'last') AND c.hold_call IS NULL AND c.hold_tax IS NULL
   AND c.funding_account IS NOT NULL AND NOT c.privileged;
