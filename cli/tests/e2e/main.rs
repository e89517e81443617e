//! End to end: the local chain runs in this process on free ports; the real `gpumesh` binary
//! runs as a subprocess against it, as a user would run it. The orchestrator's part (assign,
//! settle a signed receipt, close the lease, slash) goes through its library with the
//! orchestrator's key. Balances are read back over RPC after every step.
//!
//! - `flows`: market → worker → order → settlement → claim → cancel; bad inputs; the buyer's exit;
//!   `gpumesh localnet`.
//! - `outcome`: a node that stalls after the send (through a proxy): unknown outcome, exit 3,
//!   `gpumesh confirm`; a lost answer resolved by the signature's status.
//! - `roles`: every role's commands (worker update, status, unjail, claim-rewards, close; market
//!   fund-rewards, withdraw-treasury, reference prices, orchestrator rotation, pause and resume;
//!   balance).
//! - `conventions`: Solana CLI config and flags, JSON output and errors, exit codes, help texts,
//!   units, keys in a git work tree.
//! - `service`: `gpumesh orchestrator run` as a process; `gpumesh order upload-spec` against it.
//! - `daemon`: the real service and real `gpumesh worker run` daemons (jobs in containers) carry
//!   orders to completion with nothing played by hand, through a killed worker and a restarted
//!   orchestrator, each ending with `gpumesh market audit`.
//! - `failures`: the same real processes through an RPC node stalled for 10 s, a worker cut off
//!   in its own network namespace, a worker that cheats its compute challenge mid-lease, and a
//!   buyer who leaves while the orchestrator is frozen.
//! - `market`: the fixture `daemon` and `failures` share (chain, service, suppliers, buyer).
//! - `checkpoint`: a job that checkpoints resumes from its last good checkpoint on another
//!   worker after its worker is killed; a corrupted checkpoint is skipped; ten kills measured.
//! - `up`: `gpumesh up` as a process, a buyer's order through it to completion, a clean stop.

mod checkpoint;
mod conventions;
mod daemon;
mod failures;
mod flows;
mod market;
mod net;
mod outcome;
mod procs;
mod proxy;
mod roles;
mod service;
mod up;
