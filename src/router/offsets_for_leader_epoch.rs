//! OffsetsForLeaderEpoch (consumer position validation, KIP-320): routed by partition leader.

use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{ApiKey, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::partitioned::RoutedApi;
use super::shape::{by_topic, by_topic_owned, name_and_id, topic_ref};
use crate::leadership::TopicRef;

pub struct OffsetsForLeaderEpoch;

impl RoutedApi for OffsetsForLeaderEpoch {
    const KEY: ApiKey = ApiKey::OffsetForLeaderEpoch;
    type Req = OffsetForLeaderEpochRequest;
    type Resp = OffsetForLeaderEpochResponse;
    type PartReq = OffsetForLeaderPartition;
    type PartResp = EpochEndOffset;

    fn flatten(
        mut req: OffsetForLeaderEpochRequest,
    ) -> (
        OffsetForLeaderEpochRequest,
        Vec<(TopicRef, OffsetForLeaderPartition)>,
    ) {
        let mut parts = Vec::new();
        for t in std::mem::take(&mut req.topics) {
            let r = topic_ref(&t.topic.0, &uuid::Uuid::nil());
            parts.extend(t.partitions.into_iter().map(|p| (r.clone(), p)));
        }
        (req, parts)
    }

    fn build(
        envelope: &OffsetForLeaderEpochRequest,
        parts: &[(&TopicRef, &OffsetForLeaderPartition)],
    ) -> OffsetForLeaderEpochRequest {
        let mut req = envelope.clone();
        req.topics = by_topic(parts.iter().map(|(t, p)| (*t, (*p).clone())))
            .into_iter()
            .map(|(t, ps)| {
                OffsetForLeaderTopic::default()
                    .with_topic(name_and_id(t).0.into())
                    .with_partitions(ps)
            })
            .collect();
        req
    }

    fn partition(p: &OffsetForLeaderPartition) -> i32 {
        p.partition
    }

    fn leader_epoch(p: &OffsetForLeaderPartition) -> Option<i32> {
        Some(p.current_leader_epoch)
    }

    fn set_leader_epoch(p: &mut OffsetForLeaderPartition, epoch: i32) {
        p.current_leader_epoch = epoch;
    }

    fn flatten_resp(
        mut resp: OffsetForLeaderEpochResponse,
    ) -> (
        OffsetForLeaderEpochResponse,
        Vec<(TopicRef, EpochEndOffset)>,
    ) {
        let mut parts = Vec::new();
        for t in std::mem::take(&mut resp.topics) {
            let r = topic_ref(&t.topic.0, &uuid::Uuid::nil());
            parts.extend(t.partitions.into_iter().map(|p| (r.clone(), p)));
        }
        (resp, parts)
    }

    fn build_resp(
        mut envelope: OffsetForLeaderEpochResponse,
        parts: Vec<(TopicRef, EpochEndOffset)>,
    ) -> OffsetForLeaderEpochResponse {
        envelope.topics = by_topic_owned(parts)
            .into_iter()
            .map(|(t, ps)| {
                OffsetForLeaderTopicResult::default()
                    .with_topic(name_and_id(&t).0.into())
                    .with_partitions(ps)
            })
            .collect();
        envelope
    }

    fn resp_partition(p: &EpochEndOffset) -> i32 {
        p.partition
    }

    fn error_code(p: &EpochEndOffset) -> i16 {
        p.error_code
    }

    fn merge_envelope(
        into: &mut OffsetForLeaderEpochResponse,
        from: &OffsetForLeaderEpochResponse,
    ) {
        into.throttle_time_ms = into.throttle_time_ms.max(from.throttle_time_ms);
    }

    fn error_part(p: &OffsetForLeaderPartition, code: i16) -> EpochEndOffset {
        EpochEndOffset::default()
            .with_partition(p.partition)
            .with_error_code(code)
            .with_leader_epoch(-1)
            .with_end_offset(-1)
    }

    fn routable(envelope: &OffsetForLeaderEpochRequest, _version: i16) -> bool {
        // -1 consumer, -2 "debug" (versions without the field); >= 0 is a follower broker.
        envelope.replica_id.0 < 0
    }
}
