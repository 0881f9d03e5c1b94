//! Configuration: a TOML file, overridden by `FAIRLEAD_*` environment variables, overridden by
//! command-line flags. Every option is documented, with its default, in config/fairlead.toml.
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

/// Every option of the proxy, listed once: each is a flag (`--option-name`), an environment
/// variable (`FAIRLEAD_OPTION_NAME`) and a config-file key (`option_name`), all optional here;
/// [`resolve`] layers them (flags and environment over the file) and applies the defaults. The
/// file rejects unknown keys: a typo is an error, not a silently ignored setting.
#[derive(Debug, Args, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// TOML config file (see config/fairlead.toml). Flag or environment only.
    #[arg(long, env = "FAIRLEAD_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Kafka bootstrap servers, HOST:PORT[,HOST:PORT...] (in the file also a list).
    #[arg(long, env = "FAIRLEAD_BOOTSTRAP")]
    #[serde(default, deserialize_with = "string_or_list")]
    pub bootstrap: Option<String>,
    /// Address clients bootstrap at. Broker node N is served on port + 1 + N.
    #[arg(long, env = "FAIRLEAD_LISTEN")]
    pub listen: Option<String>,
    /// Host advertised to clients for the per-broker ports (default: the listen host).
    #[arg(long, env = "FAIRLEAD_ADVERTISED_HOST")]
    pub advertised_host: Option<String>,
    /// Port of node 0; node N is served on node_port_base + N (default: listen port + 1).
    #[arg(long, env = "FAIRLEAD_NODE_PORT_BASE")]
    pub node_port_base: Option<u16>,
    /// Admin HTTP address: /metrics, /startupz, /livez, /readyz, /clusterz, /leadership.
    #[arg(long, env = "FAIRLEAD_ADMIN")]
    pub admin: Option<String>,
    #[arg(long, env = "FAIRLEAD_MAX_FRAME_BYTES")]
    pub max_frame_bytes: Option<usize>,
    #[arg(long, env = "FAIRLEAD_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    #[arg(long, env = "FAIRLEAD_MAX_IN_FLIGHT_PER_CONNECTION")]
    pub max_in_flight_per_connection: Option<usize>,
    #[arg(long, env = "FAIRLEAD_WORKER_THREADS")]
    pub worker_threads: Option<usize>,
    #[arg(long, env = "FAIRLEAD_CONNECT_TIMEOUT_MS")]
    pub connect_timeout_ms: Option<u64>,
    #[arg(long, env = "FAIRLEAD_REQUEST_TIMEOUT_MS")]
    pub request_timeout_ms: Option<u64>,
    #[arg(long, env = "FAIRLEAD_ABSORB_TIMEOUT_MS")]
    pub absorb_timeout_ms: Option<u64>,
    #[arg(long, env = "FAIRLEAD_COORDINATOR_ABSORB_TIMEOUT_MS")]
    pub coordinator_absorb_timeout_ms: Option<u64>,
    #[arg(long, env = "FAIRLEAD_RETRY_BACKOFF_MS")]
    pub retry_backoff_ms: Option<u64>,
    #[arg(long, env = "FAIRLEAD_METADATA_MAX_AGE_MS")]
    pub metadata_max_age_ms: Option<u64>,
    /// At most this many topics tracked (and asked for in fairlead's own Metadata requests).
    #[arg(long, env = "FAIRLEAD_METADATA_MAX_TOPICS")]
    pub metadata_max_topics: Option<usize>,
    /// A topic or coordinator no client used for this long is forgotten.
    #[arg(long, env = "FAIRLEAD_METADATA_FORGET_AFTER_MS")]
    pub metadata_forget_after_ms: Option<u64>,
    #[arg(long, env = "FAIRLEAD_STARTUP_TIMEOUT_MS")]
    pub startup_timeout_ms: Option<u64>,
    /// /clusterz reports the cluster stale past this metadata age (readiness does not).
    #[arg(long, env = "FAIRLEAD_READY_MAX_METADATA_AGE_MS")]
    pub ready_max_metadata_age_ms: Option<u64>,
    #[arg(long, env = "FAIRLEAD_DRAIN_TIMEOUT_MS")]
    pub drain_timeout_ms: Option<u64>,
    #[arg(long, env = "FAIRLEAD_CLIENT_IDLE_TIMEOUT_MS")]
    pub client_idle_timeout_ms: Option<u64>,
    #[arg(long, env = "FAIRLEAD_CLIENT_FRAME_TIMEOUT_MS")]
    pub client_frame_timeout_ms: Option<u64>,
    #[arg(long, env = "FAIRLEAD_CLIENT_WRITE_TIMEOUT_MS")]
    pub client_write_timeout_ms: Option<u64>,
    #[arg(long, env = "FAIRLEAD_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// tracing filter, e.g. "info" or "fairlead=debug".
    #[arg(long, env = "FAIRLEAD_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Also export per-topic series (fairlead_topic_*): one series per topic, so opt-in.
    #[arg(long, env = "FAIRLEAD_TOPIC_LABELS", num_args = 0..=1, default_missing_value = "true")]
    pub topic_labels: Option<bool>,
    /// TLS to brokers.
    #[arg(long, env = "FAIRLEAD_UPSTREAM_TLS", num_args = 0..=1, default_missing_value = "true")]
    pub upstream_tls: Option<bool>,
    /// CA bundle (PEM) that brokers' certificates must chain to.
    #[arg(long, env = "FAIRLEAD_UPSTREAM_TLS_CA_FILE")]
    pub upstream_tls_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS with brokers.
    #[arg(long, env = "FAIRLEAD_UPSTREAM_TLS_CERT_FILE")]
    pub upstream_tls_cert_file: Option<PathBuf>,
    #[arg(long, env = "FAIRLEAD_UPSTREAM_TLS_KEY_FILE")]
    pub upstream_tls_key_file: Option<PathBuf>,
    /// Name to verify brokers' certificates against (default: each broker's advertised host).
    #[arg(long, env = "FAIRLEAD_UPSTREAM_TLS_SERVER_NAME")]
    pub upstream_tls_server_name: Option<String>,
    /// Do not verify brokers' certificates (labs only; logged loudly).
    #[arg(long, env = "FAIRLEAD_UPSTREAM_TLS_INSECURE_SKIP_VERIFY", num_args = 0..=1, default_missing_value = "true")]
    pub upstream_tls_insecure_skip_verify: Option<bool>,
    /// SASL mechanism for fairlead's broker connections: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512,
    /// OAUTHBEARER.
    #[arg(long, env = "FAIRLEAD_SASL_MECHANISM")]
    pub sasl_mechanism: Option<String>,
    #[arg(long, env = "FAIRLEAD_SASL_USERNAME")]
    pub sasl_username: Option<String>,
    /// The SASL password: the config file or FAIRLEAD_SASL_PASSWORD, never a flag (flags show
    /// in process lists).
    #[arg(skip)]
    pub sasl_password: Option<String>,
    /// File holding the SASL password (read again when it changes).
    #[arg(long, env = "FAIRLEAD_SASL_PASSWORD_FILE")]
    pub sasl_password_file: Option<PathBuf>,
    /// OAUTHBEARER: the OIDC/OAuth token endpoint fairlead gets its tokens from (client
    /// credentials grant), http:// or https://.
    #[arg(long, env = "FAIRLEAD_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL")]
    pub sasl_oauthbearer_token_endpoint_url: Option<String>,
    #[arg(long, env = "FAIRLEAD_SASL_OAUTHBEARER_CLIENT_ID")]
    pub sasl_oauthbearer_client_id: Option<String>,
    /// The OAuth client secret: the config file or FAIRLEAD_SASL_OAUTHBEARER_CLIENT_SECRET,
    /// never a flag.
    #[arg(skip)]
    pub sasl_oauthbearer_client_secret: Option<String>,
    /// File holding the OAuth client secret (read again when it changes).
    #[arg(long, env = "FAIRLEAD_SASL_OAUTHBEARER_CLIENT_SECRET_FILE")]
    pub sasl_oauthbearer_client_secret_file: Option<PathBuf>,
    /// Scope to ask for (space-separated), if the provider needs one.
    #[arg(long, env = "FAIRLEAD_SASL_OAUTHBEARER_SCOPE")]
    pub sasl_oauthbearer_scope: Option<String>,
    /// Audience to ask for (the `audience` parameter some providers need), if any.
    #[arg(long, env = "FAIRLEAD_SASL_OAUTHBEARER_AUDIENCE")]
    pub sasl_oauthbearer_audience: Option<String>,
    /// CA bundle (PEM) for an https token endpoint (default: the system's bundle).
    #[arg(long, env = "FAIRLEAD_SASL_OAUTHBEARER_CA_FILE")]
    pub sasl_oauthbearer_ca_file: Option<PathBuf>,
    /// sidecar: fairlead authenticates every broker connection; passthrough: clients
    /// authenticate themselves on theirs.
    #[arg(long, env = "FAIRLEAD_SASL_MODE")]
    pub sasl_mode: Option<SaslMode>,
    /// TLS on fairlead's own listeners: certificate and key (PEM).
    #[arg(long, env = "FAIRLEAD_LISTENER_TLS_CERT_FILE")]
    pub listener_tls_cert_file: Option<PathBuf>,
    #[arg(long, env = "FAIRLEAD_LISTENER_TLS_KEY_FILE")]
    pub listener_tls_key_file: Option<PathBuf>,
    /// Require client certificates chaining to this CA (PEM).
    #[arg(long, env = "FAIRLEAD_LISTENER_TLS_CLIENT_CA_FILE")]
    pub listener_tls_client_ca_file: Option<PathBuf>,
    /// How often certificate, key and secret files are checked for changes (0: never; SIGHUP
    /// reloads them in any case).
    #[arg(long, env = "FAIRLEAD_RELOAD_INTERVAL_MS")]
    pub reload_interval_ms: Option<u64>,
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
    fn default() -> MetadataScope {
        MetadataScope {
            max_topics: 10_000,
            forget_after: Duration::from_secs(600),
        }
    }
}

/// The resolved configuration.
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
    /// Threads that run connections: 1 (the default) is a single-threaded runtime, which for a
    /// sidecar's traffic costs the least CPU (no cross-thread wake-ups; benches/HISTORY.md); 0 means
    /// one per CPU.
    pub worker_threads: usize,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub absorb_timeout: Duration,
    /// The same for group and transaction coordinator requests: a coordinator's failover
    /// (fencing, then loading its partition of __consumer_offsets or __transaction_state) takes
    /// longer than a partition leader's.
    pub coordinator_absorb_timeout: Duration,
    pub retry_backoff: Duration,
    pub metadata_max_age: Duration,
    pub metadata_scope: MetadataScope,
    pub startup_timeout: Duration,
    pub ready_max_metadata_age: Duration,
    pub drain_timeout: Duration,
    /// A client connection with no request for this long is closed (Kafka's
    /// connections.max.idle.ms).
    pub client_idle_timeout: Duration,
    /// A request frame must arrive whole within this (slow-loris protection).
    pub client_frame_timeout: Duration,
    /// A client that does not read a response for this long is disconnected.
    pub client_write_timeout: Duration,
    pub log_format: LogFormat,
    pub log_level: String,
    pub topic_labels: bool,
    pub upstream_tls: Option<UpstreamTls>,
    pub sasl: Option<SaslLogin>,
    pub sasl_mode: SaslMode,
    pub listener_tls: Option<ListenerTls>,
    /// How often files are polled for changes (None: only on SIGHUP).
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
pub fn resolve(file: Options, flags: Options) -> Result<Config, ConfigError> {
    let o = flags.over(file);
    let mut warnings = Vec::new();
    let addrs = addresses(&o)?;
    let limits = limits(&o)?;
    let times = timeouts(&o)?;
    let (log_format, log_level) = logging(&o)?;
    let upstream_tls = upstream_tls(&o, &mut warnings)?;
    let sasl = sasl(&o)?;
    let listener_tls = listener_tls(&o)?;
    let sasl_mode = o.sasl_mode.unwrap_or_default();
    warnings.extend(exposed_authority(
        addrs.listen,
        &sasl,
        sasl_mode,
        &upstream_tls,
        &listener_tls,
    ));
    let reload_ms = o.reload_interval_ms.unwrap_or(5_000);
    if reload_ms != 0 {
        range("reload_interval_ms", reload_ms, 100, 3_600_000)?;
    }
    Ok(Config {
        bootstrap: addrs.bootstrap,
        listen: addrs.listen,
        advertised_host: addrs.advertised_host,
        node_port_base: addrs.node_port_base,
        admin: addrs.admin,
        max_frame_bytes: limits.max_frame_bytes,
        max_connections: limits.max_connections,
        max_connections_set: limits.max_connections_set,
        max_in_flight_per_connection: limits.max_in_flight,
        worker_threads: limits.worker_threads,
        connect_timeout: times.connect,
        request_timeout: times.request,
        absorb_timeout: times.absorb,
        coordinator_absorb_timeout: times.coordinator_absorb,
        retry_backoff: times.retry_backoff,
        metadata_max_age: times.metadata_max_age,
        metadata_scope: MetadataScope {
            max_topics: limits.metadata_max_topics,
            forget_after: times.metadata_forget_after,
        },
        startup_timeout: times.startup,
        ready_max_metadata_age: times.ready_max_metadata_age,
        drain_timeout: times.drain,
        client_idle_timeout: times.client_idle,
        client_frame_timeout: times.client_frame,
        client_write_timeout: times.client_write,
        log_format,
        log_level,
        topic_labels: o.topic_labels.unwrap_or(false),
        upstream_tls,
        sasl,
        sasl_mode,
        listener_tls,
        reload_interval: (reload_ms != 0).then(|| Duration::from_millis(reload_ms)),
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

struct Addresses {
    bootstrap: Vec<String>,
    listen: SocketAddr,
    advertised_host: String,
    node_port_base: u16,
    admin: SocketAddr,
}

fn addresses(o: &Options) -> Result<Addresses, ConfigError> {
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
    let listen_raw = o.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listen: SocketAddr = listen_raw
        .parse()
        .map_err(|_| invalid("listen", listen_raw, "IP:PORT, e.g. 127.0.0.1:9092"))?;
    let admin_raw = o.admin.as_deref().unwrap_or(DEFAULT_ADMIN);
    let admin: SocketAddr = admin_raw
        .parse()
        .map_err(|_| invalid("admin", admin_raw, "IP:PORT, e.g. 127.0.0.1:9464"))?;
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
    Ok(Addresses {
        bootstrap,
        listen,
        advertised_host,
        node_port_base,
        admin,
    })
}

struct Limits {
    max_frame_bytes: usize,
    max_connections: usize,
    max_connections_set: bool,
    max_in_flight: usize,
    worker_threads: usize,
    metadata_max_topics: usize,
}

fn limits(o: &Options) -> Result<Limits, ConfigError> {
    let max_frame_bytes = o.max_frame_bytes.unwrap_or(100 * 1024 * 1024);
    range(
        "max_frame_bytes",
        max_frame_bytes as u64,
        1024,
        i32::MAX as u64,
    )?;
    let max_connections = o.max_connections.unwrap_or(10_000);
    range("max_connections", max_connections as u64, 1, 1_000_000)?;
    let max_in_flight = o.max_in_flight_per_connection.unwrap_or(128);
    range(
        "max_in_flight_per_connection",
        max_in_flight as u64,
        1,
        65_536,
    )?;
    let worker_threads = o.worker_threads.unwrap_or(1);
    range("worker_threads", worker_threads as u64, 0, 1024)?;
    let metadata_max_topics = o.metadata_max_topics.unwrap_or(10_000);
    range(
        "metadata_max_topics",
        metadata_max_topics as u64,
        1,
        1_000_000,
    )?;
    Ok(Limits {
        metadata_max_topics,
        max_frame_bytes,
        max_connections,
        max_connections_set: o.max_connections.is_some(),
        max_in_flight,
        worker_threads,
    })
}

struct Timeouts {
    connect: Duration,
    request: Duration,
    absorb: Duration,
    coordinator_absorb: Duration,
    retry_backoff: Duration,
    metadata_max_age: Duration,
    metadata_forget_after: Duration,
    startup: Duration,
    ready_max_metadata_age: Duration,
    drain: Duration,
    client_idle: Duration,
    client_frame: Duration,
    client_write: Duration,
}

fn timeouts(o: &Options) -> Result<Timeouts, ConfigError> {
    const HOUR: u64 = 3_600_000;
    // (option, value given, default, min, max), all in milliseconds.
    let ms = |option: &'static str, v: Option<u64>, default: u64, min: u64, max: u64| {
        let v = v.unwrap_or(default);
        range(option, v, min, max).map(|()| Duration::from_millis(v))
    };
    let t = Timeouts {
        connect: ms("connect_timeout_ms", o.connect_timeout_ms, 5_000, 10, HOUR)?,
        request: ms("request_timeout_ms", o.request_timeout_ms, 10_000, 10, HOUR)?,
        absorb: ms("absorb_timeout_ms", o.absorb_timeout_ms, 15_000, 0, HOUR)?,
        coordinator_absorb: ms(
            "coordinator_absorb_timeout_ms",
            o.coordinator_absorb_timeout_ms,
            25_000,
            0,
            HOUR,
        )?,
        retry_backoff: ms("retry_backoff_ms", o.retry_backoff_ms, 25, 1, 60_000)?,
        metadata_max_age: ms(
            "metadata_max_age_ms",
            o.metadata_max_age_ms,
            30_000,
            100,
            24 * HOUR,
        )?,
        metadata_forget_after: ms(
            "metadata_forget_after_ms",
            o.metadata_forget_after_ms,
            600_000,
            1_000,
            7 * 24 * HOUR,
        )?,
        startup: ms("startup_timeout_ms", o.startup_timeout_ms, 30_000, 0, HOUR)?,
        ready_max_metadata_age: ms(
            "ready_max_metadata_age_ms",
            o.ready_max_metadata_age_ms,
            120_000,
            100,
            24 * HOUR,
        )?,
        drain: ms("drain_timeout_ms", o.drain_timeout_ms, 10_000, 0, HOUR)?,
        client_idle: ms(
            "client_idle_timeout_ms",
            o.client_idle_timeout_ms,
            600_000,
            100,
            24 * HOUR,
        )?,
        client_frame: ms(
            "client_frame_timeout_ms",
            o.client_frame_timeout_ms,
            30_000,
            100,
            HOUR,
        )?,
        client_write: ms(
            "client_write_timeout_ms",
            o.client_write_timeout_ms,
            30_000,
            100,
            HOUR,
        )?,
    };
    if t.ready_max_metadata_age <= t.metadata_max_age {
        return Err(invalid(
            "ready_max_metadata_age_ms",
            &t.ready_max_metadata_age.as_millis().to_string(),
            "more than metadata_max_age_ms, or fairlead would turn unready between two refreshes",
        ));
    }
    Ok(t)
}

fn logging(o: &Options) -> Result<(LogFormat, String), ConfigError> {
    let log_level = o.log_level.clone().unwrap_or_else(|| "info".to_string());
    if !valid_log_filter(&log_level) {
        return Err(invalid(
            "log_level",
            &log_level,
            "a tracing filter such as info, debug or fairlead=debug,warn",
        ));
    }
    Ok((o.log_format.unwrap_or_default(), log_level))
}

fn upstream_tls(
    o: &Options,
    warnings: &mut Vec<String>,
) -> Result<Option<UpstreamTls>, ConfigError> {
    if !o.upstream_tls.unwrap_or(false) {
        return Ok(None);
    }
    let t = UpstreamTls {
        ca_file: o.upstream_tls_ca_file.clone(),
        cert_file: o.upstream_tls_cert_file.clone(),
        key_file: o.upstream_tls_key_file.clone(),
        server_name: o.upstream_tls_server_name.clone(),
        insecure_skip_verify: o.upstream_tls_insecure_skip_verify.unwrap_or(false),
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

fn sasl(o: &Options) -> Result<Option<SaslLogin>, ConfigError> {
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
        return oauth(o).map(|s| Some(SaslLogin::OAuthBearer(s)));
    }
    let username = o.sasl_username.clone().ok_or(ConfigError::Missing {
        option: "sasl_username",
        hint: "the SASL user fairlead authenticates as",
    })?;
    let password = secret(
        "FAIRLEAD_SASL_PASSWORD",
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

/// A secret from the environment, the config file or a file (in that order); with the file it
/// came from, if any, to be read again when it changes.
fn secret(
    env: &str,
    inline: &Option<String>,
    file_option: &'static str,
    file: &Option<PathBuf>,
) -> Result<Option<(Secret, Option<PathBuf>)>, ConfigError> {
    if let Some(s) = std::env::var(env).ok().or(inline.clone()) {
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

fn oauth(o: &Options) -> Result<OAuthSettings, ConfigError> {
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
        "FAIRLEAD_SASL_OAUTHBEARER_CLIENT_SECRET",
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
        timeout: Duration::from_millis(o.request_timeout_ms.unwrap_or(10_000)),
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

    /// config/fairlead.toml documents every option: uncommenting all of it gives a file that
    /// parses (no typo) and names every field of `Options`.
    #[test]
    fn the_example_config_documents_every_option() {
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
        let parsed: toml::Table =
            toml::from_str(&uncommented).expect("the uncommented example parses");
        let _: Options = toml::from_str(&uncommented).expect("every key is a real option");
        let fields = include_str!("config.rs")
            .split("pub struct Options {")
            .nth(1)
            .unwrap()
            .split("\n}")
            .next()
            .unwrap();
        let mut file_only = false;
        for line in fields.lines().map(str::trim) {
            if line.starts_with("#[serde(skip)]") {
                file_only = true;
            }
            if !line.starts_with("pub ") {
                continue;
            }
            let name = line.trim_start_matches("pub ").split(':').next().unwrap();
            if std::mem::take(&mut file_only) {
                continue; // not a file key (`config` itself)
            }
            assert!(
                parsed.contains_key(name),
                "config/fairlead.toml does not document `{name}`"
            );
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
