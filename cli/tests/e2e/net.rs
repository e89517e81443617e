//! A fresh local chain per test and the `gpumesh` binary pointed at it (through `GPUMESH_*`
//! variables, so every command takes them whatever options it has).

use anchor_lang::prelude::Pubkey;
use assert_cmd::Command;
use gpumesh_client::chain::{Chain, ChainExt};
use gpumesh_client::ix::LeaseRef;
use gpumesh_client::program::state::Market;
use gpumesh_client::{Keypair, MarketAddresses, RpcChain, SignedReceipt, Signer, receipt, token};
use gpumesh_localnet::{LocalState, Localnet, LocalnetConfig};
use gpumesh_orchestrator::actions::Orchestrator;
use gpumesh_protocol::LeaseService;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::str::FromStr;

pub const ONE: u64 = 1_000_000;

/// Base units of the 6-decimal test mint as the CLI's JSON writes amounts.
pub fn tok(base: u64) -> Value {
    Value::String(gpumesh_client::amount::format(base, 6))
}

pub struct Net {
    _node: Localnet,
    pub url: String,
    /// The node's websocket (account subscriptions).
    pub ws_url: String,
    pub dir: tempfile::TempDir,
    pub chain: RpcChain,
    /// The local work token and the USD-like mint.
    pub mint: Pubkey,
    pub usd_mint: Pubkey,
    /// The market `market()` created.
    pub market: Option<Pubkey>,
}

impl Net {
    /// A fresh local chain with the local mints, as `gpumesh localnet` sets it up.
    pub fn start() -> Self {
        let node = Localnet::start(LocalnetConfig {
            slot_time_ms: 100,
            ..LocalnetConfig::on_free_ports().unwrap()
        })
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let url = node.rpc_url().to_string();
        let ws_url = node.ws_url().to_string();
        let mut chain = RpcChain::new(url.clone());
        let state = LocalState::open_or_create(&dir.path().join("state")).unwrap();
        state.ensure_mint(&mut chain, 6).unwrap();
        state.ensure_usd_mint(&mut chain).unwrap();
        Net {
            mint: state.mint(),
            usd_mint: state.usd_mint().unwrap(),
            _node: node,
            url,
            ws_url,
            dir,
            chain,
            market: None,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `gpumesh` with this chain, this test's state directory, a wallet and JSON output, all
    /// through the environment.
    pub fn gpumesh(&self, wallet: &Path) -> Command {
        let mut cmd = Command::cargo_bin("gpumesh").unwrap();
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("GPUMESH_URL", &self.url)
            .env("GPUMESH_OUTPUT", "json")
            .env("GPUMESH_LOCALNET_DIR", self.path("state"))
            .env("GPUMESH_KEYPAIR", wallet);
        cmd
    }

    pub fn run(&self, wallet: &Path, args: &[&str]) -> Output {
        self.gpumesh(wallet).args(args).output().unwrap()
    }

    /// Runs a command that must succeed; its JSON output.
    pub fn ok(&self, wallet: &Path, args: &[&str]) -> Value {
        let out = self.run(wallet, args);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            out.status.success(),
            "gpumesh {args:?} failed:\n{stdout}\n{stderr}"
        );
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
    }

    /// Runs a command that must fail with status 1; the JSON error object (on stdout).
    pub fn error(&self, wallet: &Path, args: &[&str]) -> Value {
        let out = self.run(wallet, args);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert_eq!(
            out.status.code(),
            Some(1),
            "gpumesh {args:?} should have failed with 1:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("{e}: the error is not one JSON object: {stdout}"));
        assert_eq!(v["error"]["exit_code"], 1, "{v}");
        v["error"].clone()
    }

    /// Runs a command that must fail; its error message.
    pub fn fails(&self, wallet: &Path, args: &[&str]) -> String {
        self.error(wallet, args)["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Runs a command in text mode that must fail with status 1; its stderr.
    pub fn fails_text(&self, wallet: &Path, args: &[&str]) -> String {
        let out = self
            .gpumesh(wallet)
            .env("GPUMESH_OUTPUT", "text")
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "gpumesh {args:?}");
        assert!(out.stdout.is_empty(), "errors go to stderr in text mode");
        String::from_utf8_lossy(&out.stderr).to_string()
    }

    /// A new wallet file, funded through `gpumesh airdrop`.
    pub fn wallet(&self, name: &str, sol: &str, tokens: &str) -> (PathBuf, Pubkey) {
        let path = self.path(name);
        let v = self.ok(&path, &["keys", "new", "--outfile", path.to_str().unwrap()]);
        let key = Pubkey::from_str(v["pubkey"].as_str().unwrap()).unwrap();
        self.ok(&path, &["airdrop", sol, "--tokens", tokens]);
        (path, key)
    }

    pub fn tokens(&self, owner: &Pubkey) -> u64 {
        self.chain
            .token_balance(&token::ata(owner, &self.mint))
            .unwrap()
    }

    pub fn addrs(&self) -> MarketAddresses {
        let market: Market = self
            .chain
            .fetch(&self.market.expect("create the market first"))
            .unwrap();
        MarketAddresses::of(&market)
    }

    pub fn vault(&self, key: &Pubkey) -> u64 {
        self.chain.token_balance(key).unwrap()
    }

    /// A market owned by `authority` with an orchestrator key this test holds, and `extra`
    /// lines in its TOML after the [params] table's defaults here. Later commands find it
    /// without --market (the local state remembers it).
    pub fn market_with(&mut self, authority: &Path, params: &str, extra: &str) -> Keypair {
        let orchestrator = Keypair::new();
        let config = self.path("market.toml");
        std::fs::write(
            &config,
            format!(
                "mint = \"{}\"\norchestrator = \"{}\"\n[params]\nprotocol_fee_bps = 250\nmin_stake_per_gpu = \"100\"\nbuyer_exit_window = 10\n{params}\n{extra}",
                self.mint,
                orchestrator.pubkey()
            ),
        )
        .unwrap();
        let v = self.ok(authority, &["market", "init", config.to_str().unwrap()]);
        assert_eq!(v["created"], true);
        assert!(v["signature"].as_str().is_some());
        self.market = Some(Pubkey::from_str(v["market"].as_str().unwrap()).unwrap());
        self.chain
            .airdrop(&orchestrator.pubkey(), 10 * 1_000_000_000)
            .unwrap();
        orchestrator
    }

    pub fn market(&mut self, authority: &Path) -> Keypair {
        self.market_with(authority, "", "")
    }

    /// The orchestrator's part, through its library: assign `gpus` of `worker` to `order`.
    pub fn assign(
        &mut self,
        orch: &Keypair,
        order: &Pubkey,
        worker: &Pubkey,
        gpus: u16,
    ) -> LeaseRef {
        Orchestrator::new(self.addrs(), orch.insecure_clone())
            .assign(&mut self.chain, order, worker, gpus)
            .unwrap()
            .0
    }

    /// The worker's part: a heartbeat at `served` seconds on its lease's chain, and a receipt.
    pub fn serve(&self, service: &mut LeaseService, node: &Keypair, served: u64) -> SignedReceipt {
        let now_ms = self.chain.unix_time().unwrap() as u64 * 1_000;
        service.heartbeat(now_ms, served, b"1 x h100").unwrap();
        service.receipt(&receipt::signing_key(node))
    }

    /// A node key file and `supplier`'s worker registered with it (1 x h100 in eu-west at
    /// 0.001 per GPU-second unless `args` say otherwise).
    pub fn register(&self, supplier: &Path, args: &[&str]) -> (Keypair, PathBuf) {
        let node = Keypair::new();
        let node_path = self.path(&format!("node-{}.json", node.pubkey()));
        gpumesh_client::cluster::write_keypair(&node, &node_path, false).unwrap();
        let mut all = vec![
            "worker",
            "register",
            "--class",
            "h100",
            "--region",
            "eu-west",
            "--price",
            "0.001/s",
            "--node-key",
            node_path.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        self.ok(supplier, &all);
        (node, node_path)
    }

    /// A job spec file and `buyer`'s order 1 x h100 in eu-west (extra `args` appended).
    pub fn order(&self, buyer: &Path, args: &[&str]) -> Value {
        let spec = self.path("job.toml");
        std::fs::write(&spec, "image = \"pytorch\"\n").unwrap();
        let mut all = vec![
            "order",
            "create",
            "--class",
            "h100",
            "--regions",
            "eu-west",
            "--max-price",
            "0.002/s",
            "--duration",
            "3600",
            "--spec",
            spec.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        self.ok(buyer, &all)
    }

    /// A lease's heartbeat chain on the worker's side.
    pub fn service(lease: &LeaseRef) -> LeaseService {
        LeaseService::new(
            receipt::key(&gpumesh_client::program::ID),
            receipt::key(&lease.lease),
            lease.nonce,
        )
    }
}
