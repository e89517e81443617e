-- What the console charts over time and the chain forgets: the market's, each worker's and each
-- order's totals whenever they changed (as the service followed them on chain), as JSON with
-- amounts in base units; and each lease instance's terms, which go with the lease account when
-- it closes.
CREATE TABLE IF NOT EXISTS samples (
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    unix_ms BIGINT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (kind, subject, unix_ms)
);
CREATE TABLE IF NOT EXISTS lease_terms (
    lease TEXT NOT NULL,
    nonce BIGINT NOT NULL,
    order_key TEXT NOT NULL,
    worker TEXT NOT NULL,
    gpus BIGINT NOT NULL,
    price TEXT NOT NULL,
    fee_bps BIGINT NOT NULL,
    start_ts BIGINT NOT NULL,
    PRIMARY KEY (lease, nonce)
);
CREATE INDEX IF NOT EXISTS lease_terms_order ON lease_terms (order_key);
CREATE INDEX IF NOT EXISTS jobs_worker ON jobs (worker);
