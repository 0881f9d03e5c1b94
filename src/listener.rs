//! The accept loops: one per port bound in `ports` (the bootstrap port and one per broker),
//! each spawning a client connection task, capped by `max_connections`.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Semaphore};
use tracing::{error, warn, Instrument};

use crate::connection::{self, ClientIo};
use crate::metrics;
use crate::ports::Bound;
use crate::router::Router;
use crate::security::tls::TlsServer;

/// Runs the accept loops of every listener bound now or later, until shutdown.
pub async fn run(
    router: Arc<Router>,
    mut bound: mpsc::UnboundedReceiver<Bound>,
    limit: Arc<Semaphore>,
    tls: Option<Arc<TlsServer>>,
    shutdown: watch::Receiver<bool>,
) {
    let mut sd = shutdown.clone();
    loop {
        tokio::select! {
            next = bound.recv() => {
                let Some((node, sock)) = next else { return };
                match TcpListener::from_std(sock) {
                    Ok(l) => {
                        tokio::spawn(accept_loop(router.clone(), l, node, limit.clone(), tls.clone(), shutdown.clone()));
                    }
                    Err(e) => error!(?node, error = %e, "listener setup failed"),
                }
            }
            _ = sd.changed() => return,
        }
    }
}

async fn accept_loop(
    router: Arc<Router>,
    listener: TcpListener,
    node: Option<i32>,
    limit: Arc<Semaphore>,
    tls: Option<Arc<TlsServer>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let (socket, peer) = match accepted {
            Ok(x) => {
                backoff = Duration::from_millis(10);
                x
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            warn!(%peer, limit = router.cluster.cfg.max_connections, "connection refused: max_connections reached");
            metrics::connection_closed(metrics::Closed::Limit);
            drop(socket);
            continue;
        };
        let _ = socket.set_nodelay(true);
        let span = tracing::info_span!("conn", %peer, node = node.unwrap_or(-1));
        let p = router.clone();
        let sd = shutdown.clone();
        let tls = tls.clone();
        tokio::spawn(
            async move {
                let stream: Box<dyn ClientIo> = match tls {
                    None => Box::new(socket),
                    Some(tls) => {
                        match tokio::time::timeout(Duration::from_secs(10), tls.accept(socket))
                            .await
                        {
                            Ok(Ok(s)) => Box::new(s),
                            Ok(Err(e)) => {
                                warn!(error = %e, "TLS handshake with client failed");
                                metrics::connection_closed(metrics::Closed::TlsHandshake);
                                return;
                            }
                            Err(_) => {
                                warn!("TLS handshake with client timed out");
                                metrics::connection_closed(metrics::Closed::TlsHandshake);
                                return;
                            }
                        }
                    }
                };
                connection::serve(p, peer, stream, node, sd).await;
                drop(permit);
            }
            .instrument(span),
        );
    }
}
