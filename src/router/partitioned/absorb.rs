//! Absorb: wait for the answers to what dispatch sent, then re-send the partitions that the
//! rules of `retry` allow (refreshing leadership first, looking a non-idempotent write up in the
//! leader's log where its outcome is unknown) until every partition is settled or the budget is
//! spent.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use tracing::{debug, warn};

use super::{Checked, Job, JobError, RoutedApi, Sent};
use crate::codec::message::{decode_response, encode_request_with_header};
use crate::leadership::refresh::Trigger;
use crate::leadership::TopicRef;
use crate::metrics;
use crate::protocol::{is_leadership_code, NOT_ENOUGH_REPLICAS};
use crate::router::attempt::{InFlight, Until};
use crate::router::inspect::{uninspected, Unread};
use crate::router::retry::{self, decide, is_retried_code, Decision, Failure, ProduceFacts};

/// What the first answers gave.
pub(super) enum Gathered<A: RoutedApi> {
    /// The broker's answer to the client's untouched request, which fairlead cannot decode: the
    /// client gets it as it is.
    Blind(Bytes),
    Answers(Answers<A>),
}

/// The answers' top level, merged as they come in.
pub(super) struct Answers<A: RoutedApi> {
    /// The merged top-level fields of every answer (throttle, endpoints, ...).
    pub envelope: Option<A::Resp>,
    /// The answer to the client's request sent unchanged, while nothing needs merging.
    pub original: Option<Bytes>,
}

impl<A: RoutedApi> Job<A> {
    /// Waits for the answer to every part dispatch sent.
    pub(super) async fn gather(&mut self) -> Result<Gathered<A>, JobError> {
        let mut answers = Answers {
            envelope: None,
            original: None,
        };
        for Sent {
            flight,
            idx,
            original,
        } in std::mem::take(&mut self.sent)
        {
            let early = |f: &InFlight| self.given_up_early(&idx, f);
            let frame = match self.at.wait(flight, Until::Answered, Some(&early)).await {
                Ok(frame) => frame,
                Err(f) => {
                    self.fail(&idx, f);
                    continue;
                }
            };
            let resp: A::Resp = match decode_response(&frame, A::KEY, self.version) {
                Ok(r) => r,
                Err(e) if original => {
                    // We could not read the broker's answer to an untouched request: the
                    // client can, so give it the answer untouched.
                    uninspected(A::KEY as i16, self.version, Unread::Response, &e);
                    return Ok(Gathered::Blind(frame));
                }
                Err(e) => return Err(JobError::Undecodable(e.to_string())),
            };
            if original {
                answers.original = Some(frame);
            }
            self.record(resp, &idx, &mut answers.envelope);
        }
        Ok(Gathered::Answers(answers))
    }

    /// Re-sends what the rules allow until nothing is left or the budget runs out.
    pub(super) async fn absorb(&mut self, answers: &mut Answers<A>) -> Result<(), JobError> {
        let mut seen_generation = self.generation;
        loop {
            let todo = self.decisions();
            if todo.is_empty() {
                return Ok(());
            }
            self.at.tally.absorbing();
            debug!(api = ?A::KEY, decisions = ?todo.iter().map(|(i, d)| (self.parts[*i].partition(), *d, self.parts[*i].failure)).collect::<Vec<_>>(), "absorbing");
            if self.at.budget.expired() {
                self.give_up(&todo, seen_generation);
                return Ok(());
            }
            // From here the partitions are being replayed: a later batch of theirs that meets a
            // sequence gap meanwhile (answered while this one waits or refreshes, on another of
            // the producer's connections) is replayed after them, not passed on (`retry`).
            self.mark_recovering(&todo);
            let reroute = todo.iter().all(|(_, d)| *d == Decision::Reroute);
            self.at.before_resend(reroute).await;
            if self.leaders_unknown(&todo) {
                // Single-flight: concurrent failures share one Metadata round trip.
                let _ = self
                    .at
                    .cluster
                    .refresh(seen_generation, Trigger::Error)
                    .await;
                seen_generation = self.at.cluster.leadership.generation();
            }
            if self.at.budget.expired() {
                // The wait (or the refresh) used up the time: a re-send now could not be
                // answered before the deadline, and its timeout would replace the broker's answer
                // with NETWORK_EXCEPTION. Give up with the answers in hand (top of the loop).
                continue;
            }
            self.verify(&todo).await;
            self.replay(&todo, &mut answers.envelope).await?;
        }
    }

    fn mark_recovering(&self, todo: &[(usize, Decision)]) {
        let Some(lanes) = &self.lanes else { return };
        for (i, _) in todo {
            if let Some(k) = &self.parts[*i].lane {
                lanes.mark_recovering(k);
            }
        }
    }

    /// What the retry rules say about every partition without a usable answer.
    fn decisions(&self) -> Vec<(usize, Decision)> {
        let mut todo = Vec::new();
        for (i, part) in self.parts.iter().enumerate().filter(|(_, p)| !p.unroutable) {
            let failure = match (part.failure, part.code()) {
                (Some(f), _) => f,
                (None, Some(code)) if code != 0 => Failure::Code(code),
                _ => continue,
            };
            let facts = A::produce_facts(&part.req).map(|_| ProduceFacts {
                idempotent: part.idempotent,
                base_offset: if part.unwritten {
                    -1
                } else {
                    part.answer.as_ref().map(A::base_offset).unwrap_or(-1)
                },
                partition_recovering: match (&self.lanes, &part.lane) {
                    (Some(lanes), Some(k)) => lanes.recovering(k),
                    _ => false,
                },
                // Asked only where it decides (a non-idempotent batch refused for want of
                // replicas), and answered by holding the lane: nothing sent later may reach
                // the leader before its re-send.
                alone: match (&self.lanes, &part.lane) {
                    (Some(lanes), Some(k))
                        if !part.idempotent && failure == Failure::Code(NOT_ENOUGH_REPLICAS) =>
                    {
                        lanes.hold_if_alone(k)
                    }
                    _ => false,
                },
            });
            let d = decide(A::KEY, failure, facts);
            if d != Decision::PassThrough {
                todo.push((i, d));
            }
        }
        todo
    }

    /// The budget is spent: reads that may be answered with nothing get that (the client asks
    /// again); everything else keeps the broker's answer, or the error for no answer.
    fn give_up(&mut self, todo: &[(usize, Decision)], seen_generation: u64) {
        let mut gave_up = 0;
        for (i, _) in todo {
            let part = &mut self.parts[*i];
            match A::nothing_yet(&part.req) {
                Some(empty) => {
                    part.answer = Some(empty);
                    part.failure = None;
                    // Not absorbed: the client asks again.
                    part.first_code = None;
                    self.at.tally.replay(metrics::Replay::AnsweredEmpty);
                }
                None => {
                    self.at.tally.replay(metrics::Replay::GaveUp);
                    gave_up += 1;
                }
            }
        }
        let waited_ms = self.at.budget.elapsed().as_millis() as u64;
        if gave_up > 0 {
            warn!(api = ?A::KEY, partitions = gave_up, waited_ms, "gave up absorbing: the client gets the original error");
        }
        if gave_up < todo.len() {
            // The client asks again at once: let its next request find the leader known.
            let (cluster, seen) = (self.at.cluster.clone(), seen_generation);
            tokio::spawn(async move {
                let _ = cluster.refresh(seen, Trigger::Error).await;
            });
            debug!(api = ?A::KEY, partitions = todo.len() - gave_up, waited_ms, "held long enough: answered with no records, the client asks again");
        }
    }

    /// Whether leadership must be refreshed before re-sending: unless the cache already names a
    /// different leader for every partition to re-send (a KIP-951 hint, or another request's
    /// refresh, got there first).
    fn leaders_unknown(&self, todo: &[(usize, Decision)]) -> bool {
        todo.iter().any(|(i, d)| {
            let part = &self.parts[*i];
            *d == Decision::WaitThenReroute
                || (matches!(d, Decision::Reroute | Decision::Verify)
                    && self
                        .at
                        .cluster
                        .leadership
                        .leader_of(&part.topic, part.partition())
                        .is_none_or(|l| l.node == part.node))
        })
    }

    /// Writes of unknown outcome: asks the leader's log before anything is re-sent.
    async fn verify(&mut self, todo: &[(usize, Decision)]) {
        for (i, _) in todo.iter().filter(|(_, d)| *d == Decision::Verify) {
            let part = &self.parts[*i];
            let base = part.answer.as_ref().map(A::base_offset).unwrap_or(-1);
            let Some(check) = A::check_written(
                self.at.cluster.clone(),
                part.topic.clone(),
                part.req.clone(),
                base,
                self.at.budget.deadline(),
            ) else {
                continue;
            };
            let part = &mut self.parts[*i];
            match check.await {
                Checked::Written(answer) => {
                    part.answer = Some(answer);
                    part.failure = None;
                }
                Checked::NotWritten => part.unwritten = true,
                Checked::Unknown => {}
            }
        }
    }

    /// Re-sends the partitions to re-send, grouped by where they go now, and takes their
    /// answers.
    async fn replay(
        &mut self,
        todo: &[(usize, Decision)],
        envelope: &mut Option<A::Resp>,
    ) -> Result<(), JobError> {
        for (flight, idx) in self.send_replays(todo).await? {
            let frame = match self.at.wait(flight, Until::Deadline, None).await {
                Ok(frame) => frame,
                Err(f) => {
                    for _ in &idx {
                        self.at.tally.resent(false);
                    }
                    // A lost connection after a write leaves the outcome unknown.
                    self.fail(&idx, f);
                    continue;
                }
            };
            let resp = decode_response::<A::Resp>(&frame, A::KEY, self.version)
                .map_err(|e| JobError::Undecodable(e.to_string()))?;
            for i in &idx {
                let part = &mut self.parts[*i];
                part.failure = None;
                // A new answer: whatever was proved about the previous attempt says nothing
                // about this one (it may have been appended, then lost leadership again).
                part.unwritten = false;
            }
            self.record(resp, &idx, envelope);
            for i in &idx {
                let ok = self.parts[*i].code().is_some_and(|c| !is_retried_code(c));
                self.at.tally.resent(ok);
            }
        }
        Ok(())
    }

    /// Sends every group of partitions to re-send before waiting for any answer.
    async fn send_replays(
        &mut self,
        todo: &[(usize, Decision)],
    ) -> Result<Vec<(InFlight, Vec<usize>)>, JobError> {
        let mut groups: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
        for (i, d) in todo.iter().filter(|(_, d)| *d != Decision::Verify) {
            groups
                .entry(self.replay_target(*i, *d))
                .or_default()
                .push(*i);
        }
        let mut replay_envelope = A::build(&self.envelope, &[]);
        A::for_replay(&mut replay_envelope);
        let mut inflight = Vec::with_capacity(groups.len());
        for (node, idx) in groups {
            let frame = self.replay_frame(node, &idx, &replay_envelope)?;
            let Some(flight) = self.at.send(node, frame).await else {
                // No connection of the client's identity reaches `node`: the partitions keep
                // the answers they have (`identity`).
                for i in &idx {
                    self.parts[*i].unroutable = true;
                }
                continue;
            };
            debug!(api = ?A::KEY, node, partitions = idx.len(), waited_ms = self.at.budget.elapsed().as_millis() as u64, "replaying");
            for i in &idx {
                self.parts[*i].node = node;
            }
            inflight.push((flight, idx));
        }
        Ok(inflight)
    }

    /// Where a partition is re-sent: the same broker, or its leader now (with that leader's
    /// epoch), or where it went last if the leader is unknown.
    fn replay_target(&mut self, i: usize, d: Decision) -> i32 {
        let leadership = &self.at.cluster.leadership;
        let part = &mut self.parts[i];
        if d == Decision::RetrySame {
            return part.node;
        }
        match leadership.partition_of(&part.topic, part.partition()) {
            Some(s) if s.leader >= 0 => {
                if A::leader_epoch(&part.req).is_some_and(|e| e >= 0) {
                    A::set_leader_epoch(&mut part.req, s.epoch);
                }
                s.leader
            }
            _ => part.node,
        }
    }

    /// The request re-sending the partitions `idx` to `node`, which counts as rerouted for
    /// those last sent elsewhere.
    fn replay_frame(
        &self,
        node: i32,
        idx: &[usize],
        replay_envelope: &A::Req,
    ) -> Result<Bytes, JobError> {
        let rerouted = idx.iter().filter(|i| self.parts[**i].node != node).count();
        if rerouted > 0 {
            metrics::rerouted(A::KEY as i16, rerouted);
        }
        let subset: Vec<(&TopicRef, &A::PartReq)> = idx
            .iter()
            .map(|i| (&self.parts[*i].topic, &self.parts[*i].req))
            .collect();
        encode_request_with_header(
            &self.header,
            &A::build(replay_envelope, &subset),
            A::KEY,
            self.version,
        )
        .map(|b| b.freeze())
        .map_err(|e| JobError::Undecodable(e.to_string()))
    }

    fn fail(&mut self, idx: &[usize], f: Failure) {
        for i in idx {
            self.parts[*i].failure = Some(f);
        }
    }

    /// Asked at every router tick while a part's answer is awaited (`Attempts::wait`): whether
    /// to give up on it early, once every partition of the part has had another leader for a
    /// while and the broker has said nothing on the connection for as long (see
    /// `retry::former_leader_lost`). A live broker answers within its own wait; one that stops
    /// answering (hung, paused) is otherwise given up on when the budget's time to answer is
    /// over, when its connection is abandoned.
    fn given_up_early(&self, idx: &[usize], f: &InFlight) -> bool {
        let cluster = &self.at.cluster;
        if self.at.budget.elapsed() >= retry::MOVED_FOR {
            // Nothing else will tell fairlead that leadership left a broker that stopped
            // answering: ask (single-flight, so one refresh per round).
            let (cluster, seen) = (cluster.clone(), cluster.leadership.generation());
            tokio::spawn(async move {
                let _ = cluster.refresh(seen, Trigger::SlowBroker).await;
            });
        }
        if !self.former_leader_lost(idx, f) {
            return false;
        }
        warn!(api = ?A::KEY, node = f.node, waited_ms = self.at.budget.elapsed().as_millis() as u64, "no answer from a former leader: treating the request as lost");
        true
    }

    /// Every partition of the part has had another leader since a while after it was sent, and
    /// the broker has been silent on the connection (see `retry::former_leader_lost`).
    fn former_leader_lost(&self, idx: &[usize], f: &InFlight) -> bool {
        let elapsed = self.at.budget.elapsed();
        let moved_away = idx.iter().all(|i| {
            let part = &self.parts[*i];
            self.at
                .cluster
                .leadership
                .partition_of(&part.topic, part.partition())
                .is_some_and(|st| {
                    st.leader != f.node
                        && st
                            .changed_at
                            .and_then(|at| at.elapsed().ok())
                            .is_some_and(|e| e < elapsed && retry::moved_long_enough(e))
                })
        });
        let silent = f.up.as_ref().map(|u| u.silent_for());
        moved_away && retry::former_leader_lost(silent)
    }

    /// Records a (sub-)response: per-partition answers, KIP-951 leader hints, merged envelope.
    fn record(&mut self, resp: A::Resp, idx: &[usize], envelope: &mut Option<A::Resp>) {
        let (mut env, parts) = A::flatten_resp(resp);
        if let Some(list) = A::node_endpoints(&mut env) {
            self.at.cluster.learn_endpoints(list);
        }
        let mut by_key: HashMap<(TopicRef, i32), A::PartResp> = parts
            .into_iter()
            .map(|(t, p)| ((t, A::resp_partition(&p)), p))
            .collect();
        for i in idx {
            let part = &mut self.parts[*i];
            let partition = A::partition(&part.req);
            let Some(p) = by_key.remove(&(part.topic.clone(), partition)) else {
                // The broker left a partition out (should not happen): treat it like a lost
                // answer, so writes are only re-sent when idempotent.
                part.failure = Some(Failure::ConnectionLost);
                continue;
            };
            let code = A::error_code(&p);
            let first = part.first_code.is_none();
            if code != 0 {
                part.first_code.get_or_insert(code);
            }
            if is_leadership_code(code) {
                if first {
                    self.at.cluster.incidents.error_seen(
                        &self.at.cluster.leadership,
                        &part.topic,
                        partition,
                    );
                }
                if let Some((leader, epoch)) = A::leader_hint(&p) {
                    self.at
                        .cluster
                        .learn_leader(&part.topic, partition, leader, epoch);
                }
            }
            part.answer = Some(p);
            part.failure = None;
        }
        match envelope {
            None => *envelope = Some(env),
            Some(e) => A::merge_envelope(e, &env),
        }
    }
}
