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
        let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("gpumesh"));
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
