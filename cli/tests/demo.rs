//! The demo is the README's main job: run the real binary and check its account adds up.

use assert_cmd::Command;

#[test]
fn demo_runs_the_whole_flow_and_balances_add_up() {
    let out = Command::cargo_bin("gpumesh")
        .expect("binary")
        .arg("demo")
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "event RewardsFunded: 1000 in, funded 0 -> 1000",
        "asking 1.08 per GPU-hour (0.0003 per GPU-second)",
        "ReceiptSettled: seconds 0 -> 600",
        "emission rewards 0.475646",
        "refused: instruction 1 refused: the receipt's served seconds are not above",
        "BeyondWallTime",
        "LeaseClosed (Completed): 1800 s settled",
        "OrderClosed: paid 4.32, refund 55.68",
        "event RewardsClaimed: 1.42694 paid from the rewards vault",
        "WorkerSlashed (Offline): 50 taken, 50 to the buyer, 0 to the treasury",
        "order 2 is Open again with 9.4 of escrow left",
        "order 2: the buyer got back more than it paid: 2.04 paid for service, 50 compensation from the supplier's slash",
        "is not row",
        "WorkerSlashed (Fraud): 475 taken, 475 to the buyer",
        "event WorkerJailChanged: jailed until",
        "assigning the jailed B: refused",
        "B's unjail before the jail period ends: refused",
        "ReservedUnderfunded",
        "event LeasePreempted",
        "LeaseClosed (Preempted): 660 s settled, 1.584 paid",
        "scheduler.explain_order: 1 worker(s) jailed, draining or offline, 1 worker(s) eligible; the eligible ones hold at most 4 free GPU(s)",
        "the reserved lease still pays 1.08 per GPU-hour",
        "refused by the program (PriceAboveBreaker)",
        "event BreakerTripped: ask 5.238/h above the cap 4.1904/h",
        "paid at the locked 1.08/h",
        "unjail with 475 bonded of the 800 required: refused",
        "event WorkerJailChanged: out of jail",
        "order 3: the buyer got back more than it paid: 1.584 paid for service, 475 compensation from the supplier's slash",
        "stake yield over the worker's life",
        "gains and losses: operator -1000, buyer +517.056, supplier A +1196.654253, supplier B -524.177177, lab -725.76",
        "tokens in existence 4296.33148 + burned 3.66852 = minted 4300: conserved",
        "gains and losses + fees + burned + unearned rewards = 0",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    // Every step's balances are checked, not only printed.
    let steps = stdout.matches("\n    balances: ").count();
    assert!(steps >= 18, "{steps} balance checks");
    assert_eq!(stdout.matches("\n    checked: escrow vault").count(), steps);
}

#[test]
fn unknown_commands_fail_with_usage() {
    let out = Command::cargo_bin("gpumesh")
        .expect("binary")
        .arg("frobnicate")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage"));
}

/// `gpumesh demo | head -3`: the reader goes away after three lines; the demo ends quietly with
/// status 0 (no panic on the broken pipe).
#[test]
fn a_closed_pipe_ends_the_demo_quietly() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("gpumesh"))
        .arg("demo")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut reader = BufReader::new(stdout);
    for _ in 0..3 {
        let mut line = String::new();
        reader.read_line(&mut line).expect("read");
    }
    drop(reader);
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// With `--output json-compact` the demo is one JSON document: its steps and whether every
/// token is accounted for.
#[test]
fn the_demo_as_json() {
    let out = Command::cargo_bin("gpumesh")
        .expect("binary")
        .args(["demo", "--output", "json-compact"])
        .output()
        .expect("run");
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let doc: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON document");
    assert_eq!(doc["balanced"], true);
    let steps = doc["steps"].as_array().expect("steps");
    assert!(steps.len() > 20, "{} steps", steps.len());
    let details: Vec<&str> = steps
        .iter()
        .flat_map(|s| s["details"].as_array().into_iter().flatten())
        .filter_map(|d| d.as_str())
        .collect();
    assert!(
        details
            .iter()
            .any(|d| d.starts_with("order 3: the buyer got back more than it paid")),
        "{details:?}"
    );
    assert!(
        details
            .iter()
            .any(|d| d.starts_with("event BreakerTripped"))
    );
}
