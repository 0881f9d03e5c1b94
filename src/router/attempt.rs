//! One attempt at a broker's answer, the same for both routers (`partitioned`, `coordinator`):
//! send on the right connection, wait for the answer within the request's budget and the
//! router's shared tick, abandon a connection whose broker stopped answering, and wait between
//! attempts. Every [`Failure`] that is not a broker's answer is made here (`failure`, from
//! `UpstreamError::sent`: whether the broker may have acted on the request).
//!
//! What differs between the routers stays with them: what to send where (partitions grouped by
//! leader; a client's frame to a key's coordinator) and how to merge what comes back. Whether
//! to send again is `retry`'s; what the client gets is counted by one [`Tally`].

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use tokio::sync::futures::Notified;
use tokio::sync::Notify;
use tracing::{debug, warn};

use super::inspect::Tally;
use super::retry::{Budget, Failure};
use crate::cluster::Cluster;
use crate::metrics;
use crate::upstream::pool::{Owner, Pool};
use crate::upstream::{Reply, ReplyRx, Upstream, UpstreamError};

/// What a request is routed with: fairlead's view of the cluster, the router's shared wait
/// tick, and the connections of the client connection it came on: its home (the broker it
/// chose) and its own connections to the other brokers (see `session::Session::reroutes`).
#[derive(Clone, Copy)]
pub struct Conns<'a> {
    pub cluster: &'a Arc<Cluster>,
    pub ticks: &'a Arc<Notify>,
    pub home: &'a Arc<Upstream>,
    pub reroutes: &'a Arc<Pool>,
}

/// One attempt on its way: sent (or not) on a connection to `node`.
pub struct InFlight {
    /// The answer comes on this (None: nothing was sent).
    pub rx: Option<ReplyRx>,
    /// The connection it went on (abandoned if its broker never answers).
    pub up: Option<Arc<Upstream>>,
    pub node: i32,
}

impl InFlight {
    /// Sends `frame` to `node` on `up` (if it cannot take it, nothing is sent).
    pub fn on(node: i32, up: Arc<Upstream>, frame: Bytes, api: ApiKey) -> InFlight {
        let rx = up.send(frame, true).unwrap_or_else(|e| {
            debug!(?api, node, error = %e, "not sent");
            None
        });
        InFlight {
            rx,
            up: Some(up),
            node,
        }
    }
}

/// How long an attempt's answer is waited for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// As long as the broker may legitimately take (`Budget::answer_by`); past that its
    /// connection is abandoned: it stopped answering.
    Answered,
    /// Until the absorb deadline (`Budget::deadline`), for a partition's replay: an answer
    /// later than that could not be used, and the broker may still be answering the other
    /// requests on the connection, which is kept.
    Deadline,
}

/// What becomes of one reply: the broker's answer, or the failure it stands for.
fn failure(reply: Result<Reply, tokio::sync::oneshot::error::RecvError>) -> Result<Bytes, Failure> {
    match reply {
        Ok(Ok(frame)) => Ok(frame.freeze()),
        Ok(Err(e)) if !e.sent() => Err(Failure::NotSent),
        // The connection ended (or was dropped) with the request in flight.
        _ => Err(Failure::ConnectionLost),
    }
}

/// The attempts of one routed request: its budget, the connections it may use, the waits
/// between attempts, and the count of what the client gets.
pub struct Attempts {
    pub cluster: Arc<Cluster>,
    /// The router's shared tick (see `router::TICK`).
    ticks: Arc<Notify>,
    /// The client connection's connections to other brokers, for re-sends.
    reroutes: Arc<Pool>,
    /// A producer's request: its re-sends go on the producer's own connections (`pool`).
    owner: Option<Owner>,
    api: ApiKey,
    pub budget: Budget,
    /// Re-sends so far.
    resent: u32,
    pub tally: Tally,
}

impl Attempts {
    pub fn new(conns: Conns<'_>, api: ApiKey, budget: Budget) -> Attempts {
        Attempts {
            cluster: conns.cluster.clone(),
            ticks: conns.ticks.clone(),
            reroutes: conns.reroutes.clone(),
            owner: None,
            api,
            budget,
            resent: 0,
            tally: Tally::new(api as i16),
        }
    }

    /// The attempts of a producer's request: its re-sends go on its own connections.
    pub fn for_owner(mut self, owner: Option<Owner>) -> Attempts {
        self.owner = owner;
        self
    }

    /// Whether anything was sent again.
    pub fn resent(&self) -> bool {
        self.resent > 0
    }

    /// Waits before a re-send, unless it is the request's first and every part of it goes to
    /// a new leader or coordinator (`reroute`): that broker has not been asked yet.
    pub async fn before_resend(&mut self, reroute: bool) {
        if self.resent > 0 || !reroute {
            self.budget.back_off().await;
        }
        self.resent += 1;
    }

    /// A connection to `node` that may carry the client's requests, opened if needed.
    pub async fn connection(&self, node: i32) -> Result<Arc<Upstream>, UpstreamError> {
        self.cluster
            .upstream_in(&self.reroutes, node, self.owner)
            .await
    }

    /// Sends `frame` to `node` on a connection that may carry the client's requests. `None`:
    /// no such connection reaches `node` (`identity`); one that cannot be made gives an
    /// attempt that was not sent.
    pub async fn send(&self, node: i32, frame: Bytes) -> Option<InFlight> {
        match self.connection(node).await {
            Err(UpstreamError::NotAsClient { .. }) => {
                debug!(api = ?self.api, node, "no connection as the client reaches the target");
                None
            }
            Ok(up) => Some(InFlight::on(node, up, frame, self.api)),
            Err(e) => {
                debug!(api = ?self.api, node, error = %e, "target unreachable");
                Some(InFlight {
                    rx: None,
                    up: None,
                    node,
                })
            }
        }
    }

    /// One attempt: sends `frame` to `node` (as [`Attempts::send`]), counts it rerouted if
    /// `node` is not where the request went last (`from`), and waits for its answer
    /// ([`Until::Answered`]). `None`: no connection of the client's identity reaches `node`.
    pub async fn attempt(
        &self,
        node: i32,
        from: i32,
        frame: Bytes,
    ) -> Option<Result<Bytes, Failure>> {
        let flight = self.send(node, frame).await?;
        if node != from {
            metrics::rerouted(self.api as i16, 1);
        }
        Some(self.wait(flight, Until::Answered, None).await)
    }

    /// Waits for an attempt's answer until `until`. `early`, asked at every router tick,
    /// whether to give up on it before then (the outcome is then unknown, like a lost
    /// connection); without it the wait takes no tick.
    pub async fn wait(
        &self,
        mut flight: InFlight,
        until: Until,
        early: Option<&(dyn Fn(&InFlight) -> bool + Sync)>,
    ) -> Result<Bytes, Failure> {
        let Some(mut rx) = flight.rx.take() else {
            return Err(Failure::NotSent);
        };
        let at = match until {
            Until::Answered => self.budget.answer_by(),
            Until::Deadline => self.budget.deadline(),
        };
        // Registered once and far off: later than the shared tick, so it never wakes the
        // runtime early (see `router::start_ticker`).
        let give_up = tokio::time::sleep_until(at.into());
        tokio::pin!(give_up);
        loop {
            // Created before waiting, so a tick while this request is polled is not missed.
            let tick = early.map(|_| self.ticks.notified());
            tokio::select! {
                biased;
                reply = &mut rx => return failure(reply),
                _ = &mut give_up => {
                    if until == Until::Answered {
                        self.abandon(&flight.up, flight.node);
                    }
                    return Err(Failure::ConnectionLost);
                }
                _ = ticked(tick) => {
                    if early.is_some_and(|f| f(&flight)) {
                        return Err(Failure::ConnectionLost);
                    }
                }
            }
        }
    }

    fn abandon(&self, up: &Option<Arc<Upstream>>, node: i32) {
        let waited_ms = self.budget.elapsed().as_millis() as u64;
        warn!(api = ?self.api, node, waited_ms, "broker did not answer: abandoning its connection");
        if let Some(up) = up {
            up.abandon();
        }
    }
}

/// The next tick, or never.
async fn ticked(tick: Option<Notified<'_>>) {
    match tick {
        Some(t) => t.await,
        None => std::future::pending().await,
    }
}
