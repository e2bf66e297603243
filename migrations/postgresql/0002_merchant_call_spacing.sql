-- One row per merchant, shared by every daemon on this table, so that a merchant's
-- `max_requests_per_second` (WeChat Pay's limit for the merchant) holds across all of them
-- together, and so that a FREQUENCY_LIMITED slow-down one daemon meets slows them all.
--
-- - next_call_at: the earliest the merchant's next call may go. A daemon reserves a slot
--   with one upsert, `next_call_at = greatest(next_call_at, now()) + spacing`, and waits
--   until its slot (the row lock orders concurrent reservations; times are the server's,
--   so the hosts' clocks do not matter).
-- - slowed_to, slowed_at: the calls per second the merchant was slowed down to when WeChat
--   Pay last answered FREQUENCY_LIMITED, and when. Each daemon recovers from it on its own,
--   by the same rule and from the same instant, so they agree without talking.
--
-- The row is tiny and updated once per call; it never grows the table.
CREATE TABLE merchant_call_spacing (
    mch_id       text             PRIMARY KEY,
    next_call_at timestamptz      NOT NULL,
    slowed_to    double precision CHECK (slowed_to > 0),
    slowed_at    timestamptz,
    CHECK ((slowed_to IS NULL) = (slowed_at IS NULL))
);
