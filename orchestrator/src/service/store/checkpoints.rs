//! Each order's checkpoints (`migrations/0005_checkpoints.sql`): what its workers' daemons
//! reported storing, and which a daemon found unusable on restore.

use super::{Store, StoreError};
use gpumesh_protocol::wire::{CheckpointRef, LeaseId};
use gpumesh_protocol::{hex, unhex32};
use sqlx::Row;
use sqlx::any::AnyRow;

/// A checkpoint as the service recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRecord {
    pub order: String,
    pub worker: String,
    pub checkpoint: CheckpointRef,
    /// `stored`, or `skipped` once a daemon could not restore it.
    pub status: String,
    /// Why it was skipped.
    pub reason: Option<String>,
}

pub const STORED: &str = "stored";
pub const SKIPPED: &str = "skipped";

fn record(row: &AnyRow) -> Result<CheckpointRecord, StoreError> {
    let hash: String = row.try_get(1)?;
    let lease: String = row.try_get(6)?;
    let corrupt = |what: &str| StoreError::Corrupt(format!("checkpoint {hash}: {what}"));
    let n = |v: i64| u64::try_from(v).unwrap_or(0);
    Ok(CheckpointRecord {
        order: row.try_get(0)?,
        worker: row.try_get(5)?,
        checkpoint: CheckpointRef {
            hash: unhex32(&hash).ok_or_else(|| corrupt("not a 64-digit hash"))?,
            size: n(row.try_get(2)?),
            files: n(row.try_get(3)?),
            unix_ms: n(row.try_get(4)?),
            lease: LeaseId {
                lease: lease.parse().map_err(|_| corrupt("lease is not a key"))?,
                nonce: n(row.try_get(7)?),
            },
        },
        status: row.try_get(8)?,
        reason: row.try_get(9)?,
    })
}

const COLUMNS: &str = "order_key, hash, size, files, unix_ms, worker, lease, nonce, status, reason";

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Store {
    /// Records a stored checkpoint (reported twice: one row; a skipped one stays skipped).
    pub async fn put_checkpoint(
        &self,
        order: &str,
        worker: &str,
        c: &CheckpointRef,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO checkpoints (order_key, hash, size, files, unix_ms, worker, lease, nonce, status, reason) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL) ON CONFLICT (order_key, hash) DO NOTHING",
        )
        .bind(order)
        .bind(hex(&c.hash))
        .bind(i(c.size))
        .bind(i(c.files))
        .bind(i(c.unix_ms))
        .bind(worker)
        .bind(c.lease.lease.to_string())
        .bind(i(c.lease.nonce))
        .bind(STORED)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks a checkpoint as not restorable, with the reason.
    pub async fn skip_checkpoint(
        &self,
        order: &str,
        hash: &[u8; 32],
        reason: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE checkpoints SET status = $1, reason = $2 WHERE order_key = $3 AND hash = $4",
        )
        .bind(SKIPPED)
        .bind(reason)
        .bind(order)
        .bind(hex(hash))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// An order's checkpoints, newest first.
    pub async fn checkpoints_of(&self, order: &str) -> Result<Vec<CheckpointRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM checkpoints WHERE order_key = $1 ORDER BY unix_ms DESC, hash"
        ))
        .bind(order)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(record).collect()
    }

    /// Records the buyer's choice to turn an order's checkpoints on or off.
    pub async fn set_checkpoints(
        &self,
        order: &str,
        enabled: bool,
        unix_ms: u64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO checkpoint_settings (order_key, enabled, unix_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (order_key) DO UPDATE SET enabled = excluded.enabled, unix_ms = excluded.unix_ms",
        )
        .bind(order)
        .bind(i64::from(enabled))
        .bind(i(unix_ms))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Orders whose buyer turned checkpoints off.
    pub async fn checkpoints_off(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT order_key FROM checkpoint_settings WHERE enabled = 0")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map_err(StoreError::from))
            .collect()
    }

    /// Every order's restorable checkpoints, newest first (for a service starting up).
    pub async fn restorable_checkpoints(&self) -> Result<Vec<CheckpointRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM checkpoints WHERE status = $1 ORDER BY unix_ms DESC, hash"
        ))
        .bind(STORED)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(record).collect()
    }
}
