-- Every refund of unused balance in one place, whichever way it was made: an operator's
-- (`refund`, web.money: one per funding reference, settled with the processor outside the node)
-- and a family's (`family_refund`, families.refunds: one line per payment, sent to the payment
-- provider by the node and retried until taken). The two tables keep their own rules; this view
-- only reads them. Both move money the same way: prepaid account -> refunds_payable, one ledger
-- transfer each (`transfer_id`).
CREATE VIEW refund_line AS
    SELECT 'operator'::text AS source, r.transfer_id, r.account, r.amount,
           r.funding_ref AS payment_ref, 'requested'::text AS reason, r.requested_by AS actor,
           NULL::text AS delivery, r.created_at
    FROM refund r
    UNION ALL
    SELECT 'family'::text, f.id, p.account, f.amount, f.provider_ref, f.reason,
           CASE WHEN f.reason = 'inactivity' THEN 'node:inactivity'
                ELSE 'holder:' || p.holder_id::text END, f.state, f.created_at
    FROM family_refund f JOIN family_payment p ON p.id = f.payment_id;
