-- The worker's End of a call the core had closed as lost (the silence rule): when it arrived.
-- The call then charges the talk its worker measured past the close, once (switch.session's late
-- End); the CDR carries the worker's disposition and this instant, its ended_at the close.
ALTER TABLE call ADD COLUMN late_end_at timestamptz;
ALTER TABLE cdr ADD COLUMN late_end_at timestamptz;
