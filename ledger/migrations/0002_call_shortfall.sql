-- A house account kind for call charges that could no longer be collected (a hold that expired
-- during an outage, on an account that cannot pay the stretch now): the charge is credited to
-- revenue and tax as usual and debited here, so the written-off money shows on statements.
ALTER TABLE ledger_account DROP CONSTRAINT ledger_account_kind_check;
ALTER TABLE ledger_account ADD CONSTRAINT ledger_account_kind_check
    CHECK (kind IN ('inmate_debit', 'prepaid_phone', 'revenue', 'tax_payable', 'funding_clearing',
                    'refunds_payable', 'call_clearing', 'call_shortfall'));
