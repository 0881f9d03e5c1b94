//! Upstream connections per broker, opened on first use. One pool holds fairlead's own
//! connections (Metadata, log checks); each client connection has another for the requests it
//! has rerouted or replayed, so no client waits behind another's request: a broker answers the
//! requests of one connection one at a time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{Upstream, UpstreamConfig, UpstreamError};

pub struct Pool {
    cfg: UpstreamConfig,
    conns: Mutex<HashMap<i32, Arc<Upstream>>>,
    /// One connect at a time per node, so a burst of reroutes opens one connection, not many.
    connecting: Mutex<HashMap<i32, Arc<tokio::sync::Mutex<()>>>>,
    /// Nodes whose last connection attempt failed (for the admin view).
    unreachable: Mutex<HashMap<i32, String>>,
}

impl Pool {
    pub fn new(cfg: UpstreamConfig) -> Self {
        Pool {
            cfg,
            conns: Mutex::default(),
            connecting: Mutex::default(),
            unreachable: Mutex::default(),
        }
    }

    pub fn config(&self) -> &UpstreamConfig {
        &self.cfg
    }

    /// A live connection to `node` at `addr`, connecting if needed.
    pub async fn get(&self, node: i32, addr: &str) -> Result<Arc<Upstream>, UpstreamError> {
        if let Some(up) = self.live(node, addr) {
            return Ok(up);
        }
        let gate = self
            .connecting
            .lock()
            .unwrap()
            .entry(node)
            .or_default()
            .clone();
        let _g = gate.lock().await;
        if let Some(up) = self.live(node, addr) {
            return Ok(up);
        }
        let up = match Upstream::connect(node, addr, &self.cfg, false).await {
            Ok(up) => up,
            Err(e) => {
                self.unreachable.lock().unwrap().insert(node, e.to_string());
                return Err(e);
            }
        };
        self.unreachable.lock().unwrap().remove(&node);
        self.conns.lock().unwrap().insert(node, up.clone());
        Ok(up)
    }

    /// The current connection to `node` if it is open and still points at `addr`.
    pub fn live(&self, node: i32, addr: &str) -> Option<Arc<Upstream>> {
        let conns = self.conns.lock().unwrap();
        conns
            .get(&node)
            .filter(|u| u.usable() && u.addr() == addr)
            .cloned()
    }

    /// Why the last attempt to connect to `node` failed, if it did.
    pub fn unreachable(&self, node: i32) -> Option<String> {
        self.unreachable.lock().unwrap().get(&node).cloned()
    }

    /// Drops the connection to a node (it left the cluster or its address changed).
    pub fn forget(&self, node: i32) {
        self.conns.lock().unwrap().remove(&node);
    }
}
