//! The worker gateway: one WebSocket per worker daemon at `/v1/worker`, speaking
//! `gpumesh_protocol::wire`. A daemon proves its node key by signing the service's nonce; the
//! service checks the on-chain worker (registered in this market, node key matching, not jailed).
//! Then it takes heartbeats (each lease's hash-chain link recomputed and compared), receipts
//! (checked against the node key and the heartbeats, stored, then acknowledged), job events and
//! logs. A malformed, oversized or out-of-order message gets an error frame; repeated ones close
//! that connection, never the service.

use super::challenge::{Round, Verdict, conclude};
use super::feed::FeedEvent;
use super::state::{JobPhase, Session, Shared};
use super::store::JobRecord;
use axum::extract::ws::{Message, WebSocket};
use futures_util::SinkExt;
use gpumesh_client::ChainExt;
use gpumesh_client::program::state::Worker;
use gpumesh_client::{Pubkey, receipt};
use gpumesh_protocol::heartbeat::Link;
use gpumesh_protocol::wire::{
    self, ErrorCode, Heartbeat, LeaseAssignment, MAX_FRAME_BYTES, ToOrchestrator, ToWorker,
    WIRE_VERSION,
};
use gpumesh_protocol::{GpuClass, Key, SignedReceipt, SignedWorkerReceipt};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How long a daemon has to answer the Welcome.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Error frames a connection may earn before it is closed.
const MAX_ERRORS: u32 = 16;
/// Distinct ended leases a connection may still name before further ones count as errors.
const MAX_UNKNOWN_LEASES: usize = 64;
/// Messages queued for one worker before it counts as stuck.
const QUEUE: usize = 256;
/// A worker's telemetry goes to the feed at most this often.
const TELEMETRY_FEED_EVERY: Duration = Duration::from_secs(1);

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn send(socket: &mut WebSocket, message: &ToWorker) -> bool {
    socket
        .send(Message::Text(wire::encode(message).into()))
        .await
        .is_ok()
}

async fn refuse(socket: &mut WebSocket, code: ErrorCode, message: String) {
    let _ = send(socket, &ToWorker::Error { code, message }).await;
    let _ = socket.close().await;
}

/// Serves one worker connection to its end.
pub async fn serve(shared: Arc<Shared>, mut socket: WebSocket) {
    let nonce: [u8; 32] = rand::random();
    let welcome = ToWorker::Welcome {
        version: WIRE_VERSION,
        nonce,
        program_id: shared.program_id,
        market: receipt::key(&shared.addrs.market),
        heartbeat_ms: shared.cfg.heartbeat_ms,
        worker_receipts: true,
    };
    if !send(&mut socket, &welcome).await {
        return;
    }
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, socket.recv()).await {
        Ok(Some(Ok(Message::Text(text)))) => wire::decode::<ToOrchestrator>(&text),
        Ok(Some(Ok(_))) => {
            refuse(
                &mut socket,
                ErrorCode::Malformed,
                "expected a text frame with Hello".into(),
            )
            .await;
            return;
        }
        _ => return,
    };
    let (node_key, worker_key, hardware) = match hello {
        Ok(ToOrchestrator::Hello {
            version,
            node_key,
            worker,
            hardware,
            signature,
            ..
        }) => {
            if version != WIRE_VERSION {
                let m = format!(
                    "this orchestrator speaks version {WIRE_VERSION}, the daemon {version}: upgrade the older side"
                );
                refuse(&mut socket, ErrorCode::VersionMismatch, m).await;
                return;
            }
            if !wire::verify_auth(&node_key, &shared.program_id, &worker, &nonce, &signature) {
                let m = "the session signature does not verify: sign the Welcome nonce with the worker's node key".into();
                refuse(&mut socket, ErrorCode::AuthFailed, m).await;
                return;
            }
            (node_key, worker, hardware)
        }
        Ok(_) => {
            refuse(
                &mut socket,
                ErrorCode::OutOfOrder,
                "the first message must be Hello".into(),
            )
            .await;
            return;
        }
        Err(e) => {
            refuse(&mut socket, e.code(), e.to_string()).await;
            return;
        }
    };
    let worker = receipt::pubkey(&worker_key);
    // The on-chain worker: registered in this market, with this node key, not jailed.
    let market = shared.addrs.market;
    let onchain = shared
        .chain
        .call(move |c| {
            let now = c.unix_time()?;
            Ok::<_, gpumesh_client::ChainError>((c.fetch_opt::<Worker>(&worker)?, now))
        })
        .await;
    let claimed_class = match &onchain {
        Ok((Some(w), _)) => GpuClass::from_code(w.hardware.gpu_class).ok(),
        _ => None,
    };
    let refusal = match onchain {
        Err(e) => Some((
            ErrorCode::Internal,
            format!("cannot read the worker from the chain: {e}"),
        )),
        Ok((None, _)) => Some((
            ErrorCode::NotRegistered,
            format!(
                "{worker} is not a registered worker: register it with `gpumesh worker register`"
            ),
        )),
        Ok((Some(w), now)) => {
            if w.market != market {
                Some((
                    ErrorCode::NotRegistered,
                    format!("{worker} belongs to another market"),
                ))
            } else if receipt::key(&w.node_key) != node_key {
                Some((
                    ErrorCode::AuthFailed,
                    format!(
                        "{node_key} is not the node key registered for {worker}: use the node key file you registered, or `gpumesh worker update --node-key`"
                    ),
                ))
            } else if w.is_jailed(now) {
                Some((
                    ErrorCode::Jailed,
                    format!(
                        "{worker} is jailed until {}: it takes no work until its owner unjails it",
                        w.jailed_until
                    ),
                ))
            } else {
                None
            }
        }
    };
    let refusal = refusal.or_else(|| {
        claimed_class.is_none().then(|| {
            (
                ErrorCode::NotRegistered,
                format!("{worker} claims a GPU class this service does not know"),
            )
        })
    });
    if let Some((code, message)) = refusal {
        refuse(&mut socket, code, message).await;
        return;
    }
    let class = claimed_class.unwrap_or(GpuClass::Cpu);

    let (tx, mut rx) = mpsc::channel::<ToWorker>(QUEUE);
    let session_id = {
        let mut live = shared.live();
        live.next_session += 1;
        let id = live.next_session;
        // A reconnect replaces the older session (its sender drops and that loop ends).
        live.sessions.insert(
            worker,
            Session {
                id,
                node_key,
                tx,
                last_seen: Instant::now(),
                heartbeat_seq: 0,
                rtt_us: None,
                telemetry: Default::default(),
                hardware: hardware.clone(),
                connected_at: Instant::now(),
                telemetry_fed: None,
                verified: false,
                challenging: false,
            },
        );
        shared
            .metrics
            .connected_workers
            .set(live.sessions.len() as i64);
        id
    };
    let resume = resume_leases(&shared, &worker).await;
    // A worker already serving leases (a reconnect, or a restart of this service) keeps them
    // and is challenged when it idles; one that passed before in this service's life keeps its
    // pass; any other proves its class before it gets work.
    let verified = !resume.is_empty() || shared.live().verified.contains(&worker);
    if let Some(s) = shared.live().sessions.get_mut(&worker) {
        s.verified = verified;
    }
    // Idle, a worker is challenged every `challenge_every_s`; serving, it is spot-checked every
    // `spot_check_every_s` (never when that is 0). The timer wakes at the shorter of the two and
    // looks at what the worker is doing then.
    let idle_every = Duration::from_secs(shared.cfg.challenge_every_s);
    let serving_every = match shared.cfg.spot_check_every_s {
        0 => None,
        s => Some(Duration::from_secs(s)),
    };
    let wake_every = serving_every.map_or(idle_every, |s| s.min(idle_every));
    let mut last_round = tokio::time::Instant::now();
    let mut next_challenge =
        tokio::time::Instant::now() + if verified { wake_every } else { Duration::ZERO };
    let mut round: Option<Round> = None;
    if !send(
        &mut socket,
        &ToWorker::Ready {
            worker: worker_key,
            leases: resume,
        },
    )
    .await
    {
        drop_session(&shared, &worker, session_id);
        return;
    }
    shared.placement.notify_one();
    shared.feed.send(FeedEvent::WorkerConnected {
        worker: worker.to_string(),
        gpus: hardware.gpus.len() as u16,
        backend: hardware.backend.clone(),
    });
    tracing::info!(%worker, "worker connected");

    let mut errors = 0u32;
    // Set when the worker failed a compute challenge: what is queued for it (the jobs of the
    // leases its slash closed, to stop) goes out before the connection closes.
    let mut caught = false;
    let mut told_unknown: HashSet<String> = HashSet::new();
    let mut ping = tokio::time::interval(Duration::from_secs(2));
    let mut ping_id = 0u64;
    let mut ping_sent: Option<(u64, Instant)> = None;
    loop {
        tokio::select! {
            outgoing = rx.recv() => {
                let Some(message) = outgoing else { break };
                if !send(&mut socket, &message).await {
                    break;
                }
            }
            _ = tokio::time::sleep_until(next_challenge), if round.is_none() => {
                let now = tokio::time::Instant::now();
                next_challenge = now + wake_every;
                let serving = shared.live().leases.values().any(|t| t.worker == worker);
                let due = match (serving, serving_every) {
                    (false, _) => idle_every,
                    (true, Some(every)) => every,
                    (true, None) => continue,
                };
                let passed = shared.live().sessions.get(&worker).is_some_and(|s| s.verified);
                if passed && now < last_round + due {
                    next_challenge = next_challenge.min(last_round + due);
                    continue;
                }
                last_round = now;
                let rtt = shared.live().sessions.get(&worker).and_then(|s| s.rtt_us).map(|us| Duration::from_micros(u64::from(us)));
                match Round::start(&shared, &worker, class, rtt, serving) {
                    Ok((r, message)) => {
                        set_challenging(&shared, &worker, true);
                        round = Some(r);
                        if !send(&mut socket, &message).await {
                            break;
                        }
                    }
                    Err(e) => tracing::warn!(%worker, %e, "cannot build a compute challenge"),
                }
            }
            _ = async { match &round { Some(r) => tokio::time::sleep_until(r.wait_until).await, None => std::future::pending().await } } => {
                if let Some(r) = round.take()
                    && !finish_round(&shared, &worker, r.expired()).await
                {
                    caught = true;
                    break;
                }
            }
            _ = ping.tick() => {
                ping_id += 1;
                ping_sent = Some((ping_id, Instant::now()));
                if !send(&mut socket, &ToWorker::Ping { id: ping_id, unix_ms: now_ms() }).await {
                    break;
                }
            }
            incoming = socket.recv() => {
                let text = match incoming {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(Message::Binary(b))) if b.len() > MAX_FRAME_BYTES => {
                        errors += 1;
                        continue;
                    }
                    Some(Ok(_)) => continue,
                };
                let result = match wire::decode::<ToOrchestrator>(&text) {
                    Ok(ToOrchestrator::Commitment(c)) => match round.take() {
                        Some(r) => match r.commitment(c) {
                            Ok((r, message)) => {
                                round = Some(r);
                                if !send(&mut socket, &message).await {
                                    break;
                                }
                                Ok(())
                            }
                            Err(verdict) => {
                                if !finish_round(&shared, &worker, verdict).await {
                                    caught = true;
                                    break;
                                }
                                Ok(())
                            }
                        },
                        None => Err((ErrorCode::OutOfOrder, "no compute challenge is pending for this worker".to_string())),
                    },
                    Ok(ToOrchestrator::Opening(o)) => match round.take() {
                        Some(r) => {
                            if !finish_round(&shared, &worker, r.opening(o).await).await {
                                caught = true;
                                break;
                            }
                            Ok(())
                        }
                        None => Err((ErrorCode::OutOfOrder, "no compute challenge is pending for this worker".to_string())),
                    },
                    Ok(ToOrchestrator::Pong { id }) => {
                        if let Some((sent_id, at)) = ping_sent && sent_id == id {
                            let rtt = at.elapsed().as_micros().min(u32::MAX as u128) as u32;
                            if let Some(s) = shared.live().sessions.get_mut(&worker) {
                                s.rtt_us = Some(rtt);
                            }
                        }
                        Ok(())
                    }
                    Ok(message) => handle(&shared, &worker, &node_key, message).await,
                    Err(e) => Err((e.code(), e.to_string())),
                };
                if let Err((code, message)) = result {
                    shared.metrics.protocol_errors.inc();
                    if code == ErrorCode::UnknownLease && told_unknown.len() < MAX_UNKNOWN_LEASES {
                        // Messages for a lease that ended while they were on their way (a
                        // daemon back from a partition sends what it queued): told once per
                        // lease, and not held against the connection.
                        if !told_unknown.insert(message.clone()) {
                            continue;
                        }
                    } else {
                        errors += 1;
                    }
                    tracing::debug!(%worker, ?code, %message, "refused a worker message");
                    if !send(&mut socket, &ToWorker::Error { code, message }).await || errors > MAX_ERRORS {
                        break;
                    }
                }
            }
        }
    }
    if caught {
        while let Ok(message) = rx.try_recv() {
            if !send(&mut socket, &message).await {
                break;
            }
        }
        let _ = send(
            &mut socket,
            &ToWorker::Error {
                code: ErrorCode::Jailed,
                message: "this worker failed a compute challenge: it was slashed for fraud and jailed; its leases ended".into(),
            },
        )
        .await;
    }
    drop_session(&shared, &worker, session_id);
    tracing::info!(%worker, "worker disconnected");
}

fn set_challenging(shared: &Shared, worker: &Pubkey, on: bool) {
    if let Some(s) = shared.live().sessions.get_mut(worker) {
        s.challenging = on;
    }
}

/// Ends a round: on a pass the worker is offered to placement; on a failure it has been slashed
/// and the connection closes (returns false).
async fn finish_round(shared: &Arc<Shared>, worker: &Pubkey, verdict: Verdict) -> bool {
    let passed = conclude(shared, *worker, verdict).await;
    {
        let mut live = shared.live();
        if passed {
            live.verified.insert(*worker);
        } else {
            live.verified.remove(worker);
        }
        if let Some(s) = live.sessions.get_mut(worker) {
            s.challenging = false;
            s.verified = passed;
        }
    }
    if passed {
        shared.placement.notify_one();
    }
    passed
}

fn drop_session(shared: &Shared, worker: &Pubkey, id: u64) {
    let mut live = shared.live();
    if live.sessions.get(worker).is_some_and(|s| s.id == id) {
        live.sessions.remove(worker);
        shared.feed.send(FeedEvent::WorkerDisconnected {
            worker: worker.to_string(),
        });
    }
    shared
        .metrics
        .connected_workers
        .set(live.sessions.len() as i64);
}

/// The leases a (re)connecting worker should be serving, with their specs.
async fn resume_leases(shared: &Shared, worker: &Pubkey) -> Vec<LeaseAssignment> {
    let leases: Vec<_> = {
        let mut live = shared.live();
        live.leases
            .values_mut()
            .filter(|t| t.worker == *worker)
            .map(|t| {
                t.last_beat = Instant::now();
                // Back: the restart grace (or a failed failover's wait) no longer applies.
                t.retry_at = None;
                // Where this service's copy of the chain ends, so the daemon resends the links
                // the dropped connection lost; after a restart of the service there is no copy
                // and the worker's next head becomes the base.
                let chain = (!t.resumed).then(|| wire::ChainPosition {
                    seq: t.chain.last().map_or(0, |l| l.seq),
                    head: t.chain.head(),
                });
                (t.id, t.order, t.gpus, t.gpu_indices.clone(), chain)
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|(id, order, gpus, indices, chain)| {
                // Only a lease the worker does not know yet is started (from its checkpoint).
                let restore = live.restore_for(&order);
                let off = live.checkpoints_off.contains(&order);
                (id, order, gpus, indices, chain, (restore, off))
            })
            .collect()
    };
    let mut out = vec![];
    for (id, order, gpus, gpu_indices, chain, (restore, checkpoints_off)) in leases {
        if let Ok(Some(spec_text)) = shared.store.spec(&order.to_string()).await
            && let Ok(spec) = wire::JobSpec::from_toml(&spec_text)
        {
            out.push(LeaseAssignment {
                lease: id,
                order: receipt::key(&order),
                gpus,
                gpu_indices,
                spec,
                spec_hash: gpumesh_protocol::job_spec_hash(spec_text.as_bytes()),
                receipt_every_s: shared.cfg.receipt_every_s,
                spec_file: Some(spec_text),
                chain,
                restore,
                checkpoints_off,
            });
        }
    }
    out
}

type Refusal = (ErrorCode, String);

async fn handle(
    shared: &Arc<Shared>,
    worker: &Pubkey,
    node_key: &Key,
    message: ToOrchestrator,
) -> Result<(), Refusal> {
    match message {
        ToOrchestrator::Hello { .. } => {
            Err((ErrorCode::OutOfOrder, "Hello comes once, first".into()))
        }
        ToOrchestrator::Heartbeat(hb) => heartbeat(shared, worker, hb),
        ToOrchestrator::Receipt(r) => receipt_in(shared, worker, node_key, r).await,
        ToOrchestrator::WorkerReceipt(r) => worker_receipt_in(shared, worker, node_key, r),
        ToOrchestrator::JobStarted { lease, unix_ms } => {
            let (order, failover_from) = {
                let mut live = shared.live();
                let t = live
                    .leases
                    .get_mut(&lease)
                    .filter(|t| t.worker == *worker)
                    .ok_or_else(|| unknown(&lease))?;
                t.job = JobPhase::Running;
                (t.order, t.failover_from.take())
            };
            if let Some(from) = failover_from {
                shared
                    .metrics
                    .failover_restart_seconds
                    .observe(from.elapsed().as_secs_f64());
                tracing::info!(%worker, seconds = from.elapsed().as_secs_f64(), "job running again after a failover");
            }
            job_record(shared, lease, order, worker, "running", None, None, unix_ms).await;
            Ok(())
        }
        ToOrchestrator::JobLog {
            lease,
            stream,
            seq,
            data,
        } => {
            let order = shared
                .live()
                .leases
                .get(&lease)
                .filter(|t| t.worker == *worker)
                .map(|t| t.order)
                .ok_or_else(|| unknown(&lease))?;
            let stream = match stream {
                wire::LogStream::Stdout => "stdout",
                wire::LogStream::Stderr => "stderr",
            };
            shared
                .store
                .put_log(&lease, seq, stream, &data)
                .await
                .map_err(|e| (ErrorCode::Internal, e.to_string()))?;
            shared.feed.send(FeedEvent::JobLog {
                order: order.to_string(),
                lease: lease.lease.to_string(),
                nonce: lease.nonce,
                seq,
                stream: stream.to_string(),
                data,
            });
            Ok(())
        }
        ToOrchestrator::JobExited {
            lease,
            unix_ms,
            exit_code,
            status,
            result_hash,
        } => {
            let order = {
                let mut live = shared.live();
                let t = live
                    .leases
                    .get_mut(&lease)
                    .filter(|t| t.worker == *worker)
                    .ok_or_else(|| unknown(&lease))?;
                t.job = JobPhase::Exited;
                t.exited_at.get_or_insert_with(std::time::Instant::now);
                t.result_hash = result_hash;
                t.order
            };
            let hash = result_hash.map(|h| gpumesh_protocol::hex(&h));
            job_record(
                shared,
                lease,
                order,
                worker,
                &status,
                exit_code.map(i64::from),
                hash,
                unix_ms,
            )
            .await;
            shared.settlement.notify_one();
            Ok(())
        }
        ToOrchestrator::Checkpoint(c) => checkpoint_in(shared, worker, c).await,
        ToOrchestrator::CheckpointRestored { lease, hash } => {
            let order = order_of(shared, worker, &lease)?;
            tracing::info!(%worker, %order, hash = %gpumesh_protocol::hex(&hash), "job resumed from a checkpoint");
            shared.feed.send(FeedEvent::CheckpointRestored {
                order: order.to_string(),
                worker: worker.to_string(),
                lease: lease.lease.to_string(),
                nonce: lease.nonce,
                hash: gpumesh_protocol::hex(&hash),
            });
            Ok(())
        }
        ToOrchestrator::CheckpointSkipped {
            lease,
            hash,
            reason,
        } => {
            let order = order_of(shared, worker, &lease)?;
            tracing::warn!(%worker, %order, hash = %gpumesh_protocol::hex(&hash), %reason, "checkpoint skipped on restore; it will not be offered again");
            shared.live().drop_checkpoint(&order, &hash);
            shared
                .store
                .skip_checkpoint(&order.to_string(), &hash, &reason)
                .await
                .map_err(|e| (ErrorCode::Internal, e.to_string()))?;
            shared.feed.send(FeedEvent::CheckpointSkipped {
                order: order.to_string(),
                worker: worker.to_string(),
                lease: lease.lease.to_string(),
                nonce: lease.nonce,
                hash: gpumesh_protocol::hex(&hash),
                reason,
            });
            Ok(())
        }
        ToOrchestrator::Pong { .. } => Ok(()),
        ToOrchestrator::Commitment(_) | ToOrchestrator::Opening(_) => Err((
            ErrorCode::OutOfOrder,
            "no compute challenge is pending for this worker".into(),
        )),
        ToOrchestrator::Error { code, message } => {
            tracing::warn!(%worker, ?code, %message, "the worker reported an error");
            Ok(())
        }
    }
}

/// The order of a lease this worker serves.
fn order_of(shared: &Shared, worker: &Pubkey, lease: &wire::LeaseId) -> Result<Pubkey, Refusal> {
    shared
        .live()
        .leases
        .get(lease)
        .filter(|t| t.worker == *worker)
        .map(|t| t.order)
        .ok_or_else(|| unknown(lease))
}

/// A stored checkpoint: recorded for its order (store first, then what new leases restore).
async fn checkpoint_in(
    shared: &Shared,
    worker: &Pubkey,
    c: wire::CheckpointRef,
) -> Result<(), Refusal> {
    let order = order_of(shared, worker, &c.lease)?;
    if shared.live().checkpoints_off.contains(&order) {
        return Err((
            ErrorCode::Malformed,
            format!("order {order}'s buyer turned checkpoints off; the checkpoint is not recorded"),
        ));
    }
    let spec = shared
        .store
        .spec(&order.to_string())
        .await
        .map_err(|e| (ErrorCode::Internal, e.to_string()))?;
    let wanted = spec
        .and_then(|text| wire::JobSpec::from_toml(&text).ok())
        .is_some_and(|s| s.checkpoint.is_some());
    if !wanted {
        return Err((
            ErrorCode::Malformed,
            format!("order {order}'s job spec has no [checkpoint]; the checkpoint is not recorded"),
        ));
    }
    shared
        .store
        .put_checkpoint(&order.to_string(), &worker.to_string(), &c)
        .await
        .map_err(|e| (ErrorCode::Internal, e.to_string()))?;
    shared.live().add_checkpoint(order, c);
    shared.feed.send(FeedEvent::Checkpoint {
        order: order.to_string(),
        worker: worker.to_string(),
        lease: c.lease.lease.to_string(),
        nonce: c.lease.nonce,
        hash: gpumesh_protocol::hex(&c.hash),
        size: c.size,
        files: c.files,
        unix_ms: c.unix_ms,
    });
    Ok(())
}

fn unknown(lease: &wire::LeaseId) -> Refusal {
    (
        ErrorCode::UnknownLease,
        format!(
            "lease {} (instance {}) is not one this worker serves",
            lease.lease, lease.nonce
        ),
    )
}

#[allow(clippy::too_many_arguments)]
async fn job_record(
    shared: &Shared,
    lease: wire::LeaseId,
    order: Pubkey,
    worker: &Pubkey,
    status: &str,
    exit_code: Option<i64>,
    result_hash: Option<String>,
    unix_ms: u64,
) {
    let record = JobRecord {
        lease,
        order: order.to_string(),
        worker: worker.to_string(),
        status: status.to_string(),
        exit_code,
        result_hash,
        updated_ms: unix_ms as i64,
    };
    if let Err(e) = shared.store.put_job(&record).await {
        tracing::warn!(%e, "cannot store a job's state");
    }
    shared.feed.send(FeedEvent::Job {
        order: record.order,
        worker: record.worker,
        lease: lease.lease.to_string(),
        nonce: lease.nonce,
        status: record.status,
        exit_code: record.exit_code,
    });
}

/// A heartbeat: its sequence follows the last; each lease's link, recomputed, gives the head the
/// worker claims.
fn heartbeat(shared: &Shared, worker: &Pubkey, hb: Heartbeat) -> Result<(), Refusal> {
    let mut live = shared.live();
    let session = live
        .sessions
        .get_mut(worker)
        .ok_or((ErrorCode::Internal, "no session".to_string()))?;
    if hb.seq != session.heartbeat_seq + 1 {
        let expected = session.heartbeat_seq + 1;
        return Err((
            ErrorCode::OutOfOrder,
            format!("heartbeat {} arrived where {expected} was due", hb.seq),
        ));
    }
    session.heartbeat_seq = hb.seq;
    session.last_seen = Instant::now();
    if hb.rtt_us.is_some() {
        session.rtt_us = hb.rtt_us;
    }
    let digest = *blake3::hash(&hb.telemetry.digest_bytes()).as_bytes();
    if session
        .telemetry_fed
        .is_none_or(|at| at.elapsed() >= TELEMETRY_FEED_EVERY)
    {
        session.telemetry_fed = Some(Instant::now());
        shared.feed.send(FeedEvent::Telemetry {
            worker: worker.to_string(),
            rtt_us: session.rtt_us,
            telemetry: hb.telemetry.clone(),
        });
    }
    session.telemetry = hb.telemetry;
    shared.metrics.heartbeats.inc();
    let mut refused = None;
    for beat in hb.leases {
        let Some(t) = live
            .leases
            .get_mut(&beat.lease)
            .filter(|t| t.worker == *worker)
        else {
            refused = Some(unknown(&beat.lease));
            continue;
        };
        let link = Link {
            seq: beat.seq,
            unix_ms: hb.unix_ms,
            served_seconds: beat.served_seconds,
            payload_digest: digest,
        };
        if t.resumed {
            // After a restart the service has no chain to extend: the worker's head is the base.
            t.chain = gpumesh_protocol::HeartbeatChain::resume(
                beat.seq,
                beat.served_seconds,
                hb.unix_ms,
                beat.head,
            );
            t.resumed = false;
        } else {
            match t.chain.push(link) {
                Ok(head) if head == beat.head => {}
                Ok(_) => {
                    refused = Some((
                        ErrorCode::BadReceipt,
                        format!(
                            "heartbeat {} of lease {}: the chain head does not match its link",
                            beat.seq, beat.lease.lease
                        ),
                    ));
                    continue;
                }
                Err(e) => {
                    refused = Some((ErrorCode::OutOfOrder, e.to_string()));
                    continue;
                }
            }
        }
        t.last_beat = Instant::now();
        t.remember_head(beat.served_seconds, beat.head);
    }
    match refused {
        Some(r) => Err(r),
        None => Ok(()),
    }
}

/// A receipt: signed by this worker's node key, for a lease instance it serves, claiming no more
/// than its heartbeats showed, over a head they produced. Stored before it is acknowledged.
async fn receipt_in(
    shared: &Shared,
    worker: &Pubkey,
    node_key: &Key,
    r: SignedReceipt,
) -> Result<(), Refusal> {
    r.verify(Some(node_key))
        .map_err(|e| (ErrorCode::BadReceipt, e.to_string()))?;
    if r.program_id != shared.program_id {
        return Err((
            ErrorCode::BadReceipt,
            "the receipt is for another program deployment".into(),
        ));
    }
    let id = wire::LeaseId {
        lease: r.lease,
        nonce: r.lease_nonce,
    };
    {
        let mut live = shared.live();
        let t = live
            .leases
            .get_mut(&id)
            .filter(|t| t.worker == *worker)
            .ok_or_else(|| unknown(&id))?;
        match t.heads.get(&r.served_seconds) {
            Some(head) if *head == r.chain_head => {}
            _ => {
                return Err((
                    ErrorCode::BadReceipt,
                    format!(
                        "the receipt claims {} s over a head no heartbeat of this lease showed",
                        r.served_seconds
                    ),
                ));
            }
        }
        if t.latest_receipt
            .as_ref()
            .is_some_and(|l| l.served_seconds >= r.served_seconds)
        {
            // Already have this or a newer one: acknowledge again, change nothing.
            let ack = ToWorker::ReceiptAck {
                lease: id,
                served_seconds: r.served_seconds,
            };
            if let Some(s) = live.sessions.get(worker) {
                let _ = s.tx.try_send(ack);
            }
            return Ok(());
        }
    }
    shared.store.put_receipt(&r).await.map_err(|e| {
        (
            ErrorCode::Internal,
            format!("the receipt could not be stored: {e}"),
        )
    })?;
    shared.metrics.receipts.inc();
    let ack = ToWorker::ReceiptAck {
        lease: id,
        served_seconds: r.served_seconds,
    };
    {
        let mut live = shared.live();
        if let Some(t) = live.leases.get_mut(&id) {
            shared.feed.send(FeedEvent::ReceiptStored {
                order: t.order.to_string(),
                worker: worker.to_string(),
                lease: id.lease.to_string(),
                nonce: id.nonce,
                served_seconds: r.served_seconds,
            });
            t.remember_receipt(r);
        }
        if let Some(s) = live.sessions.get(worker) {
            let _ = s.tx.try_send(ack);
        }
    }
    Ok(())
}

/// A worker receipt: signed by this worker's node key for this deployment, every entry a lease
/// instance it serves, each claim over a head its heartbeats showed. Kept (the newest per
/// worker) for settlement, which pays all its leases for one signature; the lease receipts of
/// the same round are what is stored and acknowledged, so a restart loses nothing.
fn worker_receipt_in(
    shared: &Shared,
    worker: &Pubkey,
    node_key: &Key,
    r: SignedWorkerReceipt,
) -> Result<(), Refusal> {
    r.verify(Some(node_key))
        .map_err(|e| (ErrorCode::BadReceipt, e.to_string()))?;
    if r.program_id != shared.program_id || r.worker != receipt::key(worker) {
        return Err((
            ErrorCode::BadReceipt,
            "the worker receipt is for another deployment or worker".into(),
        ));
    }
    let mut live = shared.live();
    for e in &r.entries {
        let id = wire::LeaseId {
            lease: e.lease,
            nonce: e.lease_nonce,
        };
        let t = live
            .leases
            .get(&id)
            .filter(|t| t.worker == *worker)
            .ok_or_else(|| unknown(&id))?;
        if t.heads.get(&e.served_seconds) != Some(&e.chain_head) {
            return Err((
                ErrorCode::BadReceipt,
                format!(
                    "the worker receipt claims {} s of lease {} over a head no heartbeat showed",
                    e.served_seconds, e.lease
                ),
            ));
        }
    }
    let newer = live
        .worker_receipts
        .get(worker)
        .is_none_or(|old| entries_total(old) <= entries_total(&r));
    if newer {
        live.worker_receipts.insert(*worker, r);
    }
    Ok(())
}

fn entries_total(r: &SignedWorkerReceipt) -> u64 {
    r.entries
        .iter()
        .map(|e| e.served_seconds)
        .fold(0, u64::saturating_add)
}
