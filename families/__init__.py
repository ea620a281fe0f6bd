"""Families: account holders, their owned numbers, payments through a provider, fees by regulatory
profile, deposits, contact requests, blocks, history and refunds.

Floor: beside switch. May import ledger, rating, ivr and switch.provisioning.directory; never web or ops. Every
holder action that changes something leaves a row in `family_audit` in the same transaction, and
every money movement is a ledger transfer whose id is derived from its idempotency key.

Money invariants of this package (tests cite them by number):

F1. A payment funds at most once: its principal and fee transfers have ids derived from the
    payment id, and a payment is keyed on the holder's idempotency key and the provider's reference.
F2. Principal and fee are separate transfers, written in one transaction with the payment's move to
    `confirmed`; a declined or failed payment moves no money.
F3. A fee never exceeds the cap of the profile that applies, and is zero where the profile forbids
    ancillary fees; a third party's fee is passed through exactly.
F4. A refund never exceeds what the original payment deposited minus what was refunded of it, nor
    the account's available balance; it goes back to the payment's own reference.
"""
