//! The program's one error enum. Each message says what went wrong and, where there is one, what
//! to do about it; the numeric code is 6000 + the variant's position (Anchor's convention).

use anchor_lang::prelude::*;

#[error_code]
pub enum GpumeshError {
    /// 6000
    #[msg("arithmetic overflow: an amount is too large for this market")]
    MathOverflow,
    /// 6001
    #[msg("a market parameter is outside its allowed range (see MarketParams::validate)")]
    InvalidMarketParams,
    /// 6002
    #[msg("signer is not the market authority")]
    NotMarketAuthority,
    /// 6003
    #[msg("signer is not the market's orchestrator")]
    NotOrchestrator,
    /// 6004
    #[msg("the market is paused: no new orders or leases until the authority resumes it")]
    MarketPaused,
    /// 6005
    #[msg("account belongs to another market")]
    WrongMarket,
    /// 6006
    #[msg("token account has the wrong mint for this market")]
    WrongMint,
    /// 6007
    #[msg("token account is not owned by the signer")]
    WrongTokenOwner,
    /// 6008
    #[msg("hardware claim is invalid: GPU class < 16, region < 64, 1..=1024 GPUs, non-zero VRAM and bandwidth")]
    InvalidHardware,
    /// 6009
    #[msg("price must be greater than zero")]
    InvalidPrice,
    /// 6010
    #[msg("the node key must differ from the owner wallet (keep the owner key off the GPU machine)")]
    NodeKeyIsOwner,
    /// 6011
    #[msg("amount must be greater than zero")]
    ZeroAmount,
    /// 6012
    #[msg("not enough stake: request less than the bonded stake")]
    InsufficientStake,
    /// 6013
    #[msg("the worker is serving a lease: its stake cannot drop below the market minimum until the lease closes")]
    StakeLockedByLease,
    /// 6014
    #[msg("nothing is unbonding: request an unstake first")]
    NothingUnbonding,
    /// 6015
    #[msg("unbonding stake is still locked: wait until its unlock time")]
    StakeStillLocked,
    /// 6016
    #[msg("the worker is jailed: wait for the jail period to end and unjail")]
    WorkerJailed,
    /// 6017
    #[msg("the worker is serving a lease: wait for it to close")]
    WorkerBusy,
    /// 6018
    #[msg("the worker still holds stake, unbonding stake or earnings: withdraw and claim them first")]
    WorkerNotEmpty,
    /// 6019
    #[msg("nothing to claim")]
    NothingToClaim,
    /// 6020
    #[msg("order requirements are invalid: 1..=4096 GPUs, class < 16, a non-empty region set, duration > 0")]
    InvalidOrder,
    /// 6021
    #[msg("a reserved order must be funded for its whole term: deposit >= max price x GPUs x duration")]
    ReservedUnderfunded,
    /// 6022
    #[msg("signer is not the order's buyer")]
    NotBuyer,
    /// 6023
    #[msg("the order is not open for this action")]
    OrderNotOpen,
    /// 6024
    #[msg("the order still has active leases: they must be closed (final settlement) first")]
    OrderHasActiveLeases,
    /// 6025
    #[msg("nothing was served on this order: cancel it instead of completing it")]
    NothingServed,
    /// 6026
    #[msg("the order already has all the GPUs it asked for")]
    OrderFullyAssigned,
    /// 6027
    #[msg("the order's escrow is empty: top it up before assigning")]
    EscrowEmpty,
    /// 6028
    #[msg("the worker's GPU class does not match the order")]
    ClassMismatch,
    /// 6029
    #[msg("the worker has less VRAM than the order requires")]
    VramTooLow,
    /// 6030
    #[msg("the worker has less memory bandwidth than the order requires")]
    BandwidthTooLow,
    /// 6031
    #[msg("the worker's region is not in the order's region set")]
    RegionNotAllowed,
    /// 6032
    #[msg("the worker's price is above the order's maximum")]
    PriceAboveMax,
    /// 6033
    #[msg("the worker's stake is below the market minimum for its GPUs: stake more")]
    StakeBelowMinimum,
    /// 6034
    #[msg("the lease asks for more GPUs than the worker has or the order still needs")]
    InvalidGpuCount,
    /// 6035
    #[msg("the lease is not active")]
    LeaseNotActive,
    /// 6036
    #[msg("receipt accounts must come as (lease, order, worker) triples matching the receipts")]
    ReceiptAccountsMismatch,
    /// 6037
    #[msg("the receipt's served seconds are not above what is already settled: replayed or older receipt")]
    StaleReceipt,
    /// 6038
    #[msg("the receipt claims more seconds than wall time since the lease began")]
    BeyondWallTime,
    /// 6039
    #[msg("the receipt claims more seconds than the order's duration")]
    BeyondDuration,
    /// 6040
    #[msg("no Ed25519 signature-verify instruction right before this one: add the receipts' Ed25519 instruction")]
    MissingEd25519Instruction,
    /// 6041
    #[msg("the Ed25519 instruction is malformed or points at data outside itself")]
    MalformedEd25519Instruction,
    /// 6042
    #[msg("the Ed25519 instruction does not carry exactly one signature per receipt, in order")]
    Ed25519CountMismatch,
    /// 6043
    #[msg("a receipt is not signed by the worker's node key")]
    WrongReceiptSigner,
    /// 6044
    #[msg("a signed message is not the canonical receipt for this lease")]
    ReceiptMessageMismatch,
    /// 6045
    #[msg("too many receipts in one settlement batch")]
    BatchTooLarge,
    /// 6046
    #[msg("invalid close reason for this instruction")]
    InvalidCloseReason,
    /// 6047
    #[msg("the account is not the expected program-derived address")]
    WrongPda,
    /// 6048
    #[msg("vault account is not this market's vault")]
    WrongVault,
    /// 6049
    #[msg("the emission schedule is invalid: a non-zero total needs a positive duration")]
    InvalidEmission,
    /// 6050
    #[msg("signer is not the worker's owner")]
    NotWorkerOwner,
}
