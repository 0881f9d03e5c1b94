//! The engine shared by the partition-routed APIs (Produce, Fetch, ListOffsets,
//! OffsetsForLeaderEpoch, DeleteRecords): split a request by partition leader, send each part,
//! re-send the partitions that came back with a leadership error, merge one response.
//!
//! Each API describes itself through [`RoutedApi`] (how to flatten its request and response into
//! partitions and build them back); the routing, retry and merge logic lives here once.
//!
//! Dispatch (`Job::dispatch`) runs on the connection's reader, in request order: it decides
//! where each partition goes and sends the parts, so the order of sends is the client's order.
//! Completion (`Job::complete`) runs on the connection's writer, also in request order: it waits
//! for the answers, replays what the retry rules allow, and builds the response. Because
//! completions run one at a time, the replays of a partition happen in the order of the requests
//! that carried it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Decodable, Encodable};
use tracing::{debug, warn};

use super::lanes::{LaneKey, Lanes, Want};
use super::retry::{decide, is_leadership_code, Decision, Failure, ProduceFacts};
use crate::cluster::Cluster;
use crate::codec::endpoints::EndpointList;
use crate::codec::header::RequestHeader;
use crate::codec::message::{
    decode_body, decode_response, encode_request_with_header, encode_response,
};
use crate::codec::LEN_PREFIX;
use crate::leadership::refresh::Trigger;
use crate::leadership::TopicRef;
use crate::metrics;
use crate::upstream::pool::Pool;
use crate::upstream::{ReplyRx, Upstream, UpstreamError};

/// A partition-routed API, described for the engine.
pub trait RoutedApi: Send + Sync + 'static {
    const KEY: ApiKey;
    type Req: Decodable + Encodable + Send + Sync + 'static;
    type Resp: Decodable + Encodable + Default + Send + Sync + 'static;
    type PartReq: Clone + Send + Sync + 'static;
    type PartResp: Send + Sync + 'static;

    /// Splits a request into its envelope (top-level fields, topics emptied) and its partitions
    /// in request order.
    fn flatten(req: Self::Req) -> (Self::Req, Vec<(TopicRef, Self::PartReq)>);
    /// A request with the envelope's top-level fields and these partitions.
    fn build(envelope: &Self::Req, parts: &[(&TopicRef, &Self::PartReq)]) -> Self::Req;
    fn partition(p: &Self::PartReq) -> i32;
    /// The client's current leader epoch for the partition, if this API carries one.
    fn leader_epoch(_p: &Self::PartReq) -> Option<i32> {
        None
    }
    fn set_leader_epoch(_p: &mut Self::PartReq, _epoch: i32) {}

    fn flatten_resp(resp: Self::Resp) -> (Self::Resp, Vec<(TopicRef, Self::PartResp)>);
    fn build_resp(envelope: Self::Resp, parts: Vec<(TopicRef, Self::PartResp)>) -> Self::Resp;
    fn resp_partition(p: &Self::PartResp) -> i32;
    fn error_code(p: &Self::PartResp) -> i16;
    /// Folds another sub-response's top-level fields into the merged one (throttle = max, ...).
    fn merge_envelope(into: &mut Self::Resp, from: &Self::Resp);
    /// A response for a partition that got no answer.
    fn error_part(p: &Self::PartReq, code: i16) -> Self::PartResp;
    /// KIP-951: the (leader id, leader epoch) a broker named along with a leadership error.
    fn leader_hint(_p: &Self::PartResp) -> Option<(i32, i32)> {
        None
    }
    /// KIP-951 node endpoints carried by the response: recorded, then rewritten for the client.
    fn node_endpoints(_resp: &mut Self::Resp) -> Option<&mut dyn EndpointList> {
        None
    }

    /// Adjusts the envelope before anything is sent; returns true if it changed (then the request
    /// is re-encoded even when it all goes to the client's broker). Fetch uses this to go
    /// sessionless upstream.
    fn prepare(_envelope: &mut Self::Req, _version: i16) -> bool {
        false
    }
    /// Adjusts the envelope for a replay (a fetch replay must not long-poll).
    fn for_replay(_envelope: &mut Self::Req) {}
    /// Reads that may be answered with nothing: how long fairlead may hold the request while it
    /// absorbs (from its arrival). Past that, a partition still being rerouted is answered with
    /// [`RoutedApi::nothing_yet`] and the client asks again.
    fn hold_limit(_envelope: &Self::Req) -> Option<Duration> {
        None
    }
    /// The answer "nothing there yet, no error" for a partition, given once the request has
    /// been held as long as it may (see `hold_limit`); None: the client gets the error.
    fn nothing_yet(_p: &Self::PartReq) -> Option<Self::PartResp> {
        None
    }
    /// Whether fairlead may route this request at all (a follower broker's fetch, an
    /// incremental fetch session: no). Unroutable requests are forwarded untouched.
    fn routable(_envelope: &Self::Req, _version: i16) -> bool {
        true
    }
    /// Whether the client's broker may serve a partition it holds a replica of although it does
    /// not lead it (KIP-392 fetch from a follower).
    fn home_may_serve(_envelope: &Self::Req, _version: i16) -> bool {
        false
    }
    /// Produce only: per-partition facts for the retry rules, and whether a response comes.
    fn produce_facts(_p: &Self::PartReq) -> Option<bool> {
        None
    }
    fn expects_response(_envelope: &Self::Req) -> bool {
        true
    }
    /// How long the broker may legitimately take to answer (Produce: timeout_ms, waiting for
    /// acks; Fetch: max_wait_ms).
    fn broker_wait(_envelope: &Self::Req) -> Duration {
        Duration::ZERO
    }
    /// Produce only: the base offset in a partition response.
    fn base_offset(_p: &Self::PartResp) -> i64 {
        -1
    }
    /// Produce only: find out whether a partition's batch that a former leader appended
    /// (base offset given) is in the current leader's log (see `written`).
    fn check_written(
        _proxy: Arc<Cluster>,
        _topic: TopicRef,
        _req: Self::PartReq,
        _base_offset: i64,
        _deadline: Instant,
    ) -> Option<BoxFuture<Checked<Self::PartResp>>> {
        None
    }
}

pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// What the current leader's log says about a write of unknown outcome.
pub enum Checked<P> {
    /// It is there: this is the answer the client gets.
    Written(P),
    NotWritten,
    Unknown,
}

/// The connections a client connection's requests may use: its home (the broker it chose) and
/// its own connections to the other brokers (see `connection::Home::reroutes`).
#[derive(Clone, Copy)]
pub struct Conns<'a> {
    pub home: &'a Arc<Upstream>,
    pub reroutes: &'a Arc<Pool>,
}

/// Where a part of a request goes: node, partition indices, connection (or why none).
type Target = (i32, Vec<usize>, Result<Arc<Upstream>, UpstreamError>);

/// One part of a request in flight.
struct Sent {
    rx: Option<ReplyRx>,
    /// The connection it went on (abandoned if it never answers).
    up: Option<Arc<Upstream>>,
    /// Indices into the job's partitions.
    idx: Vec<usize>,
    node: i32,
    /// The original frame went out unchanged (and alone): its answer may be returned as is.
    original: bool,
}

pub struct Job<A: RoutedApi> {
    cluster: Arc<Cluster>,
    /// The router's shared tick (see `router::TICK`).
    ticks: Arc<tokio::sync::Notify>,
    version: i16,
    correlation_id: i32,
    /// The client's header bytes (between length prefix and body), reused for every part.
    header: Bytes,
    envelope: A::Req,
    parts: Vec<(TopicRef, A::PartReq)>,
    /// Produce: whether each partition's batches are idempotent.
    idempotent: Vec<bool>,
    sent: Vec<Sent>,
    /// The client connection's connections to other brokers, for replays.
    reroutes: Arc<Pool>,
    /// Produce ordering: the lanes this request holds, released on completion.
    lanes: Option<Arc<Lanes>>,
    lane_keys: Vec<Option<LaneKey>>,
    /// Leadership generation the routing was decided with.
    generation: u64,
    home_node: i32,
    started: Instant,
}

/// What dispatch did with a request.
pub enum Dispatched<A: RoutedApi> {
    /// Routed and sent: complete it on the writer side.
    Job(Box<Job<A>>),
    /// Sent, and no response will come (acks=0 produce).
    NoResponse,
    /// Not decodable or not routable: forward the frame untouched on the home connection.
    Forward,
}

impl<A: RoutedApi> Job<A> {
    /// Decodes, routes and sends a request. `frame` is the client's whole frame.
    pub async fn dispatch(
        router: &Arc<super::Router>,
        conns: Conns<'_>,
        lanes: Option<(&Arc<Lanes>, &Arc<str>)>,
        frame: Bytes,
        hdr: &RequestHeader,
    ) -> Result<Dispatched<A>, UpstreamError> {
        let Conns { home, reroutes } = conns;
        let cluster = &router.cluster;
        let version = hdr.api_version;
        let Some(body_offset) = hdr.body_offset else {
            return Ok(Dispatched::Forward);
        };
        let req: A::Req = match decode_body(&frame, body_offset, A::KEY, version) {
            Ok(r) => r,
            Err(e) => {
                metrics::passed_blind(A::KEY as i16);
                warn!(api = ?A::KEY, version, error = %e, "request not decodable: forwarded without inspection");
                return Ok(Dispatched::Forward);
            }
        };
        if !A::routable(&req, version) {
            return Ok(Dispatched::Forward);
        }
        let started = Instant::now();
        let (mut envelope, mut parts) = A::flatten(req);
        let mut changed = A::prepare(&mut envelope, version);
        let leadership = &cluster.leadership;
        let generation = leadership.generation();
        let home_node = home.node();

        // Where each partition goes: its leader, unless unknown (then the client's broker
        // answers for it) or the client's broker may serve it as a follower.
        let mut dest: Vec<i32> = Vec::with_capacity(parts.len());
        // Partitions whose leader changed a moment ago (see `lanes::SETTLE`).
        let mut settling: Vec<bool> = Vec::with_capacity(parts.len());
        let mut unknown = false;
        for (topic, p) in parts.iter_mut() {
            let pi = A::partition(p);
            let state = leadership.route_of(topic, pi, home_node);
            settling.push(state.as_ref().is_some_and(|s| {
                s.changed_at
                    .elapsed()
                    .is_ok_and(|e| e < super::lanes::SETTLE)
            }));
            let node = match &state {
                Some(s) if s.leader >= 0 => {
                    // A stale epoch is fenced even by the right broker (74): give the fresh one.
                    if let Some(client_epoch) = A::leader_epoch(p) {
                        if client_epoch >= 0 && s.epoch > client_epoch {
                            A::set_leader_epoch(p, s.epoch);
                            changed = true;
                        }
                    }
                    if s.leader != home_node
                        && s.home_is_replica
                        && A::home_may_serve(&envelope, version)
                    {
                        home_node
                    } else {
                        s.leader
                    }
                }
                _ => {
                    unknown = true;
                    home_node
                }
            };
            dest.push(node);
        }
        if unknown {
            // Learn about it in the background; this request goes to the client's broker.
            let p = cluster.clone();
            tokio::spawn(async move {
                let _ = p.refresh(generation, Trigger::Unknown).await;
            });
        }

        let mut groups: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
        for (i, d) in dest.iter().enumerate() {
            groups.entry(*d).or_default().push(i);
        }
        let rerouted = dest.iter().filter(|d| **d != home_node).count();
        if rerouted > 0 {
            metrics::rerouted(A::KEY as i16, rerouted);
            for ((topic, p), _) in parts.iter().zip(&dest).filter(|(_, d)| **d != home_node) {
                cluster
                    .incidents
                    .rerouted(leadership, topic, A::partition(p));
                if metrics::topic_labels() {
                    if let Some(name) = leadership.name_of(topic) {
                        metrics::topic_rerouted(A::KEY as i16, &name, 1);
                    }
                }
            }
        }

        // Connect where needed before sending anything, so parts leave back to back.
        let mut targets: Vec<Target> = Vec::with_capacity(groups.len());
        for (node, idx) in groups {
            let up = if node == home_node {
                Ok(home.clone())
            } else {
                cluster.upstream_in(reroutes, node).await
            };
            targets.push((node, idx, up));
        }

        let idempotent: Vec<bool> = parts
            .iter()
            .map(|(_, p)| A::produce_facts(p).unwrap_or(false))
            .collect();
        let expects_response = A::expects_response(&envelope);
        // The lane of each partition (produce with a response only), by partition index.
        let mut lane_keys: Vec<Option<LaneKey>> = Vec::new();
        if let (Some((lanes, client)), true) = (lanes, expects_response) {
            lane_keys = vec![None; parts.len()];
            // Per-producer partition order (see `lanes`): a batch may have to join the
            // connection its lane is using, or wait for the lane to drain.
            let mut wanted = Vec::with_capacity(parts.len());
            let mut order = Vec::with_capacity(parts.len());
            for (node, idx, up) in &targets {
                for i in idx {
                    let key = LaneKey {
                        client: client.clone(),
                        topic: parts[*i].0.clone(),
                        partition: A::partition(&parts[*i].1),
                    };
                    lane_keys[*i] = Some(key.clone());
                    // A non-idempotent batch cannot be put back in order by the broker: right
                    // after a leader change it goes alone.
                    let alone = settling[*i] && !idempotent[*i];
                    wanted.push(Want {
                        key,
                        node: *node,
                        upstream: up.as_ref().ok().cloned(),
                        alone,
                    });
                    order.push((*node, *i));
                }
            }
            let (chosen, waited) = lanes.acquire(wanted).await;
            if waited {
                debug!(api = ?A::KEY, "held a batch until its partition's earlier batches were resolved");
            }
            // Regroup by the connection each partition must use.
            let mut regrouped: Vec<Target> = Vec::with_capacity(targets.len());
            for ((node, i), up) in order.into_iter().zip(chosen) {
                let id = up.as_ref().map(|u| u.id());
                match regrouped
                    .iter_mut()
                    .find(|(n, _, u)| *n == node && u.as_ref().ok().map(|u| u.id()) == id)
                {
                    Some((_, idx, _)) => idx.push(i),
                    None => regrouped.push((
                        node,
                        vec![i],
                        up.ok_or(UpstreamError::Connect {
                            node,
                            addr: String::new(),
                            reason: "no connection".into(),
                        }),
                    )),
                }
            }
            targets = regrouped;
        }

        let header = frame.slice(LEN_PREFIX..body_offset);
        let single_home =
            targets.len() == 1 && targets[0].2.as_ref().is_ok_and(|u| u.id() == home.id());
        let mut sent = Vec::with_capacity(targets.len());
        for (node, idx, up) in targets {
            let original = single_home && !changed;
            let used = up.as_ref().ok().cloned();
            let rx = match up {
                Ok(up) => {
                    let out = if original {
                        Ok(frame.clone())
                    } else {
                        let subset: Vec<(&TopicRef, &A::PartReq)> =
                            idx.iter().map(|i| (&parts[*i].0, &parts[*i].1)).collect();
                        encode_request_with_header(
                            &header,
                            &A::build(&envelope, &subset),
                            A::KEY,
                            version,
                        )
                        .map(|b| b.freeze())
                    };
                    match out {
                        Ok(bytes) => match up.send(bytes, expects_response) {
                            Ok(rx) => rx,
                            Err(e) => {
                                debug!(node, error = %e, "part not sent");
                                None
                            }
                        },
                        Err(e) => {
                            warn!(api = ?A::KEY, version, error = %e, "could not encode a sub-request");
                            None
                        }
                    }
                }
                Err(e) => {
                    debug!(node, error = %e, "no connection for a part");
                    None
                }
            };
            sent.push(Sent {
                rx,
                up: used,
                idx,
                node,
                original,
            });
        }
        if !expects_response {
            return Ok(Dispatched::NoResponse);
        }
        Ok(Dispatched::Job(Box::new(Job {
            cluster: cluster.clone(),
            ticks: router.ticks.clone(),
            version,
            correlation_id: hdr.correlation_id,
            header,
            envelope,
            parts,
            idempotent,
            sent,
            reroutes: reroutes.clone(),
            lanes: lanes.map(|(l, _)| l.clone()),
            lane_keys,
            generation,
            home_node,
            started,
        })))
    }

    /// Waits for the answers, absorbs what the rules allow, and returns the response frame.
    pub async fn complete(mut self) -> Result<Bytes, JobError> {
        let result = self.run().await;
        if let Some(lanes) = &self.lanes {
            lanes.release(self.lane_keys.iter().flatten());
        }
        result
    }

    async fn run(&mut self) -> Result<Bytes, JobError> {
        let n = self.parts.len();
        let mut answers: Vec<Option<A::PartResp>> = (0..n).map(|_| None).collect();
        // Why a partition has no usable answer yet (None: answered, or not yet known).
        let mut failures: Vec<Option<Failure>> = vec![None; n];
        // The first leadership error each partition met, for metrics.
        let mut first_code: Vec<Option<i16>> = vec![None; n];
        // Node each partition was last sent to.
        let mut last_node: Vec<i32> = vec![self.home_node; n];
        let mut envelope: Option<A::Resp> = None;
        let mut original_reply: Option<Bytes> = None;
        // Produce: the leader's log proved this partition's batch was not written.
        let mut unwritten: Vec<bool> = vec![false; n];

        // A broker that accepts a request and never answers (hung, or paused) must not hold the
        // client forever: past what the broker may legitimately take plus the absorb budget,
        // the connection is abandoned and the outcome treated as unknown.
        let answer_by =
            self.started + A::broker_wait(&self.envelope) + self.cluster.cfg.absorb_timeout;
        let sent = std::mem::take(&mut self.sent);
        for mut s in sent {
            for i in &s.idx {
                last_node[*i] = s.node;
            }
            let reply = match s.rx.take() {
                None => Err(Failure::NotSent),
                Some(rx) => self.wait_part(rx, &s, answer_by).await,
            };
            match reply {
                Ok(frame) => {
                    let resp: A::Resp = match decode_response(&frame, A::KEY, self.version) {
                        Ok(r) => r,
                        Err(e) if s.original => {
                            // We could not read the broker's answer to an untouched request: the
                            // client can, so give it the answer untouched.
                            metrics::passed_blind(A::KEY as i16);
                            warn!(api = ?A::KEY, version = self.version, error = %e, "response not decodable: forwarded without inspection");
                            return Ok(frame);
                        }
                        Err(e) => return Err(JobError::Undecodable(e.to_string())),
                    };
                    if s.original {
                        original_reply = Some(frame);
                    }
                    self.absorb_answer(
                        resp,
                        &s.idx,
                        &mut answers,
                        &mut failures,
                        &mut first_code,
                        &mut envelope,
                    );
                }
                Err(f) => {
                    for i in &s.idx {
                        failures[*i] = Some(f);
                    }
                }
            }
        }

        // The retry loop: re-send what the rules allow until nothing is left or time runs out.
        let absorb_by = self.started + self.cluster.cfg.absorb_timeout;
        let deadline =
            A::hold_limit(&self.envelope).map_or(absorb_by, |d| absorb_by.min(self.started + d));
        let mut backoff = Duration::from_millis(self.cluster.cfg.retry_backoff_ms);
        let mut retried = false;
        let mut absorb_started: Option<Instant> = None;
        let mut seen_generation = self.generation;
        loop {
            let mut todo: Vec<(usize, Decision)> = Vec::new();
            for i in 0..n {
                let failure = match (&failures[i], &answers[i]) {
                    (Some(f), _) => *f,
                    (None, Some(a)) if A::error_code(a) != 0 => Failure::Code(A::error_code(a)),
                    _ => continue,
                };
                let facts = A::produce_facts(&self.parts[i].1).map(|_| ProduceFacts {
                    idempotent: self.idempotent[i],
                    base_offset: if unwritten[i] {
                        -1
                    } else {
                        answers[i].as_ref().map(A::base_offset).unwrap_or(-1)
                    },
                    partition_recovering: self.lanes.as_ref().is_some_and(|l| {
                        self.lane_keys
                            .get(i)
                            .and_then(|k| k.as_ref())
                            .is_some_and(|k| l.recovering(k))
                    }),
                });
                let d = decide(A::KEY, failure, facts);
                if d != Decision::PassThrough {
                    todo.push((i, d));
                }
            }
            if todo.is_empty() {
                break;
            }
            absorb_started.get_or_insert_with(Instant::now);
            debug!(api = ?A::KEY, decisions = ?todo.iter().map(|(i, d)| (A::partition(&self.parts[*i].1), *d, failures[*i])).collect::<Vec<_>>(), "absorbing");
            if Instant::now() >= deadline {
                let mut gave_up = 0;
                for (i, _) in &todo {
                    match A::nothing_yet(&self.parts[*i].1) {
                        Some(empty) => {
                            answers[*i] = Some(empty);
                            failures[*i] = None;
                            // Not absorbed: the client asks again.
                            first_code[*i] = None;
                            metrics::replay(A::KEY as i16, "answered_empty");
                        }
                        None => {
                            metrics::replay(A::KEY as i16, "gave_up");
                            gave_up += 1;
                        }
                    }
                }
                if gave_up > 0 {
                    warn!(api = ?A::KEY, partitions = gave_up, waited_ms = self.started.elapsed().as_millis() as u64, "gave up absorbing: the client gets the original error");
                }
                if gave_up < todo.len() {
                    // The client asks again at once: let its next request find the leader known.
                    let (cluster, seen) = (self.cluster.clone(), seen_generation);
                    tokio::spawn(async move {
                        let _ = cluster.refresh(seen, Trigger::Error).await;
                    });
                    debug!(api = ?A::KEY, partitions = todo.len() - gave_up, waited_ms = self.started.elapsed().as_millis() as u64, "held long enough: answered with no records, the client asks again");
                }
                break;
            }
            if retried || todo.iter().any(|(_, d)| *d != Decision::Reroute) {
                tokio::time::sleep(backoff.min(deadline.saturating_duration_since(Instant::now())))
                    .await;
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
            retried = true;
            // Refresh unless the cache already names a different leader for every partition to
            // re-send (a KIP-951 hint, or another request's refresh, got there first).
            let stale = todo.iter().any(|(i, d)| {
                *d == Decision::WaitThenReroute
                    || (matches!(d, Decision::Reroute | Decision::Verify)
                        && self
                            .cluster
                            .leadership
                            .leader_of(&self.parts[*i].0, A::partition(&self.parts[*i].1))
                            .is_none_or(|l| l.node == last_node[*i]))
            });
            if stale {
                // Single-flight: concurrent failures share one Metadata round trip.
                let _ = self.cluster.refresh(seen_generation, Trigger::Error).await;
                seen_generation = self.cluster.leadership.generation();
            }
            if Instant::now() >= deadline {
                // The wait (or the refresh) used up the time: a re-send now could not be
                // answered before the deadline, and its timeout would replace the broker's answer
                // with NETWORK_EXCEPTION. Give up with the answers in hand (top of the loop).
                continue;
            }
            if let Some(lanes) = &self.lanes {
                for (i, _) in &todo {
                    if let Some(Some(k)) = self.lane_keys.get(*i) {
                        lanes.mark_recovering(k);
                    }
                }
            }

            // Writes of unknown outcome: ask the leader's log before anything is re-sent.
            for (i, _) in todo.iter().filter(|(_, d)| *d == Decision::Verify) {
                let base = answers[*i].as_ref().map(A::base_offset).unwrap_or(-1);
                let (topic, req) = &self.parts[*i];
                let Some(check) = A::check_written(
                    self.cluster.clone(),
                    topic.clone(),
                    req.clone(),
                    base,
                    deadline,
                ) else {
                    continue;
                };
                match check.await {
                    Checked::Written(answer) => {
                        answers[*i] = Some(answer);
                        failures[*i] = None;
                    }
                    Checked::NotWritten => unwritten[*i] = true,
                    Checked::Unknown => {}
                }
            }

            // Group the partitions to re-send by where they go now.
            let mut groups: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
            for (i, d) in todo.iter().filter(|(_, d)| *d != Decision::Verify) {
                let (topic, p) = &mut self.parts[*i];
                let target = match d {
                    Decision::RetrySame => last_node[*i],
                    _ => match self.cluster.leadership.partition_of(topic, A::partition(p)) {
                        Some(s) if s.leader >= 0 => {
                            if A::leader_epoch(p).is_some_and(|e| e >= 0) {
                                A::set_leader_epoch(p, s.epoch);
                            }
                            s.leader
                        }
                        _ => last_node[*i],
                    },
                };
                groups.entry(target).or_default().push(*i);
            }
            let mut replay_envelope = A::build(&self.envelope, &[]);
            A::for_replay(&mut replay_envelope);
            let mut inflight = Vec::with_capacity(groups.len());
            for (node, idx) in groups {
                let rerouted = idx.iter().filter(|i| last_node[**i] != node).count();
                if rerouted > 0 {
                    metrics::rerouted(A::KEY as i16, rerouted);
                }
                let subset: Vec<(&TopicRef, &A::PartReq)> = idx
                    .iter()
                    .map(|i| (&self.parts[*i].0, &self.parts[*i].1))
                    .collect();
                let frame = encode_request_with_header(
                    &self.header,
                    &A::build(&replay_envelope, &subset),
                    A::KEY,
                    self.version,
                )
                .map_err(|e| JobError::Undecodable(e.to_string()))?;
                let rx = match self.cluster.upstream_in(&self.reroutes, node).await {
                    Ok(up) => up.send(frame.freeze(), true).ok().flatten(),
                    Err(e) => {
                        debug!(api = ?A::KEY, node, error = %e, "replay target unreachable");
                        None
                    }
                };
                debug!(api = ?A::KEY, node, partitions = idx.len(), waited_ms = self.started.elapsed().as_millis() as u64, "replaying");
                for i in &idx {
                    last_node[*i] = node;
                }
                inflight.push((rx, idx));
            }
            for (rx, idx) in inflight {
                // A broker that accepts a replay and never answers must not hold the client
                // past the deadline; the outcome is then unknown, like a lost connection.
                let reply = match rx {
                    None => Err(Failure::NotSent),
                    Some(rx) => match tokio::time::timeout_at(deadline.into(), rx).await {
                        Ok(Ok(Ok(frame))) => Ok(frame.freeze()),
                        Ok(Ok(Err(UpstreamError::Connect { .. }))) => Err(Failure::NotSent),
                        _ => Err(Failure::ConnectionLost),
                    },
                };
                match reply.map(|f| decode_response::<A::Resp>(&f, A::KEY, self.version)) {
                    Ok(Ok(resp)) => {
                        for i in &idx {
                            failures[*i] = None;
                            // A new answer: whatever was proved about the previous attempt says
                            // nothing about this one (it may have been appended, then lost
                            // leadership again).
                            unwritten[*i] = false;
                        }
                        self.absorb_answer(
                            resp,
                            &idx,
                            &mut answers,
                            &mut failures,
                            &mut first_code,
                            &mut envelope,
                        );
                        for i in &idx {
                            let ok = answers[*i]
                                .as_ref()
                                .is_some_and(|a| !is_leadership_code(A::error_code(a)));
                            metrics::replay(A::KEY as i16, if ok { "ok" } else { "failed" });
                        }
                    }
                    Ok(Err(e)) => return Err(JobError::Undecodable(e.to_string())),
                    Err(f) => {
                        for i in &idx {
                            metrics::replay(A::KEY as i16, "failed");
                            // A lost connection after a write leaves the outcome unknown.
                            failures[*i] = Some(f);
                        }
                    }
                }
            }
        }

        // Each partition's final answer: the broker's, or (no usable answer) a retriable error.
        let finals: Vec<Result<A::PartResp, i16>> = answers
            .into_iter()
            .zip(failures)
            .map(|(answer, failure)| match (answer, failure) {
                (Some(a), None) => Ok(a),
                _ => Err(retry_code_for_client(A::KEY)),
            })
            .collect();

        // Metrics: absorbed where a leadership error was replaced by a broker's answer without
        // one; passed through for every error the client will see.
        let mut absorbed = 0;
        for (i, f) in finals.iter().enumerate() {
            let final_code = match f {
                Ok(a) => A::error_code(a),
                Err(code) => *code,
            };
            if let (Some(code), Ok(_)) = (first_code[i], f) {
                if !is_leadership_code(final_code) {
                    metrics::absorbed(A::KEY as i16, code);
                    if metrics::topic_labels() {
                        if let Some(name) = self.cluster.leadership.name_of(&self.parts[i].0) {
                            metrics::topic_absorbed(A::KEY as i16, code, &name);
                        }
                    }
                    self.cluster.incidents.absorbed(
                        &self.cluster.leadership,
                        &self.parts[i].0,
                        A::partition(&self.parts[i].1),
                    );
                    absorbed += 1;
                }
            }
            if final_code != 0 {
                metrics::passed_through(A::KEY as i16, final_code);
            }
        }
        if let Some(t) = absorb_started {
            let took = t.elapsed();
            metrics::absorb_duration(A::KEY as i16, took);
            debug!(api = ?A::KEY, partitions = absorbed, took_ms = took.as_millis() as u64, "absorbed leadership errors: rerouted and answered");
        }

        // Unchanged single answer: give the client the broker's bytes (addresses rewritten if it
        // names any).
        if let (Some(frame), false) = (original_reply, retried) {
            let has_endpoints = envelope
                .as_mut()
                .and_then(|e| A::node_endpoints(e))
                .is_some_and(|l| !l.is_empty());
            if !has_endpoints {
                return Ok(frame);
            }
        }

        // Merge: exactly the partitions asked for, in the order asked.
        let mut envelope = envelope.unwrap_or_default();
        let parts: Vec<(TopicRef, A::PartResp)> = self
            .parts
            .iter()
            .zip(finals)
            .map(|((topic, req), f)| {
                (
                    topic.clone(),
                    f.unwrap_or_else(|code| A::error_part(req, code)),
                )
            })
            .collect();
        if let Some(list) = A::node_endpoints(&mut envelope) {
            self.cluster.rewrite_endpoints(list);
        }
        let resp = A::build_resp(envelope, parts);
        encode_response(&resp, A::KEY, self.version, self.correlation_id)
            .map_err(|e| JobError::Undecodable(e.to_string()))
    }

    /// Waits for one part's answer. A live broker answers within its own wait; one that stops
    /// answering (hung, paused) is given up on: early, once every partition of the part has had
    /// another leader for a while and the broker has said nothing on the connection for as long
    /// (a live former leader answers NOT_LEADER at once), and in any case at `answer_by`, when
    /// its connection is abandoned.
    async fn wait_part(
        &self,
        mut rx: ReplyRx,
        s: &Sent,
        answer_by: Instant,
    ) -> Result<Bytes, Failure> {
        const MOVED_FOR: Duration = Duration::from_secs(2);
        // How long a former leader must have said nothing on the connection before its request
        // is given up on. 2 s was too short: a live broker busy with an election (acks=all
        // requests in purgatory) stayed silent for that long once in a dozen acceptance runs,
        // and a non-idempotent write given up on is a NETWORK_EXCEPTION for the client.
        const SILENT_FOR: Duration = Duration::from_secs(6);
        // Registered once and far off: later than the shared tick, so it never wakes the
        // runtime early (see `router::start_ticker`).
        let give_up = tokio::time::sleep_until(answer_by.into());
        tokio::pin!(give_up);
        loop {
            // Created before waiting, so a tick while this request is polled is not missed.
            let tick = self.ticks.notified();
            tokio::select! {
                biased;
                reply = &mut rx => match reply {
                    Ok(Ok(frame)) => return Ok(frame.freeze()),
                    Ok(Err(UpstreamError::Connect { .. })) => return Err(Failure::NotSent),
                    _ => return Err(Failure::ConnectionLost),
                },
                _ = &mut give_up => {
                    warn!(api = ?A::KEY, node = s.node, waited_ms = self.started.elapsed().as_millis() as u64, "broker did not answer: abandoning its connection");
                    if let Some(up) = &s.up {
                        up.abandon();
                    }
                    return Err(Failure::ConnectionLost);
                }
                _ = tick => {
                    if self.started.elapsed() >= MOVED_FOR {
                        // Nothing else will tell fairlead that leadership left a broker that
                        // stopped answering: ask (single-flight, so one refresh per round).
                        let (cluster, seen) =
                            (self.cluster.clone(), self.cluster.leadership.generation());
                        tokio::spawn(async move {
                            let _ = cluster.refresh(seen, Trigger::SlowBroker).await;
                        });
                    }
                    let moved_away = s.idx.iter().all(|i| {
                        let (topic, p) = &self.parts[*i];
                        // the leader changed after this request went out, a while ago
                        self.cluster
                            .leadership
                            .partition_of(topic, A::partition(p))
                            .is_some_and(|st| {
                                st.leader != s.node
                                    && st
                                        .changed_at
                                        .elapsed()
                                        .is_ok_and(|e| e >= MOVED_FOR && e < self.started.elapsed())
                            })
                    });
                    // ... and the broker is silent on that connection (a live broker that is
                    // merely slow keeps answering other requests there).
                    let silent = s.up.as_ref().is_none_or(|u| u.silent_for() >= SILENT_FOR);
                    if moved_away && silent {
                        warn!(api = ?A::KEY, node = s.node, waited_ms = self.started.elapsed().as_millis() as u64, "no answer from a former leader: treating the request as lost");
                        return Err(Failure::ConnectionLost);
                    }
                }
            }
        }
    }

    /// Records a (sub)-response: per-partition answers, KIP-951 leader hints, merged envelope.
    fn absorb_answer(
        &self,
        resp: A::Resp,
        idx: &[usize],
        answers: &mut [Option<A::PartResp>],
        failures: &mut [Option<Failure>],
        first_code: &mut [Option<i16>],
        envelope: &mut Option<A::Resp>,
    ) {
        let (mut env, parts) = A::flatten_resp(resp);
        if let Some(list) = A::node_endpoints(&mut env) {
            self.cluster.learn_endpoints(list);
        }
        let mut by_key: HashMap<(TopicRef, i32), A::PartResp> = parts
            .into_iter()
            .map(|(t, p)| ((t, A::resp_partition(&p)), p))
            .collect();
        for i in idx {
            let (topic, req) = &self.parts[*i];
            match by_key.remove(&(topic.clone(), A::partition(req))) {
                Some(p) => {
                    let code = A::error_code(&p);
                    if is_leadership_code(code) {
                        if first_code[*i].is_none() {
                            self.cluster.incidents.error_seen(
                                &self.cluster.leadership,
                                topic,
                                A::partition(req),
                            );
                        }
                        first_code[*i].get_or_insert(code);
                        if let Some((leader, epoch)) = A::leader_hint(&p) {
                            self.cluster
                                .learn_leader(topic, A::partition(req), leader, epoch);
                        }
                    }
                    answers[*i] = Some(p);
                    failures[*i] = None;
                }
                None => {
                    // The broker left a partition out (should not happen): treat it like a lost
                    // answer, so writes are only re-sent when idempotent.
                    failures[*i] = Some(Failure::ConnectionLost);
                }
            }
        }
        match envelope {
            None => *envelope = Some(env),
            Some(e) => A::merge_envelope(e, &env),
        }
    }
}

/// The code a client gets for a partition fairlead could not get any answer for: what it would
/// have seen talking to a broker that went away (reads: NOT_LEADER_OR_FOLLOWER, so it
/// refreshes and retries; writes: NETWORK_EXCEPTION, retriable, never a fake success).
fn retry_code_for_client(api: ApiKey) -> i16 {
    if api == ApiKey::Produce {
        13
    } else {
        6
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("could not decode or encode a response: {0}")]
    Undecodable(String),
}
