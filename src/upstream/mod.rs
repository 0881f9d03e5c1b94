//! Connections from fairlead to brokers.
//!
//! An [`Upstream`] is one TCP connection to one broker, multiplexed by correlation id: fairlead
//! gives every request it sends a correlation id of its own and restores the sender's id on the
//! response, so a connection can carry a client's requests, split-off parts of them and
//! fairlead's own requests at once without any of them colliding. Requests leave in the order
//! [`Upstream::send`] was called (one writer task fed by one channel), and Kafka answers the
//! requests of a connection in the order it received them: both orders matter for produce.
//!
//! Each client connection owns one dedicated upstream (its "home", to the broker it chose: it
//! carries anything with connection state). What fairlead reroutes or replays goes on upstreams
//! shared by the client connections of one identity ([`reroutes`]), a few per broker, handed out
//! by fewest requests in flight, each producer's batches on connections of its own ([`pool`]): a
//! broker answers the requests of a connection one at a time, in order, so a connection shared
//! without bound puts everyone behind the slowest request on it (an acks=all produce waiting
//! for its followers, a fetch long-poll). A producer's batch joins the upstream its partition's
//! earlier batches went on (see `router::lanes`). fairlead's own requests (Metadata, log checks) have upstreams of their own,
//! never a client's.

pub mod pool;
pub mod reroutes;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Decodable, Encodable};
use std::io::IoSlice;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::codec::frame::FrameReader;
use crate::codec::header::{
    correlation_id_at, set_correlation_id, REQUEST_CORRELATION_OFFSET, RESPONSE_CORRELATION_OFFSET,
};
use crate::codec::message::{decode_response, encode_own_request, MessageError};
use crate::metrics;
use crate::security::sasl::Credentials;
use crate::security::UpstreamSecurity;

/// Node id fairlead uses for a broker it only knows by a bootstrap address.
pub const BOOTSTRAP_NODE: i32 = -1;

#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// Nothing was sent: safe to retry anything elsewhere.
    #[error("connecting to broker {node} at {addr} failed: {reason}")]
    Connect {
        node: i32,
        addr: String,
        reason: String,
    },
    /// The connection ended with the request in flight: the broker may or may not have acted
    /// on it, so only idempotent requests may be retried.
    #[error("connection to broker {node} at {addr} closed: {reason}")]
    Closed {
        node: i32,
        addr: String,
        reason: String,
    },
    /// TLS or SASL refused us: retrying will not help.
    #[error("broker {node} at {addr} refused fairlead's connection: {reason}")]
    Refused {
        node: i32,
        addr: String,
        reason: String,
    },
    #[error("broker {node} at {addr} did not answer within {timeout:?}")]
    Timeout {
        node: i32,
        addr: String,
        timeout: Duration,
    },
    #[error("broker {node}: {reason}")]
    Protocol { node: i32, reason: String },
    /// SASL passthrough: no connection to this broker is authenticated as the client, and
    /// fairlead cannot open one (`router::identity`). Nothing was sent.
    #[error("no connection to broker {node} is authenticated as the client")]
    NotAsClient { node: i32 },
}

impl UpstreamError {
    /// Whether the request may have reached the broker, so that it may have acted on it (a
    /// retry is then safe only for what may be repeated): not when fairlead could not connect,
    /// nor when no connection may carry it.
    pub fn sent(&self) -> bool {
        !matches!(
            self,
            UpstreamError::Connect { .. } | UpstreamError::NotAsClient { .. }
        )
    }
}

pub type Reply = Result<BytesMut, UpstreamError>;
pub type ReplyRx = oneshot::Receiver<Reply>;

struct Pending {
    reply: oneshot::Sender<Reply>,
    /// The sender's correlation id, written back into the response.
    original: i32,
}

#[derive(Default)]
struct Inflight {
    next_correlation: i32,
    pending: HashMap<i32, Pending>,
    /// Set once the connection is gone; later sends fail at once.
    closed: Option<UpstreamError>,
}

/// A request on its way out: its first 12 bytes (length, api key, version, correlation id) with
/// fairlead's correlation id, and the rest of the client's frame untouched (shared, not copied).
struct Outgoing {
    head: [u8; HEAD],
    rest: Bytes,
}

const HEAD: usize = REQUEST_CORRELATION_OFFSET + 4;
const API_SASL_HANDSHAKE: i16 = ApiKey::SaslHandshake as i16;
const API_SASL_AUTHENTICATE: i16 = ApiKey::SaslAuthenticate as i16;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Connection settings shared by every upstream.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub connect_timeout: Duration,
    pub max_frame_bytes: usize,
    pub security: Arc<UpstreamSecurity>,
    /// SASL passthrough: the credentials a client presented, for connections that carry only
    /// its requests (`router::identity`); they replace fairlead's own.
    pub as_client: Option<Arc<Credentials>>,
}

impl UpstreamConfig {
    pub fn plain(connect_timeout: Duration, max_frame_bytes: usize) -> UpstreamConfig {
        UpstreamConfig {
            connect_timeout,
            max_frame_bytes,
            security: Arc::default(),
            as_client: None,
        }
    }

    /// The same settings, authenticating as a client with `credentials`.
    pub fn as_client(&self, credentials: Credentials) -> UpstreamConfig {
        UpstreamConfig {
            as_client: Some(Arc::new(credentials)),
            ..self.clone()
        }
    }
}

/// A byte stream to a broker: plain TCP or TLS.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

type BoxRead = tokio::io::ReadHalf<Box<dyn Io>>;
type BoxWrite = tokio::io::WriteHalf<Box<dyn Io>>;

/// Replace an authenticated connection once this much of its SASL session is used (KIP-368),
/// so no request ever reaches the broker after the session ended.
const REAUTH_AT: f64 = 0.8;

pub struct Upstream {
    /// Unique per connection: produce ordering is tracked per connection ("route").
    id: u64,
    node: i32,
    addr: String,
    tx: mpsc::UnboundedSender<Outgoing>,
    inflight: Arc<Mutex<Inflight>>,
    /// Tells the read task to give up on a broker that stopped answering.
    abandon: Arc<tokio::sync::Notify>,
    /// When the SASL session runs out; new requests go to a new connection before that.
    retire_at: Option<tokio::time::Instant>,
    /// When the broker last sent anything on this connection, or was sent a request after it
    /// owed nothing (ms since `opened`; see `silent_for`).
    last_heard_ms: Arc<AtomicU64>,
    opened: tokio::time::Instant,
    /// A client's own SASL exchange is under way on this connection (SASL passthrough, KIP-368
    /// re-authentication included): the broker expects only its SaslAuthenticate requests
    /// until it ends, so no other request may be sent on it (see [`Upstream::send`]).
    in_exchange: AtomicBool,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Upstream#{}(node {} at {})",
            self.id, self.node, self.addr
        )
    }
}

impl Upstream {
    /// Connects (TLS and SASL as configured). `for_client`: the connection carries a client's
    /// own requests (its "home"), which in SASL passthrough mode the client authenticates.
    pub async fn connect(
        node: i32,
        addr: &str,
        cfg: &UpstreamConfig,
        for_client: bool,
    ) -> Result<Arc<Upstream>, UpstreamError> {
        // Boxed: the TLS and SASL handshakes' state is kilobytes, and every task that may
        // connect (each client connection's reader and writer) would otherwise carry that much
        // for its whole life, idle or not. One allocation per connection made instead.
        Box::pin(Self::open(node, addr, cfg, for_client)).await
    }

    async fn open(
        node: i32,
        addr: &str,
        cfg: &UpstreamConfig,
        for_client: bool,
    ) -> Result<Arc<Upstream>, UpstreamError> {
        // A refusal of fairlead's own credentials may be a rotation under way: the brokers
        // have the new password and its file not yet (or a broker has not applied it yet), or
        // a token the broker no longer accepts. Tried again, twice, with what the files (or the
        // token endpoint) hold then.
        let mut waits = [Duration::from_millis(300), Duration::from_millis(700)].into_iter();
        let (stream, retire_at) = loop {
            let mut stream = open_stream(node, addr, cfg).await?;
            match authenticate(node, addr, &mut stream, cfg, for_client).await {
                Ok(retire_at) => break (stream, retire_at),
                Err(e @ UpstreamError::Refused { .. }) => match waits.next() {
                    // A client's own credentials (passthrough) are never read again.
                    Some(wait) if cfg.as_client.is_none() && cfg.security.after_refusal() => {
                        debug!(node, addr, error = %e, "SASL refused: trying again with credentials read again");
                        tokio::time::sleep(wait).await;
                    }
                    _ => return Err(e),
                },
                Err(e) => return Err(e),
            }
        };
        let up = Upstream::start(node, addr, stream, retire_at, cfg);
        debug!(node, addr, reauth_in = ?retire_at.map(|t| t.saturating_duration_since(tokio::time::Instant::now())), "upstream connected");
        Ok(up)
    }

    /// Runs a connected (and authenticated) stream: its writer and reader tasks.
    fn start(
        node: i32,
        addr: &str,
        stream: Box<dyn Io>,
        retire_at: Option<tokio::time::Instant>,
        cfg: &UpstreamConfig,
    ) -> Arc<Upstream> {
        let (rd, wr) = tokio::io::split(stream);
        let (tx, rx) = mpsc::unbounded_channel();
        let inflight = Arc::new(Mutex::new(Inflight {
            next_correlation: 1,
            ..Default::default()
        }));
        let abandon = Arc::new(tokio::sync::Notify::new());
        let opened = tokio::time::Instant::now();
        let last_heard_ms = Arc::new(AtomicU64::new(0));
        let up = Arc::new(Upstream {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            node,
            addr: addr.to_string(),
            tx,
            inflight: inflight.clone(),
            abandon: abandon.clone(),
            retire_at,
            last_heard_ms: last_heard_ms.clone(),
            opened,
            in_exchange: AtomicBool::new(false),
        });
        let node_label = node.to_string();
        metrics::upstream_connected(&node_label);
        tokio::spawn(write_loop(wr, rx));
        tokio::spawn(read_loop(
            FrameReader::new(rd, cfg.max_frame_bytes, 4),
            inflight,
            abandon,
            (last_heard_ms, opened),
            node,
            addr.to_string(),
            node_label,
        ));
        up
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn node(&self) -> i32 {
        self.node
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Gives up on this connection (a request went unanswered far too long): everything in
    /// flight fails as "connection lost" and the next user gets a new connection.
    pub fn abandon(&self) {
        self.inflight
            .lock()
            .unwrap()
            .closed
            .get_or_insert(UpstreamError::Closed {
                node: self.node,
                addr: self.addr.clone(),
                reason: "abandoned".into(),
            });
        self.abandon.notify_one();
    }

    /// How long the broker has sent nothing on this connection while it owed an answer: since
    /// its last answer, or since the request that ended an idle stretch (a broker owing nothing
    /// is not silent; counted from its last answer, a request sent on a connection idle for a
    /// while looked lost after a few seconds of an ordinary acks=all wait).
    pub fn silent_for(&self) -> Duration {
        self.opened.elapsed().saturating_sub(Duration::from_millis(
            self.last_heard_ms.load(Ordering::Relaxed),
        ))
    }

    /// Open, and not near the end of its SASL session: fit for new requests.
    pub fn usable(&self) -> bool {
        !self.is_closed()
            && self
                .retire_at
                .is_none_or(|t| tokio::time::Instant::now() < t)
    }

    pub fn is_closed(&self) -> bool {
        self.inflight.lock().unwrap().closed.is_some()
    }

    /// Requests in flight on this connection (answers awaited).
    pub fn in_flight(&self) -> usize {
        self.inflight.lock().unwrap().pending.len()
    }

    /// The client's SASL exchange on this connection ended (accepted or refused): other
    /// requests may be sent on it again.
    pub fn exchange_done(&self) {
        let _order = self.inflight.lock().unwrap();
        self.in_exchange.store(false, Ordering::Release);
    }

    /// No client SASL exchange is under way on it.
    pub fn lendable(&self) -> bool {
        !self.in_exchange.load(Ordering::Acquire)
    }

    /// Queues a request frame (length prefix included). Its correlation id is replaced by one of
    /// this connection's and restored on the response. Returns `None` when no response is
    /// expected (acks=0 produce).
    pub fn send(
        &self,
        frame: Bytes,
        expect_response: bool,
    ) -> Result<Option<ReplyRx>, UpstreamError> {
        if frame.len() < HEAD {
            return Err(UpstreamError::Protocol {
                node: self.node,
                reason: "request frame shorter than its header".into(),
            });
        }
        let mut head = [0u8; HEAD];
        head.copy_from_slice(&frame[..HEAD]);
        let original =
            correlation_id_at(&head, REQUEST_CORRELATION_OFFSET).expect("checked length");
        let mut inf = self.inflight.lock().unwrap();
        if let Some(e) = &inf.closed {
            return Err(e.clone());
        }
        // Decided under the lock that orders the sends: a request sent after a client's
        // SaslHandshake would reach the broker in the middle of its exchange.
        match i16::from_be_bytes([head[4], head[5]]) {
            API_SASL_HANDSHAKE => self.in_exchange.store(true, Ordering::Release),
            API_SASL_AUTHENTICATE => {}
            _ if self.in_exchange.load(Ordering::Acquire) => {
                return Err(UpstreamError::Connect {
                    node: self.node,
                    addr: self.addr.clone(),
                    reason: "a client's SASL exchange is under way on this connection".into(),
                });
            }
            _ => {}
        }
        let mut corr = inf.next_correlation;
        while inf.pending.contains_key(&corr) {
            corr = corr.wrapping_add(1);
        }
        inf.next_correlation = corr.wrapping_add(1);
        set_correlation_id(&mut head, REQUEST_CORRELATION_OFFSET, corr);
        let rx = if expect_response {
            if inf.pending.is_empty() {
                // The broker owed nothing until now: its silence starts here (`silent_for`).
                let now = self.opened.elapsed().as_millis() as u64;
                self.last_heard_ms.fetch_max(now, Ordering::Relaxed);
            }
            let (reply, rx) = oneshot::channel();
            inf.pending.insert(corr, Pending { reply, original });
            Some(rx)
        } else {
            None
        };
        // Sent while holding the lock: the channel order is the order of `send` calls.
        if self
            .tx
            .send(Outgoing {
                head,
                rest: frame.slice(HEAD..),
            })
            .is_err()
        {
            inf.pending.remove(&corr);
            let e = UpstreamError::Closed {
                node: self.node,
                addr: self.addr.clone(),
                reason: "writer stopped".into(),
            };
            inf.closed = Some(e.clone());
            return Err(e);
        }
        Ok(rx)
    }

    /// Sends one of fairlead's own requests and decodes the answer.
    pub async fn request<Req, Resp>(
        &self,
        api: ApiKey,
        version: i16,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, RequestError>
    where
        Req: Encodable,
        Resp: Decodable,
    {
        let frame = encode_own_request(req, api, version, 0)?;
        let rx = self
            .send(frame.freeze(), true)?
            .expect("a response is expected");
        let reply = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r?,
            Ok(Err(_)) => {
                return Err(UpstreamError::Closed {
                    node: self.node,
                    addr: self.addr.clone(),
                    reason: "dropped".into(),
                }
                .into())
            }
            Err(_) => {
                return Err(UpstreamError::Timeout {
                    node: self.node,
                    addr: self.addr.clone(),
                    timeout,
                }
                .into())
            }
        };
        Ok(decode_response(&reply.freeze(), api, version)?)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    Message(#[from] MessageError),
}

/// Frames written per system call at most (two slices each: fairlead's head, the client's rest).
const BATCH: usize = 32;

async fn write_loop(mut wr: BoxWrite, mut rx: mpsc::UnboundedReceiver<Outgoing>) {
    // Whatever is queued goes out in one vectored write, straight from the frames' own buffers:
    // no copy into a write buffer, and no buffer held by an idle connection.
    let mut batch: Vec<Outgoing> = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(o) => batch.push(o),
                Err(_) => break,
            }
        }
        let n: usize = batch.iter().map(|o| HEAD + o.rest.len()).sum();
        if write_batch(&mut wr, &batch).await.is_err() {
            return;
        }
        metrics::bytes(metrics::Direction::ToBrokers, n);
        batch.clear();
    }
    let _ = wr.shutdown().await;
}

async fn write_batch(wr: &mut BoxWrite, batch: &[Outgoing]) -> std::io::Result<()> {
    let mut slices: [IoSlice<'_>; 2 * BATCH] = [IoSlice::new(&[]); 2 * BATCH];
    for (i, o) in batch.iter().enumerate() {
        slices[2 * i] = IoSlice::new(&o.head);
        slices[2 * i + 1] = IoSlice::new(&o.rest);
    }
    let mut bufs = &mut slices[..2 * batch.len()];
    while !bufs.is_empty() {
        let n = wr.write_vectored(bufs).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut bufs, n);
    }
    Ok(())
}

async fn read_loop(
    mut reader: FrameReader<BoxRead>,
    inflight: Arc<Mutex<Inflight>>,
    abandon: Arc<tokio::sync::Notify>,
    (last_heard_ms, opened): (Arc<AtomicU64>, tokio::time::Instant),
    node: i32,
    addr: String,
    node_label: String,
) {
    let reason = loop {
        let read = tokio::select! {
            r = reader.read_frame() => r,
            _ = abandon.notified() => break "abandoned: the broker stopped answering".to_string(),
        };
        match read {
            Ok(Some(mut frame)) => {
                metrics::bytes(metrics::Direction::FromBrokers, frame.len());
                last_heard_ms.store(opened.elapsed().as_millis() as u64, Ordering::Relaxed);
                let corr =
                    correlation_id_at(&frame, RESPONSE_CORRELATION_OFFSET).unwrap_or(i32::MIN);
                let pending = inflight.lock().unwrap().pending.remove(&corr);
                match pending {
                    Some(p) => {
                        set_correlation_id(&mut frame, RESPONSE_CORRELATION_OFFSET, p.original);
                        let _ = p.reply.send(Ok(frame));
                    }
                    None => break format!("response with unknown correlation id {corr}"),
                }
            }
            Ok(None) => break "closed by the broker".to_string(),
            Err(e) => break e.to_string(),
        }
    };
    let err = UpstreamError::Closed {
        node,
        addr: addr.clone(),
        reason: reason.clone(),
    };
    let pending: Vec<Pending> = {
        let mut inf = inflight.lock().unwrap();
        inf.closed = Some(err.clone());
        inf.pending.drain().map(|(_, p)| p).collect()
    };
    if pending.is_empty() {
        debug!(node, addr, reason, "upstream closed");
    } else {
        warn!(
            node,
            addr,
            reason,
            in_flight = pending.len(),
            "upstream closed with requests in flight"
        );
    }
    for p in pending {
        let _ = p.reply.send(Err(err.clone()));
    }
    metrics::upstream_disconnected(&node_label);
}

fn connect_error(node: i32, addr: &str, reason: String) -> UpstreamError {
    UpstreamError::Connect {
        node,
        addr: addr.to_string(),
        reason,
    }
}

fn refused(node: i32, addr: &str, reason: String) -> UpstreamError {
    UpstreamError::Refused {
        node,
        addr: addr.to_string(),
        reason,
    }
}

/// A TCP connection to the broker, with TLS when the cluster uses it, within the connect
/// timeout.
async fn open_stream(
    node: i32,
    addr: &str,
    cfg: &UpstreamConfig,
) -> Result<Box<dyn Io>, UpstreamError> {
    let tcp = match tokio::time::timeout(cfg.connect_timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(connect_error(node, addr, e.to_string())),
        Err(_) => {
            let reason = format!("timed out after {:?}", cfg.connect_timeout);
            return Err(connect_error(node, addr, reason));
        }
    };
    let _ = tcp.set_nodelay(true);
    let Some(tls) = &cfg.security.tls else {
        return Ok(Box::new(tcp));
    };
    let host = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr);
    match tokio::time::timeout(cfg.connect_timeout, tls.connect(host, tcp)).await {
        Ok(Ok(s)) => Ok(Box::new(s)),
        Ok(Err(e)) => Err(refused(node, addr, e.to_string())),
        Err(_) => {
            let reason = format!("TLS handshake timed out after {:?}", cfg.connect_timeout);
            Err(connect_error(node, addr, reason))
        }
    }
}

/// SASL on a new connection when fairlead authenticates it; the time to replace the connection
/// before its session expires, if the broker set one.
async fn authenticate(
    node: i32,
    addr: &str,
    stream: &mut Box<dyn Io>,
    cfg: &UpstreamConfig,
    for_client: bool,
) -> Result<Option<tokio::time::Instant>, UpstreamError> {
    use crate::security::sasl::{self, SaslError};
    let creds = match &cfg.as_client {
        // What a client presented (passthrough): for connections that carry only its requests.
        Some(client) => client.as_ref().clone(),
        None => {
            let Some(login) = cfg.security.authenticates(for_client) else {
                return Ok(None);
            };
            // No token from the endpoint: as if the broker were unreachable (nothing was sent,
            // and a later attempt may get one).
            login
                .credentials()
                .await
                .map_err(|e| connect_error(node, addr, e.to_string()))?
        }
    };
    match sasl::authenticate(stream, &creds, cfg.connect_timeout).await {
        Ok(lifetime) => Ok(lifetime.map(|l| tokio::time::Instant::now() + l.mul_f64(REAUTH_AT))),
        Err(e @ (SaslError::Failed { .. } | SaslError::Unsupported { .. })) => {
            Err(refused(node, addr, e.to_string()))
        }
        Err(e) => Err(connect_error(node, addr, e.to_string())),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A listener that accepts and never answers: requests stay in flight.
    pub(crate) async fn broker() -> (String, tokio::task::JoinHandle<()>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                held.push(s);
            }
        });
        (addr, task)
    }

    /// A request frame that expects an answer (a Metadata v0 asking for no topic).
    pub(crate) fn request() -> bytes::Bytes {
        let mut f = Vec::new();
        f.extend_from_slice(&14i32.to_be_bytes());
        f.extend_from_slice(&3i16.to_be_bytes());
        f.extend_from_slice(&0i16.to_be_bytes());
        f.extend_from_slice(&7i32.to_be_bytes());
        f.extend_from_slice(&(-1i16).to_be_bytes());
        f.extend_from_slice(&0i32.to_be_bytes());
        f.into()
    }

    #[tokio::test]
    async fn a_broker_is_silent_only_while_it_owes_an_answer() {
        let (addr, _broker) = broker().await;
        let cfg = UpstreamConfig::plain(Duration::from_secs(1), 1 << 20);
        let up = Upstream::connect(1, &addr, &cfg, false).await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        let _first = up.send(request(), true).unwrap();
        assert!(
            up.silent_for() < Duration::from_millis(200),
            "idle, then asked: silent for {:?} already",
            up.silent_for()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _second = up.send(request(), true).unwrap();
        assert!(
            up.silent_for() >= Duration::from_millis(300),
            "a second request does not restart the silence of the first: {:?}",
            up.silent_for()
        );
    }
}
