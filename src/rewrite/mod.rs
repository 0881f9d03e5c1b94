//! Responses that name brokers, rewritten so that clients only ever learn fairlead's addresses.
//!
//! Broker node N is advertised as `advertised_host:(node_port_base + N)`, on every API that
//! carries an address: Metadata, FindCoordinator (v0-3 top level, v4+ coordinators[]),
//! DescribeCluster, and the KIP-951 node endpoints of Produce v10+, Fetch v16+, ShareFetch and
//! ShareAcknowledge; only while fairlead listens on that port (see [`brokers`]). ApiVersions is
//! capped to what fairlead can decode for the APIs it inspects. Every other response is
//! forwarded as the broker's own bytes.
//!
//! Not rewritten: DescribeQuorum listeners and DescribeCluster with endpoint_type=controllers
//! (KIP-919): they name controllers, which fairlead does not front.

pub mod api_versions;
pub mod brokers;
pub mod metadata;

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, DescribeClusterResponse, FindCoordinatorRequest, FindCoordinatorResponse,
    MetadataRequest, ShareAcknowledgeResponse, ShareFetchResponse,
};
use kafka_protocol::protocol::StrBytes;
use tracing::debug;

use crate::cluster::Cluster;
use crate::codec::frame::OutFrame;
use crate::codec::header::RequestHeader;
use crate::codec::message::{decode_body, decode_response, encode_response, MessageError};
use crate::leadership::coordinators::{CoordinatorKey, KeyType};
use crate::leadership::TopicSet;

/// Why a response could not be rewritten (it is then not relayed: see `router::forward`).
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    #[error(transparent)]
    Message(#[from] MessageError),
    /// A Metadata answer refused by the walk that rewrites it ([`metadata`]).
    #[error("Metadata v{version}: {source}")]
    Metadata {
        version: i16,
        source: metadata::Malformed,
    },
}

/// A FindCoordinator answer names the coordinator of each key the request asked about (v0-3:
/// one key, named only in the request; v4+: each key named in the answer).
fn learn_coordinators(
    cluster: &Cluster,
    hdr: &RequestHeader,
    request: &Bytes,
    r: &FindCoordinatorResponse,
) {
    let Some(req) = hdr.body_offset.and_then(|at| {
        decode_body::<FindCoordinatorRequest>(request, at, ApiKey::FindCoordinator, hdr.api_version)
            .ok()
    }) else {
        return;
    };
    let Some(kind) = KeyType::from_wire(req.key_type) else {
        return;
    };
    let key = |id: &StrBytes| CoordinatorKey {
        kind,
        id: id.to_string(),
    };
    if hdr.api_version < 4 {
        if r.error_code == 0 {
            cluster.learn_coordinator(key(&req.key), r.node_id.0);
        }
    } else {
        for c in r.coordinators.iter().filter(|c| c.error_code == 0) {
            cluster.learn_coordinator(key(&c.key), c.node_id.0);
        }
    }
}

/// The topics a client's Metadata request names (none when it asks for every topic, or when
/// the request does not decode: fairlead then learns only about topics it already tracks).
fn asked_topics(hdr: &RequestHeader, request: &Bytes) -> TopicSet {
    hdr.body_offset
        .and_then(|at| {
            decode_body::<MetadataRequest>(request, at, ApiKey::Metadata, hdr.api_version).ok()
        })
        .and_then(|r| r.topics)
        .into_iter()
        .flatten()
        .filter_map(|t| t.name.map(|n| n.0.to_string()))
        .collect()
}

/// Whether responses of this API are decoded on the forward path.
pub fn inspects(key: Option<ApiKey>) -> bool {
    matches!(
        key,
        Some(
            ApiKey::Metadata
                | ApiKey::FindCoordinator
                | ApiKey::DescribeCluster
                | ApiKey::ApiVersions
                | ApiKey::ShareFetch
                | ApiKey::ShareAcknowledge
        )
    )
}

/// Rewrites a forwarded response if its API carries broker addresses (or is ApiVersions).
/// `request` is the client's request frame it answers. A spliced Metadata answer comes in two
/// parts; every other answer whole.
pub fn response(
    cluster: &Cluster,
    hdr: &RequestHeader,
    request: &Bytes,
    frame: Bytes,
) -> Result<OutFrame, RewriteError> {
    if hdr.known == Some(ApiKey::Metadata) {
        // Learned from: the topics fairlead tracks (or wants), and those this client asked
        // for by name (an answer for every topic does not make fairlead track them). One set,
        // one lookup per topic of the answer.
        let asked = asked_topics(hdr, request);
        let mut wanted = cluster.leadership.in_scope();
        wanted.extend(asked.iter().cloned());
        let learn_new = |t: &str| asked.contains(t);
        let (v, corr) = (hdr.api_version, hdr.correlation_id);
        let want = |t: &str| wanted.contains(t);
        return metadata::rewrite(cluster, &frame, v, corr, want, &learn_new);
    }
    whole(cluster, hdr, request, frame).map(OutFrame::from)
}

/// [`response`] for the APIs whose answers are rewritten whole (decoded and encoded again).
fn whole(
    cluster: &Cluster,
    hdr: &RequestHeader,
    request: &Bytes,
    frame: Bytes,
) -> Result<Bytes, RewriteError> {
    let Some(key) = hdr.known.filter(|k| inspects(Some(*k))) else {
        return Ok(frame);
    };
    let v = hdr.api_version;
    let corr = hdr.correlation_id;
    match key {
        ApiKey::FindCoordinator => {
            let mut r: FindCoordinatorResponse = decode_response(&frame, key, v)?;
            learn_coordinators(cluster, hdr, request, &r);
            brokers::find_coordinator(&cluster.advertised(), v, &mut r);
            Ok(encode_response(&r, key, v, corr)?)
        }
        ApiKey::DescribeCluster => {
            let mut r: DescribeClusterResponse = decode_response(&frame, key, v)?;
            // endpoint_type 2 = controllers (KIP-919): not fronted by fairlead.
            if v < 1 || r.endpoint_type != 2 {
                brokers::describe_cluster(&cluster.advertised(), &mut r);
            } else {
                debug!("DescribeCluster for controllers passed through unchanged");
                return Ok(frame);
            }
            Ok(encode_response(&r, key, v, corr)?)
        }
        ApiKey::ApiVersions => Ok(api_versions::cap(&frame, v, corr)?),
        ApiKey::ShareFetch => {
            let mut r: ShareFetchResponse = decode_response(&frame, key, v)?;
            if r.node_endpoints.is_empty() {
                return Ok(frame);
            }
            cluster.rewrite_endpoints(&mut r.node_endpoints);
            Ok(encode_response(&r, key, v, corr)?)
        }
        ApiKey::ShareAcknowledge => {
            let mut r: ShareAcknowledgeResponse = decode_response(&frame, key, v)?;
            if r.node_endpoints.is_empty() {
                return Ok(frame);
            }
            cluster.rewrite_endpoints(&mut r.node_endpoints);
            Ok(encode_response(&r, key, v, corr)?)
        }
        _ => Ok(frame),
    }
}
