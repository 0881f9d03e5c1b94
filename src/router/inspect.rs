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

use std::time::{Duration, Instant};

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
                Err(e) => blind(hdr, &e),
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
            blind(hdr, &e);
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

fn blind(hdr: &RequestHeader, error: &dyn std::fmt::Display) {
    uninspected(hdr.api_key, hdr.api_version, Unread::Response, error);
}

/// What fairlead could not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unread {
    Request,
    Response,
}

/// A request or an answer fairlead cannot decode goes on as it is (the broker or the client
/// may read what fairlead cannot), counted and logged here.
pub fn uninspected(api: i16, version: i16, what: Unread, error: &dyn std::fmt::Display) {
    metrics::passed_blind(api);
    match what {
        Unread::Request => {
            warn!(api, version, %error, "request not decodable: forwarded without inspection")
        }
        Unread::Response => {
            warn!(api, version, %error, "response not decodable: forwarded without inspection")
        }
    }
}

/// What the client gets for one routed request (or one asked again), counted once: per
/// partition or key, `fairlead_errors_absorbed_total` when the error it met first is gone from
/// its answer, `fairlead_errors_passed_through_total` for every code the client gets; each
/// re-send's outcome; and how long absorbing took.
pub struct Tally {
    api: i16,
    /// When absorbing began (None: nothing to absorb so far).
    since: Option<Instant>,
}

impl Tally {
    pub fn new(api: i16) -> Tally {
        Tally { api, since: None }
    }

    /// Absorbing begins, unless it already has: returns whether it began now.
    pub fn absorbing(&mut self) -> bool {
        if self.since.is_some() {
            return false;
        }
        self.since = Some(Instant::now());
        true
    }

    /// One answer the client gets (a partition's, or a key's): `first`, the error it met first
    /// (None: none); `settled`, whether that error is gone from the answer; `codes`, the error
    /// codes the client gets. Returns the error absorbed, if one was.
    pub fn answer(&self, first: Option<i16>, settled: bool, codes: &[i16]) -> Option<i16> {
        let absorbed = first.filter(|_| settled);
        if let Some(code) = absorbed {
            metrics::absorbed(self.api, code);
        }
        for code in codes.iter().filter(|c| **c != 0) {
            metrics::passed_through(self.api, *code);
        }
        absorbed
    }

    /// The outcome of one re-send: its answer settled what it was sent for, or not.
    pub fn resent(&self, ok: bool) {
        let outcome = if ok {
            metrics::Replay::Ok
        } else {
            metrics::Replay::Failed
        };
        metrics::replay(self.api, outcome);
    }

    /// Absorbing ended without a re-send's answer (given up, or answered with nothing yet).
    pub fn replay(&self, outcome: metrics::Replay) {
        metrics::replay(self.api, outcome);
    }

    /// The request is answered: how long absorbing took, recorded (None: nothing absorbed).
    pub fn done(&self) -> Option<Duration> {
        let took = self.since?.elapsed();
        metrics::absorb_duration(self.api, took);
        Some(took)
    }
}
