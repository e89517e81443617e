//! Checkpoint resume with the real processes: `gpumesh orchestrator run`, three `gpumesh worker
//! run` daemons sharing one results store, examples/resume (a deterministic training loop that
//! checkpoints) in Podman containers. `--kills` times the daemon running the job is SIGKILLed at
//! a different point of the checkpoint interval; printed: the time from the kill to the resumed
//! job's first step (p50, p99), the work lost per kill against the interval, the CPU model and
//! the parameters. The job then runs to its end and its model must equal an uninterrupted run's.
//!
//! `eval "$(scripts/services.sh)" && cargo bench --profile dev -p gpumesh-cli --bench
//! resume_daemons -- --kills 10 --every 5`

// Its tests are not built here: what only they use is unused.
#[allow(dead_code, unused_imports)]
#[path = "../tests/e2e/checkpoint.rs"]
mod checkpoint;
#[allow(dead_code)]
#[path = "../tests/e2e/market.rs"]
mod market;
#[allow(dead_code)]
#[path = "../tests/e2e/net.rs"]
mod net;
#[allow(dead_code)]
#[path = "../tests/e2e/procs.rs"]
mod procs;

fn main() {
    let (mut kills, mut every) = (10u32, 5u32);
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let value = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--kills" => kills = value.parse::<u32>().expect("--kills N").max(1),
            "--every" => every = value.parse::<u32>().expect("--every STEPS").max(1),
            // What `cargo bench` passes to every bench binary.
            "--bench" => {
                i += 1;
                continue;
            }
            other => panic!("unknown argument {other}: use --kills N --every STEPS"),
        }
        i += 2;
    }
    checkpoint::resume_after_kills_measured(kills, every);
}
