//! The Kafka protocol's vocabulary as fairlead speaks of it: the error codes its rules and
//! metrics name (numbers from the protocol's error table, apache/kafka
//! clients/src/main/java/org/apache/kafka/common/protocol/Errors.java), the sets of them it
//! absorbs, and the APIs it routes by partition or follows coordinators for.
//!
//! The lowest floor: plain data, imported by metrics, rewrite and the routers; the decisions
//! made with it live in `router::retry`.

use kafka_protocol::messages::ApiKey;

// Error codes.
pub const OFFSET_OUT_OF_RANGE: i16 = 1;
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
pub const LEADER_NOT_AVAILABLE: i16 = 5;
pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
pub const REQUEST_TIMED_OUT: i16 = 7;
pub const NETWORK_EXCEPTION: i16 = 13;
pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
pub const NOT_COORDINATOR: i16 = 16;
pub const NOT_ENOUGH_REPLICAS: i16 = 19;
pub const NOT_ENOUGH_REPLICAS_AFTER_APPEND: i16 = 20;
pub const UNKNOWN_MEMBER_ID: i16 = 25;
pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
pub const FENCED_LEADER_EPOCH: i16 = 74;
pub const UNKNOWN_LEADER_EPOCH: i16 = 75;
pub const OFFSET_NOT_AVAILABLE: i16 = 78;
pub const FENCED_MEMBER_EPOCH: i16 = 110;

/// Leadership error codes: a partition's leader moved or is being elected. Absorbed for the
/// partition-routed APIs, and counted by code in metrics.
pub const LEADERSHIP_CODES: [i16; 4] = [
    LEADER_NOT_AVAILABLE,
    NOT_LEADER_OR_FOLLOWER,
    FENCED_LEADER_EPOCH,
    UNKNOWN_LEADER_EPOCH,
];

/// Codes counted as leadership errors (absorbed or passed through) in metrics.
pub fn is_leadership_code(code: i16) -> bool {
    LEADERSHIP_CODES.contains(&code)
}

/// Coordinator error codes: a group's or transactional id's coordinator moved or is settling.
pub const COORDINATOR_CODES: [i16; 3] = [
    COORDINATOR_LOAD_IN_PROGRESS,
    COORDINATOR_NOT_AVAILABLE,
    NOT_COORDINATOR,
];

/// Codes that mean a coordinator moved or is settling.
pub fn is_coordinator_code(code: i16) -> bool {
    COORDINATOR_CODES.contains(&code)
}

/// The APIs whose partitions fairlead routes, absorbs errors for and replays (each has its
/// `RoutedApi` in `router`, dispatched by `router::routed`, and is decoded by `router::inspect`).
pub const ROUTED_APIS: [ApiKey; 5] = [
    ApiKey::Produce,
    ApiKey::Fetch,
    ApiKey::ListOffsets,
    ApiKey::OffsetForLeaderEpoch,
    ApiKey::DeleteRecords,
];

/// The group and transaction coordinator APIs whose coordinator moves fairlead absorbs.
pub const COORDINATOR_APIS: [ApiKey; 12] = [
    ApiKey::JoinGroup,
    ApiKey::SyncGroup,
    ApiKey::Heartbeat,
    ApiKey::LeaveGroup,
    ApiKey::OffsetCommit,
    ApiKey::OffsetFetch,
    ApiKey::ConsumerGroupHeartbeat,
    ApiKey::TxnOffsetCommit,
    ApiKey::InitProducerId,
    ApiKey::AddPartitionsToTxn,
    ApiKey::AddOffsetsToTxn,
    ApiKey::EndTxn,
];

/// An API key's name in the protocol's own spelling, e.g. "Produce" (metric labels, logs).
pub fn api_name(key: i16) -> &'static str {
    match ApiKey::try_from(key) {
        Ok(ApiKey::Produce) => "Produce",
        Ok(ApiKey::Fetch) => "Fetch",
        Ok(ApiKey::ListOffsets) => "ListOffsets",
        Ok(ApiKey::Metadata) => "Metadata",
        Ok(ApiKey::OffsetForLeaderEpoch) => "OffsetsForLeaderEpoch",
        Ok(ApiKey::DeleteRecords) => "DeleteRecords",
        Ok(ApiKey::ApiVersions) => "ApiVersions",
        Ok(ApiKey::FindCoordinator) => "FindCoordinator",
        Ok(ApiKey::DescribeCluster) => "DescribeCluster",
        Ok(ApiKey::OffsetCommit) => "OffsetCommit",
        Ok(ApiKey::OffsetFetch) => "OffsetFetch",
        Ok(ApiKey::JoinGroup) => "JoinGroup",
        Ok(ApiKey::SyncGroup) => "SyncGroup",
        Ok(ApiKey::Heartbeat) => "Heartbeat",
        Ok(ApiKey::LeaveGroup) => "LeaveGroup",
        Ok(ApiKey::InitProducerId) => "InitProducerId",
        Ok(ApiKey::SaslHandshake) => "SaslHandshake",
        Ok(ApiKey::SaslAuthenticate) => "SaslAuthenticate",
        Ok(ApiKey::ShareFetch) => "ShareFetch",
        Ok(ApiKey::ShareAcknowledge) => "ShareAcknowledge",
        Ok(ApiKey::ConsumerGroupHeartbeat) => "ConsumerGroupHeartbeat",
        Ok(ApiKey::TxnOffsetCommit) => "TxnOffsetCommit",
        Ok(ApiKey::AddPartitionsToTxn) => "AddPartitionsToTxn",
        Ok(ApiKey::AddOffsetsToTxn) => "AddOffsetsToTxn",
        Ok(ApiKey::EndTxn) => "EndTxn",
        Ok(ApiKey::ShareGroupHeartbeat) => "ShareGroupHeartbeat",
        Ok(_) => "other",
        Err(_) => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names are the protocol's: kafka-protocol's error enum agrees on every number.
    #[test]
    fn codes_are_the_protocols() {
        use kafka_protocol::ResponseError as E;
        for (code, error) in [
            (OFFSET_OUT_OF_RANGE, E::OffsetOutOfRange),
            (UNKNOWN_TOPIC_OR_PARTITION, E::UnknownTopicOrPartition),
            (LEADER_NOT_AVAILABLE, E::LeaderNotAvailable),
            (NOT_LEADER_OR_FOLLOWER, E::NotLeaderOrFollower),
            (REQUEST_TIMED_OUT, E::RequestTimedOut),
            (NETWORK_EXCEPTION, E::NetworkException),
            (COORDINATOR_LOAD_IN_PROGRESS, E::CoordinatorLoadInProgress),
            (COORDINATOR_NOT_AVAILABLE, E::CoordinatorNotAvailable),
            (NOT_COORDINATOR, E::NotCoordinator),
            (NOT_ENOUGH_REPLICAS, E::NotEnoughReplicas),
            (
                NOT_ENOUGH_REPLICAS_AFTER_APPEND,
                E::NotEnoughReplicasAfterAppend,
            ),
            (UNKNOWN_MEMBER_ID, E::UnknownMemberId),
            (OUT_OF_ORDER_SEQUENCE_NUMBER, E::OutOfOrderSequenceNumber),
            (FENCED_LEADER_EPOCH, E::FencedLeaderEpoch),
            (UNKNOWN_LEADER_EPOCH, E::UnknownLeaderEpoch),
            (OFFSET_NOT_AVAILABLE, E::OffsetNotAvailable),
            (FENCED_MEMBER_EPOCH, E::FencedMemberEpoch),
        ] {
            assert_eq!(error.code(), code, "{error:?}");
        }
    }

    #[test]
    fn every_routed_and_coordinator_api_has_its_name() {
        for api in ROUTED_APIS.iter().chain(&COORDINATOR_APIS) {
            let name = api_name(*api as i16);
            assert!(name != "other" && name != "unknown", "{api:?}");
        }
    }
}
