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

use crate::protocol::{
    api_name, COORDINATOR_APIS, COORDINATOR_CODES, LEADERSHIP_CODES, ROUTED_APIS,
};

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
pub const REROUTE_CONNECTIONS: &str = "fairlead_upstream_reroute_connections";
pub const BYTES: &str = "fairlead_bytes_total";
pub const CONNECTIONS_CLOSED: &str = "fairlead_client_connections_closed_total";
pub const PASSED_BLIND: &str = "fairlead_frames_passed_blind_total";
pub const PRODUCE_CHECKS: &str = "fairlead_produce_outcome_checks_total";
pub const NOT_ABSORBED: &str = "fairlead_errors_not_absorbed_total";
pub const RELOADS: &str = "fairlead_reloads_total";
pub const BROKER_PORTS_UNBOUND: &str = "fairlead_broker_ports_unbound";
pub const BROKER_PORT_BIND_FAILURES: &str = "fairlead_broker_port_bind_failures_total";
pub const TOPICS_TRACKED: &str = "fairlead_topics_tracked";
pub const TOPICS_REFUSED: &str = "fairlead_topics_refused_total";
pub const TOPICS_FORGOTTEN: &str = "fairlead_topics_forgotten_total";
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

/// A label set of its own: an enum whose values are the only label values fairlead uses.
macro_rules! labels {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident => $s:literal,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vm])* $v,)*
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$v,)*];

            pub fn label(self) -> &'static str {
                match self {
                    $($name::$v => $s,)*
                }
            }
        }
    };
}

labels!(
    /// `fairlead_bytes_total{direction}`.
    Direction {
        FromClients => "from_clients",
        ToClients => "to_clients",
        ToBrokers => "to_brokers",
        FromBrokers => "from_brokers",
    }
);

labels!(
    /// `fairlead_replays_total{outcome}`: one re-send of a partition.
    Replay {
        /// Answered without a leadership error.
        Ok => "ok",
        /// The time ran out: the client got the original error.
        GaveUp => "gave_up",
        /// The attempt met another error or lost its connection (and may be tried again).
        Failed => "failed",
        /// A fetch held as long as it may be: answered with no records (the client asks again).
        AnsweredEmpty => "answered_empty",
    }
);

labels!(
    /// `fairlead_metadata_refreshes_total{trigger}`: why fairlead asked for metadata.
    RefreshTrigger {
        Startup => "startup",
        Periodic => "periodic",
        /// A leadership error came back from a broker.
        Error => "error",
        /// A request named a topic or partition fairlead did not know.
        Unknown => "unknown_partition",
        /// A broker is slow to answer: has leadership moved away from it?
        SlowBroker => "slow_broker",
    }
);

labels!(
    /// `fairlead_produce_outcome_checks_total{result}`: a non-idempotent write of unknown
    /// outcome, looked up in the leader's log.
    ProduceCheck {
        Written => "written",
        NotWritten => "not_written",
        Unknown => "unknown",
    }
);

labels!(
    /// `fairlead_client_connections_closed_total{reason}`: why fairlead closed a client connection.
    Closed {
        /// max_connections reached at accept.
        Limit => "limit",
        TlsHandshake => "tls_handshake",
        /// No broker could be reached for the connection.
        NoBroker => "no_broker",
        Idle => "idle",
        SlowClient => "slow_client",
        BadFrame => "bad_frame",
        BadHeader => "bad_header",
        BrokerUnreachable => "broker_unreachable",
        MergeFailed => "merge_failed",
        ClientNotReading => "client_not_reading",
        /// The broker connection went away with a request in flight that is not safe to repeat.
        BrokerLostMidRequest => "broker_lost_mid_request",
        /// A broker's answer that names brokers could not be decoded to rewrite their addresses
        /// (an address that is not rewritten must not reach the client).
        UnrewritableAnswer => "unrewritable_answer",
    }
);

labels!(
    /// `fairlead_errors_not_absorbed_total{reason}`: an error fairlead absorbs for others reached
    /// a client because no connection may carry its requests but its own (SASL passthrough).
    NotAbsorbed {
        /// The client has not completed SASL authentication.
        NotAuthenticated => "client_not_authenticated",
        /// No connection to the broker in question is authenticated as the client, and
        /// nothing it presented can open one (SCRAM, OAUTHBEARER).
        NoConnectionAsClient => "no_connection_as_client",
    }
);

labels!(
    /// `fairlead_reloads_total{material}`: what was read again from its files.
    Material {
        /// listener_tls_cert_file, _key_file, _client_ca_file.
        ListenerTls => "listener_tls",
        /// upstream_tls_ca_file, _cert_file, _key_file.
        UpstreamTls => "upstream_tls",
        SaslPassword => "sasl_password",
        OAuthClientSecret => "oauth_client_secret",
    }
);

labels!(
    /// `fairlead_reloads_total{outcome}`.
    ReloadOutcome {
        /// In use for new connections.
        Ok => "ok",
        /// Refused (unreadable, empty, invalid, key and certificate do not match): the old
        /// material stays in use.
        Failed => "failed",
    }
);

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
/// Describes every metric and registers every series the README lists at 0.
pub fn init() {
    describe();
    zero_series();
    let _ = HANDLES.set(handles());
}

fn describe() {
    for (name, help) in [
        (
            ERRORS_ABSORBED,
            "Leadership and coordinator errors hidden from clients (the request was rerouted or replayed and answered)",
        ),
        (
            ERRORS_PASSED_THROUGH,
            "Non-zero error codes in responses that reached clients",
        ),
        (
            REROUTES,
            "Partition and coordinator requests sent to a broker other than the one the client chose",
        ),
        (
            REPLAYS,
            "Partition and coordinator requests fairlead re-sent after an error, by outcome",
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
        (
            NOT_ABSORBED,
            "Errors that reached a client unabsorbed because only its own broker connection may carry its requests (SASL passthrough), by reason",
        ),
        (
            RELOADS,
            "Certificates, keys and secrets read again from their files (changed, or SIGHUP), by material and outcome",
        ),
        (
            BROKER_PORT_BIND_FAILURES,
            "Failed attempts to listen on a broker's port (each is retried with back-off)",
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
        "Extra time spent absorbing leadership and coordinator errors (refresh, reroute, replay)"
    );
    metrics::describe_gauge!(CLIENT_CONNECTIONS, "Open client connections");
    metrics::describe_gauge!(UPSTREAM_CONNECTIONS, "Open connections to brokers, by node");
    metrics::describe_gauge!(
        REROUTE_CONNECTIONS,
        "Connections to brokers kept for rerouted and replayed requests, shared per identity"
    );
    metrics::describe_gauge!(
        TOPICS_TRACKED,
        "Topics fairlead keeps leadership for (the ones its clients use)"
    );
    metrics::describe_counter!(
        TOPICS_REFUSED,
        "Topics not tracked because metadata_max_topics were (their errors pass through)"
    );
    metrics::describe_counter!(
        TOPICS_FORGOTTEN,
        "Topics dropped after no client used them for metadata_forget_after_ms"
    );
    metrics::describe_gauge!(
        BROKER_PORTS_UNBOUND,
        "Brokers in the cluster whose port fairlead cannot listen on (not given to clients meanwhile)"
    );
}

/// The APIs whose errors fairlead absorbs, each with the codes it absorbs.
fn absorbing_apis() -> impl Iterator<Item = (ApiKey, &'static [i16])> {
    let routed = ROUTED_APIS.iter().map(|api| (*api, &LEADERSHIP_CODES[..]));
    let coordinated = COORDINATOR_APIS
        .iter()
        .map(|api| (*api, &COORDINATOR_CODES[..]));
    // A client's FindCoordinator answered "not available yet" (15) is asked again.
    let lookups = [(ApiKey::FindCoordinator, &COORDINATOR_CODES[1..2])];
    routed.chain(coordinated).chain(lookups)
}

fn zero_series() {
    for (api, codes) in absorbing_apis() {
        let name = api_name(api as i16);
        for code in codes {
            counter!(ERRORS_ABSORBED, "api" => name, "code" => code.to_string()).absolute(0);
            counter!(ERRORS_PASSED_THROUGH, "api" => name, "code" => code.to_string()).absolute(0);
        }
        counter!(REROUTES, "api" => name).absolute(0);
        for outcome in Replay::ALL {
            counter!(REPLAYS, "api" => name, "outcome" => outcome.label()).absolute(0);
        }
        let _ = histogram!(ABSORB_DURATION, "api" => name);
    }
    counter!(LEADER_CHANGES).absolute(0);
    for r in ProduceCheck::ALL {
        counter!(PRODUCE_CHECKS, "result" => r.label()).absolute(0);
    }
    for t in RefreshTrigger::ALL {
        counter!(METADATA_REFRESHES, "trigger" => t.label()).absolute(0);
    }
    for r in NotAbsorbed::ALL {
        counter!(NOT_ABSORBED, "reason" => r.label()).absolute(0);
    }
    for m in Material::ALL {
        for o in ReloadOutcome::ALL {
            counter!(RELOADS, "material" => m.label(), "outcome" => o.label()).absolute(0);
        }
    }
    gauge!(CLIENT_CONNECTIONS).set(0.0);
    gauge!(REROUTE_CONNECTIONS).set(0.0);
    gauge!(BROKER_PORTS_UNBOUND).set(0.0);
    counter!(BROKER_PORT_BIND_FAILURES).absolute(0);
    gauge!(TOPICS_TRACKED).set(0.0);
    counter!(TOPICS_REFUSED).absolute(0);
    counter!(TOPICS_FORGOTTEN).absolute(0);
}

/// The hot paths' handles: one counter per byte direction, one histogram per API key.
fn handles() -> Handles {
    let bytes = [
        Direction::FromClients,
        Direction::ToClients,
        Direction::ToBrokers,
        Direction::FromBrokers,
    ]
    .map(|d| {
        let c = counter!(BYTES, "direction" => d.label());
        c.absolute(0);
        c
    });
    let request_duration = (0..API_SLOTS as i16)
        .map(|k| histogram!(REQUEST_DURATION, "api" => api_name(k)))
        .collect();
    Handles {
        bytes,
        request_duration,
    }
}

pub fn bytes(direction: Direction, n: usize) {
    if let Some(h) = HANDLES.get() {
        h.bytes[direction as usize].increment(n as u64);
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
    passed_through_times(api_key, code, 1);
}

/// `code` passed to a client `n` times (one answer naming it for many partitions).
pub fn passed_through_times(api_key: i16, code: i16, n: u64) {
    counter!(ERRORS_PASSED_THROUGH, "api" => api_name(api_key), "code" => code.to_string())
        .increment(n);
}

pub fn rerouted(api_key: i16, n: usize) {
    counter!(REROUTES, "api" => api_name(api_key)).increment(n as u64);
}

pub fn replay(api_key: i16, outcome: Replay) {
    counter!(REPLAYS, "api" => api_name(api_key), "outcome" => outcome.label()).increment(1);
}

pub fn leader_changed() {
    counter!(LEADER_CHANGES).increment(1);
}

pub fn metadata_refresh(trigger: RefreshTrigger) {
    counter!(METADATA_REFRESHES, "trigger" => trigger.label()).increment(1);
}

pub fn client_connected() {
    gauge!(CLIENT_CONNECTIONS).increment(1.0);
}

pub fn client_disconnected() {
    gauge!(CLIENT_CONNECTIONS).decrement(1.0);
}

pub fn connection_closed(reason: Closed) {
    counter!(CONNECTIONS_CLOSED, "reason" => reason.label()).increment(1);
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

/// A connection kept in a shared reroute pool, counted in `fairlead_upstream_reroute_connections`
/// for as long as this lives.
#[derive(Debug)]
pub struct RerouteConnection(());

impl RerouteConnection {
    pub fn kept() -> RerouteConnection {
        gauge!(REROUTE_CONNECTIONS).increment(1.0);
        RerouteConnection(())
    }
}

impl Drop for RerouteConnection {
    fn drop(&mut self) {
        gauge!(REROUTE_CONNECTIONS).decrement(1.0);
    }
}

pub fn not_absorbed(reason: NotAbsorbed) {
    counter!(NOT_ABSORBED, "reason" => reason.label()).increment(1);
}

pub fn reloaded(material: Material, outcome: ReloadOutcome) {
    counter!(RELOADS, "material" => material.label(), "outcome" => outcome.label()).increment(1);
}

pub fn produce_check(result: ProduceCheck) {
    counter!(PRODUCE_CHECKS, "result" => result.label()).increment(1);
}

pub fn broker_port_bind_failed() {
    counter!(BROKER_PORT_BIND_FAILURES).increment(1);
}

pub fn broker_ports_unbound(n: usize) {
    gauge!(BROKER_PORTS_UNBOUND).set(n as f64);
}

pub fn topics_tracked(n: usize) {
    gauge!(TOPICS_TRACKED).set(n as f64);
}

pub fn topic_refused() {
    counter!(TOPICS_REFUSED).increment(1);
}

pub fn topics_forgotten(n: usize) {
    counter!(TOPICS_FORGOTTEN).increment(n as u64);
}
