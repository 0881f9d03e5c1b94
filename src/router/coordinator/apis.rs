//! What the coordinator router reads of each coordinator API: which group or transactional id a
//! request is for (and how long the broker may hold it), and the error codes of an answer.
//! Requests are never re-encoded: a replay is the client's own bytes.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Decodable;

use crate::codec::message::{decode_body, decode_response, MessageError};
use crate::leadership::coordinators::CoordinatorKey;
use crate::protocol::is_coordinator_code;
use crate::router::retry::CoordinatorFacts;

/// A coordinator request, as the router sees it.
#[derive(Debug, Clone)]
pub struct Inspected {
    pub key: CoordinatorKey,
    /// How long the broker may legitimately hold it (JoinGroup: its rebalance timeout).
    pub broker_wait: Duration,
    pub facts: CoordinatorFacts,
}

impl Inspected {
    fn new(key: CoordinatorKey) -> Inspected {
        Inspected {
            key,
            broker_wait: Duration::ZERO,
            facts: CoordinatorFacts { repeatable: true },
        }
    }
}

/// The error codes of an answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Codes {
    /// The first coordinator error (14, 15, 16) anywhere in it.
    pub coordinator: Option<i16>,
    /// Every non-zero code in it (top level, per partition, per group, per member).
    pub nonzero: Vec<i16>,
}

impl Codes {
    fn of(codes: impl IntoIterator<Item = i16>) -> Codes {
        let nonzero: Vec<i16> = codes.into_iter().filter(|c| *c != 0).collect();
        Codes {
            coordinator: nonzero.iter().copied().find(|c| is_coordinator_code(*c)),
            nonzero,
        }
    }

    /// The code a ConsumerGroupHeartbeat-style answer carries at its top level (the first).
    pub fn first(&self) -> i16 {
        self.nonzero.first().copied().unwrap_or(0)
    }
}

/// The group or transactional id a coordinator request is for. `None`: the request goes to no
/// single coordinator (a non-transactional InitProducerId, an OffsetFetch for several groups,
/// a broker's batched AddPartitionsToTxn) and is forwarded untouched.
pub fn inspect(
    api: ApiKey,
    frame: &Bytes,
    at: usize,
    v: i16,
) -> Result<Option<Inspected>, MessageError> {
    fn body<T: Decodable>(
        frame: &Bytes,
        at: usize,
        api: ApiKey,
        v: i16,
    ) -> Result<T, MessageError> {
        decode_body(frame, at, api, v)
    }
    let group = |id: &GroupId| Some(Inspected::new(CoordinatorKey::group(id.as_str())));
    let txn = |id: &TransactionalId| Some(Inspected::new(CoordinatorKey::transaction(id.as_str())));
    Ok(match api {
        ApiKey::JoinGroup => {
            let r: JoinGroupRequest = body(frame, at, api, v)?;
            // Before v1 the session timeout is also the rebalance timeout.
            let wait = if v >= 1 {
                r.rebalance_timeout_ms
            } else {
                r.session_timeout_ms
            };
            group(&r.group_id).map(|mut i| {
                i.broker_wait = Duration::from_millis(wait.max(0) as u64);
                i
            })
        }
        ApiKey::SyncGroup => group(&body::<SyncGroupRequest>(frame, at, api, v)?.group_id),
        ApiKey::Heartbeat => group(&body::<HeartbeatRequest>(frame, at, api, v)?.group_id),
        ApiKey::LeaveGroup => group(&body::<LeaveGroupRequest>(frame, at, api, v)?.group_id),
        ApiKey::OffsetCommit => group(&body::<OffsetCommitRequest>(frame, at, api, v)?.group_id),
        ApiKey::TxnOffsetCommit => {
            // Sent to the group's coordinator, not the transaction's.
            group(&body::<TxnOffsetCommitRequest>(frame, at, api, v)?.group_id)
        }
        ApiKey::OffsetFetch => {
            let r: OffsetFetchRequest = body(frame, at, api, v)?;
            if v < 8 {
                group(&r.group_id)
            } else if let [only] = r.groups.as_slice() {
                group(&only.group_id)
            } else {
                None
            }
        }
        ApiKey::ConsumerGroupHeartbeat => {
            let r: ConsumerGroupHeartbeatRequest = body(frame, at, api, v)?;
            group(&r.group_id).map(|mut i| {
                // Joining (0), leaving (-1, -2) or naming its partitions: its whole state.
                i.facts.repeatable = r.member_epoch <= 0 || r.topic_partitions.is_some();
                i
            })
        }
        ApiKey::InitProducerId => {
            let r: InitProducerIdRequest = body(frame, at, api, v)?;
            r.transactional_id
                .as_ref()
                .filter(|t| !t.is_empty())
                .and_then(&txn)
        }
        ApiKey::AddPartitionsToTxn if v <= 3 => {
            txn(&body::<AddPartitionsToTxnRequest>(frame, at, api, v)?
                .v3_and_below_transactional_id)
        }
        ApiKey::AddOffsetsToTxn => {
            txn(&body::<AddOffsetsToTxnRequest>(frame, at, api, v)?.transactional_id)
        }
        ApiKey::EndTxn => txn(&body::<EndTxnRequest>(frame, at, api, v)?.transactional_id),
        _ => None,
    })
}

/// The error codes of an answer of a coordinator API.
pub fn codes(api: ApiKey, frame: &Bytes, v: i16) -> Result<Codes, MessageError> {
    fn resp<T: Decodable>(frame: &Bytes, api: ApiKey, v: i16) -> Result<T, MessageError> {
        decode_response(frame, api, v)
    }
    Ok(match api {
        ApiKey::JoinGroup => Codes::of([resp::<JoinGroupResponse>(frame, api, v)?.error_code]),
        ApiKey::SyncGroup => Codes::of([resp::<SyncGroupResponse>(frame, api, v)?.error_code]),
        ApiKey::Heartbeat => Codes::of([resp::<HeartbeatResponse>(frame, api, v)?.error_code]),
        ApiKey::LeaveGroup => {
            let r: LeaveGroupResponse = resp(frame, api, v)?;
            Codes::of(std::iter::once(r.error_code).chain(r.members.iter().map(|m| m.error_code)))
        }
        ApiKey::OffsetCommit => {
            let r: OffsetCommitResponse = resp(frame, api, v)?;
            Codes::of(
                r.topics
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
            )
        }
        ApiKey::TxnOffsetCommit => {
            let r: TxnOffsetCommitResponse = resp(frame, api, v)?;
            Codes::of(
                r.topics
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
            )
        }
        ApiKey::OffsetFetch => {
            let r: OffsetFetchResponse = resp(frame, api, v)?;
            let top = std::iter::once(r.error_code).chain(
                r.topics
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
            );
            let groups = r.groups.iter().flat_map(|g| {
                std::iter::once(g.error_code).chain(
                    g.topics
                        .iter()
                        .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
                )
            });
            Codes::of(top.chain(groups))
        }
        ApiKey::ConsumerGroupHeartbeat => {
            Codes::of([resp::<ConsumerGroupHeartbeatResponse>(frame, api, v)?.error_code])
        }
        ApiKey::InitProducerId => {
            Codes::of([resp::<InitProducerIdResponse>(frame, api, v)?.error_code])
        }
        ApiKey::AddPartitionsToTxn => {
            let r: AddPartitionsToTxnResponse = resp(frame, api, v)?;
            Codes::of(std::iter::once(r.error_code).chain(
                r.results_by_topic_v3_and_below.iter().flat_map(|t| {
                    t.results_by_partition
                        .iter()
                        .map(|p| p.partition_error_code)
                }),
            ))
        }
        ApiKey::AddOffsetsToTxn => {
            Codes::of([resp::<AddOffsetsToTxnResponse>(frame, api, v)?.error_code])
        }
        ApiKey::EndTxn => Codes::of([resp::<EndTxnResponse>(frame, api, v)?.error_code]),
        ApiKey::FindCoordinator => {
            let r: FindCoordinatorResponse = resp(frame, api, v)?;
            Codes::of(
                std::iter::once(r.error_code).chain(r.coordinators.iter().map(|c| c.error_code)),
            )
        }
        _ => Codes::default(),
    })
}
