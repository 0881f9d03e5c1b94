//! What the tests, benchmarks and fuzz targets reach inside fairlead for: the codec, the decode
//! guard, the routed-API descriptions, the rewrite of responses, and a cluster handle without a
//! running server. Not an API: it follows the code.

use std::sync::Arc;

pub use crate::cluster::Cluster;
pub use crate::codec::frame::{check as check_frame, Check, FrameReader};
pub use crate::codec::header::{
    correlation_id_at, parse_request, set_correlation_id, RequestHeader,
    REQUEST_CORRELATION_OFFSET, RESPONSE_CORRELATION_OFFSET,
};
pub use crate::codec::message::{
    decode_body, decode_response, encode_request_with_header, encode_response,
};
pub use crate::codec::LEN_PREFIX;
pub use crate::connection::serve;
pub use crate::leadership::refresh::Trigger;
pub use crate::leadership::TopicRef;
pub use crate::rewrite::response as rewrite_response;
pub use crate::router::delete_records::DeleteRecords;
pub use crate::router::fetch::Fetch;
pub use crate::router::list_offsets::ListOffsets;
pub use crate::router::offsets_for_leader_epoch::OffsetsForLeaderEpoch;
pub use crate::router::partitioned::RoutedApi;
pub use crate::router::produce::{all_batches_idempotent, Produce};
pub use crate::router::retry::safe_to_resend;
pub use crate::router::written::same_batch_at;
pub use crate::router::{expects_response, Router};
pub use crate::security::sasl::{Credentials, Mechanism, Secret};
pub use crate::security::{SaslLogin, SaslMode};

/// The decode guard (`codec::sanity`).
pub mod sanity {
    pub use crate::codec::sanity::{check, record_batch, walk, Direction, Implausible};
}

/// ApiVersions capping (`rewrite::api_versions`).
pub mod api_versions {
    pub use crate::rewrite::api_versions::{cap, inspected, is_inspected, max_supported};
}

/// Metadata answers rewritten by walking and splicing them (`rewrite::metadata`).
pub mod metadata {
    pub use crate::rewrite::metadata::{
        by_decoding, rewrite_decoded, splice, walk, Malformed, Walk,
    };
}

/// A passthrough client's OAUTHBEARER token, read from its initial response (`security::oauth`).
pub mod oauth {
    pub use crate::security::oauth::{parse_initial_response, ClientToken, SUB_CLAIM};
}

/// Metric names and label sets (`metrics`; the API and code sets labelled are `protocol`'s).
pub mod metrics {
    pub use crate::metrics::*;
    pub use crate::protocol::{
        api_name, COORDINATOR_APIS, COORDINATOR_CODES, LEADERSHIP_CODES, ROUTED_APIS,
    };
}

/// A cluster handle for `cfg` with plaintext broker connections, outside any server: the ports
/// it binds for brokers it hears of are never served.
pub fn cluster(cfg: crate::config::Config) -> Arc<Cluster> {
    let (to_listener, _) = tokio::sync::mpsc::unbounded_channel();
    let ports = crate::ports::Ports::new(cfg.listen, cfg.node_port_base, to_listener);
    Cluster::new(cfg, ports, Arc::default())
}
