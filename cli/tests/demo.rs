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
        "ReceiptSettled: seconds 0 -> 600",
        "refused: instruction 1 refused: the receipt's served seconds are not above",
        "BeyondWallTime",
        "LeaseClosed (Completed): 1800 s settled",
        "OrderClosed: paid 4.32, refund 55.68",
        "WorkerSlashed (Offline): 50 taken, 50 to the buyer, 0 to the treasury",
        "order 2 is Open again with 9.4 of escrow left",
        "buyer +43.64 (paid for 8 GPUs x 2700 s, received a 50 slash); supplier +5.616 (earned 5.616); supplier 2 -49.415 (earned 0.585, slashed 50); protocol fees 0.1272 to the treasury and 0.0318 burned",
        "tokens in existence 2099.9682 + burned 0.0318 = minted 2100: conserved",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
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
    assert!(doc["steps"].as_array().is_some_and(|s| s.len() > 10));
}
