//! DeleteRecords: routed by partition leader. Deleting up to an offset twice is the same as
//! once, so a replay is always safe.

use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{ApiKey, DeleteRecordsRequest, DeleteRecordsResponse};

use super::partitioned::RoutedApi;
use super::shape::{by_topic, by_topic_owned, name_and_id, topic_ref};
use crate::leadership::TopicRef;

pub struct DeleteRecords;

impl RoutedApi for DeleteRecords {
    const KEY: ApiKey = ApiKey::DeleteRecords;
    type Req = DeleteRecordsRequest;
    type Resp = DeleteRecordsResponse;
    type PartReq = DeleteRecordsPartition;
    type PartResp = DeleteRecordsPartitionResult;

    fn flatten(
        mut req: DeleteRecordsRequest,
    ) -> (
        DeleteRecordsRequest,
        Vec<(TopicRef, DeleteRecordsPartition)>,
    ) {
        let mut parts = Vec::new();
        for t in std::mem::take(&mut req.topics) {
            let r = topic_ref(&t.name.0, &uuid::Uuid::nil());
            parts.extend(t.partitions.into_iter().map(|p| (r.clone(), p)));
        }
        (req, parts)
    }

    fn build(
        envelope: &DeleteRecordsRequest,
        parts: &[(&TopicRef, &DeleteRecordsPartition)],
    ) -> DeleteRecordsRequest {
        let mut req = envelope.clone();
        req.topics = by_topic(parts.iter().map(|(t, p)| (*t, (*p).clone())))
            .into_iter()
            .map(|(t, ps)| {
                DeleteRecordsTopic::default()
                    .with_name(name_and_id(t).0.into())
                    .with_partitions(ps)
            })
            .collect();
        req
    }

    fn partition(p: &DeleteRecordsPartition) -> i32 {
        p.partition_index
    }

    fn flatten_resp(
        mut resp: DeleteRecordsResponse,
    ) -> (
        DeleteRecordsResponse,
        Vec<(TopicRef, DeleteRecordsPartitionResult)>,
    ) {
        let mut parts = Vec::new();
        for t in std::mem::take(&mut resp.topics) {
            let r = topic_ref(&t.name.0, &uuid::Uuid::nil());
            parts.extend(t.partitions.into_iter().map(|p| (r.clone(), p)));
        }
        (resp, parts)
    }

    fn build_resp(
        mut envelope: DeleteRecordsResponse,
        parts: Vec<(TopicRef, DeleteRecordsPartitionResult)>,
    ) -> DeleteRecordsResponse {
        envelope.topics = by_topic_owned(parts)
            .into_iter()
            .map(|(t, ps)| {
                DeleteRecordsTopicResult::default()
                    .with_name(name_and_id(&t).0.into())
                    .with_partitions(ps)
            })
            .collect();
        envelope
    }

    fn resp_partition(p: &DeleteRecordsPartitionResult) -> i32 {
        p.partition_index
    }

    fn error_code(p: &DeleteRecordsPartitionResult) -> i16 {
        p.error_code
    }

    fn merge_envelope(into: &mut DeleteRecordsResponse, from: &DeleteRecordsResponse) {
        into.throttle_time_ms = into.throttle_time_ms.max(from.throttle_time_ms);
    }

    fn error_part(p: &DeleteRecordsPartition, code: i16) -> DeleteRecordsPartitionResult {
        DeleteRecordsPartitionResult::default()
            .with_partition_index(p.partition_index)
            .with_error_code(code)
            .with_low_watermark(-1)
    }
}
