//! The orchestrator's moves on chain, written once: assign GPUs of a worker to an order, settle
//! signed receipts in batches that fit a transaction, end a lease with its final settlement
//! (completed, cancelled, or offline with the slash paid to the buyer), slash proven fraud, and
//! complete an order, and fail a lease over to spare workers in one transaction. The service, the
//! demo and the tests all act through here, over any [`Chain`].
//!
//! Each move checks first what it can off chain, with the program's own rules
//! (`check_assignable`, the circuit breaker, the receipt's signature against the worker's node
//! key), so a move the program would refuse is not sent and comes back as a typed refusal.

use gpumesh_client::chain::{Chain, ChainExt};
use gpumesh_client::ix::{self, LeaseRef, PACKET_DATA_SIZE};
use gpumesh_client::program::errors::GpumeshError;
use gpumesh_client::program::instructions::{breaker_cap, check_assignable};
use gpumesh_client::program::state::{CloseReason, Lease, Market, Order, Worker};
use gpumesh_client::{
    ChainError, Instruction, Keypair, MarketAddresses, Outcome, Pubkey, Signer, receipt, token,
};
use gpumesh_protocol::{ReceiptError, SignedReceipt, SignedWorkerReceipt};

/// A lease's GPUs moved to a spare worker: what [`Orchestrator::fail_over`] assigns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spare {
    pub worker: Pubkey,
    pub gpus: u16,
}

/// What a failover did on chain.
#[derive(Debug, Clone)]
pub struct FailedOver {
    /// The transaction that closed the lease as offline (and assigned the spares with it).
    pub outcome: Outcome,
    /// The transaction that settled the final receipt: the closing one when it fit there, a
    /// transaction of its own just before it otherwise, `None` without a receipt.
    pub settled_in: Option<String>,
    /// The new leases, assigned in the closing transaction, in the order of the spares given.
    pub leases: Vec<LeaseRef>,
    /// Spares left out because the transaction would not fit a packet with them (placement
    /// assigns those GPUs later).
    pub left_out: Vec<Spare>,
}

#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// The program would refuse the move; nothing was sent.
    #[error("not sent: the program would refuse it: {0}")]
    Refused(GpumeshError),
    /// A receipt that must not be settled; nothing was sent.
    #[error("receipt for lease {lease} not settled: {source}")]
    BadReceipt {
        lease: Pubkey,
        #[source]
        source: ReceiptError,
    },
    #[error("{what} {key} does not exist")]
    Missing { what: &'static str, key: Pubkey },
    /// A check failed outside the program's own errors (e.g. an account that does not decode).
    #[error("not sent: {0}")]
    Check(String),
    #[error(transparent)]
    Chain(#[from] ChainError),
}

fn refused(err: anchor_lang::error::Error) -> ActionError {
    if let anchor_lang::error::Error::AnchorError(e) = &err
        && let Some(code) = GpumeshError::from_code(e.error_code_number)
    {
        return ActionError::Refused(code);
    }
    ActionError::Check(err.to_string())
}

/// The orchestrator of one market: its addresses and the key the market names.
pub struct Orchestrator {
    market: MarketAddresses,
    key: Keypair,
}

impl Orchestrator {
    pub fn new(market: MarketAddresses, key: Keypair) -> Self {
        Self { market, key }
    }

    pub fn market(&self) -> &MarketAddresses {
        &self.market
    }

    pub fn pubkey(&self) -> Pubkey {
        self.key.pubkey()
    }

    fn fetch<T: anchor_lang::AccountDeserialize>(
        chain: &dyn Chain,
        what: &'static str,
        key: &Pubkey,
    ) -> Result<T, ActionError> {
        chain
            .fetch_opt::<T>(key)?
            .ok_or(ActionError::Missing { what, key: *key })
    }

    fn send(&self, chain: &mut dyn Chain, ixs: &[Instruction]) -> Result<Outcome, ActionError> {
        Ok(chain.send(ixs, &self.key, &[])?)
    }

    /// Leases `gpus` of `worker` to `order` at the worker's price, after the program's own checks
    /// (requirements, free GPUs, stake behind them, jail, escrow, the order's close request) and
    /// the circuit breaker pass off chain. Returns the new lease instance.
    pub fn assign(
        &self,
        chain: &mut dyn Chain,
        order: &Pubkey,
        worker: &Pubkey,
        gpus: u16,
    ) -> Result<(LeaseRef, Outcome), ActionError> {
        let market: Market = Self::fetch(chain, "market", &self.market.market)?;
        let o: Order = Self::fetch(chain, "order", order)?;
        let w: Worker = Self::fetch(chain, "worker", worker)?;
        let now = chain.unix_time()?;
        check_assignable(&market, &o, &w, gpus, now).map_err(refused)?;
        if let Some(cap) = breaker_cap(&market, o.terms.requirements.gpu_class).map_err(refused)?
            && w.price_per_gpu_second > cap
        {
            return Err(ActionError::Refused(GpumeshError::PriceAboveBreaker));
        }
        let outcome = self.send(
            chain,
            &[ix::assign(
                &self.market,
                &self.pubkey(),
                order,
                worker,
                gpus,
            )],
        )?;
        let key = gpumesh_client::pda::lease(order, worker).0;
        let lease: Lease = Self::fetch(chain, "lease", &key)?;
        Ok((LeaseRef::of(&lease), outcome))
    }

    /// Checks a receipt off chain: signed by the worker's node key over this lease instance.
    fn check_receipt(
        &self,
        chain: &dyn Chain,
        lease: &LeaseRef,
        r: &SignedReceipt,
    ) -> Result<(), ActionError> {
        let worker: Worker = Self::fetch(chain, "worker", &lease.worker)?;
        let bad = |source| ActionError::BadReceipt {
            lease: lease.lease,
            source,
        };
        r.verify(Some(&receipt::key(&worker.node_key)))
            .map_err(bad)?;
        if receipt::pubkey(&r.lease) != lease.lease
            || r.lease_nonce != lease.nonce
            || receipt::pubkey(&r.program_id) != gpumesh_client::program::ID
        {
            return Err(ActionError::Refused(GpumeshError::ReceiptMessageMismatch));
        }
        Ok(())
    }

    /// Settles receipts, each checked off chain first, in as few transactions as fit: a batch
    /// holds at most the market's `max_receipts_per_settle` and must fit a packet (on a cluster
    /// about two receipts each). Batches go in the given order, so several receipts of one lease
    /// settle in sequence. Returns each batch's outcome.
    pub fn settle(
        &self,
        chain: &mut dyn Chain,
        receipts: &[(LeaseRef, SignedReceipt)],
    ) -> Result<Vec<Outcome>, ActionError> {
        Ok(self
            .settle_batches(chain, receipts)?
            .into_iter()
            .map(|(outcome, _)| outcome)
            .collect())
    }

    /// [`Self::settle`], with the range of `receipts` each transaction carried. The
    /// transactions are in flight together ([`Chain::send_all`]); each carries other leases, so
    /// none depends on another. Any failure is returned (the first): the batches that landed are
    /// on chain, and settling again is safe, since a cumulative receipt never pays twice.
    pub fn settle_batches(
        &self,
        chain: &mut dyn Chain,
        receipts: &[(LeaseRef, SignedReceipt)],
    ) -> Result<Vec<(Outcome, std::ops::Range<usize>)>, ActionError> {
        let batches = self.pack_receipts(chain, receipts)?;
        let transactions: Vec<Vec<Instruction>> = batches
            .iter()
            .map(|r| ix::settle(&self.market, &self.pubkey(), &receipts[r.clone()]).to_vec())
            .collect();
        let results = chain.send_all(&transactions, &self.key, &[]);
        let mut outcomes = Vec::with_capacity(results.len());
        for (result, range) in results.into_iter().zip(batches) {
            outcomes.push((result?, range));
        }
        Ok(outcomes)
    }

    /// [`Self::settle_batches`] one transaction after another, each confirmed before the next
    /// is sent (how the service settled before): the settlement benchmark's baseline.
    pub fn settle_batches_sequentially(
        &self,
        chain: &mut dyn Chain,
        receipts: &[(LeaseRef, SignedReceipt)],
    ) -> Result<Vec<(Outcome, std::ops::Range<usize>)>, ActionError> {
        let mut outcomes = vec![];
        for range in self.pack_receipts(chain, receipts)? {
            let ixs = ix::settle(&self.market, &self.pubkey(), &receipts[range.clone()]);
            outcomes.push((self.send(chain, &ixs)?, range));
        }
        Ok(outcomes)
    }

    /// Checks every receipt off chain, then packs them in order into as few settlement
    /// transactions as fit the packet and the market's batch limit.
    fn pack_receipts(
        &self,
        chain: &mut dyn Chain,
        receipts: &[(LeaseRef, SignedReceipt)],
    ) -> Result<Vec<std::ops::Range<usize>>, ActionError> {
        for (lease, r) in receipts {
            self.check_receipt(chain, lease, r)?;
        }
        let market: Market = Self::fetch(chain, "market", &self.market.market)?;
        let most = usize::from(market.params.max_receipts_per_settle.max(1));
        let mut batches = vec![];
        let mut start = 0;
        while start < receipts.len() {
            let mut end = start + 1;
            while end < receipts.len()
                && end - start < most
                && self.fits(&ix::settle(
                    &self.market,
                    &self.pubkey(),
                    &receipts[start..=end],
                ))
            {
                end += 1;
            }
            batches.push(start..end);
            start = end;
        }
        Ok(batches)
    }

    /// Settles worker receipts (one signature per worker over all its leases), each checked off
    /// chain first (signed by the worker's registered node key, naming live instances of its
    /// leases), in as few transactions as fit the packet and the market's batch limit. Returns
    /// each transaction's outcome with the range of `receipts` it carried.
    pub fn settle_worker_receipts(
        &self,
        chain: &mut dyn Chain,
        receipts: &[(SignedWorkerReceipt, Vec<LeaseRef>)],
    ) -> Result<Vec<(Outcome, std::ops::Range<usize>)>, ActionError> {
        for (r, leases) in receipts {
            let worker_key = receipt::pubkey(&r.worker);
            let worker: Worker = Self::fetch(chain, "worker", &worker_key)?;
            r.verify(Some(&receipt::key(&worker.node_key)))
                .map_err(|e| ActionError::Check(format!("worker receipt of {worker_key}: {e}")))?;
            if receipt::pubkey(&r.program_id) != gpumesh_client::program::ID {
                return Err(ActionError::Refused(GpumeshError::WorkerReceiptMismatch));
            }
            for e in &r.entries {
                let l = leases
                    .iter()
                    .find(|l| receipt::key(&l.lease) == e.lease)
                    .ok_or_else(|| {
                        ActionError::Check(format!(
                            "the worker receipt of {worker_key} names lease {} that was not passed",
                            e.lease
                        ))
                    })?;
                if l.worker != worker_key || l.nonce != e.lease_nonce {
                    return Err(ActionError::Refused(GpumeshError::ReceiptMessageMismatch));
                }
            }
        }
        let market: Market = Self::fetch(chain, "market", &self.market.market)?;
        let most = usize::from(market.params.max_receipts_per_settle.max(1));
        let build = |range: std::ops::Range<usize>| {
            let batch: Vec<(&SignedWorkerReceipt, &[LeaseRef])> = receipts[range]
                .iter()
                .map(|(r, l)| (r, l.as_slice()))
                .collect();
            ix::settle_worker_receipts(&self.market, &self.pubkey(), &batch)
                .ok_or_else(|| ActionError::Check("a receipt names a lease not passed".into()))
        };
        let mut outcomes = vec![];
        let mut start = 0;
        while start < receipts.len() {
            let mut end = start + 1;
            while end < receipts.len() && end - start < most && self.fits(&build(start..end + 1)?) {
                end += 1;
            }
            let ixs = build(start..end)?;
            outcomes.push((self.send(chain, &ixs)?, start..end));
            start = end;
        }
        Ok(outcomes)
    }

    fn fits(&self, ixs: &[Instruction]) -> bool {
        ix::transaction_size(ixs, &self.pubkey(), 1) <= PACKET_DATA_SIZE
    }

    /// Ends a lease: the final receipt (if any) settles and the lease closes in one transaction,
    /// so no served second is lost between the two. `WorkerOffline` also slashes the worker's
    /// share for this lease and pays it to the order's buyer.
    pub fn end_lease(
        &self,
        chain: &mut dyn Chain,
        lease: &LeaseRef,
        final_receipt: Option<SignedReceipt>,
        reason: CloseReason,
    ) -> Result<Outcome, ActionError> {
        let mut ixs = vec![];
        if let Some(r) = final_receipt {
            self.check_receipt(chain, lease, &r)?;
            ixs.extend(ix::settle(&self.market, &self.pubkey(), &[(*lease, r)]));
        }
        match reason {
            CloseReason::WorkerOffline => {
                let order: Order = Self::fetch(chain, "order", &lease.order)?;
                let buyer_token = token::ata(&order.buyer, &self.market.mint);
                ixs.push(ix::close_lease_offline(
                    &self.market,
                    &self.pubkey(),
                    lease,
                    &buyer_token,
                ));
            }
            CloseReason::Completed | CloseReason::Cancelled | CloseReason::Preempted => {
                ixs.push(ix::close_lease(&self.market, &self.pubkey(), lease, reason));
            }
            _ => return Err(ActionError::Refused(GpumeshError::InvalidCloseReason)),
        }
        self.send(chain, &ixs)
    }

    /// Fails a lease over: its final receipt (if any) settles, the lease closes as offline (the
    /// worker is slashed for it and the buyer is paid), and its GPUs are assigned to `spares`,
    /// all in one transaction when it fits the 1,232-byte packet, so the order is never open in
    /// between and the job can restart as soon as one confirmation is in. When it does not fit,
    /// the receipt settles first in a transaction of its own, then spares that still do not fit
    /// are left out (placement assigns those GPUs later).
    ///
    /// Before anything is sent, the program's own checks run on the accounts as the close will
    /// leave them (the lease's GPUs freed on the order, its escrow less the most the receipt can
    /// pay): each spare must pass `check_assignable` and the circuit breaker, and the receipt
    /// must be signed by the worker's node key for this lease instance.
    pub fn fail_over(
        &self,
        chain: &mut dyn Chain,
        lease: &LeaseRef,
        final_receipt: Option<SignedReceipt>,
        spares: &[Spare],
    ) -> Result<FailedOver, ActionError> {
        if let Some(r) = &final_receipt {
            self.check_receipt(chain, lease, r)?;
        }
        let order: Order = Self::fetch(chain, "order", &lease.order)?;
        let buyer_token = token::ata(&order.buyer, &self.market.mint);
        let close = ix::close_lease_offline(&self.market, &self.pubkey(), lease, &buyer_token);
        let mut assigns = vec![];
        if !spares.is_empty() {
            let market: Market = Self::fetch(chain, "market", &self.market.market)?;
            let on_chain: Lease = Self::fetch(chain, "lease", &lease.lease)?;
            let now = chain.unix_time()?;
            // The order as the close leaves it: the lease's GPUs free again, and its escrow
            // less the most the final receipt can pay.
            let mut after = order.clone();
            if let Some(r) = &final_receipt {
                let most = r
                    .served_seconds
                    .saturating_sub(on_chain.seconds_settled)
                    .saturating_mul(u64::from(on_chain.gpus))
                    .saturating_mul(on_chain.price_per_gpu_second);
                after.escrow_remaining = after.escrow_remaining.saturating_sub(most);
            }
            after.gpus_assigned = after.gpus_assigned.saturating_sub(on_chain.gpus);
            after.active_leases = after.active_leases.saturating_sub(1);
            for spare in spares {
                if spare.worker == lease.worker {
                    return Err(ActionError::Check(
                        "a lease cannot fail over to the worker it leaves".into(),
                    ));
                }
                let w: Worker = Self::fetch(chain, "worker", &spare.worker)?;
                check_assignable(&market, &after, &w, spare.gpus, now).map_err(refused)?;
                if let Some(cap) =
                    breaker_cap(&market, after.terms.requirements.gpu_class).map_err(refused)?
                    && w.price_per_gpu_second > cap
                {
                    return Err(ActionError::Refused(GpumeshError::PriceAboveBreaker));
                }
                after.gpus_assigned = after.gpus_assigned.saturating_add(spare.gpus);
                after.active_leases = after.active_leases.saturating_add(1);
                assigns.push((
                    *spare,
                    ix::assign(
                        &self.market,
                        &self.pubkey(),
                        &lease.order,
                        &spare.worker,
                        spare.gpus,
                    ),
                ));
            }
        }
        let settle = final_receipt
            .as_ref()
            .map(|r| ix::settle(&self.market, &self.pubkey(), &[(*lease, r.clone())]));
        let build = |with_settle: bool, spares: usize| {
            let mut ixs: Vec<Instruction> = vec![];
            if with_settle && let Some(pair) = &settle {
                ixs.extend(pair.iter().cloned());
            }
            ixs.push(close.clone());
            ixs.extend(assigns[..spares].iter().map(|(_, ix)| ix.clone()));
            ixs
        };
        let mut settled_in = None;
        let mut with_settle = settle.is_some();
        if with_settle && !self.fits(&build(true, assigns.len())) {
            // The receipt goes first on its own; the close and the spares stay together.
            let pair = settle.as_ref().map(|p| p.to_vec()).unwrap_or_default();
            settled_in = Some(self.send(chain, &pair)?.signature);
            with_settle = false;
        }
        let mut taken = assigns.len();
        while taken > 0 && !self.fits(&build(with_settle, taken)) {
            taken -= 1;
        }
        let outcome = self.send(chain, &build(with_settle, taken))?;
        if with_settle {
            settled_in = Some(outcome.signature.clone());
        }
        let mut leases = vec![];
        for (spare, _) in &assigns[..taken] {
            let key = gpumesh_client::pda::lease(&lease.order, &spare.worker).0;
            let nonce = outcome.events.iter().find_map(|e| match e {
                gpumesh_client::events::GpumeshEvent::LeaseAssigned(a) if a.lease == key => {
                    Some(a.nonce)
                }
                _ => None,
            });
            let new = match nonce {
                Some(nonce) => LeaseRef {
                    lease: key,
                    order: lease.order,
                    worker: spare.worker,
                    rent_payer: self.pubkey(),
                    nonce,
                },
                // Logs are read on a best-effort basis: the account says the same.
                None => LeaseRef::of(&Self::fetch::<Lease>(chain, "lease", &key)?),
            };
            leases.push(new);
        }
        Ok(FailedOver {
            outcome,
            settled_in,
            leases,
            left_out: assigns[taken..].iter().map(|(s, _)| *s).collect(),
        })
    }

    /// Gives a spot lease the market's preemption notice because `reserved_order` needs its
    /// GPUs; end it with [`Orchestrator::end_lease`] and `CloseReason::Preempted` once the notice
    /// is over (its last receipt settles up to the end of the notice).
    pub fn preempt(
        &self,
        chain: &mut dyn Chain,
        lease: &LeaseRef,
        reserved_order: &Pubkey,
    ) -> Result<Outcome, ActionError> {
        self.send(
            chain,
            &[ix::preempt_lease(
                &self.market,
                &self.pubkey(),
                lease,
                reserved_order,
            )],
        )
    }

    /// Slashes a worker for proven fraud (the evidence's hash goes on chain) and jails it. With
    /// the lease it was caught on, that lease's buyer is compensated and the lease closes; call
    /// it once per lease the worker serves.
    pub fn slash_fraud(
        &self,
        chain: &mut dyn Chain,
        worker: &Pubkey,
        lease: Option<&LeaseRef>,
        evidence_hash: [u8; 32],
    ) -> Result<Outcome, ActionError> {
        let serving = match lease {
            Some(l) => {
                let order: Order = Self::fetch(chain, "order", &l.order)?;
                Some((l, token::ata(&order.buyer, &self.market.mint)))
            }
            None => None,
        };
        let ix = ix::slash_fraud(
            &self.market,
            &self.pubkey(),
            worker,
            serving.as_ref().map(|(l, t)| (*l, t)),
            evidence_hash,
        );
        self.send(chain, &[ix])
    }

    /// Marks a served order completed with its results' content hash (zero for none): the unspent
    /// escrow goes back to its buyer.
    pub fn complete_order(
        &self,
        chain: &mut dyn Chain,
        order: &Pubkey,
        result_hash: [u8; 32],
    ) -> Result<Outcome, ActionError> {
        let o: Order = Self::fetch(chain, "order", order)?;
        if o.active_leases > 0 {
            return Err(ActionError::Refused(GpumeshError::OrderHasActiveLeases));
        }
        if o.total_paid == 0 {
            return Err(ActionError::Refused(GpumeshError::NothingServed));
        }
        let buyer_token = token::ata(&o.buyer, &self.market.mint);
        self.send(
            chain,
            &[ix::complete_order(
                &self.market,
                &self.pubkey(),
                &o.buyer,
                &buyer_token,
                order,
                result_hash,
            )],
        )
    }
}
