//! The program's one error enum. Each message says what went wrong and, where there is one, what
//! to do about it; the numeric code is 6000 + the variant's position (Anchor's convention);
//! `GpumeshError::from_code` maps a code back. Codes are part of the interface: a test pins every
//! one, so new variants go at the end and old ones are never reordered or removed.

use anchor_lang::prelude::*;

/// Declares the error enum and the list of all its variants, so that clients can turn a numeric
/// code back into a variant without a hand-kept copy of the list.
macro_rules! errors {
    ($( #[msg($msg:literal)] $name:ident, )*) => {
        #[error_code]
        pub enum GpumeshError {
            $( #[msg($msg)] $name, )*
        }

        impl GpumeshError {
            /// Every variant, in code order (the first is 6000).
            pub const ALL: &'static [GpumeshError] = &[$(GpumeshError::$name),*];

            /// The variant for a numeric error code, if it is one of this program's.
            pub fn from_code(code: u32) -> Option<GpumeshError> {
                Self::ALL.iter().copied().find(|e| u32::from(*e) == code)
            }
        }
    };
}

errors! {
    // ---- arithmetic and broken books (a program bug if ever seen, not a user error) ----
    #[msg("arithmetic overflow: an amount is too large for this market")]
    MathOverflow,
    #[msg("account layout version is not one this program reads: upgrade the client or the program")]
    AccountVersionMismatch,
    #[msg("invariant broken: an order's escrow does not equal its deposits minus its payments")]
    InvariantOrderEscrow,
    #[msg("invariant broken: an order's GPU, lease or close counters disagree")]
    InvariantOrderState,
    #[msg("invariant broken: a worker's leased GPUs or active leases disagree with its hardware")]
    InvariantWorkerLeases,
    #[msg("invariant broken: a lease's fee is not the agreed share of what it was paid")]
    InvariantLeaseFee,
    #[msg("invariant broken: emission paid, owed, released and funded are out of order")]
    InvariantEmission,
    // ---- the market and its authority ----
    #[msg("a market parameter is outside its allowed range (see MarketParams::validate)")]
    InvalidMarketParams,
    #[msg("signer is not the market authority")]
    NotMarketAuthority,
    #[msg("signer is not the market's orchestrator")]
    NotOrchestrator,
    #[msg("the market is paused: no new orders or leases until the authority resumes it")]
    MarketPaused,
    #[msg("account belongs to another market")]
    WrongMarket,
    #[msg("token account has the wrong mint for this market")]
    WrongMint,
    #[msg("token account is not owned by the signer")]
    WrongTokenOwner,
    #[msg("vault account is not this market's vault")]
    WrongVault,
    #[msg("the emission schedule is invalid: a non-zero total needs a positive duration")]
    InvalidEmission,
    #[msg("the emission start must lie between one day before and one year after the market's creation")]
    EmissionStartOutOfRange,
    #[msg("funding would exceed what the emission schedule can still release")]
    EmissionOverfunded,
    #[msg("not enough in the treasury for this withdrawal")]
    TreasuryInsufficient,
    // ---- suppliers ----
    #[msg("hardware claim is invalid: GPU class < 16, region < 64, 1..=1024 GPUs, non-zero VRAM and bandwidth")]
    InvalidHardware,
    #[msg("price must be greater than zero")]
    InvalidPrice,
    #[msg("the node key must differ from the owner wallet (keep the owner key off the GPU machine)")]
    NodeKeyIsOwner,
    #[msg("signer is not the worker's owner")]
    NotWorkerOwner,
    #[msg("amount must be greater than zero")]
    ZeroAmount,
    #[msg("not enough stake: request less than the bonded stake")]
    InsufficientStake,
    #[msg("the worker's leases need this stake: it cannot drop below the market minimum for its leased GPUs until they are released")]
    StakeLockedByLease,
    #[msg("nothing is unbonding: request an unstake first")]
    NothingUnbonding,
    #[msg("unbonding stake is still locked: wait until its unlock time")]
    StakeStillLocked,
    #[msg("the worker is jailed: wait for the jail period to end and unjail")]
    WorkerJailed,
    #[msg("the worker is not jailed")]
    NotJailed,
    #[msg("the worker is serving leases: wait for them to end")]
    WorkerBusy,
    #[msg("the worker still holds stake, unbonding stake, earnings or rewards: withdraw and claim them first")]
    WorkerNotEmpty,
    #[msg("nothing to claim")]
    NothingToClaim,
    // ---- buyers ----
    #[msg("order requirements are invalid: 1..=4096 GPUs, class < 16, a non-empty region set, duration > 0")]
    InvalidOrder,
    #[msg("a reserved order must be funded for its whole term: deposit >= max price x GPUs x duration")]
    ReservedUnderfunded,
    #[msg("signer is not the order's buyer")]
    NotBuyer,
    #[msg("the order still has active leases: ask to close it (request_close), then end them after the exit window")]
    OrderHasActiveLeases,
    #[msg("nothing was served on this order: cancel it instead of completing it")]
    NothingServed,
    #[msg("the buyer asked to close this order: it takes no new lease")]
    OrderClosing,
    #[msg("the order is not closing: ask to close it first (request_close)")]
    OrderNotClosing,
    #[msg("the exit window is still open: the orchestrator may settle and close this lease until the order's buyer_exit_ts")]
    ExitWindowOpen,
    // ---- leases ----
    #[msg("the order already has all the GPUs it asked for")]
    OrderFullyAssigned,
    #[msg("the order's escrow is empty: top it up before assigning")]
    EscrowEmpty,
    #[msg("the worker's GPU class does not match the order")]
    ClassMismatch,
    #[msg("the worker has less VRAM than the order requires")]
    VramTooLow,
    #[msg("the worker has less memory bandwidth than the order requires")]
    BandwidthTooLow,
    #[msg("the worker's region is not in the order's region set")]
    RegionNotAllowed,
    #[msg("the worker's price is above the order's maximum")]
    PriceAboveMax,
    #[msg("circuit breaker: the price is above the class's reference price x (1 + band); wait for the reference to catch up or ask the market authority to reset it")]
    PriceAboveBreaker,
    #[msg("the worker's stake is below the market minimum for the GPUs it would have under lease: stake more")]
    StakeBelowMinimum,
    #[msg("the lease asks for no GPUs, or more than the order still needs")]
    InvalidGpuCount,
    #[msg("the worker has fewer free GPUs than the lease asks for")]
    NotEnoughFreeGpus,
    #[msg("the lease does not belong to this order and worker")]
    LeaseMismatch,
    #[msg("invalid close reason for this instruction")]
    InvalidCloseReason,
    #[msg("the rent receiver is not the account that paid the lease's rent")]
    WrongRentReceiver,
    #[msg("the lease is not expired: it had a settled receipt within the market's maximum receipt age")]
    LeaseNotExpired,
    // ---- settlement ----
    #[msg("receipt accounts must come as (lease, order, worker) triples matching the receipts")]
    ReceiptAccountsMismatch,
    #[msg("receipt accounts (lease, order, worker) must be passed writable")]
    ReceiptAccountNotWritable,
    #[msg("the receipt's served seconds are not above what is already settled: replayed or older receipt")]
    StaleReceipt,
    #[msg("the receipt claims more seconds than wall time since the lease began")]
    BeyondWallTime,
    #[msg("the receipt claims more seconds than the order's duration")]
    BeyondDuration,
    #[msg("the receipt claims seconds after the buyer asked to close the order")]
    BeyondCloseRequest,
    #[msg("no Ed25519 signature-verify instruction right before this one: add the receipts' Ed25519 instruction")]
    MissingEd25519Instruction,
    #[msg("the Ed25519 instruction is malformed or points at data outside itself")]
    MalformedEd25519Instruction,
    #[msg("the Ed25519 instruction does not carry exactly one signature per receipt, in order")]
    Ed25519CountMismatch,
    #[msg("a receipt is not signed by the worker's node key")]
    WrongReceiptSigner,
    #[msg("a signed message is not the canonical receipt for this lease instance")]
    ReceiptMessageMismatch,
    #[msg("too many receipts in one settlement batch")]
    BatchTooLarge,
    // ---- penalties ----
    #[msg("slashing needs the buyer's token account, the stake and treasury vaults and the token program")]
    MissingSlashAccounts,
    // ---- added after the codes above were pinned: new variants go below ----
    #[msg("the hardware is below the market's minimum (VRAM per GPU and memory bandwidth, see market params): this machine cannot be offered here")]
    HardwareBelowMarketMinimum,
    #[msg("only a spot lease can be preempted: reserved leases keep their workers for the term")]
    NotSpotLease,
    #[msg("a lease is preempted only for a reserved order that needs the GPUs it frees")]
    NotReservedOrder,
    #[msg("the lease is already preempted: close it as preempted once its notice ends")]
    AlreadyPreempted,
    #[msg("close a lease as preempted only after preempt_lease and once its notice has ended")]
    PreemptionNoticeRunning,
    #[msg("the receipt claims seconds after the lease's preemption took effect")]
    BeyondPreemption,
    #[msg("the signed message is not a worker receipt of this program for this worker's account")]
    WorkerReceiptMismatch,
    #[msg("a worker receipt names the same lease twice")]
    DuplicateLeaseInReceipt,
    #[msg("nothing to settle: every lease in the worker receipts is already settled up to it")]
    NothingToSettle,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_positional() {
        for (i, e) in GpumeshError::ALL.iter().enumerate() {
            assert_eq!(u32::from(*e), 6000 + i as u32);
            assert_eq!(
                GpumeshError::from_code(6000 + i as u32).map(|x| x.name()),
                Some(e.name())
            );
        }
        assert!(GpumeshError::from_code(5999).is_none());
    }

    /// Clients match on these numbers. A new variant goes at the end with the next code; this
    /// list only ever grows.
    #[test]
    fn codes_are_pinned() {
        const PINNED: &[(u32, &str)] = &[
            (6000, "MathOverflow"),
            (6001, "AccountVersionMismatch"),
            (6002, "InvariantOrderEscrow"),
            (6003, "InvariantOrderState"),
            (6004, "InvariantWorkerLeases"),
            (6005, "InvariantLeaseFee"),
            (6006, "InvariantEmission"),
            (6007, "InvalidMarketParams"),
            (6008, "NotMarketAuthority"),
            (6009, "NotOrchestrator"),
            (6010, "MarketPaused"),
            (6011, "WrongMarket"),
            (6012, "WrongMint"),
            (6013, "WrongTokenOwner"),
            (6014, "WrongVault"),
            (6015, "InvalidEmission"),
            (6016, "EmissionStartOutOfRange"),
            (6017, "EmissionOverfunded"),
            (6018, "TreasuryInsufficient"),
            (6019, "InvalidHardware"),
            (6020, "InvalidPrice"),
            (6021, "NodeKeyIsOwner"),
            (6022, "NotWorkerOwner"),
            (6023, "ZeroAmount"),
            (6024, "InsufficientStake"),
            (6025, "StakeLockedByLease"),
            (6026, "NothingUnbonding"),
            (6027, "StakeStillLocked"),
            (6028, "WorkerJailed"),
            (6029, "NotJailed"),
            (6030, "WorkerBusy"),
            (6031, "WorkerNotEmpty"),
            (6032, "NothingToClaim"),
            (6033, "InvalidOrder"),
            (6034, "ReservedUnderfunded"),
            (6035, "NotBuyer"),
            (6036, "OrderHasActiveLeases"),
            (6037, "NothingServed"),
            (6038, "OrderClosing"),
            (6039, "OrderNotClosing"),
            (6040, "ExitWindowOpen"),
            (6041, "OrderFullyAssigned"),
            (6042, "EscrowEmpty"),
            (6043, "ClassMismatch"),
            (6044, "VramTooLow"),
            (6045, "BandwidthTooLow"),
            (6046, "RegionNotAllowed"),
            (6047, "PriceAboveMax"),
            (6048, "PriceAboveBreaker"),
            (6049, "StakeBelowMinimum"),
            (6050, "InvalidGpuCount"),
            (6051, "NotEnoughFreeGpus"),
            (6052, "LeaseMismatch"),
            (6053, "InvalidCloseReason"),
            (6054, "WrongRentReceiver"),
            (6055, "LeaseNotExpired"),
            (6056, "ReceiptAccountsMismatch"),
            (6057, "ReceiptAccountNotWritable"),
            (6058, "StaleReceipt"),
            (6059, "BeyondWallTime"),
            (6060, "BeyondDuration"),
            (6061, "BeyondCloseRequest"),
            (6062, "MissingEd25519Instruction"),
            (6063, "MalformedEd25519Instruction"),
            (6064, "Ed25519CountMismatch"),
            (6065, "WrongReceiptSigner"),
            (6066, "ReceiptMessageMismatch"),
            (6067, "BatchTooLarge"),
            (6068, "MissingSlashAccounts"),
            (6069, "HardwareBelowMarketMinimum"),
            (6070, "NotSpotLease"),
            (6071, "NotReservedOrder"),
            (6072, "AlreadyPreempted"),
            (6073, "PreemptionNoticeRunning"),
            (6074, "BeyondPreemption"),
            (6075, "WorkerReceiptMismatch"),
            (6076, "DuplicateLeaseInReceipt"),
            (6077, "NothingToSettle"),
        ];
        assert_eq!(
            GpumeshError::ALL.len(),
            PINNED.len(),
            "a variant was added or removed: pin it"
        );
        for (code, name) in PINNED {
            let e = GpumeshError::from_code(*code).map(|e| e.name());
            assert_eq!(e.as_deref(), Some(*name), "code {code} changed meaning");
        }
    }
}
