-- `closeorderd query --since 1h` reads the history of a window of time: this index keeps
-- that read proportional to the window, however long the history grows. The history is
-- append-only, so the index only ever grows at its end.
CREATE INDEX close_attempts_by_finish ON close_attempts (finished_at);
