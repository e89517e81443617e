//! One builder per program instruction. Everything that talks to the program (tests, the CLI,
//! the orchestrator, migrations) builds its instructions here, from the program's own account
//! and argument types, so nobody assembles account lists by hand.

use crate::pda::{self, MarketAddresses};
use crate::receipt::ed25519_instruction;
use anchor_lang::prelude::{AccountMeta, Pubkey};
use anchor_lang::{InstructionData, ToAccountMetas};
use gpumesh::instructions::{
    CreateOrderArgs, InitMarketArgs, RegisterWorkerArgs, UpdateMarketArgs, UpdateWorkerArgs,
};
use gpumesh::state::CloseReason;
use gpumesh::{accounts as acc, instruction as data};
use gpumesh_protocol::SignedReceipt;
use solana_instruction::Instruction;

const TOKEN_PROGRAM: Pubkey = anchor_spl::token::ID;
const SYSTEM_PROGRAM: Pubkey = anchor_lang::system_program::ID;

fn build(accounts: impl ToAccountMetas, data: impl InstructionData) -> Instruction {
    Instruction {
        program_id: gpumesh::ID,
        accounts: accounts.to_account_metas(None),
        data: data.data(),
    }
}

pub fn init_market(m: &MarketAddresses, authority: &Pubkey, args: InitMarketArgs) -> Instruction {
    build(
        acc::InitMarket {
            authority: *authority,
            mint: m.mint,
            market: m.market,
            stake_vault: m.stake_vault,
            escrow_vault: m.escrow_vault,
            treasury_vault: m.treasury_vault,
            rewards_vault: m.rewards_vault,
            token_program: TOKEN_PROGRAM,
            system_program: SYSTEM_PROGRAM,
        },
        data::InitMarket { args },
    )
}

pub fn update_market(
    m: &MarketAddresses,
    authority: &Pubkey,
    args: UpdateMarketArgs,
) -> Instruction {
    build(
        acc::UpdateMarket {
            authority: *authority,
            market: m.market,
        },
        data::UpdateMarket { args },
    )
}

pub fn register_worker(
    m: &MarketAddresses,
    owner: &Pubkey,
    args: RegisterWorkerArgs,
) -> Instruction {
    build(
        acc::RegisterWorker {
            owner: *owner,
            market: m.market,
            worker: m.worker(owner),
            system_program: SYSTEM_PROGRAM,
        },
        data::RegisterWorker { args },
    )
}

pub fn update_worker(m: &MarketAddresses, owner: &Pubkey, args: UpdateWorkerArgs) -> Instruction {
    build(
        acc::UpdateWorker {
            owner: *owner,
            market: m.market,
            worker: m.worker(owner),
        },
        data::UpdateWorker { args },
    )
}

fn stake_accounts(m: &MarketAddresses, owner: &Pubkey, owner_token: &Pubkey) -> acc::StakeAccounts {
    acc::StakeAccounts {
        owner: *owner,
        market: m.market,
        worker: m.worker(owner),
        owner_token: *owner_token,
        stake_vault: m.stake_vault,
        token_program: TOKEN_PROGRAM,
    }
}

pub fn stake(
    m: &MarketAddresses,
    owner: &Pubkey,
    owner_token: &Pubkey,
    amount: u64,
) -> Instruction {
    build(
        stake_accounts(m, owner, owner_token),
        data::Stake { amount },
    )
}

pub fn request_unstake(
    m: &MarketAddresses,
    owner: &Pubkey,
    owner_token: &Pubkey,
    amount: u64,
) -> Instruction {
    build(
        stake_accounts(m, owner, owner_token),
        data::RequestUnstake { amount },
    )
}

pub fn withdraw_unstaked(m: &MarketAddresses, owner: &Pubkey, owner_token: &Pubkey) -> Instruction {
    build(
        stake_accounts(m, owner, owner_token),
        data::WithdrawUnstaked {},
    )
}

pub fn claim_earnings(m: &MarketAddresses, owner: &Pubkey, owner_token: &Pubkey) -> Instruction {
    build(
        acc::ClaimEarnings {
            owner: *owner,
            market: m.market,
            worker: m.worker(owner),
            owner_token: *owner_token,
            escrow_vault: m.escrow_vault,
            token_program: TOKEN_PROGRAM,
        },
        data::ClaimEarnings {},
    )
}

pub fn close_worker(m: &MarketAddresses, owner: &Pubkey) -> Instruction {
    build(
        acc::CloseWorker {
            owner: *owner,
            market: m.market,
            worker: m.worker(owner),
        },
        data::CloseWorker {},
    )
}

pub fn create_order(
    m: &MarketAddresses,
    buyer: &Pubkey,
    buyer_token: &Pubkey,
    args: CreateOrderArgs,
) -> Instruction {
    build(
        acc::CreateOrder {
            buyer: *buyer,
            market: m.market,
            order: m.order(buyer, args.order_id),
            buyer_token: *buyer_token,
            escrow_vault: m.escrow_vault,
            token_program: TOKEN_PROGRAM,
            system_program: SYSTEM_PROGRAM,
        },
        data::CreateOrder { args },
    )
}

pub fn top_up_order(
    m: &MarketAddresses,
    buyer: &Pubkey,
    buyer_token: &Pubkey,
    order: &Pubkey,
    amount: u64,
) -> Instruction {
    build(
        acc::TopUpOrder {
            buyer: *buyer,
            market: m.market,
            order: *order,
            buyer_token: *buyer_token,
            escrow_vault: m.escrow_vault,
            token_program: TOKEN_PROGRAM,
        },
        data::TopUpOrder { amount },
    )
}

fn close_order_accounts(
    m: &MarketAddresses,
    signer: &Pubkey,
    buyer: &Pubkey,
    buyer_token: &Pubkey,
    order: &Pubkey,
) -> acc::CloseOrder {
    acc::CloseOrder {
        signer: *signer,
        buyer: *buyer,
        market: m.market,
        order: *order,
        buyer_token: *buyer_token,
        escrow_vault: m.escrow_vault,
        token_program: TOKEN_PROGRAM,
    }
}

/// The buyer cancels an order with no active lease; its unspent escrow returns to `buyer_token`.
pub fn cancel_order(
    m: &MarketAddresses,
    buyer: &Pubkey,
    buyer_token: &Pubkey,
    order: &Pubkey,
) -> Instruction {
    build(
        close_order_accounts(m, buyer, buyer, buyer_token, order),
        data::CancelOrder {},
    )
}

/// The buyer or the orchestrator (`signer`) marks a served order completed, recording the content
/// hash of its results (zero for none) in the `OrderClosed` event.
pub fn complete_order(
    m: &MarketAddresses,
    signer: &Pubkey,
    buyer: &Pubkey,
    buyer_token: &Pubkey,
    order: &Pubkey,
    result_hash: [u8; 32],
) -> Instruction {
    build(
        close_order_accounts(m, signer, buyer, buyer_token, order),
        data::CompleteOrder { result_hash },
    )
}

pub fn assign(
    m: &MarketAddresses,
    orchestrator: &Pubkey,
    order: &Pubkey,
    worker: &Pubkey,
    gpus: u16,
) -> Instruction {
    build(
        acc::Assign {
            orchestrator: *orchestrator,
            market: m.market,
            order: *order,
            worker: *worker,
            lease: pda::lease(order, worker).0,
            system_program: SYSTEM_PROGRAM,
        },
        data::Assign { gpus },
    )
}

/// One lease instance as instructions name it: its address, order and worker, the key its rent
/// goes back to, and the nonce its receipts sign.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseRef {
    pub lease: Pubkey,
    pub order: Pubkey,
    pub worker: Pubkey,
    pub rent_payer: Pubkey,
    pub nonce: u64,
}

impl LeaseRef {
    /// The reference to a lease read from the chain.
    pub fn of(lease: &gpumesh::state::Lease) -> Self {
        Self {
            lease: pda::lease(&lease.order, &lease.worker).0,
            order: lease.order,
            worker: lease.worker,
            rent_payer: lease.rent_payer,
            nonce: lease.nonce,
        }
    }
}

/// The two instructions that settle a batch of receipts: the Ed25519 precompile instruction
/// carrying their signatures, then `settle`. They must go in one transaction, in this order.
pub fn settle(
    m: &MarketAddresses,
    orchestrator: &Pubkey,
    receipts: &[(LeaseRef, SignedReceipt)],
) -> [Instruction; 2] {
    let signed: Vec<SignedReceipt> = receipts.iter().map(|(_, r)| r.clone()).collect();
    let mut settle = build(
        acc::Settle {
            orchestrator: *orchestrator,
            market: m.market,
            escrow_vault: m.escrow_vault,
            treasury_vault: m.treasury_vault,
            mint: m.mint,
            instructions: solana_sdk_ids::sysvar::instructions::ID,
            token_program: TOKEN_PROGRAM,
        },
        data::Settle {
            receipts: signed.iter().map(crate::receipt::args).collect(),
        },
    );
    for (l, _) in receipts {
        settle.accounts.push(AccountMeta::new(l.lease, false));
        settle.accounts.push(AccountMeta::new(l.order, false));
        settle.accounts.push(AccountMeta::new(l.worker, false));
    }
    [ed25519_instruction(&signed), settle]
}

/// `settle_worker_receipts`: each worker receipt with the leases it names (their accounts:
/// the worker, then lease and order per entry, in the receipt's order). `None` when a receipt
/// names a lease missing from its list.
pub fn settle_worker_receipts(
    m: &MarketAddresses,
    orchestrator: &Pubkey,
    receipts: &[(&gpumesh_protocol::SignedWorkerReceipt, &[LeaseRef])],
) -> Option<[Instruction; 2]> {
    let mut ix = build(
        acc::Settle {
            orchestrator: *orchestrator,
            market: m.market,
            escrow_vault: m.escrow_vault,
            treasury_vault: m.treasury_vault,
            mint: m.mint,
            instructions: solana_sdk_ids::sysvar::instructions::ID,
            token_program: TOKEN_PROGRAM,
        },
        data::SettleWorkerReceipts {},
    );
    for (r, leases) in receipts {
        ix.accounts
            .push(AccountMeta::new(crate::receipt::pubkey(&r.worker), false));
        for e in &r.entries {
            let l = leases
                .iter()
                .find(|l| crate::receipt::key(&l.lease) == e.lease)?;
            ix.accounts.push(AccountMeta::new(l.lease, false));
            ix.accounts.push(AccountMeta::new(l.order, false));
        }
    }
    let signed: Vec<&gpumesh_protocol::SignedWorkerReceipt> =
        receipts.iter().map(|(r, _)| *r).collect();
    Some([crate::receipt::ed25519_instruction_for_workers(&signed), ix])
}

pub fn close_lease(
    m: &MarketAddresses,
    orchestrator: &Pubkey,
    lease: &LeaseRef,
    reason: CloseReason,
) -> Instruction {
    build(
        acc::CloseLease {
            orchestrator: *orchestrator,
            market: m.market,
            order: lease.order,
            worker: lease.worker,
            lease: lease.lease,
            rent_payer: lease.rent_payer,
            buyer_token: None,
            stake_vault: None,
            treasury_vault: None,
            token_program: None,
        },
        data::CloseLease { reason },
    )
}

/// Closes a lease whose worker went offline: slashes the worker and pays `buyer_token`.
pub fn close_lease_offline(
    m: &MarketAddresses,
    orchestrator: &Pubkey,
    lease: &LeaseRef,
    buyer_token: &Pubkey,
) -> Instruction {
    build(
        acc::CloseLease {
            orchestrator: *orchestrator,
            market: m.market,
            order: lease.order,
            worker: lease.worker,
            lease: lease.lease,
            rent_payer: lease.rent_payer,
            buyer_token: Some(*buyer_token),
            stake_vault: Some(m.stake_vault),
            treasury_vault: Some(m.treasury_vault),
            token_program: Some(TOKEN_PROGRAM),
        },
        data::CloseLease {
            reason: CloseReason::WorkerOffline,
        },
    )
}

/// Slashes a worker for proven fraud. `serving` names the lease the fraud was found on, if any,
/// with the buyer's token account that receives the compensation; without one the slash takes
/// the share of the worker's free GPUs, for the treasury.
pub fn slash_fraud(
    m: &MarketAddresses,
    orchestrator: &Pubkey,
    worker: &Pubkey,
    serving: Option<(&LeaseRef, &Pubkey)>,
    evidence_hash: [u8; 32],
) -> Instruction {
    build(
        acc::SlashFraud {
            orchestrator: *orchestrator,
            market: m.market,
            worker: *worker,
            stake_vault: m.stake_vault,
            treasury_vault: m.treasury_vault,
            token_program: TOKEN_PROGRAM,
            lease: serving.map(|(l, _)| l.lease),
            order: serving.map(|(l, _)| l.order),
            buyer_token: serving.map(|(_, t)| *t),
            rent_payer: serving.map(|(l, _)| l.rent_payer),
        },
        data::SlashFraud { evidence_hash },
    )
}

pub fn unjail(m: &MarketAddresses, owner: &Pubkey) -> Instruction {
    build(
        acc::Unjail {
            owner: *owner,
            market: m.market,
            worker: m.worker(owner),
        },
        data::Unjail {},
    )
}

/// The orchestrator preempts a spot `lease` for `reserved_order`, which needs its GPUs: the lease
/// gets the market's notice, then closes as `Preempted` ([`close_lease`]).
pub fn preempt_lease(
    m: &MarketAddresses,
    orchestrator: &Pubkey,
    lease: &LeaseRef,
    reserved_order: &Pubkey,
) -> Instruction {
    build(
        acc::PreemptLease {
            orchestrator: *orchestrator,
            market: m.market,
            order: lease.order,
            worker: lease.worker,
            lease: lease.lease,
            reserved_order: *reserved_order,
        },
        data::PreemptLease {},
    )
}

/// Anyone may expire a lease with no settled receipt for the market's maximum receipt age; its
/// rent goes back to whoever paid it.
pub fn expire_lease(m: &MarketAddresses, caller: &Pubkey, lease: &LeaseRef) -> Instruction {
    build(
        acc::ExpireLease {
            caller: *caller,
            market: m.market,
            order: lease.order,
            worker: lease.worker,
            lease: lease.lease,
            rent_payer: lease.rent_payer,
        },
        data::ExpireLease {},
    )
}

/// The buyer asks to close its order: no new lease, no receipt for a later second, and after the
/// market's exit window the buyer may end the remaining leases itself ([`end_lease`]).
pub fn request_close(m: &MarketAddresses, buyer: &Pubkey, order: &Pubkey) -> Instruction {
    build(
        acc::RequestClose {
            buyer: *buyer,
            market: m.market,
            order: *order,
        },
        data::RequestClose {},
    )
}

/// The buyer ends one lease of an order it asked to close, once the exit window is over.
pub fn end_lease(m: &MarketAddresses, buyer: &Pubkey, lease: &LeaseRef) -> Instruction {
    build(
        acc::EndLease {
            buyer: *buyer,
            market: m.market,
            order: lease.order,
            worker: lease.worker,
            lease: lease.lease,
            rent_payer: lease.rent_payer,
        },
        data::EndLease {},
    )
}

pub fn claim_rewards(m: &MarketAddresses, owner: &Pubkey, owner_token: &Pubkey) -> Instruction {
    build(
        acc::ClaimRewards {
            owner: *owner,
            market: m.market,
            worker: m.worker(owner),
            owner_token: *owner_token,
            rewards_vault: m.rewards_vault,
            token_program: TOKEN_PROGRAM,
        },
        data::ClaimRewards {},
    )
}

fn authority_transfer(
    m: &MarketAddresses,
    authority: &Pubkey,
    authority_token: &Pubkey,
    vault: Pubkey,
) -> acc::AuthorityTransfer {
    acc::AuthorityTransfer {
        authority: *authority,
        market: m.market,
        authority_token: *authority_token,
        vault,
        token_program: TOKEN_PROGRAM,
    }
}

/// The authority funds the rewards vault from `authority_token`.
pub fn fund_rewards(
    m: &MarketAddresses,
    authority: &Pubkey,
    authority_token: &Pubkey,
    amount: u64,
) -> Instruction {
    build(
        authority_transfer(m, authority, authority_token, m.rewards_vault),
        data::FundRewards { amount },
    )
}

/// The authority withdraws protocol fees to `to` (a token account of the market's mint).
pub fn withdraw_treasury(
    m: &MarketAddresses,
    authority: &Pubkey,
    to: &Pubkey,
    amount: u64,
) -> Instruction {
    build(
        authority_transfer(m, authority, to, m.treasury_vault),
        data::WithdrawTreasury { amount },
    )
}

/// Largest transaction a Solana cluster accepts, in bytes (the packet size).
pub const PACKET_DATA_SIZE: usize = 1_232;

/// Size in bytes of a legacy transaction carrying `instructions`, paid by `payer` and signed by
/// `signers` keys in all (the payer included), as it travels on the wire.
pub fn transaction_size(instructions: &[Instruction], payer: &Pubkey, signers: usize) -> usize {
    let message = solana_transaction::Transaction::new_with_payer(instructions, Some(payer))
        .message_data()
        .len();
    // A compact-u16 count of signatures (one byte below 128), then 64 bytes each.
    1 + 64 * signers + message
}
