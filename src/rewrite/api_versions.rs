//! ApiVersions, capped to what fairlead can decode.
//!
//! For every API fairlead decodes (the routed ones and the ones whose responses it rewrites),
//! the relayed maximum version is lowered to what fairlead's protocol crate understands, so a
//! client and broker newer than fairlead settle on a version fairlead can still inspect instead
//! of one it would have to pass blind. APIs fairlead never decodes are relayed unchanged, as are
//! minimum versions (a client on an old version fairlead cannot decode is forwarded without
//! inspection and counted in `fairlead_frames_passed_blind_total`).

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Message;

use crate::protocol::{COORDINATOR_APIS, ROUTED_APIS};

use crate::codec::message::{decode_response, encode_response, MessageError};

/// APIs whose answers name brokers (rewritten for clients, see `rewrite`).
const ADDRESSED: [ApiKey; 5] = [
    ApiKey::Metadata,
    ApiKey::FindCoordinator,
    ApiKey::DescribeCluster,
    ApiKey::ShareFetch,
    ApiKey::ShareAcknowledge,
];

/// The APIs whose messages fairlead decodes in one direction or the other: the partition-routed
/// ones, the coordinator ones, and those whose answers name brokers.
pub fn inspected() -> impl Iterator<Item = ApiKey> {
    ROUTED_APIS
        .into_iter()
        .chain(COORDINATOR_APIS)
        .chain(ADDRESSED)
}

pub fn is_inspected(key: ApiKey) -> bool {
    inspected().any(|k| k == key)
}

/// The highest version fairlead decodes for an inspected API, both ways: the request type and
/// the response type of `kafka-protocol` may end at different versions (OffsetCommit requests
/// at 9, responses at 10), and the API's own range can be wider than either.
pub fn max_supported(key: ApiKey) -> i16 {
    macro_rules! both {
        ($req:ty, $resp:ty) => {
            <$req as Message>::VERSIONS
                .max
                .min(<$resp as Message>::VERSIONS.max)
        };
    }
    match key {
        ApiKey::Produce => both!(ProduceRequest, ProduceResponse),
        ApiKey::Fetch => both!(FetchRequest, FetchResponse),
        ApiKey::ListOffsets => both!(ListOffsetsRequest, ListOffsetsResponse),
        ApiKey::OffsetForLeaderEpoch => {
            both!(OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse)
        }
        ApiKey::DeleteRecords => both!(DeleteRecordsRequest, DeleteRecordsResponse),
        ApiKey::Metadata => both!(MetadataRequest, MetadataResponse),
        ApiKey::FindCoordinator => both!(FindCoordinatorRequest, FindCoordinatorResponse),
        ApiKey::DescribeCluster => both!(DescribeClusterRequest, DescribeClusterResponse),
        ApiKey::ShareFetch => both!(ShareFetchRequest, ShareFetchResponse),
        ApiKey::ShareAcknowledge => both!(ShareAcknowledgeRequest, ShareAcknowledgeResponse),
        ApiKey::JoinGroup => both!(JoinGroupRequest, JoinGroupResponse),
        ApiKey::SyncGroup => both!(SyncGroupRequest, SyncGroupResponse),
        ApiKey::Heartbeat => both!(HeartbeatRequest, HeartbeatResponse),
        ApiKey::LeaveGroup => both!(LeaveGroupRequest, LeaveGroupResponse),
        ApiKey::OffsetCommit => both!(OffsetCommitRequest, OffsetCommitResponse),
        ApiKey::OffsetFetch => both!(OffsetFetchRequest, OffsetFetchResponse),
        ApiKey::ConsumerGroupHeartbeat => {
            both!(
                ConsumerGroupHeartbeatRequest,
                ConsumerGroupHeartbeatResponse
            )
        }
        ApiKey::TxnOffsetCommit => both!(TxnOffsetCommitRequest, TxnOffsetCommitResponse),
        ApiKey::InitProducerId => both!(InitProducerIdRequest, InitProducerIdResponse),
        ApiKey::AddPartitionsToTxn => both!(AddPartitionsToTxnRequest, AddPartitionsToTxnResponse),
        ApiKey::AddOffsetsToTxn => both!(AddOffsetsToTxnRequest, AddOffsetsToTxnResponse),
        ApiKey::EndTxn => both!(EndTxnRequest, EndTxnResponse),
        _ => key.valid_versions().max,
    }
}

/// Caps an ApiVersions response frame. An error answer (e.g. 35, the client asked with a
/// version the broker does not know: the broker answers in v0) is relayed unchanged.
pub fn cap(frame: &Bytes, version: i16, correlation_id: i32) -> Result<Bytes, MessageError> {
    let mut r: ApiVersionsResponse = match decode_response(frame, ApiKey::ApiVersions, version) {
        Ok(r) => r,
        Err(_) => return Ok(frame.clone()),
    };
    if r.error_code != 0 {
        return Ok(frame.clone());
    }
    let mut changed = false;
    r.api_keys.retain_mut(|k| {
        let Ok(key) = ApiKey::try_from(k.api_key) else {
            return true;
        };
        if !is_inspected(key) {
            return true;
        }
        let ours = max_supported(key);
        if k.max_version > ours {
            k.max_version = ours;
            changed = true;
        }
        if k.min_version > k.max_version {
            // A broker that only speaks versions newer than fairlead: nothing in common.
            changed = true;
            return false;
        }
        true
    });
    if !changed {
        return Ok(frame.clone());
    }
    encode_response(&r, ApiKey::ApiVersions, version, correlation_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::api_versions_response::ApiVersion;

    fn frame(keys: &[(i16, i16, i16)], version: i16) -> Bytes {
        let r = ApiVersionsResponse::default().with_api_keys(
            keys.iter()
                .map(|(k, min, max)| {
                    ApiVersion::default()
                        .with_api_key(*k)
                        .with_min_version(*min)
                        .with_max_version(*max)
                })
                .collect(),
        );
        encode_response(&r, ApiKey::ApiVersions, version, 9).unwrap()
    }

    #[test]
    fn caps_inspected_apis_and_leaves_the_rest() {
        let f = frame(
            &[
                (0, 0, 99),
                (1, 4, 99),
                (19, 0, 99),
                (1000, 0, 3),
                (3, 0, 12),
            ],
            3,
        );
        let out = cap(&f, 3, 9).unwrap();
        let r: ApiVersionsResponse = decode_response(&out, ApiKey::ApiVersions, 3).unwrap();
        let got: Vec<_> = r
            .api_keys
            .iter()
            .map(|k| (k.api_key, k.min_version, k.max_version))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, 0, max_supported(ApiKey::Produce)),
                (1, 4, max_supported(ApiKey::Fetch)),
                (19, 0, 99),
                (1000, 0, 3),
                (3, 0, 12)
            ]
        );
    }

    #[test]
    fn the_cap_is_a_version_fairlead_decodes_both_ways() {
        use crate::codec::sanity::{walk, Direction, Implausible};
        assert_eq!(max_supported(ApiKey::OffsetCommit), 9);
        assert_eq!(max_supported(ApiKey::OffsetFetch), 9);
        assert_eq!(max_supported(ApiKey::InitProducerId), 5);
        for key in inspected() {
            for dir in [Direction::Request, Direction::Response] {
                let v = max_supported(key);
                assert!(
                    !matches!(
                        walk(&[], key, v, dir),
                        Err(Implausible::UnknownVersion { .. })
                    ),
                    "{key:?} {dir:?} v{v} is not decoded"
                );
            }
        }
    }

    #[test]
    fn unchanged_responses_keep_their_bytes() {
        let f = frame(&[(3, 0, 12), (19, 0, 99)], 3);
        assert_eq!(cap(&f, 3, 9).unwrap(), f);
    }

    #[test]
    fn an_api_only_newer_than_fairlead_is_dropped() {
        let f = frame(&[(1, 50, 60)], 3);
        let r: ApiVersionsResponse =
            decode_response(&cap(&f, 3, 9).unwrap(), ApiKey::ApiVersions, 3).unwrap();
        assert!(r.api_keys.is_empty());
    }
}
