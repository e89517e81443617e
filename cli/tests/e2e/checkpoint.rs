//! Training continues after a dropout: the real service and real daemons (jobs in containers)
//! run `examples/resume` (a deterministic training loop that checkpoints); a worker is SIGKILLed
//! mid-run and the job goes on from its last good checkpoint on another worker.
//!
//! - one kill, with the newest checkpoint corrupted in the store right after it: the new worker
//!   skips it with a clear event (the order's page lists it as skipped, with the reason),
//!   restores the one before, the job resumes from that step, the final model is the same bytes
//!   as an uninterrupted run's, the resumed lease is paid only for the steps left (the time
//!   before the checkpoint is not paid twice), and `gpumesh market audit` holds;
//! - the buyer turns checkpoints off (a signed `gpumesh order checkpoints ID off`): no more are
//!   stored, and after a kill the job starts over on the other worker;
//! - ten kills in a row, a measurement rather than a test (`benches/resume_daemons.rs` runs
//!   it): the time from each kill to the resumed job's first step, p50 and p99, and the work
//!   lost per kill against the checkpoint interval, printed with the CPU model and the
//!   parameters.
//!
//! Both daemons keep results and checkpoints in one shared local store, as two machines would
//! share an object store.

use crate::market::{Market, PRICE_PER_SECOND, Supplier, block_on, lease_of};
use crate::net::Net;
use crate::procs::Proc;
use gpumesh_client::chain::ChainExt;
use gpumesh_client::{Pubkey, Signer, cluster};
use gpumesh_worker::examples::{RESUME_IMAGE, RESUME_SCRIPT, ensure_resume};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

/// Seconds each training step waits (the work of a step is a few milliseconds of awk).
const STEP_SECONDS: f64 = 0.2;

/// The resume example's spec with these parameters.
fn resume_spec(net: &Net, steps: u32, every: u32) -> PathBuf {
    let path = net.path(&format!("resume-{steps}-{every}.toml"));
    std::fs::write(
        &path,
        format!(
            "image = \"{RESUME_IMAGE}\"\ngpus = 1\nresults = [\"model.txt\"]\nmax_duration_s = 600\nmillicpus = 500\nmemory_mib = 64\n[checkpoint]\ndir = \"ckpt\"\ninterval_s = 30\n[env]\nSTEPS = \"{steps}\"\nCHECKPOINT_EVERY = \"{every}\"\nSTEP_SECONDS = \"{STEP_SECONDS}\"\n"
        ),
    )
    .unwrap();
    path
}

/// What an uninterrupted run leaves in /results/model.txt: the same script under the host's
/// busybox (the image's binary), without the pauses.
fn uninterrupted_model(net: &Net, steps: u32, every: u32) -> Vec<u8> {
    let dir = net.path(&format!("uninterrupted-{steps}"));
    let (scratch, results) = (dir.join("scratch"), dir.join("results"));
    std::fs::create_dir_all(&scratch).unwrap();
    let script = dir.join("train.sh");
    std::fs::write(&script, RESUME_SCRIPT).unwrap();
    let out = std::process::Command::new(gpumesh_worker::examples::BUSYBOX)
        .arg("sh")
        .arg(&script)
        .env("STEPS", steps.to_string())
        .env("CHECKPOINT_EVERY", every.to_string())
        .env("STEP_SECONDS", "0")
        .env("GPUMESH_SCRATCH", &scratch)
        .env("GPUMESH_CHECKPOINT_DIR", scratch.join("ckpt"))
        .env("GPUMESH_RESULTS", &results)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    std::fs::read(results.join("model.txt")).unwrap()
}

/// A supplier whose daemon keeps results and checkpoints in `store` (shared by all of them).
fn supplier(m: &Market, name: &str, store: &Path) -> Supplier {
    let s = m.supplier(name);
    let own = m.net.path(&format!("{name}-results"));
    let text = std::fs::read_to_string(&s.config).unwrap().replace(
        &format!("dir = \"{}\"", own.display()),
        &format!("dir = \"{}\"", store.display()),
    );
    assert!(text.contains(&store.display().to_string()), "{text}");
    std::fs::write(&s.config, text).unwrap();
    s
}

/// The order's job output, by lease instance (the buyer's signed request).
fn logs(m: &Market, order: &str) -> Vec<((String, u64), String)> {
    let key = cluster::read_keypair(&m.buyer).unwrap();
    let order_key = Pubkey::from_str(order).unwrap();
    let unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let message = gpumesh_protocol::jobspec::logs_message(&order_key.to_bytes(), unix_ms);
    let r = reqwest::blocking::Client::new()
        .get(format!("{}/v1/orders/{order}/logs", m.service.url))
        .header(
            "x-gpumesh-signature",
            key.sign_message(&message).to_string(),
        )
        .header("x-gpumesh-unix-ms", unix_ms.to_string())
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{:?}", r.text());
    let v: Value = r.json().unwrap();
    v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            let text: String = j["chunks"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|c| c["data"].as_str())
                .collect();
            (lease_of(j), text)
        })
        .collect()
}

/// The last `step N` line's N in a job's output.
fn last_step(text: &str) -> Option<u32> {
    text.lines()
        .filter_map(|l| l.strip_prefix("step ")?.split(' ').next()?.parse().ok())
        .next_back()
}

/// The step a resumed job went on from (`resuming at step N ...`).
fn resumed_at(text: &str) -> Option<u32> {
    text.lines().find_map(|l| {
        l.strip_prefix("resuming at step ")?
            .split(' ')
            .next()?
            .parse()
            .ok()
    })
}

/// Waits until the order has `n` stored checkpoints; returns its page.
fn checkpoints(m: &Market, order: &str, n: u64, logs: &[&Proc]) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let page = m.order_page(order);
        if page["checkpoints"]["stored"].as_u64().unwrap_or(0) >= n {
            return page;
        }
        m.fail_after(deadline, "the job never checkpointed", &page, logs);
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// After a kill: waits for a lease other than `old` to print its first step; returns it, its
/// output and when the step was seen.
fn resumed(
    m: &Market,
    order: &str,
    old: &[(String, u64)],
    logs_of: &[&Proc],
) -> ((String, u64), String, Instant) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        for (lease, text) in logs(m, order) {
            if !old.contains(&lease) && last_step(&text).is_some() {
                return (lease, text, Instant::now());
            }
        }
        m.fail_after(
            deadline,
            "the job never resumed",
            &m.order_page(order),
            logs_of,
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The step a stored checkpoint holds (the resume example's state file: `step w b`).
fn step_of(store: &Path, hash: &str) -> u32 {
    let state =
        std::fs::read_to_string(store.join("checkpoints").join(hash).join("files/state")).unwrap();
    state.split(' ').next().unwrap().parse().unwrap()
}

#[test]
fn a_killed_workers_training_resumes_from_its_last_good_checkpoint() {
    let m = Market::start();
    block_on(ensure_resume(&m.docker)).expect("building examples/resume");
    let store = m.net.path("shared-results");
    let alice = supplier(&m, "alice", &store);
    let bob = supplier(&m, "bob", &store);
    let a = m.daemon(&alice);
    let b = m.daemon(&bob);
    let (steps, every) = (60, 5);
    let want = uninterrupted_model(&m.net, steps, every);
    let want_hash = gpumesh_protocol::results::results_hash(&[("model.txt", &want)])
        .unwrap()
        .map(|h| gpumesh_protocol::hex(&h))
        .unwrap();
    let before = m.net.tokens(&m.buyer_key);
    let order = m.order(&resume_spec(&m.net, steps, every));

    // Six checkpoints stored (half the run), then the machine dies.
    let page = checkpoints(&m, &order, 6, &[&a, &b]);
    assert_eq!(page["checkpoints"]["enabled"], true, "{page}");
    // The buyer sees the latest's age, what is kept and what keeping it costs (free here).
    let c = &page["checkpoints"];
    assert!(c["latest"]["age_s"].is_u64(), "{page}");
    assert!(c["stored_bytes"].as_u64().is_some_and(|b| b > 0), "{page}");
    assert_eq!(c["storage_cost_per_hour"], "0", "{page}");
    let first = m.running(&order, None, 0, &[&a, &b]);
    let first_lease = lease_of(&first);
    let (dead, dead_daemon, spare, spare_daemon) = if first["worker"] == alice.worker.as_str() {
        (&alice, a, &bob, b)
    } else {
        (&bob, b, &alice, a)
    };
    let stake_before = m.stake(dead);
    drop(dead_daemon); // SIGKILL: no checkpoint after this one reaches the service
    let killed = Instant::now();

    // The newest checkpoint is corrupted in the store before the job moves (the grace is
    // 1.5 s): a bit flipped in its state file.
    let page = m.order_page(&order);
    let all = page["checkpoints"]["all"].as_array().unwrap().clone();
    assert!(all.len() >= 2, "{page}");
    let (newest, previous) = (
        all[0]["hash"].as_str().unwrap().to_string(),
        all[1]["hash"].as_str().unwrap().to_string(),
    );
    assert_eq!(page["checkpoints"]["latest"]["hash"], newest.as_str());
    assert!(all[0]["size"].as_u64().unwrap() > 0, "{page}");
    let newest_step = step_of(&store, &newest);
    let previous_step = step_of(&store, &previous);
    assert!(previous_step < newest_step, "{previous_step} {newest_step}");
    let state = store.join("checkpoints").join(&newest).join("files/state");
    let mut bytes = std::fs::read(&state).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&state, bytes).unwrap();

    // The job resumes on the spare from the checkpoint before the corrupted one.
    let (second_lease, text, first_step) = resumed(
        &m,
        &order,
        std::slice::from_ref(&first_lease),
        &[&spare_daemon],
    );
    let to_first_step = first_step - killed;
    assert_eq!(resumed_at(&text), Some(previous_step), "{text}");
    assert!(
        text.contains(&format!("checkpoint {}", &newest[..16])) && text.contains("skipped"),
        "the skip is in the job's output:\n{text}"
    );
    let page = m.order_page(&order);
    let skipped = page["checkpoints"]["all"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["hash"] == newest.as_str())
        .cloned()
        .unwrap();
    assert_eq!(skipped["status"], "skipped", "{page}");
    assert!(
        skipped["reason"]
            .as_str()
            .is_some_and(|r| r.contains("fails its hash check")),
        "{skipped}"
    );

    // The final model is the uninterrupted run's, byte for byte.
    let leases = [first_lease, second_lease];
    let served = m.completed(&order, &leases, &[&spare_daemon]);
    let page = m.order_page(&order);
    let result = page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["lease"] == leases[1].0.as_str())
        .cloned()
        .unwrap();
    assert_eq!(result["result_hash"], want_hash.as_str(), "{page}");
    let stored_model = std::fs::read(store.join(&want_hash).join("files/model.txt")).unwrap();
    assert_eq!(stored_model, want);

    // Paid: the dead lease what its worker signed (it ran at least to the newest checkpoint),
    // the resumed lease only the steps left after the checkpoint it restored, never the whole
    // run again.
    let left = f64::from(steps - previous_step) * STEP_SECONDS;
    let whole = f64::from(steps) * STEP_SECONDS;
    assert!(
        (served[1] as f64) <= left * 1.5 + 2.0 && (served[1] as f64) < whole,
        "{served:?}: {left:.1} s of steps were left after step {previous_step}"
    );
    let slash = stake_before - m.stake(dead);
    assert!(slash > 0, "the dead worker was slashed");
    assert_eq!(
        m.net.tokens(&m.buyer_key),
        before - (served[0] + served[1]) * PRICE_PER_SECOND + slash,
        "the buyer pays each lease's seconds once and receives the slash"
    );
    assert_eq!(m.worker_status(spare)["record"]["failures"], 0);

    // The dead machine comes back and reaps its container; the books hold.
    let back = m.daemon(dead);
    m.reaped(&leases[0], &[&back]);
    m.sound(&leases);
    assert!(back.terminate().success());
    assert!(spare_daemon.terminate().success());
    let Market { service, .. } = m;
    assert!(service.terminate().success());
    eprintln!(
        "resume: kill to first resumed step {:.2} s; resumed at step {previous_step} (step {newest_step}'s checkpoint corrupted and skipped); paid {} s + {} s of a {whole:.0} s run",
        to_first_step.as_secs_f64(),
        served[0],
        served[1]
    );
}

#[test]
fn a_buyer_turns_checkpoints_off_and_a_moved_job_starts_over() {
    let m = Market::start();
    block_on(ensure_resume(&m.docker)).expect("building examples/resume");
    let store = m.net.path("shared-results");
    let alice = supplier(&m, "alice", &store);
    let bob = supplier(&m, "bob", &store);
    let a = m.daemon(&alice);
    let b = m.daemon(&bob);
    let order = m.order(&resume_spec(&m.net, 40, 5));
    let key = Pubkey::from_str(&order).unwrap();
    let id = m
        .net
        .chain
        .fetch::<gpumesh_client::program::state::Order>(&key)
        .unwrap()
        .order_id;
    checkpoints(&m, &order, 1, &[&a, &b]);

    // Off, by the buyer's signed request: the page says so, and no checkpoint is stored after.
    let off = m.net.ok(
        &m.buyer,
        &[
            "order",
            "checkpoints",
            &id.to_string(),
            "off",
            "--orchestrator",
            &m.service.url,
        ],
    );
    assert_eq!(off["checkpoints"]["turned_off"], true, "{off}");
    assert_eq!(off["checkpoints"]["enabled"], false, "{off}");
    let stored = off["checkpoints"]["stored"].as_u64().unwrap();
    std::thread::sleep(Duration::from_secs(3)); // three checkpoints' worth of steps
    let page = m.order_page(&order);
    assert_eq!(page["checkpoints"]["stored"], stored, "{page}");
    assert_eq!(page["checkpoints"]["turned_off"], true, "{page}");

    // The worker dies: the job starts over on the other, restoring nothing.
    let first = m.running(&order, None, 0, &[&a, &b]);
    let first_lease = lease_of(&first);
    let (dead, dead_daemon, spare_daemon) = if first["worker"] == alice.worker.as_str() {
        (&alice, a, b)
    } else {
        (&bob, b, a)
    };
    drop(dead_daemon);
    let (second_lease, text, _) = resumed(
        &m,
        &order,
        std::slice::from_ref(&first_lease),
        &[&spare_daemon],
    );
    assert!(text.contains("starting from step 0"), "{text}");
    assert!(!text.contains("resuming at step"), "{text}");

    let leases = [first_lease, second_lease];
    m.completed(&order, &leases, &[&spare_daemon]);
    let back = m.daemon(dead);
    m.reaped(&leases[0], &[&back]);
    m.sound(&leases);
    assert!(back.terminate().success());
    assert!(spare_daemon.terminate().success());
    let Market { service, .. } = m;
    assert!(service.terminate().success());
}

#[allow(dead_code)] // used by the measurement below, which benches/resume_daemons.rs runs
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Ten kills of whichever worker runs the job, each at a different point of the checkpoint
/// interval; three workers, each killed one restarted so it can take the job later. Prints
/// p50/p99 of kill → first resumed step and the steps lost per kill (the steps the dead job had
/// shown past the checkpoint its successor restored), with `every` steps between checkpoints.
/// A measurement, not a test: `cargo bench --profile dev -p gpumesh-cli --bench resume_daemons`.
#[allow(dead_code)] // run by benches/resume_daemons.rs
pub fn resume_after_kills_measured(kills: u32, every: u32) {
    let steps = 1_000;
    let m = Market::start();
    block_on(ensure_resume(&m.docker)).expect("building examples/resume");
    let store = m.net.path("shared-results");
    let suppliers: Vec<Supplier> = ["alice", "bob", "carol"]
        .iter()
        .map(|n| supplier(&m, n, &store))
        .collect();
    let mut daemons: Vec<Option<Proc>> = suppliers.iter().map(|s| Some(m.daemon(s))).collect();
    let order = m.order(&resume_spec(&m.net, steps, every));
    let mut seen: Vec<(String, u64)> = vec![];
    let mut latencies = vec![];
    let mut lost = vec![];
    // The first lease runs a few checkpoints' worth.
    let all: Vec<&Proc> = daemons.iter().flatten().collect();
    checkpoints(&m, &order, 2, &all);
    for kill in 0..kills {
        let page = m.order_page(&order);
        let running = page["leases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["job"] == "running")
            .cloned()
            .unwrap_or_else(|| panic!("no running lease before kill {kill}: {page}"));
        let lease = lease_of(&running);
        // Kills land at spread points of the checkpoint interval (0, 0.7, 0.4, 0.1, ... of it).
        let into = f64::from((kill * 7) % 10) / 10.0;
        std::thread::sleep(Duration::from_secs_f64(
            into * f64::from(every) * STEP_SECONDS,
        ));
        let i = suppliers
            .iter()
            .position(|s| running["worker"] == s.worker.as_str())
            .unwrap();
        let shown = logs(&m, &order)
            .into_iter()
            .find(|(l, _)| *l == lease)
            .and_then(|(_, t)| last_step(&t))
            .unwrap_or(0);
        drop(daemons[i].take()); // SIGKILL
        let killed = Instant::now();
        seen.push(lease);
        let live: Vec<&Proc> = daemons.iter().flatten().collect();
        let (_, text, first_step) = resumed(&m, &order, &seen, &live);
        latencies.push((first_step - killed).as_secs_f64());
        let from = resumed_at(&text).unwrap_or(0);
        lost.push(shown.saturating_sub(from));
        eprintln!(
            "kill {}: {:.2} s to the first resumed step; shown step {shown}, resumed at {from}",
            kill + 1,
            (first_step - killed).as_secs_f64()
        );
        // Back, so that it can take the job after a later kill (it reaps its old container),
        // its stake topped up after the offline slash.
        m.net.ok(&suppliers[i].wallet, &["worker", "stake", "100"]);
        daemons[i] = Some(m.daemon(&suppliers[i]));
        // A checkpoint of the new lease before the next kill.
        let stored = m.order_page(&order)["checkpoints"]["stored"]
            .as_u64()
            .unwrap_or(0);
        let live: Vec<&Proc> = daemons.iter().flatten().collect();
        checkpoints(&m, &order, stored + 1, &live);
    }
    let mut sorted = latencies.clone();
    sorted.sort_by(f64::total_cmp);
    let step_s = STEP_SECONDS;
    let mut lost_sorted = lost.clone();
    lost_sorted.sort();
    let mean_lost = lost.iter().sum::<u32>() as f64 / lost.len() as f64;
    println!(
        "cpu: {} ({} cores)",
        gpumesh_protocol::kernels::cpu_model().unwrap_or_else(|| "unknown".into()),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "parameters: {kills} kills, 3 CPU workers, grace 1.5 s, heartbeat 200 ms, job examples/resume with {steps} steps of {step_s} s, checkpoint every {every} steps (~{:.1} s of work) on request, interval 30 s",
        f64::from(every) * step_s
    );
    println!(
        "kill -> first resumed step: p50 {:.2} s, p99 {:.2} s, min {:.2} s, max {:.2} s",
        percentile(&sorted, 50.0),
        percentile(&sorted, 99.0),
        sorted[0],
        sorted[sorted.len() - 1]
    );
    println!(
        "work lost per kill: mean {mean_lost:.1} steps ({:.2} s), max {} steps, against a checkpoint interval of {every} steps ({:.1} s); per kill {lost:?}",
        mean_lost * step_s,
        lost_sorted[lost_sorted.len() - 1],
        f64::from(every) * step_s
    );
    // Every kill lost less than two checkpoint intervals of steps (the one in progress, and at
    // most one whose snapshot had not been reported when the worker died).
    assert!(lost.iter().all(|l| *l < 2 * every + 2), "{lost:?}");

    // The job runs to its end: the same model as an uninterrupted run, the books hold.
    let key = Pubkey::from_str(&order).unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    while m
        .net
        .chain
        .fetch_opt::<gpumesh_client::program::state::Order>(&key)
        .unwrap()
        .is_some()
    {
        let live: Vec<&Proc> = daemons.iter().flatten().collect();
        m.fail_after(
            deadline,
            "the order never completed",
            &m.order_page(&order),
            &live,
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let want = uninterrupted_model(&m.net, steps, every);
    let want_hash = gpumesh_protocol::results::results_hash(&[("model.txt", &want)])
        .unwrap()
        .map(|h| gpumesh_protocol::hex(&h));
    let page = m.order_page(&order);
    assert!(
        page["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["result_hash"].as_str() == want_hash.as_deref()),
        "{page}"
    );
    m.sound(&seen);
    for d in daemons.into_iter().flatten() {
        assert!(d.terminate().success());
    }
    let Market { service, .. } = m;
    assert!(service.terminate().success());
}
