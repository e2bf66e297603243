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

-- closeorderd's own bookkeeping: a text or out-of-range value here would leave a row never
-- due again, or stop the claim. The app has no reason to write these columns.
CREATE TRIGGER orders_refuse_bad_bookkeeping_on_insert BEFORE INSERT ON orders
BEGIN
    SELECT RAISE(ABORT, 'closeorderd: attempts, next_attempt_at and lease_expires_at are written by closeorderd: insert orders without them')
     WHERE typeof(NEW.attempts) <> 'integer' OR NEW.attempts NOT BETWEEN 0 AND 1000000
        OR (NEW.next_attempt_at IS NOT NULL AND (typeof(NEW.next_attempt_at) <> 'integer' OR NEW.next_attempt_at NOT BETWEEN 0 AND 7258118400))
        OR (NEW.lease_expires_at IS NOT NULL AND (typeof(NEW.lease_expires_at) <> 'integer' OR NEW.lease_expires_at NOT BETWEEN 0 AND 7258118400));
END;

CREATE TRIGGER orders_refuse_bad_bookkeeping_on_update
BEFORE UPDATE OF attempts, next_attempt_at, lease_expires_at ON orders
BEGIN
    SELECT RAISE(ABORT, 'closeorderd: attempts must be a whole number from 0 to 1000000, next_attempt_at and lease_expires_at NULL or Unix seconds before 2200')
     WHERE typeof(NEW.attempts) <> 'integer' OR NEW.attempts NOT BETWEEN 0 AND 1000000
        OR (NEW.next_attempt_at IS NOT NULL AND (typeof(NEW.next_attempt_at) <> 'integer' OR NEW.next_attempt_at NOT BETWEEN 0 AND 7258118400))
        OR (NEW.lease_expires_at IS NOT NULL AND (typeof(NEW.lease_expires_at) <> 'integer' OR NEW.lease_expires_at NOT BETWEEN 0 AND 7258118400));
END;

-- While a call is in flight its answer is about the order as it was claimed: renaming the row
-- then would record that answer on another order number.
CREATE TRIGGER orders_refuse_identity_change_while_closing
BEFORE UPDATE OF mch_id, appid, out_trade_no, sub_mch_id, sub_appid ON orders
WHEN OLD.state = 'closing'
 AND (NEW.mch_id IS NOT OLD.mch_id OR NEW.appid IS NOT OLD.appid OR NEW.out_trade_no IS NOT OLD.out_trade_no
      OR NEW.sub_mch_id IS NOT OLD.sub_mch_id OR NEW.sub_appid IS NOT OLD.sub_appid)
BEGIN
    SELECT RAISE(ABORT, 'closeorderd: this order is being closed right now (state closing): its mch_id, appid, out_trade_no, sub_mch_id and sub_appid cannot change until it is not');
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
-- Bookkeeping values of the wrong type on unfinished rows are reset as a fresh claim would
-- find them; the next claim reads the row again (and fails it, naming the column, if need be).
UPDATE orders SET next_attempt_at = NULL
 WHERE state = 'pending' AND next_attempt_at IS NOT NULL
   AND (typeof(next_attempt_at) <> 'integer' OR next_attempt_at NOT BETWEEN 0 AND 7258118400);
UPDATE orders SET lease_expires_at = 0
 WHERE state = 'closing' AND (typeof(lease_expires_at) <> 'integer' OR lease_expires_at NOT BETWEEN 0 AND 7258118400);
