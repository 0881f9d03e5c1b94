//! Dispatch: decode a request, plan where each partition goes, take the produce lanes, connect,
//! and send one sub-request per destination. A request that all goes to the client's own broker
//! unchanged is sent as the client's own bytes.
//!
//! The client connection's reader runs dispatch, so it must not wait there: while one partition
//! is being absorbed, the connection's other requests keep flowing (issue 20). What dispatch
//! decides on the reader, in request order, is the plan and each produce batch's place in its
//! lanes' queues (`lanes::Ticket`). When the lanes are free and every connection is open, the
//! request is sent at once, there; otherwise ("deferred") a task waits for the lanes (until the
//! request's deadline) and for the connections, then sends it, and the writer waits for that
//! task as for any answer. Only per-partition order (the lanes) and the order of the answers (the
//! writer) hold a request back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::plan::{count_reroutes, plan};
use super::{Conns, Job, Part, RoutedApi, Sent};
use crate::cluster::Cluster;
use crate::codec::header::RequestHeader;
use crate::codec::message::{decode_body, encode_request_with_header};
use crate::codec::LEN_PREFIX;
use crate::router::attempt::{Attempts, InFlight};
use crate::router::inspect::{uninspected, Unread};
use crate::router::lanes::{Claim, Expired, LaneKey, Lanes, Producer, Ticket};
use crate::router::retry::{Budget, Failure};
use crate::upstream::pool::{Owner, Pool};
use crate::upstream::{Upstream, UpstreamError};

/// What dispatch did with a request.
pub enum Dispatched<A: RoutedApi> {
    /// Routed and sent: complete it on the writer side.
    Job(Box<Job<A>>),
    /// Waiting for its lanes or a connection; sent by the task, which then yields the job.
    Deferred(JoinHandle<Box<Job<A>>>),
    /// Sent, and no response will come (acks=0 produce).
    NoResponse,
    /// Not decodable or not routable: forward the frame untouched on the home connection.
    Forward,
}

/// The partitions going to one node, on one connection (or why there is none).
struct Target {
    node: i32,
    idx: Vec<usize>,
    up: Result<Arc<Upstream>, UpstreamError>,
}

/// A request decoded and planned, not sent yet: everything its sends and its job need, owned,
/// so a deferred one can move to its own task.
struct Planned<A: RoutedApi> {
    cluster: Arc<Cluster>,
    ticks: Arc<Notify>,
    home: Arc<Upstream>,
    reroutes: Arc<Pool>,
    version: i16,
    correlation_id: i32,
    header: Bytes,
    envelope: A::Req,
    parts: Vec<Part<A>>,
    /// The client's frame, while it may go out unchanged.
    frame: Bytes,
    changed: bool,
    expects_response: bool,
    /// Produce: the lanes (released when the job completes), and this request's place in them
    /// (its claims name each part's lane, in part order).
    lanes: Option<Arc<Lanes>>,
    ticket: Option<Ticket>,
    /// Produce: the producer, whose batches go on broker connections of its own (`pool`).
    owner: Option<Owner>,
    generation: u64,
    budget: Budget,
}

impl<A: RoutedApi> Job<A> {
    /// Decodes, routes and sends a request, or defers the sending (see the module header).
    /// `frame` is the client's whole frame; `lanes` the produce lanes and the producer's name
    /// (Produce only).
    pub async fn dispatch(
        conns: Conns<'_>,
        lanes: Option<(&Arc<Lanes>, &Arc<str>)>,
        frame: Bytes,
        hdr: &RequestHeader,
    ) -> Result<Dispatched<A>, UpstreamError> {
        let Some(mut planned) = Planned::<A>::new(conns, lanes, frame, hdr) else {
            return Ok(Dispatched::Forward);
        };
        if !planned.expects_response {
            // acks=0: nothing to hold the writer with, and its sends keep the client's order.
            let targets = connect(conns, &mut planned.parts, planned.owner).await;
            planned.send(targets);
            return Ok(Dispatched::NoResponse);
        }
        let now = connect_now(conns, &mut planned.parts, planned.owner);
        if let Some(targets) = now {
            match planned.take_lanes_now(targets) {
                Ok(targets) => return Ok(Dispatched::Job(Box::new(planned.send(targets)))),
                Err(targets) => return Ok(Dispatched::Deferred(planned.defer(Some(targets)))),
            }
        }
        Ok(Dispatched::Deferred(planned.defer(None)))
    }
}

impl<A: RoutedApi> Planned<A> {
    /// None: the request is forwarded untouched (not decodable, or not routable).
    fn new(
        conns: Conns<'_>,
        lanes: Option<(&Arc<Lanes>, &Arc<str>)>,
        frame: Bytes,
        hdr: &RequestHeader,
    ) -> Option<Planned<A>> {
        let version = hdr.api_version;
        let (req, body_offset) = decode_routable::<A>(&frame, hdr)?;
        let started = Instant::now();
        let Conns {
            cluster,
            ticks,
            home,
            reroutes,
        } = conns;
        let generation = cluster.leadership.generation();
        let home_node = home.node();
        let (mut envelope, flat) = A::flatten(req);
        let mut changed = A::prepare(&mut envelope, version);
        let mut parts: Vec<Part<A>> = flat
            .into_iter()
            .map(|(topic, req)| Part::new(topic, req, home_node))
            .collect();
        changed |= plan(cluster, &envelope, version, &mut parts, home_node).changed;
        let expects_response = A::expects_response(&envelope);
        let owner = lanes.and_then(|(_, client)| Some(producer(client, parts.first()?).owner()));
        let (lanes, ticket) = match (lanes, expects_response) {
            (Some((lanes, client)), true) => {
                let ticket = lanes.enqueue(claims(client, &parts));
                (Some(lanes.clone()), Some(ticket))
            }
            _ => (None, None),
        };
        let budget = Budget::new(
            started,
            A::broker_wait(&envelope),
            cluster.cfg.absorb_timeout,
            A::hold_limit(&envelope),
            cluster.cfg.retry_backoff,
        );
        Some(Planned {
            cluster: cluster.clone(),
            ticks: ticks.clone(),
            home: home.clone(),
            reroutes: reroutes.clone(),
            version,
            correlation_id: hdr.correlation_id,
            header: frame.slice(LEN_PREFIX..body_offset),
            envelope,
            parts,
            frame,
            changed,
            expects_response,
            lanes,
            ticket,
            owner,
            generation,
            budget,
        })
    }

    /// The lanes if they are free now (or the request takes none); else the targets back.
    fn take_lanes_now(&mut self, targets: Vec<Target>) -> Result<Vec<Target>, Vec<Target>> {
        let Some(ticket) = &mut self.ticket else {
            return Ok(targets);
        };
        retarget(ticket, &self.parts);
        match ticket.try_take(upstream_of(&targets)) {
            Some(chosen) => Ok(self.lanes_taken(chosen)),
            None => Err(targets),
        }
    }

    /// Waits, in its own task, for the connections and the lanes, then sends. Past the deadline
    /// without its lanes, nothing is sent: each partition gets the error for no answer (`merge`).
    fn defer(mut self, targets: Option<Vec<Target>>) -> JoinHandle<Box<Job<A>>> {
        debug!(api = ?A::KEY, "request waits for its lanes or a connection; the connection reads on");
        tokio::spawn(async move {
            let targets = match targets {
                Some(t) => t,
                None => {
                    let conns = Conns {
                        cluster: &self.cluster,
                        ticks: &self.ticks,
                        home: &self.home,
                        reroutes: &self.reroutes,
                    };
                    connect(conns, &mut self.parts, self.owner).await
                }
            };
            let Some(ticket) = &mut self.ticket else {
                return Box::new(self.send(targets));
            };
            retarget(ticket, &self.parts);
            let deadline = self.budget.deadline();
            match ticket.take(upstream_of(&targets), Some(deadline)).await {
                Ok((chosen, _)) => {
                    let targets = self.lanes_taken(chosen);
                    Box::new(self.send(targets))
                }
                Err(Expired) => {
                    warn!(api = ?A::KEY, partitions = self.parts.len(), "an earlier batch of a partition was still unresolved at the deadline: not sent");
                    for p in &mut self.parts {
                        p.failure = Some(Failure::NotSent);
                    }
                    Box::new(self.into_job(Vec::new()))
                }
            }
        })
    }

    /// The lanes were granted: each part now holds its lane (released when the job completes),
    /// and goes on the connection the lane chose.
    fn lanes_taken(&mut self, chosen: Vec<Option<Arc<Upstream>>>) -> Vec<Target> {
        if let Some(ticket) = &self.ticket {
            for (p, k) in self.parts.iter_mut().zip(ticket.keys()) {
                p.lane = Some(k.clone());
            }
        }
        let mut regrouped: Vec<Target> = Vec::new();
        for (i, up) in chosen.into_iter().enumerate() {
            let node = self.parts[i].node;
            let id = up.as_ref().map(|u| u.id());
            match regrouped
                .iter_mut()
                .find(|t| t.node == node && t.up.as_ref().ok().map(|u| u.id()) == id)
            {
                Some(t) => t.idx.push(i),
                None => regrouped.push(Target {
                    node,
                    idx: vec![i],
                    up: up.ok_or(UpstreamError::Connect {
                        node,
                        addr: String::new(),
                        reason: "no connection".into(),
                    }),
                }),
            }
        }
        regrouped
    }

    /// Sends one sub-request per target, all back to back, and makes the job that waits for
    /// their answers.
    fn send(mut self, targets: Vec<Target>) -> Job<A> {
        let single_home = targets.len() == 1
            && targets[0]
                .up
                .as_ref()
                .is_ok_and(|u| u.id() == self.home.id());
        let original = (single_home && !self.changed).then(|| self.frame.clone());
        let request = Request {
            header: &self.header,
            envelope: &self.envelope,
            parts: &self.parts,
            version: self.version,
            original: &original,
            expects_response: self.expects_response,
        };
        let (sent, delivered): (Vec<Sent>, Vec<bool>) =
            targets.into_iter().map(|t| send(t, &request)).unzip();
        // Collected only when something went elsewhere: an empty collect allocates nothing.
        let home = self.home.node();
        let rerouted: Vec<&Part<A>> = sent
            .iter()
            .zip(delivered)
            .filter(|(_, d)| *d)
            .flat_map(|(s, _)| s.idx.iter().map(|i| &self.parts[*i]))
            .filter(|p| p.node != home)
            .collect();
        count_reroutes(&self.cluster, &rerouted);
        self.ticket = None;
        self.into_job(sent)
    }

    fn into_job(self, sent: Vec<Sent>) -> Job<A> {
        let conns = Conns {
            cluster: &self.cluster,
            ticks: &self.ticks,
            home: &self.home,
            reroutes: &self.reroutes,
        };
        Job {
            at: Attempts::new(conns, A::KEY, self.budget).for_owner(self.owner),
            version: self.version,
            correlation_id: self.correlation_id,
            header: self.header,
            envelope: self.envelope,
            parts: self.parts,
            sent,
            lanes: self.lanes,
            generation: self.generation,
        }
    }
}

/// A part's producer: an idempotent producer is its producer id and epoch; any other is named
/// by the client (`lanes::Producer`).
fn producer<A: RoutedApi>(client: &Arc<str>, part: &Part<A>) -> Producer {
    match part.producer {
        Some((id, epoch)) => Producer::Id { id, epoch },
        None => Producer::Named(client.clone()),
    }
}

/// Each part's lane, its producer's partition, and the node it goes to.
fn claims<A: RoutedApi>(client: &Arc<str>, parts: &[Part<A>]) -> Vec<Claim> {
    parts
        .iter()
        .map(|part| Claim {
            key: LaneKey::Partition {
                producer: producer(client, part),
                topic: part.topic.clone(),
                partition: part.partition(),
            },
            node: part.node,
            // A non-idempotent batch cannot be put back in order by the broker: right after a
            // leader change it goes alone.
            alone: part.settling && !part.idempotent,
        })
        .collect()
}

/// The nodes the parts go to now: connecting may have sent some to the client's own broker
/// (`identity`).
fn retarget<A: RoutedApi>(ticket: &mut Ticket, parts: &[Part<A>]) {
    ticket.retarget(parts.iter().map(|p| p.node));
}

/// The connection each node's partitions would use when their lane is not already sending.
fn upstream_of(targets: &[Target]) -> impl Fn(i32) -> Option<Arc<Upstream>> + Send + '_ {
    move |node| {
        targets
            .iter()
            .find(|t| t.node == node)
            .and_then(|t| t.up.as_ref().ok().cloned())
    }
}

/// The partitions grouped by the node they go to.
fn by_node<A: RoutedApi>(parts: &[Part<A>]) -> BTreeMap<i32, Vec<usize>> {
    let mut groups: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
    for (i, p) in parts.iter().enumerate() {
        groups.entry(p.node).or_default().push(i);
    }
    groups
}

/// One connection per destination, made before anything is sent, so parts leave back to back.
async fn connect<A: RoutedApi>(
    conns: Conns<'_>,
    parts: &mut [Part<A>],
    owner: Option<Owner>,
) -> Vec<Target> {
    let mut resolved = Vec::new();
    for (node, idx) in by_node(parts) {
        let up = if node == conns.home.node() {
            Ok(conns.home.clone())
        } else {
            conns.cluster.upstream_in(conns.reroutes, node, owner).await
        };
        resolved.push(Target { node, idx, up });
    }
    to_home_where_not_as_client(conns, parts, resolved)
}

/// [`connect`] when every connection is open already; `None` when one must be opened.
fn connect_now<A: RoutedApi>(
    conns: Conns<'_>,
    parts: &mut [Part<A>],
    owner: Option<Owner>,
) -> Option<Vec<Target>> {
    let mut resolved = Vec::new();
    for (node, idx) in by_node(parts) {
        let up = if node == conns.home.node() {
            Ok(conns.home.clone())
        } else {
            conns.cluster.upstream_ready(conns.reroutes, node, owner)?
        };
        resolved.push(Target { node, idx, up });
    }
    Some(to_home_where_not_as_client(conns, parts, resolved))
}

/// A partition no connection of the client's identity reaches at its leader goes to the
/// client's own broker instead, whose answer it gets (`identity`).
fn to_home_where_not_as_client<A: RoutedApi>(
    conns: Conns<'_>,
    parts: &mut [Part<A>],
    resolved: Vec<Target>,
) -> Vec<Target> {
    let home_node = conns.home.node();
    let mut targets: Vec<Target> = Vec::with_capacity(resolved.len());
    let mut to_home = Vec::new();
    for t in resolved {
        match t.up {
            Err(UpstreamError::NotAsClient { .. }) => to_home.extend(t.idx),
            _ => targets.push(t),
        }
    }
    if !to_home.is_empty() {
        for i in &to_home {
            parts[*i].node = home_node;
            parts[*i].unroutable = true;
        }
        match targets.iter_mut().find(|t| t.node == home_node) {
            Some(t) => {
                t.idx.extend(to_home);
                t.idx.sort_unstable();
            }
            None => targets.push(Target {
                node: home_node,
                idx: to_home,
                up: Ok(conns.home.clone()),
            }),
        }
    }
    targets
}

/// What every destination's sub-request is built from.
struct Request<'a, A: RoutedApi> {
    /// The client's request header (its correlation id and client id are kept).
    header: &'a Bytes,
    envelope: &'a A::Req,
    parts: &'a [Part<A>],
    version: i16,
    /// The client's own frame, when it goes unchanged to the client's own broker.
    original: &'a Option<Bytes>,
    expects_response: bool,
}

/// The request decoded, with where its body starts, if fairlead routes it (None: forward it
/// untouched; an undecodable one is counted and logged).
fn decode_routable<A: RoutedApi>(frame: &Bytes, hdr: &RequestHeader) -> Option<(A::Req, usize)> {
    let version = hdr.api_version;
    let body_offset = hdr.body_offset?;
    let req: A::Req = match decode_body(frame, body_offset, A::KEY, version) {
        Ok(r) => r,
        Err(e) => {
            uninspected(A::KEY as i16, version, Unread::Request, &e);
            return None;
        }
    };
    A::routable(&req, version).then_some((req, body_offset))
}

/// The bytes for one destination: the client's own frame, or its partitions re-encoded.
fn encode<A: RoutedApi>(r: &Request<'_, A>, idx: &[usize]) -> Result<Bytes, String> {
    if let Some(frame) = r.original {
        return Ok(frame.clone());
    }
    let subset: Vec<_> = idx
        .iter()
        .map(|i| (&r.parts[*i].topic, &r.parts[*i].req))
        .collect();
    encode_request_with_header(r.header, &A::build(r.envelope, &subset), A::KEY, r.version)
        .map(|b| b.freeze())
        .map_err(|e| e.to_string())
}

/// Sends one target's partitions: the client's frame itself when it goes out unchanged
/// (`original`), else a sub-request built from the envelope and those partitions. True: it left.
fn send<A: RoutedApi>(t: Target, r: &Request<'_, A>) -> (Sent, bool) {
    let Target { node, idx, up } = t;
    let used = up.as_ref().ok().cloned();
    let (rx, delivered) = match up {
        Err(e) => {
            debug!(node, error = %e, "no connection for a part");
            (None, false)
        }
        Ok(up) => match encode(r, &idx) {
            Ok(bytes) => match up.send(bytes, r.expects_response) {
                Ok(rx) => (rx, true),
                Err(e) => {
                    debug!(node, error = %e, "part not sent");
                    (None, false)
                }
            },
            Err(e) => {
                warn!(api = ?A::KEY, version = r.version, error = %e, "could not encode a sub-request");
                (None, false)
            }
        },
    };
    let sent = Sent {
        flight: InFlight { rx, up: used, node },
        idx,
        original: r.original.is_some(),
    };
    (sent, delivered)
}
