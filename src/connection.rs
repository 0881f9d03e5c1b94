//! One client connection: bytes in, bytes out, in order. Every decision about a request is the
//! router's (`router::route`); this module only reads frames and writes answers.
//!
//! The reader reads frames and hands each request to the router, which sends it upstream at once
//! and returns the answer to wait for; the writer writes those answers strictly in request order,
//! so responses leave in request order whatever the brokers do, and pipelining is kept:
//! requests are sent as they arrive, not when the previous answer is back. The queue is bounded
//! (`max_in_flight_per_connection`): a client that sends faster than its answers drain, or
//! that stops reading them, is simply not read from any more (backpressure, bounded memory).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinError, JoinHandle};
use tracing::{debug, warn};

use crate::codec::frame::{FrameError, FrameReader, ReadTimeouts};
use crate::codec::header::{parse_request, RequestHeader};
use crate::metrics;
use crate::router::session::Session;
use crate::router::{self, Answer, Router};

/// A client's byte stream: plain TCP or TLS.
pub trait ClientIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> ClientIo for T {}

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
    let cfg = &router.cluster.cfg;
    let Some(session) = Session::open(&router, peer.ip(), node).await else {
        return;
    };
    let session = Arc::new(session);
    let (rd, wr) = tokio::io::split(socket);
    let (tx, rx) = mpsc::channel::<Answer>(cfg.max_in_flight_per_connection);
    let mut writer = tokio::spawn(write_loop(cfg.client_write_timeout, wr, rx));
    let timeouts = ReadTimeouts {
        idle: cfg.client_idle_timeout,
        frame: cfg.client_frame_timeout,
    };
    let mut reader = FrameReader::with_timeouts(rd, cfg.max_frame_bytes, 8, timeouts);

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
        match router::route(&router, &session, frame, hdr).await {
            Ok(Some(answer)) => {
                if tx.send(answer).await.is_err() {
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
    drain(writer, writer_result, cfg.drain_timeout).await;
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

#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error("writing to the client failed: {0}")]
    Client(#[from] std::io::Error),
    #[error("{0}")]
    Upstream(String),
    #[error("the client did not read its responses for {0:?}")]
    NotReading(std::time::Duration),
}

/// Writes the answers in request order, each as soon as it and every earlier one is complete.
async fn write_loop(
    write_timeout: Duration,
    mut wr: tokio::io::WriteHalf<Box<dyn ClientIo>>,
    mut rx: mpsc::Receiver<Answer>,
) -> Result<(), WriteError> {
    while let Some(answer) = rx.recv().await {
        let (api_key, started) = (answer.api_key, answer.started);
        let out = answer
            .frame()
            .await
            .map_err(|e| WriteError::Upstream(e.to_string()))?;
        let len = out.len();
        // One write per response, from the response's own buffers (both parts of a spliced
        // one in a vectored write). A client that stops reading blocks it; past the write
        // timeout the connection is closed (the reader meanwhile stops reading new requests:
        // at most max_in_flight_per_connection are pending).
        match tokio::time::timeout(write_timeout, wr.write_all_buf(&mut out.into_buf())).await {
            Ok(r) => r?,
            Err(_) => {
                metrics::connection_closed(metrics::Closed::ClientNotReading);
                return Err(WriteError::NotReading(write_timeout));
            }
        }
        metrics::bytes(metrics::Direction::ToClients, len);
        metrics::request_duration(api_key, started.elapsed());
    }
    let _ = wr.shutdown().await;
    Ok(())
}
