//! Coordinator moves absorbed: the group and transaction coordinator APIs (see
//! `protocol::COORDINATOR_APIS`).
//!
//! A group's or a transactional id's coordinator is the leader of one partition of
//! `__consumer_offsets` or `__transaction_state`; a rolling restart or a broker failure moves it,
//! and a client that asks the old broker gets NOT_COORDINATOR (16), or COORDINATOR_NOT_AVAILABLE
//! (15) / COORDINATOR_LOAD_IN_PROGRESS (14) while the new one takes over. fairlead reads which
//! key a request is for ([`apis::inspect`]) and:
//!
//! * routes it to the coordinator fairlead knows for the key (learned from FindCoordinator
//!   answers passing through, and from its own), whichever broker the client sent it to;
//! * on 16 or 15 finds the coordinator again (its own FindCoordinator, see
//!   `leadership::coordinators`), re-sends the client's request, byte for byte, there, and gives
//!   the client that answer; on 14 asks the same coordinator again after a short wait; all
//!   within `coordinator_absorb_timeout_ms` (a JoinGroup, a long poll, within its rebalance timeout and a
//!   little more, under what the clients wait for it);
//! * replays only under the rules of `retry::decide_coordinator`; everything else passes
//!   through, counted.
//!
//! A client connection's requests for one key take a lane (`lanes`), so a later request never
//! overtakes one being replayed.

mod apis;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use tracing::{debug, warn};

use super::lanes::{LaneKey, Lanes, Want};
use super::partitioned::Conns;
use super::retry::{ask_again, decide_coordinator, keep_original, Budget, Decision, Failure};
use crate::cluster::Cluster;
use crate::codec::header::RequestHeader;
use crate::config::Config;
use crate::leadership::coordinators::Known;
use crate::metrics;
use crate::protocol::COORDINATOR_APIS;
use crate::upstream::pool::Pool;
use crate::upstream::{ReplyRx, Upstream, UpstreamError};
use apis::{Codes, Inspected};

/// How much longer than its rebalance timeout a JoinGroup may be held: under what clients wait
/// beyond it (the Java client 5 s, librdkafka 3 s).
pub const JOIN_GRACE: Duration = Duration::from_millis(2500);

/// The coordinator error of a FindCoordinator answer that is asked again
/// (`retry::ask_again`): a key with no coordinator yet.
pub fn not_found_yet(hdr: &RequestHeader, frame: &Bytes) -> Option<i16> {
    if hdr.known != Some(ApiKey::FindCoordinator) {
        return None;
    }
    let codes = apis::codes(ApiKey::FindCoordinator, frame, hdr.api_version).ok()?;
    codes
        .nonzero
        .into_iter()
        .find(|c| ask_again(ApiKey::FindCoordinator, *c))
}

/// Whether a forwarded answer of `api` is counted like a coordinator request's
/// (`router::inspect`): the coordinator APIs, and FindCoordinator.
pub fn counted(api: ApiKey) -> bool {
    api == ApiKey::FindCoordinator || COORDINATOR_APIS.contains(&api)
}

/// Every non-zero error code of an answer of a coordinator API or FindCoordinator.
pub fn answer_codes(
    api: ApiKey,
    frame: &Bytes,
    version: i16,
) -> Result<Vec<i16>, crate::codec::message::MessageError> {
    apis::codes(api, frame, version).map(|c| c.nonzero)
}

/// Why a coordinator request cannot be answered.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The connection was lost with a request in flight that may have been applied and is not
    /// safe to repeat: the client connection is closed, as the broker's would have been.
    #[error("broker connection lost with a {api:?} request in flight that is not safe to repeat")]
    Lost { api: ApiKey },
}

/// A coordinator request on its way: sent, its answer awaited on the connection's writer.
pub struct Job {
    cluster: Arc<Cluster>,
    api: ApiKey,
    version: i16,
    /// The client's frame: every attempt sends these bytes.
    frame: Bytes,
    inspected: Inspected,
    /// The stamp of the coordinator answer it was routed by (0: none).
    stamp: u64,
    /// Where it went last.
    node: i32,
    rx: Option<ReplyRx>,
    up: Option<Arc<Upstream>>,
    reroutes: Arc<Pool>,
    lanes: Arc<Lanes>,
    lane: LaneKey,
    budget: Budget,
}

impl Job {
    /// Routes a coordinator request to the coordinator fairlead knows for its key (else where
    /// the client sent it) and sends it. `None`: not a request for one coordinator, or not
    /// decodable: forward it untouched.
    pub async fn dispatch(
        conns: Conns<'_>,
        lanes: &Arc<Lanes>,
        connection: u64,
        frame: Bytes,
        hdr: &RequestHeader,
    ) -> Result<Option<Job>, UpstreamError> {
        let (Some(api), Some(at)) = (hdr.known, hdr.body_offset) else {
            return Ok(None);
        };
        let version = hdr.api_version;
        let Some(inspected) = inspect(api, &frame, at, version) else {
            return Ok(None);
        };
        let started = Instant::now();
        let Conns {
            cluster, reroutes, ..
        } = conns;
        let known = cluster.leadership.coordinators.get(&inspected.key);
        let (node, up) = route(conns, known, api).await;
        let lane = LaneKey::Coordinator {
            connection,
            key: inspected.key.clone(),
        };
        let up = take_lane(lanes, &lane, node, up).await;
        let rx = up.send(frame.clone(), true).unwrap_or_else(|e| {
            debug!(?api, node, error = %e, "coordinator request not sent");
            None
        });
        let budget = budget(&cluster.cfg, api, &inspected, started);
        Ok(Some(Job {
            cluster: cluster.clone(),
            api,
            version,
            frame,
            inspected,
            stamp: known.map_or(0, |k| k.stamp),
            node,
            rx,
            up: Some(up),
            reroutes: reroutes.clone(),
            lanes: lanes.clone(),
            lane,
            budget,
        }))
    }

    /// Waits for the answer, absorbs a coordinator move, and returns the response frame.
    pub async fn complete(mut self) -> Result<Bytes, JobError> {
        let result = self.run().await;
        self.lanes.release([&self.lane]);
        result
    }

    async fn run(&mut self) -> Result<Bytes, JobError> {
        let rx = self.rx.take();
        let mut reply = self.wait(rx).await;
        let mut absorb = Absorb::default();
        // The answer in hand is a replay's (counted once, when it comes).
        let mut replayed = false;
        let codes = loop {
            let (failure, codes) = match self.read(&reply) {
                Ok(read) => read,
                Err(undecodable) => return Ok(undecodable),
            };
            if std::mem::take(&mut replayed) {
                self.count_replay(codes.as_ref());
            }
            if let Some(frame) = self.original_kept(&absorb, codes.as_ref()) {
                return Ok(frame);
            }
            let Some(failure) = failure else { break codes };
            if let (Ok(frame), Failure::Code(code)) = (&reply, failure) {
                absorb.original.get_or_insert_with(|| (frame.clone(), code));
            }
            let decision = decide_coordinator(self.api, failure, self.inspected.facts);
            if decision == Decision::PassThrough {
                break codes;
            }
            let target = match self.next_target(decision, &mut absorb).await {
                Step::To(node) => node,
                // Not elected yet: wait, ask again (the answer in hand stays the answer).
                Step::Wait => continue,
                Step::GiveUp => break codes,
            };
            debug!(api = ?self.api, key = self.inspected.key.id.as_str(), node = target, ?failure, "replaying to the coordinator");
            match self.send_again(target).await {
                Some(again) => reply = again,
                // No connection of the client's identity reaches the coordinator: the answer
                // in hand is the client's (`identity`).
                None => {
                    metrics::not_absorbed(metrics::NotAbsorbed::NoConnectionAsClient);
                    break codes;
                }
            }
            replayed = true;
        };
        self.conclude(reply, codes, absorb)
    }

    /// An answer's coordinator failure (None: none) and its codes; `Err`: an answer fairlead
    /// cannot decode, which goes to the client as it is (the client may read what fairlead
    /// cannot; it names no broker).
    fn read(
        &self,
        reply: &Result<Bytes, Failure>,
    ) -> Result<(Option<Failure>, Option<Codes>), Bytes> {
        let frame = match reply {
            Ok(frame) => frame,
            Err(f) => return Ok((Some(*f), None)),
        };
        match apis::codes(self.api, frame, self.version) {
            Ok(c) => Ok((c.coordinator.map(Failure::Code), Some(c))),
            Err(e) => {
                metrics::passed_blind(self.api as i16);
                warn!(api = ?self.api, version = self.version, error = %e, "response not decodable: forwarded without inspection");
                Err(frame.clone())
            }
        }
    }

    /// Counts a replay's outcome: it worked unless its answer is missing or names a
    /// coordinator error again.
    fn count_replay(&self, codes: Option<&Codes>) {
        let outcome = if codes.is_some_and(|c| c.coordinator.is_none()) {
            metrics::Replay::Ok
        } else {
            metrics::Replay::Failed
        };
        metrics::replay(self.api as i16, outcome);
    }

    /// The original answer, counted, when the replay's answer says the request was refused as
    /// a repeat of one the old coordinator had applied (`retry::keep_original`).
    fn original_kept(&self, absorb: &Absorb, codes: Option<&Codes>) -> Option<Bytes> {
        let ((frame, code), replay) = (absorb.original.as_ref()?, codes?);
        if !keep_original(self.api, self.inspected.facts, replay.first()) {
            return None;
        }
        debug!(api = ?self.api, replay_code = replay.first(), "the replay was refused as a repeat: the client gets the original error");
        Some(self.finish(frame.clone(), *code, None, absorb.since))
    }

    /// Where the request goes next, after the wait the attempt needs; the first call starts
    /// absorbing (the lane is held until the job completes).
    async fn next_target(&mut self, decision: Decision, absorb: &mut Absorb) -> Step {
        if absorb.since.is_none() {
            absorb.since = Some(Instant::now());
            self.lanes.hold(&self.lane);
        }
        if self.budget.expired() {
            metrics::replay(self.api as i16, metrics::Replay::GaveUp);
            warn!(api = ?self.api, key = self.inspected.key.id.as_str(), waited_ms = self.budget.elapsed().as_millis() as u64, "gave up absorbing a coordinator move: the client gets the original answer");
            return Step::GiveUp;
        }
        if absorb.attempts > 0 || decision != Decision::Reroute {
            self.budget.back_off().await;
        }
        absorb.attempts += 1;
        match decision {
            Decision::RetrySame => Step::To(self.node),
            _ => self.find().await.map_or(Step::Wait, Step::To),
        }
    }

    /// What the client gets once the loop ends: the last answer (`codes`: its codes, read in
    /// the loop); with none, the original error if there was one, else the connection goes.
    fn conclude(
        &self,
        reply: Result<Bytes, Failure>,
        codes: Option<Codes>,
        absorb: Absorb,
    ) -> Result<Bytes, JobError> {
        match (reply, absorb.original) {
            (Ok(frame), original) => {
                let first = original.map_or(0, |(_, code)| code);
                Ok(self.finish(frame, first, codes, absorb.since))
            }
            (Err(_), Some((frame, code))) => Ok(self.finish(frame, code, None, absorb.since)),
            (Err(_), None) => {
                metrics::connection_closed(metrics::Closed::BrokerLostMidRequest);
                Err(JobError::Lost { api: self.api })
            }
        }
    }

    /// The coordinator of the request's key, found again (None: none yet, or no broker
    /// answered; the caller waits and asks again).
    async fn find(&mut self) -> Option<i32> {
        match self
            .cluster
            .finder
            .find(&self.inspected.key, self.stamp, self.budget.deadline())
            .await
        {
            Ok(k) => {
                self.stamp = k.stamp;
                Some(k.node)
            }
            Err(e) => {
                debug!(api = ?self.api, error = %e, "coordinator not found yet");
                None
            }
        }
    }

    /// Sends the client's request again, to `target`, on a connection that may carry the
    /// client's requests, and waits for the answer. None: no such connection reaches `target`.
    async fn send_again(&mut self, target: i32) -> Option<Result<Bytes, Failure>> {
        let rx = match self.cluster.upstream_in(&self.reroutes, target).await {
            Ok(up) => {
                let rx = up.send(self.frame.clone(), true).ok().flatten();
                self.up = Some(up);
                rx
            }
            Err(UpstreamError::NotAsClient { .. }) => return None,
            Err(e) => {
                debug!(api = ?self.api, node = target, error = %e, "coordinator unreachable");
                None
            }
        };
        if target != self.node {
            metrics::rerouted(self.api as i16, 1);
        }
        self.node = target;
        Some(self.wait(rx).await)
    }

    /// One answer, within the budget's time to answer (past it the connection is abandoned:
    /// the broker stopped answering).
    async fn wait(&self, rx: Option<ReplyRx>) -> Result<Bytes, Failure> {
        let Some(rx) = rx else {
            return Err(Failure::NotSent);
        };
        match tokio::time::timeout_at(self.budget.answer_by().into(), rx).await {
            Ok(Ok(Ok(frame))) => Ok(frame.freeze()),
            Ok(Ok(Err(UpstreamError::Connect { .. }))) => Err(Failure::NotSent),
            Ok(_) => Err(Failure::ConnectionLost),
            Err(_) => {
                warn!(api = ?self.api, node = self.node, waited_ms = self.budget.elapsed().as_millis() as u64, "coordinator did not answer: abandoning its connection");
                if let Some(up) = &self.up {
                    up.abandon();
                }
                Err(Failure::ConnectionLost)
            }
        }
    }

    /// Counts what the client gets and returns it. `first`: the coordinator error the request
    /// met first (0: none); `codes`: the codes of `frame` if already read; `since`: when
    /// absorbing began.
    fn finish(
        &self,
        frame: Bytes,
        first: i16,
        codes: Option<Codes>,
        since: Option<Instant>,
    ) -> Bytes {
        let api = self.api as i16;
        let codes = codes
            .unwrap_or_else(|| apis::codes(self.api, &frame, self.version).unwrap_or_default());
        if first != 0 && codes.coordinator.is_none() {
            metrics::absorbed(api, first);
            debug!(api = ?self.api, key = self.inspected.key.id.as_str(), code = first, node = self.node, "absorbed a coordinator move");
        }
        for code in &codes.nonzero {
            metrics::passed_through(api, *code);
        }
        if let Some(t) = since {
            metrics::absorb_duration(api, t.elapsed());
        }
        frame
    }
}

/// What absorbing a move has seen so far.
#[derive(Default)]
struct Absorb {
    /// The first answer that carried a coordinator error, and that error.
    original: Option<(Bytes, i16)>,
    /// When the first coordinator error came (None: none yet).
    since: Option<Instant>,
    /// Re-sends asked for so far.
    attempts: u32,
}

/// Where a request goes next while absorbing.
enum Step {
    To(i32),
    /// No coordinator found yet: wait and ask again.
    Wait,
    /// The budget is spent: the client gets the answer in hand.
    GiveUp,
}

/// The key of a coordinator request (None: not one coordinator's, or not decodable, counted
/// and logged).
fn inspect(api: ApiKey, frame: &Bytes, at: usize, version: i16) -> Option<Inspected> {
    match apis::inspect(api, frame, at, version) {
        Ok(inspected) => inspected,
        Err(e) => {
            metrics::passed_blind(api as i16);
            warn!(?api, version, error = %e, "request not decodable: forwarded without inspection");
            None
        }
    }
}

/// Where a request goes first: the coordinator fairlead knows for its key, else where the
/// client sent it (if that is not the coordinator, it says so).
async fn route(conns: Conns<'_>, known: Option<Known>, api: ApiKey) -> (i32, Arc<Upstream>) {
    let home = conns.home;
    let Some(k) = known.filter(|k| k.node != home.node()) else {
        return (home.node(), home.clone());
    };
    match conns.cluster.upstream_in(conns.reroutes, k.node).await {
        Ok(up) => {
            metrics::rerouted(api as i16, 1);
            (k.node, up)
        }
        Err(_) => (home.node(), home.clone()),
    }
}

/// Takes the request's lane (a request for the same key from the same client connection that
/// is being replayed goes first); the lane may name the connection to use.
async fn take_lane(lanes: &Lanes, lane: &LaneKey, node: i32, up: Arc<Upstream>) -> Arc<Upstream> {
    let (chosen, _) = lanes
        .acquire(vec![Want {
            key: lane.clone(),
            node,
            upstream: Some(up.clone()),
            alone: false,
        }])
        .await;
    chosen.into_iter().next().flatten().unwrap_or(up)
}

/// The request's time: `coordinator_absorb_timeout_ms`, and a JoinGroup (a long poll) within its
/// rebalance timeout and JOIN_GRACE.
fn budget(cfg: &Config, api: ApiKey, inspected: &Inspected, started: Instant) -> Budget {
    let budget = Budget::new(
        started,
        inspected.broker_wait,
        cfg.coordinator_absorb_timeout,
        None,
        cfg.retry_backoff,
    );
    if api == ApiKey::JoinGroup {
        budget.within(inspected.broker_wait + JOIN_GRACE)
    } else {
        budget
    }
}
