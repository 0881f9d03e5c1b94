//! Metadata answers rewritten without decoding their partitions (issue 20).
//!
//! Why by hand: kafka-protocol decodes every partition of an answer into a struct holding three
//! owned `Vec`s (replicas, in-sync replicas, offline replicas), and encodes them all again,
//! though only the brokers carry addresses: 155 ms of CPU for a 200,000-partition answer (what
//! a client asking for all topics gets), holding the single-threaded runtime that long
//! (benches/codec.rs `metadata_rewrite_decoding`; 4.9 ms this way, learning no topic, in the same
//! run, thread CPU on 2026-12-05). [`walk`] reads the frame in place
//! instead: it skips the int32 arrays by their length and allocates nothing per partition. It
//! keeps the brokers (few), the distinct leader ids, the error codes, and decodes (with
//! kafka-protocol, from the bytes it has checked) only the topics its caller wants to learn.
//! [`splice`] then builds the answer: a new brokers array, the controller id written in place,
//! and every other byte of the frame as it came, the topics as a view of the broker's frame
//! (`OutFrame`: not copied).
//!
//! The splice gives the very bytes the decoding path ([`by_decoding`]: decode,
//! `brokers::metadata`, encode) gives (a proptest holds it to that at every version), which it
//! can unless:
//! * a partition's leader is a broker whose port is not bound: a bound broker must stand in for
//!   it (`ports::Advertised::stand_in`), a rewrite inside the partitions. Rare (a port held by
//!   another process); such answers take the decoding path. Unbound brokers left out of the
//!   list and a stand-in controller need no such thing: the brokers array is written anew
//!   anyway, the controller id is four bytes at a known place.
//! * the frame is not in the form kafka-protocol writes (longer varints than needed, tagged
//!   fields out of order or repeated, a boolean other than 0 or 1): re-encoding would change
//!   those bytes, so such a frame takes the decoding path, which normalizes it. Brokers
//!   (Java's `ByteUtils`, `ObjectSerializationCache`) write nothing else.
//!
//! The walk refuses exactly what the decoding path refuses (`codec::sanity` then kafka-protocol):
//! truncation, negative lengths, null where the field is not nullable, lengths beyond the bytes
//! left, strings that are not UTF-8, tags past i32::MAX, trailing bytes; the fuzz target
//! `rewrite` compares the two paths on every input. No length read from the frame sizes an
//! allocation before the bytes it claims have been seen.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::metadata_response::{MetadataResponseBroker, MetadataResponseTopic};
use kafka_protocol::messages::{ApiKey, BrokerId, MetadataResponse};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tracing::debug;

use super::{brokers, RewriteError};
use crate::cluster::Cluster;
use crate::codec::frame::OutFrame;
use crate::codec::header::{response_body_offset, HeaderError};
use crate::codec::message::{decode_response, encode_response, MessageError};
use crate::codec::LEN_PREFIX;
use crate::metrics;
use crate::ports::Advertised;

/// The Metadata versions kafka-protocol 0.18 reads and writes.
const VERSIONS: Range<i16> = 0..14;
/// Flexible versions (KIP-482: compact lengths, tagged fields, response header v1) from here.
const FLEXIBLE: i16 = 9;

/// Why a frame is not a Metadata answer of its version. `at` counts from the frame's start
/// (length prefix included).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("not a Metadata version fairlead reads")]
    Version,
    #[error(transparent)]
    Header(#[from] HeaderError),
    #[error("{field}: the frame ends inside it (byte {at})")]
    Truncated { field: &'static str, at: usize },
    #[error("{field}: length {len} at byte {at} exceeds the {left} bytes left")]
    TooLong {
        field: &'static str,
        at: usize,
        len: u64,
        left: usize,
    },
    #[error("{field}: negative length {len} at byte {at}")]
    Negative {
        field: &'static str,
        at: usize,
        len: i64,
    },
    #[error("{field}: null at byte {at}, where the schema allows none")]
    Null { field: &'static str, at: usize },
    #[error("{field}: not UTF-8 (byte {at})")]
    NotUtf8 { field: &'static str, at: usize },
    #[error("tagged field {tag} at byte {at} is past i32::MAX")]
    Tag { at: usize, tag: u32 },
    #[error("{left} bytes left over after the body")]
    Trailing { left: usize },
    #[error("topic at byte {at}: kafka-protocol does not read what the walk read: {reason}")]
    Topic { at: usize, reason: String },
}

/// What [`walk`] found in an answer.
#[derive(Debug)]
pub struct Walk {
    frame: Bytes,
    version: i16,
    /// Where the body starts (after the response header).
    body: usize,
    /// The brokers array, its length included: what the splice replaces.
    brokers_span: Range<usize>,
    /// Where controller_id is, and what it says (v1+).
    controller: Option<(usize, i32)>,
    /// Every leader id >= 0 some partition names.
    leaders: Nodes,
    /// Non-zero topic and partition error codes, and how often each appears.
    errors: BTreeMap<i16, u64>,
    /// Whether re-encoding gives the frame's own bytes back (see the module doc).
    canonical: bool,
    /// What fairlead learns from the answer: the brokers, the controller id, and the topics the
    /// caller wanted, decoded (nothing else is filled in).
    pub learned: MetadataResponse,
}

impl Walk {
    /// Counts the error codes passed to the client (`fairlead_errors_passed_through_total`).
    fn count_errors(&self) {
        for (code, n) in &self.errors {
            metrics::passed_through_times(ApiKey::Metadata as i16, *code, *n);
        }
    }
}

/// Distinct broker ids >= 0, with no allocation for ids below 4096 (KRaft clusters number theirs
/// from 0 or 1, ZooKeeper-era ones from 1001).
#[derive(Debug)]
struct Nodes {
    low: [u64; 64],
    high: BTreeSet<i32>,
}

impl Default for Nodes {
    fn default() -> Nodes {
        Nodes {
            low: [0; 64],
            high: BTreeSet::new(),
        }
    }
}

impl Nodes {
    #[inline]
    fn insert(&mut self, id: i32) {
        match usize::try_from(id) {
            Ok(i) if i < 64 * 64 => {
                // Set only when not set yet: the leaders repeat, and a store on every partition
                // would make each partition wait for the last one's.
                let (word, bit) = (i / 64, 1 << (i % 64));
                if self.low[word] & bit == 0 {
                    self.low[word] |= bit;
                }
            }
            _ => self.insert_high(id),
        }
    }

    #[inline(never)]
    fn insert_high(&mut self, id: i32) {
        self.high.insert(id);
    }

    fn all(&self, f: impl FnMut(i32) -> bool) -> bool {
        let low = self.low.iter().enumerate().flat_map(|(w, bits)| {
            (0..64)
                .filter(move |b| bits & (1 << b) != 0)
                .map(move |b| (w * 64 + b) as i32)
        });
        low.chain(self.high.iter().copied()).all(f)
    }
}

/// Rewrites a Metadata answer for a client: learns from it (the brokers, and the topics `want`
/// accepts; of those fairlead does not track yet, the ones `learn_new` accepts), then splices
/// in fairlead's brokers, or takes the decoding path where the splice cannot give the same
/// bytes.
pub fn rewrite(
    cluster: &Cluster,
    frame: &Bytes,
    version: i16,
    corr: i32,
    want: impl FnMut(&str) -> bool,
    learn_new: &dyn Fn(&str) -> bool,
) -> Result<OutFrame, RewriteError> {
    let walked =
        walk(frame, version, want).map_err(|source| RewriteError::Metadata { version, source })?;
    // Learned first: fairlead routes by the brokers' own answer, and a broker it hears of here
    // gets its port before the client hears of it.
    cluster.learn_metadata(&walked.learned, learn_new);
    let a = cluster.advertised();
    if let Some(out) = splice(&walked, &a, corr) {
        walked.count_errors();
        return Ok(out);
    }
    debug!(
        version,
        canonical = walked.canonical,
        "Metadata answer rewritten by decoding it"
    );
    Ok(by_decoding(frame, version, corr, &a)?.into())
}

/// The decoding path: the whole answer decoded, its brokers rewritten (`brokers::metadata`),
/// its error codes counted, and encoded again. For the answers [`splice`] cannot give.
pub fn by_decoding(
    frame: &Bytes,
    version: i16,
    corr: i32,
    a: &Advertised,
) -> Result<Bytes, MessageError> {
    let r: MetadataResponse = decode_response(frame, ApiKey::Metadata, version)?;
    rewrite_decoded(r, version, corr, a)
}

/// [`by_decoding`] once decoded.
pub fn rewrite_decoded(
    mut r: MetadataResponse,
    version: i16,
    corr: i32,
    a: &Advertised,
) -> Result<Bytes, MessageError> {
    brokers::metadata(a, &mut r);
    for t in &r.topics {
        if t.error_code != 0 {
            metrics::passed_through(ApiKey::Metadata as i16, t.error_code);
        }
        for p in &t.partitions {
            if p.error_code != 0 {
                metrics::passed_through(ApiKey::Metadata as i16, p.error_code);
            }
        }
    }
    encode_response(&r, ApiKey::Metadata, version, corr)
}

/// The answer for the client, built from the frame walked: response header (correlation id
/// `corr`, no tagged fields, as `encode_response` writes it), the body up to the brokers, the
/// brokers as `brokers::metadata` rewrites them, the rest of the body with the controller id
/// replaced. `None` where that would not be what [`by_decoding`] gives: a partition led by a
/// broker whose port is not bound, or a frame not in canonical form.
///
/// Everything up to the controller id is written anew (the head: some hundred bytes a broker);
/// the topics after it, nearly all of a large answer, stay a view of the broker's frame.
pub fn splice(w: &Walk, a: &Advertised, corr: i32) -> Option<OutFrame> {
    let frame = &w.frame;
    if !w.canonical || !w.leaders.all(|id| a.is_bound(id)) {
        return None;
    }
    let mut r = MetadataResponse::default()
        .with_brokers(w.learned.brokers.clone())
        .with_controller_id(w.learned.controller_id);
    brokers::metadata(a, &mut r);
    let v = w.version;
    let flexible = v >= FLEXIBLE;
    // The array as kafka-protocol writes it: its length (INT32, or N+1 as an unsigned varint
    // when flexible), then each broker.
    let mut brokers_len = if flexible {
        uvarint_len(u32::try_from(r.brokers.len() + 1).ok()?)
    } else {
        4
    };
    for b in &r.brokers {
        brokers_len += b.compute_size(v).ok()?;
    }
    // The head ends after the controller id (v1+), else after the brokers.
    let tail_at = w.controller.map_or(w.brokers_span.end, |(at, _)| at + 4);
    let header_len = if flexible { 5 } else { 4 };
    let head_body = (w.brokers_span.start - w.body) + brokers_len + (tail_at - w.brokers_span.end);
    let body_len = head_body + (frame.len() - tail_at);
    let mut out = BytesMut::with_capacity(LEN_PREFIX + header_len + head_body);
    out.put_i32(i32::try_from(header_len + body_len).ok()?);
    out.put_i32(corr);
    if flexible {
        out.put_u8(0); // no tagged fields
    }
    out.put_slice(&frame[w.body..w.brokers_span.start]);
    if flexible {
        put_uvarint(&mut out, r.brokers.len() as u32 + 1);
    } else {
        out.put_i32(r.brokers.len() as i32);
    }
    for b in &r.brokers {
        b.encode(&mut out, v).ok()?;
    }
    if let Some((at, _)) = w.controller {
        out.put_slice(&frame[w.brokers_span.end..at]);
        out.put_i32(r.controller_id.0);
    }
    Some(OutFrame {
        head: out.freeze(),
        tail: frame.slice(tail_at..),
    })
}

fn uvarint_len(v: u32) -> usize {
    match v {
        0..=0x7f => 1,
        0x80..=0x3fff => 2,
        0x4000..=0x1f_ffff => 3,
        0x20_0000..=0xfff_ffff => 4,
        _ => 5,
    }
}

fn put_uvarint(out: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        out.put_u8(v as u8 | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

/// Walks a Metadata response frame (length prefix included) of `version`. Topics whose name
/// `want` accepts are decoded into [`Walk::learned`]; `want` is not asked about a topic without
/// a name (fairlead cannot learn one).
pub fn walk(
    frame: &Bytes,
    version: i16,
    mut want: impl FnMut(&str) -> bool,
) -> Result<Walk, Malformed> {
    if !VERSIONS.contains(&version) {
        return Err(Malformed::Version);
    }
    let v = version;
    let flexible = v >= FLEXIBLE;
    let body = response_body_offset(frame, i16::from(flexible))?;
    let mut c = Cursor {
        b: frame,
        at: body,
        flexible,
        canonical: true,
    };
    let mut learned = MetadataResponse::default();
    if v >= 3 {
        c.skip(4, "throttle_time_ms")?;
    }

    let start = c.at;
    let n = c.count("brokers", min_broker(v))?;
    // Bounded by the frame: a broker takes at least `min_broker` bytes of it.
    learned.brokers.reserve_exact(n);
    for _ in 0..n {
        let (broker, after) = c.broker(frame, v)?;
        learned.brokers.push(broker);
        c = after;
    }
    let brokers_span = start..c.at;
    // The splice writes the brokers array anew, as the decoding path does: how the broker
    // wrote it does not matter.
    c.canonical = true;

    if v >= 2 {
        c.string("cluster_id", true)?;
    }
    let controller = if v >= 1 {
        let at = c.at;
        let id = c.i32("controller_id")?;
        learned.controller_id = BrokerId(id);
        Some((at, id))
    } else {
        None
    };

    let mut leaders = Nodes::default();
    let mut errors = BTreeMap::new();
    // The last partition's layout: the next one most likely has the same (see `Shape`).
    let mut shape: Option<Shape> = None;
    let topics = c.count("topics", min_topic(v))?;
    for _ in 0..topics {
        let start = c.at;
        let code = c.i16("error_code")?;
        if code != 0 {
            *errors.entry(code).or_insert(0) += 1;
        }
        // Nullable from v12; kafka-protocol reads a null name at any version.
        let name = c.string("name", true)?;
        if v >= 10 {
            c.skip(16, "topic_id")?;
        }
        if v >= 1 {
            let [b] = c.bytes("is_internal")?;
            c.canonical &= b <= 1;
        }
        let partitions = c.count("partitions", min_partition(v))?;
        for _ in 0..partitions {
            let start = c.at;
            let known = shape.filter(|s| s.fits(c.b, start));
            // error_code, partition_index, leader_id (and leader_epoch from v7), checked at once.
            let (code, leader) = if v >= 7 {
                let [e0, e1, _, _, _, _, l0, l1, l2, l3, _, _, _, _] = c.bytes("partition")?;
                ([e0, e1], [l0, l1, l2, l3])
            } else {
                let [e0, e1, _, _, _, _, l0, l1, l2, l3] = c.bytes("partition")?;
                ([e0, e1], [l0, l1, l2, l3])
            };
            let (code, leader) = (i16::from_be_bytes(code), i32::from_be_bytes(leader));
            if code != 0 {
                *errors.entry(code).or_insert(0) += 1;
            }
            if leader >= 0 {
                leaders.insert(leader);
            }
            if let Some(s) = known {
                c.at = start + s.size;
                continue;
            }
            let replicas = c.int32s("replica_nodes")?;
            let isr = c.int32s("isr_nodes")?;
            let offline = if v >= 5 {
                c.int32s("offline_replicas")?
            } else {
                0
            };
            if flexible {
                c.tagged()?;
            }
            shape = Shape::new(v, [replicas, isr, offline]).filter(|s| s.size == c.at - start);
        }
        if v >= 8 {
            c.skip(4, "topic_authorized_operations")?;
        }
        if flexible {
            c.tagged()?;
        }
        if name.is_some_and(&mut want) {
            learned.topics.push(decode_topic(frame, start..c.at, v)?);
        }
    }
    if (8..=10).contains(&v) {
        c.skip(4, "cluster_authorized_operations")?;
    }
    if v >= 13 {
        c.skip(2, "error_code")?;
    }
    if flexible {
        c.tagged()?;
    }
    if c.at != frame.len() {
        return Err(Malformed::Trailing {
            left: frame.len() - c.at,
        });
    }
    Ok(Walk {
        frame: frame.clone(),
        version,
        body,
        brokers_span,
        controller,
        leaders,
        errors,
        canonical: c.canonical,
        learned,
    })
}

/// A topic the walk has checked, decoded by kafka-protocol (so that leadership learns it
/// exactly as from a decoded answer).
fn decode_topic(
    frame: &Bytes,
    span: Range<usize>,
    version: i16,
) -> Result<MetadataResponseTopic, Malformed> {
    let at = span.start;
    let mut b = frame.slice(span);
    // Every length in it is backed by bytes (walked above), so the decoder allocates in
    // proportion to the frame; a panic in it must still cost one frame, not the process.
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        MetadataResponseTopic::decode(&mut b, version)
    }));
    match decoded {
        Ok(Ok(t)) if b.is_empty() => Ok(t),
        Ok(Ok(_)) => Err(Malformed::Topic {
            at,
            reason: format!("{} bytes left", b.len()),
        }),
        Ok(Err(e)) => Err(Malformed::Topic {
            at,
            reason: e.to_string(),
        }),
        Err(_) => Err(Malformed::Topic {
            at,
            reason: "decoder panicked".into(),
        }),
    }
}

/// Where a partition's array lengths are and what they say, for partitions whose replica, ISR
/// and offline replica counts are given, and its size: the partitions of an answer mostly share
/// one layout (one replication factor, every replica in sync). A partition is checked against
/// the last one's layout first: then its end is known before its lengths are read, so the walk
/// does not wait on each length in turn (measured: ~40% of the walk).
#[derive(Debug, Clone, Copy)]
struct Shape {
    /// Offset in the partition and expected value of each array length (compact: N+1 in one
    /// byte; else N as an INT32).
    lens: [(usize, u32); 3],
    arrays: usize,
    flexible: bool,
    size: usize,
}

impl Shape {
    fn new(v: i16, counts: [usize; 3]) -> Option<Shape> {
        let flexible = v >= FLEXIBLE;
        let arrays = if v >= 5 { 3 } else { 2 };
        let mut at = if v >= 7 { 14 } else { 10 };
        let mut lens = [(0, 0); 3];
        for (len, n) in lens.iter_mut().zip(counts).take(arrays) {
            let encoded = if flexible {
                // Lengths of one byte only: longer varints may be written more ways than one.
                u32::try_from(n + 1).ok().filter(|e| *e < 0x80)?
            } else {
                u32::try_from(n).ok()?
            };
            *len = (at, encoded);
            at += if flexible { 1 } else { 4 } + 4 * n;
        }
        if flexible {
            at += 1; // no tagged fields
        }
        Some(Shape {
            lens,
            arrays,
            flexible,
            size: at,
        })
    }

    /// Whether the partition at `at` of `b` has this layout: every byte of it in the frame,
    /// each length as expected, no tagged fields. What the full reading of it would find.
    #[inline]
    fn fits(&self, b: &[u8], at: usize) -> bool {
        let Some(p) = b.get(at..at + self.size) else {
            return false;
        };
        let lens = &self.lens[..self.arrays];
        if self.flexible {
            lens.iter().all(|&(off, n)| u32::from(p[off]) == n) && p[self.size - 1] == 0
        } else {
            lens.iter()
                .all(|&(off, n)| p[off..off + 4] == n.to_be_bytes())
        }
    }
}

/// The fewest bytes an element can take: array counts are checked against them, so a count
/// the frame cannot hold is refused before anything is reserved for it.
fn min_broker(v: i16) -> usize {
    let (s, tags) = if v >= FLEXIBLE { (1, 1) } else { (2, 0) };
    4 + s + 4 + if v >= 1 { s } else { 0 } + tags
}

fn min_topic(v: i16) -> usize {
    let (s, a, tags) = if v >= FLEXIBLE { (1, 1, 1) } else { (2, 4, 0) };
    2 + s
        + if v >= 10 { 16 } else { 0 }
        + usize::from(v >= 1)
        + a
        + if v >= 8 { 4 } else { 0 }
        + tags
}

fn min_partition(v: i16) -> usize {
    let (a, tags) = if v >= FLEXIBLE { (1, 1) } else { (4, 0) };
    2 + 4 + 4 + if v >= 7 { 4 } else { 0 } + 2 * a + if v >= 5 { a } else { 0 } + tags
}

/// Reads a frame in place. Every read checks the bytes left; `at` never passes the end.
#[derive(Clone, Copy)]
struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
    /// Compact lengths (unsigned varint N+1, 0 = null) and tagged fields.
    flexible: bool,
    /// Cleared at the first byte kafka-protocol would not write back the same.
    canonical: bool,
}

impl<'a> Cursor<'a> {
    #[inline]
    fn left(&self) -> usize {
        self.b.len() - self.at
    }

    #[inline]
    fn bytes<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], Malformed> {
        let Some(bytes) = self.b[self.at..].first_chunk::<N>() else {
            return Err(Malformed::Truncated { field, at: self.at });
        };
        self.at += N;
        Ok(*bytes)
    }

    #[inline]
    fn i16(&mut self, field: &'static str) -> Result<i16, Malformed> {
        self.bytes(field).map(i16::from_be_bytes)
    }

    #[inline]
    fn i32(&mut self, field: &'static str) -> Result<i32, Malformed> {
        self.bytes(field).map(i32::from_be_bytes)
    }

    #[inline]
    fn skip(&mut self, n: usize, field: &'static str) -> Result<(), Malformed> {
        if n > self.left() {
            return Err(Malformed::Truncated { field, at: self.at });
        }
        self.at += n;
        Ok(())
    }

    /// An unsigned varint read as kafka-protocol reads it: at most five bytes, the bits beyond
    /// 32 dropped. Not canonical unless it is the shortest encoding of its value.
    #[inline]
    fn uvarint(&mut self, field: &'static str) -> Result<u32, Malformed> {
        match self.b.get(self.at) {
            Some(&b) if b < 0x80 => {
                self.at += 1;
                Ok(u32::from(b))
            }
            _ => {
                let (value, after) = self.long_uvarint(field)?;
                *self = after;
                Ok(value)
            }
        }
    }

    /// The slow paths take the cursor by value and give it back, so that the hot loop's cursor
    /// never has its address taken and stays in registers (measured: a third of the walk).
    #[inline(never)]
    fn long_uvarint(mut self, field: &'static str) -> Result<(u32, Cursor<'a>), Malformed> {
        let start = self.at;
        let mut value: u32 = 0;
        for i in 0..5 {
            let [b] = self.bytes(field)?;
            value |= u32::from(b & 0x7f) << (i * 7);
            if b < 0x80 {
                break;
            }
        }
        let read = self.at - start;
        // A fifth byte carries 4 bits; more (or a continuation bit) is lost on reading.
        self.canonical &= read == uvarint_len(value) && (read < 5 || self.b[self.at - 1] <= 0x0f);
        Ok((value, self))
    }

    /// A length prefix: compact (N+1, 0 = null) when flexible, else INT16 for strings and
    /// INT32 for arrays (-1 = null). `None` for null.
    #[inline]
    fn length(&mut self, field: &'static str, wide: bool) -> Result<Option<usize>, Malformed> {
        let at = self.at;
        let n: i64 = if self.flexible {
            i64::from(self.uvarint(field)?) - 1
        } else if wide {
            i64::from(self.i32(field)?)
        } else {
            i64::from(self.i16(field)?)
        };
        match n {
            -1 => Ok(None),
            n if n < -1 => Err(Malformed::Negative { field, at, len: n }),
            n => Ok(Some(n as usize)),
        }
    }

    /// A string, checked to be UTF-8 (as kafka-protocol checks it). `None` for null.
    #[inline]
    fn string(
        &mut self,
        field: &'static str,
        nullable: bool,
    ) -> Result<Option<&'a str>, Malformed> {
        let at = self.at;
        let Some(n) = self.length(field, false)? else {
            return if nullable {
                Ok(None)
            } else {
                Err(Malformed::Null { field, at })
            };
        };
        if n > self.left() {
            return Err(self.too_long(field, at, n));
        }
        let s = std::str::from_utf8(&self.b[self.at..self.at + n])
            .map_err(|_| Malformed::NotUtf8 { field, at })?;
        self.at += n;
        Ok(Some(s))
    }

    /// A non-nullable array's element count, each element taking at least `min` bytes.
    #[inline]
    fn count(&mut self, field: &'static str, min: usize) -> Result<usize, Malformed> {
        let at = self.at;
        let n = self
            .length(field, true)?
            .ok_or(Malformed::Null { field, at })?;
        if n.saturating_mul(min) > self.left() {
            return Err(self.too_long(field, at, n));
        }
        Ok(n)
    }

    /// An int32 array, skipped; its length.
    #[inline]
    fn int32s(&mut self, field: &'static str) -> Result<usize, Malformed> {
        let n = self.count(field, 4)?;
        self.at += n * 4;
        Ok(n)
    }

    /// A tagged field section: Metadata answers define no tagged fields, so all are skipped.
    #[inline]
    fn tagged(&mut self) -> Result<(), Malformed> {
        if self.b.get(self.at) == Some(&0) {
            self.at += 1;
            return Ok(());
        }
        *self = self.tagged_fields()?;
        Ok(())
    }

    #[inline(never)]
    fn tagged_fields(mut self) -> Result<Cursor<'a>, Malformed> {
        const FIELD: &str = "tagged fields";
        let at = self.at;
        let n = self.uvarint(FIELD)? as usize;
        if n == 0 {
            return Ok(self);
        }
        // A tagged field takes at least two bytes (tag, size).
        if n > self.left() / 2 {
            return Err(self.too_long(FIELD, at, n));
        }
        let mut last = None;
        for _ in 0..n {
            let at = self.at;
            let tag = self.uvarint(FIELD)?;
            if tag > i32::MAX as u32 {
                // As `codec::sanity` refuses it: kafka-protocol could not encode it again.
                return Err(Malformed::Tag { at, tag });
            }
            // kafka-protocol keeps tagged fields in a map and writes them in ascending order.
            self.canonical &= last.is_none_or(|l| tag > l);
            last = Some(tag);
            let at = self.at;
            let size = self.uvarint(FIELD)? as usize;
            if size > self.left() {
                return Err(self.too_long(FIELD, at, size));
            }
            self.at += size;
        }
        Ok(self)
    }

    fn too_long(&self, field: &'static str, at: usize, len: usize) -> Malformed {
        Malformed::TooLong {
            field,
            at,
            len: len as u64,
            left: self.left(),
        }
    }

    /// One broker, read into the struct kafka-protocol would decode (strings and tagged fields
    /// as slices of `frame`). By value, as the slow paths above.
    fn broker(
        mut self,
        frame: &Bytes,
        v: i16,
    ) -> Result<(MetadataResponseBroker, Cursor<'a>), Malformed> {
        let node_id = self.i32("node_id")?;
        let host = self.str_bytes(frame, "host", false)?.unwrap_or_default();
        let port = self.i32("port")?;
        let rack = if v >= 1 {
            self.str_bytes(frame, "rack", true)?
        } else {
            None
        };
        let mut b = MetadataResponseBroker::default()
            .with_node_id(BrokerId(node_id))
            .with_host(host)
            .with_port(port)
            .with_rack(rack);
        if self.flexible {
            let start = self.at;
            self.tagged()?;
            // The section again, now known to be sound: each field kept as kafka-protocol
            // keeps it (a repeated tag: the last one).
            let mut t = Cursor {
                b: self.b,
                at: start,
                flexible: true,
                canonical: true,
            };
            for _ in 0..t.uvarint("tagged fields")? {
                let tag = t.uvarint("tagged fields")?;
                let size = t.uvarint("tagged fields")? as usize;
                b.unknown_tagged_fields
                    .insert(tag as i32, frame.slice(t.at..t.at + size));
                t.at += size;
            }
        }
        Ok((b, self))
    }

    fn str_bytes(
        &mut self,
        frame: &Bytes,
        field: &'static str,
        nullable: bool,
    ) -> Result<Option<StrBytes>, Malformed> {
        let start = self.at;
        let Some(s) = self.string(field, nullable)? else {
            return Ok(None);
        };
        let bytes = frame.slice(self.at - s.len()..self.at);
        Ok(Some(
            StrBytes::from_utf8(bytes).map_err(|_| Malformed::NotUtf8 { field, at: start })?,
        ))
    }
}

#[cfg(test)]
mod tests;
