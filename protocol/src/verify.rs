//! The orchestrator's side of a challenge round, as a small state machine:
//! [`AwaitingCommitment`] → [`AwaitingOpening`] → [`Verified`], or a typed [`Rejection`].
//!
//! Time is an input: callers pass the `Instant`s at which they sent and received messages, read
//! from their own clock, so the worker cannot lie about timing and tests are deterministic.

use crate::challenge::{Challenge, Commitment, OpenRequest, Opening, PROTOCOL_VERSION};
use crate::exact;
use crate::merkle::{self, Digest};
use rand::Rng;
use std::time::{Duration, Instant};

/// Why an answer was refused. Each is grounds to fail the worker's claim.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error(
        "message version {got} is not supported (this verifier speaks {expected}); upgrade the worker"
    )]
    UnsupportedVersion { got: u16, expected: u16 },
    #[error("answer names challenge {got}, but challenge {expected} is pending")]
    WrongChallenge { got: u64, expected: u64 },
    #[error("commitment covers {got} rows but the challenge has {expected}")]
    WrongRowCount { got: u32, expected: u32 },
    #[error(
        "commitment arrived after {elapsed:?}, past the {deadline:?} deadline for the claimed class"
    )]
    LateCommitment {
        elapsed: Duration,
        deadline: Duration,
    },
    #[error("opening arrived after {elapsed:?}, past its {deadline:?} deadline")]
    LateOpening {
        elapsed: Duration,
        deadline: Duration,
    },
    #[error("opening does not contain exactly the requested rows in the requested order")]
    WrongOpenedRows,
    #[error("opened row {index} has {got} values, expected {expected}")]
    WrongRowLength {
        index: u32,
        got: usize,
        expected: usize,
    },
    #[error(
        "opened row {index} is not in the committed tree (its Merkle path does not reach the root)"
    )]
    NotCommitted { index: u32 },
    #[error("opened row {index} is not row {index} of A·B (first wrong column {column})")]
    WrongRow { index: u32, column: usize },
}

/// A challenge that was sent and waits for its commitment.
#[derive(Debug, Clone)]
pub struct AwaitingCommitment {
    challenge: Challenge,
    sent_at: Instant,
}

/// A commitment that was accepted; the open request has been drawn.
#[derive(Debug, Clone)]
pub struct AwaitingOpening {
    challenge: Challenge,
    root: Digest,
    commit_elapsed: Duration,
    request: OpenRequest,
    requested_at: Option<Instant>,
}

/// A round that passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub challenge_id: u64,
    pub n: u32,
    pub rows_checked: usize,
    /// Commitment time on the verifier's clock, and the deadline it met.
    pub commit_elapsed: Duration,
    pub deadline: Duration,
}

fn check_version(got: u16) -> Result<(), Rejection> {
    if got != PROTOCOL_VERSION {
        return Err(Rejection::UnsupportedVersion {
            got,
            expected: PROTOCOL_VERSION,
        });
    }
    Ok(())
}

fn check_id(got: u64, expected: u64) -> Result<(), Rejection> {
    if got != expected {
        return Err(Rejection::WrongChallenge { got, expected });
    }
    Ok(())
}

impl AwaitingCommitment {
    /// Starts a round: `sent_at` is when the challenge left, on the verifier's clock.
    pub fn new(challenge: Challenge, sent_at: Instant) -> Self {
        AwaitingCommitment { challenge, sent_at }
    }

    pub fn challenge(&self) -> &Challenge {
        &self.challenge
    }

    /// Checks the commitment received at `received_at` and draws the rows to open from `rng`
    /// (the orchestrator's own randomness, e.g. `rand::rng()`).
    pub fn receive_commitment<R: Rng + ?Sized>(
        self,
        commitment: &Commitment,
        received_at: Instant,
        rng: &mut R,
    ) -> Result<AwaitingOpening, Rejection> {
        let challenge = self.challenge;
        check_version(commitment.version)?;
        check_id(commitment.challenge_id, challenge.id)?;
        if commitment.rows != challenge.n {
            return Err(Rejection::WrongRowCount {
                got: commitment.rows,
                expected: challenge.n,
            });
        }
        let elapsed = received_at.saturating_duration_since(self.sent_at);
        if elapsed > challenge.deadline {
            return Err(Rejection::LateCommitment {
                elapsed,
                deadline: challenge.deadline,
            });
        }
        let rows = rand::seq::index::sample(rng, challenge.n as usize, challenge.k as usize)
            .into_iter()
            .map(|i| i as u32)
            .collect();
        let request = OpenRequest {
            version: PROTOCOL_VERSION,
            challenge_id: challenge.id,
            rows,
        };
        Ok(AwaitingOpening {
            challenge,
            root: commitment.root,
            commit_elapsed: elapsed,
            request,
            requested_at: None,
        })
    }
}

impl AwaitingOpening {
    /// The request to send; call [`AwaitingOpening::sent`] with the time it left.
    pub fn open_request(&self) -> &OpenRequest {
        &self.request
    }

    /// Records when the open request left; the opening deadline runs from here.
    pub fn sent(mut self, at: Instant) -> Self {
        self.requested_at = Some(at);
        self
    }

    pub fn challenge(&self) -> &Challenge {
        &self.challenge
    }

    /// Checks the opening received at `received_at`: version, id, timing, the exact row set,
    /// each row's Merkle path to the committed root, and each row's values against an exact
    /// recomputation from the seed.
    pub fn receive_opening(
        self,
        opening: &Opening,
        received_at: Instant,
    ) -> Result<Verified, Rejection> {
        let challenge = &self.challenge;
        check_version(opening.version)?;
        check_id(opening.challenge_id, challenge.id)?;
        if let Some(requested_at) = self.requested_at {
            let elapsed = received_at.saturating_duration_since(requested_at);
            if elapsed > challenge.open_deadline {
                return Err(Rejection::LateOpening {
                    elapsed,
                    deadline: challenge.open_deadline,
                });
            }
        }
        let indices: Vec<u32> = opening.rows.iter().map(|row| row.index).collect();
        if indices != self.request.rows {
            return Err(Rejection::WrongOpenedRows);
        }
        let n = challenge.n as usize;
        for row in &opening.rows {
            if row.values.len() != n {
                return Err(Rejection::WrongRowLength {
                    index: row.index,
                    got: row.values.len(),
                    expected: n,
                });
            }
            let leaf = merkle::leaf_hash(&row.values);
            if !merkle::verify_path(&self.root, n, row.index as usize, &leaf, &row.path) {
                return Err(Rejection::NotCommitted { index: row.index });
            }
        }
        // Only now the expensive part: recompute the opened rows exactly.
        let expected = exact::rows_of_product(&challenge.seed, n, &indices);
        for (row, want) in opening.rows.iter().zip(expected.chunks_exact(n)) {
            if let Some(column) = row
                .values
                .iter()
                .zip(want)
                .position(|(got, want)| got != want)
            {
                return Err(Rejection::WrongRow {
                    index: row.index,
                    column,
                });
            }
        }
        Ok(Verified {
            challenge_id: challenge.id,
            n: challenge.n,
            rows_checked: opening.rows.len(),
            commit_elapsed: self.commit_elapsed,
            deadline: challenge.deadline,
        })
    }
}
