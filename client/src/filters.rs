//! Account-listing filters for the questions clients ask (a buyer's orders, an order's leases, a
//! market's workers), with the field offsets taken from the account layouts and checked against
//! serialized accounts in the tests below. Pass them to [`crate::ChainExt::list_decoded`], which
//! adds the account type's discriminator.

use crate::chain::AccountFilter;
use anchor_lang::prelude::Pubkey;

/// Every gpumesh account starts with the 8-byte discriminator, `version` and `bump`, then the
/// market it belongs to.
pub const MARKET_OFFSET: usize = 8 + 1 + 1;
/// `Order::buyer`, after `market`.
pub const ORDER_BUYER_OFFSET: usize = MARKET_OFFSET + 32;
/// `Lease::order`, after `market`.
pub const LEASE_ORDER_OFFSET: usize = MARKET_OFFSET + 32;
/// `Lease::worker`, after `order`.
pub const LEASE_WORKER_OFFSET: usize = LEASE_ORDER_OFFSET + 32;

fn memcmp(offset: usize, key: &Pubkey) -> AccountFilter {
    AccountFilter::Memcmp {
        offset,
        bytes: key.to_bytes().to_vec(),
    }
}

/// Accounts (workers, orders or leases, by the type listed) of `market`.
pub fn in_market(market: &Pubkey) -> Vec<AccountFilter> {
    vec![memcmp(MARKET_OFFSET, market)]
}

/// `buyer`'s orders in `market`.
pub fn orders_of(market: &Pubkey, buyer: &Pubkey) -> Vec<AccountFilter> {
    vec![
        memcmp(MARKET_OFFSET, market),
        memcmp(ORDER_BUYER_OFFSET, buyer),
    ]
}

/// The live leases of `order`.
pub fn leases_of_order(order: &Pubkey) -> Vec<AccountFilter> {
    vec![memcmp(LEASE_ORDER_OFFSET, order)]
}

/// The live leases `worker` serves.
pub fn leases_of_worker(worker: &Pubkey) -> Vec<AccountFilter> {
    vec![memcmp(LEASE_WORKER_OFFSET, worker)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use anchor_lang::AccountSerialize;
    use gpumesh::state::*;

    fn serialized<T: AccountSerialize>(account: &T) -> Vec<u8> {
        let mut data = Vec::new();
        account.try_serialize(&mut data).expect("serialize");
        data
    }

    #[test]
    fn offsets_match_the_account_layouts() {
        let (market, buyer, order, worker) = (
            Pubkey::new_unique(),
            Pubkey::new_unique(),
            Pubkey::new_unique(),
            Pubkey::new_unique(),
        );
        let o = Order {
            version: 1,
            bump: 255,
            market,
            buyer,
            order_id: 7,
            terms: OrderTerms {
                requirements: OrderRequirements {
                    gpu_class: 9,
                    gpu_count: 1,
                    min_vram_mib: 0,
                    min_bandwidth_gbps: 0,
                    regions: 1,
                },
                max_price_per_gpu_second: 1,
                duration: 1,
                mode: OrderMode::Spot,
                job_spec_hash: [0; 32],
            },
            status: OrderStatus::Open,
            escrow_deposited: 0,
            escrow_remaining: 0,
            total_paid: 0,
            gpus_assigned: 0,
            active_leases: 0,
            created_ts: 0,
            close_requested_ts: 0,
            buyer_exit_ts: 0,
            reserved: [0; 64],
        };
        let data = serialized(&o);
        for f in orders_of(&market, &buyer) {
            assert!(f.matches(&data), "{f:?}");
        }
        assert!(!orders_of(&market, &order)[1].matches(&data));
        let l = Lease {
            version: 1,
            bump: 255,
            market,
            order,
            worker,
            nonce: 3,
            rent_payer: Pubkey::new_unique(),
            gpus: 1,
            price_per_gpu_second: 1,
            fee_bps: 0,
            start_ts: 0,
            seconds_settled: 0,
            amount_paid: 0,
            fee_paid: 0,
            burn_bps: 0,
            fee_burned: 0,
            preempt_at: 0,
            last_settle_ts: 0,
            last_chain_head: [0; 32],
            reward_acc_snapshot: 0,
            reserved: [0; 64],
        };
        let data = serialized(&l);
        for f in leases_of_order(&order)
            .into_iter()
            .chain(leases_of_worker(&worker))
            .chain(in_market(&market))
        {
            assert!(f.matches(&data), "{f:?}");
        }
        assert!(!leases_of_order(&worker)[0].matches(&data));
    }
}
