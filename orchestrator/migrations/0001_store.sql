-- What the orchestrator keeps that the chain does not: signed receipts not yet settled (and
-- settled ones, for the record), job specs uploaded by buyers, job state and log tails.
-- One set of statements for SQLite and PostgreSQL.
CREATE TABLE IF NOT EXISTS receipts (
    lease TEXT NOT NULL,
    nonce BIGINT NOT NULL,
    served_seconds BIGINT NOT NULL,
    body TEXT NOT NULL,
    settled BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (lease, nonce, served_seconds)
);
CREATE TABLE IF NOT EXISTS job_specs (
    order_key TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    spec_hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    lease TEXT NOT NULL,
    nonce BIGINT NOT NULL,
    order_key TEXT NOT NULL,
    worker TEXT NOT NULL,
    status TEXT NOT NULL,
    exit_code BIGINT,
    result_hash TEXT,
    updated_ms BIGINT NOT NULL,
    PRIMARY KEY (lease, nonce)
);
CREATE TABLE IF NOT EXISTS job_logs (
    lease TEXT NOT NULL,
    nonce BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    stream TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (lease, nonce, seq)
);
