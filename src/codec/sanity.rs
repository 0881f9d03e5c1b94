//! A cheap structural pre-check of message bodies, run before `kafka-protocol` decodes them.
//!
//! Why: `kafka-protocol` reads an array's element count from the wire and calls
//! `Vec::with_capacity(count)` before reading a single element (`protocol/types.rs`, `Array` and
//! `CompactArray`). A 40-byte frame that claims 2^31 partitions makes the process ask for
//! hundreds of gigabytes: the allocation fails and Rust aborts the whole process. That is not a
//! panic, so the `catch_unwind` in `codec::message::decode_body` cannot contain it. fairlead
//! decodes client requests (the partition-routed APIs) and broker responses, so one hostile or
//! corrupt frame would take down every client's connection.
//!
//! How: [`check`] walks the body along the message's schema, field by field, without allocating:
//! every string, bytes and array length must fit in the bytes that are left (an array element
//! takes at least one byte), every array's elements are walked, and a known tagged field is
//! walked where `kafka-protocol` reads it (in place, whatever its declared size). A body that
//! passes is one whose every length the decoder will meet is backed by real bytes, so decoding it
//! allocates in proportion to the frame, never to a number an attacker wrote. The walk accepts
//! everything the decoder accepts, with one exception: a tagged field numbered above i32::MAX,
//! which kafka-protocol decodes but then re-encodes into a broken frame (found by fuzzing), so
//! it never turns a frame fairlead could read and re-encode into one it cannot.
//!
//! The schemas below cover every message fairlead decodes: the routed requests (Produce, Fetch,
//! ListOffsets, OffsetForLeaderEpoch, DeleteRecords), their responses, and the responses fairlead
//! rewrites or asks for itself (Metadata, FindCoordinator, DescribeCluster, ApiVersions,
//! ShareFetch, ShareAcknowledge, SaslHandshake), at every version `kafka-protocol` 0.18 decodes.
//! They follow Apache Kafka's message definitions as `kafka-protocol` 0.18 implements them
//! (`src/messages/*.rs`); the tests below hold them to it: bytes generated from a schema must
//! decode with `kafka-protocol` to the last byte, its re-encoding must walk to exactly its
//! length, at every version, and the schema version ranges must equal the crate's, so upgrading
//! the crate fails a test until the tables are updated.
//!
//! Record batches have the same hazard one level down (`RecordBatchDecoder` reserves room for a
//! batch's record count and each record's header count): [`record_batch`] and [`records`] check
//! them for the one place fairlead decodes records, `router::written`.

use kafka_protocol::messages::ApiKey;

/// Which way a message goes: the same API key has a request and a response schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Request,
    Response,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Implausible {
    #[error("{field}: length {claimed} at byte {at} exceeds the {left} bytes left")]
    Length {
        field: &'static str,
        at: usize,
        claimed: u64,
        left: usize,
    },
    #[error("{field}: negative length {len} at byte {at}")]
    NegativeLength {
        field: &'static str,
        at: usize,
        len: i32,
    },
    #[error("{field}: the body ends inside it (byte {at})")]
    Truncated { field: &'static str, at: usize },
    #[error("{field}: tag {tag} at byte {at} is past i32::MAX")]
    Tag {
        field: &'static str,
        at: usize,
        tag: u32,
    },
    #[error("{field} at byte {at}: added to the batch's base it overflows an i64")]
    Overflow { field: &'static str, at: usize },
    #[error("{api:?} {dir:?} v{version}: not a version fairlead decodes")]
    UnknownVersion {
        api: ApiKey,
        dir: Direction,
        version: i16,
    },
}

/// Checks that every length in a message body is backed by bytes. `body` starts after the
/// header. Messages without a schema here (fairlead never decodes them) pass.
pub fn check(body: &[u8], api: ApiKey, version: i16, dir: Direction) -> Result<(), Implausible> {
    walk(body, api, version, dir).map(|_| ())
}

/// Walks a body: `Some(n)` when the message's structure fits and covers the first `n` bytes
/// (a body the decoder accepts has `n == body.len()`), `None` when there is no schema for it.
pub fn walk(
    body: &[u8],
    api: ApiKey,
    version: i16,
    dir: Direction,
) -> Result<Option<usize>, Implausible> {
    let Some(schema) = SCHEMAS.iter().find(|s| s.api == api && s.dir == dir) else {
        return Ok(None);
    };
    if version < schema.min || version > schema.max {
        return Err(Implausible::UnknownVersion { api, dir, version });
    }
    let mut w = Walker {
        b: body,
        at: 0,
        version,
        flexible: version >= schema.flexible,
    };
    w.fields(schema.root)?;
    Ok(Some(w.at))
}

struct Walker<'a> {
    b: &'a [u8],
    at: usize,
    version: i16,
    /// Flexible versions (KIP-482): compact lengths (unsigned varint N+1, 0 = null) and a tagged
    /// field section at the end of every struct.
    flexible: bool,
}

impl Walker<'_> {
    fn left(&self) -> usize {
        self.b.len() - self.at
    }

    fn fields(&mut self, fields: &[Field]) -> Result<(), Implausible> {
        let v = self.version;
        for f in fields.iter().filter(|f| f.tag.is_none() && f.in_version(v)) {
            self.value(f.ty, f.name)?;
        }
        if self.flexible {
            self.tagged(fields)?;
        }
        Ok(())
    }

    fn value(&mut self, ty: Ty, field: &'static str) -> Result<(), Implausible> {
        match ty {
            Ty::Fixed(n) => self.fixed(n, field),
            Ty::Str => {
                let n = self.length(field, false)?;
                self.skip(n, field)
            }
            Ty::Bytes => {
                let n = self.length(field, true)?;
                self.skip(n, field)
            }
            Ty::Struct(fields) => self.fields(fields),
            Ty::Structs(fields) => {
                let n = self.count(field, 1)?;
                for _ in 0..n {
                    self.fields(fields)?;
                }
                Ok(())
            }
            Ty::Strs => {
                // A string takes at least its length: 1 byte compact, 2 otherwise.
                let n = self.count(field, if self.flexible { 1 } else { 2 })?;
                for _ in 0..n {
                    let len = self.length(field, false)?;
                    self.skip(len, field)?;
                }
                Ok(())
            }
            Ty::Fixeds(width) => {
                let n = self.count(field, width)?;
                self.skip(n * width, field)
            }
        }
    }

    /// The tagged field section: known tags are read in place, as `kafka-protocol` does (it
    /// decodes them from the stream and ignores their declared size); unknown ones are skipped.
    fn tagged(&mut self, fields: &[Field]) -> Result<(), Implausible> {
        const FIELD: &str = "tagged fields";
        let at = self.at;
        let n = self.uvarint(FIELD)? as usize;
        // Each tagged field takes at least two bytes (tag and size).
        if n > self.left() / 2 {
            return Err(self.too_long(FIELD, at, n as u64));
        }
        for _ in 0..n {
            let at = self.at;
            let tag = self.uvarint(FIELD)?;
            if tag > i32::MAX as u32 {
                // kafka-protocol keeps unknown tags as i32 and then cannot encode them again
                // (the count it writes includes a field it leaves out): a frame fairlead would
                // re-encode must not carry one.
                return Err(Implausible::Tag {
                    field: FIELD,
                    at,
                    tag,
                });
            }
            let size = self.uvarint(FIELD)? as usize;
            match fields
                .iter()
                .find(|f| f.tag == Some(tag) && f.in_version(self.version))
            {
                Some(f) => self.value(f.ty, f.name)?,
                None => self.skip(size, FIELD)?,
            }
        }
        Ok(())
    }

    /// An array's element count, each element taking at least `min` bytes; 0 for null.
    fn count(&mut self, field: &'static str, min: usize) -> Result<usize, Implausible> {
        let at = self.at;
        let n = self.length(field, true)?;
        if n > self.left() / min {
            return Err(self.too_long(field, at, n as u64));
        }
        Ok(n)
    }

    /// A length prefix: compact in flexible versions (N+1, 0 = null), else INT16 for strings
    /// and INT32 for bytes and arrays (-1 = null). Null reads as 0: the walk only cares about
    /// how far to go.
    fn length(&mut self, field: &'static str, wide: bool) -> Result<usize, Implausible> {
        let at = self.at;
        let n: i64 = if self.flexible {
            i64::from(self.uvarint(field)?) - 1
        } else if wide {
            i64::from(i32::from_be_bytes(self.array(field)?))
        } else {
            i64::from(i16::from_be_bytes(self.array(field)?))
        };
        match n {
            -1 => Ok(0),
            n if n < -1 => Err(Implausible::NegativeLength {
                field,
                at,
                len: n as i32,
            }),
            n => Ok(n as usize),
        }
    }

    /// An unsigned varint read exactly as `kafka-protocol` reads it: at most five bytes, the
    /// bits beyond 32 dropped.
    fn uvarint(&mut self, field: &'static str) -> Result<u32, Implausible> {
        let mut value: u32 = 0;
        for i in 0..5 {
            let [b] = self.array::<1>(field)?;
            value |= u32::from(b & 0x7f) << (i * 7);
            if b < 0x80 {
                break;
            }
        }
        Ok(value)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], Implausible> {
        let bytes = self
            .b
            .get(self.at..self.at + N)
            .ok_or(Implausible::Truncated { field, at: self.at })?;
        self.at += N;
        Ok(bytes.try_into().expect("N bytes"))
    }

    fn fixed(&mut self, n: usize, field: &'static str) -> Result<(), Implausible> {
        if n > self.left() {
            return Err(Implausible::Truncated { field, at: self.at });
        }
        self.at += n;
        Ok(())
    }

    fn skip(&mut self, n: usize, field: &'static str) -> Result<(), Implausible> {
        if n > self.left() {
            return Err(self.too_long(field, self.at, n as u64));
        }
        self.at += n;
        Ok(())
    }

    fn too_long(&self, field: &'static str, at: usize, claimed: u64) -> Implausible {
        Implausible::Length {
            field,
            at,
            claimed,
            left: self.left(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Record batches
// ---------------------------------------------------------------------------------------------

/// Batch header (magic 2, KIP-98): base offset 8, batch length 4, leader epoch 4, magic 1,
/// crc 4, attributes 2, last offset delta 4, first and max timestamp 8 + 8, producer id 8,
/// producer epoch 2, base sequence 4, record count 4.
const BATCH_HEADER: usize = 61;
const BATCH_LENGTH_AT: usize = 8;
const MAGIC_AT: usize = 16;
const RECORD_COUNT_AT: usize = 57;
const FIRST_TIMESTAMP_AT: usize = 27;
/// The smallest record: length, attributes, timestamp delta, offset delta, key length, value
/// length and header count, one byte each.
const MIN_RECORD: usize = 7;

/// Checks the first record batch of `records` before `kafka-protocol`'s `RecordBatchDecoder`
/// reads it: the decoder reserves room for the batch's record count, and for each record's
/// header count, before reading a single record. A batch of an uncompressed producer is walked
/// record by record; a compressed one can only be judged once decompressed: pass the
/// decompressed bytes to [`records`] (`RecordBatchDecoder::decode_with_custom_compression`
/// lets the caller do that). Other magics pass: the decoder refuses them without allocating.
pub fn record_batch(records: &[u8]) -> Result<(), Implausible> {
    let field = "record batch";
    if records.len() < BATCH_HEADER {
        return Err(Implausible::Truncated {
            field,
            at: records.len(),
        });
    }
    if records[MAGIC_AT] != 2 {
        return Ok(());
    }
    let len = i32::from_be_bytes(
        records[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4]
            .try_into()
            .expect("4"),
    );
    let end = usize::try_from(len).ok().and_then(|l| l.checked_add(12));
    match end {
        Some(end) if end >= BATCH_HEADER && end <= records.len() => {
            let attributes = i16::from_be_bytes([records[21], records[22]]);
            if attributes & 0x07 == 0 {
                records_after_header(&records[BATCH_HEADER..end], &BatchHeader::of(records))
            } else {
                Ok(())
            }
        }
        _ => Err(Implausible::Length {
            field: "batch length",
            at: BATCH_LENGTH_AT,
            claimed: len as u64,
            left: records.len().saturating_sub(12),
        }),
    }
}

/// What a batch's records are read against: the decoder adds each record's offset delta to the
/// base offset and its timestamp delta to the first timestamp.
#[derive(Debug, Clone, Copy)]
pub struct BatchHeader {
    pub count: i32,
    pub base_offset: i64,
    pub first_timestamp: i64,
}

impl BatchHeader {
    /// Reads a batch header (`batch` holds at least [`BATCH_HEADER`] bytes).
    pub fn of(batch: &[u8]) -> BatchHeader {
        let i64_at = |at: usize| i64::from_be_bytes(batch[at..at + 8].try_into().expect("8"));
        BatchHeader {
            count: i32::from_be_bytes(
                batch[RECORD_COUNT_AT..RECORD_COUNT_AT + 4]
                    .try_into()
                    .expect("4"),
            ),
            base_offset: i64_at(0),
            first_timestamp: i64_at(FIRST_TIMESTAMP_AT),
        }
    }
}

/// Checks the records in `data`, the (decompressed) record bytes of a batch with `header`: every
/// record length, key, value and header count must be backed by bytes, and every offset and
/// timestamp delta must fit when added to the batch's base (the decoder adds them unchecked,
/// which panics in a build with overflow checks).
pub fn records(data: &[u8], header: &BatchHeader) -> Result<(), Implausible> {
    records_after_header(data, header)
}

fn records_after_header(data: &[u8], header: &BatchHeader) -> Result<(), Implausible> {
    let mut w = Walker {
        b: data,
        at: 0,
        version: 0,
        flexible: false,
    };
    // A negative count: the decoder refuses it before reserving anything.
    let Ok(count) = usize::try_from(header.count) else {
        return Ok(());
    };
    if count > data.len() / MIN_RECORD {
        return Err(w.too_long("record count", 0, count as u64));
    }
    for _ in 0..count {
        let size = w.varint_len("record length")?;
        let at = w.at;
        w.skip(size, "record length")?;
        let mut r = Walker {
            b: &data[at..at + size],
            at: 0,
            version: 0,
            flexible: false,
        };
        r.fixed(1, "record attributes")?;
        let delta_at = at + r.at;
        let delta = r.varlong("timestamp delta")?;
        if header.first_timestamp.checked_add(delta).is_none() {
            return Err(Implausible::Overflow {
                field: "timestamp delta",
                at: delta_at,
            });
        }
        let delta_at = at + r.at;
        let delta = r.varint("offset delta")?;
        if header.base_offset.checked_add(i64::from(delta)).is_none() {
            return Err(Implausible::Overflow {
                field: "offset delta",
                at: delta_at,
            });
        }
        for field in ["record key", "record value"] {
            let n = r.varint_len(field)?;
            r.skip(n, field)?;
        }
        let headers_at = r.at;
        let headers = r.varint_len("record headers")?;
        // A header takes at least two bytes: key length and value length.
        if headers > r.left() / 2 {
            return Err(r.too_long("record headers", headers_at, headers as u64));
        }
        for _ in 0..headers {
            for field in ["header key", "header value"] {
                let n = r.varint_len(field)?;
                r.skip(n, field)?;
            }
        }
    }
    Ok(())
}

impl Walker<'_> {
    /// A zigzag varint length as the record decoder reads it: -1 (null) reads as 0.
    fn varint_len(&mut self, field: &'static str) -> Result<usize, Implausible> {
        let at = self.at;
        match self.varint(field)? {
            -1 => Ok(0),
            n if n < -1 => Err(Implausible::NegativeLength { field, at, len: n }),
            n => Ok(n as usize),
        }
    }

    /// A zigzag varint, read exactly as the record decoder reads it (at most 5 bytes).
    fn varint(&mut self, field: &'static str) -> Result<i32, Implausible> {
        let zigzag = self.uvarint(field)?;
        Ok(((zigzag >> 1) as i32) ^ -((zigzag & 1) as i32))
    }

    /// A zigzag varlong, read exactly as the record decoder reads it (at most 10 bytes).
    fn varlong(&mut self, field: &'static str) -> Result<i64, Implausible> {
        let mut zigzag: u64 = 0;
        for i in 0..10 {
            let [b] = self.array::<1>(field)?;
            zigzag |= u64::from(b & 0x7f) << (i * 7);
            if b < 0x80 {
                break;
            }
        }
        Ok(((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64))
    }
}

// ---------------------------------------------------------------------------------------------
// Schemas
// ---------------------------------------------------------------------------------------------

/// A field's wire type. Lengths are nullable everywhere: the walk treats null as empty.
#[derive(Clone, Copy)]
enum Ty {
    /// INT8..INT64, FLOAT64, BOOL (1), UUID (16): this many bytes.
    Fixed(usize),
    /// STRING: INT16 length, or compact.
    Str,
    /// BYTES and RECORDS: INT32 length, or compact.
    Bytes,
    /// A nested struct, read in place.
    Struct(&'static [Field]),
    /// An array of structs.
    Structs(&'static [Field]),
    /// An array of fixed-width scalars of this width.
    Fixeds(usize),
    /// An array of strings.
    Strs,
}

struct Field {
    /// For errors: which length was implausible.
    name: &'static str,
    ty: Ty,
    /// First and last version the field is in.
    since: i16,
    until: i16,
    /// Tagged fields (flexible versions only) are found by tag in the struct's tagged section.
    tag: Option<u32>,
}

impl Field {
    fn in_version(&self, version: i16) -> bool {
        self.since <= version && version <= self.until
    }
}

const fn f(name: &'static str, ty: Ty, since: i16, until: i16) -> Field {
    Field {
        name,
        ty,
        since,
        until,
        tag: None,
    }
}

const fn tagged(name: &'static str, tag: u32, ty: Ty, since: i16, until: i16) -> Field {
    Field {
        name,
        ty,
        since,
        until,
        tag: Some(tag),
    }
}

struct Schema {
    api: ApiKey,
    dir: Direction,
    min: i16,
    max: i16,
    /// First flexible version (`i16::MAX`: never).
    flexible: i16,
    root: &'static [Field],
}

use Ty::{Bytes, Fixed, Fixeds, Str, Strs, Struct, Structs};

// ProduceRequest: versions 3-13, flexible from 9.
const PRODUCE_REQUEST_PARTITION_PRODUCE_DATA: &[Field] =
    &[f("index", Fixed(4), 3, 13), f("records", Bytes, 3, 13)];
const PRODUCE_REQUEST: &[Field] = &[
    f("transactional_id", Str, 3, 13),
    f("acks", Fixed(2), 3, 13),
    f("timeout_ms", Fixed(4), 3, 13),
    f(
        "topic_data",
        Structs(PRODUCE_REQUEST_TOPIC_PRODUCE_DATA),
        3,
        13,
    ),
];
const PRODUCE_REQUEST_TOPIC_PRODUCE_DATA: &[Field] = &[
    f("name", Str, 3, 12),
    f("topic_id", Fixed(16), 13, 13),
    f(
        "partition_data",
        Structs(PRODUCE_REQUEST_PARTITION_PRODUCE_DATA),
        3,
        13,
    ),
];
// FetchRequest: versions 4-18, flexible from 12.
const FETCH_REQUEST_FETCH_PARTITION: &[Field] = &[
    f("partition", Fixed(4), 4, 18),
    f("current_leader_epoch", Fixed(4), 9, 18),
    f("fetch_offset", Fixed(8), 4, 18),
    f("last_fetched_epoch", Fixed(4), 12, 18),
    f("log_start_offset", Fixed(8), 5, 18),
    f("partition_max_bytes", Fixed(4), 4, 18),
    tagged("replica_directory_id", 0, Fixed(16), 17, 18),
    tagged("high_watermark", 1, Fixed(8), 18, 18),
];
const FETCH_REQUEST: &[Field] = &[
    f("replica_id", Fixed(4), 4, 14),
    f("max_wait_ms", Fixed(4), 4, 18),
    f("min_bytes", Fixed(4), 4, 18),
    f("max_bytes", Fixed(4), 4, 18),
    f("isolation_level", Fixed(1), 4, 18),
    f("session_id", Fixed(4), 7, 18),
    f("session_epoch", Fixed(4), 7, 18),
    f("topics", Structs(FETCH_REQUEST_FETCH_TOPIC), 4, 18),
    f(
        "forgotten_topics_data",
        Structs(FETCH_REQUEST_FORGOTTEN_TOPIC),
        7,
        18,
    ),
    f("rack_id", Str, 11, 18),
    tagged("cluster_id", 0, Str, 12, 18),
    tagged(
        "replica_state",
        1,
        Struct(FETCH_REQUEST_REPLICA_STATE),
        15,
        18,
    ),
];
const FETCH_REQUEST_FETCH_TOPIC: &[Field] = &[
    f("topic", Str, 4, 12),
    f("topic_id", Fixed(16), 13, 18),
    f("partitions", Structs(FETCH_REQUEST_FETCH_PARTITION), 4, 18),
];
const FETCH_REQUEST_FORGOTTEN_TOPIC: &[Field] = &[
    f("topic", Str, 7, 12),
    f("topic_id", Fixed(16), 13, 18),
    f("partitions", Fixeds(4), 7, 18),
];
const FETCH_REQUEST_REPLICA_STATE: &[Field] = &[
    f("replica_id", Fixed(4), 15, 18),
    f("replica_epoch", Fixed(8), 15, 18),
];
// ListOffsetsRequest: versions 1-10, flexible from 6.
const LIST_OFFSETS_REQUEST_LIST_OFFSETS_PARTITION: &[Field] = &[
    f("partition_index", Fixed(4), 1, 10),
    f("current_leader_epoch", Fixed(4), 4, 10),
    f("timestamp", Fixed(8), 1, 10),
];
const LIST_OFFSETS_REQUEST: &[Field] = &[
    f("replica_id", Fixed(4), 1, 10),
    f("isolation_level", Fixed(1), 2, 10),
    f(
        "topics",
        Structs(LIST_OFFSETS_REQUEST_LIST_OFFSETS_TOPIC),
        1,
        10,
    ),
    f("timeout_ms", Fixed(4), 10, 10),
];
const LIST_OFFSETS_REQUEST_LIST_OFFSETS_TOPIC: &[Field] = &[
    f("name", Str, 1, 10),
    f(
        "partitions",
        Structs(LIST_OFFSETS_REQUEST_LIST_OFFSETS_PARTITION),
        1,
        10,
    ),
];
// OffsetForLeaderEpochRequest: versions 2-4, flexible from 4.
const OFFSET_FOR_LEADER_EPOCH_REQUEST: &[Field] = &[
    f("replica_id", Fixed(4), 3, 4),
    f(
        "topics",
        Structs(OFFSET_FOR_LEADER_EPOCH_REQUEST_OFFSET_FOR_LEADER_TOPIC),
        2,
        4,
    ),
];
const OFFSET_FOR_LEADER_EPOCH_REQUEST_OFFSET_FOR_LEADER_PARTITION: &[Field] = &[
    f("partition", Fixed(4), 2, 4),
    f("current_leader_epoch", Fixed(4), 2, 4),
    f("leader_epoch", Fixed(4), 2, 4),
];
const OFFSET_FOR_LEADER_EPOCH_REQUEST_OFFSET_FOR_LEADER_TOPIC: &[Field] = &[
    f("topic", Str, 2, 4),
    f(
        "partitions",
        Structs(OFFSET_FOR_LEADER_EPOCH_REQUEST_OFFSET_FOR_LEADER_PARTITION),
        2,
        4,
    ),
];
// DeleteRecordsRequest: versions 0-2, flexible from 2.
const DELETE_RECORDS_REQUEST_DELETE_RECORDS_PARTITION: &[Field] = &[
    f("partition_index", Fixed(4), 0, 2),
    f("offset", Fixed(8), 0, 2),
];
const DELETE_RECORDS_REQUEST: &[Field] = &[
    f(
        "topics",
        Structs(DELETE_RECORDS_REQUEST_DELETE_RECORDS_TOPIC),
        0,
        2,
    ),
    f("timeout_ms", Fixed(4), 0, 2),
];
const DELETE_RECORDS_REQUEST_DELETE_RECORDS_TOPIC: &[Field] = &[
    f("name", Str, 0, 2),
    f(
        "partitions",
        Structs(DELETE_RECORDS_REQUEST_DELETE_RECORDS_PARTITION),
        0,
        2,
    ),
];
// ProduceResponse: versions 3-13, flexible from 9.
const PRODUCE_RESPONSE_BATCH_INDEX_AND_ERROR_MESSAGE: &[Field] = &[
    f("batch_index", Fixed(4), 8, 13),
    f("batch_index_error_message", Str, 8, 13),
];
const PRODUCE_RESPONSE_LEADER_ID_AND_EPOCH: &[Field] = &[
    f("leader_id", Fixed(4), 10, 13),
    f("leader_epoch", Fixed(4), 10, 13),
];
const PRODUCE_RESPONSE_NODE_ENDPOINT: &[Field] = &[
    f("node_id", Fixed(4), 10, 13),
    f("host", Str, 10, 13),
    f("port", Fixed(4), 10, 13),
    f("rack", Str, 10, 13),
];
const PRODUCE_RESPONSE_PARTITION_PRODUCE_RESPONSE: &[Field] = &[
    f("index", Fixed(4), 3, 13),
    f("error_code", Fixed(2), 3, 13),
    f("base_offset", Fixed(8), 3, 13),
    f("log_append_time_ms", Fixed(8), 3, 13),
    f("log_start_offset", Fixed(8), 5, 13),
    f(
        "record_errors",
        Structs(PRODUCE_RESPONSE_BATCH_INDEX_AND_ERROR_MESSAGE),
        8,
        13,
    ),
    f("error_message", Str, 8, 13),
    tagged(
        "current_leader",
        0,
        Struct(PRODUCE_RESPONSE_LEADER_ID_AND_EPOCH),
        10,
        13,
    ),
];
const PRODUCE_RESPONSE: &[Field] = &[
    f(
        "responses",
        Structs(PRODUCE_RESPONSE_TOPIC_PRODUCE_RESPONSE),
        3,
        13,
    ),
    f("throttle_time_ms", Fixed(4), 3, 13),
    tagged(
        "node_endpoints",
        0,
        Structs(PRODUCE_RESPONSE_NODE_ENDPOINT),
        10,
        13,
    ),
];
const PRODUCE_RESPONSE_TOPIC_PRODUCE_RESPONSE: &[Field] = &[
    f("name", Str, 3, 12),
    f("topic_id", Fixed(16), 13, 13),
    f(
        "partition_responses",
        Structs(PRODUCE_RESPONSE_PARTITION_PRODUCE_RESPONSE),
        3,
        13,
    ),
];
// FetchResponse: versions 4-18, flexible from 12.
const FETCH_RESPONSE_ABORTED_TRANSACTION: &[Field] = &[
    f("producer_id", Fixed(8), 4, 18),
    f("first_offset", Fixed(8), 4, 18),
];
const FETCH_RESPONSE_EPOCH_END_OFFSET: &[Field] = &[
    f("epoch", Fixed(4), 12, 18),
    f("end_offset", Fixed(8), 12, 18),
];
const FETCH_RESPONSE: &[Field] = &[
    f("throttle_time_ms", Fixed(4), 4, 18),
    f("error_code", Fixed(2), 7, 18),
    f("session_id", Fixed(4), 7, 18),
    f(
        "responses",
        Structs(FETCH_RESPONSE_FETCHABLE_TOPIC_RESPONSE),
        4,
        18,
    ),
    tagged(
        "node_endpoints",
        0,
        Structs(FETCH_RESPONSE_NODE_ENDPOINT),
        16,
        18,
    ),
];
const FETCH_RESPONSE_FETCHABLE_TOPIC_RESPONSE: &[Field] = &[
    f("topic", Str, 4, 12),
    f("topic_id", Fixed(16), 13, 18),
    f("partitions", Structs(FETCH_RESPONSE_PARTITION_DATA), 4, 18),
];
const FETCH_RESPONSE_LEADER_ID_AND_EPOCH: &[Field] = &[
    f("leader_id", Fixed(4), 12, 18),
    f("leader_epoch", Fixed(4), 12, 18),
];
const FETCH_RESPONSE_NODE_ENDPOINT: &[Field] = &[
    f("node_id", Fixed(4), 16, 18),
    f("host", Str, 16, 18),
    f("port", Fixed(4), 16, 18),
    f("rack", Str, 16, 18),
];
const FETCH_RESPONSE_PARTITION_DATA: &[Field] = &[
    f("partition_index", Fixed(4), 4, 18),
    f("error_code", Fixed(2), 4, 18),
    f("high_watermark", Fixed(8), 4, 18),
    f("last_stable_offset", Fixed(8), 4, 18),
    f("log_start_offset", Fixed(8), 5, 18),
    f(
        "aborted_transactions",
        Structs(FETCH_RESPONSE_ABORTED_TRANSACTION),
        4,
        18,
    ),
    f("preferred_read_replica", Fixed(4), 11, 18),
    f("records", Bytes, 4, 18),
    tagged(
        "diverging_epoch",
        0,
        Struct(FETCH_RESPONSE_EPOCH_END_OFFSET),
        12,
        18,
    ),
    tagged(
        "current_leader",
        1,
        Struct(FETCH_RESPONSE_LEADER_ID_AND_EPOCH),
        12,
        18,
    ),
    tagged("snapshot_id", 2, Struct(FETCH_RESPONSE_SNAPSHOT_ID), 12, 18),
];
const FETCH_RESPONSE_SNAPSHOT_ID: &[Field] = &[
    f("end_offset", Fixed(8), 4, 18),
    f("epoch", Fixed(4), 4, 18),
];
// ListOffsetsResponse: versions 1-10, flexible from 6.
const LIST_OFFSETS_RESPONSE_LIST_OFFSETS_PARTITION_RESPONSE: &[Field] = &[
    f("partition_index", Fixed(4), 1, 10),
    f("error_code", Fixed(2), 1, 10),
    f("timestamp", Fixed(8), 1, 10),
    f("offset", Fixed(8), 1, 10),
    f("leader_epoch", Fixed(4), 4, 10),
];
const LIST_OFFSETS_RESPONSE: &[Field] = &[
    f("throttle_time_ms", Fixed(4), 2, 10),
    f(
        "topics",
        Structs(LIST_OFFSETS_RESPONSE_LIST_OFFSETS_TOPIC_RESPONSE),
        1,
        10,
    ),
];
const LIST_OFFSETS_RESPONSE_LIST_OFFSETS_TOPIC_RESPONSE: &[Field] = &[
    f("name", Str, 1, 10),
    f(
        "partitions",
        Structs(LIST_OFFSETS_RESPONSE_LIST_OFFSETS_PARTITION_RESPONSE),
        1,
        10,
    ),
];
// OffsetForLeaderEpochResponse: versions 2-4, flexible from 4.
const OFFSET_FOR_LEADER_EPOCH_RESPONSE_EPOCH_END_OFFSET: &[Field] = &[
    f("error_code", Fixed(2), 2, 4),
    f("partition", Fixed(4), 2, 4),
    f("leader_epoch", Fixed(4), 2, 4),
    f("end_offset", Fixed(8), 2, 4),
];
const OFFSET_FOR_LEADER_EPOCH_RESPONSE: &[Field] = &[
    f("throttle_time_ms", Fixed(4), 2, 4),
    f(
        "topics",
        Structs(OFFSET_FOR_LEADER_EPOCH_RESPONSE_OFFSET_FOR_LEADER_TOPIC_RESULT),
        2,
        4,
    ),
];
const OFFSET_FOR_LEADER_EPOCH_RESPONSE_OFFSET_FOR_LEADER_TOPIC_RESULT: &[Field] = &[
    f("topic", Str, 2, 4),
    f(
        "partitions",
        Structs(OFFSET_FOR_LEADER_EPOCH_RESPONSE_EPOCH_END_OFFSET),
        2,
        4,
    ),
];
// DeleteRecordsResponse: versions 0-2, flexible from 2.
const DELETE_RECORDS_RESPONSE_DELETE_RECORDS_PARTITION_RESULT: &[Field] = &[
    f("partition_index", Fixed(4), 0, 2),
    f("low_watermark", Fixed(8), 0, 2),
    f("error_code", Fixed(2), 0, 2),
];
const DELETE_RECORDS_RESPONSE: &[Field] = &[
    f("throttle_time_ms", Fixed(4), 0, 2),
    f(
        "topics",
        Structs(DELETE_RECORDS_RESPONSE_DELETE_RECORDS_TOPIC_RESULT),
        0,
        2,
    ),
];
const DELETE_RECORDS_RESPONSE_DELETE_RECORDS_TOPIC_RESULT: &[Field] = &[
    f("name", Str, 0, 2),
    f(
        "partitions",
        Structs(DELETE_RECORDS_RESPONSE_DELETE_RECORDS_PARTITION_RESULT),
        0,
        2,
    ),
];
// MetadataResponse: versions 0-13, flexible from 9.
const METADATA_RESPONSE: &[Field] = &[
    f("throttle_time_ms", Fixed(4), 3, 13),
    f("brokers", Structs(METADATA_RESPONSE_BROKER), 0, 13),
    f("cluster_id", Str, 2, 13),
    f("controller_id", Fixed(4), 1, 13),
    f("topics", Structs(METADATA_RESPONSE_TOPIC), 0, 13),
    f("cluster_authorized_operations", Fixed(4), 8, 10),
    f("error_code", Fixed(2), 13, 13),
];
const METADATA_RESPONSE_BROKER: &[Field] = &[
    f("node_id", Fixed(4), 0, 13),
    f("host", Str, 0, 13),
    f("port", Fixed(4), 0, 13),
    f("rack", Str, 1, 13),
];
const METADATA_RESPONSE_PARTITION: &[Field] = &[
    f("error_code", Fixed(2), 0, 13),
    f("partition_index", Fixed(4), 0, 13),
    f("leader_id", Fixed(4), 0, 13),
    f("leader_epoch", Fixed(4), 7, 13),
    f("replica_nodes", Fixeds(4), 0, 13),
    f("isr_nodes", Fixeds(4), 0, 13),
    f("offline_replicas", Fixeds(4), 5, 13),
];
const METADATA_RESPONSE_TOPIC: &[Field] = &[
    f("error_code", Fixed(2), 0, 13),
    f("name", Str, 0, 13),
    f("topic_id", Fixed(16), 10, 13),
    f("is_internal", Fixed(1), 1, 13),
    f("partitions", Structs(METADATA_RESPONSE_PARTITION), 0, 13),
    f("topic_authorized_operations", Fixed(4), 8, 13),
];
// FindCoordinatorResponse: versions 0-6, flexible from 3.
const FIND_COORDINATOR_RESPONSE_COORDINATOR: &[Field] = &[
    f("key", Str, 4, 6),
    f("node_id", Fixed(4), 4, 6),
    f("host", Str, 4, 6),
    f("port", Fixed(4), 4, 6),
    f("error_code", Fixed(2), 4, 6),
    f("error_message", Str, 4, 6),
];
const FIND_COORDINATOR_RESPONSE: &[Field] = &[
    f("throttle_time_ms", Fixed(4), 1, 6),
    f("error_code", Fixed(2), 0, 3),
    f("error_message", Str, 1, 3),
    f("node_id", Fixed(4), 0, 3),
    f("host", Str, 0, 3),
    f("port", Fixed(4), 0, 3),
    f(
        "coordinators",
        Structs(FIND_COORDINATOR_RESPONSE_COORDINATOR),
        4,
        6,
    ),
];
// DescribeClusterResponse: versions 0-2, flexible from 0.
const DESCRIBE_CLUSTER_RESPONSE_DESCRIBE_CLUSTER_BROKER: &[Field] = &[
    f("broker_id", Fixed(4), 0, 2),
    f("host", Str, 0, 2),
    f("port", Fixed(4), 0, 2),
    f("rack", Str, 0, 2),
    f("is_fenced", Fixed(1), 2, 2),
];
const DESCRIBE_CLUSTER_RESPONSE: &[Field] = &[
    f("throttle_time_ms", Fixed(4), 0, 2),
    f("error_code", Fixed(2), 0, 2),
    f("error_message", Str, 0, 2),
    f("endpoint_type", Fixed(1), 1, 2),
    f("cluster_id", Str, 0, 2),
    f("controller_id", Fixed(4), 0, 2),
    f(
        "brokers",
        Structs(DESCRIBE_CLUSTER_RESPONSE_DESCRIBE_CLUSTER_BROKER),
        0,
        2,
    ),
    f("cluster_authorized_operations", Fixed(4), 0, 2),
];
// ApiVersionsResponse: versions 0-4, flexible from 3.
const API_VERSIONS_RESPONSE_API_VERSION: &[Field] = &[
    f("api_key", Fixed(2), 0, 4),
    f("min_version", Fixed(2), 0, 4),
    f("max_version", Fixed(2), 0, 4),
];
const API_VERSIONS_RESPONSE: &[Field] = &[
    f("error_code", Fixed(2), 0, 4),
    f("api_keys", Structs(API_VERSIONS_RESPONSE_API_VERSION), 0, 4),
    f("throttle_time_ms", Fixed(4), 1, 4),
    tagged(
        "supported_features",
        0,
        Structs(API_VERSIONS_RESPONSE_SUPPORTED_FEATURE_KEY),
        3,
        4,
    ),
    tagged("finalized_features_epoch", 1, Fixed(8), 3, 4),
    tagged(
        "finalized_features",
        2,
        Structs(API_VERSIONS_RESPONSE_FINALIZED_FEATURE_KEY),
        3,
        4,
    ),
    tagged("zk_migration_ready", 3, Fixed(1), 3, 4),
];
const API_VERSIONS_RESPONSE_FINALIZED_FEATURE_KEY: &[Field] = &[
    f("name", Str, 3, 4),
    f("max_version_level", Fixed(2), 3, 4),
    f("min_version_level", Fixed(2), 3, 4),
];
const API_VERSIONS_RESPONSE_SUPPORTED_FEATURE_KEY: &[Field] = &[
    f("name", Str, 3, 4),
    f("min_version", Fixed(2), 3, 4),
    f("max_version", Fixed(2), 3, 4),
];
// ShareFetchResponse: versions 1-1, flexible from 1.
const SHARE_FETCH_RESPONSE_ACQUIRED_RECORDS: &[Field] = &[
    f("first_offset", Fixed(8), 1, 1),
    f("last_offset", Fixed(8), 1, 1),
    f("delivery_count", Fixed(2), 1, 1),
];
const SHARE_FETCH_RESPONSE_LEADER_ID_AND_EPOCH: &[Field] = &[
    f("leader_id", Fixed(4), 1, 1),
    f("leader_epoch", Fixed(4), 1, 1),
];
const SHARE_FETCH_RESPONSE_NODE_ENDPOINT: &[Field] = &[
    f("node_id", Fixed(4), 1, 1),
    f("host", Str, 1, 1),
    f("port", Fixed(4), 1, 1),
    f("rack", Str, 1, 1),
];
const SHARE_FETCH_RESPONSE_PARTITION_DATA: &[Field] = &[
    f("partition_index", Fixed(4), 1, 1),
    f("error_code", Fixed(2), 1, 1),
    f("error_message", Str, 1, 1),
    f("acknowledge_error_code", Fixed(2), 1, 1),
    f("acknowledge_error_message", Str, 1, 1),
    f(
        "current_leader",
        Struct(SHARE_FETCH_RESPONSE_LEADER_ID_AND_EPOCH),
        1,
        1,
    ),
    f("records", Bytes, 1, 1),
    f(
        "acquired_records",
        Structs(SHARE_FETCH_RESPONSE_ACQUIRED_RECORDS),
        1,
        1,
    ),
];
const SHARE_FETCH_RESPONSE: &[Field] = &[
    f("throttle_time_ms", Fixed(4), 1, 1),
    f("error_code", Fixed(2), 1, 1),
    f("error_message", Str, 1, 1),
    f("acquisition_lock_timeout_ms", Fixed(4), 1, 1),
    f(
        "responses",
        Structs(SHARE_FETCH_RESPONSE_SHARE_FETCHABLE_TOPIC_RESPONSE),
        1,
        1,
    ),
    f(
        "node_endpoints",
        Structs(SHARE_FETCH_RESPONSE_NODE_ENDPOINT),
        1,
        1,
    ),
];
const SHARE_FETCH_RESPONSE_SHARE_FETCHABLE_TOPIC_RESPONSE: &[Field] = &[
    f("topic_id", Fixed(16), 1, 1),
    f(
        "partitions",
        Structs(SHARE_FETCH_RESPONSE_PARTITION_DATA),
        1,
        1,
    ),
];
// ShareAcknowledgeResponse: versions 1-1, flexible from 1.
const SHARE_ACKNOWLEDGE_RESPONSE_LEADER_ID_AND_EPOCH: &[Field] = &[
    f("leader_id", Fixed(4), 1, 1),
    f("leader_epoch", Fixed(4), 1, 1),
];
const SHARE_ACKNOWLEDGE_RESPONSE_NODE_ENDPOINT: &[Field] = &[
    f("node_id", Fixed(4), 1, 1),
    f("host", Str, 1, 1),
    f("port", Fixed(4), 1, 1),
    f("rack", Str, 1, 1),
];
const SHARE_ACKNOWLEDGE_RESPONSE_PARTITION_DATA: &[Field] = &[
    f("partition_index", Fixed(4), 1, 1),
    f("error_code", Fixed(2), 1, 1),
    f("error_message", Str, 1, 1),
    f(
        "current_leader",
        Struct(SHARE_ACKNOWLEDGE_RESPONSE_LEADER_ID_AND_EPOCH),
        1,
        1,
    ),
];
const SHARE_ACKNOWLEDGE_RESPONSE: &[Field] = &[
    f("throttle_time_ms", Fixed(4), 1, 1),
    f("error_code", Fixed(2), 1, 1),
    f("error_message", Str, 1, 1),
    f(
        "responses",
        Structs(SHARE_ACKNOWLEDGE_RESPONSE_SHARE_ACKNOWLEDGE_TOPIC_RESPONSE),
        1,
        1,
    ),
    f(
        "node_endpoints",
        Structs(SHARE_ACKNOWLEDGE_RESPONSE_NODE_ENDPOINT),
        1,
        1,
    ),
];
const SHARE_ACKNOWLEDGE_RESPONSE_SHARE_ACKNOWLEDGE_TOPIC_RESPONSE: &[Field] = &[
    f("topic_id", Fixed(16), 1, 1),
    f(
        "partitions",
        Structs(SHARE_ACKNOWLEDGE_RESPONSE_PARTITION_DATA),
        1,
        1,
    ),
];
// SaslHandshakeResponse: versions 0-1, never flexible.
const SASL_HANDSHAKE_RESPONSE: &[Field] =
    &[f("error_code", Fixed(2), 0, 1), f("mechanisms", Strs, 0, 1)];
const SCHEMAS: &[Schema] = &[
    Schema {
        api: ApiKey::Produce,
        dir: Direction::Request,
        min: 3,
        max: 13,
        flexible: 9,
        root: PRODUCE_REQUEST,
    },
    Schema {
        api: ApiKey::Fetch,
        dir: Direction::Request,
        min: 4,
        max: 18,
        flexible: 12,
        root: FETCH_REQUEST,
    },
    Schema {
        api: ApiKey::ListOffsets,
        dir: Direction::Request,
        min: 1,
        max: 10,
        flexible: 6,
        root: LIST_OFFSETS_REQUEST,
    },
    Schema {
        api: ApiKey::OffsetForLeaderEpoch,
        dir: Direction::Request,
        min: 2,
        max: 4,
        flexible: 4,
        root: OFFSET_FOR_LEADER_EPOCH_REQUEST,
    },
    Schema {
        api: ApiKey::DeleteRecords,
        dir: Direction::Request,
        min: 0,
        max: 2,
        flexible: 2,
        root: DELETE_RECORDS_REQUEST,
    },
    Schema {
        api: ApiKey::Produce,
        dir: Direction::Response,
        min: 3,
        max: 13,
        flexible: 9,
        root: PRODUCE_RESPONSE,
    },
    Schema {
        api: ApiKey::Fetch,
        dir: Direction::Response,
        min: 4,
        max: 18,
        flexible: 12,
        root: FETCH_RESPONSE,
    },
    Schema {
        api: ApiKey::ListOffsets,
        dir: Direction::Response,
        min: 1,
        max: 10,
        flexible: 6,
        root: LIST_OFFSETS_RESPONSE,
    },
    Schema {
        api: ApiKey::OffsetForLeaderEpoch,
        dir: Direction::Response,
        min: 2,
        max: 4,
        flexible: 4,
        root: OFFSET_FOR_LEADER_EPOCH_RESPONSE,
    },
    Schema {
        api: ApiKey::DeleteRecords,
        dir: Direction::Response,
        min: 0,
        max: 2,
        flexible: 2,
        root: DELETE_RECORDS_RESPONSE,
    },
    Schema {
        api: ApiKey::Metadata,
        dir: Direction::Response,
        min: 0,
        max: 13,
        flexible: 9,
        root: METADATA_RESPONSE,
    },
    Schema {
        api: ApiKey::FindCoordinator,
        dir: Direction::Response,
        min: 0,
        max: 6,
        flexible: 3,
        root: FIND_COORDINATOR_RESPONSE,
    },
    Schema {
        api: ApiKey::DescribeCluster,
        dir: Direction::Response,
        min: 0,
        max: 2,
        flexible: 0,
        root: DESCRIBE_CLUSTER_RESPONSE,
    },
    Schema {
        api: ApiKey::ApiVersions,
        dir: Direction::Response,
        min: 0,
        max: 4,
        flexible: 3,
        root: API_VERSIONS_RESPONSE,
    },
    Schema {
        api: ApiKey::ShareFetch,
        dir: Direction::Response,
        min: 1,
        max: 1,
        flexible: 1,
        root: SHARE_FETCH_RESPONSE,
    },
    Schema {
        api: ApiKey::ShareAcknowledge,
        dir: Direction::Response,
        min: 1,
        max: 1,
        flexible: 1,
        root: SHARE_ACKNOWLEDGE_RESPONSE,
    },
    Schema {
        api: ApiKey::SaslHandshake,
        dir: Direction::Response,
        min: 0,
        max: 1,
        flexible: i16::MAX,
        root: SASL_HANDSHAKE_RESPONSE,
    },
];

#[cfg(test)]
mod tests {
    //! The schemas are held to `kafka-protocol` in both directions: bytes generated from a
    //! schema must decode with `kafka-protocol` to the last byte, and `kafka-protocol`'s
    //! re-encoding of what it decoded must walk to exactly its length. (A schema that is wrong
    //! about a field makes the decoder read garbage counts: the test may then fail by the very
    //! abort this module exists to prevent, "memory allocation of N bytes failed".)

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

    /// Runs `$body` with `T` bound to the kafka-protocol type of a schema.
    macro_rules! with_type {
        ($api:expr, $dir:expr, |$t:ident| $body:expr) => {{
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
                other => panic!("no kafka-protocol type listed for {other:?}"),
            }
        }};
    }

    #[test]
    fn schemas_cover_exactly_the_versions_kafka_protocol_decodes() {
        for s in SCHEMAS {
            let crate_range = with_type!(s.api, s.dir, |T| (
                <T as Message>::VERSIONS.min,
                <T as Message>::VERSIONS.max
            ));
            assert_eq!(
                (s.min, s.max),
                crate_range,
                "{:?} {:?}: update the schema",
                s.api,
                s.dir
            );
        }
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
                            let mut old = Walker { b: &body, at, version: v, flexible: true };
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
            walk(&[1, 2, 3], ApiKey::Heartbeat, 4, Direction::Response),
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
        use kafka_protocol::records::{
            Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
        };
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
}
