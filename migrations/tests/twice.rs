//! The migration against a real local chain: the first run creates the market, the second
//! reports it and sends nothing.

use assert_cmd::Command;
use gpumesh_client::chain::{Chain, ChainExt};
use gpumesh_client::program::state::Market;
use gpumesh_client::{Keypair, MarketAddresses, RpcChain, Signer, cluster};
use gpumesh_localnet::{LocalState, Localnet, LocalnetConfig};

#[test]
fn running_the_migration_twice_creates_once_and_changes_nothing() {
    let node = Localnet::start(LocalnetConfig {
        slot_time_ms: 100,
        ..LocalnetConfig::on_free_ports().unwrap()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut chain = RpcChain::new(node.rpc_url());
    let state = LocalState::open_or_create(&dir.path().join("state")).unwrap();
    state.ensure_mint(&mut chain, 6).unwrap();
    let authority = Keypair::new();
    chain.airdrop(&authority.pubkey(), 10_000_000_000).unwrap();
    let key_path = dir.path().join("authority.json");
    cluster::write_keypair(&authority, &key_path, false).unwrap();
    let config = dir.path().join("market.toml");
    std::fs::write(
        &config,
        format!(
            "mint = \"{}\"\norchestrator = \"{}\"\n",
            state.mint(),
            Keypair::new().pubkey()
        ),
    )
    .unwrap();
    let migrate = || {
        Command::cargo_bin("gpumesh-migrate")
            .unwrap()
            .args(["--url", node.rpc_url(), "--keypair"])
            .arg(&key_path)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap()
    };
    let first = migrate();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(String::from_utf8_lossy(&first.stdout).contains("created market"));
    let market = MarketAddresses::new(state.mint(), authority.pubkey()).market;
    let lamports = chain.lamports(&authority.pubkey()).unwrap();
    let before: Market = chain.fetch(&market).unwrap();

    let second = migrate();
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert!(String::from_utf8_lossy(&second.stdout).contains("nothing sent"));
    assert_eq!(
        chain.lamports(&authority.pubkey()).unwrap(),
        lamports,
        "no fee paid"
    );
    let after: Market = chain.fetch(&market).unwrap();
    assert_eq!(before.params, after.params);
    assert!(chain.account(&market).unwrap().is_some());
}
