//! A real browser for the console's tests: Debian's `chromium`, headless, driven through
//! `chromedriver` (WebDriver) with fantoccini. Missing either is a failure that says how to
//! install them, never a skip: `apt-get install -y chromium chromium-driver` (CI's `.ci/run` does).
//!
//! Each test gets its own chromedriver on a free port and a fresh profile directory; the
//! browser's console (every level) is read back through chromedriver's log endpoint, so a test
//! can require that a page logged no error.

#![allow(dead_code)]

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where screenshots go: `<target>/tmp/console-screenshots`.
pub fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots")
}

fn find(env: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p));
    }
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

/// One console message the browser logged.
#[derive(Debug, Clone)]
pub struct LogEntry {
    pub level: String,
    pub message: String,
}

pub struct Browser {
    pub client: Client,
    driver: Child,
    driver_addr: std::net::SocketAddr,
    session: String,
    _profile: tempfile::TempDir,
    /// Console entries read so far.
    seen: Vec<LogEntry>,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a `width` × `height` window.
    pub async fn start(width: u32, height: u32) -> Browser {
        let driver_bin = find("CHROMEDRIVER", &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"])
            .unwrap_or_else(|| panic!("chromedriver is not installed: apt-get install -y chromium chromium-driver (or set CHROMEDRIVER)"));
        // The binary itself: Debian's /usr/bin/chromium is a wrapper script.
        let chromium = find("CHROMIUM", &["/usr/lib/chromium/chromium", "/usr/bin/chromium"])
            .unwrap_or_else(|| panic!("chromium is not installed: apt-get install -y chromium chromium-driver (or set CHROMIUM)"));
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            l.local_addr().expect("addr").port()
        };
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", driver_bin.display()));
        let driver_addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(driver_addr).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on {driver_addr}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().expect("profile dir");
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-dev-shm-usage",
                    "--hide-scrollbars",
                    format!("--user-data-dir={}", profile.path().display()),
                    format!("--window-size={width},{height}"),
                ],
            },
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        let caps = match caps {
            Value::Object(m) => m,
            _ => unreachable!("an object"),
        };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://{driver_addr}"))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start a browser session ({}): {e}",
                    chromium.display()
                )
            });
        let session = client
            .session_id()
            .await
            .expect("session id")
            .expect("a session");
        client
            .set_window_size(width, height)
            .await
            .expect("window size");
        Browser {
            client,
            driver,
            driver_addr,
            session,
            _profile: profile,
            seen: vec![],
        }
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigate");
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Polls `script` (returning a boolean) until it is true; false after `timeout`.
    pub async fn until(&self, timeout: Duration, script: &str, args: Vec<Value>) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.js(script, args.clone()).await == Value::Bool(true) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The page's hash route, then waits until that page has drawn its data.
    pub async fn open(&self, base: &str, route: &str, page: &str) {
        self.goto(&format!("{base}/console/#/{route}")).await;
        assert!(
            self.until(
                Duration::from_secs(20),
                "return document.documentElement.dataset.ready === arguments[0];",
                vec![json!(page)]
            )
            .await,
            "the {page} page did not render its data"
        );
    }

    /// The text of the first element matching `selector` (None when there is none).
    pub async fn text(&self, selector: &str) -> Option<String> {
        let v = self
            .js(
                "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
                vec![json!(selector)],
            )
            .await;
        v.as_str().map(str::to_string)
    }

    /// `data-raw` of the element with `data-field=field`.
    pub async fn raw(&self, field: &str) -> Option<String> {
        let v = self
            .js(
                "const e = document.querySelector(`[data-field=\"${arguments[0]}\"]`); return e ? e.dataset.raw ?? null : null;",
                vec![json!(field)],
            )
            .await;
        v.as_str().map(str::to_string)
    }

    /// Every console message logged since the last call.
    pub async fn console(&mut self) -> Vec<LogEntry> {
        let (status, body) = driver_post(
            self.driver_addr,
            &format!("/session/{}/se/log", self.session),
            r#"{"type":"browser"}"#,
        )
        .await;
        assert_eq!(status, 200, "chromedriver's log: {body}");
        let v: Value = serde_json::from_str(&body).expect("log JSON");
        let entries: Vec<LogEntry> = v["value"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|e| LogEntry {
                level: e["level"].as_str().unwrap_or_default().to_string(),
                message: e["message"].as_str().unwrap_or_default().to_string(),
            })
            .collect();
        self.seen.extend(entries.iter().cloned());
        entries
    }

    /// Fails the test if the page logged an error (or a warning) since the last check.
    pub async fn assert_no_console_errors(&mut self, what: &str) {
        let entries = self.console().await;
        let bad: Vec<&LogEntry> = entries
            .iter()
            .filter(|e| e.level == "SEVERE" || e.level == "WARNING")
            .collect();
        assert!(bad.is_empty(), "{what}: the browser's console: {bad:#?}");
    }

    /// Writes a PNG of the window to the screenshot directory; its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    /// A PNG of the whole page (the window stretched to the page's height, then put back).
    pub async fn screenshot_page(&self, name: &str, width: u32, height: u32) -> PathBuf {
        let full = self
            .js(
                "return Math.ceil(document.documentElement.scrollHeight);",
                vec![],
            )
            .await
            .as_u64()
            .unwrap_or(u64::from(height)) as u32;
        self.client
            .set_window_size(width, full.clamp(height, 8_000))
            .await
            .expect("resize");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let path = self.screenshot(name).await;
        self.client
            .set_window_size(width, height)
            .await
            .expect("resize back");
        path
    }

    /// Presses a key in the focused element (as a person does).
    pub async fn press(&self, key: fantoccini::key::Key) {
        self.chord(&[key]).await;
    }

    /// Presses `keys` together (held in order, released in reverse), e.g. Shift+Tab.
    pub async fn chord(&self, keys: &[fantoccini::key::Key]) {
        use fantoccini::actions::{InputSource, KeyAction, KeyActions};
        let mut actions = KeyActions::new("keyboard".to_string());
        for &key in keys {
            actions = actions.then(KeyAction::Down {
                value: char::from(key),
            });
        }
        for &key in keys.iter().rev() {
            actions = actions.then(KeyAction::Up {
                value: char::from(key),
            });
        }
        self.client
            .perform_actions(actions)
            .await
            .expect("a key press");
    }

    pub async fn click(&self, selector: &str) {
        self.client
            .find(Locator::Css(selector))
            .await
            .unwrap_or_else(|e| panic!("no {selector}: {e}"))
            .click()
            .await
            .expect("click");
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// POSTs JSON to chromedriver and reads one response by its `Content-Length` (chromedriver keeps
/// the connection open whatever the request says, so reading to the end would wait forever).
async fn driver_post(addr: std::net::SocketAddr, path: &str, body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to chromedriver");
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write to chromedriver");
    let mut response = Vec::new();
    let mut chunk = [0u8; 8192];
    let read = async {
        loop {
            let n = stream
                .read(&mut chunk)
                .await
                .expect("read from chromedriver");
            if n == 0 {
                break;
            }
            response.extend_from_slice(&chunk[..n]);
            let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&response[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if let Some(length) = length
                && response.len() >= end + 4 + length
            {
                response.truncate(end + 4 + length);
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("chromedriver answered within 20 s");
    let text = String::from_utf8_lossy(&response).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

impl Drop for Browser {
    /// Ends the browser session (chromedriver then stops Chromium) before stopping the driver,
    /// also when a test fails, so no browser outlives its test.
    fn drop(&mut self) {
        use std::io::{Read, Write};
        if let Ok(mut s) =
            std::net::TcpStream::connect_timeout(&self.driver_addr, Duration::from_secs(1))
        {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = write!(
                s,
                "DELETE /session/{} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\n\r\n",
                self.session, self.driver_addr
            );
            let _ = s.read(&mut [0u8; 1024]);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// The lowest contrast ratio (WCAG 2) of text against its background among the elements
/// `selector` matches on the page, with the worst element's description.
pub const CONTRAST_SCRIPT: &str = r#"
const parse = (c) => { const m = c.match(/rgba?\(([^)]+)\)/); if (!m) return null;
  const p = m[1].split(/[ ,\/]+/).filter(Boolean).map(Number); return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 }; };
const lum = ({ r, g, b }) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
  return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
const bg = (el) => { let layers = []; for (let e = el; e; e = e.parentElement) { const c = parse(getComputedStyle(e).backgroundColor);
  if (c && c.a > 0) { layers.push(c); if (c.a >= 1) break; } }
  let out = { r: 255, g: 255, b: 255 }; for (const c of layers.reverse()) out = { r: c.r * c.a + out.r * (1 - c.a), g: c.g * c.a + out.g * (1 - c.a), b: c.b * c.a + out.b * (1 - c.a) };
  return out; };
let worst = { ratio: 99, what: null };
for (const el of document.querySelectorAll(arguments[0])) {
  if (!el.textContent.trim() || el.getClientRects().length === 0) continue;
  const fg = parse(getComputedStyle(el).color); const b = bg(el);
  const [l1, l2] = [lum(fg), lum(b)].sort((x, y) => y - x); const ratio = (l1 + 0.05) / (l2 + 0.05);
  if (ratio < worst.ratio) worst = { ratio, what: `${el.tagName.toLowerCase()}.${el.className} "${el.textContent.trim().slice(0, 40)}" ${getComputedStyle(el).color} on rgb(${Math.round(b.r)},${Math.round(b.g)},${Math.round(b.b)})` };
}
return worst;
"#;
