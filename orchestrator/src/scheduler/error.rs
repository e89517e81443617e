//! Typed errors for input the scheduler refuses; each message says what the caller should do.

use super::types::{OrderId, WorkerId};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchedulerError {
    #[error("order {0:?} asks for zero GPUs: ask for at least one")]
    ZeroGpuOrder(OrderId),
    #[error("order {0:?} allows no region: set at least one bit in its region set")]
    NoRegionAllowed(OrderId),
    #[error("worker {0:?} has zero GPUs: register it with at least one")]
    ZeroGpuWorker(WorkerId),
    #[error("reliability {score} is above 10000 basis points: compute it with `reliability()`")]
    ReliabilityOutOfRange { score: u16 },
    #[error("worker {0:?} is already known: update it with the setters instead of adding it again")]
    DuplicateWorker(WorkerId),
    #[error("order {0:?} is already known: cancel it first to submit it again")]
    DuplicateOrder(OrderId),
    #[error("worker {0:?} is unknown: add it before referring to it")]
    UnknownWorker(WorkerId),
    #[error("order {0:?} is unknown: submit it first (or it was already cancelled)")]
    UnknownOrder(OrderId),
    #[error("order {0:?} is already placed: release it before placing it again")]
    AlreadyPlaced(OrderId),
    #[error(
        "worker {0:?} still serves leases: drain it (status Draining) or fail it to re-place them"
    )]
    WorkerHasLeases(WorkerId),
    #[error("aging step must be at least 1 time unit")]
    ZeroAgingStep,
}
