-- A proof call whose worker died mid-call sends no end report, ever: the family sweep closes a
-- `calling` row older than the longest call can last as failed with outcome 'lost'
-- (families.number_proof.close_lost). The partial index keeps that look cheap.
ALTER TABLE family_number_proof DROP CONSTRAINT family_number_proof_outcome_check;
ALTER TABLE family_number_proof ADD CONSTRAINT family_number_proof_outcome_check
    CHECK (outcome IN ('spoken', 'hung_up', 'no_answer', 'busy', 'failed', 'no_worker', 'lost'));
CREATE INDEX family_number_proof_calling ON family_number_proof (placed_at)
    WHERE state = 'calling';
