//! Dispatch: decode a request, plan where each partition goes, take the produce lanes, connect,
//! and send one sub-request per destination, all before the next request of the connection is
//! read. A request that all goes to the client's own broker unchanged is sent as the client's
//! own bytes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tracing::{debug, warn};

use super::plan::plan;
use super::{Conns, Job, Part, RoutedApi, Sent};
use crate::codec::header::RequestHeader;
use crate::codec::message::{decode_body, encode_request_with_header};
use crate::codec::LEN_PREFIX;
use crate::router::attempt::{Attempts, InFlight};
use crate::router::inspect::{uninspected, Unread};
use crate::router::lanes::{LaneKey, Lanes, Producer, Want};
use crate::router::retry::Budget;
use crate::upstream::{Upstream, UpstreamError};

/// What dispatch did with a request.
pub enum Dispatched<A: RoutedApi> {
    /// Routed and sent: complete it on the writer side.
    Job(Box<Job<A>>),
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

impl<A: RoutedApi> Job<A> {
    /// Decodes, routes and sends a request. `frame` is the client's whole frame; `lanes` the
    /// produce lanes and the producer's name (Produce only).
    pub async fn dispatch(
        conns: Conns<'_>,
        lanes: Option<(&Arc<Lanes>, &Arc<str>)>,
        frame: Bytes,
        hdr: &RequestHeader,
    ) -> Result<Dispatched<A>, UpstreamError> {
        let version = hdr.api_version;
        let Some((req, body_offset)) = decode_routable::<A>(&frame, hdr) else {
            return Ok(Dispatched::Forward);
        };
        let started = Instant::now();
        let Conns { cluster, home, .. } = conns;
        let generation = cluster.leadership.generation();
        let home_node = home.node();
        let (mut envelope, flat) = A::flatten(req);
        let mut changed = A::prepare(&mut envelope, version);
        let mut parts: Vec<Part<A>> = flat
            .into_iter()
            .map(|(topic, req)| Part::new(topic, req, home_node))
            .collect();
        changed |= plan(cluster, &envelope, version, &mut parts, home_node).changed;

        let mut targets = connect(conns, &mut parts).await;
        let expects_response = A::expects_response(&envelope);
        if let (Some((lanes, client)), true) = (lanes, expects_response) {
            targets = take_lanes(lanes, client, &mut parts, targets).await;
        }

        let header = frame.slice(LEN_PREFIX..body_offset);
        let single_home =
            targets.len() == 1 && targets[0].up.as_ref().is_ok_and(|u| u.id() == home.id());
        let original = (single_home && !changed).then_some(frame);
        let request = Request {
            header: &header,
            envelope: &envelope,
            parts: &parts,
            version,
            original: &original,
            expects_response,
        };
        let sent = targets.into_iter().map(|t| send(t, &request)).collect();
        if !expects_response {
            return Ok(Dispatched::NoResponse);
        }
        let budget = Budget::new(
            started,
            A::broker_wait(&envelope),
            cluster.cfg.absorb_timeout,
            A::hold_limit(&envelope),
            cluster.cfg.retry_backoff,
        );
        Ok(Dispatched::Job(Box::new(Job {
            at: Attempts::new(conns, A::KEY, budget),
            version,
            correlation_id: hdr.correlation_id,
            header,
            envelope,
            parts,
            sent,
            lanes: lanes.map(|(l, _)| l.clone()),
            generation,
        })))
    }
}

/// One connection per destination, made before anything is sent, so parts leave back to back.
/// A partition no connection of the client's identity reaches at its leader goes to the
/// client's own broker instead, whose answer it gets (`identity`).
async fn connect<A: RoutedApi>(conns: Conns<'_>, parts: &mut [Part<A>]) -> Vec<Target> {
    let home_node = conns.home.node();
    let mut groups: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
    for (i, p) in parts.iter().enumerate() {
        groups.entry(p.node).or_default().push(i);
    }
    let mut targets: Vec<Target> = Vec::with_capacity(groups.len());
    let mut to_home = Vec::new();
    for (node, idx) in groups {
        let up = if node == home_node {
            Ok(conns.home.clone())
        } else {
            conns.cluster.upstream_in(conns.reroutes, node).await
        };
        match up {
            Err(UpstreamError::NotAsClient { .. }) => to_home.extend(idx),
            up => targets.push(Target { node, idx, up }),
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

/// Per-producer partition order (see `lanes`): each batch takes its lane, which may make it
/// join the connection the lane is using, or wait for the lane to drain. Returns the targets
/// regrouped by the connection each partition must use.
async fn take_lanes<A: RoutedApi>(
    lanes: &Lanes,
    client: &Arc<str>,
    parts: &mut [Part<A>],
    targets: Vec<Target>,
) -> Vec<Target> {
    let mut wanted = Vec::with_capacity(parts.len());
    let mut order = Vec::with_capacity(parts.len());
    for t in &targets {
        for &i in &t.idx {
            let part = &mut parts[i];
            let producer = match part.producer {
                Some((id, epoch)) => Producer::Id { id, epoch },
                None => Producer::Named(client.clone()),
            };
            let key = LaneKey::Partition {
                producer,
                topic: part.topic.clone(),
                partition: part.partition(),
            };
            part.lane = Some(key.clone());
            wanted.push(Want {
                key,
                node: t.node,
                upstream: t.up.as_ref().ok().cloned(),
                // A non-idempotent batch cannot be put back in order by the broker: right after
                // a leader change it goes alone.
                alone: part.settling && !part.idempotent,
            });
            order.push((t.node, i));
        }
    }
    let (chosen, waited) = lanes.acquire(wanted).await;
    if waited {
        debug!(api = ?A::KEY, "held a batch until its partition's earlier batches were resolved");
    }
    let mut regrouped: Vec<Target> = Vec::with_capacity(targets.len());
    for ((node, i), up) in order.into_iter().zip(chosen) {
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

/// Sends one target's partitions: the client's frame itself when it goes out unchanged
/// (`original`), else a sub-request built from the envelope and those partitions.
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

fn send<A: RoutedApi>(t: Target, r: &Request<'_, A>) -> Sent {
    let Target { node, idx, up } = t;
    let used = up.as_ref().ok().cloned();
    let rx = match up {
        Err(e) => {
            debug!(node, error = %e, "no connection for a part");
            None
        }
        Ok(up) => match encode(r, &idx) {
            Ok(bytes) => up.send(bytes, r.expects_response).unwrap_or_else(|e| {
                debug!(node, error = %e, "part not sent");
                None
            }),
            Err(e) => {
                warn!(api = ?A::KEY, version = r.version, error = %e, "could not encode a sub-request");
                None
            }
        },
    };
    Sent {
        flight: InFlight { rx, up: used, node },
        idx,
        original: r.original.is_some(),
    }
}
