//! The WebSocket to the orchestrator: connect, the handshake (Welcome → Hello signed with the
//! node key → Ready), one JSON message per text frame, WebSocket pings for the round trip and to
//! notice a dead peer, and the reconnect delay (exponential, with jitter).

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use gpumesh_protocol::wire::{
    self, ErrorCode, HardwareReport, LeaseAssignment, MAX_FRAME_BYTES, ToOrchestrator, ToWorker,
    WIRE_VERSION,
};
use gpumesh_protocol::{Key, SigningKey};
use rand::Rng;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long one step of the handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("connecting to {url}: {why}")]
    Connect { url: String, why: String },
    #[error("the connection dropped: {0}")]
    Dropped(String),
    #[error("the orchestrator broke the protocol: {0}")]
    Protocol(String),
    /// The orchestrator refused the session.
    #[error("the orchestrator refused the session ({code:?}): {message}")]
    Refused { code: ErrorCode, message: String },
    #[error(
        "the orchestrator speaks wire version {theirs}, this daemon {WIRE_VERSION}: upgrade the one that is behind"
    )]
    Version { theirs: u16 },
    #[error(
        "the orchestrator serves program {theirs}, but this worker is registered with program {ours}: check --program-id and --orchestrator"
    )]
    WrongProgram { theirs: Key, ours: Key },
}

impl SessionError {
    /// Errors the operator must fix; retrying cannot help.
    pub fn is_fatal(&self) -> bool {
        match self {
            SessionError::Version { .. } | SessionError::WrongProgram { .. } => true,
            SessionError::Refused { code, .. } => matches!(
                code,
                ErrorCode::AuthFailed | ErrorCode::VersionMismatch | ErrorCode::HardwareMismatch
            ),
            _ => false,
        }
    }
}

/// What the daemon says about itself in Hello.
#[derive(Clone)]
pub struct Identity {
    pub node_key: SigningKey,
    pub worker: Key,
    pub program_id: Key,
    pub hardware: HardwareReport,
}

/// An open session after Ready.
pub struct Session {
    sink: SplitSink<Ws, Message>,
    stream: SplitStream<Ws>,
    pub heartbeat: Duration,
    pub market: Key,
    /// The service settles worker receipts (its Welcome said so).
    pub worker_receipts: bool,
    /// Heartbeats sent on this connection.
    pub heartbeats: u64,
    /// The last round trip measured, µs.
    pub rtt_us: Option<u32>,
    ping_sent: Option<(u64, Instant)>,
    pings: u64,
    pub last_heard: Instant,
    send_timeout: Duration,
}

/// One thing read from the connection.
pub enum Incoming {
    Message(Box<ToWorker>),
    /// A frame that was not a valid message (answered with an Error by the caller).
    Bad(wire::DecodeError),
    /// Control frames and the like.
    Nothing,
}

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES))
}

async fn next_text(stream: &mut SplitStream<Ws>) -> Result<String, SessionError> {
    loop {
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.next()).await {
            Err(_) => {
                return Err(SessionError::Dropped(
                    "no answer during the handshake".into(),
                ));
            }
            Ok(None) => return Err(SessionError::Dropped("closed during the handshake".into())),
            Ok(Some(Err(e))) => return Err(SessionError::Dropped(e.to_string())),
            Ok(Some(Ok(Message::Text(text)))) => return Ok(text.to_string()),
            Ok(Some(Ok(Message::Close(frame)))) => {
                return Err(SessionError::Dropped(format!(
                    "closed during the handshake{}",
                    frame.map(|f| format!(": {}", f.reason)).unwrap_or_default()
                )));
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// Connects, authenticates, and returns the session and the leases Ready lists.
pub async fn connect(
    url: &str,
    me: &Identity,
) -> Result<(Session, Vec<LeaseAssignment>), SessionError> {
    let connecting = tokio_tungstenite::connect_async_with_config(url, Some(ws_config()), true);
    let (ws, _) = tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting)
        .await
        .map_err(|_| SessionError::Connect {
            url: url.into(),
            why: "timed out".into(),
        })?
        .map_err(|e| SessionError::Connect {
            url: url.into(),
            why: e.to_string(),
        })?;
    let (mut sink, mut stream) = ws.split();
    let welcome: ToWorker = wire::decode(&next_text(&mut stream).await?)
        .map_err(|e| SessionError::Protocol(e.to_string()))?;
    let (nonce, program_id, market, heartbeat_ms, worker_receipts) = match welcome {
        ToWorker::Welcome {
            version,
            nonce,
            program_id,
            market,
            heartbeat_ms,
            worker_receipts,
        } => {
            if version != WIRE_VERSION {
                let _ = sink
                    .send(Message::text(wire::encode(&ToOrchestrator::Error {
                        code: ErrorCode::VersionMismatch,
                        message: format!("this daemon speaks wire version {WIRE_VERSION}"),
                    })))
                    .await;
                return Err(SessionError::Version { theirs: version });
            }
            (nonce, program_id, market, heartbeat_ms, worker_receipts)
        }
        ToWorker::Error { code, message } => return Err(SessionError::Refused { code, message }),
        other => {
            return Err(SessionError::Protocol(format!(
                "expected welcome, got {}",
                kind(&other)
            )));
        }
    };
    if program_id != me.program_id {
        return Err(SessionError::WrongProgram {
            theirs: program_id,
            ours: me.program_id,
        });
    }
    let hello = ToOrchestrator::Hello {
        version: WIRE_VERSION,
        node_key: Key(me.node_key.verifying_key().to_bytes()),
        worker: me.worker,
        hardware: me.hardware.clone(),
        signature: wire::sign_auth(&me.node_key, &me.program_id, &me.worker, &nonce),
        agent: format!("gpumesh-worker/{}", env!("CARGO_PKG_VERSION")),
    };
    tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        sink.send(Message::text(wire::encode(&hello))),
    )
    .await
    .map_err(|_| SessionError::Dropped("sending hello timed out".into()))?
    .map_err(|e| SessionError::Dropped(e.to_string()))?;
    let ready: ToWorker = wire::decode(&next_text(&mut stream).await?)
        .map_err(|e| SessionError::Protocol(e.to_string()))?;
    let leases = match ready {
        ToWorker::Ready { worker, leases } => {
            if worker != me.worker {
                return Err(SessionError::Protocol(format!(
                    "ready names worker {worker}, this daemon is {}",
                    me.worker
                )));
            }
            leases
        }
        ToWorker::Error { code, message } => return Err(SessionError::Refused { code, message }),
        other => {
            return Err(SessionError::Protocol(format!(
                "expected ready, got {}",
                kind(&other)
            )));
        }
    };
    // A heartbeat period outside 100 ms .. 10 min is a mistake on the other side; keep it sane.
    let heartbeat = Duration::from_millis(u64::from(heartbeat_ms).clamp(100, 600_000));
    Ok((
        Session {
            sink,
            stream,
            heartbeat,
            market,
            worker_receipts,
            heartbeats: 0,
            rtt_us: None,
            ping_sent: None,
            pings: 0,
            last_heard: Instant::now(),
            send_timeout: (heartbeat * 3).max(Duration::from_secs(10)),
        },
        leases,
    ))
}

/// A message's kind for error texts.
pub fn kind(m: &ToWorker) -> &'static str {
    match m {
        ToWorker::Welcome { .. } => "welcome",
        ToWorker::Ready { .. } => "ready",
        ToWorker::StartJob(_) => "start_job",
        ToWorker::StopJob { .. } => "stop_job",
        ToWorker::Checkpoints { .. } => "checkpoints",
        ToWorker::ReceiptAck { .. } => "receipt_ack",
        ToWorker::Ping { .. } => "ping",
        ToWorker::Challenge(_) => "challenge",
        ToWorker::OpenRequest(_) => "open_request",
        ToWorker::Error { .. } => "error",
    }
}

impl Session {
    /// Sends one message; a peer that does not take it in time counts as gone.
    pub async fn send(&mut self, message: &ToOrchestrator) -> Result<(), SessionError> {
        let text = wire::encode(message);
        if text.len() > MAX_FRAME_BYTES {
            return Err(SessionError::Protocol(format!(
                "a {}-byte message is over the frame limit",
                text.len()
            )));
        }
        tokio::time::timeout(self.send_timeout, self.sink.send(Message::text(text)))
            .await
            .map_err(|_| SessionError::Dropped("the orchestrator stopped taking messages".into()))?
            .map_err(|e| SessionError::Dropped(e.to_string()))
    }

    /// Reads the next frame.
    pub async fn recv(&mut self) -> Result<Incoming, SessionError> {
        let frame = match self.stream.next().await {
            None => return Err(SessionError::Dropped("closed by the orchestrator".into())),
            Some(Err(e)) => return Err(SessionError::Dropped(e.to_string())),
            Some(Ok(frame)) => frame,
        };
        self.last_heard = Instant::now();
        match frame {
            Message::Text(text) => Ok(match wire::decode::<ToWorker>(&text) {
                Ok(m) => Incoming::Message(Box::new(m)),
                Err(e) => Incoming::Bad(e),
            }),
            Message::Pong(payload) => {
                if let (Some((id, sent)), Ok(bytes)) =
                    (self.ping_sent, <[u8; 8]>::try_from(payload.as_ref()))
                    && u64::from_le_bytes(bytes) == id
                {
                    self.rtt_us = Some(sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                    self.ping_sent = None;
                }
                Ok(Incoming::Nothing)
            }
            Message::Close(frame) => Err(SessionError::Dropped(format!(
                "closed by the orchestrator{}",
                frame.map(|f| format!(": {}", f.reason)).unwrap_or_default()
            ))),
            Message::Binary(_) => Ok(Incoming::Bad(wire::DecodeError::Malformed(
                "binary frames are not part of the protocol".into(),
            ))),
            _ => Ok(Incoming::Nothing),
        }
    }

    /// Sends a WebSocket ping (the round trip comes back with its pong); fails when the peer has
    /// been silent for three heartbeat periods.
    pub async fn ping(&mut self) -> Result<(), SessionError> {
        let silence = (self.heartbeat * 3).max(Duration::from_secs(5));
        if self.last_heard.elapsed() > silence {
            return Err(SessionError::Dropped(format!(
                "nothing heard for {} ms",
                self.last_heard.elapsed().as_millis()
            )));
        }
        self.pings += 1;
        let id = self.pings;
        self.ping_sent = Some((id, Instant::now()));
        tokio::time::timeout(
            self.send_timeout,
            self.sink
                .send(Message::Ping(id.to_le_bytes().to_vec().into())),
        )
        .await
        .map_err(|_| SessionError::Dropped("the orchestrator stopped taking messages".into()))?
        .map_err(|e| SessionError::Dropped(e.to_string()))
    }

    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.sink.close()).await;
    }
}

/// Reconnect delays: doubling from `initial` up to `max`, each drawn uniformly from its upper
/// half (so many workers cut off at once do not come back in step).
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max: max.max(initial),
            attempt: 0,
        }
    }

    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self
            .initial
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let ms = ceiling.as_millis() as u64;
        Duration::from_millis(rand::rng().random_range(ms / 2..=ms.max(1)))
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1_000));
        let delays: Vec<u64> = (0..8).map(|_| b.next_delay().as_millis() as u64).collect();
        for (i, d) in delays.iter().enumerate() {
            let ceiling = (100u64 << i).min(1_000);
            assert!((ceiling / 2..=ceiling).contains(d), "attempt {i}: {d} ms");
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn only_operator_errors_are_fatal() {
        let refused = |code| SessionError::Refused {
            code,
            message: String::new(),
        };
        assert!(refused(ErrorCode::AuthFailed).is_fatal());
        assert!(!refused(ErrorCode::NotRegistered).is_fatal());
        assert!(!refused(ErrorCode::Internal).is_fatal());
        assert!(SessionError::Version { theirs: 9 }.is_fatal());
        assert!(!SessionError::Dropped("x".into()).is_fatal());
    }
}
