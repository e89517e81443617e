//! The live feed (`GET /v1/feed`, a WebSocket): what happens in the market as the service sees
//! it, one JSON event per text frame: workers connecting, leaving and their telemetry (at most
//! once a second each), leases starting and ending, receipts stored, settlements with their
//! transaction signatures, failovers, why an order waits, jobs' states; and a job's output, for
//! a subscriber that proved it is the order's buyer (the same signature as the logs endpoint).
//!
//! Query parameters narrow it: `order=<address>` and `worker=<address>` keep the events about
//! them; `logs=<order>&unix_ms=<ms>&signature=<base58>` adds that order's job output. A
//! subscriber too slow to keep up is told how many events it missed (`lagged`) and goes on.

use super::state::Shared;
use gpumesh_protocol::wire::Telemetry;
use serde::Serialize;
use std::sync::Arc;
use tokio::sync::broadcast;

/// Events kept for slow subscribers before they lag.
pub const FEED_CAPACITY: usize = 4_096;

/// One feed event. `order`, `worker` and `lease` are base58 addresses.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FeedEvent {
    WorkerConnected {
        worker: String,
        gpus: u16,
        backend: String,
    },
    WorkerDisconnected {
        worker: String,
    },
    Telemetry {
        worker: String,
        rtt_us: Option<u32>,
        telemetry: Telemetry,
    },
    LeaseStarted {
        order: String,
        worker: String,
        lease: String,
        nonce: u64,
        gpus: u16,
        gpu_indices: Vec<u16>,
    },
    ReceiptStored {
        order: String,
        worker: String,
        lease: String,
        nonce: u64,
        served_seconds: u64,
    },
    Settled {
        order: String,
        worker: String,
        lease: String,
        nonce: u64,
        served_seconds: u64,
        signature: String,
    },
    WorkerDown {
        worker: String,
        order: String,
        lease: String,
        nonce: u64,
        silent_ms: u64,
        /// The transaction that closed the lease as offline.
        signature: String,
        /// The spare worker its GPUs went to in that same transaction, if one fit.
        replacement: Option<String>,
    },
    LeaseEnded {
        order: String,
        worker: String,
        lease: String,
        nonce: u64,
        reason: String,
    },
    OrderWaiting {
        order: String,
        reason: String,
    },
    OrderCompleted {
        order: String,
        result_hash: Option<String>,
    },
    Job {
        order: String,
        worker: String,
        lease: String,
        nonce: u64,
        status: String,
        exit_code: Option<i64>,
    },
    /// A chunk of a job's output (only to its buyer's signed subscription).
    JobLog {
        order: String,
        lease: String,
        nonce: u64,
        seq: u64,
        stream: String,
        data: String,
    },
    /// A compute challenge's verdict (a failure slashes the worker for fraud).
    Challenge {
        worker: String,
        n: u32,
        passed: bool,
        commitment_after_ms: Option<u64>,
        deadline_ms: u64,
        reason: Option<String>,
    },
    /// A worker stored a checkpoint of the order's job (hash in hex, size in bytes).
    Checkpoint {
        order: String,
        worker: String,
        lease: String,
        nonce: u64,
        hash: String,
        size: u64,
        files: u64,
        unix_ms: u64,
    },
    /// A job moved to a new worker resumed from this checkpoint.
    CheckpointRestored {
        order: String,
        worker: String,
        lease: String,
        nonce: u64,
        hash: String,
    },
    /// A checkpoint was not restored (missing, incomplete or failing its hash check) and will
    /// not be offered again; the one before it is tried next.
    CheckpointSkipped {
        order: String,
        worker: String,
        lease: String,
        nonce: u64,
        hash: String,
        reason: String,
    },
    /// This subscriber fell behind and missed `missed` events.
    Lagged {
        missed: u64,
    },
}

impl FeedEvent {
    /// The order and the worker the event is about, for the subscribers' filters.
    pub fn about(&self) -> (Option<&str>, Option<&str>) {
        use FeedEvent::*;
        match self {
            WorkerConnected { worker, .. }
            | WorkerDisconnected { worker }
            | Telemetry { worker, .. }
            | Challenge { worker, .. } => (None, Some(worker)),
            LeaseStarted { order, worker, .. }
            | ReceiptStored { order, worker, .. }
            | Settled { order, worker, .. }
            | WorkerDown { order, worker, .. }
            | LeaseEnded { order, worker, .. }
            | Job { order, worker, .. }
            | Checkpoint { order, worker, .. }
            | CheckpointRestored { order, worker, .. }
            | CheckpointSkipped { order, worker, .. } => (Some(order), Some(worker)),
            OrderWaiting { order, .. } | OrderCompleted { order, .. } | JobLog { order, .. } => {
                (Some(order), None)
            }
            Lagged { .. } => (None, None),
        }
    }

    /// Whether only the order's buyer may see it.
    pub fn private(&self) -> bool {
        matches!(self, FeedEvent::JobLog { .. })
    }
}

/// The feed's sender; a send with no subscriber is not an error.
pub struct Feed(broadcast::Sender<Arc<FeedEvent>>);

impl Feed {
    pub fn new() -> Self {
        Self(broadcast::channel(FEED_CAPACITY).0)
    }

    pub fn send(&self, event: FeedEvent) {
        let _ = self.0.send(Arc::new(event));
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<FeedEvent>> {
        self.0.subscribe()
    }
}

impl Default for Feed {
    fn default() -> Self {
        Self::new()
    }
}

/// What one subscriber asked for.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub order: Option<String>,
    pub worker: Option<String>,
    /// The order whose job output this subscriber may see (its buyer's signature checked).
    pub logs_of: Option<String>,
}

impl Filter {
    pub fn admits(&self, event: &FeedEvent) -> bool {
        let (order, worker) = event.about();
        if event.private() {
            return self.logs_of.is_some() && order == self.logs_of.as_deref();
        }
        if matches!(event, FeedEvent::Lagged { .. }) {
            return true;
        }
        if let Some(want) = &self.order
            && order != Some(want.as_str())
        {
            return false;
        }
        if let Some(want) = &self.worker
            && worker != Some(want.as_str())
        {
            return false;
        }
        true
    }
}

/// Serves one subscriber until it leaves or the service stops.
pub async fn serve(
    shared: Arc<Shared>,
    mut socket: axum::extract::ws::WebSocket,
    filter: Filter,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use axum::extract::ws::Message;
    let mut rx = shared.feed.subscribe();
    loop {
        let event = tokio::select! {
            _ = stop.changed() => break,
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                _ => continue,
            },
            event = rx.recv() => match event {
                Ok(e) => e,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    Arc::new(FeedEvent::Lagged { missed })
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
        };
        if !filter.admits(&event) {
            continue;
        }
        let Ok(text) = serde_json::to_string(event.as_ref()) else {
            continue;
        };
        if socket.send(Message::Text(text.into())).await.is_err() {
            break;
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_keep_what_was_asked_and_output_only_for_its_buyer() {
        let log = FeedEvent::JobLog {
            order: "o1".into(),
            lease: "l".into(),
            nonce: 1,
            seq: 1,
            stream: "stdout".into(),
            data: "x".into(),
        };
        let started = FeedEvent::LeaseStarted {
            order: "o1".into(),
            worker: "w1".into(),
            lease: "l".into(),
            nonce: 1,
            gpus: 1,
            gpu_indices: vec![0],
        };
        let joined = FeedEvent::WorkerConnected {
            worker: "w2".into(),
            gpus: 8,
            backend: "cuda".into(),
        };
        let all = Filter::default();
        assert!(all.admits(&started) && all.admits(&joined));
        assert!(!all.admits(&log), "output needs the buyer's signature");
        let o1 = Filter {
            order: Some("o1".into()),
            ..Filter::default()
        };
        assert!(o1.admits(&started) && !o1.admits(&joined) && !o1.admits(&log));
        let buyer = Filter {
            logs_of: Some("o1".into()),
            ..o1.clone()
        };
        assert!(buyer.admits(&log));
        let other = Filter {
            logs_of: Some("o2".into()),
            ..Filter::default()
        };
        assert!(!other.admits(&log));
        let w2 = Filter {
            worker: Some("w2".into()),
            ..Filter::default()
        };
        assert!(w2.admits(&joined) && !w2.admits(&started));
        let json = serde_json::to_value(&started).unwrap();
        assert_eq!(json["type"], "lease_started");
    }
}
