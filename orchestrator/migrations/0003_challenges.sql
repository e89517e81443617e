-- Every compute challenge a worker answered (or failed to): the transcript, so a fraud slash's
-- evidence hash can be recomputed and the verdict checked by anyone with the seed.
CREATE TABLE IF NOT EXISTS challenges (
    worker TEXT NOT NULL,
    id BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    reason TEXT,
    evidence TEXT NOT NULL,
    transcript TEXT NOT NULL,
    unix_ms BIGINT NOT NULL,
    PRIMARY KEY (worker, id)
);
