//! One client connection.
//!
//! The reader reads frames, routes each request (sending it upstream at once, in order) and
//! queues what the writer must do for it. The writer answers the queue strictly in order, so
//! responses leave in request order whatever the brokers do, and pipelining is kept: requests
//! are sent as they arrive, not when the previous answer is back. The queue is bounded
//! (`max_in_flight_per_connection`): a client that sends faster than its answers drain, or
//! that stops reading them, is simply not read from any more (backpressure, bounded memory).
//!
//! The client's own broker connection ("home") carries everything not rerouted. If that broker
//! goes away, the connection survives: the home is re-established (to the same broker, or any
//! other for a bootstrap connection or when it is down), requests that are safe to repeat are
//! re-sent, and only a request whose effect is unknown closes the client connection, which is
//! what the client would have seen without fairlead.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinError, JoinHandle};
use tracing::{debug, info, warn};

use crate::cluster::Cluster;
use crate::codec::frame::{FrameError, FrameReader, ReadTimeouts};
use crate::codec::header::{parse_request, RequestHeader};
use crate::metrics;
use crate::rewrite;
use crate::router::coordinator;
use crate::router::retry::{resend_forwarded, Budget};
use crate::router::{self, Client, Pending, Router};
use crate::upstream::pool::Pool;
use crate::upstream::{ReplyRx, Upstream, UpstreamError};

/// Numbers client connections (for the order of their coordinator requests, `router::lanes`).
static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

/// A client's byte stream: plain TCP or TLS.
pub trait ClientIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> ClientIo for T {}

/// The client's connection to its broker, replaceable when that broker goes away.
struct Home {
    cluster: Arc<Cluster>,
    /// The broker the client chose (None: the bootstrap port).
    node: Option<i32>,
    current: Mutex<Arc<Upstream>>,
    /// One reconnect at a time.
    reconnect: tokio::sync::Mutex<()>,
    /// While the home is another broker than the client's own (it was down), when fairlead
    /// last tried to go back to the client's own: at most once a second, in the background.
    returning: Mutex<Option<Instant>>,
    /// The client authenticated (SASL) on this connection: a new broker connection would not
    /// be authenticated, so losing it must close the client connection.
    pinned: AtomicBool,
    /// This connection's own connections to the other brokers, for what is rerouted or replayed
    /// (opened on first use, closed with the client connection). Not shared with other clients:
    /// a broker answers the requests of one connection one at a time, so a shared connection
    /// would make every client wait behind another's produce in purgatory or fetch long-poll.
    reroutes: Arc<Pool>,
}

impl Home {
    /// A client that authenticates pins its home: see `pinned`.
    fn pin_if_authenticating(&self, hdr: &RequestHeader) {
        if matches!(
            hdr.known,
            Some(ApiKey::SaslHandshake | ApiKey::SaslAuthenticate)
        ) {
            self.pinned.store(true, Ordering::Relaxed);
        }
    }

    /// Connects a new client connection's home (None: no broker reachable, logged and
    /// counted: the client connection is closed).
    async fn open(cluster: &Arc<Cluster>, node: Option<i32>) -> Option<Arc<Home>> {
        let first = match cluster.connect_home(node, true).await {
            Ok(up) => up,
            Err(e) => {
                warn!(error = %e, "no broker reachable for this client: closing its connection");
                metrics::connection_closed(metrics::Closed::NoBroker);
                return None;
            }
        };
        debug!(broker = first.node(), "client connected");
        Some(Arc::new(Home {
            cluster: cluster.clone(),
            node,
            current: Mutex::new(first),
            reconnect: tokio::sync::Mutex::new(()),
            returning: Mutex::new(None),
            pinned: AtomicBool::new(false),
            reroutes: Arc::new(Pool::new(cluster.upstream_cfg.clone())),
        }))
    }

    async fn get(self: &Arc<Self>) -> Result<Arc<Upstream>, UpstreamError> {
        let cur = self.current.lock().unwrap().clone();
        if cur.usable() {
            if self.node.is_some_and(|n| n != cur.node()) {
                self.go_back();
            }
            return Ok(cur);
        }
        let _one = self.reconnect.lock().await;
        let cur = self.current.lock().unwrap().clone();
        if cur.usable() {
            return Ok(cur);
        }
        if self.pinned.load(Ordering::Relaxed) {
            return Err(UpstreamError::Closed {
                node: cur.node(),
                addr: cur.addr().to_string(),
                reason: "authenticated connection lost".into(),
            });
        }
        let up = self.cluster.connect_home(self.node, true).await?;
        info!(
            old_node = cur.node(),
            new_node = up.node(),
            "client's broker connection re-established"
        );
        *self.current.lock().unwrap() = up.clone();
        Ok(up)
    }

    /// The home stands in for the client's own broker, which was down: try, in the background
    /// and at most once a second, to connect to it again, and make it the home once it answers.
    /// Otherwise the client's requests would go to the stand-in for as long as the connection
    /// lives, long after its broker came back.
    fn go_back(self: &Arc<Self>) {
        const EVERY: Duration = Duration::from_secs(1);
        {
            let mut last = self.returning.lock().unwrap();
            if last.is_some_and(|t| t.elapsed() < EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        let home = self.clone();
        tokio::spawn(async move {
            let Ok(up) = home.cluster.connect_home(home.node, false).await else {
                return;
            };
            let mut cur = home.current.lock().unwrap();
            info!(
                old_node = cur.node(),
                new_node = up.node(),
                "client's broker is back: its connection returns to it"
            );
            *cur = up;
        });
    }
}

struct ConnGauge;

impl ConnGauge {
    fn new() -> Self {
        metrics::client_connected();
        ConnGauge
    }
}

impl Drop for ConnGauge {
    fn drop(&mut self) {
        metrics::client_disconnected();
    }
}

/// Serves one client connection until it closes, the broker side fails it, or shutdown.
pub async fn serve(
    router: Arc<Router>,
    peer: std::net::SocketAddr,
    socket: Box<dyn ClientIo>,
    node: Option<i32>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _gauge = ConnGauge::new();
    let cluster = &router.cluster;
    let Some(home) = Home::open(cluster, node).await else {
        return;
    };
    let mut client = ClientName::new(peer.ip().to_string());
    let connection = NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed);
    let (rd, wr) = tokio::io::split(socket);
    let (tx, rx) = mpsc::channel::<Pending>(cluster.cfg.max_in_flight_per_connection);
    let mut writer = tokio::spawn(write_loop(cluster.clone(), wr, rx, home.clone()));
    let timeouts = ReadTimeouts {
        idle: cluster.cfg.client_idle_timeout,
        frame: cluster.cfg.client_frame_timeout,
    };
    let mut reader = FrameReader::with_timeouts(rd, cluster.cfg.max_frame_bytes, 8, timeouts);

    let mut writer_result = None;
    let reason: Cow<'static, str> = loop {
        let read = tokio::select! {
            r = reader.read_frame() => r,
            _ = shutdown.changed() => break "shutting down".into(),
            w = &mut writer => {
                writer_result = Some(w);
                break "response path ended".into();
            }
        };
        let (frame, hdr) = match request(read) {
            Ok(r) => r,
            Err(reason) => break reason,
        };
        home.pin_if_authenticating(&hdr);
        let name = client.of(&frame, &hdr);
        let who = Client {
            name: &name,
            connection,
        };
        match route_with_home(&router, &home, who, frame, hdr).await {
            Ok(Some(p)) => {
                if tx.send(p).await.is_err() {
                    break "response path ended".into();
                }
            }
            Ok(None) => {}
            Err(e) => {
                metrics::connection_closed(metrics::Closed::BrokerUnreachable);
                warn!(error = %e, "closing client connection: its broker is unreachable");
                break "broker unreachable".into();
            }
        }
    };
    debug!(reason = reason.as_ref(), "client reader stopped");
    drop(tx);
    drain(writer, writer_result, cluster.cfg.drain_timeout).await;
}

/// Lets the writer answer what is in flight (bounded by the drain time), then closes.
async fn drain(
    mut writer: JoinHandle<Result<(), WriteError>>,
    ended: Option<Result<Result<(), WriteError>, JoinError>>,
    drain_timeout: Duration,
) {
    let ended = match ended {
        Some(w) => w,
        None => match tokio::time::timeout(drain_timeout, &mut writer).await {
            Ok(w) => w,
            Err(_) => {
                warn!("in-flight requests not answered within the drain time; closing");
                writer.abort();
                return;
            }
        },
    };
    if let Ok(Err(e)) = ended {
        warn!(error = %e, "client connection closed");
    }
}

/// A request frame and its header from what the reader read, or why the connection ends (the
/// reason logged and counted here).
fn request(
    read: Result<Option<bytes::BytesMut>, FrameError>,
) -> Result<(Bytes, RequestHeader), Cow<'static, str>> {
    let frame = match read {
        Ok(Some(f)) => f.freeze(),
        Ok(None) => return Err("client closed the connection".into()),
        Err(FrameError::Idle(t)) => {
            metrics::connection_closed(metrics::Closed::Idle);
            debug!(idle_for = ?t, "closing idle client connection");
            return Err("idle".into());
        }
        Err(e @ FrameError::Slow(_)) => {
            metrics::connection_closed(metrics::Closed::SlowClient);
            warn!(error = %e, "closing client connection: request frame too slow to arrive");
            return Err("slow client".into());
        }
        Err(FrameError::Io(e)) => {
            // The client reset or broke the connection: its business, not an error.
            debug!(error = %e, "client connection ended");
            return Err("client connection ended".into());
        }
        Err(e) => {
            metrics::connection_closed(metrics::Closed::BadFrame);
            warn!(error = %e, "closing client connection: unreadable frame");
            return Err("bad frame".into());
        }
    };
    metrics::bytes(metrics::Direction::FromClients, frame.len());
    match parse_request(&frame) {
        Ok(hdr) => Ok((frame, hdr)),
        Err(e) => {
            metrics::connection_closed(metrics::Closed::BadHeader);
            warn!(error = %e, "closing client connection: malformed request header");
            Err("bad header".into())
        }
    }
}

/// Routes a request on the current home; if the home is gone before anything was sent,
/// reconnects once and routes again.
async fn route_with_home(
    router: &Arc<Router>,
    home: &Arc<Home>,
    client: Client<'_>,
    frame: Bytes,
    hdr: RequestHeader,
) -> Result<Option<Pending>, UpstreamError> {
    let up = home.get().await?;
    match router::route(router, &up, &home.reroutes, client, frame.clone(), hdr).await {
        Err(UpstreamError::Closed { .. }) => {
            let up = home.get().await?;
            router::route(router, &up, &home.reroutes, client, frame, hdr).await
        }
        other => other,
    }
}

#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error("writing to the client failed: {0}")]
    Client(#[from] std::io::Error),
    #[error("{0}")]
    Upstream(String),
    #[error("the client did not read its responses for {0:?}")]
    NotReading(std::time::Duration),
}

async fn write_loop(
    cluster: Arc<Cluster>,
    wr: tokio::io::WriteHalf<Box<dyn ClientIo>>,
    mut rx: mpsc::Receiver<Pending>,
    home: Arc<Home>,
) -> Result<(), WriteError> {
    let mut wr = wr;
    let write_timeout = cluster.cfg.client_write_timeout;
    while let Some(p) = rx.recv().await {
        let (bytes, api, started) = match p {
            Pending::Forward {
                rx: reply,
                hdr,
                frame,
                started,
            } => (
                forward(&cluster, &home, reply, &hdr, frame).await?,
                hdr.api_key,
                started,
            ),
            Pending::Routed { job, hdr, started } => {
                let bytes = job.await.map_err(|e| WriteError::Upstream(e.to_string()))?;
                (bytes, hdr.api_key, started)
            }
        };
        // One write per response, from the response's own buffer. A client that stops reading
        // blocks it; past the write timeout the connection is closed (the reader meanwhile
        // stops reading new requests: at most max_in_flight_per_connection are pending).
        match tokio::time::timeout(write_timeout, wr.write_all(&bytes)).await {
            Ok(r) => r?,
            Err(_) => {
                metrics::connection_closed(metrics::Closed::ClientNotReading);
                return Err(WriteError::NotReading(write_timeout));
            }
        }
        metrics::bytes(metrics::Direction::ToClients, bytes.len());
        metrics::request_duration(api, started.elapsed());
    }
    let _ = wr.shutdown().await;
    Ok(())
}

/// The home broker's answer to a forwarded request, rewritten if its API carries addresses.
async fn forward(
    cluster: &Arc<Cluster>,
    home: &Arc<Home>,
    mut reply: ReplyRx,
    hdr: &RequestHeader,
    frame: Bytes,
) -> Result<Bytes, WriteError> {
    let mut attempts = 0;
    let mut asking_again = None;
    loop {
        let lost = match reply.await {
            Ok(Ok(resp)) => {
                let out = rewritten(cluster, hdr, &frame, resp.freeze())?;
                match ask_again(cluster, home, hdr, &frame, out, &mut asking_again).await? {
                    Asked::Done(out) => return Ok(out),
                    Asked::Sent(rx) => {
                        reply = rx;
                        continue;
                    }
                    Asked::NotSent => "not sent".to_string(),
                }
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "response dropped".to_string(),
        };
        reply = resend_after_loss(home, hdr, &frame, &mut attempts, &lost).await?;
    }
}

/// What became of a forwarded answer (`ask_again`).
enum Asked {
    /// The answer for the client.
    Done(Bytes),
    /// Asked again: the new answer comes on this.
    Sent(ReplyRx),
    /// Asking again found no connection to send on.
    NotSent,
}

/// A FindCoordinator answered "no coordinator yet" is asked again for a while (see
/// `retry::ask_again`); any other answer is done. `asking`: when asking again started (its
/// budget), and the code first met.
async fn ask_again(
    cluster: &Cluster,
    home: &Arc<Home>,
    hdr: &RequestHeader,
    frame: &Bytes,
    out: Bytes,
    asking: &mut Option<(Budget, i16)>,
) -> Result<Asked, WriteError> {
    let code = coordinator::not_found_yet(hdr, &out);
    if code.is_none() && asking.is_none() {
        // Every forwarded answer passes here: no clock read, no budget, for the usual case.
        return Ok(Asked::Done(out));
    }
    let (budget, first) = asking.get_or_insert_with(|| {
        let c = &cluster.cfg;
        let b = Budget::new(
            Instant::now(),
            Duration::ZERO,
            c.absorb_timeout,
            None,
            c.retry_backoff,
        );
        (b, code.unwrap_or(0))
    });
    let (api, first) = (hdr.api_key, *first);
    if code.is_none() || budget.expired() {
        // Asking again began with `first`: the answer now has a coordinator, or time is up.
        if code.is_none() {
            metrics::replay(api, metrics::Replay::Ok);
            metrics::absorbed(api, first);
            metrics::absorb_duration(api, budget.elapsed());
        } else {
            metrics::replay(api, metrics::Replay::GaveUp);
        }
        return Ok(Asked::Done(out));
    }
    debug!(api, "no coordinator yet: asking again");
    budget.back_off().await;
    let up = home
        .get()
        .await
        .map_err(|e| WriteError::Upstream(e.to_string()))?;
    Ok(match up.send(frame.clone(), true) {
        Ok(Some(rx)) => Asked::Sent(rx),
        _ => Asked::NotSent,
    })
}

/// The broker connection went away with this request in flight (`lost`: how): repeats it on a
/// new one if that is harmless, else closes the client connection as the broker would have.
async fn resend_after_loss(
    home: &Arc<Home>,
    hdr: &RequestHeader,
    frame: &Bytes,
    attempts: &mut u32,
    lost: &str,
) -> Result<ReplyRx, WriteError> {
    loop {
        *attempts += 1;
        if !resend_forwarded(hdr.known, home.pinned.load(Ordering::Relaxed), *attempts) {
            metrics::connection_closed(metrics::Closed::BrokerLostMidRequest);
            return Err(WriteError::Upstream(format!("broker connection lost with a {} request in flight that is not safe to repeat: {lost}", metrics::api_name(hdr.api_key))));
        }
        let up = home
            .get()
            .await
            .map_err(|e| WriteError::Upstream(e.to_string()))?;
        debug!(
            api = hdr.api_key,
            node = up.node(),
            "re-sending a request after losing the broker connection"
        );
        if let Ok(Some(rx)) = up.send(frame.clone(), true) {
            return Ok(rx);
        }
    }
}

/// A response with its broker addresses rewritten (`rewrite`). One fairlead cannot decode
/// passes only if it names no broker (ApiVersions): an address that is not rewritten must not
/// leak.
fn rewritten(
    cluster: &Cluster,
    hdr: &RequestHeader,
    request: &Bytes,
    resp: Bytes,
) -> Result<Bytes, WriteError> {
    rewrite::response(cluster, hdr, request, resp.clone()).or_else(|e| {
        metrics::passed_blind(hdr.api_key);
        warn!(api = hdr.api_key, version = hdr.api_version, error = %e, "response not decodable");
        if hdr.known == Some(ApiKey::ApiVersions) {
            Ok(resp)
        } else {
            Err(WriteError::Upstream(format!(
                "cannot rewrite a {} v{} response: {e}",
                metrics::api_name(hdr.api_key),
                hdr.api_version
            )))
        }
    })
}

/// Who a producer is, for per-producer ordering: its address and client id, computed once per
/// connection (and again if the client id changes).
struct ClientName {
    ip: String,
    client_id: Vec<u8>,
    name: Arc<str>,
}

impl ClientName {
    fn new(ip: String) -> Self {
        let name: Arc<str> = format!("{ip}/").into();
        ClientName {
            ip,
            client_id: Vec::new(),
            name,
        }
    }

    fn of(&mut self, frame: &[u8], hdr: &RequestHeader) -> Arc<str> {
        let id = client_id(frame, hdr).unwrap_or_default();
        if id != self.client_id.as_slice() {
            self.client_id = id.to_vec();
            self.name = format!("{}/{}", self.ip, String::from_utf8_lossy(id)).into();
        }
        self.name.clone()
    }
}

/// The client id of a request (header v1+: a nullable INT16-length string after the
/// correlation id).
fn client_id<'a>(frame: &'a [u8], hdr: &RequestHeader) -> Option<&'a [u8]> {
    hdr.body_offset?;
    let at = crate::codec::LEN_PREFIX + 8;
    let len = i16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]);
    frame.get(at + 2..at + 2 + usize::try_from(len).ok()?)
}
