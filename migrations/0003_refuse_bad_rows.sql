-- The schema refuses, at INSERT and UPDATE, what an app most often gets wrong, with a message
-- the app's developer sees in their own error log. Each message starts with "closeorderd:".
--
-- Times are Unix seconds between 2000-01-01 (946684800) and 2200-01-01 (7258118400):
-- milliseconds (Date.now(), currentTimeMillis()) or yyyyMMddHHmmss numbers would pass the
-- integer CHECK and never become due. Identity columns are text without NUL bytes: a BLOB
-- (Python bytes, Go []byte) or a NUL (which C strings cut at) would send another order's number.

CREATE TRIGGER orders_refuse_bad_times_on_insert BEFORE INSERT ON orders
BEGIN
    SELECT RAISE(ABORT, 'closeorderd: created_at must be Unix time in whole seconds between 2000 and 2200 (milliseconds such as Date.now() or currentTimeMillis() are 1000 times too large: divide by 1000)')
     WHERE typeof(NEW.created_at) <> 'integer' OR NEW.created_at NOT BETWEEN 946684800 AND 7258118400;
    SELECT RAISE(ABORT, 'closeorderd: expires_at must be NULL or Unix time in whole seconds between 2000 and 2200 (milliseconds such as Date.now() or currentTimeMillis() are 1000 times too large: divide by 1000)')
     WHERE NEW.expires_at IS NOT NULL
       AND (typeof(NEW.expires_at) <> 'integer' OR NEW.expires_at NOT BETWEEN 946684800 AND 7258118400);
END;

CREATE TRIGGER orders_refuse_bad_times_on_update BEFORE UPDATE OF created_at, expires_at ON orders
BEGIN
    SELECT RAISE(ABORT, 'closeorderd: created_at must be Unix time in whole seconds between 2000 and 2200 (milliseconds such as Date.now() or currentTimeMillis() are 1000 times too large: divide by 1000)')
     WHERE typeof(NEW.created_at) <> 'integer' OR NEW.created_at NOT BETWEEN 946684800 AND 7258118400;
    SELECT RAISE(ABORT, 'closeorderd: expires_at must be NULL or Unix time in whole seconds between 2000 and 2200 (milliseconds such as Date.now() or currentTimeMillis() are 1000 times too large: divide by 1000)')
     WHERE NEW.expires_at IS NOT NULL
       AND (typeof(NEW.expires_at) <> 'integer' OR NEW.expires_at NOT BETWEEN 946684800 AND 7258118400);
END;

CREATE TRIGGER orders_refuse_bad_identity_on_insert BEFORE INSERT ON orders
BEGIN
    SELECT RAISE(ABORT, 'closeorderd: mch_id, appid, out_trade_no, sub_mch_id and sub_appid must be TEXT (bind a string, not bytes) without NUL characters')
     WHERE typeof(NEW.mch_id) = 'blob' OR typeof(NEW.appid) = 'blob' OR typeof(NEW.out_trade_no) = 'blob'
        OR typeof(NEW.sub_mch_id) = 'blob' OR typeof(NEW.sub_appid) = 'blob'
        OR instr(CAST(NEW.mch_id AS BLOB), X'00') > 0 OR instr(CAST(NEW.appid AS BLOB), X'00') > 0
        OR instr(CAST(NEW.out_trade_no AS BLOB), X'00') > 0 OR instr(CAST(NEW.sub_mch_id AS BLOB), X'00') > 0
        OR instr(CAST(NEW.sub_appid AS BLOB), X'00') > 0;
    SELECT RAISE(ABORT, 'closeorderd: insert orders as pending (or paid); closing is set by closeorderd under a lease')
     WHERE NEW.state = 'closing';
END;

CREATE TRIGGER orders_refuse_bad_identity_on_update
BEFORE UPDATE OF mch_id, appid, out_trade_no, sub_mch_id, sub_appid ON orders
BEGIN
    SELECT RAISE(ABORT, 'closeorderd: mch_id, appid, out_trade_no, sub_mch_id and sub_appid must be TEXT (bind a string, not bytes) without NUL characters')
     WHERE typeof(NEW.mch_id) = 'blob' OR typeof(NEW.appid) = 'blob' OR typeof(NEW.out_trade_no) = 'blob'
        OR typeof(NEW.sub_mch_id) = 'blob' OR typeof(NEW.sub_appid) = 'blob'
        OR instr(CAST(NEW.mch_id AS BLOB), X'00') > 0 OR instr(CAST(NEW.appid AS BLOB), X'00') > 0
        OR instr(CAST(NEW.out_trade_no AS BLOB), X'00') > 0 OR instr(CAST(NEW.sub_mch_id AS BLOB), X'00') > 0
        OR instr(CAST(NEW.sub_appid AS BLOB), X'00') > 0;
END;

-- `closing` without a lease would never be due again: only closeorderd's claim sets it.
CREATE TRIGGER orders_refuse_closing_without_lease BEFORE UPDATE OF state ON orders
WHEN NEW.state = 'closing' AND (NEW.lease_token IS NULL OR NEW.lease_expires_at IS NULL)
BEGIN
    SELECT RAISE(ABORT, 'closeorderd: closing is set by closeorderd under a lease; the app sets pending or paid');
END;

-- Rows already in the table. Unfinished rows with implausible times fail now, with a reason
-- (fix the times, then `closeorderd retry`); rows left `closing` without a lease are treated
-- as an expired lease, so the next poll confirms them with an order query before any close.
INSERT INTO close_attempts (order_id, attempt, started_at, finished_at, outcome, message)
SELECT id, attempts, unixepoch(), unixepoch(), 'invalid',
       'not sent: created_at or expires_at is not Unix time in seconds between 2000 and 2200 (milliseconds?); '
       || 'fix the row, then run closeorderd retry'
  FROM orders
 WHERE state IN ('pending', 'closing')
   AND (created_at NOT BETWEEN 946684800 AND 7258118400
        OR (expires_at IS NOT NULL AND expires_at NOT BETWEEN 946684800 AND 7258118400));
UPDATE orders
   SET state = 'failed', lease_token = NULL, lease_expires_at = NULL, next_attempt_at = NULL, updated_at = unixepoch(),
       last_error = 'not sent: created_at or expires_at is not Unix time in seconds between 2000 and 2200 (milliseconds?); '
                    || 'fix the row, then run closeorderd retry'
 WHERE state IN ('pending', 'closing')
   AND (created_at NOT BETWEEN 946684800 AND 7258118400
        OR (expires_at IS NOT NULL AND expires_at NOT BETWEEN 946684800 AND 7258118400));
UPDATE orders SET lease_expires_at = 0 WHERE state = 'closing' AND lease_expires_at IS NULL;
