//! Job output on its way to the orchestrator: one bounded buffer per lease between the job's
//! output stream and the WebSocket. A job that writes faster than the connection (or the
//! orchestrator) takes its output loses the excess, never the daemon's memory: bytes beyond the
//! buffer are dropped, counted, and a marker line takes their place in the stream.

use gpumesh_protocol::wire::{LeaseId, LogStream, MAX_LOG_CHUNK_BYTES};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use tokio::sync::Notify;

enum Piece {
    Bytes(LogStream, Vec<u8>),
    /// Output dropped here, bytes.
    Dropped(u64),
}

#[derive(Default)]
struct LeaseLog {
    pieces: VecDeque<Piece>,
    bytes: usize,
    dropped_total: u64,
    /// The next chunk's number.
    next_seq: u64,
}

/// One chunk ready for a `JobLog` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub lease: LeaseId,
    pub stream: LogStream,
    pub seq: u64,
    pub data: String,
}

/// The buffers of all leases.
pub struct LogHub {
    leases: Mutex<BTreeMap<LeaseId, LeaseLog>>,
    capacity: usize,
    /// Woken when output arrives.
    pub ready: Notify,
}

/// The marker that stands for dropped output.
pub fn drop_marker(bytes: u64) -> String {
    format!(
        "\n[gpumesh: {bytes} bytes of output dropped here: the job wrote faster than the orchestrator took it]\n"
    )
}

impl LogHub {
    /// `capacity`: bytes held per lease.
    pub fn new(capacity: usize) -> Self {
        LogHub {
            leases: Mutex::new(BTreeMap::new()),
            capacity: capacity.max(MAX_LOG_CHUNK_BYTES),
            ready: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<LeaseId, LeaseLog>> {
        // A panic while holding the lock cannot leave the map half-changed in a way that matters
        // for logs; go on with it.
        self.leases.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a lease's buffer; its chunks are numbered from `first_seq`.
    pub fn open(&self, lease: LeaseId, first_seq: u64) {
        self.lock().entry(lease).or_insert_with(|| LeaseLog {
            next_seq: first_seq.max(1),
            ..Default::default()
        });
    }

    /// Closes a lease's buffer, dropping what it still holds.
    pub fn close(&self, lease: LeaseId) {
        self.lock().remove(&lease);
    }

    /// Adds output; what does not fit is dropped and counted.
    pub fn push(&self, lease: LeaseId, stream: LogStream, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        {
            let mut leases = self.lock();
            let Some(log) = leases.get_mut(&lease) else {
                return;
            };
            let room = self.capacity.saturating_sub(log.bytes);
            let (kept, dropped) = data.split_at(data.len().min(room));
            if !kept.is_empty() {
                match log.pieces.back_mut() {
                    Some(Piece::Bytes(s, bytes)) if *s == stream => bytes.extend_from_slice(kept),
                    _ => log.pieces.push_back(Piece::Bytes(stream, kept.to_vec())),
                }
                log.bytes += kept.len();
            }
            if !dropped.is_empty() {
                log.dropped_total += dropped.len() as u64;
                match log.pieces.back_mut() {
                    Some(Piece::Dropped(n)) => *n += dropped.len() as u64,
                    _ => log.pieces.push_back(Piece::Dropped(dropped.len() as u64)),
                }
            }
        }
        self.ready.notify_one();
    }

    /// Bytes dropped from a lease's output so far.
    pub fn dropped(&self, lease: LeaseId) -> u64 {
        self.lock().get(&lease).map_or(0, |l| l.dropped_total)
    }

    /// The next chunk number a lease will use.
    pub fn next_seq(&self, lease: LeaseId) -> u64 {
        self.lock().get(&lease).map_or(1, |l| l.next_seq)
    }

    pub fn is_empty(&self) -> bool {
        self.lock().values().all(|l| l.pieces.is_empty())
    }

    /// Bytes waiting for one lease.
    pub fn pending(&self, lease: LeaseId) -> usize {
        self.lock().get(&lease).map_or(0, |l| l.bytes)
    }

    /// Takes the next chunk of `lease`, or of any lease (the lowest with output) when None.
    pub fn take(&self, lease: Option<LeaseId>) -> Option<Chunk> {
        let mut leases = self.lock();
        let (id, log) = match lease {
            Some(id) => (id, leases.get_mut(&id)?),
            None => {
                let (id, log) = leases.iter_mut().find(|(_, l)| !l.pieces.is_empty())?;
                (*id, log)
            }
        };
        let piece = log.pieces.front_mut()?;
        let (stream, data) = match piece {
            Piece::Dropped(n) => {
                let text = drop_marker(*n);
                log.pieces.pop_front();
                (LogStream::Stderr, text)
            }
            Piece::Bytes(stream, bytes) => {
                let stream = *stream;
                let (text, used) = utf8_prefix(bytes, MAX_LOG_CHUNK_BYTES);
                bytes.drain(..used);
                log.bytes -= used;
                if bytes.is_empty() {
                    log.pieces.pop_front();
                }
                (stream, text)
            }
        };
        let seq = log.next_seq;
        log.next_seq += 1;
        Some(Chunk {
            lease: id,
            stream,
            seq,
            data,
        })
    }
}

/// Text of at most `limit` bytes from the front of `bytes`, and how many bytes it used. Cuts at a
/// character boundary when one is near; bytes that are not UTF-8 become U+FFFD.
fn utf8_prefix(bytes: &[u8], limit: usize) -> (String, usize) {
    let mut end = bytes.len().min(limit);
    loop {
        // Do not split a character when more follows: back up over continuation bytes.
        if end < bytes.len() {
            let mut cut = end;
            while cut > 0 && end - cut < 3 && (bytes[cut] & 0xC0) == 0x80 {
                cut -= 1;
            }
            if cut > 0 && (bytes[cut] & 0xC0) != 0x80 {
                end = cut;
            }
        }
        let text = String::from_utf8_lossy(&bytes[..end]);
        if text.len() <= limit || end <= 1 {
            return (text.into_owned(), end);
        }
        // Replacement characters made it longer than the limit: take less.
        end = (end * 3 / 4).max(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpumesh_protocol::Key;

    fn lease() -> LeaseId {
        LeaseId {
            lease: Key([1; 32]),
            nonce: 1,
        }
    }

    #[test]
    fn output_is_chunked_numbered_and_bounded() {
        let hub = LogHub::new(MAX_LOG_CHUNK_BYTES * 2);
        hub.open(lease(), 5);
        hub.push(lease(), LogStream::Stdout, b"hello ");
        hub.push(lease(), LogStream::Stdout, b"world\n");
        hub.push(lease(), LogStream::Stderr, b"oops\n");
        let a = hub.take(None).expect("chunk");
        assert_eq!(
            (a.seq, a.stream, a.data.as_str()),
            (5, LogStream::Stdout, "hello world\n")
        );
        let b = hub.take(Some(lease())).expect("chunk");
        assert_eq!(
            (b.seq, b.stream, b.data.as_str()),
            (6, LogStream::Stderr, "oops\n")
        );
        assert!(hub.take(None).is_none() && hub.is_empty());

        // A flood: the buffer holds two chunks, the rest is dropped and marked.
        let flood = vec![b'x'; MAX_LOG_CHUNK_BYTES * 5];
        hub.push(lease(), LogStream::Stdout, &flood);
        hub.push(lease(), LogStream::Stdout, b"more");
        assert_eq!(hub.dropped(lease()), (MAX_LOG_CHUNK_BYTES * 3 + 4) as u64);
        let first = hub.take(None).expect("chunk");
        assert_eq!(first.data.len(), MAX_LOG_CHUNK_BYTES);
        let second = hub.take(None).expect("chunk");
        assert_eq!(second.data.len(), MAX_LOG_CHUNK_BYTES);
        let marker = hub.take(None).expect("marker");
        assert_eq!(marker.stream, LogStream::Stderr);
        assert!(
            marker.data.contains(&format!(
                "{} bytes of output dropped",
                MAX_LOG_CHUNK_BYTES * 3 + 4
            )),
            "{}",
            marker.data
        );
        // Room again: output after the marker gets through.
        hub.push(lease(), LogStream::Stdout, b"after\n");
        assert_eq!(hub.take(None).expect("chunk").data, "after\n");
        assert_eq!(hub.next_seq(lease()), 11);
    }

    #[test]
    fn chunks_do_not_split_characters_and_survive_binary_output() {
        let mut text = "a".repeat(MAX_LOG_CHUNK_BYTES - 1).into_bytes();
        text.extend_from_slice("é and more".as_bytes());
        let (first, used) = utf8_prefix(&text, MAX_LOG_CHUNK_BYTES);
        assert_eq!(
            used,
            MAX_LOG_CHUNK_BYTES - 1,
            "the two-byte é waits for the next chunk"
        );
        assert!(first.chars().all(|c| c == 'a'));
        let binary = vec![0xFFu8; MAX_LOG_CHUNK_BYTES * 2];
        let (lossy, used) = utf8_prefix(&binary, MAX_LOG_CHUNK_BYTES);
        assert!(lossy.len() <= MAX_LOG_CHUNK_BYTES && used > 0);
        assert!(lossy.chars().all(|c| c == '\u{FFFD}'));
    }
}
