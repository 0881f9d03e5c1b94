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
//! (OFFSET_OUT_OF_RANGE) also means gone.
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
use kafka_protocol::compression::{Decompressor, Gzip, Lz4, Snappy, Zstd};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, RecordBatchDecoder};
use tracing::debug;

use crate::cluster::Cluster;
use crate::codec::sanity;
use crate::leadership::TopicRef;
use crate::metrics;

/// Fetch v12: topic names, leader epochs; spoken by every broker line fairlead supports.
const FETCH_VERSION: i16 = 12;
/// OffsetsForLeaderEpoch v4 (Kafka 2.7+), with current_leader_epoch fencing.
const EPOCHS_VERSION: i16 = 4;
const OFFSET_OUT_OF_RANGE: i16 = 1;

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
    let Some(name) = cluster.leadership.name_of(topic) else {
        return Written::Unknown;
    };
    let Some(leader) = cluster.leadership.leader(&name, partition) else {
        return Written::Unknown;
    };
    let Ok(up) = cluster.upstream(leader.node).await else {
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
        Err(_) => return Written::Unknown,
    };
    let Some(p) = resp.responses.first().and_then(|t| t.partitions.first()) else {
        return Written::Unknown;
    };
    match p.error_code {
        0 => {}
        // Past the log's end: nothing is at base_offset. (Before the log's start would also be
        // out of range, but retention does not delete a batch appended a moment ago.)
        OFFSET_OUT_OF_RANGE => return Written::No,
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
            log_append_time_ms: log_append_time(found),
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

/// Whether the first batch of `found` (read from the log) starts at `base_offset` and holds
/// the first batch of `sent` (as the client sent it); `None` when that cannot be told (a batch
/// that does not decode), so the write's outcome stays unknown rather than "not written".
pub fn same_batch_at(found: &Bytes, sent: &Bytes, base_offset: i64) -> Option<bool> {
    const CRC: usize = 17;
    if found.len() < 61 || sent.len() < 61 {
        return None;
    }
    if i64::from_be_bytes(found[0..8].try_into().unwrap()) != base_offset {
        return Some(false);
    }
    // The end of the first batch: its length field plus the 12 bytes before it, never shorter
    // than a batch header nor past the bytes there are.
    let end = |b: &Bytes| {
        usize::try_from(i32::from_be_bytes(b[8..12].try_into().unwrap()))
            .ok()
            .map(|l| l + 12)
            .filter(|e| (61..=b.len()).contains(e))
    };
    // Fast path: a CreateTime batch is stored exactly as sent from the CRC on (the broker only
    // sets base offset and leader epoch, which the CRC does not cover).
    if let (Some(fe), Some(se)) = (end(found), end(sent)) {
        if found[CRC..fe] == sent[CRC..se] {
            return Some(true);
        }
    }
    // LogAppendTime or broker-side recompression changes the bytes, not the records.
    same_records(found, sent)
}

fn same_records(found: &Bytes, sent: &Bytes) -> Option<bool> {
    let (a, b) = (first_records(found)?, first_records(sent)?);
    Some(!a.is_empty() && a == b)
}

type KeyValue = (Option<Bytes>, Option<Bytes>);

/// The keys and values of the first batch in `b`, decoded only once every length in it is known
/// to be backed by bytes: the decoder reserves room for the batch's record count (and each
/// record's header count) before reading a record, and a failed allocation aborts the process.
fn first_records(b: &Bytes) -> Option<Vec<KeyValue>> {
    sanity::record_batch(b).ok()?;
    let header = sanity::BatchHeader::of(b);
    let len = usize::try_from(i32::from_be_bytes(b[8..12].try_into().ok()?)).ok()?;
    let mut one = b.slice(0..(12 + len).min(b.len()));
    // A compressed batch's records can only be checked once decompressed.
    let checked = |data: &mut Bytes, compression: Compression| -> anyhow::Result<Bytes> {
        let check = |d: &mut Bytes| -> anyhow::Result<Bytes> {
            sanity::records(d, &header)?;
            Ok(d.clone())
        };
        match compression {
            Compression::None => check(data),
            Compression::Gzip => Gzip::decompress(data, check),
            Compression::Snappy => Snappy::decompress(data, check),
            Compression::Lz4 => Lz4::decompress(data, check),
            Compression::Zstd => Zstd::decompress(data, check),
        }
    };
    let set = RecordBatchDecoder::decode_with_custom_compression(&mut one, Some(&checked)).ok()?;
    Some(set.records.into_iter().map(|r| (r.key, r.value)).collect())
}

/// maxTimestamp of a LogAppendTime batch, else -1 (what the broker reports for CreateTime).
fn log_append_time(batch: &Bytes) -> i64 {
    let attributes = i16::from_be_bytes([batch[21], batch[22]]);
    if attributes & 0x08 != 0 {
        i64::from_be_bytes(batch[35..43].try_into().unwrap())
    } else {
        -1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    fn batch(values: &[&'static [u8]], base_offset: i64, compression: Compression) -> Bytes {
        let recs: Vec<Record> = values
            .iter()
            .enumerate()
            .map(|(i, v)| Record {
                transactional: false,
                control: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: base_offset + i as i64,
                sequence: -1,
                timestamp: 1000,
                key: None,
                value: Some(Bytes::from_static(v)),
                headers: Default::default(),
                delete_horizon: false,
            })
            .collect();
        let mut buf = bytes::BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &recs,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .unwrap();
        buf.freeze()
    }

    #[test]
    fn the_same_batch_at_the_offset_is_found() {
        let sent = batch(&[b"a", b"b"], 0, Compression::None);
        let stored = batch(&[b"a", b"b"], 42, Compression::None);
        assert_eq!(Some(true), same_batch_at(&stored, &sent, 42));
        assert_eq!(
            Some(false),
            same_batch_at(&stored, &sent, 41),
            "another offset"
        );
    }

    #[test]
    fn another_batch_at_the_offset_is_not_ours() {
        let sent = batch(&[b"a"], 0, Compression::None);
        assert_eq!(
            Some(false),
            same_batch_at(&batch(&[b"c"], 42, Compression::None), &sent, 42)
        );
        assert_eq!(
            Some(false),
            same_batch_at(&batch(&[b"aa"], 42, Compression::None), &sent, 42)
        );
    }

    #[test]
    fn recompressed_batches_are_compared_by_records() {
        let sent = batch(&[b"a", b"b"], 0, Compression::None);
        let stored = batch(&[b"a", b"b"], 7, Compression::Gzip);
        assert_eq!(Some(true), same_batch_at(&stored, &sent, 7));
    }

    /// A batch whose header claims a billion records, with a valid CRC: the decoder would
    /// reserve room for all of them before reading one (and abort the process when that fails).
    fn claiming(records: i32, compression: Compression) -> Bytes {
        let mut b = batch(&[b"a"], 7, compression).to_vec();
        b[57..61].copy_from_slice(&records.to_be_bytes());
        let crc = crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        Bytes::from(b)
    }

    /// CRC-32C (Castagnoli), bitwise: only for building test batches.
    fn crc32c(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &byte in data {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0x82F6_3B78
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn a_batch_claiming_more_records_than_it_holds_is_undecidable_not_fatal() {
        let stored = batch(&[b"b"], 7, Compression::None);
        for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let hostile = claiming(1 << 30, compression);
            assert_eq!(None, same_batch_at(&stored, &hostile, 7), "{compression:?}");
            assert_eq!(None, same_batch_at(&hostile, &stored, 7), "{compression:?}");
        }
    }
}
