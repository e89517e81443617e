//! Solana CLI conventions and the command line's own: the Solana config file, `--commitment`,
//! `-C`; JSON output (pretty and compact) and JSON errors; exit codes; options shown only where
//! they apply and every positional argument described; VRAM units; keys kept out of git.

use crate::net::Net;
use assert_cmd::Command;
use serde_json::Value;
use std::path::Path;

/// `gpumesh` with nothing from the test's environment but HOME and PATH.
fn bare(home: &Path) -> Command {
    let mut cmd = Command::cargo_bin("gpumesh").unwrap();
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home);
    cmd
}

#[test]
fn the_solana_cli_config_gives_the_url_the_wallet_and_the_commitment() {
    let net = Net::start();
    let (wallet, wallet_key) = net.wallet("wallet.json", "2", "0");
    let home = net.path("home");
    let config_dir = home.join(".config/solana/cli");
    std::fs::create_dir_all(&config_dir).unwrap();
    std::fs::write(
        config_dir.join("config.yml"),
        format!(
            "---\njson_rpc_url: \"{}\"\nwebsocket_url: \"\"\nkeypair_path: {}\naddress_labels:\n  \"11111111111111111111111111111111\": System Program\ncommitment: finalized\n",
            net.url,
            wallet.display()
        ),
    )
    .unwrap();
    let out = bare(&home)
        .args(["balance", "--output", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["address"], wallet_key.to_string());
    assert_eq!(v["sol"], "2");

    // Flags come first: --commitment, --url, --keypair.
    let out = bare(&home)
        .args(["balance", "--commitment", "processed"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let port = gpumesh_localnet::free_port().unwrap();
    let dead = format!("http://127.0.0.1:{port}");
    let out = bare(&home)
        .args(["balance", "--url", &dead])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&dead));

    // -C names another file; a missing or malformed one is refused with its path.
    let other = net.path("other.yml");
    std::fs::write(&other, "json_rpc_url: moonnet\n").unwrap();
    let out = bare(&home)
        .args(["balance", "-C", other.to_str().unwrap()])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(e.contains("\"moonnet\" is not a cluster"), "{e}");
    let out = bare(&home)
        .args([
            "balance",
            "--config",
            net.path("nope.yml").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the config file"));
    std::fs::write(&other, "json_rpc_url: [1, 2\n").unwrap();
    let out = bare(&home)
        .args(["keys", "show", "-C", other.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not a Solana CLI config file"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&other, "commitment: final\n").unwrap();
    let out = bare(&home)
        .args(["balance", "-C", other.to_str().unwrap(), "--url", &net.url])
        .arg("--keypair")
        .arg(&wallet)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("pass --commitment"));
    // `keys show` reads the config's keypair_path.
    let out = bare(&home).args(["keys", "show"]).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        wallet_key.to_string()
    );
}

#[test]
fn json_output_is_one_document_errors_included_with_distinct_exit_codes() {
    let net = Net::start();
    let (wallet, _) = net.wallet("wallet.json", "1", "5");
    let pretty = net.run(&wallet, &["balance"]);
    let compact = net
        .gpumesh(&wallet)
        .env("GPUMESH_OUTPUT", "json-compact")
        .args(["balance"])
        .output()
        .unwrap();
    let pretty_text = String::from_utf8_lossy(&pretty.stdout);
    let compact_text = String::from_utf8_lossy(&compact.stdout);
    assert!(pretty_text.trim().lines().count() > 1, "{pretty_text}");
    assert_eq!(compact_text.trim().lines().count(), 1, "{compact_text}");
    let (a, b): (Value, Value) = (
        serde_json::from_str(&pretty_text).unwrap(),
        serde_json::from_str(&compact_text).unwrap(),
    );
    assert_eq!(a, b);

    // A refusal: one JSON object on stdout, status 1, nothing on stderr.
    let out = net.run(&wallet, &["airdrop", "1", "--tokens", "ten"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.is_empty());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "input");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("is not an amount")
    );

    // Usage errors (clap): status 2; as JSON too when JSON was asked for.
    for (output, expect_json) in [("json", true), ("text", false)] {
        let out = net
            .gpumesh(&wallet)
            .env("GPUMESH_OUTPUT", output)
            .args(["worker", "register", "--class", "h100", "--gpus", "0"])
            .args(["--region", "eu-west", "--price", "1/s", "--node-key", "x"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let text = if expect_json {
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(v["error"]["kind"], "usage");
            assert_eq!(v["error"]["exit_code"], 2);
            v["error"]["message"].as_str().unwrap().to_string()
        } else {
            String::from_utf8_lossy(&out.stderr).to_string()
        };
        assert!(
            text.contains("--gpus") && text.contains("1..=1024"),
            "the field and its bound: {text}"
        );
    }
    let out = net
        .gpumesh(&wallet)
        .args(["order", "create", "--gpus", "0", "--class", "h100"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1..=4096"));
    // Help is not an error.
    let out = net.gpumesh(&wallet).args(["--help"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("Exit status") && help.contains("3 sent, outcome unknown"));
}

/// Every command's help: options only where they apply, every positional argument described.
#[test]
fn options_show_where_they_apply_and_positionals_are_described() {
    let home = tempfile::tempdir().unwrap();
    let help = |path: &[&str]| -> String {
        let out = bare(home.path()).args(path).arg("--help").output().unwrap();
        assert!(out.status.success(), "{path:?}");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let commands: &[&[&str]] = &[
        &["demo"],
        &["localnet"],
        &["keys", "new"],
        &["keys", "show"],
        &["airdrop"],
        &["balance"],
        &["confirm"],
        &["market", "init"],
        &["market", "show"],
        &["market", "update"],
        &["market", "fund-rewards"],
        &["market", "withdraw-treasury"],
        &["worker", "register"],
        &["worker", "update"],
        &["worker", "stake"],
        &["worker", "unstake"],
        &["worker", "withdraw"],
        &["worker", "claim"],
        &["worker", "claim-rewards"],
        &["worker", "unjail"],
        &["worker", "close"],
        &["worker", "status"],
        &["order", "create"],
        &["order", "top-up"],
        &["order", "cancel"],
        &["order", "show"],
        &["order", "list"],
    ];
    for path in commands {
        let text = help(path);
        assert!(text.contains("--output"), "{path:?}: --output everywhere");
        assert!(text.contains("--config"), "{path:?}: -C everywhere");
        // Positional arguments: each one under "Arguments:" carries a description, on its line
        // or (long help) on the next.
        if let Some(args) = text.split("Arguments:").nth(1) {
            let lines: Vec<&str> = args
                .split("Options:")
                .next()
                .unwrap_or("")
                .lines()
                .map(str::trim)
                .collect();
            let is_arg = |l: &str| l.starts_with('<') || l.starts_with('[');
            for (i, line) in lines.iter().enumerate() {
                if is_arg(line) {
                    let inline = line
                        .split_once(char::is_whitespace)
                        .is_some_and(|(_, d)| !d.trim().is_empty());
                    let below = lines
                        .get(i + 1)
                        .is_some_and(|next| !next.is_empty() && !is_arg(next));
                    assert!(inline || below, "{path:?}: {line:?} has no description");
                }
            }
        }
    }
    let top_up = help(&["order", "top-up"]);
    assert!(
        top_up.contains("The order's id") && top_up.contains("Tokens to add"),
        "{top_up}"
    );
    for path in [
        &["keys", "show"][..],
        &["keys", "new"],
        &["market", "show"],
        &["demo"],
    ] {
        assert!(!help(path).contains("--keypair"), "{path:?} signs nothing");
    }
    for path in [&["keys", "show"][..], &["demo"], &["localnet"]] {
        assert!(
            !help(path).contains("--url"),
            "{path:?} talks to no cluster"
        );
    }
    assert!(!help(&["market", "init"]).contains("--market"));
    let stake = help(&["worker", "stake"]);
    for flag in [
        "--url",
        "--keypair",
        "--market",
        "--commitment",
        "--rpc-timeout",
    ] {
        assert!(stake.contains(flag), "worker stake takes {flag}");
    }
    assert!(help(&["worker", "register"]).contains("81920 MiB"));
}

#[test]
fn vram_is_given_with_units() {
    let home = tempfile::tempdir().unwrap();
    for (flag, cmd) in [
        ("--vram", &["worker", "register"][..]),
        ("--min-vram", &["order", "create"][..]),
    ] {
        let out = bare(home.path())
            .args(cmd)
            .args([flag, "80"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(e.contains("80GiB or 81920MiB"), "{e}");
    }
}

/// Prices name their unit (per GPU-hour or per GPU-second): a bare number or another unit is a
/// usage error, before anything is read from a chain; the help says so, and the reserved term's
/// default.
#[test]
fn prices_are_given_with_units_and_help_names_the_defaults() {
    let home = tempfile::tempdir().unwrap();
    for (flag, cmd) in [
        ("--price", &["worker", "register"][..]),
        ("--price", &["worker", "update"]),
        ("--max-price", &["order", "create"]),
    ] {
        for bad in ["0.85", "0.85/min", "abc/h"] {
            let out = bare(home.path())
                .args(cmd)
                .args([flag, bad])
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(2), "{cmd:?} {flag} {bad}");
            let e = String::from_utf8_lossy(&out.stderr);
            assert!(
                e.contains("per GPU-hour like 0.8532/h") && e.contains("0.000237/s"),
                "{e}"
            );
        }
    }
    let help = |path: &[&str]| -> String {
        let out = bare(home.path()).args(path).arg("--help").output().unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let create = help(&["order", "create"]);
    assert!(
        create.contains("default 7d") && create.contains("604800 s") && create.contains("/h"),
        "{create}"
    );
    assert!(help(&["worker", "register"]).contains("per GPU-hour"));
    assert!(help(&["market", "update"]).contains("h100=2.88/h"));
    assert!(help(&["airdrop"]).contains("USD-like"));
    let out = bare(home.path())
        .args(["order", "create", "--duration", "7w"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("90m, 12h, 7d"));
}

#[test]
fn keys_are_not_written_where_git_would_commit_them() {
    let home = tempfile::tempdir().unwrap();
    let repo = home.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let git = std::process::Command::new("git")
        .args(["init", "-q"])
        .current_dir(&repo)
        .status()
        .unwrap();
    assert!(git.success());
    let key = repo.join("orchestrator.json");
    let out = bare(home.path())
        .current_dir(&repo)
        .args(["keys", "new", "-o", "orchestrator.json"])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        e.contains("inside the git work tree")
            && e.contains(".gitignore")
            && e.contains("--force")
            && e.contains("~/.config/gpumesh/orchestrator.json"),
        "{e}"
    );
    assert!(!key.exists(), "nothing written");
    // In a subdirectory that does not exist yet: still inside the work tree.
    let out = bare(home.path())
        .args(["keys", "new", "-o"])
        .arg(repo.join("keys/node.json"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    // Ignored by git: written.
    std::fs::write(repo.join(".gitignore"), "*.json\n").unwrap();
    let out = bare(home.path())
        .current_dir(&repo)
        .args(["keys", "new", "-o", "orchestrator.json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(key.exists());
    // --force overrides.
    std::fs::write(repo.join(".gitignore"), "").unwrap();
    let out = bare(home.path())
        .current_dir(&repo)
        .args(["keys", "new", "-o", "node.toml.key", "--force"])
        .output()
        .unwrap();
    assert!(out.status.success());
    // Outside any work tree (the default under ~/.config): written.
    let out = bare(home.path())
        .args(["keys", "new", "-o", "~/.config/gpumesh/node.json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(home.path().join(".config/gpumesh/node.json").exists());
}
