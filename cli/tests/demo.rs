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
