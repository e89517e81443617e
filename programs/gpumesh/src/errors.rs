//! The program's one error enum. Each message says what went wrong and, where there is one, what
//! to do about it; the numeric code is 6000 + the variant's position (Anchor's convention);
//! `GpumeshError::from_code` maps a code back.

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
    #[msg("arithmetic overflow: an amount is too large for this market")]
    MathOverflow,
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
    #[msg("hardware claim is invalid: GPU class < 16, region < 64, 1..=1024 GPUs, non-zero VRAM and bandwidth")]
    InvalidHardware,
    #[msg("price must be greater than zero")]
    InvalidPrice,
    #[msg("the node key must differ from the owner wallet (keep the owner key off the GPU machine)")]
    NodeKeyIsOwner,
    #[msg("amount must be greater than zero")]
    ZeroAmount,
    #[msg("not enough stake: request less than the bonded stake")]
    InsufficientStake,
    #[msg("the worker is serving a lease: its stake cannot drop below the market minimum until the lease closes")]
    StakeLockedByLease,
    #[msg("nothing is unbonding: request an unstake first")]
    NothingUnbonding,
    #[msg("unbonding stake is still locked: wait until its unlock time")]
    StakeStillLocked,
    #[msg("the worker is jailed: wait for the jail period to end and unjail")]
    WorkerJailed,
    #[msg("the worker is serving a lease: wait for it to close")]
    WorkerBusy,
    #[msg("the worker still holds stake, unbonding stake or earnings: withdraw and claim them first")]
    WorkerNotEmpty,
    #[msg("nothing to claim")]
    NothingToClaim,
    #[msg("order requirements are invalid: 1..=4096 GPUs, class < 16, a non-empty region set, duration > 0")]
    InvalidOrder,
    #[msg("a reserved order must be funded for its whole term: deposit >= max price x GPUs x duration")]
    ReservedUnderfunded,
    #[msg("signer is not the order's buyer")]
    NotBuyer,
    #[msg("the order is not open for this action")]
    OrderNotOpen,
    #[msg("the order still has active leases: they must be closed (final settlement) first")]
    OrderHasActiveLeases,
    #[msg("nothing was served on this order: cancel it instead of completing it")]
    NothingServed,
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
    #[msg("the worker's stake is below the market minimum for its GPUs: stake more")]
    StakeBelowMinimum,
    #[msg("the lease asks for more GPUs than the worker has or the order still needs")]
    InvalidGpuCount,
    #[msg("the lease is not active")]
    LeaseNotActive,
    #[msg("receipt accounts must come as (lease, order, worker) triples matching the receipts")]
    ReceiptAccountsMismatch,
    #[msg("the receipt's served seconds are not above what is already settled: replayed or older receipt")]
    StaleReceipt,
    #[msg("the receipt claims more seconds than wall time since the lease began")]
    BeyondWallTime,
    #[msg("the receipt claims more seconds than the order's duration")]
    BeyondDuration,
    #[msg("no Ed25519 signature-verify instruction right before this one: add the receipts' Ed25519 instruction")]
    MissingEd25519Instruction,
    #[msg("the Ed25519 instruction is malformed or points at data outside itself")]
    MalformedEd25519Instruction,
    #[msg("the Ed25519 instruction does not carry exactly one signature per receipt, in order")]
    Ed25519CountMismatch,
    #[msg("a receipt is not signed by the worker's node key")]
    WrongReceiptSigner,
    #[msg("a signed message is not the canonical receipt for this lease")]
    ReceiptMessageMismatch,
    #[msg("too many receipts in one settlement batch")]
    BatchTooLarge,
    #[msg("invalid close reason for this instruction")]
    InvalidCloseReason,
    #[msg("vault account is not this market's vault")]
    WrongVault,
    #[msg("the emission schedule is invalid: a non-zero total needs a positive duration")]
    InvalidEmission,
    #[msg("signer is not the worker's owner")]
    NotWorkerOwner,
    #[msg("circuit breaker: the price is above the class's reference price x (1 + band); wait for the reference to catch up or ask the market authority to reset it")]
    PriceAboveBreaker,
    #[msg("slashing needs the buyer's token account, the stake and treasury vaults and the token program")]
    MissingSlashAccounts,
    #[msg("the lease, its order and the buyer's token account must be passed: the worker is serving that lease")]
    ActiveLeaseAccountsMissing,
    #[msg("the worker is not jailed")]
    NotJailed,
    #[msg("the lease is not expired: it had a settled receipt within the market's maximum receipt age")]
    LeaseNotExpired,
    #[msg("not enough in the treasury for this withdrawal")]
    TreasuryInsufficient,
    #[msg("funding would exceed the emission schedule's total")]
    EmissionOverfunded,
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
}
