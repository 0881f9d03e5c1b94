//! The schemas are held to `kafka-protocol` in both directions: bytes generated from a
//! schema must decode with `kafka-protocol` to the last byte, and `kafka-protocol`'s
//! re-encoding of what it decoded must walk to exactly its length. (A schema that is wrong
//! about a field makes the decoder read garbage counts: the test may then fail by the very
//! abort this module exists to prevent, "memory allocation of N bytes failed".)

use super::schema::{Field, Schema, Ty, SCHEMAS};
use super::*;
use bytes::{Bytes as Buf, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, Message};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Random bytes following a schema, with where each array count was written.
struct Gen {
    out: Vec<u8>,
    rng: StdRng,
    version: i16,
    flexible: bool,
    /// (offset, compact) of every array count.
    counts: Vec<(usize, bool)>,
}

impl Gen {
    fn fields(&mut self, fields: &[Field]) {
        let v = self.version;
        let present = |f: &&Field| f.since <= v && v <= f.until;
        for f in fields.iter().filter(|f| f.tag.is_none()).filter(present) {
            self.value(f.ty);
        }
        if !self.flexible {
            return;
        }
        let known: Vec<&Field> = fields
            .iter()
            .filter(|f| f.tag.is_some())
            .filter(present)
            .filter(|_| self.rng.random_bool(0.5))
            .collect();
        let unknown = self.rng.random_bool(0.3);
        self.uvarint(known.len() as u32 + u32::from(unknown));
        for f in known {
            self.uvarint(f.tag.unwrap());
            let start = self.out.len();
            self.value(f.ty);
            let content = self.out.split_off(start);
            let before = self.out.len();
            self.uvarint(content.len() as u32);
            let shift = self.out.len() - before;
            for (at, _) in self.counts.iter_mut().filter(|(at, _)| *at >= start) {
                *at += shift;
            }
            self.out.extend(content);
        }
        if unknown {
            // Tags no schema knows.
            let tag = self.rng.random_range(50..60);
            self.uvarint(tag);
            let n = self.rng.random_range(0..8);
            self.uvarint(n);
            self.random(n as usize);
        }
    }

    fn value(&mut self, ty: Ty) {
        match ty {
            // Booleans and INT8 enums: 0 or 1 re-encode to themselves.
            Ty::Fixed(1) => {
                let b = self.rng.random_range(0..2);
                self.out.push(b)
            }
            Ty::Fixed(n) => self.random(n),
            Ty::Str => self.string(),
            Ty::Bytes => {
                let n = self.rng.random_range(0..20);
                self.length(n, true);
                self.random(n);
            }
            Ty::Struct(fields) => self.fields(fields),
            Ty::NullableStruct(fields) => {
                // Present (1), or null: -1 as kafka-protocol writes it, or any other marker,
                // which it reads as null too.
                if self.rng.random_bool(0.6) {
                    self.out.push(1);
                    self.fields(fields);
                } else {
                    let marker = [0xff, 0x00, 0x02, 0x80][self.rng.random_range(0..4)];
                    self.out.push(marker);
                }
            }
            Ty::Structs(fields) => {
                let n = self.count();
                for _ in 0..n {
                    self.fields(fields);
                }
            }
            Ty::Fixeds(width) => {
                let n = self.count();
                self.random(n * width);
            }
            Ty::Strs => {
                let n = self.count();
                for _ in 0..n {
                    self.string();
                }
            }
        }
    }

    fn count(&mut self) -> usize {
        let n = self.rng.random_range(0..4);
        self.counts.push((self.out.len(), self.flexible));
        self.length(n, true);
        n
    }

    fn string(&mut self) {
        let n = self.rng.random_range(0..6);
        self.length(n, false);
        for _ in 0..n {
            let c = self.rng.random_range(b'a'..=b'z');
            self.out.push(c);
        }
    }

    fn length(&mut self, n: usize, wide: bool) {
        if self.flexible {
            self.uvarint(n as u32 + 1);
        } else if wide {
            self.out.extend((n as i32).to_be_bytes());
        } else {
            self.out.extend((n as i16).to_be_bytes());
        }
    }

    fn uvarint(&mut self, mut v: u32) {
        while v >= 0x80 {
            self.out.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.out.push(v as u8);
    }

    fn random(&mut self, n: usize) {
        for _ in 0..n {
            let b = self.rng.random();
            self.out.push(b);
        }
    }
}

fn generate(s: &Schema, version: i16, seed: u64) -> (Vec<u8>, Vec<(usize, bool)>) {
    let mut g = Gen {
        out: Vec::new(),
        rng: StdRng::seed_from_u64(seed),
        version,
        flexible: version >= s.flexible,
        counts: Vec::new(),
    };
    g.fields(s.root);
    (g.out, g.counts)
}

/// What `kafka-protocol` makes of a body: decoded to the last byte and encoded again.
fn reencode<T: Decodable + Encodable>(body: &[u8], version: i16) -> Result<Vec<u8>, String> {
    let mut b = Buf::copy_from_slice(body);
    let m = T::decode(&mut b, version).map_err(|e| format!("decode: {e:#}"))?;
    if !b.is_empty() {
        return Err(format!("{} bytes left after decode", b.len()));
    }
    let mut out = BytesMut::new();
    m.encode(&mut out, version)
        .map_err(|e| format!("encode: {e:#}"))?;
    Ok(out.to_vec())
}

fn default_encoded<T: Encodable + Default>(version: i16) -> Vec<u8> {
    let mut out = BytesMut::new();
    T::default().encode(&mut out, version).unwrap();
    out.to_vec()
}

/// Runs `$body` with `T` bound to the kafka-protocol type of a schema. A message not listed
/// here panics, or runs `$unlisted` when given (`else |other| ...`).
macro_rules! with_type {
    ($api:expr, $dir:expr, |$t:ident| $body:expr) => {
        with_type!($api, $dir, |$t| $body, else |other| panic!(
            "no kafka-protocol type listed for {other:?}"
        ))
    };
    ($api:expr, $dir:expr, |$t:ident| $body:expr, else |$other:ident| $unlisted:expr) => {{
        use Direction::{Request as Q, Response as R};
        match ($api, $dir) {
            (ApiKey::Produce, Q) => {
                type $t = ProduceRequest;
                $body
            }
            (ApiKey::Fetch, Q) => {
                type $t = FetchRequest;
                $body
            }
            (ApiKey::ListOffsets, Q) => {
                type $t = ListOffsetsRequest;
                $body
            }
            (ApiKey::OffsetForLeaderEpoch, Q) => {
                type $t = OffsetForLeaderEpochRequest;
                $body
            }
            (ApiKey::DeleteRecords, Q) => {
                type $t = DeleteRecordsRequest;
                $body
            }
            (ApiKey::Produce, R) => {
                type $t = ProduceResponse;
                $body
            }
            (ApiKey::Fetch, R) => {
                type $t = FetchResponse;
                $body
            }
            (ApiKey::ListOffsets, R) => {
                type $t = ListOffsetsResponse;
                $body
            }
            (ApiKey::OffsetForLeaderEpoch, R) => {
                type $t = OffsetForLeaderEpochResponse;
                $body
            }
            (ApiKey::DeleteRecords, R) => {
                type $t = DeleteRecordsResponse;
                $body
            }
            (ApiKey::Metadata, R) => {
                type $t = MetadataResponse;
                $body
            }
            (ApiKey::FindCoordinator, R) => {
                type $t = FindCoordinatorResponse;
                $body
            }
            (ApiKey::DescribeCluster, R) => {
                type $t = DescribeClusterResponse;
                $body
            }
            (ApiKey::ApiVersions, R) => {
                type $t = ApiVersionsResponse;
                $body
            }
            (ApiKey::ShareFetch, R) => {
                type $t = ShareFetchResponse;
                $body
            }
            (ApiKey::ShareAcknowledge, R) => {
                type $t = ShareAcknowledgeResponse;
                $body
            }
            (ApiKey::SaslHandshake, R) => {
                type $t = SaslHandshakeResponse;
                $body
            }
            (ApiKey::FindCoordinator, Q) => {
                type $t = FindCoordinatorRequest;
                $body
            }
            (ApiKey::JoinGroup, Q) => {
                type $t = JoinGroupRequest;
                $body
            }
            (ApiKey::JoinGroup, R) => {
                type $t = JoinGroupResponse;
                $body
            }
            (ApiKey::SyncGroup, Q) => {
                type $t = SyncGroupRequest;
                $body
            }
            (ApiKey::SyncGroup, R) => {
                type $t = SyncGroupResponse;
                $body
            }
            (ApiKey::Heartbeat, Q) => {
                type $t = HeartbeatRequest;
                $body
            }
            (ApiKey::Heartbeat, R) => {
                type $t = HeartbeatResponse;
                $body
            }
            (ApiKey::LeaveGroup, Q) => {
                type $t = LeaveGroupRequest;
                $body
            }
            (ApiKey::LeaveGroup, R) => {
                type $t = LeaveGroupResponse;
                $body
            }
            (ApiKey::OffsetCommit, Q) => {
                type $t = OffsetCommitRequest;
                $body
            }
            (ApiKey::OffsetCommit, R) => {
                type $t = OffsetCommitResponse;
                $body
            }
            (ApiKey::OffsetFetch, Q) => {
                type $t = OffsetFetchRequest;
                $body
            }
            (ApiKey::OffsetFetch, R) => {
                type $t = OffsetFetchResponse;
                $body
            }
            (ApiKey::ConsumerGroupHeartbeat, Q) => {
                type $t = ConsumerGroupHeartbeatRequest;
                $body
            }
            (ApiKey::ConsumerGroupHeartbeat, R) => {
                type $t = ConsumerGroupHeartbeatResponse;
                $body
            }
            (ApiKey::TxnOffsetCommit, Q) => {
                type $t = TxnOffsetCommitRequest;
                $body
            }
            (ApiKey::TxnOffsetCommit, R) => {
                type $t = TxnOffsetCommitResponse;
                $body
            }
            (ApiKey::InitProducerId, Q) => {
                type $t = InitProducerIdRequest;
                $body
            }
            (ApiKey::InitProducerId, R) => {
                type $t = InitProducerIdResponse;
                $body
            }
            (ApiKey::AddPartitionsToTxn, Q) => {
                type $t = AddPartitionsToTxnRequest;
                $body
            }
            (ApiKey::AddPartitionsToTxn, R) => {
                type $t = AddPartitionsToTxnResponse;
                $body
            }
            (ApiKey::AddOffsetsToTxn, Q) => {
                type $t = AddOffsetsToTxnRequest;
                $body
            }
            (ApiKey::AddOffsetsToTxn, R) => {
                type $t = AddOffsetsToTxnResponse;
                $body
            }
            (ApiKey::EndTxn, Q) => {
                type $t = EndTxnRequest;
                $body
            }
            (ApiKey::EndTxn, R) => {
                type $t = EndTxnResponse;
                $body
            }
            (ApiKey::ShareGroupHeartbeat, Q) => {
                type $t = ShareGroupHeartbeatRequest;
                $body
            }
            (ApiKey::ShareGroupHeartbeat, R) => {
                type $t = ShareGroupHeartbeatResponse;
                $body
            }
            $other => $unlisted,
        }
    }};
}

/// Every message listed in `with_type!` has exactly one schema, and every schema a listed
/// type, over exactly the versions that type decodes (its `Message::VERSIONS`, which is what its
/// `decode()` accepts; `ApiKey::valid_versions()` can be wider than one direction: OffsetCommit
/// and OffsetFetch requests decode up to v9, InitProducerId requests up to v5).
#[test]
fn schemas_cover_exactly_the_versions_kafka_protocol_decodes() {
    let mut listed = 0;
    for api in ApiKey::iter() {
        for dir in [Direction::Request, Direction::Response] {
            let crate_range = with_type!(api, dir, |T| Some((
                <T as Message>::VERSIONS.min,
                <T as Message>::VERSIONS.max
            )), else |_unlisted| None);
            let schema = SCHEMAS
                .iter()
                .find(|s| s.api == api && s.dir == dir)
                .map(|s| (s.min, s.max));
            assert_eq!(
                schema, crate_range,
                "{api:?} {dir:?}: update the schema (or with_type!)"
            );
            listed += usize::from(crate_range.is_some());
        }
    }
    assert_eq!(listed, SCHEMAS.len(), "a message with two schemas");
}

#[test]
fn default_messages_walk_to_their_length_at_every_version() {
    for s in SCHEMAS {
        for v in s.min..=s.max {
            let body = with_type!(s.api, s.dir, |T| default_encoded::<T>(v));
            assert_eq!(
                walk(&body, s.api, v, s.dir),
                Ok(Some(body.len())),
                "{:?} {:?} v{v}",
                s.api,
                s.dir
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Schema-generated bytes are what kafka-protocol reads, to the byte; its own encoding
    /// of the result walks to exactly its length.
    #[test]
    fn schemas_agree_with_kafka_protocol(seed in any::<u64>()) {
        for s in SCHEMAS {
            for v in s.min..=s.max {
                let (body, _) = generate(s, v, seed);
                let ctx = format!("{:?} {:?} v{v} seed {seed}", s.api, s.dir);
                prop_assert_eq!(walk(&body, s.api, v, s.dir), Ok(Some(body.len())), "{}", ctx);
                let again = with_type!(s.api, s.dir, |T| reencode::<T>(&body, v));
                let again = again.map_err(|e| TestCaseError::fail(format!("{ctx}: {e}")))?;
                prop_assert_eq!(walk(&again, s.api, v, s.dir), Ok(Some(again.len())), "{} (re-encoded)", ctx);
            }
        }
    }

    /// Any array count raised past what the bytes can hold is refused.
    #[test]
    fn a_huge_array_count_is_refused(seed in any::<u64>()) {
        for s in SCHEMAS {
            for v in s.min..=s.max {
                let (body, counts) = generate(s, v, seed);
                for (at, compact) in counts {
                    let mut bad = body[..at].to_vec();
                    if compact {
                        // The largest count a 5-byte varint holds, in place of the old one.
                        bad.extend([0xff, 0xff, 0xff, 0xff, 0x0f]);
                        let mut old = Walker::new(&body, v, true);
                        old.at = at;
                        old.uvarint("count").unwrap();
                        bad.extend(&body[old.at..]);
                    } else {
                        bad.extend(i32::MAX.to_be_bytes());
                        bad.extend(&body[at + 4..]);
                    }
                    let got = walk(&bad, s.api, v, s.dir);
                    prop_assert!(
                        matches!(got, Err(Implausible::Length { .. })),
                        "{:?} {:?} v{} count at {}: {:?}", s.api, s.dir, v, at, got
                    );
                }
            }
        }
    }
}

/// Found by fuzzing (`fuzz/regressions/response_merge/tag-past-i32-max`): kafka-protocol
/// decodes a tagged field numbered above i32::MAX, then encodes a count that includes it
/// without writing it. Such a frame is refused, so fairlead never re-encodes it.
#[test]
fn a_tag_past_i32_max_is_refused() {
    // ProduceResponse v11: no topics, throttle 0, one unknown tagged field 2^32 - 1, empty.
    let mut body = vec![0x01, 0, 0, 0, 0, 0x01];
    body.extend([0xff, 0xff, 0xff, 0xff, 0x0f, 0x00]);
    assert!(matches!(
        check(&body, ApiKey::Produce, 11, Direction::Response),
        Err(Implausible::Tag { tag: u32::MAX, .. })
    ));
    body[6..11].copy_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x07]);
    assert_eq!(
        check(&body, ApiKey::Produce, 11, Direction::Response),
        Ok(())
    );
}

#[test]
fn apis_without_a_schema_pass_and_unknown_versions_do_not() {
    assert_eq!(
        walk(&[1, 2, 3], ApiKey::CreateTopics, 4, Direction::Response),
        Ok(None)
    );
    assert!(check(&[], ApiKey::Fetch, 4, Direction::Request).is_err());
    assert_eq!(
        check(&[], ApiKey::Produce, 99, Direction::Request),
        Err(Implausible::UnknownVersion {
            api: ApiKey::Produce,
            dir: Direction::Request,
            version: 99
        })
    );
}

fn batch(compression: kafka_protocol::records::Compression) -> Vec<u8> {
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let records: Vec<Record> = (0..3)
        .map(|i| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i,
            sequence: -1,
            timestamp: 1000 + i,
            key: Some(Buf::from_static(b"k")),
            value: Some(Buf::from(vec![b'v'; i as usize])),
            headers: [(StrBytes::from_static_str("h"), Some(Buf::from_static(b"x")))]
                .into_iter()
                .collect(),
            delete_horizon: false,
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .unwrap();
    buf.to_vec()
}

use kafka_protocol::protocol::StrBytes;

/// The check alone, without the shapes.
fn records(data: &[u8], header: &BatchHeader) -> Result<(), Implausible> {
    record_shapes(data, header).map(|_| ())
}

#[test]
fn record_shapes_are_what_the_decoder_drops() {
    let at0 = |count| BatchHeader {
        count,
        base_offset: 0,
        first_timestamp: 0,
    };
    // attributes 5, deltas 0, null key and value, 2 headers ("a" = null, "a" = ""), 1 byte more;
    // then attributes 0, no headers; then 2 bytes after the last record.
    let one = [5u8, 0, 0, 1, 1, 4, 2, b'a', 1, 2, b'a', 0, 9];
    let two = [0u8, 0, 2, 1, 1, 0];
    let mut data = vec![(one.len() as u8) << 1];
    data.extend(one);
    data.push((two.len() as u8) << 1);
    data.extend(two);
    data.extend([7, 7]);
    let (shapes, after) = record_shapes(&data, &at0(2)).unwrap();
    assert_eq!(
        shapes,
        vec![
            RecordShape {
                attributes: 5,
                headers: 2,
                unread: 1
            },
            RecordShape {
                attributes: 0,
                headers: 0,
                unread: 0
            }
        ]
    );
    assert_eq!(after, 2);
    assert_eq!(record_shapes(&data, &at0(-1)), Ok((vec![], data.len())));
}

#[test]
fn record_batches_are_checked_before_the_decoder_reserves_room() {
    use kafka_protocol::compression::{Decompressor, Gzip};
    use kafka_protocol::records::Compression;

    let plain = batch(Compression::None);
    assert_eq!(record_batch(&plain), Ok(()));
    let mut bad = plain.clone();
    bad[57..61].copy_from_slice(&(1i32 << 30).to_be_bytes());
    assert!(matches!(
        record_batch(&bad),
        Err(Implausible::Length {
            field: "record count",
            ..
        })
    ));
    let mut bad = plain.clone();
    bad[8..12].copy_from_slice(&(-1i32).to_be_bytes());
    assert!(matches!(
        record_batch(&bad),
        Err(Implausible::Length {
            field: "batch length",
            ..
        })
    ));

    // Compressed: the header alone passes; the records are judged once decompressed.
    let gzip = batch(Compression::Gzip);
    assert_eq!(record_batch(&gzip), Ok(()));
    // (The encoder may cut the records into several batches: the first one is checked.)
    let end = 12 + i32::from_be_bytes(gzip[8..12].try_into().unwrap()) as usize;
    let mut compressed = Buf::copy_from_slice(&gzip[61..end]);
    let out: Buf =
        <Gzip as Decompressor<Buf>>::decompress(&mut compressed, |o| Ok(o.clone())).unwrap();
    let header = BatchHeader::of(&gzip);
    assert_eq!(records(&out, &header), Ok(()));
    let claiming = BatchHeader {
        count: 1 << 20,
        ..header
    };
    assert!(records(&out, &claiming).is_err());

    // One record, null key and value, claiming 2^30 headers (zigzag varints).
    let mut rec = vec![0u8, 0, 0, 1, 1];
    let mut zigzag: u32 = (1u32 << 30) << 1;
    while zigzag >= 0x80 {
        rec.push(zigzag as u8 | 0x80);
        zigzag >>= 7;
    }
    rec.push(zigzag as u8);
    let mut data = vec![(rec.len() as u8) << 1];
    data.extend(rec);
    let one = BatchHeader {
        count: 1,
        base_offset: 0,
        first_timestamp: 0,
    };
    assert!(matches!(
        records(&data, &one),
        Err(Implausible::Length {
            field: "record headers",
            ..
        })
    ));
}

/// The decoder computes `base offset + offset delta` and `first timestamp + timestamp delta`
/// unchecked: a batch whose deltas overflow is refused before it gets there.
#[test]
fn record_deltas_that_overflow_the_batch_base_are_refused() {
    // One record, null key and value, no headers: timestamp delta 1, offset delta 1.
    let data = [6u8 << 1, 0, 2, 2, 1, 1, 0];
    let at = |base_offset, first_timestamp| BatchHeader {
        count: 1,
        base_offset,
        first_timestamp,
    };
    assert_eq!(records(&data, &at(0, 0)), Ok(()));
    assert_eq!(records(&data, &at(i64::MAX - 1, i64::MAX - 1)), Ok(()));
    assert_eq!(
        records(&data, &at(0, i64::MAX)),
        Err(Implausible::Overflow {
            field: "timestamp delta",
            at: 2
        })
    );
    assert_eq!(
        records(&data, &at(i64::MAX, 0)),
        Err(Implausible::Overflow {
            field: "offset delta",
            at: 3
        })
    );
    // Negative deltas overflow the other way.
    let data = [6u8 << 1, 0, 1, 1, 1, 1, 0];
    assert!(records(&data, &at(i64::MIN, 0)).is_err());
    assert!(records(&data, &at(0, i64::MIN)).is_err());
    assert_eq!(records(&data, &at(0, 0)), Ok(()));
}
