use bytes::{BufMut, BytesMut};
use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use proptest::prelude::*;

use super::*;

const TIMESTAMP_TYPE: i16 = 0x08;

/// A record with every field a test may set, encoded as written (KIP-98), not as a client
/// library would normalise it.
#[derive(Debug, Clone)]
struct Rec {
    attributes: i8,
    timestamp_delta: i64,
    offset_delta: i32,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
    /// Bytes inside the record's length after its last header.
    junk: Vec<u8>,
}

fn rec(
    key: &str,
    value: &str,
    timestamp_delta: i64,
    offset_delta: i32,
    headers: &[(&str, &str)],
) -> Rec {
    Rec {
        attributes: 0,
        timestamp_delta,
        offset_delta,
        key: Some(key.as_bytes().to_vec()),
        value: Some(value.as_bytes().to_vec()),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), Some(v.as_bytes().to_vec())))
            .collect(),
        junk: Vec::new(),
    }
}

/// A magic-2 batch with every header field a test may set.
#[derive(Debug, Clone)]
struct Batch {
    base_offset: i64,
    leader_epoch: i32,
    attributes: i16,
    last_offset_delta: i32,
    first_timestamp: i64,
    max_timestamp: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    records: Vec<Rec>,
    /// Bytes after the last record (inside the batch, compressed with the records).
    trailing: Vec<u8>,
}

impl Batch {
    /// As a non-idempotent producer sends it: base offset 0, no producer id, CreateTime, the
    /// first timestamp the first record's, records numbered 0..n-1.
    fn sent(first_timestamp: i64, records: Vec<Rec>) -> Batch {
        let max_delta = records.iter().map(|r| r.timestamp_delta).max().unwrap_or(0);
        Batch {
            base_offset: 0,
            leader_epoch: -1,
            attributes: 0,
            last_offset_delta: records.len() as i32 - 1,
            first_timestamp,
            max_timestamp: first_timestamp + max_delta,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            records,
            trailing: Vec::new(),
        }
    }

    fn compressed(mut self, codec: i16) -> Batch {
        self.attributes = (self.attributes & !COMPRESSION) | codec;
        self
    }

    /// As the broker stores it in place at `offset` (`setLastOffset`, `setPartitionLeaderEpoch`).
    fn stored_at(&self, offset: i64) -> Batch {
        Batch {
            base_offset: offset,
            leader_epoch: 9,
            ..self.clone()
        }
    }

    /// ... on a LogAppendTime topic: `setMaxTimestamp(LOG_APPEND_TIME, now)`, whose
    /// `computeAttributes` keeps compression, transactional and control only.
    fn log_append_time(&self, now: i64) -> Batch {
        Batch {
            attributes: (self.attributes & (COMPRESSION | TRANSACTIONAL | CONTROL))
                | TIMESTAMP_TYPE,
            max_timestamp: now,
            ..self.clone()
        }
    }

    /// ... rebuilt with `codec` (`buildRecordsAndAssignOffsets`): offsets 0..n-1, the first
    /// record's timestamp as first timestamp, record attributes 0, the records' timestamps,
    /// keys, values and headers kept.
    fn rebuilt(&self, codec: i16) -> Batch {
        let first = self.first_timestamp + self.records.first().map_or(0, |r| r.timestamp_delta);
        let records: Vec<Rec> = self
            .records
            .iter()
            .enumerate()
            .map(|(i, r)| Rec {
                attributes: 0,
                timestamp_delta: self.first_timestamp + r.timestamp_delta - first,
                offset_delta: i as i32,
                junk: Vec::new(),
                ..r.clone()
            })
            .collect();
        Batch {
            attributes: (self.attributes & (TIMESTAMP_TYPE | TRANSACTIONAL | CONTROL)) | codec,
            last_offset_delta: records.len() as i32 - 1,
            first_timestamp: first,
            records,
            trailing: Vec::new(),
            ..self.clone()
        }
    }

    fn encode(&self) -> Bytes {
        let mut recs = BytesMut::new();
        for r in &self.records {
            encode_record(&mut recs, r);
        }
        recs.put_slice(&self.trailing);
        let body = compress(self.attributes & COMPRESSION, &recs);
        let mut b = BytesMut::new();
        b.put_i64(self.base_offset);
        b.put_i32(0);
        b.put_i32(self.leader_epoch);
        b.put_i8(2);
        b.put_u32(0);
        b.put_i16(self.attributes);
        b.put_i32(self.last_offset_delta);
        b.put_i64(self.first_timestamp);
        b.put_i64(self.max_timestamp);
        b.put_i64(self.producer_id);
        b.put_i16(self.producer_epoch);
        b.put_i32(self.base_sequence);
        b.put_i32(self.records.len() as i32);
        b.put_slice(&body);
        let len = (b.len() - 12) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        with_crc(b.to_vec())
    }
}

/// The batch with its CRC-32C set (KIP-98: it covers the attributes on).
fn with_crc(mut b: Vec<u8>) -> Bytes {
    let crc = crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(b)
}

fn compress(codec: i16, recs: &[u8]) -> BytesMut {
    let mut out = BytesMut::new();
    let write = |b: &mut BytesMut| -> anyhow::Result<()> {
        b.put_slice(recs);
        Ok(())
    };
    match codec {
        0 => out.put_slice(recs),
        1 => <Gzip as Compressor<BytesMut>>::compress(&mut out, write).unwrap(),
        2 => <Snappy as Compressor<BytesMut>>::compress(&mut out, write).unwrap(),
        3 => <Lz4 as Compressor<BytesMut>>::compress(&mut out, write).unwrap(),
        4 => <Zstd as Compressor<BytesMut>>::compress(&mut out, write).unwrap(),
        c => panic!("codec {c}"),
    }
    out
}

fn varint(b: &mut BytesMut, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        b.put_u8(z as u8 | 0x80);
        z >>= 7;
    }
    b.put_u8(z as u8);
}

fn nullable(b: &mut BytesMut, v: &Option<Vec<u8>>) {
    match v {
        Some(v) => {
            varint(b, v.len() as i64);
            b.put_slice(v);
        }
        None => varint(b, -1),
    }
}

fn encode_record(b: &mut BytesMut, r: &Rec) {
    let mut body = BytesMut::new();
    body.put_i8(r.attributes);
    varint(&mut body, r.timestamp_delta);
    varint(&mut body, i64::from(r.offset_delta));
    nullable(&mut body, &r.key);
    nullable(&mut body, &r.value);
    varint(&mut body, r.headers.len() as i64);
    for (k, v) in &r.headers {
        varint(&mut body, k.len() as i64);
        body.put_slice(k.as_bytes());
        nullable(&mut body, v);
    }
    body.put_slice(&r.junk);
    varint(b, body.len() as i64);
    b.put_slice(&body);
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

/// The verdict on `stored` (in the log at 42) for the client's `sent`.
fn judge(stored: &Batch, sent: &Batch) -> Option<bool> {
    same_batch_at(&stored.encode(), &sent.encode(), 42)
}

/// Two records of a heartbeat-like producer: equal keys and values, a header each.
fn two() -> Batch {
    Batch::sent(
        1000,
        vec![
            rec("k", "tick", 0, 0, &[("id", "1"), ("src", "a")]),
            rec("k", "tick", 5, 1, &[("id", "2"), ("src", "a")]),
        ],
    )
}

// ---------------------------------------------------------------------------------------------
// Every field the broker keeps, one at a time

/// One field of a batch changed, as another send could differ from the client's: `false` when
/// it does not apply to this batch. `at` picks the record (modulo their number).
fn mutate(b: &mut Batch, field: Field, at: usize) -> bool {
    let n = b.records.len();
    let i = at % n;
    let r = &mut b.records[i];
    match field {
        Field::ProducerId => b.producer_id = b.producer_id.wrapping_add(1),
        Field::ProducerEpoch => b.producer_epoch = b.producer_epoch.wrapping_add(1),
        Field::BaseSequence => b.base_sequence = b.base_sequence.wrapping_add(1),
        Field::Transactional => b.attributes ^= TRANSACTIONAL,
        // Every record moves with the first timestamp...
        Field::FirstTimestamp => {
            b.first_timestamp += 1;
            b.max_timestamp += 1;
        }
        // ... or none does, their deltas making up for it.
        Field::FirstTimestampOnly => {
            b.first_timestamp -= 1;
            for r in &mut b.records {
                r.timestamp_delta += 1;
            }
        }
        Field::FewerRecords => {
            if n < 2 {
                return false;
            }
            b.records.pop();
            b.last_offset_delta -= 1;
        }
        Field::MoreRecords => {
            let mut extra = b.records[n - 1].clone();
            extra.offset_delta = b.last_offset_delta + 1;
            b.records.push(extra);
            b.last_offset_delta += 1;
        }
        Field::TimestampDelta => r.timestamp_delta += 1,
        Field::OffsetDelta => r.offset_delta += n as i32,
        Field::RecordAttributes => r.attributes = r.attributes.wrapping_add(1),
        Field::Key => r.key = other(&r.key),
        Field::Value => r.value = other(&r.value),
        Field::HeaderValue => match r.headers.first_mut() {
            Some(h) => h.1 = other(&h.1),
            None => return false,
        },
        Field::HeaderKey => match r.headers.first_mut() {
            Some(h) => h.0 = format!("{}~", h.0),
            None => return false,
        },
        Field::HeaderAdded => r.headers.push(("added~".into(), None)),
        Field::HeaderRemoved => {
            if r.headers.pop().is_none() {
                return false;
            }
        }
        Field::HeaderOrder => {
            if r.headers.len() < 2 {
                return false;
            }
            r.headers.swap(0, 1);
        }
    }
    true
}

/// Another value than `v`.
fn other(v: &Option<Vec<u8>>) -> Option<Vec<u8>> {
    match v {
        None => Some(Vec::new()),
        Some(v) => Some([v.as_slice(), b"~"].concat()),
    }
}

#[derive(Debug, Clone, Copy)]
enum Field {
    ProducerId,
    ProducerEpoch,
    BaseSequence,
    Transactional,
    FirstTimestamp,
    FirstTimestampOnly,
    FewerRecords,
    MoreRecords,
    TimestampDelta,
    OffsetDelta,
    RecordAttributes,
    Key,
    Value,
    HeaderValue,
    HeaderKey,
    HeaderAdded,
    HeaderRemoved,
    HeaderOrder,
}

const FIELDS: [Field; 18] = [
    Field::ProducerId,
    Field::ProducerEpoch,
    Field::BaseSequence,
    Field::Transactional,
    Field::FirstTimestamp,
    Field::FirstTimestampOnly,
    Field::FewerRecords,
    Field::MoreRecords,
    Field::TimestampDelta,
    Field::OffsetDelta,
    Field::RecordAttributes,
    Field::Key,
    Field::Value,
    Field::HeaderValue,
    Field::HeaderKey,
    Field::HeaderAdded,
    Field::HeaderRemoved,
    Field::HeaderOrder,
];

#[test]
fn a_batch_differing_in_any_one_kept_field_is_not_ours() {
    let sent = two();
    assert_eq!(Some(true), judge(&sent.stored_at(42), &sent), "unchanged");
    for field in FIELDS {
        for at in 0..2 {
            let mut other = sent.stored_at(42);
            assert!(mutate(&mut other, field, at), "{field:?} applies");
            assert_eq!(
                Some(false),
                judge(&other, &sent),
                "{field:?} of record {at}, stored in place"
            );
            // The broker's own changes do not hide the difference.
            let lat = other.log_append_time(5000);
            assert_eq!(Some(false), judge(&lat, &sent), "{field:?}, LogAppendTime");
            let mut rebuilt = sent.rebuilt(1).stored_at(42);
            assert!(mutate(&mut rebuilt, field, at));
            assert_eq!(
                Some(false),
                judge(&rebuilt, &sent),
                "{field:?}, recompressed"
            );
        }
    }
}

/// The case that filed the issue: a heartbeat sent again, with another timestamp and header.
#[test]
fn equal_keys_and_values_with_another_timestamp_or_header_are_another_batch() {
    let sent = Batch::sent(1000, vec![rec("k", "tick", 0, 0, &[("id", "1")])]);
    let other = Batch::sent(2000, vec![rec("k", "tick", 0, 0, &[("id", "2")])]).stored_at(42);
    assert_eq!(Some(false), judge(&other, &sent));
    assert_eq!(Some(false), judge(&other.log_append_time(3000), &sent));
    assert_eq!(Some(false), judge(&other.rebuilt(4), &sent));
    let same_header = Batch::sent(2000, vec![rec("k", "tick", 0, 0, &[("id", "1")])]);
    assert_eq!(Some(false), judge(&same_header.stored_at(42), &sent));
    let same_time = Batch::sent(1000, vec![rec("k", "tick", 0, 0, &[("id", "2")])]);
    assert_eq!(Some(false), judge(&same_time.stored_at(42), &sent));
}

// ---------------------------------------------------------------------------------------------
// What the broker changes

#[test]
fn the_fields_the_broker_sets_in_place_do_not_matter() {
    let sent = two();
    let mut stored = sent.stored_at(42);
    // CreateTime: setMaxTimestamp(CREATE_TIME, largest record timestamp), whatever the client said.
    stored.max_timestamp = 1;
    assert_eq!(Some(true), judge(&stored, &sent));
    // LogAppendTime, and the unused attribute bits computeAttributes does not keep.
    let mut odd = sent.clone();
    odd.attributes |= 0x0100;
    assert_eq!(
        Some(true),
        judge(&odd.stored_at(42).log_append_time(9999), &odd)
    );
    for codec in 0..=4 {
        let sent = two().compressed(codec);
        assert_eq!(
            Some(true),
            judge(&sent.stored_at(42).log_append_time(9999), &sent),
            "codec {codec}"
        );
    }
}

#[test]
fn a_batch_the_broker_recompressed_is_ours() {
    for from in 0..=4 {
        for to in (0..=4).filter(|c| *c != from) {
            let sent = two().compressed(from);
            let stored = sent.rebuilt(to).stored_at(42);
            assert_eq!(Some(true), judge(&stored, &sent), "{from} -> {to}");
            assert_eq!(
                Some(true),
                judge(&stored.log_append_time(7777), &sent),
                "{from} -> {to}, LogAppendTime"
            );
        }
    }
}

/// Records as a Java client would send them (ascending timestamps: kafka-protocol's encoder
/// takes the smallest as the first timestamp, the broker's rebuild the first record's).
fn records(base_offset: i64, timestamp_type: TimestampType) -> Vec<Record> {
    (0..3)
        .map(|i| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type,
            offset: base_offset + i,
            // The encoder starts a new batch where offset - sequence changes.
            sequence: i as i32 - 1,
            timestamp: 1_700_000_000_000 + i * 3,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"tick")),
            headers: [(
                StrBytes::from_static_str("id"),
                Some(Bytes::from(i.to_string())),
            )]
            .into_iter()
            .collect(),
            delete_horizon: false,
        })
        .collect()
}

fn encoded(records: &[Record], compression: Compression) -> Bytes {
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .unwrap();
    buf.freeze()
}

#[test]
fn batches_encoded_by_kafka_protocol_recompressed_or_log_append_time_are_ours() {
    let sent = encoded(&records(0, TimestampType::Creation), Compression::None);
    for compression in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        for tt in [TimestampType::Creation, TimestampType::LogAppend] {
            let stored = encoded(&records(42, tt), compression);
            assert_eq!(
                Some(true),
                same_batch_at(&stored, &sent, 42),
                "{compression:?} {tt:?}"
            );
            let mut other = records(42, tt);
            other[1].headers.insert(
                StrBytes::from_static_str("id"),
                Some(Bytes::from_static(b"x")),
            );
            assert_eq!(
                Some(false),
                same_batch_at(&encoded(&other, compression), &sent, 42),
                "{compression:?} {tt:?}, another header"
            );
        }
    }
}

/// A client that does not number its records 0..n-1 from the first record's timestamp with
/// attributes 0: stored in place, it is compared as sent; rebuilt, it looks like any other send
/// of the same records.
#[test]
fn an_unusual_batch_rebuilt_by_the_broker_is_undecidable() {
    let mut attrs = two();
    attrs.records[1].attributes = 1;
    let mut order = two();
    order.records[0].offset_delta = 1;
    order.records[1].offset_delta = 0;
    let mut early = two();
    early.first_timestamp -= 100;
    for r in &mut early.records {
        r.timestamp_delta += 100;
    }
    for (name, sent) in [
        ("attributes", attrs),
        ("offsets", order),
        ("first timestamp", early),
    ] {
        assert_eq!(
            Some(true),
            judge(&sent.stored_at(42), &sent),
            "{name}, in place"
        );
        assert_eq!(
            Some(true),
            judge(&sent.stored_at(42).log_append_time(5), &sent),
            "{name}, LogAppendTime"
        );
        assert_eq!(
            None,
            judge(&sent.rebuilt(2).stored_at(42), &sent),
            "{name}, rebuilt"
        );
        let mut other = sent.rebuilt(2).stored_at(42);
        other.records[0].value = Some(b"tock".to_vec());
        assert_eq!(
            Some(false),
            judge(&other, &sent),
            "{name}, rebuilt, another value"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Where the log is, and what cannot be compared

#[test]
fn the_batch_must_start_at_the_offset() {
    let sent = two();
    let stored = sent.stored_at(42).encode();
    assert_eq!(Some(true), same_batch_at(&stored, &sent.encode(), 42));
    assert_eq!(
        Some(false),
        same_batch_at(&stored, &sent.encode(), 43),
        "a batch at 42 covers 43: ours would start there"
    );
    assert_eq!(
        None,
        same_batch_at(&stored, &sent.encode(), 41),
        "nothing covers 41: only compaction leaves a gap"
    );
}

#[test]
fn what_cannot_be_compared_for_certain_is_undecidable() {
    let sent = two();
    let stored = sent.rebuilt(1).stored_at(42);
    assert_eq!(Some(true), judge(&stored, &sent));
    let bytes = stored.encode();
    let cases: Vec<(&str, Bytes, Bytes)> = vec![
        (
            "a partial batch at the end of the fetch",
            bytes.slice(..bytes.len() - 1),
            sent.encode(),
        ),
        ("a header only", bytes.slice(..61), sent.encode()),
        ("two batches sent", bytes.clone(), {
            let mut b = sent.encode().to_vec();
            b.extend_from_slice(&sent.encode());
            Bytes::from(b)
        }),
        ("magic 1", bytes.clone(), {
            let mut b = sent.encode().to_vec();
            b[16] = 1;
            Bytes::from(b)
        }),
        (
            "a bad CRC in the log",
            {
                let mut b = bytes.to_vec();
                let last = b.len() - 1;
                b[last] ^= 1;
                Bytes::from(b)
            },
            sent.encode(),
        ),
        ("a bad CRC sent", bytes.clone(), {
            let mut b = sent.encode().to_vec();
            let last = b.len() - 1;
            b[last] ^= 1;
            Bytes::from(b)
        }),
        ("an unknown codec", bytes.clone(), {
            let mut b = sent.encode().to_vec();
            b[22] |= 5;
            with_crc(b)
        }),
        (
            "the delete-horizon bit (cleaned)",
            {
                let mut b = stored.clone();
                b.attributes |= DELETE_HORIZON;
                b.encode()
            },
            sent.encode(),
        ),
        (
            "records removed (cleaned)",
            {
                let mut b = stored.clone();
                b.records.pop();
                b.encode()
            },
            sent.encode(),
        ),
        ("bytes after a record's last header", bytes.clone(), {
            let mut b = sent.clone();
            b.records[1].junk = vec![0];
            b.encode()
        }),
        ("bytes after the last record", bytes.clone(), {
            let mut b = sent.clone();
            b.trailing = vec![0, 0];
            b.encode()
        }),
        (
            "two headers with one key",
            {
                let mut b = stored.clone();
                b.records[0].headers =
                    vec![("id".into(), None), ("id".into(), Some(b"1".to_vec()))];
                b.encode()
            },
            {
                let mut b = sent.clone();
                b.records[0].headers = vec![
                    ("id".into(), Some(b"0".to_vec())),
                    ("id".into(), Some(b"1".to_vec())),
                ];
                b.encode()
            },
        ),
    ];
    for (name, found, client) in cases {
        assert_eq!(None, same_batch_at(&found, &client, 42), "{name}");
    }
    // Byte for byte the same records (kept fields), duplicate header keys and all: ours.
    let mut dup = sent.clone();
    dup.records[0].headers = vec![("id".into(), None), ("id".into(), None)];
    assert_eq!(
        Some(true),
        judge(&dup.stored_at(42).log_append_time(1), &dup)
    );
}

/// A batch whose header claims a billion records, with a valid CRC: the decoder would
/// reserve room for all of them before reading one (and abort the process when that fails).
#[test]
fn a_batch_claiming_more_records_than_it_holds_is_undecidable_not_fatal() {
    let stored = two().rebuilt(1).stored_at(42).encode();
    for codec in [0, 1, 4] {
        let mut b = two().compressed(codec).encode().to_vec();
        b[57..61].copy_from_slice(&(1i32 << 30).to_be_bytes());
        b[23..27].copy_from_slice(&((1i32 << 30) - 1).to_be_bytes());
        let hostile = with_crc(b);
        assert_eq!(None, same_batch_at(&stored, &hostile, 42), "codec {codec}");
        let mut at42 = hostile.to_vec();
        at42[0..8].copy_from_slice(&42i64.to_be_bytes());
        assert_eq!(
            None,
            same_batch_at(&Bytes::from(at42), &stored, 42),
            "codec {codec}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The property

fn any_rec() -> impl Strategy<Value = Rec> {
    (
        0i64..5_000,
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..4)),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
        proptest::collection::btree_map(
            "[a-d]{1,2}",
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..3)),
            0..4,
        ),
    )
        .prop_map(|(timestamp_delta, key, value, headers)| Rec {
            attributes: 0,
            timestamp_delta,
            offset_delta: 0,
            key,
            value,
            // Distinct keys, in an order of their own.
            headers: headers.into_iter().rev().collect(),
            junk: Vec::new(),
        })
}

/// A batch as the common clients send it (see `Batch::sent`), any codec, producer id or not.
fn any_sent() -> impl Strategy<Value = Batch> {
    (
        0i64..4_000_000_000_000,
        proptest::collection::vec(any_rec(), 1..5),
        0i16..=4,
        prop_oneof![
            Just((-1i64, -1i16, -1i32)),
            (0i64..1000, 0i16..5, 0i32..1000)
        ],
    )
        .prop_map(|(first_timestamp, mut records, codec, (pid, epoch, seq))| {
            records[0].timestamp_delta = 0;
            for (i, r) in records.iter_mut().enumerate() {
                r.offset_delta = i as i32;
            }
            let mut b = Batch::sent(first_timestamp, records).compressed(codec);
            (b.producer_id, b.producer_epoch, b.base_sequence) = (pid, epoch, seq);
            b
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The client's batch, stored by the broker in any way it may store it (in place or
    /// rebuilt with another codec, CreateTime or LogAppendTime), then one kept field changed
    /// or none: ours exactly when none was.
    #[test]
    fn judged_ours_exactly_when_every_kept_field_is_equal(
        sent in any_sent(),
        rebuild_to in proptest::option::of(1i16..=4),
        log_append_time in proptest::option::of(0i64..4_000_000_000_000),
        change in proptest::option::of((0..FIELDS.len(), 0usize..8)),
    ) {
        let mut stored = match rebuild_to {
            Some(k) => sent.rebuilt(((sent.attributes & COMPRESSION) + k) % 5),
            None => sent.clone(),
        }
        .stored_at(42);
        if let Some(now) = log_append_time {
            stored = stored.log_append_time(now);
        }
        let changed = match change {
            Some((f, at)) => {
                prop_assume!(mutate(&mut stored, FIELDS[f], at));
                true
            }
            None => false,
        };
        prop_assert_eq!(Some(!changed), judge(&stored, &sent), "{:?}", change.map(|(f, at)| (FIELDS[f], at)));
    }
}
