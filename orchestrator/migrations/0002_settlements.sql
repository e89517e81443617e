-- Each receipt the service settled on chain, with the transaction's signature, so a buyer or a
-- supplier can look every payment up on the chain.
CREATE TABLE IF NOT EXISTS settlements (
    lease TEXT NOT NULL,
    nonce BIGINT NOT NULL,
    served_seconds BIGINT NOT NULL,
    signature TEXT NOT NULL,
    unix_ms BIGINT NOT NULL,
    PRIMARY KEY (lease, nonce, served_seconds)
);
-- The buyer who uploaded each spec (the order's buyer on chain, checked by signature), so the
-- job's output stays the buyer's to read after the order account is closed.
ALTER TABLE job_specs ADD COLUMN buyer TEXT;
