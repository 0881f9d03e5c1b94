//! Length-prefixed Kafka frames: `[i32 length][length bytes]`.
//!
//! Hand-written rather than built on a codec crate because this is the per-frame hot path and it
//! must stay zero-copy: a frame is split off the connection's read buffer as a `BytesMut` that
//! shares the buffer's allocation, so forwarding it costs no copy and no allocation once the
//! buffer has grown to the working size. Parsing is the two-step shape of mini-redis: a cheap
//! [`check`] on the bytes so far, then [`FrameReader::read_frame`] advances only after a whole frame.

use std::time::Duration;

use bytes::buf::Chain;
use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

/// Size of the length prefix.
pub const LEN_PREFIX: usize = 4;

/// Smallest read; the buffer grows to the largest frame in flight and is reused.
const MIN_READ: usize = 4 * 1024;
/// An empty buffer larger than this is given back rather than kept by an idle connection.
const KEEP_IDLE: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame length {len} is negative")]
    NegativeLength { len: i32 },
    #[error("frame length {len} exceeds the maximum of {max} bytes")]
    Oversized { len: usize, max: usize },
    #[error("frame length {len} is shorter than the {min} bytes of a header")]
    Undersized { len: usize, min: usize },
    #[error("connection closed in the middle of a frame ({have} of {want} bytes)")]
    Truncated { have: usize, want: usize },
    #[error("no request for {0:?} (idle)")]
    Idle(Duration),
    #[error("a frame took longer than {0:?} to arrive (slow client)")]
    Slow(Duration),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// A frame to write, in two parts: `head`, then `tail`. Most are whole (`tail` empty); a
/// spliced Metadata answer (`rewrite::metadata`) is a head built anew (length, header, brokers,
/// controller id) and the rest of the broker's frame as a view of its buffer: at 200,000
/// partitions, 9 MB a copy into one buffer would cost for nothing, as the parts are written
/// with one vectored write ([`OutFrame::into_buf`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutFrame {
    pub head: Bytes,
    pub tail: Bytes,
}

impl From<Bytes> for OutFrame {
    fn from(whole: Bytes) -> OutFrame {
        OutFrame {
            head: whole,
            tail: Bytes::new(),
        }
    }
}

impl OutFrame {
    /// Its length on the wire (length prefix included).
    pub fn len(&self) -> usize {
        self.head.len() + self.tail.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The frame, if it is in one piece (`Err`: itself, in two).
    pub fn into_whole(self) -> Result<Bytes, OutFrame> {
        if self.tail.is_empty() {
            Ok(self.head)
        } else {
            Err(self)
        }
    }

    /// Both parts in one buffer: a copy, for those that read the frame as one (tests, fuzz
    /// targets); the write path takes [`OutFrame::into_buf`].
    pub fn to_bytes(&self) -> Bytes {
        if self.tail.is_empty() {
            return self.head.clone();
        }
        let mut b = BytesMut::with_capacity(self.len());
        b.extend_from_slice(&self.head);
        b.extend_from_slice(&self.tail);
        b.freeze()
    }

    /// The parts as one `Buf`, whose chunks a vectored write takes at once.
    pub fn into_buf(self) -> Chain<Bytes, Bytes> {
        self.head.chain(self.tail)
    }
}

/// How long a reader waits: for the first byte of a frame, and for the rest of one.
#[derive(Debug, Clone, Copy)]
pub struct ReadTimeouts {
    pub idle: Duration,
    pub frame: Duration,
}

impl ReadTimeouts {
    /// For peers fairlead trusts to close idle connections themselves (brokers).
    pub const NONE: ReadTimeouts = ReadTimeouts {
        idle: Duration::MAX,
        frame: Duration::MAX,
    };
}

/// Outcome of looking at the bytes buffered so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    /// A whole frame of this many bytes (prefix included) is buffered.
    Complete(usize),
    /// At least this many bytes (prefix included) are needed in total.
    Incomplete(usize),
}

/// Validates the length prefix without consuming anything.
///
/// `min_len` rejects frames too short to hold the header the reader needs (8 bytes for a
/// request: api key, version, correlation id; 4 for a response: correlation id).
pub fn check(buf: &[u8], max_len: usize, min_len: usize) -> Result<Check, FrameError> {
    if buf.len() < LEN_PREFIX {
        return Ok(Check::Incomplete(LEN_PREFIX));
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len < 0 {
        return Err(FrameError::NegativeLength { len });
    }
    let len = len as usize;
    if len > max_len {
        return Err(FrameError::Oversized { len, max: max_len });
    }
    if len < min_len {
        return Err(FrameError::Undersized { len, min: min_len });
    }
    let total = LEN_PREFIX + len;
    if buf.len() >= total {
        Ok(Check::Complete(total))
    } else {
        Ok(Check::Incomplete(total))
    }
}

/// Reads whole frames from a byte stream.
pub struct FrameReader<R> {
    io: R,
    buf: BytesMut,
    max_len: usize,
    min_len: usize,
    timeouts: ReadTimeouts,
    /// Size of the last whole frame (capped below `KEEP_IDLE`): a read for a new frame asks for
    /// this much, so a frame of the usual size arrives in one read instead of a small first
    /// read and a second system call for the rest.
    hint: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(io: R, max_len: usize, min_len: usize) -> Self {
        Self::with_timeouts(io, max_len, min_len, ReadTimeouts::NONE)
    }

    pub fn with_timeouts(io: R, max_len: usize, min_len: usize, timeouts: ReadTimeouts) -> Self {
        // No buffer until there is something to read: idle connections hold (almost) nothing.
        FrameReader {
            io,
            buf: BytesMut::new(),
            max_len,
            min_len,
            timeouts,
            hint: 0,
        }
    }

    /// The next frame, length prefix included; `None` on a clean end of stream between frames.
    /// Cancel-safe: bytes read so far stay buffered.
    pub async fn read_frame(&mut self) -> Result<Option<BytesMut>, FrameError> {
        let waiting_since = Instant::now();
        let mut frame_since = (!self.buf.is_empty()).then(Instant::now);
        loop {
            match check(&self.buf, self.max_len, self.min_len)? {
                Check::Complete(total) => {
                    self.hint = total.min(KEEP_IDLE - MIN_READ);
                    let frame = self.buf.split_to(total);
                    if self.buf.is_empty() && self.buf.capacity() > KEEP_IDLE {
                        self.buf = BytesMut::new();
                    }
                    return Ok(Some(frame));
                }
                Check::Incomplete(total) => {
                    // Grow only when the frame does not fit: while frames split off the buffer
                    // are still referenced, `reserve` cannot reclaim it and allocates a new one,
                    // so reserving early would cost an allocation per read. Before a new frame's
                    // length is known, expect one the size of the last.
                    let needed = total - self.buf.len();
                    let wanted = if self.buf.is_empty() {
                        needed.max(self.hint)
                    } else {
                        needed
                    };
                    let spare = self.buf.capacity() - self.buf.len();
                    if spare <= wanted {
                        // Room for the whole frame at once and then some: a read that fills the
                        // buffer exactly leaves the socket marked readable, and the next read
                        // is a system call only to learn that nothing more has arrived.
                        self.buf.reserve(wanted + MIN_READ);
                    }
                    let (deadline, err) = match frame_since {
                        None => (
                            deadline(waiting_since, self.timeouts.idle),
                            FrameError::Idle(self.timeouts.idle),
                        ),
                        Some(t) => (
                            deadline(t, self.timeouts.frame),
                            FrameError::Slow(self.timeouts.frame),
                        ),
                    };
                    let n = match deadline {
                        None => self.io.read_buf(&mut self.buf).await?,
                        Some(d) => {
                            match tokio::time::timeout_at(d, self.io.read_buf(&mut self.buf)).await
                            {
                                Ok(n) => n?,
                                Err(_) => return Err(err),
                            }
                        }
                    };
                    if n == 0 {
                        if self.buf.is_empty() {
                            return Ok(None);
                        }
                        return Err(FrameError::Truncated {
                            have: self.buf.len(),
                            want: total,
                        });
                    }
                    frame_since.get_or_insert_with(Instant::now);
                }
            }
        }
    }

    /// Bytes buffered but not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

fn deadline(from: Instant, after: Duration) -> Option<Instant> {
    from.checked_add(after)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut v = (body.len() as i32).to_be_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn check_rejects_negative_oversized_and_undersized() {
        assert!(matches!(
            check(&(-1i32).to_be_bytes(), 100, 0),
            Err(FrameError::NegativeLength { len: -1 })
        ));
        assert!(matches!(
            check(&101i32.to_be_bytes(), 100, 0),
            Err(FrameError::Oversized { len: 101, max: 100 })
        ));
        assert!(matches!(
            check(&3i32.to_be_bytes(), 100, 8),
            Err(FrameError::Undersized { len: 3, min: 8 })
        ));
        assert_eq!(check(&[0, 0], 100, 0).unwrap(), Check::Incomplete(4));
        assert_eq!(
            check(&frame(b"abc")[..5], 100, 0).unwrap(),
            Check::Incomplete(7)
        );
        assert_eq!(check(&frame(b"abc"), 100, 0).unwrap(), Check::Complete(7));
    }

    #[tokio::test]
    async fn frames_split_at_every_byte_boundary_are_reassembled() {
        let mut wire = frame(b"first-frame!");
        wire.extend(frame(&[7u8; 300]));
        for cut in 0..wire.len() {
            let (a, b) = wire.split_at(cut);
            let reader = tokio_test_reader(vec![a.to_vec(), b.to_vec()]);
            let mut fr = FrameReader::new(reader, 1024, 0);
            assert_eq!(
                &fr.read_frame().await.unwrap().unwrap()[4..],
                b"first-frame!"
            );
            assert_eq!(
                &fr.read_frame().await.unwrap().unwrap()[4..],
                &[7u8; 300][..]
            );
            assert!(fr.read_frame().await.unwrap().is_none());
        }
    }

    #[tokio::test]
    async fn eof_inside_a_frame_is_truncation() {
        let wire = frame(b"0123456789");
        let mut fr = FrameReader::new(tokio_test_reader(vec![wire[..7].to_vec()]), 1024, 0);
        assert!(matches!(
            fr.read_frame().await,
            Err(FrameError::Truncated { have: 7, want: 14 })
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_peer_and_a_slow_frame_time_out() {
        let t = ReadTimeouts {
            idle: Duration::from_secs(60),
            frame: Duration::from_secs(5),
        };
        let (client, server) = tokio::io::duplex(64);
        let mut fr = FrameReader::with_timeouts(server, 1024, 0, t);
        assert!(matches!(fr.read_frame().await, Err(FrameError::Idle(_))));
        let (mut client2, server2) = tokio::io::duplex(64);
        let mut fr = FrameReader::with_timeouts(server2, 1024, 0, t);
        tokio::io::AsyncWriteExt::write_all(&mut client2, &[0, 0, 0, 10, 1, 2])
            .await
            .unwrap();
        assert!(
            matches!(fr.read_frame().await, Err(FrameError::Slow(_))),
            "half a frame, then nothing"
        );
        drop(client);
    }

    #[tokio::test]
    async fn a_frame_the_size_of_the_last_takes_one_read() {
        // Three 10 KiB frames, each arriving whole: only the first, whose size the reader
        // cannot guess, takes a second read.
        let body = vec![5u8; 10_000];
        let chunks = (0..3).map(|_| frame(&body)).collect();
        let mut fr = FrameReader::new(tokio_test_reader(chunks), 1 << 20, 0);
        let (mut reads, mut filled) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            let before = (fr.io.reads, fr.io.filled);
            assert_eq!(fr.read_frame().await.unwrap().unwrap().len(), 10_004);
            reads.push(fr.io.reads - before.0);
            filled.push(fr.io.filled - before.1);
        }
        assert_eq!(reads, [2, 1, 1]);
        // Nor does a read fill the buffer to the brim: on a socket that costs one more read.
        assert_eq!(filled, [1, 0, 0]);
    }

    /// A reader that hands out the given chunks one read at a time, as TCP may.
    struct Chunks {
        chunks: std::collections::VecDeque<Vec<u8>>,
        reads: usize,
        /// Reads that left no room in the caller's buffer.
        filled: usize,
    }

    impl AsyncRead for Chunks {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            self.reads += 1;
            if let Some(mut chunk) = self.chunks.pop_front() {
                let n = chunk.len().min(buf.remaining());
                buf.put_slice(&chunk[..n]);
                if buf.remaining() == 0 {
                    self.filled += 1;
                }
                if n < chunk.len() {
                    self.chunks.push_front(chunk.split_off(n));
                }
            }
            std::task::Poll::Ready(Ok(()))
        }
    }

    fn tokio_test_reader(chunks: Vec<Vec<u8>>) -> Chunks {
        Chunks {
            chunks: chunks.into_iter().filter(|c| !c.is_empty()).collect(),
            reads: 0,
            filled: 0,
        }
    }
}
