-- Order queries (orderquery) and the backup domain: what a query learned about a payment
-- is kept on the row, and the history records each HTTP call with its endpoint and host.

ALTER TABLE orders ADD COLUMN trade_state    TEXT;     -- the last trade_state an order query returned
ALTER TABLE orders ADD COLUMN transaction_id TEXT;     -- for a paid order: WeChat Pay's transaction id
ALTER TABLE orders ADD COLUMN total_fee      INTEGER;  -- for a paid order: the amount, in fen
ALTER TABLE orders ADD COLUMN time_end       TEXT;     -- for a paid order: when it was paid (yyyyMMddHHmmss, Beijing time)
ALTER TABLE orders ADD COLUMN trade_type     TEXT;     -- for a paid order: JSAPI, NATIVE, APP, MWEB, ...

-- SQLite cannot change a CHECK constraint in place: rebuild the history table.
CREATE TABLE close_attempts_v2 (
    id            INTEGER PRIMARY KEY,
    order_id      INTEGER NOT NULL,
    attempt       INTEGER NOT NULL,
    call          TEXT    CHECK (call IS NULL OR call IN ('closeorder', 'orderquery')),
    host          TEXT,
    started_at    INTEGER NOT NULL,
    finished_at   INTEGER NOT NULL,
    latency_ms    INTEGER,
    outcome       TEXT    NOT NULL CHECK (outcome IN (
                      'closed', 'paid', 'retry', 'failed', 'invalid', 'abandoned',
                      'not_paid', 'paying', 'requeued')),
    http_status   INTEGER,
    err_code      TEXT,
    err_code_des  TEXT,
    message       TEXT    NOT NULL
);
INSERT INTO close_attempts_v2
    (id, order_id, attempt, call, host, started_at, finished_at, latency_ms, outcome, http_status,
     err_code, err_code_des, message)
SELECT id, order_id, attempt,
       CASE WHEN outcome IN ('invalid', 'abandoned') THEN NULL ELSE 'closeorder' END,
       NULL, started_at, finished_at, latency_ms, outcome, http_status, err_code, err_code_des, message
  FROM close_attempts;
DROP TABLE close_attempts;
ALTER TABLE close_attempts_v2 RENAME TO close_attempts;
CREATE INDEX close_attempts_by_order ON close_attempts (order_id, id);
