//! Produce: routed by partition leader; replayed under the rules in `retry`.
//!
//! Record batches are never decoded or re-encoded: a split or replayed request carries the
//! client's batch bytes unchanged (producer id, epoch, sequence and CRC intact), which is what
//! makes an idempotent replay safe.

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse};

use std::sync::Arc;
use std::time::Instant;

use super::partitioned::{BoxFuture, Checked, RoutedApi};
use super::shape::{by_topic, by_topic_owned, name_and_id, topic_ref};
use super::written::{self, Written};
use crate::cluster::Cluster;
use crate::codec::endpoints::{union_endpoints, EndpointList};
use crate::leadership::TopicRef;

pub struct Produce;

impl RoutedApi for Produce {
    const KEY: ApiKey = ApiKey::Produce;
    type Req = ProduceRequest;
    type Resp = ProduceResponse;
    type PartReq = PartitionProduceData;
    type PartResp = PartitionProduceResponse;

    fn flatten(mut req: ProduceRequest) -> (ProduceRequest, Vec<(TopicRef, PartitionProduceData)>) {
        let mut parts = Vec::new();
        for t in std::mem::take(&mut req.topic_data) {
            let r = topic_ref(&t.name.0, &t.topic_id);
            parts.extend(t.partition_data.into_iter().map(|p| (r.clone(), p)));
        }
        (req, parts)
    }

    fn build(
        envelope: &ProduceRequest,
        parts: &[(&TopicRef, &PartitionProduceData)],
    ) -> ProduceRequest {
        let mut req = envelope.clone();
        req.topic_data = by_topic(parts.iter().map(|(t, p)| (*t, (*p).clone())))
            .into_iter()
            .map(|(t, ps)| {
                let (name, id) = name_and_id(t);
                TopicProduceData::default()
                    .with_name(name.into())
                    .with_topic_id(id)
                    .with_partition_data(ps)
            })
            .collect();
        req
    }

    fn partition(p: &PartitionProduceData) -> i32 {
        p.index
    }

    fn flatten_resp(
        mut resp: ProduceResponse,
    ) -> (ProduceResponse, Vec<(TopicRef, PartitionProduceResponse)>) {
        let mut parts = Vec::new();
        for t in std::mem::take(&mut resp.responses) {
            let r = topic_ref(&t.name.0, &t.topic_id);
            parts.extend(t.partition_responses.into_iter().map(|p| (r.clone(), p)));
        }
        (resp, parts)
    }

    fn build_resp(
        mut envelope: ProduceResponse,
        parts: Vec<(TopicRef, PartitionProduceResponse)>,
    ) -> ProduceResponse {
        envelope.responses = by_topic_owned(parts)
            .into_iter()
            .map(|(t, ps)| {
                let (name, id) = name_and_id(&t);
                TopicProduceResponse::default()
                    .with_name(name.into())
                    .with_topic_id(id)
                    .with_partition_responses(ps)
            })
            .collect();
        envelope
    }

    fn resp_partition(p: &PartitionProduceResponse) -> i32 {
        p.index
    }

    fn error_code(p: &PartitionProduceResponse) -> i16 {
        p.error_code
    }

    fn merge_envelope(into: &mut ProduceResponse, from: &ProduceResponse) {
        into.throttle_time_ms = into.throttle_time_ms.max(from.throttle_time_ms);
        union_endpoints(&mut into.node_endpoints, &from.node_endpoints, |e| {
            e.node_id.0
        });
    }

    fn error_part(p: &PartitionProduceData, code: i16) -> PartitionProduceResponse {
        PartitionProduceResponse::default()
            .with_index(p.index)
            .with_error_code(code)
            .with_base_offset(-1)
            .with_log_append_time_ms(-1)
            .with_log_start_offset(-1)
    }

    fn leader_hint(p: &PartitionProduceResponse) -> Option<(i32, i32)> {
        (p.current_leader.leader_id.0 >= 0)
            .then_some((p.current_leader.leader_id.0, p.current_leader.leader_epoch))
    }

    fn node_endpoints(resp: &mut ProduceResponse) -> Option<&mut dyn EndpointList> {
        Some(&mut resp.node_endpoints)
    }

    fn produce_facts(p: &PartitionProduceData) -> Option<bool> {
        Some(p.records.as_ref().is_some_and(all_batches_idempotent))
    }

    fn producer(p: &PartitionProduceData) -> Option<(i64, i16)> {
        p.records.as_ref().and_then(first_producer)
    }

    fn expects_response(envelope: &ProduceRequest) -> bool {
        envelope.acks != 0
    }

    fn broker_wait(envelope: &ProduceRequest) -> std::time::Duration {
        std::time::Duration::from_millis(envelope.timeout_ms.max(0) as u64)
    }

    fn base_offset(p: &PartitionProduceResponse) -> i64 {
        p.base_offset
    }

    fn check_written(
        cluster: Arc<Cluster>,
        topic: TopicRef,
        req: PartitionProduceData,
        base_offset: i64,
        deadline: Instant,
    ) -> Option<BoxFuture<Checked<PartitionProduceResponse>>> {
        let records = req.records.clone()?;
        Some(Box::pin(async move {
            match written::check(&cluster, &topic, req.index, &records, base_offset, deadline).await
            {
                Written::Yes {
                    log_start_offset,
                    log_append_time_ms,
                } => Checked::Written(
                    PartitionProduceResponse::default()
                        .with_index(req.index)
                        .with_error_code(0)
                        .with_base_offset(base_offset)
                        .with_log_append_time_ms(log_append_time_ms)
                        .with_log_start_offset(log_start_offset),
                ),
                Written::No => Checked::NotWritten,
                Written::Unknown => Checked::Unknown,
            }
        }))
    }
}

/// The producer id and epoch of the first record batch (magic 2), read from its header:
/// producerId, producerEpoch. `all_batches_idempotent` checks the rest.
pub fn first_producer(records: &Bytes) -> Option<(i64, i16)> {
    let b = records.get(..PRODUCER_EPOCH + 2)?;
    let id = i64::from_be_bytes(b[PRODUCER_ID..PRODUCER_ID + 8].try_into().ok()?);
    let epoch = i16::from_be_bytes(b[PRODUCER_EPOCH..PRODUCER_EPOCH + 2].try_into().ok()?);
    (b[MAGIC] == 2 && id >= 0).then_some((id, epoch))
}

// Offsets in a record batch header (KIP-98 layout), read without decoding the batch.
const MAGIC: usize = 16;
const PRODUCER_ID: usize = 43;
const PRODUCER_EPOCH: usize = 51;

/// True when every record batch carries a producer id (magic 2 batches of an idempotent or
/// transactional producer). Reads only the batch headers:
/// baseOffset i64 @0, batchLength i32 @8, magic i8 @16, producerId i64 @43 (KIP-98 layout).
pub fn all_batches_idempotent(records: &Bytes) -> bool {
    const HEADER: usize = 61;
    let mut off = 0;
    let mut batches = 0;
    while off < records.len() {
        let b = &records[off..];
        if b.len() < HEADER || b[MAGIC] != 2 {
            return false;
        }
        let producer_id = i64::from_be_bytes(b[PRODUCER_ID..PRODUCER_ID + 8].try_into().unwrap());
        if producer_id < 0 {
            return false;
        }
        let len = i32::from_be_bytes(b[8..12].try_into().unwrap());
        if len < (HEADER - 12) as i32 {
            return false;
        }
        off += 12 + len as usize;
        batches += 1;
    }
    batches > 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    fn batch(producer_id: i64, version: i8) -> Bytes {
        assert_eq!(version, 2);
        let rec = Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch: 0,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: if producer_id >= 0 { 0 } else { -1 },
            timestamp: 0,
            key: None,
            value: Some(Bytes::from_static(b"v")),
            headers: Default::default(),
            delete_horizon: false,
        };
        let mut buf = bytes::BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &[rec],
            &RecordEncodeOptions {
                version,
                compression: Compression::None,
            },
        )
        .unwrap();
        buf.freeze()
    }

    #[test]
    fn recognises_idempotent_batches() {
        assert!(all_batches_idempotent(&batch(7, 2)));
        assert_eq!(first_producer(&batch(7, 2)).map(|(id, _)| id), Some(7));
        assert_eq!(first_producer(&batch(-1, 2)), None);
        assert!(!all_batches_idempotent(&batch(-1, 2)));
        let mut v1 = batch(7, 2).to_vec();
        v1[16] = 1;
        assert!(
            !all_batches_idempotent(&Bytes::from(v1)),
            "message format v1 has no producer id"
        );
        let mut two = batch(7, 2).to_vec();
        two.extend_from_slice(&batch(-1, 2));
        assert!(
            !all_batches_idempotent(&Bytes::from(two)),
            "one non-idempotent batch taints the partition"
        );
        assert!(!all_batches_idempotent(&Bytes::new()));
        assert!(!all_batches_idempotent(&Bytes::from_static(&[0; 20])));
    }
}
