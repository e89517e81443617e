//! Proof of compute from the service: a worker is challenged when it connects without leases,
//! again whenever it has idled for `challenge_every_s`, and spot-checked every
//! `spot_check_every_s` while it serves. The matrix size fits the class the worker claims on
//! chain (`size_for`, about `challenge_target_ms` of work at that class's datasheet rate) and the
//! commitment deadline is built from the round trip the gateway measured. Only a worker that
//! passed is offered to placement. A worker that answers wrong, answers late or does not answer
//! while connected is slashed for fraud (`slash_fraud`, the transcript's hash as the evidence)
//! and disconnected; every round's transcript is stored. Caught while serving, it is slashed
//! once per lease: each lease closes as fraud with its share of the slash paid to its buyer,
//! receipts not yet settled are forfeited, the jobs are stopped and the orders placed again.

use super::feed::FeedEvent;
use super::state::{Shared, Tracked};
use super::tasks;
use gpumesh_client::Pubkey;
use gpumesh_client::ix::LeaseRef;
use gpumesh_protocol::GpuClass;
use gpumesh_protocol::challenge::{self, Challenge, Commitment, OpenRequest, Opening};
use gpumesh_protocol::verify::{AwaitingCommitment, AwaitingOpening, Verified};
use gpumesh_protocol::wire::ToWorker;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Slack on top of a deadline before a missing answer counts as none (the verifier itself judges
/// lateness on arrival; this only ends the wait).
const WAIT_SLACK: Duration = Duration::from_millis(500);

/// What a spot check of a worker serving leases allows on top of the usual deadline: its host
/// is busy with the buyers' jobs (measured: an honest CPU worker under load answered in 70 ms
/// against a 56 ms deadline).
pub const SERVING_SLACK: Duration = Duration::from_millis(500);

/// What a round leaves behind: enough to recompute the verdict (the seed regenerates the
/// matrices; the opened rows are kept when the round failed on them).
#[derive(Debug, Clone, Serialize)]
pub struct Transcript {
    pub worker: String,
    pub challenge: Challenge,
    pub sent_unix_ms: u64,
    pub commitment: Option<Commitment>,
    pub commitment_after_ms: Option<u64>,
    pub open_request: Option<OpenRequest>,
    pub opening: Option<Opening>,
    pub opening_after_ms: Option<u64>,
    pub outcome: String,
    pub reason: Option<String>,
}

impl Transcript {
    /// The evidence hash `slash_fraud` records: BLAKE3 of the transcript's JSON.
    pub fn evidence(&self) -> [u8; 32] {
        *blake3::hash(&serde_json::to_vec(self).unwrap_or_default()).as_bytes()
    }
}

enum Pending {
    Commitment(AwaitingCommitment),
    Opening(AwaitingOpening, Instant),
}

/// One round in progress on a connection.
pub struct Round {
    pending: Pending,
    sent_at: Instant,
    transcript: Transcript,
    /// When to stop waiting for the next answer.
    pub wait_until: tokio::time::Instant,
}

/// How a round ended.
pub enum Verdict {
    Passed(Verified, Box<Transcript>),
    Failed(String, Box<Transcript>),
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Round {
    /// A new round for a worker claiming `class`, with `rtt` the measured round trip (none yet:
    /// the protocol's default allowance). A worker `serving` leases shares its device with its
    /// buyers' jobs: its round allows the work twice its datasheet time and [`SERVING_SLACK`]
    /// more (a wrong answer fails whatever the time). Returns the round and the message to send.
    pub fn start(
        shared: &Shared,
        worker: &Pubkey,
        class: GpuClass,
        rtt: Option<Duration>,
        serving: bool,
    ) -> Result<(Round, ToWorker), String> {
        let cfg = &shared.cfg;
        let target = Duration::from_millis(cfg.challenge_target_ms);
        let n = challenge::size_for(class, target);
        let k = cfg.challenge_rows.min(n);
        let mut allowance = match rtt {
            Some(rtt) => rtt * 2 + Duration::from_millis(50),
            None => challenge::DEFAULT_ALLOWANCE,
        };
        if serving {
            allowance += target + SERVING_SLACK;
        }
        let c = Challenge::new(rand::random(), class, n, k, allowance, &mut rand::rng())
            .map_err(|e| e.to_string())?;
        let now = Instant::now();
        let round = Round {
            wait_until: tokio::time::Instant::now() + c.deadline + WAIT_SLACK,
            pending: Pending::Commitment(AwaitingCommitment::new(c.clone(), now)),
            sent_at: now,
            transcript: Transcript {
                worker: worker.to_string(),
                challenge: c.clone(),
                sent_unix_ms: unix_ms(),
                commitment: None,
                commitment_after_ms: None,
                open_request: None,
                opening: None,
                opening_after_ms: None,
                outcome: "pending".into(),
                reason: None,
            },
        };
        Ok((round, ToWorker::Challenge(c)))
    }

    /// The commitment arrived: the rows to open, or the verdict.
    pub fn commitment(mut self, c: Commitment) -> Result<(Round, ToWorker), Verdict> {
        let now = Instant::now();
        self.transcript.commitment_after_ms =
            Some(now.duration_since(self.sent_at).as_millis() as u64);
        self.transcript.commitment = Some(c.clone());
        let Pending::Commitment(waiting) = self.pending else {
            return Err(fail(
                self.transcript,
                "a second commitment for the same challenge".into(),
            ));
        };
        match waiting.receive_commitment(&c, now, &mut rand::rng()) {
            Ok(opening) => {
                let request = opening.open_request().clone();
                let deadline = opening.challenge().open_deadline;
                self.transcript.open_request = Some(request.clone());
                let sent = Instant::now();
                Ok((
                    Round {
                        pending: Pending::Opening(opening.sent(sent), sent),
                        sent_at: self.sent_at,
                        transcript: self.transcript,
                        wait_until: tokio::time::Instant::now() + deadline + WAIT_SLACK,
                    },
                    ToWorker::OpenRequest(request),
                ))
            }
            Err(e) => Err(fail(self.transcript, e.to_string())),
        }
    }

    /// The opening arrived: the rows are recomputed exactly (on the blocking pool: k·n² work).
    pub async fn opening(mut self, o: Opening) -> Verdict {
        let now = Instant::now();
        let Pending::Opening(waiting, asked) = self.pending else {
            return fail(self.transcript, "an opening before the commitment".into());
        };
        self.transcript.opening_after_ms = Some(now.duration_since(asked).as_millis() as u64);
        let checked = {
            let o = o.clone();
            tokio::task::spawn_blocking(move || waiting.receive_opening(&o, now)).await
        };
        match checked {
            Ok(Ok(verified)) => {
                self.transcript.outcome = "passed".into();
                Verdict::Passed(verified, Box::new(self.transcript))
            }
            Ok(Err(e)) => {
                self.transcript.opening = Some(o);
                fail(self.transcript, e.to_string())
            }
            Err(e) => fail(
                self.transcript,
                format!("the verification did not finish: {e}"),
            ),
        }
    }

    /// The wait ran out with no answer.
    pub fn expired(self) -> Verdict {
        let what = match self.pending {
            Pending::Commitment(_) => "no commitment",
            Pending::Opening(..) => "no opening",
        };
        let waited = self.sent_at.elapsed();
        fail(
            self.transcript,
            format!("{what} within the deadline (waited {waited:?})"),
        )
    }
}

fn fail(mut t: Transcript, reason: String) -> Verdict {
    t.outcome = "failed".into();
    t.reason = Some(reason.clone());
    Verdict::Failed(reason, Box::new(t))
}

/// Records a verdict: the transcript stored, the feed told, and on failure the worker slashed
/// for fraud with the transcript's hash as evidence. Returns whether the worker passed.
pub async fn conclude(shared: &Arc<Shared>, worker: Pubkey, verdict: Verdict) -> bool {
    let (passed, reason, transcript) = match verdict {
        Verdict::Passed(v, t) => {
            tracing::info!(%worker, n = v.n, rows = v.rows_checked, elapsed = ?v.commit_elapsed, deadline = ?v.deadline, "compute challenge passed");
            (true, None, t)
        }
        Verdict::Failed(reason, t) => {
            tracing::warn!(%worker, %reason, "compute challenge failed");
            (false, Some(reason), t)
        }
    };
    let evidence = transcript.evidence();
    let text = serde_json::to_string(&transcript).unwrap_or_default();
    if let Err(e) = shared
        .store
        .put_challenge(
            &worker.to_string(),
            transcript.challenge.id,
            &transcript.outcome,
            reason.as_deref(),
            &evidence,
            &text,
            transcript.sent_unix_ms,
        )
        .await
    {
        tracing::warn!(%e, "cannot store a challenge transcript");
    }
    shared.feed.send(FeedEvent::Challenge {
        worker: worker.to_string(),
        n: transcript.challenge.n,
        passed,
        commitment_after_ms: transcript.commitment_after_ms,
        deadline_ms: transcript.challenge.deadline.as_millis() as u64,
        reason: reason.clone(),
    });
    if passed {
        shared.metrics.challenges_passed.inc();
        return true;
    }
    shared.metrics.challenges_failed.inc();
    let serving: Vec<Tracked> = {
        let mut live = shared.live();
        let ids: Vec<_> = live
            .leases
            .values()
            .filter(|t| t.worker == worker)
            .map(|t| t.id)
            .collect();
        ids.into_iter()
            .filter_map(|id| live.leases.remove(&id))
            .collect()
    };
    if serving.is_empty() {
        slash(shared, worker, None, evidence).await;
        return false;
    }
    for t in serving {
        if slash(shared, worker, Some(t.lease), evidence).await {
            if let Some(m) = shared.mirror().as_mut() {
                m.closed(&t.lease.lease);
            }
            tasks::stop_job(shared, &worker, t.id);
            shared.feed.send(FeedEvent::LeaseEnded {
                order: t.order.to_string(),
                worker: worker.to_string(),
                lease: t.lease.lease.to_string(),
                nonce: t.lease.nonce,
                reason: "fraud".into(),
            });
        } else {
            // Still on chain: it goes on being tracked (settled, or failed over once the
            // disconnected worker falls silent).
            shared.live().leases.insert(t.id, t);
        }
    }
    shared.placement.notify_one();
    false
}

/// One `slash_fraud` transaction (on `lease`, paying its buyer, or on the idle worker); whether
/// it landed.
async fn slash(
    shared: &Arc<Shared>,
    worker: Pubkey,
    lease: Option<LeaseRef>,
    evidence: [u8; 32],
) -> bool {
    let orchestrator = shared.orchestrator.clone();
    let slashed = shared
        .chain
        .call(move |c| orchestrator.slash_fraud(c, &worker, lease.as_ref(), evidence))
        .await;
    match slashed {
        Ok(outcome) => {
            tracing::warn!(%worker, lease = ?lease.map(|l| l.lease.to_string()), signature = %outcome.signature, "worker slashed for a failed compute challenge");
            true
        }
        Err(e) => {
            shared.metrics.failed_transactions.inc();
            tracing::warn!(%worker, %e, "the fraud slash failed");
            false
        }
    }
}
