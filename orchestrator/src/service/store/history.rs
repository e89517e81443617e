//! The store's part for the console (`migrations/0004_history.sql`): samples of totals over time
//! (the market's, each worker's and each order's, taken when they changed) and each lease
//! instance's terms, which the chain forgets when the lease closes.

use super::{JobRecord, Store, StoreError};
use gpumesh_protocol::wire::LeaseId;
use sqlx::Row;
use sqlx::any::AnyRow;

/// A lease instance's terms as the chain held them while it was open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseTerms {
    pub lease: String,
    pub nonce: u64,
    pub order: String,
    pub worker: String,
    pub gpus: u16,
    pub price_per_gpu_second: u64,
    pub fee_bps: u16,
    pub start_ts: i64,
}

/// One `jobs` row.
pub(super) fn job_record(row: &AnyRow) -> Result<JobRecord, StoreError> {
    let lease: String = row.try_get(0)?;
    let nonce: i64 = row.try_get(1)?;
    Ok(JobRecord {
        lease: LeaseId {
            lease: lease
                .parse()
                .map_err(|e: gpumesh_protocol::keys::ParseKeyError| {
                    StoreError::Corrupt(e.to_string())
                })?,
            nonce: nonce as u64,
        },
        order: row.try_get(2)?,
        worker: row.try_get(3)?,
        status: row.try_get(4)?,
        exit_code: row.try_get(5)?,
        result_hash: row.try_get(6)?,
        updated_ms: row.try_get(7)?,
    })
}

fn lease_terms(row: &AnyRow) -> Result<LeaseTerms, StoreError> {
    let nonce: i64 = row.try_get(1)?;
    let gpus: i64 = row.try_get(4)?;
    let price: String = row.try_get(5)?;
    let fee_bps: i64 = row.try_get(6)?;
    let corrupt = |what: &str| StoreError::Corrupt(format!("lease terms: {what}"));
    Ok(LeaseTerms {
        lease: row.try_get(0)?,
        nonce: nonce as u64,
        order: row.try_get(2)?,
        worker: row.try_get(3)?,
        gpus: u16::try_from(gpus).map_err(|_| corrupt("gpus"))?,
        price_per_gpu_second: price.parse().map_err(|_| corrupt("price"))?,
        fee_bps: u16::try_from(fee_bps).map_err(|_| corrupt("fee"))?,
        start_ts: row.try_get(7)?,
    })
}

const LEASE_TERMS_COLUMNS: &str =
    "lease, nonce, order_key, worker, gpus, price, fee_bps, start_ts FROM lease_terms";

impl Store {
    /// Keeps a sample of `kind` (`market`, `worker`, `order`) about `subject` (an address);
    /// a second sample at the same millisecond is dropped.
    pub async fn put_sample(
        &self,
        kind: &str,
        subject: &str,
        unix_ms: u64,
        body: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO samples (kind, subject, unix_ms, body) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (kind, subject, unix_ms) DO NOTHING",
        )
        .bind(kind)
        .bind(subject)
        .bind(unix_ms as i64)
        .bind(body)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The newest `limit` samples of a subject, oldest first: (unix ms, body).
    pub async fn samples(
        &self,
        kind: &str,
        subject: &str,
        limit: i64,
    ) -> Result<Vec<(u64, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT unix_ms, body FROM samples WHERE kind = $1 AND subject = $2 \
             ORDER BY unix_ms DESC LIMIT $3",
        )
        .bind(kind)
        .bind(subject)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut out = rows
            .iter()
            .map(|row| {
                let at: i64 = row.try_get(0)?;
                Ok((at as u64, row.try_get(1)?))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        out.reverse();
        Ok(out)
    }

    /// The newest sample body of every subject of `kind`: (subject, body).
    pub async fn latest_samples(&self, kind: &str) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT s.subject, s.body FROM samples s WHERE s.kind = $1 AND s.unix_ms = \
             (SELECT MAX(t.unix_ms) FROM samples t WHERE t.kind = s.kind AND t.subject = s.subject)",
        )
        .bind(kind)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect()
    }

    /// Drops samples taken before `before_ms`; how many.
    pub async fn prune_samples(&self, before_ms: u64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM samples WHERE unix_ms < $1")
            .bind(before_ms as i64)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Keeps a lease instance's terms (the first record of an instance stands).
    pub async fn put_lease_terms(&self, t: &LeaseTerms) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO lease_terms (lease, nonce, order_key, worker, gpus, price, fee_bps, start_ts) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (lease, nonce) DO NOTHING",
        )
        .bind(&t.lease)
        .bind(t.nonce as i64)
        .bind(&t.order)
        .bind(&t.worker)
        .bind(i64::from(t.gpus))
        .bind(t.price_per_gpu_second.to_string())
        .bind(i64::from(t.fee_bps))
        .bind(t.start_ts)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The terms of every lease instance an order had, oldest first.
    pub async fn lease_terms_of_order(&self, order: &str) -> Result<Vec<LeaseTerms>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {LEASE_TERMS_COLUMNS} WHERE order_key = $1 ORDER BY start_ts, nonce"
        ))
        .bind(order)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(lease_terms).collect()
    }

    /// The terms of the newest `limit` lease instances a worker served, newest first.
    pub async fn lease_terms_of_worker(
        &self,
        worker: &str,
        limit: i64,
    ) -> Result<Vec<LeaseTerms>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {LEASE_TERMS_COLUMNS} WHERE worker = $1 ORDER BY start_ts DESC, nonce DESC LIMIT $2"
        ))
        .bind(worker)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(lease_terms).collect()
    }

    /// The newest `limit` jobs a worker ran, newest first.
    pub async fn jobs_of_worker(
        &self,
        worker: &str,
        limit: i64,
    ) -> Result<Vec<JobRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT lease, nonce, order_key, worker, status, exit_code, result_hash, updated_ms \
             FROM jobs WHERE worker = $1 ORDER BY updated_ms DESC LIMIT $2",
        )
        .bind(worker)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_record).collect()
    }
}
