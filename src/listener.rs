//! Where clients connect: the bootstrap port, and one port per broker node.
//!
//! Broker node N is served at `node_port_base + N` (by default the bootstrap port + 1 + N), a
//! fixed mapping, so several fairlead replicas agree on it without sharing state. A port opens
//! the moment fairlead first hears of its broker (before the response naming it reaches a
//! client); brokers that leave are simply no longer advertised.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Semaphore};
use tracing::{error, info, warn, Instrument};

use crate::connection;
use crate::metrics;
use crate::proxy::Proxy;
use crate::security::tls::TlsServer;

/// A client's byte stream: plain TCP or TLS.
pub trait ClientIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> ClientIo for T {}

/// A bound socket waiting for its accept loop; `None` node = bootstrap.
type Bound = (Option<i32>, std::net::TcpListener);

pub struct Listeners {
    listen: SocketAddr,
    node_port_base: u16,
    bound: Mutex<HashMap<Option<i32>, SocketAddr>>,
    tx: mpsc::UnboundedSender<Bound>,
}

impl Listeners {
    pub fn new(
        listen: SocketAddr,
        node_port_base: u16,
    ) -> (Listeners, mpsc::UnboundedReceiver<Bound>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Listeners {
                listen,
                node_port_base,
                bound: Mutex::default(),
                tx,
            },
            rx,
        )
    }

    /// Binds the bootstrap port.
    pub fn bind_bootstrap(&self) -> std::io::Result<SocketAddr> {
        self.bind(None, self.listen)
    }

    /// Binds the port of broker `node` if not bound yet. Synchronous on purpose: the port must
    /// accept connections before a response naming it reaches a client.
    pub fn ensure_node(&self, node: i32) {
        if self.bound.lock().unwrap().contains_key(&Some(node)) {
            return;
        }
        let Some(port) = u16::try_from(self.node_port_base as i64 + node as i64).ok() else {
            error!(
                node,
                base = self.node_port_base,
                "broker id does not map to a port: clients cannot reach this broker"
            );
            return;
        };
        if let Err(e) = self.bind(Some(node), SocketAddr::new(self.listen.ip(), port)) {
            error!(node, port, error = %e, "cannot listen for broker; clients cannot reach it through fairlead");
        }
    }

    fn bind(&self, node: Option<i32>, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        let mut bound = self.bound.lock().unwrap();
        if let Some(a) = bound.get(&node) {
            return Ok(*a);
        }
        let sock = socket2_bind(addr)?;
        let local = sock.local_addr()?;
        bound.insert(node, local);
        let _ = self.tx.send((node, sock));
        match node {
            None => info!(addr = %local, "listening for clients (bootstrap)"),
            Some(n) => info!(addr = %local, node = n, "listening for clients of broker"),
        }
        Ok(local)
    }

    /// Addresses bound so far (bootstrap under `None`).
    pub fn bound(&self) -> HashMap<Option<i32>, SocketAddr> {
        self.bound.lock().unwrap().clone()
    }
}

fn socket2_bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    // std's bind sets SO_REUSEADDR on Unix, so a restarted fairlead can bind at once.
    let l = std::net::TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Runs the accept loops of every listener bound now or later, until shutdown.
pub async fn run(
    proxy: Arc<Proxy>,
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
                        tokio::spawn(accept_loop(proxy.clone(), l, node, limit.clone(), tls.clone(), shutdown.clone()));
                    }
                    Err(e) => error!(?node, error = %e, "listener setup failed"),
                }
            }
            _ = sd.changed() => return,
        }
    }
}

async fn accept_loop(
    proxy: Arc<Proxy>,
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
            warn!(%peer, limit = proxy.cfg.max_connections, "connection refused: max_connections reached");
            metrics::connection_closed("limit");
            drop(socket);
            continue;
        };
        let _ = socket.set_nodelay(true);
        let span = tracing::info_span!("conn", %peer, node = node.unwrap_or(-1));
        let p = proxy.clone();
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
                                metrics::connection_closed("tls_handshake");
                                return;
                            }
                            Err(_) => {
                                warn!("TLS handshake with client timed out");
                                metrics::connection_closed("tls_handshake");
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
