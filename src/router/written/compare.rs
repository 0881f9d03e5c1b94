//! Is the batch at an offset of the leader's log the one the client sent? Compared on everything
//! the broker keeps of a batch, and on nothing it may change.

use std::cell::RefCell;

use bytes::Bytes;
use kafka_protocol::compression::{Decompressor, Gzip, Lz4, Snappy, Zstd};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, RecordBatchDecoder};

use crate::codec::sanity::{self, RecordShape};

// The record batch header, magic 2 (KIP-98; the field offsets of Kafka's DefaultRecordBatch).
const LENGTH: usize = 8;
const MAGIC: usize = 16;
const ATTRIBUTES: usize = 21;
const LAST_OFFSET_DELTA: usize = 23;
const FIRST_TIMESTAMP: usize = 27;
const MAX_TIMESTAMP: usize = 35;
const PRODUCER_ID: usize = 43;
const PRODUCER_EPOCH: usize = 51;
const BASE_SEQUENCE: usize = 53;
const RECORD_COUNT: usize = 57;
const HEADER: usize = 61;

// Batch attributes.
const COMPRESSION: i16 = 0x07;
const TRANSACTIONAL: i16 = 0x10;
const CONTROL: i16 = 0x20;
const DELETE_HORIZON: i16 = 0x40;

/// Whether the first batch of `found` (the leader's log, read at `base_offset`) is the batch the
/// client sent (`sent`: the partition's records in its Produce request). `Some(true)` only when
/// everything the broker keeps of a batch is equal; `Some(false)` when something it keeps
/// differs, or when another batch covers `base_offset`; `None` when that cannot be told for
/// certain (the write's outcome stays unknown and the client gets the broker's original error).
///
/// What the broker may change between the client's bytes and its log (apache/kafka:
/// `storage/.../internals/log/LogValidator.java` and `clients/.../common/record/`), so is never
/// compared:
/// - the base offset: assigned by `DefaultRecordBatch.setLastOffset` (last offset minus the
///   unchanged last offset delta), called from `LogValidator.assignOffsetsNonCompressed` and
///   `validateMessagesAndAssignOffsetsCompressed`. It must be `base_offset`, checked first.
/// - the partition leader epoch: `DefaultRecordBatch.setPartitionLeaderEpoch`, same callers.
/// - the max timestamp, the timestamp-type attribute bit and the CRC:
///   `DefaultRecordBatch.setMaxTimestamp`, with the append time on a LogAppendTime topic and
///   with the records' largest timestamp on a CreateTime one (same callers). It rebuilds the
///   attributes from compression, timestamp type, transactional, control (and, since KIP-534,
///   delete horizon) in `computeAttributes`, so the unused attribute bits 7-15 may go too.
/// - the whole batch when it is rebuilt, `LogValidator.buildRecordsAndAssignOffsets`: when the
///   topic's compression.type is another codec than the batch's, or a compressed batch's records
///   are not numbered 0..n-1 (`validateMessagesAndAssignOffsetsCompressed`). `MemoryRecordsBuilder`
///   then writes the first batch's producer id, epoch, base sequence and transactional flag, and
///   each record's timestamp, key, value and headers (`appendWithOffset(long, Record)`; the
///   records' own timestamps are kept on a LogAppendTime topic too: only `appendLegacyRecord`,
///   magic 0 and 1, replaces them), but a new compression, offset deltas 0..n-1, the first
///   record's timestamp as first timestamp (`appendWithOffset`), and record attributes 0
///   (`DefaultRecord.writeTo`).
///
/// So the batches are compared in two parts:
/// 1. What every path keeps, where any difference means another batch: producer id, producer
///    epoch, base sequence, the transactional and control flags, the record count and last
///    offset delta, and per record its timestamp (first timestamp + timestamp delta), key, value
///    and headers, in order.
/// 2. What a rebuild may change: the first timestamp, and per record its offset delta and
///    attributes. Equal: ours. Different, but exactly what a rebuild of the client's batch gives
///    (which differs from the client's only if the client did not number its records 0..n-1
///    from the first record's timestamp with attributes 0, as the common clients all do):
///    unknown, since our batch rebuilt and another send of the very same records look alike.
///    Anything else: another batch.
///
/// Also unknown: a batch that is not one whole magic-2 batch, or that does not decode (CRC,
/// codec, structure) with kafka-protocol's `RecordBatchDecoder`; records the decoder would not
/// give back whole (bytes after a record's last header or after the last record, two headers
/// with one key, which the decoder keeps in a map); a client request with more than one batch
/// (Produce v3+ carries exactly one: `LogValidator.getFirstBatchAndMaybeValidateNoMoreBatches`);
/// a log batch the log cleaner has rewritten (the delete-horizon bit, KIP-534, or fewer records
/// than its offsets span: the cleaner keeps a batch's last offset delta, DefaultRecordBatch's
/// class comment), and a log whose first batch starts after `base_offset`: only compaction
/// leaves such a gap, so the batch may have been there and cleaned away.
pub fn same_batch_at(found: &Bytes, sent: &Bytes, base_offset: i64) -> Option<bool> {
    let at = i64::from_be_bytes(found.get(0..8)?.try_into().ok()?);
    if at < base_offset {
        // Another batch covers base_offset: the log never splits a batch.
        return Some(false);
    }
    if at > base_offset {
        return None;
    }
    let stored = first_batch(found)?;
    let client = first_batch(sent)?;
    if client.len() != sent.len() {
        return None;
    }
    if attributes(&stored) & DELETE_HORIZON != 0
        || i64::from(int(&stored, RECORD_COUNT)) != i64::from(int(&stored, LAST_OFFSET_DELTA)) + 1
    {
        return None;
    }
    if same_kept_bytes(&stored, &client) {
        return Some(true);
    }
    verdict(&Decoded::of(&stored)?, &Decoded::of(&client)?)
}

/// The fast path, for a batch stored in place (not rebuilt): everything but the fields the
/// broker sets in place (base offset, partition leader epoch, CRC, max timestamp, attribute bits
/// other than compression, transactional and control) is byte for byte the client's, compressed
/// records included. That covers every field part 1 and 2 compare, so the decoded comparison
/// could only agree (or, for records the decoder cannot give back whole, say it cannot tell:
/// but identical bytes are identical records). It saves decompressing and decoding both batches
/// in the common case: CreateTime or LogAppendTime, the topic keeping the producer's codec.
fn same_kept_bytes(stored: &[u8], client: &[u8]) -> bool {
    const KEPT_ATTRIBUTES: i16 = COMPRESSION | TRANSACTIONAL | CONTROL;
    stored.len() == client.len()
        && attributes(stored) & KEPT_ATTRIBUTES == attributes(client) & KEPT_ATTRIBUTES
        && stored[LAST_OFFSET_DELTA..MAX_TIMESTAMP] == client[LAST_OFFSET_DELTA..MAX_TIMESTAMP]
        && stored[PRODUCER_ID..] == client[PRODUCER_ID..]
}

/// The whole first batch of `b`, if it is a magic-2 batch and all of it is there (a fetch
/// answer may end inside a batch).
fn first_batch(b: &Bytes) -> Option<Bytes> {
    if b.len() < HEADER || b[MAGIC] != 2 {
        return None;
    }
    let end = usize::try_from(int(b, LENGTH)).ok()?.checked_add(12)?;
    (HEADER..=b.len()).contains(&end).then(|| b.slice(..end))
}

fn int(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn long(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn attributes(b: &[u8]) -> i16 {
    i16::from_be_bytes([b[ATTRIBUTES], b[ATTRIBUTES + 1]])
}

/// Part 1, then part 2 (see [`same_batch_at`]).
fn verdict(stored: &Decoded, client: &Decoded) -> Option<bool> {
    if stored.kept != client.kept {
        return Some(false);
    }
    if stored.layout == client.layout {
        return Some(true);
    }
    if stored.layout == Layout::rebuilt(&client.kept) {
        return None;
    }
    Some(false)
}

/// A batch, decoded, in the two parts it is compared in.
struct Decoded {
    kept: Kept,
    layout: Layout,
}

/// What the broker keeps of a batch whether it stores it in place or rebuilds it.
#[derive(Debug, PartialEq)]
struct Kept {
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    transactional: bool,
    control: bool,
    count: i32,
    last_offset_delta: i32,
    records: Vec<KeptRecord>,
}

#[derive(Debug, PartialEq)]
struct KeptRecord {
    timestamp: i64,
    key: Option<Bytes>,
    value: Option<Bytes>,
    headers: Vec<(StrBytes, Option<Bytes>)>,
}

/// What the broker keeps of a batch it stores in place, and a rebuild sets anew.
#[derive(Debug, PartialEq)]
struct Layout {
    first_timestamp: i64,
    /// (offset delta, attributes) of each record.
    records: Vec<(i64, i8)>,
}

impl Layout {
    /// What `LogValidator.buildRecordsAndAssignOffsets` gives a batch holding these records.
    fn rebuilt(kept: &Kept) -> Layout {
        Layout {
            first_timestamp: kept.records.first().map_or(-1, |r| r.timestamp),
            records: (0..kept.records.len() as i64).map(|i| (i, 0)).collect(),
        }
    }
}

impl Decoded {
    /// Decodes one whole batch: `None` if kafka-protocol's decoder refuses it, or would not give
    /// back all of its records (see [`RecordShape`]).
    fn of(batch: &Bytes) -> Option<Decoded> {
        // The decoder reserves room for the batch's record count (and each record's header
        // count) before reading a record, and a failed allocation aborts the process: decode
        // only what the sanity walk has found backed by bytes.
        sanity::record_batch(batch).ok()?;
        let header = sanity::BatchHeader::of(batch);
        let shapes: RefCell<Option<(Vec<RecordShape>, usize)>> = RefCell::new(None);
        // A compressed batch's records can only be walked once decompressed.
        let walked = |data: &mut Bytes, compression: Compression| -> anyhow::Result<Bytes> {
            let walk = |d: &mut Bytes| -> anyhow::Result<Bytes> {
                *shapes.borrow_mut() = Some(sanity::record_shapes(d, &header)?);
                Ok(d.clone())
            };
            match compression {
                Compression::None => walk(data),
                Compression::Gzip => Gzip::decompress(data, walk),
                Compression::Snappy => Snappy::decompress(data, walk),
                Compression::Lz4 => Lz4::decompress(data, walk),
                Compression::Zstd => Zstd::decompress(data, walk),
            }
        };
        let set =
            RecordBatchDecoder::decode_with_custom_compression(&mut batch.clone(), Some(&walked))
                .ok()?;
        let (shapes, after_last) = shapes.into_inner()?;
        if after_last != 0 || shapes.len() != set.records.len() {
            return None;
        }
        let base_offset = long(batch, 0);
        let mut records = Vec::with_capacity(shapes.len());
        let mut layout = Vec::with_capacity(shapes.len());
        for (r, shape) in set.records.into_iter().zip(shapes) {
            if shape.unread != 0 || shape.headers != r.headers.len() {
                return None;
            }
            // The sanity walk refused any delta whose sum with the base overflows, so the
            // decoder's offset minus the base is the record's offset delta.
            layout.push((r.offset - base_offset, shape.attributes));
            records.push(KeptRecord {
                timestamp: r.timestamp,
                key: r.key,
                value: r.value,
                headers: r.headers.into_iter().collect(),
            });
        }
        let attributes = attributes(batch);
        Some(Decoded {
            kept: Kept {
                producer_id: long(batch, PRODUCER_ID),
                producer_epoch: i16::from_be_bytes([
                    batch[PRODUCER_EPOCH],
                    batch[PRODUCER_EPOCH + 1],
                ]),
                base_sequence: int(batch, BASE_SEQUENCE),
                transactional: attributes & TRANSACTIONAL != 0,
                control: attributes & CONTROL != 0,
                count: int(batch, RECORD_COUNT),
                last_offset_delta: int(batch, LAST_OFFSET_DELTA),
                records,
            },
            layout: Layout {
                first_timestamp: long(batch, FIRST_TIMESTAMP),
                records: layout,
            },
        })
    }
}

/// maxTimestamp of a LogAppendTime batch, else -1 (what the broker reports for CreateTime).
pub fn log_append_time(batch: &Bytes) -> i64 {
    if attributes(batch) & 0x08 != 0 {
        long(batch, MAX_TIMESTAMP)
    } else {
        -1
    }
}

#[cfg(test)]
mod tests;
