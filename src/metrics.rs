//! Every metric fairlead exports: names (units in the name), label sets, and the handles used on
//! hot paths. Labels are small fixed sets (API names, error codes, trigger kinds, node ids);
//! never a client id, topic (unless opted in) or offset.
//!
//! Every series listed in the README is registered at start-up with value 0, so dashboards and
//! `rate()` work from the first scrape.

use std::sync::OnceLock;
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use metrics::{counter, gauge, histogram, Counter, Histogram};

pub const ERRORS_ABSORBED: &str = "fairlead_errors_absorbed_total";
pub const ERRORS_PASSED_THROUGH: &str = "fairlead_errors_passed_through_total";
pub const REROUTES: &str = "fairlead_reroutes_total";
pub const REPLAYS: &str = "fairlead_replays_total";
pub const LEADER_CHANGES: &str = "fairlead_leader_changes_total";
pub const METADATA_REFRESHES: &str = "fairlead_metadata_refreshes_total";
pub const REQUEST_DURATION: &str = "fairlead_request_duration_seconds";
pub const ABSORB_DURATION: &str = "fairlead_absorb_duration_seconds";
pub const CLIENT_CONNECTIONS: &str = "fairlead_client_connections";
pub const UPSTREAM_CONNECTIONS: &str = "fairlead_upstream_connections";
pub const BYTES: &str = "fairlead_bytes_total";
pub const CONNECTIONS_CLOSED: &str = "fairlead_client_connections_closed_total";
pub const PASSED_BLIND: &str = "fairlead_frames_passed_blind_total";
pub const PRODUCE_CHECKS: &str = "fairlead_produce_outcome_checks_total";
/// Opt-in (`topic_labels`): the same counts per topic.
pub const TOPIC_ERRORS_ABSORBED: &str = "fairlead_topic_errors_absorbed_total";
pub const TOPIC_REROUTES: &str = "fairlead_topic_reroutes_total";

static TOPIC_LABELS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Turns the per-topic series on (config `topic_labels`).
pub fn enable_topic_labels(on: bool) {
    TOPIC_LABELS.store(on, std::sync::atomic::Ordering::Relaxed);
}

pub fn topic_labels() -> bool {
    TOPIC_LABELS.load(std::sync::atomic::Ordering::Relaxed)
}

pub fn topic_absorbed(api_key: i16, code: i16, topic: &str) {
    counter!(TOPIC_ERRORS_ABSORBED, "api" => api_name(api_key), "code" => code.to_string(), "topic" => topic.to_string()).increment(1);
}

pub fn topic_rerouted(api_key: i16, topic: &str, n: u64) {
    counter!(TOPIC_REROUTES, "api" => api_name(api_key), "topic" => topic.to_string()).increment(n);
}

pub const DIR_FROM_CLIENTS: &str = "from_clients";
pub const DIR_TO_CLIENTS: &str = "to_clients";
pub const DIR_TO_BROKERS: &str = "to_brokers";
pub const DIR_FROM_BROKERS: &str = "from_brokers";
const DIRECTIONS: [&str; 4] = [
    DIR_FROM_CLIENTS,
    DIR_TO_CLIENTS,
    DIR_TO_BROKERS,
    DIR_FROM_BROKERS,
];

/// The APIs whose partitions fairlead routes, absorbs errors for and replays.
pub const ROUTED_APIS: [ApiKey; 5] = [
    ApiKey::Produce,
    ApiKey::Fetch,
    ApiKey::ListOffsets,
    ApiKey::OffsetForLeaderEpoch,
    ApiKey::DeleteRecords,
];
/// Leadership error codes: LEADER_NOT_AVAILABLE, NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH,
/// UNKNOWN_LEADER_EPOCH.
pub const LEADERSHIP_CODES: [i16; 4] = [5, 6, 74, 75];

/// Replay outcomes: the replay got an answer without a leadership error; the deadline passed
/// and the original error went to the client; the replay itself failed (connection); a fetch
/// held as long as it may be was answered with no records (the client fetches again).
pub const OUTCOMES: [&str; 4] = ["ok", "gave_up", "failed", "answered_empty"];
pub const TRIGGERS: [&str; 5] = [
    "startup",
    "periodic",
    "error",
    "unknown_partition",
    "slow_broker",
];

/// Metric label for an API key: the protocol's own name, e.g. "Produce".
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
        Ok(_) => "other",
        Err(_) => "unknown",
    }
}

const API_SLOTS: usize = 128;

struct Handles {
    bytes: [Counter; 4],
    /// Indexed by API key; keys outside 0..API_SLOTS share the last slot.
    request_duration: Vec<Histogram>,
}

static HANDLES: OnceLock<Handles> = OnceLock::new();

fn slot(key: i16) -> usize {
    usize::try_from(key)
        .ok()
        .filter(|k| *k < API_SLOTS - 1)
        .unwrap_or(API_SLOTS - 1)
}

/// Registers every series at zero and creates the hot-path handles. Call once, after the
/// recorder is installed.
pub fn init() {
    for (name, help) in [
        (
            ERRORS_ABSORBED,
            "Leadership errors hidden from clients (the partition was rerouted and answered)",
        ),
        (
            ERRORS_PASSED_THROUGH,
            "Non-zero error codes in responses that reached clients",
        ),
        (
            REROUTES,
            "Partition requests sent to a broker other than the one the client chose",
        ),
        (
            REPLAYS,
            "Partition requests fairlead re-sent after an error, by outcome",
        ),
        (
            LEADER_CHANGES,
            "Partition leadership changes fairlead observed",
        ),
        (
            METADATA_REFRESHES,
            "Metadata requests fairlead made, by trigger",
        ),
        (
            CONNECTIONS_CLOSED,
            "Client connections fairlead closed, by reason",
        ),
        (
            PASSED_BLIND,
            "Frames of inspected APIs forwarded without inspection (undecodable version)",
        ),
        (BYTES, "Bytes through fairlead, by direction"),
        (
            PRODUCE_CHECKS,
            "Non-idempotent writes of unknown outcome looked up in the leader's log, by result",
        ),
    ] {
        metrics::describe_counter!(name, help);
    }
    metrics::describe_histogram!(
        REQUEST_DURATION,
        metrics::Unit::Seconds,
        "Time from a client's request to its response, as the client sees it through fairlead"
    );
    metrics::describe_histogram!(
        ABSORB_DURATION,
        metrics::Unit::Seconds,
        "Extra time spent absorbing leadership errors (refresh, reroute, replay)"
    );
    metrics::describe_gauge!(CLIENT_CONNECTIONS, "Open client connections");
    metrics::describe_gauge!(UPSTREAM_CONNECTIONS, "Open connections to brokers, by node");

    for api in ROUTED_APIS {
        let name = api_name(api as i16);
        for code in LEADERSHIP_CODES {
            counter!(ERRORS_ABSORBED, "api" => name, "code" => code.to_string()).absolute(0);
            counter!(ERRORS_PASSED_THROUGH, "api" => name, "code" => code.to_string()).absolute(0);
        }
        counter!(REROUTES, "api" => name).absolute(0);
        for outcome in OUTCOMES {
            counter!(REPLAYS, "api" => name, "outcome" => outcome).absolute(0);
        }
    }
    counter!(LEADER_CHANGES).absolute(0);
    for r in ["written", "not_written", "unknown"] {
        counter!(PRODUCE_CHECKS, "result" => r).absolute(0);
    }
    for t in TRIGGERS {
        counter!(METADATA_REFRESHES, "trigger" => t).absolute(0);
    }
    gauge!(CLIENT_CONNECTIONS).set(0.0);
    let bytes = DIRECTIONS.map(|d| {
        let c = counter!(BYTES, "direction" => d);
        c.absolute(0);
        c
    });
    let request_duration = (0..API_SLOTS as i16)
        .map(|k| histogram!(REQUEST_DURATION, "api" => api_name(k)))
        .collect();
    for api in ROUTED_APIS {
        let _ = histogram!(ABSORB_DURATION, "api" => api_name(api as i16));
    }
    let _ = HANDLES.set(Handles {
        bytes,
        request_duration,
    });
}

pub fn bytes(direction: &'static str, n: usize) {
    if let Some(h) = HANDLES.get() {
        let i = DIRECTIONS.iter().position(|d| *d == direction).unwrap_or(0);
        h.bytes[i].increment(n as u64);
    }
}

pub fn request_duration(api_key: i16, d: Duration) {
    if let Some(h) = HANDLES.get() {
        h.request_duration[slot(api_key)].record(d.as_secs_f64());
    }
}

pub fn absorb_duration(api_key: i16, d: Duration) {
    histogram!(ABSORB_DURATION, "api" => api_name(api_key)).record(d.as_secs_f64());
}

pub fn absorbed(api_key: i16, code: i16) {
    counter!(ERRORS_ABSORBED, "api" => api_name(api_key), "code" => code.to_string()).increment(1);
}

pub fn passed_through(api_key: i16, code: i16) {
    counter!(ERRORS_PASSED_THROUGH, "api" => api_name(api_key), "code" => code.to_string())
        .increment(1);
}

pub fn rerouted(api_key: i16, n: usize) {
    counter!(REROUTES, "api" => api_name(api_key)).increment(n as u64);
}

pub fn replay(api_key: i16, outcome: &'static str) {
    counter!(REPLAYS, "api" => api_name(api_key), "outcome" => outcome).increment(1);
}

pub fn leader_changed() {
    counter!(LEADER_CHANGES).increment(1);
}

pub fn metadata_refresh(trigger: &'static str) {
    counter!(METADATA_REFRESHES, "trigger" => trigger).increment(1);
}

pub fn client_connected() {
    gauge!(CLIENT_CONNECTIONS).increment(1.0);
}

pub fn client_disconnected() {
    gauge!(CLIENT_CONNECTIONS).decrement(1.0);
}

pub fn connection_closed(reason: &'static str) {
    counter!(CONNECTIONS_CLOSED, "reason" => reason).increment(1);
}

pub fn passed_blind(api_key: i16) {
    counter!(PASSED_BLIND, "api" => api_name(api_key)).increment(1);
}

pub fn upstream_connected(node: &str) {
    gauge!(UPSTREAM_CONNECTIONS, "node" => node.to_string()).increment(1.0);
}

pub fn upstream_disconnected(node: &str) {
    gauge!(UPSTREAM_CONNECTIONS, "node" => node.to_string()).decrement(1.0);
}

pub fn produce_check(result: &'static str) {
    counter!(PRODUCE_CHECKS, "result" => result).increment(1);
}
