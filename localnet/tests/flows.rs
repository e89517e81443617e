//! The same market flows on both `Chain` backends: the in-process runtime (`SvmChain`) and the
//! local node over JSON-RPC (`RpcChain` against surfpool). Each flow is one function over a
//! `Chain`; time passes by warping the in-process clock and by waiting on the node (its clock
//! follows wall time). The orchestrator acts through its library and the worker signs from its
//! heartbeat chain, as in every other flow.

use anchor_lang::prelude::Pubkey;
use gpumesh_client::chain::{Chain, ChainExt};
use gpumesh_client::ix;
use gpumesh_client::program::instructions::{CreateOrderArgs, RegisterWorkerArgs};
use gpumesh_client::program::state::{
    CloseReason, HardwareClaim, Market, MarketParams, Order, OrderMode, OrderRequirements,
    OrderTerms, Worker,
};
use gpumesh_client::{ChainError, GpumeshEvent, Keypair, RpcChain, Signer, filters, receipt};
use gpumesh_localnet::{Localnet, LocalnetConfig};
use gpumesh_orchestrator::actions::{ActionError, Orchestrator};
use gpumesh_protocol::LeaseService;
use gpumesh_svm::SvmChain;
use gpumesh_svm::fixtures::LocalMarket;

const ONE: u64 = 1_000_000;
const PRICE: u64 = 1_000; // base units per GPU-second
const H100: u8 = 9;
const EU_WEST: u8 = 5;

/// Lets `seconds` pass on a node whose clock follows wall time.
fn wait(chain: &mut RpcChain, seconds: i64) {
    let start = chain.unix_time().unwrap();
    while chain.unix_time().unwrap() < start + seconds {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
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
fn market_flow<C: Chain>(chain: &mut C, pass: impl Fn(&mut C, i64)) {
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
    let orchestrator = Orchestrator::new(a, orch.insecure_clone());
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
    // The orchestrator's library runs the program's own check first and sends nothing.
    let before = chain.lamports(&orch.pubkey()).unwrap();
    assert!(matches!(
        orchestrator.assign(chain, &order, &worker, 1),
        Err(ActionError::Refused(e)) if e.name() == "StakeBelowMinimum"
    ));
    assert_eq!(
        chain.lamports(&orch.pubkey()).unwrap(),
        before,
        "no fee paid"
    );

    chain
        .send(
            &[ix::stake(&a, &owner.pubkey(), &owner_token, 100 * ONE)],
            &owner,
            &[],
        )
        .unwrap();
    assert_eq!(chain.token_balance(&a.stake_vault).unwrap(), 100 * ONE);
    let (lease, _) = orchestrator.assign(chain, &order, &worker, 1).unwrap();
    // Listing finds the order and its lease the same way on both backends.
    let orders = chain
        .list_decoded::<Order>(&filters::orders_of(&a.market, &buyer.pubkey()))
        .unwrap();
    assert_eq!(
        orders.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
        vec![order]
    );
    let leases = chain
        .list_decoded::<gpumesh_client::program::state::Lease>(&filters::leases_of_order(&order))
        .unwrap();
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].0, lease.lease);

    pass(chain, 3);
    let mut service = LeaseService::new(
        receipt::key(&gpumesh_client::program::ID),
        receipt::key(&lease.lease),
        lease.nonce,
    );
    let now_ms = chain.unix_time().unwrap() as u64 * 1_000;
    service.heartbeat(now_ms, 2, b"1 x h100").unwrap();
    let signed = service.receipt(&receipt::signing_key(&node));
    let settled = orchestrator
        .settle(chain, &[(lease, signed.clone())])
        .unwrap();
    assert!(
        settled
            .iter()
            .flat_map(|o| &o.events)
            .any(|e| matches!(e, GpumeshEvent::ReceiptSettled(r) if r.seconds_after == 2 && r.chain_head == service.head()))
    );
    let paid = 2 * PRICE;
    let fee = paid * 250 / 10_000;
    let burned = fee * 2_000 / 10_000; // the market's default: 20% of fees burned
    assert_eq!(
        chain.token_balance(&a.treasury_vault).unwrap(),
        fee - burned
    );
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
    let replay = orchestrator.settle(chain, &[(lease, signed)]).unwrap_err();
    assert!(
        matches!(&replay, ActionError::Chain(e) if e.gpumesh_error().map(|e| e.name()) == Some("StaleReceipt".to_string())),
        "{replay}"
    );
    assert_eq!(chain.token_balance(&a.treasury_vault).unwrap(), before);

    orchestrator
        .end_lease(chain, &lease, None, CloseReason::Completed)
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
    assert_eq!(market.total_burned, burned);
    assert_eq!(
        total(chain, &m, &owners) + burned,
        minted,
        "tokens are conserved (the burn left the supply)"
    );
}

#[test]
fn market_flow_in_process() {
    market_flow(&mut SvmChain::new(), |c, s| c.warp(s).unwrap());
}

#[test]
fn market_flow_over_rpc_on_the_local_chain() {
    let node = Localnet::start(LocalnetConfig {
        slot_time_ms: 100,
        ..LocalnetConfig::on_free_ports().unwrap()
    })
    .unwrap();
    let mut chain = RpcChain::new(node.rpc_url());
    market_flow(&mut chain, wait);

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
}

/// The RPC backend from async code: a service's tokio tasks call it directly (the client runs
/// each request through `block_in_place` on a multi-threaded runtime).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rpc_chain_works_from_async_tasks() {
    let node = Localnet::start(LocalnetConfig::on_free_ports().unwrap()).unwrap();
    let chain = std::sync::Arc::new(RpcChain::new(node.rpc_url()));
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let chain = chain.clone();
            tokio::spawn(async move {
                let now = chain.unix_time().unwrap();
                let program = chain.account(&gpumesh_client::program::ID).unwrap();
                let markets = chain.list_decoded::<Market>(&[]).unwrap();
                (now, program.is_some(), markets.len())
            })
        })
        .collect();
    for t in tasks {
        let (now, program, markets) = t.await.unwrap();
        assert!(now > 0 && program);
        assert_eq!(markets, 0);
    }
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
