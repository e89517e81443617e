//! Settlement: pay workers for the seconds their signed receipts prove, out of the orders'
//! escrow. A batch of receipts rides in one transaction after one Ed25519 precompile
//! instruction that holds a signature per receipt, in the same order.
//!
//! Per receipt: pay `(served − settled) × gpus × price` from the order's escrow, capped at what
//! the escrow holds; the protocol fee to the treasury (less the share burned) and the rest to the
//! worker's claimable balance. The fee is charged on the lease's cumulative payments
//! (`floor(paid × fee_bps / 10⁴)` less what was already charged), so small receipts pay it too,
//! and so is the burn (`floor(fee × burn_bps / 10⁴)`). Never more seconds than wall time since
//! the lease began, the order's duration, the moment the buyer asked to close, or the end of a
//! preemption notice;
//! never the same seconds twice (a receipt must be strictly newer than the last one), and never a
//! receipt of an earlier lease at the same address (receipts sign the lease's nonce).

use super::token::{burn, withdraw};
use crate::emission;
use crate::errors::GpumeshError;
use crate::events::{FeesBurned, ReceiptSettled, emit_event};
use crate::math::{SafeMath, cumulative_fee, lease_cost};
use crate::receipt::{parse_ed25519, receipt_message};
use crate::state::{Lease, Market, Order, Worker};
use anchor_lang::prelude::*;
use anchor_spl::token::{Mint, Token, TokenAccount};
use solana_instructions_sysvar::{load_current_index_checked, load_instruction_at_checked};

#[derive(AnchorSerialize, AnchorDeserialize, Clone, Debug, PartialEq, Eq)]
pub struct ReceiptArgs {
    /// Cumulative seconds served on the lease.
    pub served_seconds: u64,
    /// Head of the worker's heartbeat hash chain at that point.
    pub chain_head: [u8; 32],
}

#[derive(Accounts)]
pub struct Settle<'info> {
    pub orchestrator: Signer<'info>,
    #[account(mut, has_one = orchestrator @ GpumeshError::NotOrchestrator)]
    pub market: Box<Account<'info, Market>>,
    #[account(mut, address = market.escrow_vault @ GpumeshError::WrongVault)]
    pub escrow_vault: Box<Account<'info, TokenAccount>>,
    #[account(mut, address = market.treasury_vault @ GpumeshError::WrongVault)]
    pub treasury_vault: Box<Account<'info, TokenAccount>>,
    /// The payment mint: the burned share of the fees leaves its supply.
    #[account(mut, address = market.mint @ GpumeshError::WrongMint)]
    pub mint: Box<Account<'info, Mint>>,
    /// CHECK: the instructions sysvar, checked by address.
    #[account(address = solana_sdk_ids::sysvar::instructions::ID)]
    pub instructions: UncheckedAccount<'info>,
    pub token_program: Program<'info, Token>,
    // remaining accounts: (lease, order, worker) for each receipt, all writable (refused
    // otherwise: the runtime would drop, or fail on, the changes this instruction makes to them)
}

pub fn settle<'info>(
    mut ctx: Context<'info, Settle<'info>>,
    receipts: Vec<ReceiptArgs>,
) -> Result<()> {
    let a = &mut ctx.accounts;
    require!(
        !receipts.is_empty() && receipts.len() <= a.market.params.max_receipts_per_settle as usize,
        GpumeshError::BatchTooLarge
    );
    require!(
        ctx.remaining_accounts.len() == receipts.len() * 3,
        GpumeshError::ReceiptAccountsMismatch
    );

    // The signatures: the instruction right before this one must be the Ed25519 precompile with
    // exactly one entry per receipt.
    let ix_sysvar = a.instructions.to_account_info();
    let current = load_current_index_checked(&ix_sysvar)?;
    require!(current > 0, GpumeshError::MissingEd25519Instruction);
    let ed_ix = load_instruction_at_checked(current as usize - 1, &ix_sysvar)?;
    require_keys_eq!(
        ed_ix.program_id,
        solana_sdk_ids::ed25519_program::ID,
        GpumeshError::MissingEd25519Instruction
    );
    let signed = parse_ed25519(&ed_ix.data)?;
    require!(
        signed.len() == receipts.len(),
        GpumeshError::Ed25519CountMismatch
    );

    let now = Clock::get()?.unix_timestamp;
    let market_key = a.market.key();
    let leased = a.market.leased_gpus;
    emission::update(&mut a.market.emission, leased, now)?;
    let mut total_fee: u64 = 0;
    let mut total_burn: u64 = 0;
    for (i, receipt) in receipts.iter().enumerate() {
        let infos = &ctx.remaining_accounts[i * 3..i * 3 + 3];
        require!(
            infos.iter().all(|info| info.is_writable),
            GpumeshError::ReceiptAccountNotWritable
        );
        // Each triple is loaded, changed and written back before the next one, so two receipts
        // that share an order (a multi-GPU order) or a lease see each other's effects.
        let mut lease: Account<Lease> = Account::try_from(&infos[0])?;
        let mut order: Account<Order> = Account::try_from(&infos[1])?;
        let mut worker: Account<Worker> = Account::try_from(&infos[2])?;
        require!(
            lease.market == market_key
                && lease.order == order.key()
                && lease.worker == worker.key(),
            GpumeshError::ReceiptAccountsMismatch
        );
        require!(
            signed[i].pubkey == worker.node_key.as_ref(),
            GpumeshError::WrongReceiptSigner
        );
        let expected = receipt_message(
            ctx.program_id,
            &lease.key(),
            lease.nonce,
            receipt.served_seconds,
            &receipt.chain_head,
        );
        require!(
            signed[i].message == expected.as_slice(),
            GpumeshError::ReceiptMessageMismatch
        );

        let (fee, burned) = settle_one(
            &mut a.market,
            &mut lease,
            &mut order,
            &mut worker,
            receipt,
            now,
        )?;
        total_fee = total_fee.safe_add(fee)?;
        total_burn = total_burn.safe_add(burned)?;

        lease.exit(ctx.program_id)?;
        order.exit(ctx.program_id)?;
        worker.exit(ctx.program_id)?;
    }

    pay_fees(a, total_fee, total_burn)?;
    a.market.invariant()
}

/// Settles worker receipts: each is one signature of a worker's node key over all the leases it
/// serves (`gpumesh_layout::worker_receipt`), so a settlement costs one signature per worker
/// rather than one per lease. The Ed25519 instruction right before this one holds the receipts;
/// the remaining accounts are, per receipt in that order, the worker, then (lease, order) per
/// entry, all writable. Each entry is checked and paid as `settle` pays a receipt; an entry
/// already settled up to its seconds is skipped (a worker receipt covers leases that may not
/// have served since the last one), and at least one entry must pay.
pub fn settle_worker_receipts<'info>(mut ctx: Context<'info, Settle<'info>>) -> Result<()> {
    use gpumesh_layout::worker_receipt::Parsed;
    let a = &mut ctx.accounts;
    let ix_sysvar = a.instructions.to_account_info();
    let current = load_current_index_checked(&ix_sysvar)?;
    require!(current > 0, GpumeshError::MissingEd25519Instruction);
    let ed_ix = load_instruction_at_checked(current as usize - 1, &ix_sysvar)?;
    require_keys_eq!(
        ed_ix.program_id,
        solana_sdk_ids::ed25519_program::ID,
        GpumeshError::MissingEd25519Instruction
    );
    let signed = parse_ed25519(&ed_ix.data)?;
    require!(
        !signed.is_empty() && signed.len() <= a.market.params.max_receipts_per_settle as usize,
        GpumeshError::BatchTooLarge
    );
    let mut parsed = Vec::with_capacity(signed.len());
    let mut accounts_needed = 0usize;
    for s in &signed {
        let p = Parsed::new(s.message).ok_or(GpumeshError::WorkerReceiptMismatch)?;
        require!(
            p.program_id == ctx.program_id.as_ref(),
            GpumeshError::WorkerReceiptMismatch
        );
        // Bounded: at most max_receipts_per_settle (≤ 16) receipts of MAX_LEASES (16) entries.
        accounts_needed += 1 + 2 * p.count();
        parsed.push((s.pubkey, p));
    }
    require!(
        ctx.remaining_accounts.len() == accounts_needed,
        GpumeshError::ReceiptAccountsMismatch
    );
    require!(
        ctx.remaining_accounts.iter().all(|info| info.is_writable),
        GpumeshError::ReceiptAccountNotWritable
    );

    let now = Clock::get()?.unix_timestamp;
    let market_key = a.market.key();
    let leased = a.market.leased_gpus;
    emission::update(&mut a.market.emission, leased, now)?;
    let mut total_fee: u64 = 0;
    let mut total_burn: u64 = 0;
    let mut paid_entries = 0usize;
    let mut at = 0usize;
    for (signer, p) in &parsed {
        let mut worker: Account<Worker> = Account::try_from(&ctx.remaining_accounts[at])?;
        at += 1;
        require!(
            worker.market == market_key && p.worker == worker.key().as_ref(),
            GpumeshError::WorkerReceiptMismatch
        );
        require!(
            *signer == worker.node_key.as_ref(),
            GpumeshError::WrongReceiptSigner
        );
        let count = p.count();
        for i in 0..count {
            let entry = p.entry(i).ok_or(GpumeshError::WorkerReceiptMismatch)?;
            for j in 0..i {
                let other = p.entry(j).ok_or(GpumeshError::WorkerReceiptMismatch)?;
                require!(
                    other.lease != entry.lease,
                    GpumeshError::DuplicateLeaseInReceipt
                );
            }
            let mut lease: Account<Lease> = Account::try_from(&ctx.remaining_accounts[at])?;
            let mut order: Account<Order> = Account::try_from(&ctx.remaining_accounts[at + 1])?;
            at += 2;
            require!(
                lease.key().to_bytes() == entry.lease
                    && lease.market == market_key
                    && lease.order == order.key()
                    && lease.worker == worker.key(),
                GpumeshError::ReceiptAccountsMismatch
            );
            // An earlier instance of a lease at the same address: its receipts never pay here.
            require!(
                lease.nonce == entry.lease_nonce,
                GpumeshError::ReceiptMessageMismatch
            );
            if entry.served_seconds == lease.seconds_settled {
                continue;
            }
            let receipt = ReceiptArgs {
                served_seconds: entry.served_seconds,
                chain_head: entry.chain_head,
            };
            let (fee, burned) = settle_one(
                &mut a.market,
                &mut lease,
                &mut order,
                &mut worker,
                &receipt,
                now,
            )?;
            total_fee = total_fee.safe_add(fee)?;
            total_burn = total_burn.safe_add(burned)?;
            paid_entries += 1;
            lease.exit(ctx.program_id)?;
            order.exit(ctx.program_id)?;
        }
        worker.exit(ctx.program_id)?;
    }
    require!(paid_entries > 0, GpumeshError::NothingToSettle);
    pay_fees(a, total_fee, total_burn)?;
    a.market.invariant()
}

/// Moves a settlement's fees out of escrow: the treasury's share, and the burned share out of
/// the supply.
fn pay_fees(a: &mut Settle<'_>, total_fee: u64, total_burn: u64) -> Result<()> {
    withdraw(
        &a.token_program,
        &a.market,
        &a.escrow_vault,
        &a.treasury_vault,
        total_fee.safe_sub(total_burn)?,
    )?;
    if total_burn > 0 {
        burn(
            &a.token_program,
            &a.market,
            &a.mint,
            &a.escrow_vault,
            total_burn,
        )?;
        let after = a.market.total_burned;
        emit_event(&FeesBurned {
            amount: total_burn,
            total_burned_before: after.safe_sub(total_burn)?,
            total_burned_after: after,
        });
    }
    Ok(())
}

/// Applies one verified receipt; returns the protocol fee it took and the part of it burned.
fn settle_one(
    market: &mut Market,
    lease: &mut Account<Lease>,
    order: &mut Account<Order>,
    worker: &mut Account<Worker>,
    receipt: &ReceiptArgs,
    now: i64,
) -> Result<(u64, u64)> {
    let served = receipt.served_seconds;
    require!(served > lease.seconds_settled, GpumeshError::StaleReceipt);
    let wall = now.safe_sub(lease.start_ts)?.max(0) as u64;
    require!(served <= wall, GpumeshError::BeyondWallTime);
    require!(served <= order.terms.duration, GpumeshError::BeyondDuration);
    if order.is_closing() {
        let until_close = order.close_requested_ts.safe_sub(lease.start_ts)?.max(0) as u64;
        require!(served <= until_close, GpumeshError::BeyondCloseRequest);
    }
    if lease.preempt_at != 0 {
        let until_preempted = lease.preempt_at.safe_sub(lease.start_ts)?.max(0) as u64;
        require!(served <= until_preempted, GpumeshError::BeyondPreemption);
    }

    let delta = served.safe_sub(lease.seconds_settled)?;
    let wall_since_last = now.safe_sub(lease.last_settle_ts)?.max(0) as u64;
    let rewards = emission::lease_rewards(&mut market.emission, lease, delta, wall_since_last)?;
    worker.rewards_claimable = worker.rewards_claimable.safe_add(rewards)?;
    worker.rewards_total = worker.rewards_total.safe_add(rewards)?;
    let cost = lease_cost(delta, lease.gpus, lease.price_per_gpu_second)?;
    // The escrow is a hard cap: a lease that outran its funding is paid what is left.
    let amount = cost.min(order.escrow_remaining);
    let paid_after = lease.amount_paid.safe_add(amount)?;
    let fee = cumulative_fee(paid_after, lease.fee_bps)?.safe_sub(lease.fee_paid)?;
    let fee_after = lease.fee_paid.safe_add(fee)?;
    let burned = cumulative_fee(fee_after, lease.burn_bps)?.safe_sub(lease.fee_burned)?;
    let to_worker = amount.safe_sub(fee)?;

    let escrow_before = order.escrow_remaining;
    let claimable_before = worker.earnings_claimable;
    let seconds_before = lease.seconds_settled;

    order.escrow_remaining = order.escrow_remaining.safe_sub(amount)?;
    order.total_paid = order.total_paid.safe_add(amount)?;
    lease.seconds_settled = served;
    lease.amount_paid = paid_after;
    lease.fee_paid = fee_after;
    lease.fee_burned = lease.fee_burned.safe_add(burned)?;
    lease.last_settle_ts = now;
    lease.last_chain_head = receipt.chain_head;
    let gpu_seconds = delta.safe_mul(lease.gpus as u64)?;
    worker.earnings_claimable = worker.earnings_claimable.safe_add(to_worker)?;
    worker.earnings_total = worker.earnings_total.safe_add(to_worker)?;
    worker.record.served_gpu_seconds = worker.record.served_gpu_seconds.safe_add(gpu_seconds)?;
    market.total_escrow = market.total_escrow.safe_sub(amount)?;
    market.total_claimable = market.total_claimable.safe_add(to_worker)?;
    market.treasury_balance = market.treasury_balance.safe_add(fee.safe_sub(burned)?)?;
    market.total_burned = market.total_burned.safe_add(burned)?;
    market.total_gpu_seconds = market.total_gpu_seconds.safe_add(gpu_seconds)?;

    lease.invariant()?;
    order.invariant()?;
    worker.invariant()?;
    emit_event(&ReceiptSettled {
        lease: lease.key(),
        order: order.key(),
        worker: worker.key(),
        seconds_before,
        seconds_after: served,
        amount,
        fee,
        burned,
        escrow_before,
        escrow_after: order.escrow_remaining,
        claimable_before,
        claimable_after: worker.earnings_claimable,
        rewards,
        chain_head: receipt.chain_head,
    });
    Ok((fee, burned))
}
