//! The ports clients connect to: the bootstrap port, and one port per broker node.
//!
//! Broker node N is served at `node_port_base + N` (by default the bootstrap port + 1 + N), a
//! fixed mapping, so several fairlead replicas agree on it without sharing state. A port is
//! bound the moment fairlead first hears of its broker, synchronously, before the response
//! naming it reaches a client; the bound socket then goes to the accept loops
//! (`listener::run`) over a channel that `server` creates and hands to both sides. Brokers that
//! leave are simply no longer advertised.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use tokio::sync::mpsc;
use tracing::{error, info};

/// A bound socket on its way to its accept loop; `None` node = bootstrap.
pub type Bound = (Option<i32>, std::net::TcpListener);

pub struct Ports {
    listen: SocketAddr,
    node_port_base: u16,
    bound: Mutex<HashMap<Option<i32>, SocketAddr>>,
    to_listener: mpsc::UnboundedSender<Bound>,
}

impl Ports {
    /// `to_listener` receives every socket this binds.
    pub fn new(
        listen: SocketAddr,
        node_port_base: u16,
        to_listener: mpsc::UnboundedSender<Bound>,
    ) -> Ports {
        Ports {
            listen,
            node_port_base,
            bound: Mutex::default(),
            to_listener,
        }
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
        // std's bind sets SO_REUSEADDR on Unix, so a restarted fairlead can bind at once.
        let sock = std::net::TcpListener::bind(addr)?;
        sock.set_nonblocking(true)?;
        let local = sock.local_addr()?;
        bound.insert(node, local);
        let _ = self.to_listener.send((node, sock));
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
