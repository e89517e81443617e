//! The daemon's state file (SQLite): each lease it serves with its heartbeat chain and the
//! seconds its job ran, the chain links the orchestrator may still need, and the receipts it
//! signed until the orchestrator acknowledges them. Everything is written before it is sent, so
//! after a crash the daemon neither forgets earned seconds nor signs a second, different link at
//! a sequence number it already used.

use gpumesh_protocol::heartbeat::HeartbeatChain;
use gpumesh_protocol::hex;
use gpumesh_protocol::wire::{LeaseAssignment, LeaseId, StopReason};
use gpumesh_protocol::{Key, SignedReceipt};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::path::{Path, PathBuf};

const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS leases (
        lease TEXT NOT NULL, nonce INTEGER NOT NULL, record TEXT NOT NULL,
        PRIMARY KEY (lease, nonce))",
    "CREATE TABLE IF NOT EXISTS heartbeats (
        id INTEGER PRIMARY KEY AUTOINCREMENT, unix_ms INTEGER NOT NULL, telemetry TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS links (
        lease TEXT NOT NULL, nonce INTEGER NOT NULL, seq INTEGER NOT NULL,
        heartbeat INTEGER NOT NULL, served_seconds INTEGER NOT NULL, head TEXT NOT NULL,
        PRIMARY KEY (lease, nonce, seq))",
    "CREATE TABLE IF NOT EXISTS receipts (
        lease TEXT NOT NULL, nonce INTEGER NOT NULL, served_seconds INTEGER NOT NULL,
        chain_seq INTEGER NOT NULL, receipt TEXT NOT NULL,
        PRIMARY KEY (lease, nonce, served_seconds))",
];

/// Where a lease's job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Accepted; the job is being checked, its image fetched, its container created.
    Starting,
    Running,
    /// The job ended (or never started); the lease may go on until the orchestrator ends it.
    Exited,
    /// The lease is over: no more heartbeats for it; its last receipts wait for their ack.
    Ended,
}

/// The job's handle in its runtime, enough to find it again after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRef {
    /// Container id, or `pid:<pid>:<start time>` for the command runtime.
    pub id: String,
    /// The engine's `State.StartedAt` when the daemon started it: the same value later means the
    /// same uninterrupted run.
    pub engine_started: Option<String>,
}

/// How the job ended, as sent in `JobExited`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    pub unix_ms: u64,
    pub exit_code: Option<i32>,
    pub status: String,
    pub result_hash: Option<[u8; 32]>,
}

/// One lease as the state file keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredLease {
    pub assignment: LeaseAssignment,
    pub phase: Phase,
    pub chain: HeartbeatChain,
    /// Milliseconds the job has run, as of `checkpoint_unix_ms` while it runs, in all otherwise.
    pub served_ms: u64,
    /// Set while the job runs: the wall time `served_ms` was counted up to.
    pub checkpoint_unix_ms: Option<u64>,
    pub job: Option<JobRef>,
    pub started_unix_ms: Option<u64>,
    pub exit: Option<ExitRecord>,
    /// Log chunk numbers up to this are reserved (possibly used); after a restart the next
    /// chunk takes the one after, so a number is never used twice.
    pub log_seq_reserved: u64,
    /// Seconds of the newest receipt signed.
    pub last_receipt_seconds: u64,
    /// Why and how the job is being stopped, once it is.
    pub stop: Option<(StopReason, u32)>,
    pub ended_unix_ms: Option<u64>,
}

impl StoredLease {
    pub fn new(assignment: LeaseAssignment) -> Self {
        let id = assignment.lease;
        StoredLease {
            assignment,
            phase: Phase::Starting,
            chain: HeartbeatChain::new(&id.lease.0, id.nonce),
            served_ms: 0,
            checkpoint_unix_ms: None,
            job: None,
            started_unix_ms: None,
            exit: None,
            log_seq_reserved: 0,
            last_receipt_seconds: 0,
            stop: None,
            ended_unix_ms: None,
        }
    }

    pub fn id(&self) -> LeaseId {
        self.assignment.lease
    }
}

/// A chain link kept for resending, with the heartbeat it went out in.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredLink {
    pub seq: u64,
    pub served_seconds: u64,
    pub head: [u8; 32],
    pub heartbeat: i64,
    pub unix_ms: u64,
    pub telemetry: String,
}

/// One lease's link in a heartbeat being recorded.
#[derive(Debug, Clone, Copy)]
pub struct NewLink {
    pub lease: LeaseId,
    pub seq: u64,
    pub served_seconds: u64,
    pub head: [u8; 32],
}

/// Who the state file belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub worker: Key,
    pub program_id: Key,
    pub node_key: Key,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state file {path}: {source}")]
    Sql {
        path: PathBuf,
        #[source]
        source: sqlx::Error,
    },
    #[error(
        "state file {path} belongs to {what} {stored}, but this daemon runs with {current}; give this worker its own state file"
    )]
    Foreign {
        path: PathBuf,
        what: &'static str,
        stored: String,
        current: String,
    },
    #[error(
        "state file {path} has schema version {found}; this daemon knows {SCHEMA_VERSION}: use the daemon that wrote it, or a new file"
    )]
    Schema { path: PathBuf, found: i64 },
    #[error(
        "state file {path}: a stored record does not parse ({why}); the file was changed by something else"
    )]
    Corrupt { path: PathBuf, why: String },
}

pub struct Store {
    pool: SqlitePool,
    path: PathBuf,
}

use gpumesh_protocol::unhex32 as unhex;

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl Store {
    /// Opens (creating if needed) the state file and checks it belongs to this worker.
    pub async fn open(path: &Path, identity: &Identity) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Sql {
                path: path.to_path_buf(),
                source: sqlx::Error::Io(e),
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // A receipt or link written and then lost to a power cut could be signed again
            // differently: every commit reaches the disk.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Sql {
                path: path.to_path_buf(),
                source,
            })?;
        let store = Store {
            pool,
            path: path.to_path_buf(),
        };
        store.migrate().await?;
        store.claim(identity).await?;
        Ok(store)
    }

    fn sql(&self) -> impl Fn(sqlx::Error) -> StoreError + '_ {
        |source| StoreError::Sql {
            path: self.path.clone(),
            source,
        }
    }

    fn corrupt(&self, why: impl ToString) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            why: why.to_string(),
        }
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let version: i64 = sqlx::query_scalar("PRAGMA user_version")
            .fetch_one(&self.pool)
            .await
            .map_err(self.sql())?;
        if version != 0 && version != SCHEMA_VERSION {
            return Err(StoreError::Schema {
                path: self.path.clone(),
                found: version,
            });
        }
        let mut tx = self.pool.begin().await.map_err(self.sql())?;
        for statement in SCHEMA {
            sqlx::query(statement)
                .execute(&mut *tx)
                .await
                .map_err(self.sql())?;
        }
        sqlx::query(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
            .execute(&mut *tx)
            .await
            .map_err(self.sql())?;
        tx.commit().await.map_err(self.sql())
    }

    async fn claim(&self, identity: &Identity) -> Result<(), StoreError> {
        for (what, value) in [
            ("worker", identity.worker),
            ("program", identity.program_id),
            ("node key", identity.node_key),
        ] {
            let stored: Option<String> = sqlx::query_scalar("SELECT value FROM meta WHERE key = ?")
                .bind(what)
                .fetch_optional(&self.pool)
                .await
                .map_err(self.sql())?;
            match stored {
                Some(stored) if stored != value.to_string() => {
                    return Err(StoreError::Foreign {
                        path: self.path.clone(),
                        what,
                        stored,
                        current: value.to_string(),
                    });
                }
                Some(_) => {}
                None => {
                    sqlx::query("INSERT INTO meta (key, value) VALUES (?, ?)")
                        .bind(what)
                        .bind(value.to_string())
                        .execute(&self.pool)
                        .await
                        .map_err(self.sql())?;
                }
            }
        }
        Ok(())
    }

    /// Every lease in the file, ended ones included.
    pub async fn leases(&self) -> Result<Vec<StoredLease>, StoreError> {
        let rows = sqlx::query("SELECT record FROM leases ORDER BY lease, nonce")
            .fetch_all(&self.pool)
            .await
            .map_err(self.sql())?;
        rows.iter()
            .map(|row| {
                let text: String = row.get(0);
                serde_json::from_str(&text).map_err(|e| self.corrupt(e))
            })
            .collect()
    }

    pub async fn save_lease(&self, lease: &StoredLease) -> Result<(), StoreError> {
        let id = lease.id();
        let record = serde_json::to_string(lease).map_err(|e| self.corrupt(e))?;
        sqlx::query(
            "INSERT INTO leases (lease, nonce, record) VALUES (?, ?, ?)
             ON CONFLICT (lease, nonce) DO UPDATE SET record = excluded.record",
        )
        .bind(id.lease.to_string())
        .bind(i(id.nonce))
        .bind(record)
        .execute(&self.pool)
        .await
        .map_err(self.sql())?;
        Ok(())
    }

    /// Records one heartbeat: its telemetry, each lease's new link, and the leases' new state
    /// (chain and served time), all or nothing.
    pub async fn record_heartbeat(
        &self,
        unix_ms: u64,
        telemetry: &str,
        links: &[NewLink],
        leases: &[&StoredLease],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(self.sql())?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO heartbeats (unix_ms, telemetry) VALUES (?, ?) RETURNING id",
        )
        .bind(i(unix_ms))
        .bind(telemetry)
        .fetch_one(&mut *tx)
        .await
        .map_err(self.sql())?;
        for link in links {
            sqlx::query(
                "INSERT INTO links (lease, nonce, seq, heartbeat, served_seconds, head)
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(link.lease.lease.to_string())
            .bind(i(link.lease.nonce))
            .bind(i(link.seq))
            .bind(id)
            .bind(i(link.served_seconds))
            .bind(hex(&link.head))
            .execute(&mut *tx)
            .await
            .map_err(self.sql())?;
        }
        for lease in leases {
            let lid = lease.id();
            let record = serde_json::to_string(lease).map_err(|e| self.corrupt(e))?;
            sqlx::query("UPDATE leases SET record = ? WHERE lease = ? AND nonce = ?")
                .bind(record)
                .bind(lid.lease.to_string())
                .bind(i(lid.nonce))
                .execute(&mut *tx)
                .await
                .map_err(self.sql())?;
        }
        tx.commit().await.map_err(self.sql())
    }

    /// The kept links of a lease after `seq`, in order, with their heartbeats.
    pub async fn links_after(
        &self,
        lease: LeaseId,
        seq: u64,
    ) -> Result<Vec<StoredLink>, StoreError> {
        let rows = sqlx::query(
            "SELECT l.seq, l.served_seconds, l.head, l.heartbeat, h.unix_ms, h.telemetry
             FROM links l JOIN heartbeats h ON h.id = l.heartbeat
             WHERE l.lease = ? AND l.nonce = ? AND l.seq > ? ORDER BY l.seq",
        )
        .bind(lease.lease.to_string())
        .bind(i(lease.nonce))
        .bind(i(seq))
        .fetch_all(&self.pool)
        .await
        .map_err(self.sql())?;
        rows.iter()
            .map(|row| {
                let head: String = row.get(2);
                Ok(StoredLink {
                    seq: u(row.get(0)),
                    served_seconds: u(row.get(1)),
                    head: unhex(&head)
                        .ok_or_else(|| self.corrupt("a link's head is not 32 hex bytes"))?,
                    heartbeat: row.get(3),
                    unix_ms: u(row.get(4)),
                    telemetry: row.get(5),
                })
            })
            .collect()
    }

    /// Keeps a signed receipt (with the chain link it signed) until its acknowledgement.
    pub async fn save_receipt(
        &self,
        receipt: &SignedReceipt,
        chain_seq: u64,
        lease: &StoredLease,
    ) -> Result<(), StoreError> {
        let text = serde_json::to_string(receipt).map_err(|e| self.corrupt(e))?;
        let record = serde_json::to_string(lease).map_err(|e| self.corrupt(e))?;
        let id = lease.id();
        let mut tx = self.pool.begin().await.map_err(self.sql())?;
        sqlx::query(
            "INSERT OR REPLACE INTO receipts (lease, nonce, served_seconds, chain_seq, receipt)
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(id.lease.to_string())
        .bind(i(id.nonce))
        .bind(i(receipt.served_seconds))
        .bind(i(chain_seq))
        .bind(text)
        .execute(&mut *tx)
        .await
        .map_err(self.sql())?;
        sqlx::query("UPDATE leases SET record = ? WHERE lease = ? AND nonce = ?")
            .bind(record)
            .bind(id.lease.to_string())
            .bind(i(id.nonce))
            .execute(&mut *tx)
            .await
            .map_err(self.sql())?;
        tx.commit().await.map_err(self.sql())
    }

    /// Receipts not yet acknowledged, oldest first, per lease.
    pub async fn unacked_receipts(&self) -> Result<Vec<SignedReceipt>, StoreError> {
        let rows =
            sqlx::query("SELECT receipt FROM receipts ORDER BY lease, nonce, served_seconds")
                .fetch_all(&self.pool)
                .await
                .map_err(self.sql())?;
        rows.iter()
            .map(|row| {
                let text: String = row.get(0);
                serde_json::from_str(&text).map_err(|e| self.corrupt(e))
            })
            .collect()
    }

    /// The orchestrator stored the lease's receipts up to `served_seconds`: forget them, and the
    /// chain links up to the newest of them (the orchestrator holds those).
    pub async fn ack(&self, lease: LeaseId, served_seconds: u64) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(self.sql())?;
        let acked: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(chain_seq) FROM receipts WHERE lease = ? AND nonce = ? AND served_seconds <= ?",
        )
        .bind(lease.lease.to_string())
        .bind(i(lease.nonce))
        .bind(i(served_seconds))
        .fetch_one(&mut *tx)
        .await
        .map_err(self.sql())?;
        let removed = sqlx::query(
            "DELETE FROM receipts WHERE lease = ? AND nonce = ? AND served_seconds <= ?",
        )
        .bind(lease.lease.to_string())
        .bind(i(lease.nonce))
        .bind(i(served_seconds))
        .execute(&mut *tx)
        .await
        .map_err(self.sql())?
        .rows_affected();
        if let Some(seq) = acked {
            sqlx::query("DELETE FROM links WHERE lease = ? AND nonce = ? AND seq <= ?")
                .bind(lease.lease.to_string())
                .bind(i(lease.nonce))
                .bind(seq)
                .execute(&mut *tx)
                .await
                .map_err(self.sql())?;
        }
        tx.commit().await.map_err(self.sql())?;
        Ok(removed)
    }

    /// Forgets a lease entirely (its links, receipts and record), then heartbeats no link needs.
    pub async fn forget(&self, lease: LeaseId) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(self.sql())?;
        for table in ["links", "receipts", "leases"] {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE lease = ? AND nonce = ?"
            ))
            .bind(lease.lease.to_string())
            .bind(i(lease.nonce))
            .execute(&mut *tx)
            .await
            .map_err(self.sql())?;
        }
        tx.commit().await.map_err(self.sql())?;
        self.prune_heartbeats().await
    }

    /// Drops heartbeats whose links are all gone.
    pub async fn prune_heartbeats(&self) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM heartbeats WHERE id NOT IN (SELECT heartbeat FROM links)")
            .execute(&self.pool)
            .await
            .map_err(self.sql())?;
        Ok(())
    }

    /// Counts of what the file holds (leases, links, receipts), for tests and the operator.
    pub async fn counts(&self) -> Result<(u64, u64, u64), StoreError> {
        let mut out = [0u64; 3];
        for (slot, table) in out.iter_mut().zip(["leases", "links", "receipts"]) {
            let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
                .fetch_one(&self.pool)
                .await
                .map_err(self.sql())?;
            *slot = u(n);
        }
        Ok((out[0], out[1], out[2]))
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpumesh_protocol::wire::JobSpec;
    use gpumesh_protocol::{LeaseService, SigningKey};

    fn assignment(n: u8) -> LeaseAssignment {
        LeaseAssignment {
            lease: LeaseId {
                lease: Key([n; 32]),
                nonce: u64::from(n),
            },
            order: Key([9; 32]),
            gpus: 1,
            gpu_indices: vec![0],
            spec: JobSpec::from_toml("image = \"x\"\n").expect("spec"),
            spec_hash: [0; 32],
            receipt_every_s: 10,
            spec_file: Some("image = \"x\"\n".into()),
            chain: None,
            restore: vec![],
            checkpoints_off: false,
        }
    }

    fn identity(worker: u8) -> Identity {
        Identity {
            worker: Key([worker; 32]),
            program_id: Key([2; 32]),
            node_key: Key([3; 32]),
        }
    }

    #[tokio::test]
    async fn leases_links_and_receipts_survive_a_reopen_and_acks_forget_them() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("state").join("worker.sqlite");
        let store = Store::open(&path, &identity(1)).await.expect("open");
        let mut lease = StoredLease::new(assignment(4));
        store.save_lease(&lease).await.expect("save");

        let node = SigningKey::from_bytes(&[5; 32]);
        let mut service = LeaseService::new(Key([2; 32]), Key([4; 32]), 4);
        for (seq, served) in [(1u64, 1u64), (2, 3), (3, 5)] {
            let head = service.heartbeat(seq * 1_000, served, b"{}").expect("link");
            lease.chain = service.chain().clone();
            lease.served_ms = served * 1_000;
            store
                .record_heartbeat(
                    seq * 1_000,
                    "{}",
                    &[NewLink {
                        lease: lease.id(),
                        seq,
                        served_seconds: served,
                        head,
                    }],
                    &[&lease],
                )
                .await
                .expect("heartbeat");
            if seq == 2 {
                let receipt = service.receipt(&node);
                lease.last_receipt_seconds = receipt.served_seconds;
                store
                    .save_receipt(&receipt, seq, &lease)
                    .await
                    .expect("receipt");
            }
        }
        store.close().await;

        let store = Store::open(&path, &identity(1)).await.expect("reopen");
        let leases = store.leases().await.expect("leases");
        assert_eq!(leases, vec![lease.clone()]);
        assert_eq!(leases[0].chain.head(), service.head());
        let links = store.links_after(lease.id(), 1).await.expect("links");
        assert_eq!(links.iter().map(|l| l.seq).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(links[1].head, service.head());
        let receipts = store.unacked_receipts().await.expect("receipts");
        assert_eq!(receipts.len(), 1);
        assert_eq!(receipts[0].served_seconds, 3);
        receipts[0].verify(None).expect("still verifies");

        // The ack forgets the receipt and the links it covers, not the newer one.
        assert_eq!(store.ack(lease.id(), 3).await.expect("ack"), 1);
        let links = store.links_after(lease.id(), 0).await.expect("links");
        assert_eq!(links.iter().map(|l| l.seq).collect::<Vec<_>>(), vec![3]);
        assert_eq!(store.counts().await.expect("counts"), (1, 1, 0));
        store.forget(lease.id()).await.expect("forget");
        assert_eq!(store.counts().await.expect("counts"), (0, 0, 0));
        store.close().await;

        // Another worker's daemon cannot take the file over.
        let err = Store::open(&path, &identity(7))
            .await
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("belongs to worker"), "{err}");
    }
}
