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
//! overtakes one being replayed. The lane is queued on the connection's reader, in request order;
//! a request that must wait for it, or for a connection to its coordinator, waits in a task of its
//! own while the reader goes on (no head-of-line blocking beyond the key's own order).

mod apis;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::attempt::{Attempts, Conns, InFlight, Until};
use super::inspect::{uninspected, Unread};
use super::lanes::{Claim, Expired, LaneKey, Lanes, Ticket};
use super::retry::{ask_again, decide_coordinator, keep_original, Budget, Decision, Failure};
use crate::codec::header::RequestHeader;
use crate::config::Config;
use crate::metrics;
use crate::protocol::COORDINATOR_APIS;
use crate::upstream::Upstream;
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
    /// Its attempts: the cluster, the connections, the budget, what the client gets counted.
    at: Attempts,
    api: ApiKey,
    version: i16,
    /// The client's frame: every attempt sends these bytes.
    frame: Bytes,
    inspected: Inspected,
    /// The stamp of the coordinator answer it was routed by (0: none).
    stamp: u64,
    /// Where it went last.
    node: i32,
    /// The first attempt, sent by `dispatch`.
    first: Option<InFlight>,
    lanes: Arc<Lanes>,
    lane: LaneKey,
}

/// A coordinator request routed: sent now, or waiting in its own task for a connection to the
/// coordinator or for its lane, while the client connection reads on.
pub enum Dispatched {
    Job(Box<Job>),
    Deferred(JoinHandle<Box<Job>>),
}

impl Job {
    /// Routes a coordinator request to the coordinator fairlead knows for its key (else where
    /// the client sent it) and sends it, never waiting on the reader: its lane is queued here,
    /// in request order, and when it must wait for that lane or for a connection to be opened,
    /// it does so in a task of its own. `None`: not a request for one coordinator, or not
    /// decodable: forward it untouched.
    pub fn dispatch(
        conns: Conns<'_>,
        lanes: &Arc<Lanes>,
        connection: u64,
        frame: Bytes,
        hdr: &RequestHeader,
    ) -> Option<Dispatched> {
        let (Some(api), Some(at)) = (hdr.known, hdr.body_offset) else {
            return None;
        };
        let version = hdr.api_version;
        let inspected = inspect(api, &frame, at, version)?;
        let known = conns.cluster.leadership.coordinators.get(&inspected.key);
        let wanted = known
            .filter(|k| k.node != conns.home.node())
            .map(|k| k.node);
        let started = Instant::now();
        let mut job = Job {
            at: Attempts::new(
                conns,
                api,
                budget(&conns.cluster.cfg, api, &inspected, started),
            ),
            api,
            version,
            lane: LaneKey::Coordinator {
                connection,
                key: inspected.key.clone(),
            },
            frame,
            inspected,
            stamp: known.map_or(0, |k| k.stamp),
            node: conns.home.node(),
            first: None,
            lanes: lanes.clone(),
        };
        let mut ticket = lanes.enqueue(vec![Claim {
            key: job.lane.clone(),
            node: wanted.unwrap_or(job.node),
            alone: false,
        }]);
        if let Some((node, up)) = route_now(conns, wanted) {
            ticket.retarget([node].into_iter());
            if let Some(chosen) = ticket.try_take(|_| Some(up.clone())) {
                job.send_first(node, chosen.into_iter().next().flatten().unwrap_or(up));
                return Some(Dispatched::Job(Box::new(job)));
            }
        }
        Some(Dispatched::Deferred(job.defer(
            ticket,
            conns.home.clone(),
            wanted,
        )))
    }

    /// Waits, in its own task, for the connection to `wanted` (else `home`) and for its lane,
    /// then sends.
    fn defer(
        mut self,
        mut ticket: Ticket,
        home: Arc<Upstream>,
        wanted: Option<i32>,
    ) -> JoinHandle<Box<Job>> {
        tokio::spawn(async move {
            debug!(api = ?self.api, "coordinator request waits for its lane or a connection; the connection reads on");
            let (node, up) = self.route(&home, wanted).await;
            ticket.retarget([node].into_iter());
            let chosen = match ticket.take(|_| Some(up.clone()), None).await {
                Ok((chosen, _)) => chosen.into_iter().next().flatten().unwrap_or(up),
                Err(Expired) => unreachable!("no deadline"),
            };
            self.send_first(node, chosen);
            Box::new(self)
        })
    }

    /// Sends the client's request the first time, to `node` on `up` (its lane is taken).
    /// Counted as rerouted once it has left for another broker than the client's.
    fn send_first(&mut self, node: i32, up: Arc<Upstream>) {
        let first = InFlight::on(node, up, self.frame.clone(), self.api);
        if node != self.node && first.rx.is_some() {
            metrics::rerouted(self.api as i16, 1);
        }
        self.node = node;
        self.first = Some(first);
    }

    /// Where a request goes first (see [`route_now`]), opening the connection if needed.
    async fn route(&self, home: &Arc<Upstream>, wanted: Option<i32>) -> (i32, Arc<Upstream>) {
        if let Some(node) = wanted {
            if let Ok(up) = self.at.connection(node).await {
                return (node, up);
            }
        }
        (home.node(), home.clone())
    }

    /// Waits for the answer, absorbs a coordinator move, and returns the response frame.
    pub async fn complete(mut self) -> Result<Bytes, JobError> {
        let result = self.run().await;
        self.lanes.release([&self.lane]);
        result
    }

    async fn run(&mut self) -> Result<Bytes, JobError> {
        let mut reply = match self.first.take() {
            Some(first) => self.at.wait(first, Until::Answered, None).await,
            None => Err(Failure::NotSent),
        };
        let mut original = None;
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
            if let Some(frame) = self.original_kept(&mut original, codes.as_ref()) {
                return Ok(frame);
            }
            let Some(failure) = failure else { break codes };
            if let (Ok(frame), Failure::Code(code), Some(c)) = (&reply, failure, &codes) {
                original.get_or_insert_with(|| Original {
                    frame: frame.clone(),
                    code,
                    codes: c.clone(),
                });
            }
            let decision = decide_coordinator(self.api, failure, self.inspected.facts);
            if decision == Decision::PassThrough {
                break codes;
            }
            let target = match self.next_target(decision).await {
                Step::To(node) => node,
                // Not elected yet: wait, ask again (the answer in hand stays the answer).
                Step::Wait => continue,
                Step::GiveUp => break codes,
            };
            debug!(api = ?self.api, key = self.inspected.key.id.as_str(), node = target, ?failure, "replaying to the coordinator");
            match self.at.attempt(target, self.node, self.frame.clone()).await {
                Some(again) => reply = again,
                // No connection of the client's identity reaches the coordinator: the answer
                // in hand is the client's (`identity`).
                None => {
                    metrics::not_absorbed(metrics::NotAbsorbed::NoConnectionAsClient);
                    break codes;
                }
            }
            self.node = target;
            replayed = true;
        };
        self.conclude(reply, codes, original)
    }

    /// An answer's coordinator failure (None: none) and its codes, read once; `Err`: an answer
    /// fairlead cannot decode, which goes to the client as it is (the client may read what
    /// fairlead cannot; it names no broker).
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
                uninspected(self.api as i16, self.version, Unread::Response, &e);
                Err(frame.clone())
            }
        }
    }

    /// Counts a replay's outcome: it worked unless its answer is missing or names a
    /// coordinator error again.
    fn count_replay(&self, codes: Option<&Codes>) {
        let ok = codes.is_some_and(|c| c.coordinator.is_none());
        self.at.tally.resent(ok);
    }

    /// The original answer, counted, when the replay's answer says the request was refused as
    /// a repeat of one the old coordinator had applied (`retry::keep_original`).
    fn original_kept(
        &self,
        original: &mut Option<Original>,
        codes: Option<&Codes>,
    ) -> Option<Bytes> {
        let replay = codes.filter(|_| original.is_some())?;
        if !keep_original(self.api, self.inspected.facts, replay.first()) {
            return None;
        }
        debug!(api = ?self.api, replay_code = replay.first(), "the replay was refused as a repeat: the client gets the original error");
        original
            .take()
            .map(|o| self.finish(o.frame, o.code, &o.codes))
    }

    /// Where the request goes next, after the wait the attempt needs; the first call starts
    /// absorbing (the lane is held until the job completes).
    async fn next_target(&mut self, decision: Decision) -> Step {
        if self.at.tally.absorbing() {
            self.lanes.hold(&self.lane);
        }
        if self.at.budget.expired() {
            self.at.tally.replay(metrics::Replay::GaveUp);
            warn!(api = ?self.api, key = self.inspected.key.id.as_str(), waited_ms = self.at.budget.elapsed().as_millis() as u64, "gave up absorbing a coordinator move: the client gets the original answer");
            return Step::GiveUp;
        }
        self.at.before_resend(decision == Decision::Reroute).await;
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
        original: Option<Original>,
    ) -> Result<Bytes, JobError> {
        match (reply, original) {
            (Ok(frame), original) => {
                let first = original.map_or(0, |o| o.code);
                // An answer in hand was read in the loop: its codes are there.
                Ok(self.finish(frame, first, &codes.unwrap_or_default()))
            }
            (Err(_), Some(o)) => Ok(self.finish(o.frame, o.code, &o.codes)),
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
            .at
            .cluster
            .finder
            .find(&self.inspected.key, self.stamp, self.at.budget.deadline())
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

    /// Counts what the client gets and returns it. `first`: the coordinator error the request
    /// met first (0: none); `codes`: the codes of `frame`.
    fn finish(&self, frame: Bytes, first: i16, codes: &Codes) -> Bytes {
        let first = (first != 0).then_some(first);
        let settled = codes.coordinator.is_none();
        if let Some(code) = self.at.tally.answer(first, settled, &codes.nonzero) {
            debug!(api = ?self.api, key = self.inspected.key.id.as_str(), code, node = self.node, "absorbed a coordinator move");
        }
        self.at.tally.done();
        frame
    }
}

/// The first answer that carried a coordinator error: the client's if nothing better comes.
struct Original {
    frame: Bytes,
    /// That error.
    code: i16,
    /// Every code of the answer, read when it came.
    codes: Codes,
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
    apis::inspect(api, frame, at, version).unwrap_or_else(|e| {
        uninspected(api as i16, version, Unread::Request, &e);
        None
    })
}

/// Where a request goes first, if its connection is open: the coordinator fairlead knows for
/// its key (`wanted`), else where the client sent it (if that is not the coordinator, it says
/// so). `None`: the coordinator's connection must be opened first.
fn route_now(conns: Conns<'_>, wanted: Option<i32>) -> Option<(i32, Arc<Upstream>)> {
    let home = conns.home;
    let Some(node) = wanted else {
        return Some((home.node(), home.clone()));
    };
    match conns.cluster.upstream_ready(conns.reroutes, node, None)? {
        Ok(up) => Some((node, up)),
        Err(_) => Some((home.node(), home.clone())),
    }
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
