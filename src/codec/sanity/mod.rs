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
//! ListOffsets, OffsetForLeaderEpoch, DeleteRecords), their responses, the responses fairlead
//! rewrites or asks for itself (Metadata, FindCoordinator, DescribeCluster, ApiVersions,
//! ShareFetch, ShareAcknowledge, SaslHandshake), and both directions of the group- and
//! transaction-coordinator APIs, decoded to absorb coordinator moves (FindCoordinator's request;
//! JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch,
//! ConsumerGroupHeartbeat, ShareGroupHeartbeat; TxnOffsetCommit, InitProducerId,
//! AddPartitionsToTxn, AddOffsetsToTxn, EndTxn), at every version `kafka-protocol` 0.18 decodes.
//! They follow Apache Kafka's message definitions as `kafka-protocol` 0.18 implements them
//! (`src/messages/*.rs`); the tests below hold them to it: bytes generated from a schema must
//! decode with `kafka-protocol` to the last byte, its re-encoding must walk to exactly its
//! length, at every version, and the schema version ranges must equal the crate's, so upgrading
//! the crate fails a test until the tables are updated.
//!
//! Record batches have the same hazard one level down (`RecordBatchDecoder` reserves room for a
//! batch's record count and each record's header count): [`record_batch`] and [`record_shapes`]
//! check them for the one place fairlead decodes records, `router::written`, and the latter
//! tells that place what the decoder reads of each record but does not give back.

//!
//! The parts: [`schema`] holds the message tables, `walker` walks a body along one, and
//! [`batch`] checks record batches.

mod batch;
mod schema;
mod walker;

use kafka_protocol::messages::ApiKey;

pub use batch::{record_batch, record_shapes, BatchHeader, RecordShape};
use schema::SCHEMAS;
use walker::Walker;

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
    let mut w = Walker::new(body, version, version >= schema.flexible);
    w.fields(schema.root)?;
    Ok(Some(w.at))
}

#[cfg(test)]
mod tests;
