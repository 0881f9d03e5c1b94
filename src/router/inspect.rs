//! What the client gets, counted the same way on every path.
//!
//! Routed requests count their answers where they are merged (`partitioned::merge`,
//! `coordinator::Job::finish`): per partition or key, `fairlead_errors_absorbed_total` when an
//! error was replaced by a broker's answer without one, and `fairlead_errors_passed_through_total`
//! for every error code the client gets. A forwarded request (`forward`: an API fairlead does not
//! route, or a routed one it could not route, or one sent again after its connection was lost)
//! gets the same count here, for the APIs whose errors fairlead is there to absorb: the
//! partition-routed APIs, the coordinator APIs and FindCoordinator. Their answers are decoded
//! only on this path, which carries few of them (Metadata counts its own in `rewrite`).
//!
//! A forwarded Produce or Fetch answer that names brokers (KIP-951 node endpoints) has them
//! rewritten here too, like a routed one.

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use tracing::warn;

use super::partitioned::RoutedApi;
use super::{coordinator, retry};
use super::{delete_records, fetch, list_offsets, offsets_for_leader_epoch, produce, Unanswerable};
use crate::cluster::Cluster;
use crate::codec::header::RequestHeader;
use crate::codec::message::{decode_response, encode_response};
use crate::metrics::{self, NotAbsorbed};
use crate::protocol;

/// Counts the error codes of a forwarded answer on its way to the client, and returns it
/// (rewritten if it names brokers; `Err` if that failed: its addresses must not reach the
/// client, so the connection goes).
pub fn forwarded(
    cluster: &Cluster,
    hdr: &RequestHeader,
    frame: Bytes,
    not_absorbed: Option<NotAbsorbed>,
) -> Result<Bytes, Unanswerable> {
    let Some(api) = hdr.known else {
        return Ok(frame);
    };
    let count = |api: ApiKey, codes: Vec<i16>| count(api, codes, not_absorbed);
    let v = hdr.api_version;
    match api {
        ApiKey::Produce => routed::<produce::Produce>(cluster, hdr, frame, count),
        ApiKey::Fetch => routed::<fetch::Fetch>(cluster, hdr, frame, count),
        ApiKey::ListOffsets => routed::<list_offsets::ListOffsets>(cluster, hdr, frame, count),
        ApiKey::OffsetForLeaderEpoch => {
            routed::<offsets_for_leader_epoch::OffsetsForLeaderEpoch>(cluster, hdr, frame, count)
        }
        ApiKey::DeleteRecords => {
            routed::<delete_records::DeleteRecords>(cluster, hdr, frame, count)
        }
        _ if coordinator::counted(api) => {
            match coordinator::answer_codes(api, &frame, v) {
                Ok(codes) => count(api, codes),
                Err(e) => blind(hdr, &e.to_string()),
            }
            Ok(frame)
        }
        _ => Ok(frame),
    }
}

/// A partition-routed API's forwarded answer: every partition's code, and the top level's. It is
/// re-encoded as it came (a fetch session's id kept) when its node endpoints are rewritten.
fn routed<A: RoutedApi>(
    cluster: &Cluster,
    hdr: &RequestHeader,
    frame: Bytes,
    count: impl FnOnce(ApiKey, Vec<i16>),
) -> Result<Bytes, Unanswerable> {
    let v = hdr.api_version;
    let mut resp: A::Resp = match decode_response(&frame, A::KEY, v) {
        Ok(r) => r,
        Err(e) => {
            blind(hdr, &e.to_string());
            return Ok(frame);
        }
    };
    let top = A::envelope_code(&resp);
    let mut out = frame;
    if let Some(list) = A::node_endpoints(&mut resp).filter(|l| !l.is_empty()) {
        cluster.learn_endpoints(list);
        cluster.rewrite_endpoints(list);
        out = encode_response(&resp, A::KEY, v, hdr.correlation_id)
            .map_err(|e| Unanswerable(format!("could not re-encode a forwarded answer: {e}")))?;
    }
    let (_, parts) = A::flatten_resp(resp);
    count(
        A::KEY,
        std::iter::once(top)
            .chain(parts.iter().map(|(_, p)| A::error_code(p)))
            .collect(),
    );
    Ok(out)
}

/// Each non-zero code reached the client; one fairlead would have absorbed, had it been allowed
/// to route the request (`not_absorbed`), is counted as such too.
fn count(api: ApiKey, codes: Vec<i16>, not_absorbed: Option<NotAbsorbed>) {
    for code in codes.into_iter().filter(|c| *c != 0) {
        metrics::passed_through(api as i16, code);
        if let Some(why) = not_absorbed.filter(|_| absorbable(code)) {
            metrics::not_absorbed(why);
        }
    }
}

/// Codes fairlead absorbs for a client whose requests it may route.
fn absorbable(code: i16) -> bool {
    retry::is_retried_code(code) || protocol::is_coordinator_code(code)
}

fn blind(hdr: &RequestHeader, error: &str) {
    metrics::passed_blind(hdr.api_key);
    warn!(
        api = hdr.api_key,
        version = hdr.api_version,
        error,
        "response not decodable: forwarded without inspection"
    );
}
