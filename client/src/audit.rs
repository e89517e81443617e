//! The market's books, checked from the chain alone: every token in the market's vaults is
//! owed to someone an account names, and the market's running totals agree with its accounts.
//!
//! - stake vault = every worker's stake + unbonding
//! - escrow vault = every order's remaining escrow + every worker's unclaimed earnings
//! - treasury vault = the market's treasury balance
//! - rewards vault = emission funded − paid; rewards owed + paid = accrued
//! - the market's totals (stake, unbonding, claimable, escrow, leased GPUs, live leases) equal
//!   the sums over its accounts; each order's deposit = remaining + paid; each worker and order
//!   counts the GPUs and leases its live leases hold
//!
//! Anyone can run it (`gpumesh market audit`); the end-to-end tests run it after every scenario.
//! The listings are read one after another, so on a busy market a transaction that lands between
//! two reads shows as a difference: audit a quiet market, or repeat.

use crate::chain::{Chain, ChainExt};
use crate::error::ChainError;
use crate::filters;
use crate::pda::MarketAddresses;
use anchor_lang::prelude::Pubkey;
use gpumesh::state::{Lease, Market, Order, Worker};
use serde::Serialize;
use std::collections::BTreeMap;

/// What the audit read and what it found wrong (nothing, on a sound market).
#[derive(Debug, Clone, Serialize)]
pub struct Audit {
    pub market: String,
    pub workers: usize,
    pub orders: usize,
    pub leases: usize,
    /// Base units.
    pub stake_vault: u64,
    pub escrow_vault: u64,
    pub treasury_vault: u64,
    pub rewards_vault: u64,
    /// Base units the accounts say the vaults owe (same order as the vaults).
    pub stake_owed: u128,
    pub escrow_owed: u128,
    pub treasury_owed: u128,
    pub rewards_owed: u128,
    /// Each broken rule, in words with both sides' numbers.
    pub violations: Vec<String>,
}

impl Audit {
    pub fn is_sound(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Reads `market`'s accounts and vaults through `chain` and checks its books.
pub fn audit<C: Chain + ?Sized>(chain: &C, market: &Pubkey) -> Result<Audit, ChainError> {
    let m: Market = chain.fetch(market)?;
    let addrs = MarketAddresses::of(&m);
    let workers = chain.list_decoded::<Worker>(&filters::in_market(market))?;
    let orders = chain.list_decoded::<Order>(&filters::in_market(market))?;
    let leases = chain.list_decoded::<Lease>(&filters::in_market(market))?;
    let mut violations = Vec::new();
    let differ = |violations: &mut Vec<String>, what: &str, books: u128, accounts: u128| {
        if books != accounts {
            violations.push(format!("{what}: {books} ≠ {accounts}"));
        }
    };

    let mut by_worker: BTreeMap<Pubkey, (u64, u64)> = BTreeMap::new();
    let mut by_order: BTreeMap<Pubkey, (u64, u64)> = BTreeMap::new();
    let mut leased_gpus = 0u128;
    for (_, l) in &leases {
        leased_gpus += u128::from(l.gpus);
        let w = by_worker.entry(l.worker).or_default();
        *w = (w.0 + u64::from(l.gpus), w.1 + 1);
        let o = by_order.entry(l.order).or_default();
        *o = (o.0 + u64::from(l.gpus), o.1 + 1);
    }

    let (mut stake, mut unbonding, mut claimable, mut rewards_owed) = (0u128, 0u128, 0u128, 0u128);
    for (key, w) in &workers {
        stake += u128::from(w.stake);
        unbonding += u128::from(w.unbonding);
        claimable += u128::from(w.earnings_claimable);
        rewards_owed += u128::from(w.rewards_claimable);
        let (gpus, count) = by_worker.get(key).copied().unwrap_or_default();
        differ(
            &mut violations,
            &format!("worker {key}: GPUs leased (its account, its leases)"),
            u128::from(w.gpus_leased),
            u128::from(gpus),
        );
        differ(
            &mut violations,
            &format!("worker {key}: live leases (its account, the leases)"),
            u128::from(w.active_leases),
            u128::from(count),
        );
    }
    let mut escrow = 0u128;
    for (key, o) in &orders {
        escrow += u128::from(o.escrow_remaining);
        differ(
            &mut violations,
            &format!("order {key}: deposited, remaining + paid"),
            u128::from(o.escrow_deposited),
            u128::from(o.escrow_remaining) + u128::from(o.total_paid),
        );
        let (gpus, count) = by_order.get(key).copied().unwrap_or_default();
        differ(
            &mut violations,
            &format!("order {key}: GPUs assigned (its account, its leases)"),
            u128::from(o.gpus_assigned),
            u128::from(gpus),
        );
        differ(
            &mut violations,
            &format!("order {key}: live leases (its account, the leases)"),
            u128::from(o.active_leases),
            u128::from(count),
        );
    }
    for (key, l) in &leases {
        if !orders.iter().any(|(o, _)| *o == l.order) {
            violations.push(format!("lease {key}: its order {} is gone", l.order));
        }
        if !workers.iter().any(|(w, _)| *w == l.worker) {
            violations.push(format!("lease {key}: its worker {} is gone", l.worker));
        }
    }

    differ(
        &mut violations,
        "market total stake (market, workers)",
        u128::from(m.total_stake),
        stake,
    );
    differ(
        &mut violations,
        "market total unbonding (market, workers)",
        u128::from(m.total_unbonding),
        unbonding,
    );
    differ(
        &mut violations,
        "market total claimable (market, workers)",
        u128::from(m.total_claimable),
        claimable,
    );
    differ(
        &mut violations,
        "market total escrow (market, orders)",
        u128::from(m.total_escrow),
        escrow,
    );
    differ(
        &mut violations,
        "market leased GPUs (market, leases)",
        u128::from(m.leased_gpus),
        leased_gpus,
    );
    differ(
        &mut violations,
        "market live leases (market, leases)",
        u128::from(m.active_leases),
        leases.len() as u128,
    );

    let stake_vault = chain.token_balance(&addrs.stake_vault)?;
    let escrow_vault = chain.token_balance(&addrs.escrow_vault)?;
    let treasury_vault = chain.token_balance(&addrs.treasury_vault)?;
    let rewards_vault = chain.token_balance(&addrs.rewards_vault)?;
    let e = &m.emission;
    let rewards_held = u128::from(e.funded).saturating_sub(u128::from(e.paid));
    differ(
        &mut violations,
        "stake vault (balance, stake + unbonding)",
        u128::from(stake_vault),
        stake + unbonding,
    );
    differ(
        &mut violations,
        "escrow vault (balance, escrow + unclaimed earnings)",
        u128::from(escrow_vault),
        escrow + claimable,
    );
    differ(
        &mut violations,
        "treasury vault (balance, the market's treasury)",
        u128::from(treasury_vault),
        u128::from(m.treasury_balance),
    );
    differ(
        &mut violations,
        "rewards vault (balance, funded − paid)",
        u128::from(rewards_vault),
        rewards_held,
    );
    differ(
        &mut violations,
        "rewards accrued (emission, owed + paid)",
        u128::from(e.accrued),
        rewards_owed + u128::from(e.paid),
    );

    Ok(Audit {
        market: market.to_string(),
        workers: workers.len(),
        orders: orders.len(),
        leases: leases.len(),
        stake_vault,
        escrow_vault,
        treasury_vault,
        rewards_vault,
        stake_owed: stake + unbonding,
        escrow_owed: escrow + claimable,
        treasury_owed: u128::from(m.treasury_balance),
        rewards_owed: rewards_held,
        violations,
    })
}
