//! `gpumesh up`: the whole market on this machine, in one process, until Ctrl-C or SIGTERM.
//!
//! In order: the container engine is checked (and the hello example's image built if it is
//! missing), the local chain starts (as `gpumesh localnet` runs it), the wallets in the state
//! directory are created where missing and funded, a market on the local work token is created
//! with its own orchestrator key, N CPU workers are registered and staked (each with its own
//! supplier wallet, node key and region), then the orchestrator service (SQLite store in the
//! state directory) and the N worker daemons run as tasks of this process. When every worker is
//! connected it prints the URLs and the commands a buyer types next, and records the service's
//! URL in `DIR/up.json` so that `gpumesh order …` finds it without `--orchestrator`.
//!
//! Stopping (Ctrl-C or SIGTERM) stops the daemons and the service (which settles what is due),
//! removes the containers of this run's workers, and stops the chain: no process and no
//! container is left. One `gpumesh up` per state directory: a second one is refused while the
//! first runs (a lock on `DIR/up.lock`); a later one reuses the keys and starts everything else
//! fresh (the chain keeps nothing across a restart).

use crate::context::Env;
use crate::error::CliError;
use gpumesh_client::program::instructions::RegisterWorkerArgs;
use gpumesh_client::program::state::HardwareClaim;
use gpumesh_client::{Chain, Keypair, MarketAddresses, RpcChain, Signer, amount, cluster, ix};
use gpumesh_localnet::setup::{DEFAULT_DECIMALS, LAMPORTS_PER_SOL};
use gpumesh_localnet::{LocalState, Localnet, LocalnetConfig};
use gpumesh_migrations::deploy::{self, MarketConfig};
use gpumesh_protocol::{GpuClass, Region};
use serde_json::{Value, json};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

/// The workers' regions, in order (a run with more workers than these starts again).
const REGIONS: &[&str] = &[
    "eu-west",
    "us-east",
    "ap-southeast",
    "eu-central",
    "us-west",
];
/// Every worker asks 3.6 work tokens per GPU-hour: 1,000 base units per GPU-second.
const PRICE_PER_SECOND: u64 = 1_000;
/// What the printed `order create` bids.
const PRICE_TEXT: &str = "3.6/h";
/// Stake per worker (the market's minimum per GPU), whole tokens.
const STAKE: u64 = 100;
/// Work tokens the buyer and each supplier get.
const FUND_TOKENS: u64 = 1_000;
/// SOL each wallet gets.
const FUND_SOL: u64 = 10;
/// The service's API port is this far above the JSON-RPC port (8899 → 8910).
const API_PORT_OFFSET: u16 = 11;
/// How long the workers get to connect before `up` gives up.
const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// The file that records a running `up` (read by `gpumesh order …`).
pub const STATE_FILE: &str = "up.json";

#[derive(clap::Args)]
pub struct UpArgs {
    /// Worker daemons to start (CPU workers, 1 GPU slot each; 1 to 16).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=16))]
    workers: u16,
    /// The state directory: the mints' keys (as `gpumesh localnet` keeps them), the wallets
    /// `up` creates (operator, orchestrator, buyer, one supplier and node key per worker), the
    /// orchestrator's SQLite store, the workers' state and `up.log`. Later commands find the
    /// market and the service through it (`--localnet-dir`, default the same).
    #[arg(
        long,
        env = "GPUMESH_LOCALNET_DIR",
        default_value = "~/.config/gpumesh/localnet",
        value_name = "DIR"
    )]
    dir: PathBuf,
    /// JSON-RPC port; the websocket takes the next port and the service's API the port 11
    /// above (8899, 8900 and 8910 by default).
    #[arg(long, default_value_t = 8899, value_parser = clap::value_parser!(u16).range(1..=65_000))]
    port: u16,
}

/// What `up` writes where the user reads it: its own lines go to the terminal's stdout even
/// while stdout is pointed at the log file (the program's host build prints its logs there).
struct Console {
    out: Box<dyn Write + Send>,
    json: bool,
}

impl Console {
    /// A progress line: stdout for people, stderr with JSON output (stdout keeps one document).
    fn step(&mut self, text: &str) {
        if self.json {
            eprintln!("{text}");
        } else {
            let _ = writeln!(self.out, "{text}");
            let _ = self.out.flush();
        }
    }

    fn document(&mut self, text: &str) {
        let _ = writeln!(self.out, "{text}");
        let _ = self.out.flush();
    }
}

/// While it lives, stdout is `log` (the program's host build prints its logs to stdout); its
/// writer goes to the terminal's stdout. Dropping it points stdout back, so that an error
/// printed after `up` (JSON output prints errors on stdout) reaches the terminal.
struct StdoutToLog {
    #[cfg(unix)]
    saved: Option<std::os::fd::OwnedFd>,
}

impl StdoutToLog {
    fn new(log: &File) -> (Self, Box<dyn Write + Send>) {
        let _ = std::io::stdout().flush();
        #[cfg(unix)]
        {
            use std::os::fd::AsFd;
            let saved = std::io::stdout().as_fd().try_clone_to_owned().ok();
            let writer = saved.as_ref().and_then(|s| s.try_clone().ok());
            if let (Some(saved), Some(writer)) = (saved, writer)
                && rustix::stdio::dup2_stdout(log.as_fd()).is_ok()
            {
                return (Self { saved: Some(saved) }, Box::new(File::from(writer)));
            }
            (Self { saved: None }, Box::new(std::io::stdout()))
        }
        #[cfg(not(unix))]
        {
            let _ = log;
            (Self {}, Box::new(std::io::stdout()))
        }
    }
}

impl Drop for StdoutToLog {
    fn drop(&mut self) {
        let _ = std::io::stdout().flush();
        #[cfg(unix)]
        if let Some(saved) = &self.saved {
            let _ = rustix::stdio::dup2_stdout(saved);
        }
    }
}

/// The exclusive lock on `DIR/up.lock`, held while `up` runs (released by the OS when it exits).
struct DirLock {
    _file: File,
}

fn lock_dir(dir: &Path) -> Result<DirLock, CliError> {
    let path = dir.join("up.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| CliError::Input(format!("cannot open {}: {e}", path.display())))?;
    #[cfg(unix)]
    {
        use rustix::fs::{FlockOperation, flock};
        if flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
            let running = std::fs::read_to_string(dir.join(STATE_FILE))
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok());
            let what = match &running {
                Some(v) => format!(
                    " (pid {}, JSON-RPC {}, API {})",
                    v["pid"],
                    v["rpc_url"].as_str().unwrap_or("?"),
                    v["api_url"].as_str().unwrap_or("?")
                ),
                None => String::new(),
            };
            return Err(CliError::Input(format!(
                "gpumesh up is already running on {}{what}: use that one (Ctrl-C in its terminal stops it), or start another with --dir OTHER_DIR --port OTHER_PORT",
                dir.display()
            )));
        }
    }
    Ok(DirLock { _file: file })
}

/// A keypair file in the state directory, created on first use.
fn key_in(path: &Path) -> Result<Keypair, CliError> {
    if !path.exists() {
        cluster::write_keypair(&Keypair::new(), path, false)?;
    }
    Ok(cluster::read_keypair(path)?)
}

fn mkdir(path: &Path) -> Result<(), CliError> {
    std::fs::create_dir_all(path)
        .map_err(|e| CliError::Input(format!("cannot create {}: {e}", path.display())))
}

/// Removes what an earlier run left that only made sense on its chain (the chain starts empty).
fn clear_run_state(dir: &Path, workers: u16) -> Result<(), CliError> {
    let remove = |p: PathBuf| -> Result<(), CliError> {
        let gone = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        match gone {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(CliError::Input(format!(
                "cannot remove {} from an earlier run: {e}",
                p.display()
            ))),
            _ => Ok(()),
        }
    };
    for name in [
        "orchestrator.db",
        "orchestrator.db-wal",
        "orchestrator.db-shm",
        STATE_FILE,
    ] {
        remove(dir.join(name))?;
    }
    for i in 1..=workers {
        let w = dir.join(format!("worker-{i}"));
        for name in ["state.db", "state.db-wal", "state.db-shm", "work"] {
            remove(w.join(name))?;
        }
    }
    Ok(())
}

/// The port checks `up` makes before it starts anything, with what to do.
fn check_ports(ports: &[(u16, &str)]) -> Result<(), CliError> {
    for (port, what) in ports {
        if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", *port)) {
            return Err(CliError::Input(format!(
                "port {port} ({what}) on 127.0.0.1 is in use ({e}): is another `gpumesh up` or `gpumesh localnet` running? Stop it, or pick other ports with --port (JSON-RPC; the websocket takes the next port, the API the port {API_PORT_OFFSET} above)"
            )));
        }
    }
    Ok(())
}

/// One worker of this run.
struct WorkerPlan {
    n: u16,
    owner: Keypair,
    owner_path: PathBuf,
    node_path: PathBuf,
    config_path: PathBuf,
    region: Region,
    worker: gpumesh_client::Pubkey,
}

fn elapsed(start: Instant) -> String {
    format!("{:.1} s", start.elapsed().as_secs_f64())
}

pub fn run(env: &Env, args: &UpArgs) -> Result<(), CliError> {
    let start = Instant::now();
    let dir = cluster::expand_home(&args.dir);
    mkdir(&dir)?;
    let _lock = lock_dir(&dir)?;
    let rpc_port = args.port;
    let ws_port = rpc_port + 1;
    let api_port = rpc_port + API_PORT_OFFSET;
    check_ports(&[
        (rpc_port, "JSON-RPC"),
        (ws_port, "websocket"),
        (api_port, "the orchestrator's API"),
    ])?;
    clear_run_state(&dir, args.workers)?;

    let log_path = dir.join("up.log");
    let log = File::create(&log_path)
        .map_err(|e| CliError::Input(format!("cannot create {}: {e}", log_path.display())))?;
    let (_stdout, out) = StdoutToLog::new(&log);
    let mut console = Console {
        out,
        json: env.json(),
    };
    init_tracing_to(&log)?;

    // The engine first: without it no job can run, and saying so takes a second.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Input(format!("cannot start the runtime: {e}")))?;
    let docker = runtime.block_on(async {
        let docker = gpumesh_worker::examples::engine(None).await.map_err(|e| {
            CliError::Input(format!(
                "no container engine: {e}. The workers run jobs in containers through the Docker Engine API: start Podman's socket with `eval \"$(scripts/services.sh)\"` from the repository (it prints DOCKER_HOST), or start Docker, then run `gpumesh up` again"
            ))
        })?;
        let had = docker
            .inspect_image(gpumesh_worker::examples::HELLO_IMAGE)
            .await
            .is_ok();
        gpumesh_worker::examples::ensure_hello(&docker)
            .await
            .map_err(|e| CliError::Input(format!("building the hello example's image: {e}")))?;
        gpumesh_worker::examples::ensure_resume(&docker)
            .await
            .map_err(|e| CliError::Input(format!("building the resume example's image: {e}")))?;
        Ok::<_, CliError>((docker, had))
    });
    let (docker, had_image) = docker?;
    console.step(&format!(
        "container engine ok; image {} {} ({})",
        gpumesh_worker::examples::HELLO_IMAGE,
        if had_image { "present" } else { "built" },
        elapsed(start)
    ));

    // The chain, its mints and the wallets.
    let state = LocalState::open_or_create(&dir)?;
    let node = Localnet::start(LocalnetConfig {
        bind_host: "127.0.0.1".into(),
        rpc_port,
        ws_port,
        slot_time_ms: gpumesh_localnet::DEFAULT_SLOT_TIME_MS,
        verbose: false,
    })?;
    let mut chain = RpcChain::new(node.rpc_url());
    state.ensure_mint(&mut chain, DEFAULT_DECIMALS)?;
    state.ensure_usd_mint(&mut chain)?;
    console.step(&format!(
        "local chain on {} ({})",
        node.rpc_url(),
        elapsed(start)
    ));

    let operator_path = dir.join("operator.json");
    let orchestrator_path = dir.join("orchestrator.json");
    let buyer_path = dir.join("buyer.json");
    let operator = key_in(&operator_path)?;
    let orchestrator = key_in(&orchestrator_path)?;
    let buyer = key_in(&buyer_path)?;
    let mut plans = Vec::new();
    for n in 1..=args.workers {
        let wdir = dir.join(format!("worker-{n}"));
        mkdir(&wdir)?;
        let owner_path = wdir.join("owner.json");
        let node_path = wdir.join("node.json");
        let owner = key_in(&owner_path)?;
        key_in(&node_path)?;
        let name = REGIONS[usize::from(n - 1) % REGIONS.len()];
        let region = Region::from_str(name).map_err(|e| CliError::Input(e.to_string()))?;
        plans.push(WorkerPlan {
            n,
            owner,
            owner_path,
            node_path,
            config_path: wdir.join("worker.toml"),
            region,
            worker: gpumesh_client::Pubkey::default(),
        });
    }
    let one = 10u64.pow(u32::from(DEFAULT_DECIMALS));
    for who in [&operator, &orchestrator, &buyer]
        .into_iter()
        .chain(plans.iter().map(|p| &p.owner))
    {
        chain.airdrop(&who.pubkey(), FUND_SOL * LAMPORTS_PER_SOL)?;
    }
    for who in std::iter::once(&buyer).chain(plans.iter().map(|p| &p.owner)) {
        state.mint_to(&mut chain, &who.pubkey(), FUND_TOKENS * one)?;
    }

    // The market: the work token, this run's orchestrator key, a floor CPU workers meet.
    let market_toml = format!(
        "mint = \"{}\"\norchestrator = \"{}\"\n[params]\nmin_stake_per_gpu = \"{STAKE}\"\nbuyer_exit_window = 60\nmin_worker_vram_mib = 256\nmin_worker_bandwidth_gbps = 1\n",
        state.mint(),
        orchestrator.pubkey()
    );
    let market_path = dir.join("market.toml");
    std::fs::write(&market_path, &market_toml)
        .map_err(|e| CliError::Input(format!("cannot write {}: {e}", market_path.display())))?;
    let config = MarketConfig::from_toml(&market_toml)?;
    let deployed = deploy::init_market_if_missing(&mut chain, &operator, &config)?;
    let addrs: MarketAddresses = match &deployed {
        deploy::Deployed::Created { addrs, .. } | deploy::Deployed::Existing { addrs, .. } => {
            *addrs
        }
    };
    state.remember_market(&addrs.market)?;
    console.step(&format!(
        "market {} (work token {}) ({})",
        addrs.market,
        state.mint(),
        elapsed(start)
    ));

    // The suppliers: register and stake, one transaction each.
    for p in &mut plans {
        let node_key = cluster::read_keypair(&p.node_path)?.pubkey();
        let register = ix::register_worker(
            &addrs,
            &p.owner.pubkey(),
            RegisterWorkerArgs {
                node_key,
                hardware: HardwareClaim {
                    gpu_class: GpuClass::Cpu.code(),
                    gpu_count: 1,
                    vram_mib: 256,
                    bandwidth_gbps: 1,
                    region: p.region.code(),
                },
                price_per_gpu_second: PRICE_PER_SECOND,
            },
        );
        let token = gpumesh_client::token::ata(&p.owner.pubkey(), &addrs.mint);
        let stake = ix::stake(&addrs, &p.owner.pubkey(), &token, STAKE * one);
        chain.send(&[register, stake], &p.owner, &[])?;
        p.worker = addrs.worker(&p.owner.pubkey());
        let wdir = dir.join(format!("worker-{}", p.n));
        let worker_toml = format!(
            "# Written by `gpumesh up`: a CPU worker for this machine's test market.\nstate = \"{}\"\nwork_dir = \"{}\"\n[hardware]\nbackend = \"cpu\"\n[floor]\n# The market's floor is 1 GB/s; a CPU's measurement dips under it on a busy machine.\nmin_vram_mib = 256\nmin_bandwidth_gbps = 0.25\n[claim]\nclass = \"cpu\"\ngpus = 1\nvram_mib = 256\nbandwidth_gbps = 1\n[runtime]\npull_images = false\n[results]\nstore = \"local\"\ndir = \"{}\"\n",
            wdir.join("state.db").display(),
            wdir.join("work").display(),
            // One store for all of this machine's workers, as machines would share an object
            // store: a job that checkpoints resumes on another worker from it.
            dir.join("results").display(),
        );
        std::fs::write(&p.config_path, worker_toml).map_err(|e| {
            CliError::Input(format!("cannot write {}: {e}", p.config_path.display()))
        })?;
    }
    console.step(&format!(
        "{} CPU worker(s) registered and staked ({})",
        plans.len(),
        elapsed(start)
    ));

    // The orchestrator service's configuration, kept beside the store. A local network's
    // fees cost nothing real: settle what is owed every second (no fee budget), so the console
    // and `order watch` show the money moving.
    let api_url = format!("http://127.0.0.1:{api_port}");
    let service_toml = format!(
        "rpc_url = \"{}\"\nws_url = \"{}\"\nmarket = \"{}\"\nkeypair = \"{}\"\nlisten = \"127.0.0.1:{api_port}\"\nstore = \"sqlite://{}?mode=rwc\"\nplacement_every_ms = 200\nheartbeat_ms = 500\nreceipt_every_s = 1\nsettle_every_s = 1\nfee_budget_lamports_per_gpu_hour = 0\nchallenge_target_ms = 0\nchallenge_rows = 8\n",
        node.rpc_url(),
        node.ws_url(),
        addrs.market,
        orchestrator_path.display(),
        dir.join("orchestrator.db").display(),
    );
    let service_path = dir.join("orchestrator.toml");
    std::fs::write(&service_path, service_toml)
        .map_err(|e| CliError::Input(format!("cannot write {}: {e}", service_path.display())))?;
    let service_config = gpumesh_orchestrator::service::Config::read(&service_path)
        .map_err(|e| CliError::Input(e.to_string()))?;
    let mut daemon_configs = Vec::new();
    for p in &plans {
        let file = gpumesh_worker::daemon::config::FileConfig::read(&p.config_path)
            .map_err(|e| CliError::Input(e.to_string()))?;
        let config = gpumesh_worker::daemon::config::Config::resolve(
            file,
            gpumesh_worker::daemon::config::Overrides {
                orchestrator: Some(format!("ws://127.0.0.1:{api_port}/v1/worker")),
                node_key: Some(p.node_path.clone()),
                worker: Some(p.worker.to_string()),
                program_id: Some(gpumesh_client::program::ID.to_string()),
            },
        )
        .map_err(|e| CliError::Input(e.to_string()))?;
        daemon_configs.push(config);
    }

    let outcome = runtime.block_on(serve(service_config, daemon_configs, &api_url, plans.len()));
    let ready_after = start.elapsed();
    let mut stopped = outcome?;

    // Ready: what to type next.
    let record = json!({
        "pid": std::process::id(),
        "rpc_url": node.rpc_url(),
        "ws_url": node.ws_url(),
        "api_url": api_url,
        "feed_url": format!("ws://127.0.0.1:{api_port}/v1/feed"),
        "market": addrs.market.to_string(),
        "mint": state.mint().to_string(),
        "decimals": DEFAULT_DECIMALS,
        "program_id": gpumesh_client::program::ID.to_string(),
        "state_dir": dir.display().to_string(),
        "log": log_path.display().to_string(),
        "buyer": buyer.pubkey().to_string(),
        "buyer_keypair": buyer_path.display().to_string(),
        "buyer_tokens": amount::format(FUND_TOKENS * one, DEFAULT_DECIMALS),
        "operator_keypair": operator_path.display().to_string(),
        "orchestrator": orchestrator.pubkey().to_string(),
        "workers": plans.iter().map(|p| json!({
            "worker": p.worker.to_string(),
            "owner": p.owner.pubkey().to_string(),
            "owner_keypair": p.owner_path.display().to_string(),
            "node_keypair": p.node_path.display().to_string(),
            "class": "cpu",
            "region": p.region.name(),
            "price_per_gpu_second": amount::format(PRICE_PER_SECOND, DEFAULT_DECIMALS),
        })).collect::<Vec<_>>(),
        "ready_after_s": (ready_after.as_secs_f64() * 10.0).round() / 10.0,
        "console": Value::Null,
    });
    let state_path = dir.join(STATE_FILE);
    let written = serde_json::to_string_pretty(&record)
        .map_err(|e| e.to_string())
        .and_then(|t| std::fs::write(&state_path, t).map_err(|e| e.to_string()));
    if let Err(e) = written {
        stopped.stop_now(&runtime);
        return Err(CliError::Input(format!(
            "cannot write {}: {e}",
            state_path.display()
        )));
    }
    let regions: Vec<&str> = plans.iter().map(|p| p.region.name()).collect();
    let mut uniq = regions.clone();
    uniq.dedup();
    let default_dir = LocalState::default_dir().ok() == Some(dir.clone());
    let mut exports = vec![format!("GPUMESH_KEYPAIR={}", buyer_path.display())];
    if rpc_port != 8899 {
        exports.push(format!("GPUMESH_URL={}", node.rpc_url()));
    }
    if !default_dir {
        exports.push(format!("GPUMESH_LOCALNET_DIR={}", dir.display()));
    }
    if env.json() {
        let mut doc = record.clone();
        if let Value::Object(map) = &mut doc {
            map.insert("ready".into(), json!(true));
            map.insert("env".into(), json!(exports));
        }
        console.document(&env.output.render(&doc));
    } else {
        let workers_text = plans
            .iter()
            .map(|p| format!("{} ({})", p.region.name(), p.worker))
            .collect::<Vec<_>>()
            .join("\n               ");
        let text = format!(
            "\nready in {:.1} s\n  JSON-RPC     {} (websocket {})\n  service API  {api_url} (/v1/market, /v1/workers, /v1/orders/<address>, /v1/openapi.json; live feed ws://127.0.0.1:{api_port}/v1/feed; no web console yet)\n  market       {} (work token {}, {DEFAULT_DECIMALS} decimals)\n  workers      {} CPU worker(s) at {PRICE_TEXT} each:\n               {workers_text}\n  buyer        {} ({} work tokens), wallet {}\n  state        {} (log: {})\n\nIn a second terminal, from the repository root, as the buyer:\n\n  export {}\n  gpumesh order create --class cpu --regions {} --max-price {PRICE_TEXT} --duration 10m --deposit 10 --spec examples/hello.toml\n  gpumesh order watch 1          # placement, leases, escrow runway, spend per second; ends with paid, refunded, result hash\n  gpumesh order logs 1 --follow  # the job's output\n\nSuppliers: gpumesh worker status --keypair {}\nCtrl-C stops everything.",
            ready_after.as_secs_f64(),
            node.rpc_url(),
            node.ws_url(),
            addrs.market,
            state.mint(),
            plans.len(),
            buyer.pubkey(),
            FUND_TOKENS,
            buyer_path.display(),
            dir.display(),
            log_path.display(),
            exports.join(" "),
            uniq.join(","),
            plans[0].owner_path.display(),
        );
        console.document(&text);
    }

    // Until Ctrl-C or SIGTERM (or a part failing).
    let failure = runtime.block_on(stopped.wait());
    console.step("stopping: worker daemons, the orchestrator (it settles what is due), containers, the chain");
    let errors = runtime.block_on(stopped.stop());
    let workers: Vec<String> = plans.iter().map(|p| p.worker.to_string()).collect();
    let removed = runtime.block_on(remove_containers(&docker, &workers));
    let _ = std::fs::remove_file(&state_path);
    drop(node);
    runtime.shutdown_timeout(Duration::from_secs(5));
    console.step(&match &removed {
        Ok(0) => "stopped; no container left".to_string(),
        Ok(n) => format!("stopped; removed {n} container(s) of this run's workers"),
        Err(e) => format!("stopped; removing this run's containers failed: {e}"),
    });
    if let Some(why) = failure {
        return Err(CliError::Input(why));
    }
    if let Some(e) = errors.into_iter().next() {
        return Err(CliError::Input(e));
    }
    removed.map(|_| ()).map_err(CliError::Input)
}

/// Logs of every part (chain follower, service, daemons) go to `log`, at `RUST_LOG`'s level
/// (default `info`).
fn init_tracing_to(log: &File) -> Result<(), CliError> {
    let file = log
        .try_clone()
        .map_err(|e| CliError::Input(format!("cannot write the log: {e}")))?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .try_init();
    Ok(())
}

type Task = tokio::task::JoinHandle<Result<(), String>>;

/// The service and the daemons running as tasks, and the switch that stops them.
struct Running {
    stop: tokio::sync::watch::Sender<bool>,
    service: Option<Task>,
    daemons: Vec<Option<Task>>,
}

fn stop_signal(rx: &tokio::sync::watch::Receiver<bool>) -> impl Future<Output = ()> + use<> {
    let mut rx = rx.clone();
    async move {
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

/// Starts the service and the daemons; returns once every worker is connected.
async fn serve(
    service_config: gpumesh_orchestrator::service::Config,
    daemon_configs: Vec<gpumesh_worker::daemon::Config>,
    api_url: &str,
    workers: usize,
) -> Result<Running, CliError> {
    let (stop, rx) = tokio::sync::watch::channel(false);
    let service = tokio::spawn({
        let shutdown = stop_signal(&rx);
        async move {
            gpumesh_orchestrator::service::serve(service_config, shutdown)
                .await
                .map_err(|e| format!("the orchestrator service stopped: {e}"))
        }
    });
    let mut running = Running {
        stop,
        service: Some(service),
        daemons: vec![],
    };
    // The daemons start one at a time (each measures the machine at start, and three
    // measurements at once on a small machine read low); one whose measurement still came out
    // under its claim gets two more tries.
    let spawn = |i: usize, config: gpumesh_worker::daemon::Config| -> Task {
        let shutdown = stop_signal(&rx);
        tokio::spawn(async move {
            gpumesh_worker::daemon::run(config, shutdown)
                .await
                .map_err(|e| format!("worker daemon {} stopped: {e}", i + 1))
        })
    };
    let mut attempts = vec![0u32; daemon_configs.len()];
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    let mut signal = std::pin::pin!(crate::orchestrator::shutdown());
    loop {
        for i in 0..running.daemons.len() {
            let Some(task) = running.daemons[i].take_if(|t| t.is_finished()) else {
                continue;
            };
            let why = match task.await {
                Ok(Ok(())) => format!("worker daemon {} stopped on its own", i + 1),
                Ok(Err(e)) => e,
                Err(e) => format!("worker daemon {} panicked: {e}", i + 1),
            };
            attempts[i] += 1;
            if attempts[i] < 3 && why.contains("measured") {
                running.daemons[i] = Some(spawn(i, daemon_configs[i].clone()));
            } else {
                running.stop().await;
                return Err(CliError::Input(format!("{why} (the log has more)")));
            }
        }
        if let Some(why) = running.failed().await {
            running.stop().await;
            return Err(CliError::Input(format!("{why} (the log has more)")));
        }
        let connected = client
            .get(format!("{api_url}/v1/workers"))
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success());
        let connected = match connected {
            Some(r) => r
                .json::<Value>()
                .await
                .ok()
                .and_then(|v| v["workers"].as_array().map(Vec::len))
                .unwrap_or(0),
            None => 0,
        };
        if connected >= workers {
            return Ok(running);
        }
        let started = running.daemons.len();
        if connected >= started && started < workers {
            running
                .daemons
                .push(Some(spawn(started, daemon_configs[started].clone())));
        }
        if tokio::time::Instant::now() > deadline {
            running.stop().await;
            return Err(CliError::Input(format!(
                "{connected} of {workers} worker(s) connected within {} s: see the log for why",
                READY_TIMEOUT.as_secs()
            )));
        }
        tokio::select! {
            _ = &mut signal => {
                running.stop().await;
                return Err(CliError::Input("stopped before it was ready".into()));
            }
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

impl Running {
    /// The first part that ended on its own, with why.
    async fn failed(&mut self) -> Option<String> {
        let slots = std::iter::once(&mut self.service).chain(self.daemons.iter_mut());
        for slot in slots {
            if let Some(task) = slot.take_if(|t| t.is_finished()) {
                return Some(match task.await {
                    Ok(Ok(())) => "a part stopped on its own".to_string(),
                    Ok(Err(e)) => e,
                    Err(e) => format!("a part panicked: {e}"),
                });
            }
        }
        None
    }

    /// Until Ctrl-C or SIGTERM; or a part ending on its own (then why).
    async fn wait(&mut self) -> Option<String> {
        let mut signal = std::pin::pin!(crate::orchestrator::shutdown());
        loop {
            tokio::select! {
                _ = &mut signal => return None,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {
                    if let Some(why) = self.failed().await {
                        return Some(why);
                    }
                }
            }
        }
    }

    /// Stops the daemons, then the service (which settles what is due); every error.
    async fn stop(&mut self) -> Vec<String> {
        let _ = self.stop.send(true);
        let mut errors = vec![];
        for task in self.daemons.drain(..).flatten() {
            match tokio::time::timeout(Duration::from_secs(30), task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => errors.push(e),
                Ok(Err(e)) => errors.push(format!("a worker daemon panicked: {e}")),
                Err(_) => errors.push("a worker daemon did not stop within 30 s".into()),
            }
        }
        if let Some(task) = self.service.take() {
            match tokio::time::timeout(Duration::from_secs(60), task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => errors.push(e),
                Ok(Err(e)) => errors.push(format!("the orchestrator service panicked: {e}")),
                Err(_) => errors.push("the orchestrator service did not stop within 60 s".into()),
            }
        }
        errors
    }

    fn stop_now(&mut self, runtime: &tokio::runtime::Runtime) {
        let _ = runtime.block_on(self.stop());
    }
}

/// Removes every container labelled as one of `workers`' (the daemons leave running jobs'
/// containers for their next start; this run has none).
async fn remove_containers(docker: &bollard::Docker, workers: &[String]) -> Result<usize, String> {
    use gpumesh_worker::daemon::runtime::docker::LABEL_WORKER;
    // One worker at a time: engines differ in how they combine several values of one filter.
    let mut removed = 0;
    for w in workers {
        let one = std::collections::HashMap::from([(
            "label".to_string(),
            vec![format!("{LABEL_WORKER}={w}")],
        )]);
        let list = gpumesh_worker::daemon::runtime::docker::list_all(docker, one)
            .await
            .map_err(|e| e.to_string())?;
        for c in list {
            let Some(id) = c.id else { continue };
            docker
                .remove_container(
                    &id,
                    Some(bollard::query_parameters::RemoveContainerOptions {
                        force: true,
                        v: true,
                        ..Default::default()
                    }),
                )
                .await
                .map_err(|e| e.to_string())?;
            removed += 1;
        }
    }
    Ok(removed)
}
