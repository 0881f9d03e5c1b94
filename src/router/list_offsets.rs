//! ListOffsets: routed by partition leader; leadership errors re-sent to the current leader.

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ApiKey, ListOffsetsRequest, ListOffsetsResponse};

use super::partitioned::RoutedApi;
use super::shape::{by_topic, by_topic_owned, name_and_id, topic_ref};
use crate::leadership::TopicRef;

pub struct ListOffsets;

impl RoutedApi for ListOffsets {
    const KEY: ApiKey = ApiKey::ListOffsets;
    type Req = ListOffsetsRequest;
    type Resp = ListOffsetsResponse;
    type PartReq = ListOffsetsPartition;
    type PartResp = ListOffsetsPartitionResponse;

    fn flatten(
        mut req: ListOffsetsRequest,
    ) -> (ListOffsetsRequest, Vec<(TopicRef, ListOffsetsPartition)>) {
        let mut parts = Vec::new();
        for t in std::mem::take(&mut req.topics) {
            let r = topic_ref(&t.name.0, &uuid::Uuid::nil());
            parts.extend(t.partitions.into_iter().map(|p| (r.clone(), p)));
        }
        (req, parts)
    }

    fn build(
        envelope: &ListOffsetsRequest,
        parts: &[(&TopicRef, &ListOffsetsPartition)],
    ) -> ListOffsetsRequest {
        let mut req = envelope.clone();
        req.topics = by_topic(parts.iter().map(|(t, p)| (*t, (*p).clone())))
            .into_iter()
            .map(|(t, ps)| {
                ListOffsetsTopic::default()
                    .with_name(name_and_id(t).0.into())
                    .with_partitions(ps)
            })
            .collect();
        req
    }

    fn partition(p: &ListOffsetsPartition) -> i32 {
        p.partition_index
    }

    fn leader_epoch(p: &ListOffsetsPartition) -> Option<i32> {
        Some(p.current_leader_epoch)
    }

    fn set_leader_epoch(p: &mut ListOffsetsPartition, epoch: i32) {
        p.current_leader_epoch = epoch;
    }

    fn flatten_resp(
        mut resp: ListOffsetsResponse,
    ) -> (
        ListOffsetsResponse,
        Vec<(TopicRef, ListOffsetsPartitionResponse)>,
    ) {
        let mut parts = Vec::new();
        for t in std::mem::take(&mut resp.topics) {
            let r = topic_ref(&t.name.0, &uuid::Uuid::nil());
            parts.extend(t.partitions.into_iter().map(|p| (r.clone(), p)));
        }
        (resp, parts)
    }

    fn build_resp(
        mut envelope: ListOffsetsResponse,
        parts: Vec<(TopicRef, ListOffsetsPartitionResponse)>,
    ) -> ListOffsetsResponse {
        envelope.topics = by_topic_owned(parts)
            .into_iter()
            .map(|(t, ps)| {
                ListOffsetsTopicResponse::default()
                    .with_name(name_and_id(&t).0.into())
                    .with_partitions(ps)
            })
            .collect();
        envelope
    }

    fn resp_partition(p: &ListOffsetsPartitionResponse) -> i32 {
        p.partition_index
    }

    fn error_code(p: &ListOffsetsPartitionResponse) -> i16 {
        p.error_code
    }

    fn merge_envelope(into: &mut ListOffsetsResponse, from: &ListOffsetsResponse) {
        into.throttle_time_ms = into.throttle_time_ms.max(from.throttle_time_ms);
    }

    fn error_part(p: &ListOffsetsPartition, code: i16) -> ListOffsetsPartitionResponse {
        ListOffsetsPartitionResponse::default()
            .with_partition_index(p.partition_index)
            .with_error_code(code)
            .with_timestamp(-1)
            .with_offset(-1)
            .with_leader_epoch(-1)
    }

    fn routable(envelope: &ListOffsetsRequest, _version: i16) -> bool {
        envelope.replica_id.0 < 0
    }
}
