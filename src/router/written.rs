//! Was a produce batch written? Asked of the current leader's log.
//!
//! A former leader answers NOT_LEADER_OR_FOLLOWER with base_offset >= 0 when it appended the
//! batch and then lost leadership while the request waited for acks=all. The batch survives if
//! the new leader had replicated it before the election, and is truncated away otherwise. For
//! an idempotent producer the broker would de-duplicate a replay; for anyone else fairlead must
//! know, or a replay may duplicate records and a pass-through fails a send that succeeded.
//!
//! The current leader's log is the truth: at `base_offset` it holds either this batch (it
//! survived, and is committed once the high watermark passes it: a consumer fetch only returns
//! committed data) or some other batch (this one is gone). A fetch beyond the leader's log end
//! (OFFSET_OUT_OF_RANGE) also means gone. "This batch" means everything the broker keeps of it
//! is the client's (`compare`): two sends of equal keys and values are two batches, and a
//! batch that cannot be compared for certain leaves the outcome unknown, never written.
//!
//! When nothing is committed at `base_offset` yet, the leader epoch history decides: the former
//! leader appended in an epoch below the current one, so the end offset the current leader
//! reports for epoch (current - 1) (OffsetsForLeaderEpoch, KIP-101/KIP-320) is where its log
//! stops holding anything written before its own leadership. At or below `base_offset`: the
//! batch is not in the log (gone). Above it: something old is there, and the content check
//! decides once it is committed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse,
};
use kafka_protocol::protocol::StrBytes;
use tracing::debug;

use crate::cluster::Cluster;
use crate::leadership::refresh::Trigger;
use crate::leadership::TopicRef;
use crate::metrics;
use crate::protocol::{FENCED_LEADER_EPOCH, NOT_LEADER_OR_FOLLOWER, OFFSET_OUT_OF_RANGE};

mod compare;

pub use compare::same_batch_at;

/// Fetch v12: topic names, leader epochs; spoken by every broker line fairlead supports.
const FETCH_VERSION: i16 = 12;
/// OffsetsForLeaderEpoch v4 (Kafka 2.7+), with current_leader_epoch fencing.
const EPOCHS_VERSION: i16 = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// The batch is in the leader's log at `base_offset`, committed.
    Yes {
        log_start_offset: i64,
        log_append_time_ms: i64,
    },
    /// Something else is at `base_offset`, or the log ends before it.
    No,
    /// The leader has nothing committed at `base_offset` yet (or could not be asked).
    Unknown,
}

impl Written {
    fn label(&self) -> metrics::ProduceCheck {
        match self {
            Written::Yes { .. } => metrics::ProduceCheck::Written,
            Written::No => metrics::ProduceCheck::NotWritten,
            Written::Unknown => metrics::ProduceCheck::Unknown,
        }
    }
}

pub async fn check(
    cluster: &Arc<Cluster>,
    topic: &TopicRef,
    partition: i32,
    records: &Bytes,
    base_offset: i64,
    deadline: Instant,
) -> Written {
    let w = ask(cluster, topic, partition, records, base_offset, deadline).await;
    metrics::produce_check(w.label());
    debug!(%topic, partition, base_offset, result = w.label().label(), "looked for a produce batch in the leader's log");
    w
}

async fn ask(
    cluster: &Arc<Cluster>,
    topic: &TopicRef,
    partition: i32,
    records: &Bytes,
    base_offset: i64,
    deadline: Instant,
) -> Written {
    let seen = cluster.leadership.generation();
    let Some(name) = cluster.leadership.name_of(topic) else {
        return Written::Unknown;
    };
    let Some(leader) = cluster.leadership.leader(&name, partition) else {
        return Written::Unknown;
    };
    // The leader fairlead knows cannot be reached or does not answer: it may be the broker
    // that just died (SIGKILL: no error to learn from). Learn who leads now, so that the next
    // look asks the right broker (a refresh, single-flight, only if none came since `seen`).
    let Ok(up) = cluster.upstream(leader.node).await else {
        let _ = cluster.refresh(seen, Trigger::Error).await;
        return Written::Unknown;
    };
    let timeout = deadline
        .saturating_duration_since(Instant::now())
        .min(Duration::from_secs(2));
    let topic_name: kafka_protocol::messages::TopicName = StrBytes::from_string(name).into();
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(i32::MAX)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name.clone())
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_current_leader_epoch(leader.epoch)
                .with_fetch_offset(base_offset)
                .with_last_fetched_epoch(-1)
                .with_log_start_offset(-1)
                // The first batch is always returned whole, however small the limit (KIP-74).
                .with_partition_max_bytes(1)])]);
    let resp: FetchResponse = match up
        .request(ApiKey::Fetch, FETCH_VERSION, &req, timeout)
        .await
    {
        Ok(r) => r,
        Err(_) => {
            let _ = cluster.refresh(seen, Trigger::Error).await;
            return Written::Unknown;
        }
    };
    let Some(p) = resp.responses.first().and_then(|t| t.partitions.first()) else {
        return Written::Unknown;
    };
    match p.error_code {
        0 => {}
        // Past the log's end: nothing is at base_offset. (Before the log's start would also be
        // out of range, but retention does not delete a batch appended a moment ago.)
        OFFSET_OUT_OF_RANGE => return Written::No,
        // The leader fairlead knows no longer leads, or leads in a later epoch than it knows:
        // learn the current one, so that the next look asks the right broker. (The absorb loop
        // refreshes only while the partition's known leader is the broker that answered the
        // produce; a refresh during a quick succession of elections may already have replaced
        // it with one that led only for a moment. Seen on the test bed: every look for 15 s went
        // to such a broker, and the client got the original error.)
        NOT_LEADER_OR_FOLLOWER | FENCED_LEADER_EPOCH => {
            let _ = cluster.refresh(seen, Trigger::Error).await;
            return Written::Unknown;
        }
        _ => return Written::Unknown,
    }
    let found = match &p.records {
        Some(r) if !r.is_empty() => r,
        _ => {
            return epoch_history(
                &up,
                topic_name,
                partition,
                leader.epoch,
                base_offset,
                timeout,
            )
            .await
        }
    };
    match same_batch_at(found, records, base_offset) {
        Some(true) => Written::Yes {
            log_start_offset: p.log_start_offset,
            log_append_time_ms: compare::log_append_time(found),
        },
        Some(false) => Written::No,
        None => Written::Unknown,
    }
}

/// Nothing committed at `base_offset` yet: does the leader's log hold anything there from before
/// its own leadership?
async fn epoch_history(
    up: &crate::upstream::Upstream,
    topic: kafka_protocol::messages::TopicName,
    partition: i32,
    current_epoch: i32,
    base_offset: i64,
    timeout: Duration,
) -> Written {
    if current_epoch <= 0 {
        return Written::Unknown;
    }
    let req = OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![OffsetForLeaderTopic::default()
            .with_topic(topic)
            .with_partitions(vec![OffsetForLeaderPartition::default()
                .with_partition(partition)
                .with_current_leader_epoch(current_epoch)
                .with_leader_epoch(current_epoch - 1)])]);
    let resp: OffsetForLeaderEpochResponse = match up
        .request(ApiKey::OffsetForLeaderEpoch, EPOCHS_VERSION, &req, timeout)
        .await
    {
        Ok(r) => r,
        Err(_) => return Written::Unknown,
    };
    match resp.topics.first().and_then(|t| t.partitions.first()) {
        Some(p) if p.error_code == 0 && p.end_offset >= 0 && p.end_offset <= base_offset => {
            Written::No
        }
        _ => Written::Unknown,
    }
}
