//! Fetch: routed by partition leader (or the follower a rack-aware consumer chose, KIP-392);
//! partitions answered 6/74 are fetched again from the current leader.
//!
//! Fetch sessions (KIP-227): fairlead fetches sessionless upstream. A client's full fetch that
//! asks for a new session (session 0, epoch 0) goes out as (0, -1), so the broker answers with
//! session id 0 and the client stays on full fetches. Every request then names all its
//! partitions with their offsets, so any partition can be fetched anywhere without mirroring
//! session state, and no response ever omits or invents a partition.
//!
//! While fairlead absorbs a leadership error for a fetch, the fetch is held at most its
//! max_wait_ms + [`HOLD_GRACE`]; a partition still being rerouted then gets no records and no
//! error (see `hold_limit`).

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse};

use super::partitioned::RoutedApi;
use super::shape::{by_topic, by_topic_owned, name_and_id, topic_ref};
use crate::codec::endpoints::{union_endpoints, EndpointList};
use crate::leadership::TopicRef;

pub struct Fetch;

/// How much longer than its own max_wait_ms a client's fetch may be held while fairlead absorbs
/// a leadership error for it.
pub const HOLD_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

impl RoutedApi for Fetch {
    const KEY: ApiKey = ApiKey::Fetch;
    type Req = FetchRequest;
    type Resp = FetchResponse;
    type PartReq = FetchPartition;
    type PartResp = PartitionData;

    fn flatten(mut req: FetchRequest) -> (FetchRequest, Vec<(TopicRef, FetchPartition)>) {
        let mut parts = Vec::new();
        for t in std::mem::take(&mut req.topics) {
            let r = topic_ref(&t.topic.0, &t.topic_id);
            parts.extend(t.partitions.into_iter().map(|p| (r.clone(), p)));
        }
        (req, parts)
    }

    fn build(envelope: &FetchRequest, parts: &[(&TopicRef, &FetchPartition)]) -> FetchRequest {
        let mut req = envelope.clone();
        req.topics = by_topic(parts.iter().map(|(t, p)| (*t, (*p).clone())))
            .into_iter()
            .map(|(t, ps)| {
                let (name, id) = name_and_id(t);
                FetchTopic::default()
                    .with_topic(name.into())
                    .with_topic_id(id)
                    .with_partitions(ps)
            })
            .collect();
        req
    }

    fn partition(p: &FetchPartition) -> i32 {
        p.partition
    }

    fn leader_epoch(p: &FetchPartition) -> Option<i32> {
        Some(p.current_leader_epoch)
    }

    fn set_leader_epoch(p: &mut FetchPartition, epoch: i32) {
        p.current_leader_epoch = epoch;
    }

    fn flatten_resp(mut resp: FetchResponse) -> (FetchResponse, Vec<(TopicRef, PartitionData)>) {
        let mut parts = Vec::new();
        for t in std::mem::take(&mut resp.responses) {
            let r = topic_ref(&t.topic.0, &t.topic_id);
            parts.extend(t.partitions.into_iter().map(|p| (r.clone(), p)));
        }
        (resp, parts)
    }

    fn build_resp(
        mut envelope: FetchResponse,
        parts: Vec<(TopicRef, PartitionData)>,
    ) -> FetchResponse {
        envelope.session_id = 0;
        envelope.responses = by_topic_owned(parts)
            .into_iter()
            .map(|(t, ps)| {
                let (name, id) = name_and_id(&t);
                FetchableTopicResponse::default()
                    .with_topic(name.into())
                    .with_topic_id(id)
                    .with_partitions(ps)
            })
            .collect();
        envelope
    }

    fn resp_partition(p: &PartitionData) -> i32 {
        p.partition_index
    }

    fn error_code(p: &PartitionData) -> i16 {
        p.error_code
    }

    fn envelope_code(resp: &FetchResponse) -> i16 {
        resp.error_code
    }

    fn merge_envelope(into: &mut FetchResponse, from: &FetchResponse) {
        into.throttle_time_ms = into.throttle_time_ms.max(from.throttle_time_ms);
        if into.error_code == 0 {
            into.error_code = from.error_code;
        }
        union_endpoints(&mut into.node_endpoints, &from.node_endpoints, |e| {
            e.node_id.0
        });
    }

    fn error_part(p: &FetchPartition, code: i16) -> PartitionData {
        // Empty (not null) records: librdkafka rejects a null records field.
        PartitionData::default()
            .with_partition_index(p.partition)
            .with_error_code(code)
            .with_high_watermark(-1)
            .with_last_stable_offset(-1)
            .with_log_start_offset(-1)
    }

    fn leader_hint(p: &PartitionData) -> Option<(i32, i32)> {
        (p.current_leader.leader_id.0 >= 0)
            .then_some((p.current_leader.leader_id.0, p.current_leader.leader_epoch))
    }

    fn node_endpoints(resp: &mut FetchResponse) -> Option<&mut dyn EndpointList> {
        Some(&mut resp.node_endpoints)
    }

    fn prepare(envelope: &mut FetchRequest, version: i16) -> bool {
        // (0, 0) = "full fetch, create a session": ask for a sessionless full fetch instead.
        if version >= 7 && envelope.session_id == 0 && envelope.session_epoch == 0 {
            envelope.session_epoch = -1;
            return true;
        }
        false
    }

    fn broker_wait(envelope: &FetchRequest) -> std::time::Duration {
        std::time::Duration::from_millis(envelope.max_wait_ms.max(0) as u64)
    }

    fn for_replay(envelope: &mut FetchRequest) {
        // The client already waited once; a replay answers with whatever is there now.
        envelope.max_wait_ms = 0;
    }

    fn hold_limit(envelope: &FetchRequest) -> Option<std::time::Duration> {
        // A fetch answer is only good while the client still fetches the partition from that
        // broker: one that arrives after the client has moved the partition to another broker
        // and back is taken as current (librdkafka checks only the broker and a version that
        // seeks and pauses bump), and its stale batch epoch can make the client's next
        // position validation see a truncation that never happened. So a fetch is not held
        // much past the client's own wait; what is not there by then is "nothing yet".
        Some(std::time::Duration::from_millis(envelope.max_wait_ms.max(0) as u64) + HOLD_GRACE)
    }

    fn nothing_yet(p: &FetchPartition) -> Option<PartitionData> {
        // No records, no error. The watermarks are unknown (-1): the Java client ignores
        // negative ones; librdkafka keeps them for its lag statistics until the next answer,
        // and neither signals end of partition or moves its position on an empty answer.
        Some(Self::error_part(p, 0))
    }

    fn routable(envelope: &FetchRequest, _version: i16) -> bool {
        // A broker's follower fetch is never touched; an incremental session (only possible if
        // a session was created without fairlead) must stay on its broker.
        envelope.replica_id.0 < 0
            && envelope.replica_state.replica_id.0 < 0
            && envelope.session_id == 0
    }

    fn home_may_serve(envelope: &FetchRequest, version: i16) -> bool {
        // KIP-392: a consumer with a rack fetches from the replica the leader pointed it to.
        version >= 11 && !envelope.rack_id.is_empty()
    }
}
