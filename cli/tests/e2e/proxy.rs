//! A JSON-RPC proxy in front of the local node that fails the way a real endpoint does mid-send:
//! it forwards requests one by one and, once it has forwarded a `sendTransaction` (so the node
//! has the transaction), withholds its answer and, if asked, answers nothing more at all.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// After forwarding the first sendTransaction, answer nothing: that request and every later
    /// one hang (a node that stalls, as under `kill -STOP`).
    StallAfterSend,
    /// Withhold the answers to sendTransaction only; every other request is forwarded (an answer
    /// lost on the way back).
    LoseSendAnswers,
}

pub struct Proxy {
    pub url: String,
    stop: Arc<AtomicBool>,
    /// Set once a sendTransaction reached the node.
    pub sent: Arc<AtomicBool>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl Proxy {
    /// Listens on a free port and forwards to `upstream` (an `http://host:port` URL).
    pub fn start(upstream: &str, failure: Failure) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicBool::new(false));
        let stalled = Arc::new(AtomicBool::new(false));
        let (stop2, sent2) = (stop.clone(), sent.clone());
        std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let (upstream, stop, sent, stalled) = (
                            upstream.clone(),
                            stop2.clone(),
                            sent2.clone(),
                            stalled.clone(),
                        );
                        std::thread::spawn(move || {
                            serve(client, &upstream, failure, &stop, &sent, &stalled)
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Proxy { url, stop, sent }
    }
}

/// One client connection: one request, forwarded on its own upstream connection; every answer
/// says `Connection: close`, so the client opens a new connection for the next.
fn serve(
    client: TcpStream,
    upstream: &str,
    failure: Failure,
    stop: &AtomicBool,
    sent: &AtomicBool,
    stalled: &AtomicBool,
) {
    let _ = client.set_nonblocking(false);
    let mut reader = BufReader::new(match client.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut client = client;
    let Some((path, body)) = read_request(&mut reader) else {
        return;
    };
    if stalled.load(Ordering::SeqCst) {
        return hold(&mut client, stop);
    }
    let is_send = body.contains("\"sendTransaction\"");
    let Some(response) = forward(upstream, &path, &body) else {
        return;
    };
    if is_send {
        sent.store(true, Ordering::SeqCst);
        if failure == Failure::StallAfterSend {
            stalled.store(true, Ordering::SeqCst);
        }
        return hold(&mut client, stop);
    }
    let _ = client.write_all(&response);
}

/// Keeps a connection open and silent until the client gives up or the proxy stops.
fn hold(client: &mut TcpStream, stop: &AtomicBool) {
    let _ = client.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = [0u8; 1024];
    while !stop.load(Ordering::SeqCst) {
        match client.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return,
        }
    }
}

/// One HTTP/1.1 request with a Content-Length body: its path and body.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<(String, String)> {
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).ok()? == 0 {
        return None;
    }
    let path = request_line.split_whitespace().nth(1)?.to_string();
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).ok()?;
    Some((path, String::from_utf8(body).ok()?))
}

/// Sends the request to the node on a fresh connection; the whole answer, rewritten to close
/// the client's connection after it.
fn forward(upstream: &str, path: &str, body: &str) -> Option<Vec<u8>> {
    let mut node = TcpStream::connect(upstream).ok()?;
    node.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {upstream}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    node.write_all(request.as_bytes()).ok()?;
    let mut reader = BufReader::new(node);
    let mut head = Vec::new();
    let mut length = None;
    let mut chunked = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        if let Some((name, value)) = trimmed.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            }
            if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.to_ascii_lowercase().contains("chunked");
            }
            if name.eq_ignore_ascii_case("connection") {
                continue;
            }
        }
        head.extend_from_slice(trimmed.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    let mut body = Vec::new();
    match length {
        Some(n) => {
            body.resize(n, 0);
            reader.read_exact(&mut body).ok()?;
        }
        None => {
            reader.read_to_end(&mut body).ok()?;
        }
    }
    if length.is_none() && !chunked {
        // A body delimited by the connection's end: give it a length for the client.
        head.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    head.extend_from_slice(b"Connection: close\r\n\r\n");
    head.extend_from_slice(&body);
    Some(head)
}

/// A TCP proxy in front of the node's RPC and websocket ports that can stall: while paused it
/// moves no byte in either direction and opens no new upstream connection (what a client sees
/// of a node under `kill -STOP`: connections accepted by the kernel, nothing answered); resumed,
/// everything held goes through. One instance per upstream port.
pub struct Stall {
    pub addr: String,
    paused: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Drop for Stall {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.paused.store(false, Ordering::SeqCst);
    }
}

impl Stall {
    /// Listens on a free port and forwards to `upstream` (`host:port`).
    pub fn start(upstream: &str) -> Stall {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let upstream = upstream.to_string();
        let paused = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (paused.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                if p.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                match listener.accept() {
                    Ok((client, _)) => {
                        let Ok(server) = TcpStream::connect(&upstream) else {
                            continue;
                        };
                        let _ = client.set_nonblocking(false);
                        for (from, to) in [
                            (client.try_clone(), server.try_clone()),
                            (server.try_clone(), client.try_clone()),
                        ] {
                            let (Ok(from), Ok(to)) = (from, to) else {
                                continue;
                            };
                            let (p, s) = (p.clone(), s.clone());
                            std::thread::spawn(move || pump(from, to, &p, &s));
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Stall { addr, paused, stop }
    }

    pub fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
    }

    pub fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
    }
}

/// Copies `from` to `to` until either closes, holding every byte while `paused`.
fn pump(mut from: TcpStream, mut to: TcpStream, paused: &AtomicBool, stop: &AtomicBool) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        while paused.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
        }
        if stop.load(Ordering::SeqCst) {
            break;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                // Bytes read just as the pause began are held until it ends.
                while paused.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}
