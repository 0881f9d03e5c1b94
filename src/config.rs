//! Configuration: a TOML file, overridden by `FAIRLEAD_*` environment variables, overridden by
//! command-line flags, resolved into a [`Config`] by [`resolve`].
//!
//! Every option is declared once, in the `options!` list below (its type, variable, where it
//! may be set, its default and bounds, and its one-line doc); the section's header says how to
//! add one. config/fairlead.toml documents each with its default and README's table lists them:
//! the tests at the end hold both to the declarations.
//!
//! A bad value stops start-up with a message naming the option, the value and what is allowed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::security::oauth::OAuthSettings;
use crate::security::reload::read_secret;
use crate::security::sasl::{Credentials, Mechanism, Secret};
pub use crate::security::{SaslLogin, SaslMode};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid value for `{option}`: {value:?} ({allowed})")]
    Invalid {
        option: &'static str,
        value: String,
        allowed: String,
    },
    #[error("missing required option `{option}` ({hint})")]
    Missing {
        option: &'static str,
        hint: &'static str,
    },
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// fairlead: a Kafka sidecar proxy that absorbs leader changes.
#[derive(Debug, Parser)]
#[command(
    name = "fairlead",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: Options,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print fairlead's view of partition leadership (from a running fairlead's admin port).
    Status {
        /// Admin address of the running fairlead.
        #[arg(long, default_value = DEFAULT_ADMIN, env = "FAIRLEAD_ADMIN")]
        admin: String,
        /// Only partitions whose ISR is smaller than their replica set.
        #[arg(long)]
        under_replicated: bool,
    },
    /// Serve the Kubernetes sidecar-injection webhook (AdmissionReview v1 over TLS): pods
    /// annotated `fairlead.io/inject: "true"` get fairlead as a native sidecar.
    Webhook(WebhookArgs),
}

/// `fairlead webhook`: where it listens, its TLS certificate, and the sidecar it injects.
#[derive(Debug, Args, Clone)]
pub struct WebhookArgs {
    /// Address the API server calls (HTTPS): POST /mutate; GET /livez, /readyz.
    #[arg(long, default_value = "0.0.0.0:8443", env = "FAIRLEAD_WEBHOOK_LISTEN")]
    pub listen: String,
    /// Serving certificate (PEM); re-read when the file changes (cert-manager renewals).
    #[arg(long, env = "FAIRLEAD_WEBHOOK_TLS_CERT_FILE")]
    pub tls_cert_file: PathBuf,
    #[arg(long, env = "FAIRLEAD_WEBHOOK_TLS_KEY_FILE")]
    pub tls_key_file: PathBuf,
    /// The sidecar to inject (JSON: container, volumes, app_bootstrap), rendered by the Helm
    /// chart from its values.
    #[arg(long, env = "FAIRLEAD_WEBHOOK_SIDECAR_FILE")]
    pub sidecar_file: PathBuf,
    /// Log filter, as log_level.
    #[arg(long, default_value = "info", env = "FAIRLEAD_WEBHOOK_LOG_LEVEL")]
    pub log_level: String,
}

// ---------------------------------------------------------------------------------------------
// The options, each declared once
//
// `options!` below is the one list of fairlead's options. Each entry gives, in this order:
//
//   /// What it does: `--help`, rustdoc and the "meaning" column of README's table.
//   connect_timeout_ms: u64, env = "FAIRLEAD_CONNECT_TIMEOUT_MS", in [flag, env, file],
//       default = value(5_000) within(10, HOUR);
//
// * `in [...]`: where it may be set. `[flag, env, file]` for almost all; `[env, file]` for the
//   secrets (never a flag: flags show in process lists; the variable is read by `secret`);
//   `[flag, env]` for `config` itself.
// * `default =`: `value(expr)` (the typed default; `within(min, max)` adds inclusive bounds
//   checked at start-up, `within(min, max, zero_is_off)` allows 0 as well), `derived("text")`
//   (computed from other options in `resolve`; the text is what README shows), `required` or
//   `unset`.
// * Optional trailing `, #[attr]`: extra serde/clap attributes for the field.
//
// From each entry follow: the field of `Options` (the flag, the variable, the file key, via clap
// and serde), an accessor `Options::name()` that applies the default (and, with `within`, the
// bounds and their error message), and a row of `declared()`, which the tests below hold
// config/fairlead.toml and README's configuration table to.
//
// Adding an option: an entry here; a field of `Config` and its line in `resolve` (what the
// program reads; `o.name()?` is the value, defaulted and checked); a commented paragraph in
// config/fairlead.toml showing the default; README's row (`FAIRLEAD_BLESS=1 cargo test --lib
// config` writes it); the Helm chart's `config` values (tests/unit/docker_files.rs checks them).

const HOUR: u64 = 3_600_000;

/// The options, with what `options!` needs to generate them (see the header of this section).
macro_rules! options {
    ($(
        $(#[doc = $doc:literal])+
        $name:ident: $ty:ty, env = $env:literal, in [$($layer:ident),+],
        default = $kind:ident $(($arg:expr))? $(within($min:expr, $max:expr $(, $zero:ident)?))?
        $(, #[$extra:meta])*;
    )+) => {
        options!(@struct {} $( { $(#[doc = $doc])+ $(#[$extra])* } $name: $ty, $env, [$($layer),+]; )+);

        impl Options {
            $( option_value!($name: $ty, $kind $(($arg))? $(within($min, $max $(, $zero)?))?); )+
        }

        /// Every option, in the order config/fairlead.toml and README list them.
        pub fn declared() -> Vec<Declared> {
            vec![$(Declared {
                name: stringify!($name),
                env: $env,
                flag: [$(stringify!($layer)),+].contains(&"flag"),
                file: [$(stringify!($layer)),+].contains(&"file"),
                default: option_shown!($ty, $kind $(($arg))?),
                bounds: None $(.or(Some(($min as u64, $max as u64))))?,
                doc: concat!($($doc),+).trim().to_string(),
            }),+]
        }
    };
    // The fields of `Options`, one entry at a time (a field's attributes depend on its layers).
    (@struct { $($done:tt)* }) => {
        /// Every option of the proxy, as given: each is a flag (`--option-name`), an environment
        /// variable (`FAIRLEAD_OPTION_NAME`) and a config-file key (`option_name`), all optional
        /// here; [`resolve`] layers them (flags and environment over the file) and applies the
        /// defaults. The file rejects unknown keys: a typo is an error, not a silently ignored
        /// setting.
        #[derive(Debug, Args, Default, Clone, Deserialize, Serialize)]
        #[serde(deny_unknown_fields)]
        pub struct Options { $($done)* }
    };
    (@struct { $($done:tt)* } { $($attrs:tt)* } $name:ident: $ty:ty, $env:literal,
        [flag, env, file]; $($rest:tt)*) => {
        options!(@struct { $($done)* $($attrs)* #[arg(long, env = $env)] pub $name: Option<$ty>, } $($rest)*);
    };
    (@struct { $($done:tt)* } { $($attrs:tt)* } $name:ident: $ty:ty, $env:literal,
        [env, file]; $($rest:tt)*) => {
        options!(@struct { $($done)* $($attrs)* #[arg(skip)] pub $name: Option<$ty>, } $($rest)*);
    };
    (@struct { $($done:tt)* } { $($attrs:tt)* } $name:ident: $ty:ty, $env:literal,
        [flag, env]; $($rest:tt)*) => {
        options!(@struct { $($done)* $($attrs)* #[arg(long, env = $env)] #[serde(skip)] pub $name: Option<$ty>, } $($rest)*);
    };
}

/// `Options::name()`: the option's value or its default, within its bounds.
macro_rules! option_value {
    ($name:ident: $ty:ty, value($default:expr)) => {
        /// The value given, or the default.
        pub fn $name(&self) -> $ty {
            self.$name.clone().unwrap_or_else(|| $default)
        }
    };
    ($name:ident: $ty:ty, value($default:expr) within($min:expr, $max:expr, zero_is_off)) => {
        /// The value given, or the default: 0 (off), or within the bounds.
        pub fn $name(&self) -> Result<$ty, ConfigError> {
            let v: $ty = self.$name.unwrap_or($default);
            if v != 0 {
                range(stringify!($name), v as u64, $min as u64, $max as u64)?;
            }
            Ok(v)
        }
    };
    ($name:ident: $ty:ty, value($default:expr) within($min:expr, $max:expr)) => {
        /// The value given, or the default, within the bounds (the error names them).
        pub fn $name(&self) -> Result<$ty, ConfigError> {
            let v: $ty = self.$name.unwrap_or($default);
            range(stringify!($name), v as u64, $min as u64, $max as u64)?;
            Ok(v)
        }
    };
    ($name:ident: $ty:ty, $($no_default:tt)*) => {};
}

macro_rules! option_shown {
    ($ty:ty, required) => {
        Shown::Required
    };
    ($ty:ty, unset) => {
        Shown::Unset
    };
    ($ty:ty, derived($text:expr)) => {
        Shown::Derived($text)
    };
    ($ty:ty, value($default:expr)) => {
        Shown::value::<$ty>($default)
    };
}

options! {
    /// TOML config file (see config/fairlead.toml).
    config: PathBuf, env = "FAIRLEAD_CONFIG", in [flag, env],
        default = unset;
    /// Kafka bootstrap servers, `HOST:PORT[,HOST:PORT...]` (in the file also a list).
    bootstrap: String, env = "FAIRLEAD_BOOTSTRAP", in [flag, env, file],
        default = required, #[serde(default, deserialize_with = "string_or_list")];
    /// Where clients bootstrap.
    listen: String, env = "FAIRLEAD_LISTEN", in [flag, env, file],
        default = value(DEFAULT_LISTEN.to_string());
    /// Host name given to clients for the broker ports.
    advertised_host: String, env = "FAIRLEAD_ADVERTISED_HOST", in [flag, env, file],
        default = derived("listen IP");
    /// Broker node N is served on `node_port_base + N`.
    node_port_base: u16, env = "FAIRLEAD_NODE_PORT_BASE", in [flag, env, file],
        default = derived("listen port + 1");
    /// HTTP: `/metrics`, `/startupz`, `/livez`, `/readyz`, `/clusterz`, `/leadership`.
    admin: String, env = "FAIRLEAD_ADMIN", in [flag, env, file],
        default = value(DEFAULT_ADMIN.to_string());
    /// Larger frames close the connection that sent them.
    max_frame_bytes: usize, env = "FAIRLEAD_MAX_FRAME_BYTES", in [flag, env, file],
        default = value(100 * 1024 * 1024) within(1024, i32::MAX as u64);
    /// Client connections beyond this are closed at accept.
    max_connections: usize, env = "FAIRLEAD_MAX_CONNECTIONS", in [flag, env, file],
        default = value(10_000) within(1, 1_000_000);
    /// Unanswered requests per client before fairlead stops reading it.
    max_in_flight_per_connection: usize, env = "FAIRLEAD_MAX_IN_FLIGHT_PER_CONNECTION",
        in [flag, env, file], default = value(128) within(1, 65_536);
    /// Threads serving connections: 1 is a current-thread runtime, N >= 2 a multi-thread one of N workers, 0 one worker per CPU. 1 measured cheapest and no slower for a sidecar (BENCHMARKS.md, 2026-12-05 "runtime and floor": 2 workers took 7-19% more CPU per GB and 65 MiB instead of 39 beside 200,000-partition Metadata answers); a shared fairlead in front of many busy clients may want more.
    worker_threads: usize, env = "FAIRLEAD_WORKER_THREADS", in [flag, env, file],
        default = value(1) within(0, 1024);
    /// Connecting to a broker.
    connect_timeout_ms: u64, env = "FAIRLEAD_CONNECT_TIMEOUT_MS", in [flag, env, file],
        default = value(5_000) within(10, HOUR);
    /// fairlead's own requests (Metadata, log checks).
    request_timeout_ms: u64, env = "FAIRLEAD_REQUEST_TIMEOUT_MS", in [flag, env, file],
        default = value(10_000) within(10, HOUR);
    /// Time allowed to absorb an error before the client gets it.
    absorb_timeout_ms: u64, env = "FAIRLEAD_ABSORB_TIMEOUT_MS", in [flag, env, file],
        default = value(15_000) within(0, HOUR);
    /// The same for group and transaction coordinator requests (a JoinGroup: its rebalance
    /// timeout).
    coordinator_absorb_timeout_ms: u64, env = "FAIRLEAD_COORDINATOR_ABSORB_TIMEOUT_MS",
        in [flag, env, file], default = value(25_000) within(0, HOUR);
    /// First wait while an election settles (doubles, max 500 ms).
    retry_backoff_ms: u64, env = "FAIRLEAD_RETRY_BACKOFF_MS", in [flag, env, file],
        default = value(25) within(1, 60_000);
    /// Background metadata refresh (of the topics in use only, see "What fairlead asks the
    /// cluster").
    metadata_max_age_ms: u64, env = "FAIRLEAD_METADATA_MAX_AGE_MS", in [flag, env, file],
        default = value(30_000) within(100, 24 * HOUR);
    /// Topics tracked at most; a topic beyond is not absorbed (its errors pass through,
    /// `fairlead_topics_refused_total`).
    metadata_max_topics: usize, env = "FAIRLEAD_METADATA_MAX_TOPICS", in [flag, env, file],
        default = value(10_000) within(1, 1_000_000);
    /// A topic, group or transactional id no client used for this long is forgotten.
    metadata_forget_after_ms: u64, env = "FAIRLEAD_METADATA_FORGET_AFTER_MS",
        in [flag, env, file], default = value(600_000) within(1_000, 7 * 24 * HOUR);
    /// Connections to one broker that rerouted and replayed requests share, per identity (all
    /// clients in sidecar mode; one principal with one credential in passthrough); another is
    /// opened only while all are busy or carry another producer's lane.
    reroute_connections_per_broker: usize, env = "FAIRLEAD_REROUTE_CONNECTIONS_PER_BROKER",
        in [flag, env, file], default = value(4) within(1, 1_024);
    /// A shared reroute connection unused for this long is closed.
    reroute_idle_close_ms: u64, env = "FAIRLEAD_REROUTE_IDLE_CLOSE_MS", in [flag, env, file],
        default = value(60_000) within(100, 24 * HOUR);
    /// How long to retry the cluster at start-up.
    startup_timeout_ms: u64, env = "FAIRLEAD_STARTUP_TIMEOUT_MS", in [flag, env, file],
        default = value(30_000) within(0, HOUR);
    /// `/clusterz` reports the cluster stale when metadata is older (`/readyz` does not depend
    /// on Kafka).
    ready_max_metadata_age_ms: u64, env = "FAIRLEAD_READY_MAX_METADATA_AGE_MS",
        in [flag, env, file], default = value(120_000) within(100, 24 * HOUR);
    /// Graceful shutdown bound.
    drain_timeout_ms: u64, env = "FAIRLEAD_DRAIN_TIMEOUT_MS", in [flag, env, file],
        default = value(10_000) within(0, HOUR);
    /// Idle client connections are closed (Kafka's `connections.max.idle.ms`).
    client_idle_timeout_ms: u64, env = "FAIRLEAD_CLIENT_IDLE_TIMEOUT_MS", in [flag, env, file],
        default = value(600_000) within(100, 24 * HOUR);
    /// A request must arrive whole within this (slow clients are closed).
    client_frame_timeout_ms: u64, env = "FAIRLEAD_CLIENT_FRAME_TIMEOUT_MS",
        in [flag, env, file], default = value(30_000) within(100, HOUR);
    /// A client that does not read its responses for this long is closed.
    client_write_timeout_ms: u64, env = "FAIRLEAD_CLIENT_WRITE_TIMEOUT_MS",
        in [flag, env, file], default = value(30_000) within(100, HOUR);
    /// `text` or `json`.
    log_format: LogFormat, env = "FAIRLEAD_LOG_FORMAT", in [flag, env, file],
        default = value(LogFormat::Text);
    /// A tracing filter, e.g. `fairlead=debug,warn`.
    log_level: String, env = "FAIRLEAD_LOG_LEVEL", in [flag, env, file],
        default = value("info".to_string());
    /// Also export `fairlead_topic_*` series with a `topic` label.
    topic_labels: bool, env = "FAIRLEAD_TOPIC_LABELS", in [flag, env, file],
        default = value(false), #[arg(num_args = 0..=1, default_missing_value = "true")];
    /// TLS to brokers, verified against the CA and the advertised host.
    upstream_tls: bool, env = "FAIRLEAD_UPSTREAM_TLS", in [flag, env, file],
        default = value(false), #[arg(num_args = 0..=1, default_missing_value = "true")];
    /// CA bundle (PEM) that brokers' certificates must chain to.
    upstream_tls_ca_file: PathBuf, env = "FAIRLEAD_UPSTREAM_TLS_CA_FILE", in [flag, env, file],
        default = unset;
    /// Mutual TLS with brokers: fairlead's client certificate (PEM).
    upstream_tls_cert_file: PathBuf, env = "FAIRLEAD_UPSTREAM_TLS_CERT_FILE",
        in [flag, env, file], default = unset;
    /// Mutual TLS with brokers: the certificate's key (PEM).
    upstream_tls_key_file: PathBuf, env = "FAIRLEAD_UPSTREAM_TLS_KEY_FILE",
        in [flag, env, file], default = unset;
    /// The name brokers' certificates are checked against.
    upstream_tls_server_name: String, env = "FAIRLEAD_UPSTREAM_TLS_SERVER_NAME",
        in [flag, env, file], default = derived("advertised host");
    /// Labs only: brokers' certificates are not verified; warned about at start-up.
    upstream_tls_insecure_skip_verify: bool, env = "FAIRLEAD_UPSTREAM_TLS_INSECURE_SKIP_VERIFY",
        in [flag, env, file], default = value(false),
        #[arg(num_args = 0..=1, default_missing_value = "true")];
    /// `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`, `OAUTHBEARER` for fairlead's broker
    /// connections.
    sasl_mechanism: String, env = "FAIRLEAD_SASL_MECHANISM", in [flag, env, file],
        default = unset;
    /// The SASL user fairlead authenticates as.
    sasl_username: String, env = "FAIRLEAD_SASL_USERNAME", in [flag, env, file],
        default = unset;
    /// The SASL password; never a flag (flags show in process lists).
    sasl_password: String, env = "FAIRLEAD_SASL_PASSWORD", in [env, file],
        default = unset;
    /// File holding the SASL password (read again when it changes).
    sasl_password_file: PathBuf, env = "FAIRLEAD_SASL_PASSWORD_FILE", in [flag, env, file],
        default = unset;
    /// OAUTHBEARER: the token endpoint (http or https) fairlead gets its tokens from (client
    /// credentials grant).
    sasl_oauthbearer_token_endpoint_url: String,
        env = "FAIRLEAD_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL", in [flag, env, file],
        default = unset;
    /// OAUTHBEARER: the OAuth client fairlead authenticates as.
    sasl_oauthbearer_client_id: String, env = "FAIRLEAD_SASL_OAUTHBEARER_CLIENT_ID",
        in [flag, env, file], default = unset;
    /// The OAuth client secret; never a flag.
    sasl_oauthbearer_client_secret: String, env = "FAIRLEAD_SASL_OAUTHBEARER_CLIENT_SECRET",
        in [env, file], default = unset;
    /// File holding the OAuth client secret (read again when it changes).
    sasl_oauthbearer_client_secret_file: PathBuf,
        env = "FAIRLEAD_SASL_OAUTHBEARER_CLIENT_SECRET_FILE", in [flag, env, file],
        default = unset;
    /// Scope to ask for with each token (space-separated), if set.
    sasl_oauthbearer_scope: String, env = "FAIRLEAD_SASL_OAUTHBEARER_SCOPE",
        in [flag, env, file], default = unset;
    /// Audience to ask for with each token, if set.
    sasl_oauthbearer_audience: String, env = "FAIRLEAD_SASL_OAUTHBEARER_AUDIENCE",
        in [flag, env, file], default = unset;
    /// CA bundle (PEM) for an https token endpoint.
    sasl_oauthbearer_ca_file: PathBuf, env = "FAIRLEAD_SASL_OAUTHBEARER_CA_FILE",
        in [flag, env, file], default = derived("system bundle");
    /// `sidecar` (fairlead authenticates every broker connection) or `passthrough` (clients
    /// authenticate themselves on theirs; see Secure clusters).
    sasl_mode: SaslMode, env = "FAIRLEAD_SASL_MODE", in [flag, env, file],
        default = value(SaslMode::Sidecar);
    /// TLS on fairlead's listeners: certificate (PEM).
    listener_tls_cert_file: PathBuf, env = "FAIRLEAD_LISTENER_TLS_CERT_FILE",
        in [flag, env, file], default = unset;
    /// TLS on fairlead's listeners: the certificate's key (PEM).
    listener_tls_key_file: PathBuf, env = "FAIRLEAD_LISTENER_TLS_KEY_FILE",
        in [flag, env, file], default = unset;
    /// Require client certificates chaining to this CA (PEM) on fairlead's listeners.
    listener_tls_client_ca_file: PathBuf, env = "FAIRLEAD_LISTENER_TLS_CLIENT_CA_FILE",
        in [flag, env, file], default = unset;
    /// How often certificate, key and secret files are checked for changes (0: only on SIGHUP).
    reload_interval_ms: u64, env = "FAIRLEAD_RELOAD_INTERVAL_MS", in [flag, env, file],
        default = value(5_000) within(100, HOUR, zero_is_off);
}

/// One declared option, as `declared()` lists it (for the checks of config/fairlead.toml and
/// README, and for tools).
#[derive(Debug, Clone)]
pub struct Declared {
    /// The config-file key; the flag is `--` and the name with dashes.
    pub name: &'static str,
    pub env: &'static str,
    pub flag: bool,
    pub file: bool,
    pub default: Shown,
    /// Inclusive bounds of a numeric option.
    pub bounds: Option<(u64, u64)>,
    pub doc: String,
}

/// An option's default as documentation shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum Shown {
    Required,
    Unset,
    /// Computed from other options (README's words for it).
    Derived(&'static str),
    /// The typed default, as the file would spell it.
    Value(serde_json::Value),
}

impl Shown {
    fn value<T: Serialize>(v: T) -> Shown {
        Shown::Value(serde_json::to_value(v).expect("defaults serialize"))
    }
}

impl Options {
    /// These options over `under`: every option set here wins, the rest come from `under`.
    pub fn over(self, under: Options) -> Options {
        let config = self.config.clone().or(under.config.clone());
        let as_map = |o: &Options| match serde_json::to_value(o) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => unreachable!("options serialize to a map"),
        };
        let mut merged = as_map(&under);
        merged.extend(as_map(&self).into_iter().filter(|(_, v)| !v.is_null()));
        let mut o: Options = serde_json::from_value(serde_json::Value::Object(merged))
            .expect("options read back what they wrote");
        o.config = config;
        o
    }
}

/// The environment variable of an option.
fn env_of(option: &str) -> &'static str {
    declared()
        .into_iter()
        .find(|d| d.name == option)
        .map(|d| d.env)
        .expect("a declared option")
}

/// `bootstrap` in the file: "a:1,b:2" or ["a:1", "b:2"].
fn string_or_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(Option::<OneOrMany>::deserialize(d)?.map(|b| match b {
        OneOrMany::One(s) => s,
        OneOrMany::Many(v) => v.join(","),
    }))
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9092";
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9464";

/// What fairlead tracks: the topics its clients use, at most `max_topics`, each forgotten
/// `forget_after` its last use (see `leadership::scope`).
#[derive(Debug, Clone, Copy)]
pub struct MetadataScope {
    pub max_topics: usize,
    pub forget_after: Duration,
}

impl Default for MetadataScope {
    /// The declared defaults of metadata_max_topics and metadata_forget_after_ms.
    fn default() -> MetadataScope {
        let o = Options::default();
        MetadataScope {
            max_topics: o.metadata_max_topics().expect("the default is in bounds"),
            forget_after: Duration::from_millis(
                o.metadata_forget_after_ms()
                    .expect("the default is in bounds"),
            ),
        }
    }
}

/// The connections that carry what fairlead reroutes or replays for clients, shared by every
/// client connection of one identity (see `upstream::reroutes`): at most `per_broker` to each
/// broker, each closed once unused for `idle_close`.
#[derive(Debug, Clone, Copy)]
pub struct RerouteConnections {
    pub per_broker: usize,
    pub idle_close: Duration,
}

impl Default for RerouteConnections {
    /// The declared defaults of reroute_connections_per_broker and reroute_idle_close_ms.
    fn default() -> RerouteConnections {
        let o = Options::default();
        RerouteConnections {
            per_broker: o
                .reroute_connections_per_broker()
                .expect("the default is in bounds"),
            idle_close: Duration::from_millis(
                o.reroute_idle_close_ms().expect("the default is in bounds"),
            ),
        }
    }
}

/// The resolved configuration: each field is the option of the same name (durations without
/// `_ms`), defaulted and checked by [`resolve`]; what it means is in the option's declaration.
#[derive(Debug, Clone)]
pub struct Config {
    pub bootstrap: Vec<String>,
    pub listen: SocketAddr,
    pub advertised_host: String,
    pub node_port_base: u16,
    pub admin: SocketAddr,
    pub max_frame_bytes: usize,
    pub max_connections: usize,
    /// Whether max_connections was set (flag or file) rather than defaulted: only a set limit
    /// that the open-file limit cannot hold is worth a warning.
    pub max_connections_set: bool,
    pub max_in_flight_per_connection: usize,
    pub worker_threads: usize,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub absorb_timeout: Duration,
    /// Longer than absorb_timeout: a coordinator's failover (fencing, then loading its partition
    /// of __consumer_offsets or __transaction_state) takes longer than a partition leader's.
    pub coordinator_absorb_timeout: Duration,
    pub retry_backoff: Duration,
    pub metadata_max_age: Duration,
    /// metadata_max_topics and metadata_forget_after_ms.
    pub metadata_scope: MetadataScope,
    /// reroute_connections_per_broker and reroute_idle_close_ms.
    pub reroute_connections: RerouteConnections,
    pub startup_timeout: Duration,
    pub ready_max_metadata_age: Duration,
    pub drain_timeout: Duration,
    pub client_idle_timeout: Duration,
    /// Slow-loris protection.
    pub client_frame_timeout: Duration,
    pub client_write_timeout: Duration,
    pub log_format: LogFormat,
    pub log_level: String,
    pub topic_labels: bool,
    pub upstream_tls: Option<UpstreamTls>,
    pub sasl: Option<SaslLogin>,
    pub sasl_mode: SaslMode,
    pub listener_tls: Option<ListenerTls>,
    /// reload_interval_ms: how often files are polled for changes (None: only on SIGHUP).
    pub reload_interval: Option<Duration>,
    /// Things worth a WARN line once logging is up (e.g. a world-readable secret).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct UpstreamTls {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub server_name: Option<String>,
    pub insecure_skip_verify: bool,
}

#[derive(Debug, Clone)]
pub struct ListenerTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
}

impl Config {
    /// Defaults for everything but the bootstrap servers (tests and embedding).
    pub fn with_bootstrap(bootstrap: &str) -> Config {
        resolve(
            Options::default(),
            Options {
                bootstrap: Some(bootstrap.to_string()),
                ..Default::default()
            },
        )
        .expect("defaults are valid")
    }

    /// The port clients use for broker node `id`.
    pub fn node_port(&self, id: i32) -> Option<u16> {
        u16::try_from(self.node_port_base as i64 + id as i64).ok()
    }
}

pub fn load(args: Options) -> Result<Config, ConfigError> {
    let file = match &args.config {
        Some(path) => read_file(path)?,
        None => Options::default(),
    };
    let secret_in_file =
        file.sasl_password.is_some() || file.sasl_oauthbearer_client_secret.is_some();
    let config_path = args.config.clone();
    let mut cfg = resolve(file, args)?;
    if let (true, Some(path)) = (secret_in_file, &config_path) {
        if let Some(w) = readable_by_others(path) {
            cfg.warnings.push(w);
        }
    }
    Ok(cfg)
}

/// A warning if a file holding a secret can be read by other users.
fn readable_by_others(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o077 != 0).then(|| {
        format!(
            "{} holds a secret (SASL password or OAuth client secret) and is readable by other users (mode {:o}): chmod 600 it",
            path.display(),
            mode & 0o777
        )
    })
}

pub fn read_file(path: &Path) -> Result<Options, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Flags and environment (already merged by clap, flag first) over the file over defaults.
/// Options are checked in the order they are declared (the first bad one is reported).
pub fn resolve(file: Options, flags: Options) -> Result<Config, ConfigError> {
    let o = flags.over(file);
    let mut warnings = Vec::new();
    let bootstrap = bootstrap(&o)?;
    let listen_raw = o.listen();
    let listen = socket_addr("listen", &listen_raw, "IP:PORT, e.g. 127.0.0.1:9092")?;
    let admin = socket_addr("admin", &o.admin(), "IP:PORT, e.g. 127.0.0.1:9464")?;
    let advertised_host = advertised_host(&o, listen)?;
    let node_port_base = node_port_base(&o, &listen_raw, listen)?;
    let max_frame_bytes = o.max_frame_bytes()?;
    let max_connections = o.max_connections()?;
    let max_in_flight_per_connection = o.max_in_flight_per_connection()?;
    let worker_threads = o.worker_threads()?;
    let max_topics = o.metadata_max_topics()?;
    let ms = Duration::from_millis;
    let connect_timeout = ms(o.connect_timeout_ms()?);
    let request_timeout = ms(o.request_timeout_ms()?);
    let absorb_timeout = ms(o.absorb_timeout_ms()?);
    let coordinator_absorb_timeout = ms(o.coordinator_absorb_timeout_ms()?);
    let retry_backoff = ms(o.retry_backoff_ms()?);
    let metadata_max_age = ms(o.metadata_max_age_ms()?);
    let forget_after = ms(o.metadata_forget_after_ms()?);
    let reroute_connections = RerouteConnections {
        per_broker: o.reroute_connections_per_broker()?,
        idle_close: ms(o.reroute_idle_close_ms()?),
    };
    let startup_timeout = ms(o.startup_timeout_ms()?);
    let ready_max_metadata_age = ms(o.ready_max_metadata_age_ms()?);
    let drain_timeout = ms(o.drain_timeout_ms()?);
    let client_idle_timeout = ms(o.client_idle_timeout_ms()?);
    let client_frame_timeout = ms(o.client_frame_timeout_ms()?);
    let client_write_timeout = ms(o.client_write_timeout_ms()?);
    if ready_max_metadata_age <= metadata_max_age {
        return Err(invalid(
            "ready_max_metadata_age_ms",
            &ready_max_metadata_age.as_millis().to_string(),
            "more than metadata_max_age_ms, or fairlead would turn unready between two refreshes",
        ));
    }
    let log_level = log_level(&o)?;
    let upstream_tls = upstream_tls(&o, &mut warnings)?;
    let sasl = sasl(&o, request_timeout)?;
    let listener_tls = listener_tls(&o)?;
    let sasl_mode = o.sasl_mode();
    warnings.extend(exposed_authority(
        listen,
        &sasl,
        sasl_mode,
        &upstream_tls,
        &listener_tls,
    ));
    let reload_ms = o.reload_interval_ms()?;
    Ok(Config {
        bootstrap,
        listen,
        advertised_host,
        node_port_base,
        admin,
        max_frame_bytes,
        max_connections,
        max_connections_set: o.max_connections.is_some(),
        max_in_flight_per_connection,
        worker_threads,
        connect_timeout,
        request_timeout,
        absorb_timeout,
        coordinator_absorb_timeout,
        retry_backoff,
        metadata_max_age,
        metadata_scope: MetadataScope {
            max_topics,
            forget_after,
        },
        reroute_connections,
        startup_timeout,
        ready_max_metadata_age,
        drain_timeout,
        client_idle_timeout,
        client_frame_timeout,
        client_write_timeout,
        log_format: o.log_format(),
        log_level,
        topic_labels: o.topic_labels(),
        upstream_tls,
        sasl,
        sasl_mode,
        listener_tls,
        reload_interval: (reload_ms != 0).then(|| ms(reload_ms)),
        warnings,
    })
}

/// In sidecar mode every client acts with fairlead's authority (its SASL credentials, its
/// client certificate): the pod is the trust boundary. A listener anyone else can reach, with
/// no client certificate required, hands that authority to them: worth a loud line at start.
fn exposed_authority(
    listen: SocketAddr,
    sasl: &Option<SaslLogin>,
    mode: SaslMode,
    upstream_tls: &Option<UpstreamTls>,
    listener_tls: &Option<ListenerTls>,
) -> Option<String> {
    let lends_sasl = sasl.is_some() && mode == SaslMode::Sidecar;
    let lends_cert = upstream_tls.as_ref().is_some_and(|t| t.cert_file.is_some());
    let clients_proven = listener_tls
        .as_ref()
        .is_some_and(|t| t.client_ca_file.is_some());
    if listen.ip().is_loopback() || !(lends_sasl || lends_cert) || clients_proven {
        return None;
    }
    let what = if lends_sasl {
        "fairlead's SASL principal"
    } else {
        "fairlead's client certificate"
    };
    Some(format!(
        "SIDECAR AUTHORITY EXPOSED: listen = {listen} is not a loopback address and clients need \
         no certificate (listener_tls_client_ca_file unset), so anyone who can reach this port \
         acts on the cluster as {what}. A sidecar should listen on 127.0.0.1; otherwise require \
         client certificates, or use sasl_mode = \"passthrough\""
    ))
}

fn bootstrap(o: &Options) -> Result<Vec<String>, ConfigError> {
    let Some(bootstrap_raw) = o.bootstrap.clone() else {
        return Err(ConfigError::Missing {
            option: "bootstrap",
            hint: "--bootstrap HOST:PORT, FAIRLEAD_BOOTSTRAP or `bootstrap` in the config file",
        });
    };
    let bootstrap: Vec<String> = bootstrap_raw
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if bootstrap.is_empty() {
        return Err(invalid(
            "bootstrap",
            &bootstrap_raw,
            "one or more HOST:PORT separated by commas",
        ));
    }
    for b in &bootstrap {
        let ok = b
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
        if !ok {
            return Err(invalid("bootstrap", b, "HOST:PORT with a port in 1-65535"));
        }
    }
    Ok(bootstrap)
}

fn socket_addr(option: &'static str, raw: &str, allowed: &str) -> Result<SocketAddr, ConfigError> {
    raw.parse().map_err(|_| invalid(option, raw, allowed))
}

fn advertised_host(o: &Options, listen: SocketAddr) -> Result<String, ConfigError> {
    let advertised_host = o
        .advertised_host
        .clone()
        .unwrap_or_else(|| listen.ip().to_string());
    if advertised_host.is_empty() || advertised_host.contains(char::is_whitespace) {
        return Err(invalid(
            "advertised_host",
            &advertised_host,
            "a host name or IP address clients can reach",
        ));
    }
    Ok(advertised_host)
}

fn node_port_base(o: &Options, listen_raw: &str, listen: SocketAddr) -> Result<u16, ConfigError> {
    let node_port_base = match o.node_port_base {
        Some(p) => p,
        None => listen.port().checked_add(1).ok_or_else(|| {
            invalid(
                "listen",
                listen_raw,
                "a port below 65535 so that broker ports fit above it",
            )
        })?,
    };
    if node_port_base == 0 {
        return Err(invalid("node_port_base", "0", "a port in 1-65535"));
    }
    Ok(node_port_base)
}

fn log_level(o: &Options) -> Result<String, ConfigError> {
    let log_level = o.log_level();
    if !valid_log_filter(&log_level) {
        return Err(invalid(
            "log_level",
            &log_level,
            "a tracing filter such as info, debug or fairlead=debug,warn",
        ));
    }
    Ok(log_level)
}

fn upstream_tls(
    o: &Options,
    warnings: &mut Vec<String>,
) -> Result<Option<UpstreamTls>, ConfigError> {
    if !o.upstream_tls() {
        return Ok(None);
    }
    let t = UpstreamTls {
        ca_file: o.upstream_tls_ca_file.clone(),
        cert_file: o.upstream_tls_cert_file.clone(),
        key_file: o.upstream_tls_key_file.clone(),
        server_name: o.upstream_tls_server_name.clone(),
        insecure_skip_verify: o.upstream_tls_insecure_skip_verify(),
    };
    for (option, f) in [
        ("upstream_tls_ca_file", &t.ca_file),
        ("upstream_tls_cert_file", &t.cert_file),
        ("upstream_tls_key_file", &t.key_file),
    ] {
        if let Some(f) = f {
            if !f.is_file() {
                return Err(invalid(
                    option,
                    &f.display().to_string(),
                    "a readable PEM file",
                ));
            }
        }
    }
    if t.ca_file.is_none() && !t.insecure_skip_verify {
        return Err(ConfigError::Missing {
            option: "upstream_tls_ca_file",
            hint: "the CA bundle brokers' certificates chain to (or upstream_tls_insecure_skip_verify = true, for labs)",
        });
    }
    if t.cert_file.is_some() != t.key_file.is_some() {
        return Err(invalid(
            "upstream_tls_key_file",
            &t.key_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            "set together with upstream_tls_cert_file (mutual TLS)",
        ));
    }
    if t.insecure_skip_verify {
        warnings.push("upstream_tls_insecure_skip_verify is set: brokers' certificates are NOT verified; anyone on the network path can impersonate the cluster".into());
    }
    Ok(Some(t))
}

fn sasl(o: &Options, request_timeout: Duration) -> Result<Option<SaslLogin>, ConfigError> {
    let Some(m) = &o.sasl_mechanism else {
        return Ok(None);
    };
    let mechanism = Mechanism::parse(m).ok_or_else(|| {
        invalid(
            "sasl_mechanism",
            m,
            "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER",
        )
    })?;
    if mechanism == Mechanism::OAuthBearer {
        return oauth(o, request_timeout).map(|s| Some(SaslLogin::OAuthBearer(s)));
    }
    let username = o.sasl_username.clone().ok_or(ConfigError::Missing {
        option: "sasl_username",
        hint: "the SASL user fairlead authenticates as",
    })?;
    let password = secret(
        "sasl_password",
        &o.sasl_password,
        "sasl_password_file",
        &o.sasl_password_file,
    )?
    .ok_or(ConfigError::Missing {
        option: "sasl_password",
        hint: "FAIRLEAD_SASL_PASSWORD, sasl_password in the config file, or sasl_password_file",
    })?;
    Ok(Some(SaslLogin::Password {
        credentials: Credentials {
            mechanism,
            username,
            password: password.0,
        },
        password_file: password.1,
    }))
}

/// A secret option from its environment variable, the config file or a file (in that order);
/// with the file it came from, if any, to be read again when it changes.
fn secret(
    option: &str,
    inline: &Option<String>,
    file_option: &'static str,
    file: &Option<PathBuf>,
) -> Result<Option<(Secret, Option<PathBuf>)>, ConfigError> {
    if let Some(s) = std::env::var(env_of(option)).ok().or(inline.clone()) {
        return Ok(Some((Secret::new(s), None)));
    }
    let Some(path) = file else {
        return Ok(None);
    };
    read_secret(path)
        .map(|s| Some((s, Some(path.clone()))))
        .map_err(|e| {
            invalid(
                file_option,
                &path.display().to_string(),
                &format!("a readable file holding the secret ({e})"),
            )
        })
}

fn oauth(o: &Options, request_timeout: Duration) -> Result<OAuthSettings, ConfigError> {
    let token_endpoint =
        o.sasl_oauthbearer_token_endpoint_url
            .clone()
            .ok_or(ConfigError::Missing {
                option: "sasl_oauthbearer_token_endpoint_url",
                hint: "the OAuth token endpoint fairlead gets its tokens from",
            })?;
    crate::security::http::Url::parse(&token_endpoint).map_err(|e| {
        invalid(
            "sasl_oauthbearer_token_endpoint_url",
            &token_endpoint,
            &format!("an http:// or https:// URL ({e})"),
        )
    })?;
    let client_id = o
        .sasl_oauthbearer_client_id
        .clone()
        .filter(|c| !c.is_empty())
        .ok_or(ConfigError::Missing {
            option: "sasl_oauthbearer_client_id",
            hint: "the OAuth client fairlead authenticates as",
        })?;
    let (client_secret, client_secret_file) = secret(
        "sasl_oauthbearer_client_secret",
        &o.sasl_oauthbearer_client_secret,
        "sasl_oauthbearer_client_secret_file",
        &o.sasl_oauthbearer_client_secret_file,
    )?
    .ok_or(ConfigError::Missing {
        option: "sasl_oauthbearer_client_secret",
        hint: "FAIRLEAD_SASL_OAUTHBEARER_CLIENT_SECRET, sasl_oauthbearer_client_secret in the config file, or sasl_oauthbearer_client_secret_file",
    })?;
    if let Some(f) = &o.sasl_oauthbearer_ca_file {
        if !f.is_file() {
            return Err(invalid(
                "sasl_oauthbearer_ca_file",
                &f.display().to_string(),
                "a readable PEM file",
            ));
        }
    }
    Ok(OAuthSettings {
        token_endpoint,
        client_id,
        client_secret,
        client_secret_file,
        scope: o.sasl_oauthbearer_scope.clone().filter(|s| !s.is_empty()),
        audience: o
            .sasl_oauthbearer_audience
            .clone()
            .filter(|s| !s.is_empty()),
        ca_file: o.sasl_oauthbearer_ca_file.clone(),
        timeout: request_timeout,
    })
}

fn listener_tls(o: &Options) -> Result<Option<ListenerTls>, ConfigError> {
    match (&o.listener_tls_cert_file, &o.listener_tls_key_file) {
        (None, None) => Ok(None),
        (Some(cert_file), Some(key_file)) => Ok(Some(ListenerTls {
            cert_file: cert_file.clone(),
            key_file: key_file.clone(),
            client_ca_file: o.listener_tls_client_ca_file.clone(),
        })),
        (c, _) => Err(invalid(
            if c.is_some() {
                "listener_tls_key_file"
            } else {
                "listener_tls_cert_file"
            },
            "",
            "listener_tls_cert_file and listener_tls_key_file go together",
        )),
    }
}

/// A tracing filter of comma-separated directives: `level`, `target` or `target=level`
/// (EnvFilter itself accepts almost anything, so typos would silently log nothing).
fn valid_log_filter(s: &str) -> bool {
    let level = |l: &str| l.parse::<tracing_subscriber::filter::LevelFilter>().is_ok();
    let target = |t: &str| {
        !t.is_empty()
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '-')
    };
    !s.trim().is_empty()
        && tracing_subscriber::EnvFilter::try_new(s).is_ok()
        && s.split(',')
            .map(str::trim)
            .all(|d| match d.split_once('=') {
                Some((t, l)) => target(t) && level(l),
                None => level(d) || target(d),
            })
}

fn invalid(option: &'static str, value: &str, allowed: &str) -> ConfigError {
    ConfigError::Invalid {
        option,
        value: value.to_string(),
        allowed: allowed.to_string(),
    }
}

fn range(option: &'static str, v: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if v < min || v > max {
        return Err(invalid(
            option,
            &v.to_string(),
            &format!("an integer from {min} to {max}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(toml: &str) -> Options {
        toml::from_str(toml).unwrap()
    }

    /// Issue 23: a sidecar-mode listener anyone can reach lends fairlead's authority; said
    /// loudly at start, and only then.
    #[test]
    fn a_reachable_sidecar_listener_without_client_certificates_is_warned_about() {
        let exposed = |extra: &str| {
            let toml = format!(
                "bootstrap = 'a:1'\nsasl_mechanism = 'PLAIN'\nsasl_username = 'u'\n\
                 sasl_password = 'p'\n{extra}"
            );
            resolve(file(&toml), Options::default())
                .unwrap()
                .warnings
                .iter()
                .any(|w| w.contains("SIDECAR AUTHORITY EXPOSED"))
        };
        assert!(exposed("listen = '0.0.0.0:9092'"));
        assert!(exposed("listen = '10.1.2.3:9092'"));
        assert!(!exposed(""), "the default listener is loopback");
        assert!(!exposed("listen = '127.0.0.1:9092'"));
        assert!(!exposed(
            "listen = '0.0.0.0:9092'\nsasl_mode = 'passthrough'"
        ));
        let no_sasl = resolve(
            file("bootstrap = 'a:1'\nlisten = '0.0.0.0:9092'"),
            Options::default(),
        )
        .unwrap();
        assert!(no_sasl.warnings.is_empty(), "{:?}", no_sasl.warnings);
    }

    /// config/fairlead.toml as a file: its commented-out `# key = value` lines uncommented.
    fn example_config() -> toml::Table {
        let text = include_str!("../config/fairlead.toml");
        let uncommented: String = text
            .lines()
            .map(|l| {
                l.strip_prefix("# ")
                    .filter(|r| {
                        r.contains(" = ")
                            && r.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                    })
                    .unwrap_or(l)
            })
            .collect::<Vec<_>>()
            .join("\n");
        let _: Options = toml::from_str(&uncommented).expect("every key is a real option");
        toml::from_str(&uncommented).expect("the uncommented example parses")
    }

    /// config/fairlead.toml documents every option: uncommenting all of it gives a file that
    /// parses (no typo), names every file option declared, and shows each declared default.
    #[test]
    fn the_example_config_documents_every_option_with_its_default() {
        let example = example_config();
        for d in declared().iter().filter(|d| d.file) {
            let shown = example
                .get(d.name)
                .unwrap_or_else(|| panic!("config/fairlead.toml does not document `{}`", d.name));
            if let Shown::Value(default) = &d.default {
                assert_eq!(
                    &serde_json::to_value(shown).unwrap(),
                    default,
                    "config/fairlead.toml shows `{}` = {shown}, but its default is {default}",
                    d.name
                );
            }
        }
        for d in declared().iter().filter(|d| !d.file) {
            assert!(!example.contains_key(d.name), "`{}` is no file key", d.name);
        }
    }

    /// README's configuration table, as `declared()` gives it.
    fn readme_table() -> String {
        let mut t = String::from("| option | default | meaning |\n| --- | --- | --- |\n");
        for d in declared().iter().filter(|d| d.file) {
            let default = match &d.default {
                Shown::Required => "(required)".to_string(),
                Shown::Unset => String::new(),
                Shown::Derived(text) => text.to_string(),
                Shown::Value(serde_json::Value::Number(n)) => n.to_string(),
                Shown::Value(serde_json::Value::String(s)) => format!("`{s}`"),
                Shown::Value(v) => format!("`{v}`"),
            };
            let default = if default.is_empty() {
                " ".to_string()
            } else {
                format!(" {default} ")
            };
            t.push_str(&format!("| `{}` |{default}| {} |\n", d.name, d.doc));
        }
        t
    }

    /// README's table of options follows the declarations: `FAIRLEAD_BLESS=1 cargo test --lib
    /// config` writes it there after a change.
    #[test]
    fn the_readme_table_is_the_declared_options() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
        let readme = std::fs::read_to_string(&path).unwrap();
        let start = readme
            .find("| option | default | meaning |")
            .expect("README has a table of options");
        let end = readme[start..]
            .find("\n\n")
            .map_or(readme.len(), |e| start + e + 1);
        let expected = readme_table();
        if readme[start..end] == expected {
            return;
        }
        if std::env::var_os("FAIRLEAD_BLESS").is_some() {
            let written = format!("{}{expected}{}", &readme[..start], &readme[end..]);
            std::fs::write(&path, written).unwrap();
            return;
        }
        panic!(
            "README's table of options differs from the declarations in src/config.rs \
             (FAIRLEAD_BLESS=1 cargo test --lib config writes it); expected:\n{expected}"
        );
    }

    /// Each variable is FAIRLEAD_ and the option's name, and clap reads the declared ones.
    #[test]
    fn every_option_has_its_variable_and_flag() {
        use clap::CommandFactory;
        let cli = Cli::command();
        for d in declared() {
            assert_eq!(d.env, format!("FAIRLEAD_{}", d.name.to_uppercase()));
            let arg = cli
                .get_arguments()
                .find(|a| a.get_long() == Some(&d.name.replace('_', "-")));
            assert_eq!(arg.is_some(), d.flag, "--{}", d.name);
            if let Some(arg) = arg {
                assert_eq!(arg.get_env().and_then(|e| e.to_str()), Some(d.env));
            }
        }
    }

    #[test]
    fn defaults() {
        let c = Config::with_bootstrap("k:9092");
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.node_port_base, 9093);
        assert_eq!(c.node_port(3), Some(9096));
        assert_eq!(c.advertised_host, "127.0.0.1");
        assert_eq!(c.max_frame_bytes, 100 * 1024 * 1024);
        assert_eq!(c.worker_threads, 1);
        assert!(!c.max_connections_set);
        let set = resolve(
            file("bootstrap = 'k:1'\nmax_connections = 5\nworker_threads = 0"),
            Options::default(),
        )
        .unwrap();
        assert!(set.max_connections_set);
        assert_eq!(set.worker_threads, 0);
    }

    #[test]
    fn flags_override_the_file() {
        let f =
            file("bootstrap = ['a:1', 'b:2']\nlisten = '127.0.0.1:7000'\nabsorb_timeout_ms = 5000");
        let c = resolve(
            f,
            Options {
                listen: Some("127.0.0.1:8000".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(c.bootstrap, vec!["a:1", "b:2"]);
        assert_eq!(c.listen.port(), 8000);
        assert_eq!(c.node_port_base, 8001);
        assert_eq!(c.absorb_timeout, Duration::from_secs(5));
    }

    #[test]
    fn oauthbearer_takes_its_secret_from_a_file_and_names_what_is_missing() {
        let dir = std::env::temp_dir().join(format!("fairlead-cfg-oauth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret = dir.join("secret");
        std::fs::write(&secret, "s3cret\n").unwrap();
        let base = "bootstrap = 'k:1'\nsasl_mechanism = 'oauthbearer'\n";
        let full = format!(
            "{base}sasl_oauthbearer_token_endpoint_url = 'https://idp.example.com/oauth2/token'\n\
             sasl_oauthbearer_client_id = 'fairlead'\nsasl_oauthbearer_scope = 'kafka'\n\
             sasl_oauthbearer_client_secret_file = '{}'",
            secret.display()
        );
        let c = resolve(file(&full), Options::default()).unwrap();
        let Some(SaslLogin::OAuthBearer(o)) = c.sasl else {
            panic!("{:?}", c.sasl)
        };
        assert_eq!(o.client_secret.expose(), "s3cret");
        assert_eq!(o.client_secret_file.as_deref(), Some(secret.as_path()));
        assert_eq!(
            (o.scope.as_deref(), o.audience.as_deref()),
            (Some("kafka"), None)
        );
        assert!(!format!("{o:?}").contains("s3cret"));
        for (drop, option) in [
            (
                "sasl_oauthbearer_token_endpoint_url",
                "`sasl_oauthbearer_token_endpoint_url`",
            ),
            ("sasl_oauthbearer_client_id", "`sasl_oauthbearer_client_id`"),
            (
                "sasl_oauthbearer_client_secret_file",
                "`sasl_oauthbearer_client_secret`",
            ),
        ] {
            let text: String = full
                .lines()
                .filter(|l| !l.starts_with(drop))
                .map(|l| format!("{l}\n"))
                .collect();
            let e = resolve(file(&text), Options::default())
                .unwrap_err()
                .to_string();
            assert!(e.contains(option), "{e}");
        }
        let e = resolve(
            file(&full.replace("https://idp.example.com", "ftp://idp")),
            Options::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("`sasl_oauthbearer_token_endpoint_url`"), "{e}");
        std::fs::write(&secret, "\n").unwrap();
        let e = resolve(file(&full), Options::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`sasl_oauthbearer_client_secret_file`") && e.contains("empty"),
            "{e}"
        );
    }

    #[test]
    fn reload_interval_is_off_at_zero_and_bounded_otherwise() {
        let c = Config::with_bootstrap("k:1");
        assert_eq!(c.reload_interval, Some(Duration::from_secs(5)));
        let c = resolve(
            file("bootstrap = 'k:1'\nreload_interval_ms = 0"),
            Options::default(),
        );
        assert_eq!(c.unwrap().reload_interval, None);
        let e = resolve(
            file("bootstrap = 'k:1'\nreload_interval_ms = 5"),
            Options::default(),
        );
        assert!(e.unwrap_err().to_string().contains("`reload_interval_ms`"));
    }

    #[test]
    fn bad_values_name_option_value_and_what_is_allowed() {
        let e = resolve(file("bootstrap = 'x'"), Options::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`bootstrap`") && e.contains("\"x\"") && e.contains("HOST:PORT"),
            "{e}"
        );
        let e = resolve(
            file("bootstrap = 'a:1'\nmax_frame_bytes = 5"),
            Options::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("`max_frame_bytes`") && e.contains("\"5\"") && e.contains("from 1024"),
            "{e}"
        );
        let e = resolve(
            file("bootstrap = 'a:1'\nlisten = 'nope'"),
            Options::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("`listen`"), "{e}");
        assert!(
            toml::from_str::<Options>("bootstrapp = 'a:1'").is_err(),
            "unknown keys are rejected"
        );
        let e = resolve(Options::default(), Options::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing required option `bootstrap`"), "{e}");
    }
}
