//! Merge: the response the client gets. Exactly the partitions it asked for, in its order,
//! each with the broker's final answer (or, where no broker answered, the retriable error a
//! direct client would have met); the top-level fields of every answer folded together; every
//! address rewritten. The metrics of what was absorbed and what reached the client are counted
//! here, once per partition.

use bytes::Bytes;
use tracing::debug;

use super::absorb::Answers;
use super::{Job, JobError, RoutedApi};
use crate::codec::message::encode_response;
use crate::leadership::TopicRef;
use crate::metrics;
use crate::router::retry::code_without_answer;

impl<A: RoutedApi> Job<A> {
    pub(super) fn merge(&mut self, answers: Answers<A>) -> Result<Bytes, JobError> {
        let Answers { envelope, original } = answers;
        let finals: Vec<Result<A::PartResp, i16>> = self
            .parts
            .iter_mut()
            .map(|p| match (p.answer.take(), p.failure) {
                (Some(a), None) => Ok(a),
                _ => Err(code_without_answer(A::KEY)),
            })
            .collect();
        let absorbed = self.count(&finals);
        if let Some(took) = self.at.tally.done() {
            debug!(api = ?A::KEY, partitions = absorbed, took_ms = took.as_millis() as u64, "absorbed leadership errors: rerouted and answered");
        }

        let mut envelope = envelope;
        // Unchanged single answer: give the client the broker's bytes, unless it names brokers.
        if let (Some(frame), false) = (original, self.at.resent()) {
            let has_endpoints = envelope
                .as_mut()
                .and_then(|e| A::node_endpoints(e))
                .is_some_and(|l| !l.is_empty());
            if !has_endpoints {
                return Ok(frame);
            }
        }
        let mut envelope = envelope.unwrap_or_default();
        let parts: Vec<(TopicRef, A::PartResp)> = self
            .parts
            .iter()
            .zip(finals)
            .map(|(p, f)| {
                let answer = f.unwrap_or_else(|code| A::error_part(&p.req, code));
                (p.topic.clone(), answer)
            })
            .collect();
        if let Some(list) = A::node_endpoints(&mut envelope) {
            self.at.cluster.rewrite_endpoints(list);
        }
        encode_response(
            &A::build_resp(envelope, parts),
            A::KEY,
            self.version,
            self.correlation_id,
        )
        .map_err(|e| JobError::Undecodable(e.to_string()))
    }

    /// Absorbed where a leadership error was replaced by a broker's answer without one; passed
    /// through for every error the client will see. Returns how many were absorbed.
    fn count(&self, finals: &[Result<A::PartResp, i16>]) -> usize {
        let mut absorbed = 0;
        for (part, f) in self.parts.iter().zip(finals) {
            let final_code = match f {
                Ok(a) => A::error_code(a),
                Err(code) => *code,
            };
            // Absorbed: the partition met an error and the client gets none (an error that
            // ends in another one is counted once, as the one the client gets).
            let tally = &self.at.tally;
            if let Some(code) = tally.answer(part.first_code, final_code == 0, &[final_code]) {
                self.count_absorbed(&part.topic, part.partition(), code);
                absorbed += 1;
            }
            if final_code != 0 && part.unroutable {
                metrics::not_absorbed(metrics::NotAbsorbed::NoConnectionAsClient);
            }
        }
        absorbed
    }

    /// An absorbed partition's topic (if topics are labels) and incident counts.
    fn count_absorbed(&self, topic: &TopicRef, partition: i32, code: i16) {
        let leadership = &self.at.cluster.leadership;
        if metrics::topic_labels() {
            if let Some(name) = leadership.name_of(topic) {
                metrics::topic_absorbed(A::KEY as i16, code, &name);
            }
        }
        self.at
            .cluster
            .incidents
            .absorbed(leadership, topic, partition);
    }
}
