//! The message schemas the walk follows: every message fairlead decodes, at every version
//! `kafka-protocol` decodes, as `kafka-protocol` implements Apache Kafka's message definitions.
//!
//! The tables are generated, not written by hand: `tools/sanity_schemas.py` runs each struct's
//! generated `decode()` in kafka-protocol's sources at every version and prints the tables and
//! the `SCHEMAS` entries for the messages it is given, e.g.
//! `python3 tools/sanity_schemas.py --fmt JoinGroupRequest JoinGroupResponse` (its docstring says
//! more). To add a message or follow a crate upgrade, run it, paste its output here, and add the
//! message's type to `with_type!` in the tests. Its output matches these tables but for the
//! names of the three nested Metadata tables (`METADATA_RESPONSE_BROKER` and the like, which it
//! calls `METADATA_RESPONSE_METADATA_RESPONSE_BROKER`, after the struct `MetadataResponseBroker`).

use kafka_protocol::messages::ApiKey;

use super::Direction;

// ---------------------------------------------------------------------------------------------
// Schemas
// ---------------------------------------------------------------------------------------------

/// A field's wire type. Lengths are nullable everywhere: the walk treats null as empty.
#[derive(Clone, Copy)]
pub(super) enum Ty {
    /// INT8..INT64, FLOAT64, BOOL (1), UUID (16): this many bytes.
    Fixed(usize),
    /// STRING: INT16 length, or compact.
    Str,
    /// BYTES and RECORDS: INT32 length, or compact.
    Bytes,
    /// A nested struct, read in place.
    Struct(&'static [Field]),
    /// A nullable nested struct (`kafka-protocol`'s `OptionStruct`): an INT8 marker, then the
    /// struct only if the marker is 1 (any other value reads as null).
    NullableStruct(&'static [Field]),
    /// An array of structs.
    Structs(&'static [Field]),
    /// An array of fixed-width scalars of this width.
    Fixeds(usize),
    /// An array of strings.
    Strs,
}

pub(super) struct Field {
    /// For errors: which length was implausible.
    pub(super) name: &'static str,
    pub(super) ty: Ty,
    /// First and last version the field is in.
    pub(super) since: i16,
    pub(super) until: i16,
    /// Tagged fields (flexible versions only) are found by tag in the struct's tagged section.
    pub(super) tag: Option<u32>,
}

impl Field {
    pub(super) fn in_version(&self, version: i16) -> bool {
        self.since <= version && version <= self.until
    }
}

pub(super) const fn f(name: &'static str, ty: Ty, since: i16, until: i16) -> Field {
    Field {
        name,
        ty,
        since,
        until,
        tag: None,
    }
}

pub(super) const fn tagged(name: &'static str, tag: u32, ty: Ty, since: i16, until: i16) -> Field {
    Field {
        name,
        ty,
        since,
        until,
        tag: Some(tag),
    }
}

pub(super) struct Schema {
    pub(super) api: ApiKey,
    pub(super) dir: Direction,
    pub(super) min: i16,
    pub(super) max: i16,
    /// First flexible version (`i16::MAX`: never).
    pub(super) flexible: i16,
    pub(super) root: &'static [Field],
}

use Ty::{Bytes, Fixed, Fixeds, NullableStruct, Str, Strs, Struct, Structs};

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
// FindCoordinatorRequest: versions 0-6, flexible from 3.
const FIND_COORDINATOR_REQUEST: &[Field] = &[
    f("key", Str, 0, 3),
    f("key_type", Fixed(1), 1, 6),
    f("coordinator_keys", Strs, 4, 6),
];
// JoinGroupRequest: versions 0-9, flexible from 6.
const JOIN_GROUP_REQUEST: &[Field] = &[
    f("group_id", Str, 0, 9),
    f("session_timeout_ms", Fixed(4), 0, 9),
    f("rebalance_timeout_ms", Fixed(4), 1, 9),
    f("member_id", Str, 0, 9),
    f("group_instance_id", Str, 5, 9),
    f("protocol_type", Str, 0, 9),
    f(
        "protocols",
        Structs(JOIN_GROUP_REQUEST_JOIN_GROUP_REQUEST_PROTOCOL),
        0,
        9,
    ),
    f("reason", Str, 8, 9),
];
const JOIN_GROUP_REQUEST_JOIN_GROUP_REQUEST_PROTOCOL: &[Field] =
    &[f("name", Str, 0, 9), f("metadata", Bytes, 0, 9)];
// JoinGroupResponse: versions 0-9, flexible from 6.
const JOIN_GROUP_RESPONSE: &[Field] = &[
    f("throttle_time_ms", Fixed(4), 2, 9),
    f("error_code", Fixed(2), 0, 9),
    f("generation_id", Fixed(4), 0, 9),
    f("protocol_type", Str, 7, 9),
    f("protocol_name", Str, 0, 9),
    f("leader", Str, 0, 9),
    f("skip_assignment", Fixed(1), 9, 9),
    f("member_id", Str, 0, 9),
    f(
        "members",
        Structs(JOIN_GROUP_RESPONSE_JOIN_GROUP_RESPONSE_MEMBER),
        0,
        9,
    ),
];
const JOIN_GROUP_RESPONSE_JOIN_GROUP_RESPONSE_MEMBER: &[Field] = &[
    f("member_id", Str, 0, 9),
    f("group_instance_id", Str, 5, 9),
    f("metadata", Bytes, 0, 9),
];
// SyncGroupRequest: versions 0-5, flexible from 4.
const SYNC_GROUP_REQUEST: &[Field] = &[
    f("group_id", Str, 0, 5),
    f("generation_id", Fixed(4), 0, 5),
    f("member_id", Str, 0, 5),
    f("group_instance_id", Str, 3, 5),
    f("protocol_type", Str, 5, 5),
    f("protocol_name", Str, 5, 5),
    f(
        "assignments",
        Structs(SYNC_GROUP_REQUEST_SYNC_GROUP_REQUEST_ASSIGNMENT),
        0,
        5,
    ),
];
const SYNC_GROUP_REQUEST_SYNC_GROUP_REQUEST_ASSIGNMENT: &[Field] =
    &[f("member_id", Str, 0, 5), f("assignment", Bytes, 0, 5)];
// SyncGroupResponse: versions 0-5, flexible from 4.
const SYNC_GROUP_RESPONSE: &[Field] = &[
    f("throttle_time_ms", Fixed(4), 1, 5),
    f("error_code", Fixed(2), 0, 5),
    f("protocol_type", Str, 5, 5),
    f("protocol_name", Str, 5, 5),
    f("assignment", Bytes, 0, 5),
];
// HeartbeatRequest: versions 0-4, flexible from 4.
const HEARTBEAT_REQUEST: &[Field] = &[
    f("group_id", Str, 0, 4),
    f("generation_id", Fixed(4), 0, 4),
    f("member_id", Str, 0, 4),
    f("group_instance_id", Str, 3, 4),
];
// HeartbeatResponse: versions 0-4, flexible from 4.
const HEARTBEAT_RESPONSE: &[Field] = &[
    f("throttle_time_ms", Fixed(4), 1, 4),
    f("error_code", Fixed(2), 0, 4),
];
// LeaveGroupRequest: versions 0-5, flexible from 4.
const LEAVE_GROUP_REQUEST: &[Field] = &[
    f("group_id", Str, 0, 5),
    f("member_id", Str, 0, 2),
    f(
        "members",
        Structs(LEAVE_GROUP_REQUEST_MEMBER_IDENTITY),
        3,
        5,
    ),
];
const LEAVE_GROUP_REQUEST_MEMBER_IDENTITY: &[Field] = &[
    f("member_id", Str, 3, 5),
    f("group_instance_id", Str, 3, 5),
    f("reason", Str, 5, 5),
];
// LeaveGroupResponse: versions 0-5, flexible from 4.
const LEAVE_GROUP_RESPONSE: &[Field] = &[
    f("throttle_time_ms", Fixed(4), 1, 5),
    f("error_code", Fixed(2), 0, 5),
    f(
        "members",
        Structs(LEAVE_GROUP_RESPONSE_MEMBER_RESPONSE),
        3,
        5,
    ),
];
const LEAVE_GROUP_RESPONSE_MEMBER_RESPONSE: &[Field] = &[
    f("member_id", Str, 3, 5),
    f("group_instance_id", Str, 3, 5),
    f("error_code", Fixed(2), 3, 5),
];
// OffsetCommitRequest: versions 2-9, flexible from 8.
const OFFSET_COMMIT_REQUEST: &[Field] = &[
    f("group_id", Str, 2, 9),
    f("generation_id_or_member_epoch", Fixed(4), 2, 9),
    f("member_id", Str, 2, 9),
    f("group_instance_id", Str, 7, 9),
    f("retention_time_ms", Fixed(8), 2, 4),
    f(
        "topics",
        Structs(OFFSET_COMMIT_REQUEST_OFFSET_COMMIT_REQUEST_TOPIC),
        2,
        9,
    ),
];
const OFFSET_COMMIT_REQUEST_OFFSET_COMMIT_REQUEST_PARTITION: &[Field] = &[
    f("partition_index", Fixed(4), 2, 9),
    f("committed_offset", Fixed(8), 2, 9),
    f("committed_leader_epoch", Fixed(4), 6, 9),
    f("committed_metadata", Str, 2, 9),
];
const OFFSET_COMMIT_REQUEST_OFFSET_COMMIT_REQUEST_TOPIC: &[Field] = &[
    f("name", Str, 2, 9),
    f(
        "partitions",
        Structs(OFFSET_COMMIT_REQUEST_OFFSET_COMMIT_REQUEST_PARTITION),
        2,
        9,
    ),
];
// OffsetCommitResponse: versions 2-10, flexible from 8.
const OFFSET_COMMIT_RESPONSE: &[Field] = &[
    f("throttle_time_ms", Fixed(4), 3, 10),
    f(
        "topics",
        Structs(OFFSET_COMMIT_RESPONSE_OFFSET_COMMIT_RESPONSE_TOPIC),
        2,
        10,
    ),
];
const OFFSET_COMMIT_RESPONSE_OFFSET_COMMIT_RESPONSE_PARTITION: &[Field] = &[
    f("partition_index", Fixed(4), 2, 10),
    f("error_code", Fixed(2), 2, 10),
];
const OFFSET_COMMIT_RESPONSE_OFFSET_COMMIT_RESPONSE_TOPIC: &[Field] = &[
    f("name", Str, 2, 9),
    f("topic_id", Fixed(16), 10, 10),
    f(
        "partitions",
        Structs(OFFSET_COMMIT_RESPONSE_OFFSET_COMMIT_RESPONSE_PARTITION),
        2,
        10,
    ),
];
// OffsetFetchRequest: versions 1-9, flexible from 6.
const OFFSET_FETCH_REQUEST: &[Field] = &[
    f("group_id", Str, 1, 7),
    f(
        "topics",
        Structs(OFFSET_FETCH_REQUEST_OFFSET_FETCH_REQUEST_TOPIC),
        1,
        7,
    ),
    f(
        "groups",
        Structs(OFFSET_FETCH_REQUEST_OFFSET_FETCH_REQUEST_GROUP),
        8,
        9,
    ),
    f("require_stable", Fixed(1), 7, 9),
];
const OFFSET_FETCH_REQUEST_OFFSET_FETCH_REQUEST_GROUP: &[Field] = &[
    f("group_id", Str, 8, 9),
    f("member_id", Str, 9, 9),
    f("member_epoch", Fixed(4), 9, 9),
    f(
        "topics",
        Structs(OFFSET_FETCH_REQUEST_OFFSET_FETCH_REQUEST_TOPICS),
        8,
        9,
    ),
];
const OFFSET_FETCH_REQUEST_OFFSET_FETCH_REQUEST_TOPIC: &[Field] = &[
    f("name", Str, 1, 7),
    f("partition_indexes", Fixeds(4), 1, 7),
];
const OFFSET_FETCH_REQUEST_OFFSET_FETCH_REQUEST_TOPICS: &[Field] = &[
    f("name", Str, 8, 9),
    f("partition_indexes", Fixeds(4), 8, 9),
];
// OffsetFetchResponse: versions 1-10, flexible from 6.
const OFFSET_FETCH_RESPONSE: &[Field] = &[
    f("throttle_time_ms", Fixed(4), 3, 10),
    f(
        "topics",
        Structs(OFFSET_FETCH_RESPONSE_OFFSET_FETCH_RESPONSE_TOPIC),
        1,
        7,
    ),
    f("error_code", Fixed(2), 2, 7),
    f(
        "groups",
        Structs(OFFSET_FETCH_RESPONSE_OFFSET_FETCH_RESPONSE_GROUP),
        8,
        10,
    ),
];
const OFFSET_FETCH_RESPONSE_OFFSET_FETCH_RESPONSE_GROUP: &[Field] = &[
    f("group_id", Str, 8, 10),
    f(
        "topics",
        Structs(OFFSET_FETCH_RESPONSE_OFFSET_FETCH_RESPONSE_TOPICS),
        8,
        10,
    ),
    f("error_code", Fixed(2), 8, 10),
];
const OFFSET_FETCH_RESPONSE_OFFSET_FETCH_RESPONSE_PARTITION: &[Field] = &[
    f("partition_index", Fixed(4), 1, 7),
    f("committed_offset", Fixed(8), 1, 7),
    f("committed_leader_epoch", Fixed(4), 5, 7),
    f("metadata", Str, 1, 7),
    f("error_code", Fixed(2), 1, 7),
];
const OFFSET_FETCH_RESPONSE_OFFSET_FETCH_RESPONSE_PARTITIONS: &[Field] = &[
    f("partition_index", Fixed(4), 8, 10),
    f("committed_offset", Fixed(8), 8, 10),
    f("committed_leader_epoch", Fixed(4), 8, 10),
    f("metadata", Str, 8, 10),
    f("error_code", Fixed(2), 8, 10),
];
const OFFSET_FETCH_RESPONSE_OFFSET_FETCH_RESPONSE_TOPIC: &[Field] = &[
    f("name", Str, 1, 7),
    f(
        "partitions",
        Structs(OFFSET_FETCH_RESPONSE_OFFSET_FETCH_RESPONSE_PARTITION),
        1,
        7,
    ),
];
const OFFSET_FETCH_RESPONSE_OFFSET_FETCH_RESPONSE_TOPICS: &[Field] = &[
    f("name", Str, 8, 9),
    f("topic_id", Fixed(16), 10, 10),
    f(
        "partitions",
        Structs(OFFSET_FETCH_RESPONSE_OFFSET_FETCH_RESPONSE_PARTITIONS),
        8,
        10,
    ),
];
// ConsumerGroupHeartbeatRequest: versions 0-1, flexible from 0.
const CONSUMER_GROUP_HEARTBEAT_REQUEST: &[Field] = &[
    f("group_id", Str, 0, 1),
    f("member_id", Str, 0, 1),
    f("member_epoch", Fixed(4), 0, 1),
    f("instance_id", Str, 0, 1),
    f("rack_id", Str, 0, 1),
    f("rebalance_timeout_ms", Fixed(4), 0, 1),
    f("subscribed_topic_names", Strs, 0, 1),
    f("subscribed_topic_regex", Str, 1, 1),
    f("server_assignor", Str, 0, 1),
    f(
        "topic_partitions",
        Structs(CONSUMER_GROUP_HEARTBEAT_REQUEST_TOPIC_PARTITIONS),
        0,
        1,
    ),
];
const CONSUMER_GROUP_HEARTBEAT_REQUEST_TOPIC_PARTITIONS: &[Field] = &[
    f("topic_id", Fixed(16), 0, 1),
    f("partitions", Fixeds(4), 0, 1),
];
// ConsumerGroupHeartbeatResponse: versions 0-1, flexible from 0.
const CONSUMER_GROUP_HEARTBEAT_RESPONSE_ASSIGNMENT: &[Field] = &[f(
    "topic_partitions",
    Structs(CONSUMER_GROUP_HEARTBEAT_RESPONSE_TOPIC_PARTITIONS),
    0,
    1,
)];
const CONSUMER_GROUP_HEARTBEAT_RESPONSE: &[Field] = &[
    f("throttle_time_ms", Fixed(4), 0, 1),
    f("error_code", Fixed(2), 0, 1),
    f("error_message", Str, 0, 1),
    f("member_id", Str, 0, 1),
    f("member_epoch", Fixed(4), 0, 1),
    f("heartbeat_interval_ms", Fixed(4), 0, 1),
    f(
        "assignment",
        NullableStruct(CONSUMER_GROUP_HEARTBEAT_RESPONSE_ASSIGNMENT),
        0,
        1,
    ),
];
const CONSUMER_GROUP_HEARTBEAT_RESPONSE_TOPIC_PARTITIONS: &[Field] = &[
    f("topic_id", Fixed(16), 0, 1),
    f("partitions", Fixeds(4), 0, 1),
];
// TxnOffsetCommitRequest: versions 0-5, flexible from 3.
const TXN_OFFSET_COMMIT_REQUEST: &[Field] = &[
    f("transactional_id", Str, 0, 5),
    f("group_id", Str, 0, 5),
    f("producer_id", Fixed(8), 0, 5),
    f("producer_epoch", Fixed(2), 0, 5),
    f("generation_id", Fixed(4), 3, 5),
    f("member_id", Str, 3, 5),
    f("group_instance_id", Str, 3, 5),
    f(
        "topics",
        Structs(TXN_OFFSET_COMMIT_REQUEST_TXN_OFFSET_COMMIT_REQUEST_TOPIC),
        0,
        5,
    ),
];
const TXN_OFFSET_COMMIT_REQUEST_TXN_OFFSET_COMMIT_REQUEST_PARTITION: &[Field] = &[
    f("partition_index", Fixed(4), 0, 5),
    f("committed_offset", Fixed(8), 0, 5),
    f("committed_leader_epoch", Fixed(4), 2, 5),
    f("committed_metadata", Str, 0, 5),
];
const TXN_OFFSET_COMMIT_REQUEST_TXN_OFFSET_COMMIT_REQUEST_TOPIC: &[Field] = &[
    f("name", Str, 0, 5),
    f(
        "partitions",
        Structs(TXN_OFFSET_COMMIT_REQUEST_TXN_OFFSET_COMMIT_REQUEST_PARTITION),
        0,
        5,
    ),
];
// TxnOffsetCommitResponse: versions 0-5, flexible from 3.
const TXN_OFFSET_COMMIT_RESPONSE: &[Field] = &[
    f("throttle_time_ms", Fixed(4), 0, 5),
    f(
        "topics",
        Structs(TXN_OFFSET_COMMIT_RESPONSE_TXN_OFFSET_COMMIT_RESPONSE_TOPIC),
        0,
        5,
    ),
];
const TXN_OFFSET_COMMIT_RESPONSE_TXN_OFFSET_COMMIT_RESPONSE_PARTITION: &[Field] = &[
    f("partition_index", Fixed(4), 0, 5),
    f("error_code", Fixed(2), 0, 5),
];
const TXN_OFFSET_COMMIT_RESPONSE_TXN_OFFSET_COMMIT_RESPONSE_TOPIC: &[Field] = &[
    f("name", Str, 0, 5),
    f(
        "partitions",
        Structs(TXN_OFFSET_COMMIT_RESPONSE_TXN_OFFSET_COMMIT_RESPONSE_PARTITION),
        0,
        5,
    ),
];
// InitProducerIdRequest: versions 0-5, flexible from 2.
const INIT_PRODUCER_ID_REQUEST: &[Field] = &[
    f("transactional_id", Str, 0, 5),
    f("transaction_timeout_ms", Fixed(4), 0, 5),
    f("producer_id", Fixed(8), 3, 5),
    f("producer_epoch", Fixed(2), 3, 5),
];
// InitProducerIdResponse: versions 0-6, flexible from 2.
const INIT_PRODUCER_ID_RESPONSE: &[Field] = &[
    f("throttle_time_ms", Fixed(4), 0, 6),
    f("error_code", Fixed(2), 0, 6),
    f("producer_id", Fixed(8), 0, 6),
    f("producer_epoch", Fixed(2), 0, 6),
    f("ongoing_txn_producer_id", Fixed(8), 6, 6),
    f("ongoing_txn_producer_epoch", Fixed(2), 6, 6),
];
// AddPartitionsToTxnRequest: versions 0-5, flexible from 3.
const ADD_PARTITIONS_TO_TXN_REQUEST: &[Field] = &[
    f(
        "transactions",
        Structs(ADD_PARTITIONS_TO_TXN_REQUEST_ADD_PARTITIONS_TO_TXN_TRANSACTION),
        4,
        5,
    ),
    f("v3_and_below_transactional_id", Str, 0, 3),
    f("v3_and_below_producer_id", Fixed(8), 0, 3),
    f("v3_and_below_producer_epoch", Fixed(2), 0, 3),
    f(
        "v3_and_below_topics",
        Structs(ADD_PARTITIONS_TO_TXN_REQUEST_ADD_PARTITIONS_TO_TXN_TOPIC),
        0,
        3,
    ),
];
const ADD_PARTITIONS_TO_TXN_REQUEST_ADD_PARTITIONS_TO_TXN_TOPIC: &[Field] =
    &[f("name", Str, 0, 5), f("partitions", Fixeds(4), 0, 5)];
const ADD_PARTITIONS_TO_TXN_REQUEST_ADD_PARTITIONS_TO_TXN_TRANSACTION: &[Field] = &[
    f("transactional_id", Str, 4, 5),
    f("producer_id", Fixed(8), 4, 5),
    f("producer_epoch", Fixed(2), 4, 5),
    f("verify_only", Fixed(1), 4, 5),
    f(
        "topics",
        Structs(ADD_PARTITIONS_TO_TXN_REQUEST_ADD_PARTITIONS_TO_TXN_TOPIC),
        4,
        5,
    ),
];
// AddPartitionsToTxnResponse: versions 0-5, flexible from 3.
const ADD_PARTITIONS_TO_TXN_RESPONSE_ADD_PARTITIONS_TO_TXN_PARTITION_RESULT: &[Field] = &[
    f("partition_index", Fixed(4), 0, 5),
    f("partition_error_code", Fixed(2), 0, 5),
];
const ADD_PARTITIONS_TO_TXN_RESPONSE: &[Field] = &[
    f("throttle_time_ms", Fixed(4), 0, 5),
    f("error_code", Fixed(2), 4, 5),
    f(
        "results_by_transaction",
        Structs(ADD_PARTITIONS_TO_TXN_RESPONSE_ADD_PARTITIONS_TO_TXN_RESULT),
        4,
        5,
    ),
    f(
        "results_by_topic_v3_and_below",
        Structs(ADD_PARTITIONS_TO_TXN_RESPONSE_ADD_PARTITIONS_TO_TXN_TOPIC_RESULT),
        0,
        3,
    ),
];
const ADD_PARTITIONS_TO_TXN_RESPONSE_ADD_PARTITIONS_TO_TXN_RESULT: &[Field] = &[
    f("transactional_id", Str, 4, 5),
    f(
        "topic_results",
        Structs(ADD_PARTITIONS_TO_TXN_RESPONSE_ADD_PARTITIONS_TO_TXN_TOPIC_RESULT),
        4,
        5,
    ),
];
const ADD_PARTITIONS_TO_TXN_RESPONSE_ADD_PARTITIONS_TO_TXN_TOPIC_RESULT: &[Field] = &[
    f("name", Str, 0, 5),
    f(
        "results_by_partition",
        Structs(ADD_PARTITIONS_TO_TXN_RESPONSE_ADD_PARTITIONS_TO_TXN_PARTITION_RESULT),
        0,
        5,
    ),
];
// AddOffsetsToTxnRequest: versions 0-4, flexible from 3.
const ADD_OFFSETS_TO_TXN_REQUEST: &[Field] = &[
    f("transactional_id", Str, 0, 4),
    f("producer_id", Fixed(8), 0, 4),
    f("producer_epoch", Fixed(2), 0, 4),
    f("group_id", Str, 0, 4),
];
// AddOffsetsToTxnResponse: versions 0-4, flexible from 3.
const ADD_OFFSETS_TO_TXN_RESPONSE: &[Field] = &[
    f("throttle_time_ms", Fixed(4), 0, 4),
    f("error_code", Fixed(2), 0, 4),
];
// EndTxnRequest: versions 0-5, flexible from 3.
const END_TXN_REQUEST: &[Field] = &[
    f("transactional_id", Str, 0, 5),
    f("producer_id", Fixed(8), 0, 5),
    f("producer_epoch", Fixed(2), 0, 5),
    f("committed", Fixed(1), 0, 5),
];
// EndTxnResponse: versions 0-5, flexible from 3.
const END_TXN_RESPONSE: &[Field] = &[
    f("throttle_time_ms", Fixed(4), 0, 5),
    f("error_code", Fixed(2), 0, 5),
    f("producer_id", Fixed(8), 5, 5),
    f("producer_epoch", Fixed(2), 5, 5),
];
// ShareGroupHeartbeatRequest: versions 1-1, flexible from 1.
const SHARE_GROUP_HEARTBEAT_REQUEST: &[Field] = &[
    f("group_id", Str, 1, 1),
    f("member_id", Str, 1, 1),
    f("member_epoch", Fixed(4), 1, 1),
    f("rack_id", Str, 1, 1),
    f("subscribed_topic_names", Strs, 1, 1),
];
// ShareGroupHeartbeatResponse: versions 1-1, flexible from 1.
const SHARE_GROUP_HEARTBEAT_RESPONSE_ASSIGNMENT: &[Field] = &[f(
    "topic_partitions",
    Structs(SHARE_GROUP_HEARTBEAT_RESPONSE_TOPIC_PARTITIONS),
    1,
    1,
)];
const SHARE_GROUP_HEARTBEAT_RESPONSE: &[Field] = &[
    f("throttle_time_ms", Fixed(4), 1, 1),
    f("error_code", Fixed(2), 1, 1),
    f("error_message", Str, 1, 1),
    f("member_id", Str, 1, 1),
    f("member_epoch", Fixed(4), 1, 1),
    f("heartbeat_interval_ms", Fixed(4), 1, 1),
    f(
        "assignment",
        NullableStruct(SHARE_GROUP_HEARTBEAT_RESPONSE_ASSIGNMENT),
        1,
        1,
    ),
];
const SHARE_GROUP_HEARTBEAT_RESPONSE_TOPIC_PARTITIONS: &[Field] = &[
    f("topic_id", Fixed(16), 1, 1),
    f("partitions", Fixeds(4), 1, 1),
];
pub(super) const SCHEMAS: &[Schema] = &[
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
    Schema {
        api: ApiKey::FindCoordinator,
        dir: Direction::Request,
        min: 0,
        max: 6,
        flexible: 3,
        root: FIND_COORDINATOR_REQUEST,
    },
    Schema {
        api: ApiKey::JoinGroup,
        dir: Direction::Request,
        min: 0,
        max: 9,
        flexible: 6,
        root: JOIN_GROUP_REQUEST,
    },
    Schema {
        api: ApiKey::JoinGroup,
        dir: Direction::Response,
        min: 0,
        max: 9,
        flexible: 6,
        root: JOIN_GROUP_RESPONSE,
    },
    Schema {
        api: ApiKey::SyncGroup,
        dir: Direction::Request,
        min: 0,
        max: 5,
        flexible: 4,
        root: SYNC_GROUP_REQUEST,
    },
    Schema {
        api: ApiKey::SyncGroup,
        dir: Direction::Response,
        min: 0,
        max: 5,
        flexible: 4,
        root: SYNC_GROUP_RESPONSE,
    },
    Schema {
        api: ApiKey::Heartbeat,
        dir: Direction::Request,
        min: 0,
        max: 4,
        flexible: 4,
        root: HEARTBEAT_REQUEST,
    },
    Schema {
        api: ApiKey::Heartbeat,
        dir: Direction::Response,
        min: 0,
        max: 4,
        flexible: 4,
        root: HEARTBEAT_RESPONSE,
    },
    Schema {
        api: ApiKey::LeaveGroup,
        dir: Direction::Request,
        min: 0,
        max: 5,
        flexible: 4,
        root: LEAVE_GROUP_REQUEST,
    },
    Schema {
        api: ApiKey::LeaveGroup,
        dir: Direction::Response,
        min: 0,
        max: 5,
        flexible: 4,
        root: LEAVE_GROUP_RESPONSE,
    },
    Schema {
        api: ApiKey::OffsetCommit,
        dir: Direction::Request,
        min: 2,
        max: 9,
        flexible: 8,
        root: OFFSET_COMMIT_REQUEST,
    },
    Schema {
        api: ApiKey::OffsetCommit,
        dir: Direction::Response,
        min: 2,
        max: 10,
        flexible: 8,
        root: OFFSET_COMMIT_RESPONSE,
    },
    Schema {
        api: ApiKey::OffsetFetch,
        dir: Direction::Request,
        min: 1,
        max: 9,
        flexible: 6,
        root: OFFSET_FETCH_REQUEST,
    },
    Schema {
        api: ApiKey::OffsetFetch,
        dir: Direction::Response,
        min: 1,
        max: 10,
        flexible: 6,
        root: OFFSET_FETCH_RESPONSE,
    },
    Schema {
        api: ApiKey::ConsumerGroupHeartbeat,
        dir: Direction::Request,
        min: 0,
        max: 1,
        flexible: 0,
        root: CONSUMER_GROUP_HEARTBEAT_REQUEST,
    },
    Schema {
        api: ApiKey::ConsumerGroupHeartbeat,
        dir: Direction::Response,
        min: 0,
        max: 1,
        flexible: 0,
        root: CONSUMER_GROUP_HEARTBEAT_RESPONSE,
    },
    Schema {
        api: ApiKey::TxnOffsetCommit,
        dir: Direction::Request,
        min: 0,
        max: 5,
        flexible: 3,
        root: TXN_OFFSET_COMMIT_REQUEST,
    },
    Schema {
        api: ApiKey::TxnOffsetCommit,
        dir: Direction::Response,
        min: 0,
        max: 5,
        flexible: 3,
        root: TXN_OFFSET_COMMIT_RESPONSE,
    },
    Schema {
        api: ApiKey::InitProducerId,
        dir: Direction::Request,
        min: 0,
        max: 5,
        flexible: 2,
        root: INIT_PRODUCER_ID_REQUEST,
    },
    Schema {
        api: ApiKey::InitProducerId,
        dir: Direction::Response,
        min: 0,
        max: 6,
        flexible: 2,
        root: INIT_PRODUCER_ID_RESPONSE,
    },
    Schema {
        api: ApiKey::AddPartitionsToTxn,
        dir: Direction::Request,
        min: 0,
        max: 5,
        flexible: 3,
        root: ADD_PARTITIONS_TO_TXN_REQUEST,
    },
    Schema {
        api: ApiKey::AddPartitionsToTxn,
        dir: Direction::Response,
        min: 0,
        max: 5,
        flexible: 3,
        root: ADD_PARTITIONS_TO_TXN_RESPONSE,
    },
    Schema {
        api: ApiKey::AddOffsetsToTxn,
        dir: Direction::Request,
        min: 0,
        max: 4,
        flexible: 3,
        root: ADD_OFFSETS_TO_TXN_REQUEST,
    },
    Schema {
        api: ApiKey::AddOffsetsToTxn,
        dir: Direction::Response,
        min: 0,
        max: 4,
        flexible: 3,
        root: ADD_OFFSETS_TO_TXN_RESPONSE,
    },
    Schema {
        api: ApiKey::EndTxn,
        dir: Direction::Request,
        min: 0,
        max: 5,
        flexible: 3,
        root: END_TXN_REQUEST,
    },
    Schema {
        api: ApiKey::EndTxn,
        dir: Direction::Response,
        min: 0,
        max: 5,
        flexible: 3,
        root: END_TXN_RESPONSE,
    },
    Schema {
        api: ApiKey::ShareGroupHeartbeat,
        dir: Direction::Request,
        min: 1,
        max: 1,
        flexible: 1,
        root: SHARE_GROUP_HEARTBEAT_REQUEST,
    },
    Schema {
        api: ApiKey::ShareGroupHeartbeat,
        dir: Direction::Response,
        min: 1,
        max: 1,
        flexible: 1,
        root: SHARE_GROUP_HEARTBEAT_RESPONSE,
    },
];
