-- Each order's checkpoints as its workers reported them: the content hash the daemon stored the
-- snapshot under (in the results store), its size, when and by which worker and lease instance
-- it was taken. `status` is `stored` until a daemon finds it missing or failing its hash check
-- on restore (`skipped`, with the reason): a skipped checkpoint is never offered again.
CREATE TABLE IF NOT EXISTS checkpoints (
    order_key TEXT NOT NULL,
    hash TEXT NOT NULL,
    size BIGINT NOT NULL,
    files BIGINT NOT NULL,
    unix_ms BIGINT NOT NULL,
    worker TEXT NOT NULL,
    lease TEXT NOT NULL,
    nonce BIGINT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    PRIMARY KEY (order_key, hash)
);
CREATE INDEX IF NOT EXISTS checkpoints_by_order ON checkpoints (order_key, unix_ms);
-- Orders whose buyer turned checkpoints off (signed request): no snapshot is taken or recorded
-- and a new lease starts from nothing. Absent: as the job spec says.
CREATE TABLE IF NOT EXISTS checkpoint_settings (
    order_key TEXT PRIMARY KEY,
    enabled BIGINT NOT NULL,
    unix_ms BIGINT NOT NULL
);
