-- The inactivity sweep asks, per funded number, whether any call it paid for ended recently.
CREATE INDEX cdr_funding_account ON cdr (funding_account, ended_at);
