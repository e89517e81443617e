//! The orchestrator's moves on chain, written once: assign GPUs of a worker to an order, settle
//! signed receipts in batches that fit a transaction, end a lease with its final settlement
//! (completed, cancelled, or offline with the slash paid to the buyer), slash proven fraud, and
//! complete an order. The service, the demo and the tests all act through here, over any
//! [`Chain`].
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

    /// [`Self::settle`], with the range of `receipts` each transaction carried.
    pub fn settle_batches(
        &self,
        chain: &mut dyn Chain,
        receipts: &[(LeaseRef, SignedReceipt)],
    ) -> Result<Vec<(Outcome, std::ops::Range<usize>)>, ActionError> {
        for (lease, r) in receipts {
            self.check_receipt(chain, lease, r)?;
        }
        let market: Market = Self::fetch(chain, "market", &self.market.market)?;
        let most = usize::from(market.params.max_receipts_per_settle.max(1));
        let mut outcomes = vec![];
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
            let ixs = ix::settle(&self.market, &self.pubkey(), &receipts[start..end]);
            outcomes.push((self.send(chain, &ixs)?, start..end));
            start = end;
        }
        Ok(outcomes)
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
