//! The service's store: what the chain does not hold and a restart must not lose. Signed
//! receipts are written before they are acknowledged to the worker, so a receipt the worker may
//! forget is on disk; job specs the buyers uploaded; job state and the tail of each job's logs;
//! each order's checkpoints.
//!
//! sqlx's `Any` driver over SQLite (a file, the default: nothing to install) or PostgreSQL (by
//! URL), with one set of migrations (`orchestrator/migrations`) whose SQL both accept.

mod checkpoints;
mod history;

pub use checkpoints::CheckpointRecord;
pub use history::LeaseTerms;

use gpumesh_protocol::SignedReceipt;
use gpumesh_protocol::hex;
use gpumesh_protocol::wire::LeaseId;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Row};

/// How long opening the store retries a server that refuses connections (one starting up)
/// before the service gives up with an error naming the URL.
pub const OPEN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Log chunks kept per job (the oldest are dropped beyond this).
pub const LOG_TAIL_CHUNKS: i64 = 2_000;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the store at {url} cannot be opened: {source}. Check the `store` URL (sqlite://FILE?mode=rwc or postgres://…)"
    )]
    Open {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("store migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("store: {0}")]
    Query(#[from] sqlx::Error),
    #[error("store: a stored record does not decode: {0}")]
    Corrupt(String),
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
}

/// A job's state as the service last heard it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    pub lease: LeaseId,
    pub order: String,
    pub worker: String,
    pub status: String,
    pub exit_code: Option<i64>,
    pub result_hash: Option<String>,
    pub updated_ms: i64,
}

/// A compute challenge as the service recorded it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ChallengeRecord {
    pub id: u64,
    /// `passed` or `failed`.
    pub outcome: String,
    pub reason: Option<String>,
    /// BLAKE3 of the transcript (hex): the evidence of a fraud slash.
    pub evidence: String,
    /// The round as JSON: challenge, commitment, rows asked, the opening when it failed.
    pub transcript: String,
    pub unix_ms: u64,
}

/// A settlement transaction as the service recorded it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Settlement {
    /// Cumulative seconds the lease was paid up to by this transaction.
    pub served_seconds: u64,
    /// The transaction's signature (base58): look it up on the chain.
    pub signature: String,
    pub unix_ms: u64,
}

/// One chunk of a job's output.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct LogChunk {
    pub seq: i64,
    pub stream: String,
    pub data: String,
}

impl Store {
    /// Opens (creating a SQLite file if needed) and migrates.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        install_default_drivers();
        let sqlite = url.starts_with("sqlite");
        let pool = AnyPoolOptions::new()
            .max_connections(if sqlite { 1 } else { 8 })
            .acquire_timeout(OPEN_TIMEOUT)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        // A write-ahead log synced at checkpoints, not at every commit: a
                        // commit survives the service crashing (it is in the OS's buffers), and
                        // a power loss can undo only the newest commits. Receipts are
                        // cumulative and the worker keeps its newest, so the next one covers a
                        // lost one. An fsync per log line would cap the store at a few hundred
                        // writes a second.
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA synchronous = NORMAL")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await
            .map_err(|source| StoreError::Open {
                url: url.to_string(),
                source,
            })?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self { pool })
    }

    /// Keeps a verified receipt (idempotent: the same receipt twice is one row).
    pub async fn put_receipt(&self, r: &SignedReceipt) -> Result<(), StoreError> {
        let body = serde_json::to_string(r).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        sqlx::query(
            "INSERT INTO receipts (lease, nonce, served_seconds, body, settled) VALUES ($1, $2, $3, $4, 0) \
             ON CONFLICT (lease, nonce, served_seconds) DO NOTHING",
        )
        .bind(r.lease.to_string())
        .bind(r.lease_nonce as i64)
        .bind(r.served_seconds as i64)
        .bind(body)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The newest unsettled receipt of each lease instance.
    pub async fn unsettled(&self) -> Result<Vec<SignedReceipt>, StoreError> {
        let rows = sqlx::query(
            "SELECT r.body FROM receipts r \
             JOIN (SELECT lease, nonce, MAX(served_seconds) AS s FROM receipts WHERE settled = 0 GROUP BY lease, nonce) m \
             ON r.lease = m.lease AND r.nonce = m.nonce AND r.served_seconds = m.s",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let body: String = row.try_get(0)?;
                serde_json::from_str(&body).map_err(|e| StoreError::Corrupt(e.to_string()))
            })
            .collect()
    }

    /// The newest receipt of a lease instance, settled or not.
    pub async fn latest_receipt(
        &self,
        lease: &LeaseId,
    ) -> Result<Option<SignedReceipt>, StoreError> {
        let row = sqlx::query(
            "SELECT body FROM receipts WHERE lease = $1 AND nonce = $2 ORDER BY served_seconds DESC LIMIT 1",
        )
        .bind(lease.lease.to_string())
        .bind(lease.nonce as i64)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => {
                let body: String = row.try_get(0)?;
                serde_json::from_str(&body)
                    .map(Some)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))
            }
            None => Ok(None),
        }
    }

    /// Marks every receipt of a lease instance up to `served_seconds` settled.
    pub async fn mark_settled(
        &self,
        lease: &LeaseId,
        served_seconds: u64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE receipts SET settled = 1 WHERE lease = $1 AND nonce = $2 AND served_seconds <= $3",
        )
        .bind(lease.lease.to_string())
        .bind(lease.nonce as i64)
        .bind(served_seconds as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks a lease instance's receipts up to `served_seconds` settled and records the
    /// transaction that settled them.
    pub async fn record_settlement(
        &self,
        lease: &LeaseId,
        served_seconds: u64,
        signature: &str,
        unix_ms: u64,
    ) -> Result<(), StoreError> {
        self.mark_settled(lease, served_seconds).await?;
        sqlx::query(
            "INSERT INTO settlements (lease, nonce, served_seconds, signature, unix_ms) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (lease, nonce, served_seconds) DO NOTHING",
        )
        .bind(lease.lease.to_string())
        .bind(lease.nonce as i64)
        .bind(served_seconds as i64)
        .bind(signature)
        .bind(unix_ms as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A lease instance's settlements, oldest first.
    pub async fn settlements(&self, lease: &LeaseId) -> Result<Vec<Settlement>, StoreError> {
        let rows = sqlx::query(
            "SELECT served_seconds, signature, unix_ms FROM settlements WHERE lease = $1 AND nonce = $2 ORDER BY served_seconds",
        )
        .bind(lease.lease.to_string())
        .bind(lease.nonce as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let served: i64 = row.try_get(0)?;
                let at: i64 = row.try_get(2)?;
                Ok(Settlement {
                    served_seconds: served as u64,
                    signature: row.try_get(1)?,
                    unix_ms: at as u64,
                })
            })
            .collect()
    }

    /// The receipts stored for a lease instance, oldest first (at most `limit`, the newest).
    pub async fn receipts(
        &self,
        lease: &LeaseId,
        limit: i64,
    ) -> Result<Vec<(SignedReceipt, bool)>, StoreError> {
        let rows = sqlx::query(
            "SELECT body, settled FROM receipts WHERE lease = $1 AND nonce = $2 ORDER BY served_seconds DESC LIMIT $3",
        )
        .bind(lease.lease.to_string())
        .bind(lease.nonce as i64)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut out = rows
            .iter()
            .map(|row| {
                let body: String = row.try_get(0)?;
                let settled: i64 = row.try_get(1)?;
                let r: SignedReceipt =
                    serde_json::from_str(&body).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Ok((r, settled != 0))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        out.reverse();
        Ok(out)
    }

    /// Keeps an order's job spec and the buyer who uploaded it.
    pub async fn put_spec(
        &self,
        order: &str,
        buyer: &str,
        spec: &str,
        hash: &[u8; 32],
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO job_specs (order_key, spec, spec_hash, buyer) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (order_key) DO UPDATE SET spec = excluded.spec, spec_hash = excluded.spec_hash, buyer = excluded.buyer",
        )
        .bind(order)
        .bind(spec)
        .bind(hex(hash))
        .bind(buyer)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Keeps a compute challenge's transcript and verdict.
    #[allow(clippy::too_many_arguments)]
    pub async fn put_challenge(
        &self,
        worker: &str,
        id: u64,
        outcome: &str,
        reason: Option<&str>,
        evidence: &[u8; 32],
        transcript: &str,
        unix_ms: u64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO challenges (worker, id, outcome, reason, evidence, transcript, unix_ms) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (worker, id) DO NOTHING",
        )
        .bind(worker)
        .bind(id as i64)
        .bind(outcome)
        .bind(reason)
        .bind(hex(evidence))
        .bind(transcript)
        .bind(unix_ms as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A worker's challenges, newest first: (id, outcome, reason, evidence hash, transcript).
    pub async fn challenges_of(&self, worker: &str) -> Result<Vec<ChallengeRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, outcome, reason, evidence, transcript, unix_ms FROM challenges WHERE worker = $1 ORDER BY unix_ms DESC",
        )
        .bind(worker)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let id: i64 = row.try_get(0)?;
                let at: i64 = row.try_get(5)?;
                Ok(ChallengeRecord {
                    id: id as u64,
                    outcome: row.try_get(1)?,
                    reason: row.try_get(2)?,
                    evidence: row.try_get(3)?,
                    transcript: row.try_get(4)?,
                    unix_ms: at as u64,
                })
            })
            .collect()
    }

    /// The buyer who uploaded an order's spec.
    pub async fn buyer_of(&self, order: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT buyer FROM job_specs WHERE order_key = $1")
            .bind(order)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(row) => row.try_get(0)?,
            None => None,
        })
    }

    pub async fn spec(&self, order: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT spec FROM job_specs WHERE order_key = $1")
            .bind(order)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(row) => Some(row.try_get(0)?),
            None => None,
        })
    }

    pub async fn put_job(&self, job: &JobRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO jobs (lease, nonce, order_key, worker, status, exit_code, result_hash, updated_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (lease, nonce) DO UPDATE SET status = excluded.status, exit_code = excluded.exit_code, \
             result_hash = excluded.result_hash, updated_ms = excluded.updated_ms",
        )
        .bind(job.lease.lease.to_string())
        .bind(job.lease.nonce as i64)
        .bind(&job.order)
        .bind(&job.worker)
        .bind(&job.status)
        .bind(job.exit_code)
        .bind(job.result_hash.clone())
        .bind(job.updated_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Jobs of an order, newest first.
    pub async fn jobs_of(&self, order: &str) -> Result<Vec<JobRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT lease, nonce, order_key, worker, status, exit_code, result_hash, updated_ms \
             FROM jobs WHERE order_key = $1 ORDER BY updated_ms DESC",
        )
        .bind(order)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(history::job_record).collect()
    }

    /// Appends a log chunk and keeps only the newest [`LOG_TAIL_CHUNKS`] of the job.
    pub async fn put_log(
        &self,
        lease: &LeaseId,
        seq: u64,
        stream: &str,
        data: &str,
    ) -> Result<(), StoreError> {
        let key = lease.lease.to_string();
        sqlx::query(
            "INSERT INTO job_logs (lease, nonce, seq, stream, data) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (lease, nonce, seq) DO NOTHING",
        )
        .bind(&key)
        .bind(lease.nonce as i64)
        .bind(seq as i64)
        .bind(stream)
        .bind(data)
        .execute(&self.pool)
        .await?;
        if seq as i64 > LOG_TAIL_CHUNKS {
            sqlx::query("DELETE FROM job_logs WHERE lease = $1 AND nonce = $2 AND seq <= $3")
                .bind(&key)
                .bind(lease.nonce as i64)
                .bind(seq as i64 - LOG_TAIL_CHUNKS)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// The stored tail of a job's output, oldest first.
    pub async fn logs(&self, lease: &LeaseId) -> Result<Vec<LogChunk>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, stream, data FROM job_logs WHERE lease = $1 AND nonce = $2 ORDER BY seq",
        )
        .bind(lease.lease.to_string())
        .bind(lease.nonce as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(LogChunk {
                    seq: row.try_get(0)?,
                    stream: row.try_get(1)?,
                    data: row.try_get(2)?,
                })
            })
            .collect()
    }
}
