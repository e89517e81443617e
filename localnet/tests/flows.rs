//! The same market flows on both `Chain` backends: the in-process runtime (`SvmChain`) and the
//! local node over JSON-RPC (`RpcChain` against surfpool). Each flow is one function over
//! `&mut dyn Chain`; time passes by warping where the backend can and by waiting where it cannot
//! (the node's clock follows wall time).

use anchor_lang::prelude::Pubkey;
use gpumesh_client::chain::{Chain, ChainExt};
use gpumesh_client::ix::{self, LeaseRef};
use gpumesh_client::local::LocalMarket;
use gpumesh_client::program::instructions::{CreateOrderArgs, RegisterWorkerArgs};
use gpumesh_client::program::state::{
    CloseReason, HardwareClaim, Lease, Market, MarketParams, Order, OrderMode, OrderRequirements,
    OrderTerms, Worker,
};
use gpumesh_client::{
    ChainError, GpumeshEvent, Keypair, RpcChain, SignedReceipt, Signer, SvmChain,
};
use gpumesh_localnet::{Localnet, LocalnetConfig};

const ONE: u64 = 1_000_000;
const PRICE: u64 = 1_000; // base units per GPU-second
const H100: u8 = 9;
const EU_WEST: u8 = 5;

/// Lets `seconds` pass on the chain's clock.
fn pass(chain: &mut dyn Chain, seconds: i64) {
    match chain.warp(seconds) {
        Ok(()) => {}
        Err(ChainError::Unsupported(_)) => {
            let start = chain.unix_time().unwrap();
            while chain.unix_time().unwrap() < start + seconds {
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        }
        Err(e) => panic!("{e}"),
    }
}

fn head(n: u64) -> [u8; 32] {
    *blake3::hash(&n.to_le_bytes()).as_bytes()
}

/// Every token account's balance, summed: nothing is created or lost.
fn total(chain: &dyn Chain, m: &LocalMarket, owners: &[Pubkey]) -> u64 {
    let a = &m.addrs;
    let vaults = [
        a.stake_vault,
        a.escrow_vault,
        a.treasury_vault,
        a.rewards_vault,
    ]
    .iter()
    .map(|v| chain.token_balance(v).unwrap())
    .sum::<u64>();
    vaults
        + owners
            .iter()
            .map(|o| m.balance_of(chain, o).unwrap())
            .sum::<u64>()
}

/// register → stake → order → (refused assign: stake too low) → assign → settle a signed
/// receipt → (refused replay) → close → claim → cancel with refund; balances after each step.
fn market_flow(chain: &mut dyn Chain) {
    let m = LocalMarket::create(
        chain,
        MarketParams {
            protocol_fee_bps: 250,
            min_stake_per_gpu: 100 * ONE,
            ..MarketParams::default()
        },
        6,
    )
    .unwrap();
    let orch = m.orchestrator.insecure_clone();
    let a = m.addrs;
    let buyer = m.funded_user(chain, 1_000 * ONE).unwrap();
    let owner = m.funded_user(chain, 1_000 * ONE).unwrap();
    let owners = [buyer.pubkey(), owner.pubkey()];
    let minted = 2_000 * ONE;
    let node = Keypair::new();

    chain
        .send(
            &[ix::register_worker(
                &a,
                &owner.pubkey(),
                RegisterWorkerArgs {
                    node_key: node.pubkey(),
                    hardware: HardwareClaim {
                        gpu_class: H100,
                        gpu_count: 1,
                        vram_mib: 81_920,
                        bandwidth_gbps: 3_350,
                        region: EU_WEST,
                    },
                    price_per_gpu_second: PRICE,
                },
            )],
            &owner,
            &[],
        )
        .unwrap();
    let worker = a.worker(&owner.pubkey());
    let owner_token = m.token_account(&owner.pubkey());
    let buyer_token = m.token_account(&buyer.pubkey());

    let order = a.order(&buyer.pubkey(), 1);
    let created = chain
        .send(
            &[ix::create_order(
                &a,
                &buyer.pubkey(),
                &buyer_token,
                CreateOrderArgs {
                    order_id: 1,
                    terms: OrderTerms {
                        requirements: OrderRequirements {
                            gpu_class: H100,
                            gpu_count: 1,
                            min_vram_mib: 40_000,
                            min_bandwidth_gbps: 1_000,
                            regions: 1 << EU_WEST,
                        },
                        max_price_per_gpu_second: 2 * PRICE,
                        duration: 3_600,
                        mode: OrderMode::Spot,
                        job_spec_hash: *blake3::hash(b"job").as_bytes(),
                    },
                    deposit: 50 * ONE,
                },
            )],
            &buyer,
            &[],
        )
        .unwrap();
    assert!(
        created
            .events
            .iter()
            .any(|e| matches!(e, GpumeshEvent::OrderCreated(_))),
        "events are read back from the transaction's logs: {:?}",
        created.logs
    );
    assert_eq!(m.balance_of(chain, &buyer.pubkey()).unwrap(), 950 * ONE);
    assert_eq!(chain.token_balance(&a.escrow_vault).unwrap(), 50 * ONE);

    // The program refuses an unstaked worker; the error decodes to its name and nothing moves.
    let refused = chain
        .send(
            &[ix::assign(&a, &orch.pubkey(), &order, &worker, 1)],
            &orch,
            &[],
        )
        .unwrap_err();
    match &refused {
        ChainError::Program { name, message, .. } => {
            assert_eq!(name, "StakeBelowMinimum", "{refused}");
            assert!(message.contains("stake more"), "{message}");
        }
        other => panic!("expected a program error, got {other}"),
    }
    assert!(
        chain
            .account(&gpumesh_client::pda::lease(&order, &worker).0)
            .unwrap()
            .is_none()
    );

    chain
        .send(
            &[ix::stake(&a, &owner.pubkey(), &owner_token, 100 * ONE)],
            &owner,
            &[],
        )
        .unwrap();
    assert_eq!(chain.token_balance(&a.stake_vault).unwrap(), 100 * ONE);
    chain
        .send(
            &[ix::assign(&a, &orch.pubkey(), &order, &worker, 1)],
            &orch,
            &[],
        )
        .unwrap();
    let lease = LeaseRef::of(
        &chain
            .fetch::<Lease>(&gpumesh_client::pda::lease(&order, &worker).0)
            .unwrap(),
    );

    pass(chain, 3);
    let receipt = SignedReceipt::sign(&node, lease.lease, lease.nonce, 2, head(2));
    let settled = chain
        .send(
            &ix::settle(&a, &orch.pubkey(), &[(lease, receipt.clone())]),
            &orch,
            &[],
        )
        .unwrap();
    assert!(
        settled
            .events
            .iter()
            .any(|e| matches!(e, GpumeshEvent::ReceiptSettled(r) if r.seconds_after == 2))
    );
    let paid = 2 * PRICE;
    let fee = paid * 250 / 10_000;
    assert_eq!(chain.token_balance(&a.treasury_vault).unwrap(), fee);
    assert_eq!(
        chain.fetch::<Order>(&order).unwrap().escrow_remaining,
        50 * ONE - paid
    );
    assert_eq!(
        chain.fetch::<Worker>(&worker).unwrap().earnings_claimable,
        paid - fee
    );

    // A replayed receipt is refused and changes nothing.
    let before = chain.token_balance(&a.treasury_vault).unwrap();
    let replay = chain
        .send(
            &ix::settle(&a, &orch.pubkey(), &[(lease, receipt)]),
            &orch,
            &[],
        )
        .unwrap_err();
    assert_eq!(
        replay.gpumesh_error().map(|e| e.name()),
        Some("StaleReceipt".to_string())
    );
    assert_eq!(chain.token_balance(&a.treasury_vault).unwrap(), before);

    chain
        .send(
            &[ix::close_lease(
                &a,
                &orch.pubkey(),
                &lease,
                CloseReason::Completed,
            )],
            &orch,
            &[],
        )
        .unwrap();
    chain
        .send(
            &[ix::claim_earnings(&a, &owner.pubkey(), &owner_token)],
            &owner,
            &[],
        )
        .unwrap();
    assert_eq!(
        m.balance_of(chain, &owner.pubkey()).unwrap(),
        900 * ONE + paid - fee
    );
    chain
        .send(
            &[ix::cancel_order(&a, &buyer.pubkey(), &buyer_token, &order)],
            &buyer,
            &[],
        )
        .unwrap();
    assert!(chain.account(&order).unwrap().is_none());
    assert_eq!(
        m.balance_of(chain, &buyer.pubkey()).unwrap(),
        1_000 * ONE - paid
    );

    let market: Market = chain.fetch(&a.market).unwrap();
    assert_eq!(market.total_escrow, 0);
    assert_eq!(market.total_claimable, 0);
    assert_eq!(total(chain, &m, &owners), minted, "tokens are conserved");
}

#[test]
fn market_flow_in_process() {
    market_flow(&mut SvmChain::new());
}

#[test]
fn market_flow_over_rpc_on_the_local_chain() {
    let node = Localnet::start(LocalnetConfig {
        slot_time_ms: 100,
        ..LocalnetConfig::on_free_ports().unwrap()
    })
    .unwrap();
    let mut chain = RpcChain::new(node.rpc_url());
    market_flow(&mut chain);

    // The node's clock follows wall time.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let chain_now = chain.unix_time().unwrap();
    assert!(
        (chain_now - now).abs() <= 2,
        "chain {chain_now}, wall {now}"
    );
    // Only test backends move the clock.
    assert!(matches!(chain.warp(10), Err(ChainError::Unsupported(_))));
}

#[test]
fn an_unreachable_endpoint_says_which_url_and_what_to_do() {
    let port = gpumesh_localnet::free_port().unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let chain = RpcChain::new(url.clone());
    let err = chain.account(&Pubkey::new_unique()).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ChainError::Rpc(_)), "{text}");
    assert!(
        text.contains(&url) && text.contains("gpumesh localnet"),
        "{text}"
    );
}
