-- The order table: written by the merchant's app (order identity and deadline) and by
-- closeorderd (state, attempts, outcome). Its shape is a public contract: see README.md.

CREATE TABLE orders (
    id               INTEGER PRIMARY KEY,
    -- Written by the app.
    mch_id           TEXT    NOT NULL,
    appid            TEXT    NOT NULL,
    out_trade_no     TEXT    NOT NULL,
    sub_mch_id       TEXT,
    sub_appid        TEXT,
    created_at       INTEGER NOT NULL DEFAULT (unixepoch())
                     CHECK (typeof(created_at) = 'integer'),
    expires_at       INTEGER CHECK (expires_at IS NULL OR typeof(expires_at) = 'integer'),
    -- Written by closeorderd (the app may set state = 'paid' on a pending row).
    state            TEXT    NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'closing', 'closed', 'paid', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER,
    lease_token      TEXT,
    lease_expires_at INTEGER,
    err_code         TEXT,
    err_code_des     TEXT,
    last_error       TEXT,
    closed_at        INTEGER,
    updated_at       INTEGER NOT NULL DEFAULT (unixepoch())
);

-- One order per merchant, sub-merchant and order number; a NULL sub_mch_id counts as one value.
CREATE UNIQUE INDEX orders_identity ON orders (mch_id, coalesce(sub_mch_id, ''), out_trade_no);

-- The poll reads only these partial indexes, so its cost does not grow with finished rows.
-- (The poll's SQL repeats each WHERE literally: SQLite uses a partial index only then.)
CREATE INDEX orders_pending_by_deadline ON orders (expires_at)
    WHERE state = 'pending' AND expires_at IS NOT NULL;
CREATE INDEX orders_pending_by_creation ON orders (created_at)
    WHERE state = 'pending' AND expires_at IS NULL;
CREATE INDEX orders_closing_by_lease ON orders (lease_expires_at)
    WHERE state = 'closing';
-- For `query --state` listings.
CREATE INDEX orders_by_state ON orders (state, updated_at);

-- Every close attempt, appended by closeorderd; `closeorderd query OUT_TRADE_NO` shows them.
CREATE TABLE close_attempts (
    id            INTEGER PRIMARY KEY,
    order_id      INTEGER NOT NULL,
    attempt       INTEGER NOT NULL,
    started_at    INTEGER NOT NULL,
    finished_at   INTEGER NOT NULL,
    latency_ms    INTEGER,
    outcome       TEXT    NOT NULL CHECK (outcome IN ('closed', 'paid', 'retry', 'failed', 'invalid', 'abandoned')),
    http_status   INTEGER,
    err_code      TEXT,
    err_code_des  TEXT,
    message       TEXT    NOT NULL
);
CREATE INDEX close_attempts_by_order ON close_attempts (order_id, id);
