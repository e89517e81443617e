//! The services as processes of the real binary, the way a user starts them: the orchestrator
//! (`gpumesh orchestrator run CONFIG`) and a worker daemon (`gpumesh worker run CONFIG`), each
//! with its log kept in a file for the failure message, stopped with SIGTERM (killed when dropped).

use crate::net::Net;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `gpumesh` subcommand running as a child process, its stderr in `log`.
pub struct Proc {
    child: Child,
    log: PathBuf,
    what: String,
}

impl Proc {
    pub fn spawn(
        net: &Net,
        what: &str,
        args: &[&str],
        envs: &[(&str, &str)],
        log: PathBuf,
    ) -> Proc {
        Proc::spawn_in(net, what, &[], args, envs, log)
    }

    /// [`Proc::spawn`] through `prefix`, a command that runs the binary given after it (e.g.
    /// `nsenter` into a network namespace).
    pub fn spawn_in(
        net: &Net,
        what: &str,
        prefix: &[&str],
        args: &[&str],
        envs: &[(&str, &str)],
        log: PathBuf,
    ) -> Proc {
        let bin = assert_cmd::cargo::cargo_bin("gpumesh");
        let mut cmd = match prefix.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", net.dir.path())
            .env("RUST_LOG", "info")
            // The container engine the worker daemons run jobs on (scripts/services.sh).
            .env(
                "DOCKER_HOST",
                std::env::var_os("DOCKER_HOST").unwrap_or_default(),
            )
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        Proc {
            child: cmd.spawn().unwrap(),
            log,
            what: what.to_string(),
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics with the log when the process has exited.
    pub fn check_alive(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("{} exited ({status}):\n{}", self.what, self.log_text());
        }
    }

    /// Sends `signal` (e.g. STOP and CONT to freeze and thaw the process).
    pub fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, signal).unwrap();
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "{} did not exit on SIGTERM:\n{}",
                    self.what,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The orchestrator service as a child process of the real binary.
pub struct Service {
    pub proc: Proc,
    pub url: String,
}

impl Service {
    pub fn start(net: &Net, config: &Path) -> Service {
        let proc = Proc::spawn(
            net,
            "the orchestrator service",
            &["orchestrator", "run", config.to_str().unwrap()],
            &[],
            config.with_extension("log"),
        );
        let text = std::fs::read_to_string(config).unwrap();
        let listen = text
            .lines()
            .find_map(|l| l.strip_prefix("listen = "))
            .unwrap()
            .trim_matches('"')
            .to_string();
        let mut s = Service {
            proc,
            url: format!("http://{listen}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            s.proc.check_alive();
            if let Ok(v) = s.get("/v1/health") {
                assert_eq!(v["ok"], true, "{v}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the service never answered:\n{}",
                s.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        s
    }

    pub fn log_text(&self) -> String {
        self.proc.log_text()
    }

    pub fn get(&self, path: &str) -> Result<Value, String> {
        let r = reqwest::blocking::get(format!("{}{path}", self.url)).map_err(|e| e.to_string())?;
        let status = r.status();
        let body = r.text().map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{status}: {body}"));
        }
        serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))
    }

    /// Polls `path` until `check` holds for its JSON (panics with the log after `timeout`).
    pub fn wait_for(
        &self,
        path: &str,
        timeout: Duration,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.get(path);
            if let Ok(v) = &v
                && check(v)
            {
                return v.clone();
            }
            assert!(
                Instant::now() < deadline,
                "{what}: never happened ({v:?})\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Polls an order until its `waiting` reason contains `what`.
    pub fn wait_for_reason(&self, order: &str, what: &str) -> Value {
        self.wait_for(
            &format!("/v1/orders/{order}"),
            Duration::from_secs(30),
            &format!("order waits for {what:?}"),
            |v| v["waiting"].as_str().is_some_and(|w| w.contains(what)),
        )
    }

    /// SIGTERM, then the exit status (the service settles what is due and exits 0).
    pub fn terminate(self) -> std::process::ExitStatus {
        self.proc.terminate()
    }
}

/// An orchestrator config on `port` with the store in the test's directory; `extra` lines are
/// appended (timings).
pub fn write_config(net: &Net, name: &str, market: &str, key: &str, port: u16) -> PathBuf {
    write_config_with(net, name, market, key, port, "")
}

pub fn write_config_with(
    net: &Net,
    name: &str,
    market: &str,
    key: &str,
    port: u16,
    extra: &str,
) -> PathBuf {
    let path = net.path(name);
    let store = net.path("orchestrator.db");
    std::fs::write(
        &path,
        format!(
            "rpc_url = \"{}\"\nws_url = \"{}\"\nmarket = \"{market}\"\nkeypair = \"{key}\"\nlisten = \"127.0.0.1:{port}\"\nstore = \"sqlite://{}?mode=rwc\"\nplacement_every_ms = 200\n{extra}",
            net.url,
            net.ws_url,
            store.display()
        ),
    )
    .unwrap();
    path
}

/// A network namespace of its own (a user namespace owns it, so no privilege is needed) with
/// `slirp4netns` as its only link to the host: the host's loopback is 10.0.2.2 inside. Cutting
/// the link (`ip link set tap0 down` inside) is a real partition: established connections go
/// silent, nothing is reset.
pub struct Namespace {
    holder: Child,
    slirp: Child,
    pid: String,
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = self.slirp.kill();
        let _ = self.slirp.wait();
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

fn tool(name: &str) -> Command {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(name).is_file()));
    assert!(
        found,
        "{name} is not installed: the network-partition test needs util-linux (unshare, nsenter), iproute2 (ip) and slirp4netns, which .ci/run installs"
    );
    Command::new(name)
}

impl Namespace {
    pub fn new() -> Namespace {
        let holder = tool("unshare")
            .args(["--user", "--map-root-user", "--net", "sleep", "infinity"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let pid = holder.id().to_string();
        let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_link(format!("/proc/{pid}/ns/net"))
            .ok()
            .as_ref()
            == Some(&ours)
        {
            assert!(
                Instant::now() < deadline,
                "unshare never made a network namespace"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let slirp = tool("slirp4netns")
            .args(["--configure", "--mtu=65520", &pid, "tap0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let ns = Namespace { holder, slirp, pid };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = ns
                .command("ip")
                .args(["-o", "-4", "addr", "show", "tap0"])
                .output()
                .unwrap();
            if String::from_utf8_lossy(&out.stdout).contains("10.0.2.100") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "slirp4netns never configured tap0"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        ns
    }

    /// The prefix that runs a program inside.
    pub fn prefix(&self) -> Vec<String> {
        [
            "nsenter",
            "-t",
            &self.pid,
            "-U",
            "-n",
            "--preserve-credentials",
        ]
        .map(String::from)
        .to_vec()
    }

    fn command(&self, program: &str) -> Command {
        let prefix = self.prefix();
        let mut c = tool(&prefix[0]);
        c.args(&prefix[1..]).arg(program);
        c
    }

    /// Brings the link to the host down (a partition) or up again.
    pub fn link(&self, up: bool) {
        let status = self
            .command("ip")
            .args(["link", "set", "tap0", if up { "up" } else { "down" }])
            .status()
            .unwrap();
        assert!(status.success(), "ip link set tap0: {status}");
    }
}
