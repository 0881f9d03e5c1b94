//! The admin HTTP endpoint: `/metrics` (Prometheus), the probes, `/leadership`.
//!
//! Deliberately tiny: a few GET paths for probes, Prometheus and operators, one request per
//! connection, bounded reads and a timeout per connection. A general HTTP stack would more
//! than double fairlead's build for no capability these endpoints need.
//!
//! The probes mean one thing each (README, "Kubernetes"):
//! * `/startupz`: the listeners are bound and the first metadata is loaded (start-up is done);
//! * `/livez` (and `/healthz`, its older name): the process serves; never depends on Kafka;
//! * `/readyz`: fairlead can take connections (its listeners are bound). A Kafka outage does not
//!   make it fail: the application keeps its pod in its Services for the work that does not
//!   touch Kafka, and the outage shows in the metrics, `/leadership` and `/clusterz`;
//! * `/clusterz`: cluster metadata is younger than `ready_max_metadata_age_ms`, for alerts and
//!   dashboards (what `/readyz` meant before; no probe should use it).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, UNIX_EPOCH};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::cluster::Cluster;
use crate::leadership::Leadership;

const BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder (once per process) and registers every series.
pub fn install_metrics() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets(&BUCKETS)
                .expect("static buckets are valid")
                .install_recorder()
                .expect("no other metrics recorder is installed");
            crate::metrics::init();
            let h = handle.clone();
            // Histograms are drained into their buckets by upkeep.
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(Duration::from_secs(5));
                    h.run_upkeep();
                })
                .expect("spawn upkeep thread");
            handle
        })
        .clone()
}

/// What the probes check besides the cluster metadata.
#[derive(Default)]
pub struct Readiness {
    /// Set once the bootstrap port and a port per known broker are bound (after the first
    /// metadata is loaded, so it also means start-up is done).
    pub listeners_bound: AtomicBool,
}

pub async fn serve(
    listener: TcpListener,
    cluster: Arc<Cluster>,
    readiness: Arc<Readiness>,
    metrics: PrometheusHandle,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (sock, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(x) => x,
                Err(e) => {
                    warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let (p, r, m) = (cluster.clone(), readiness.clone(), metrics.clone());
        tokio::spawn(async move {
            if tokio::time::timeout(Duration::from_secs(10), handle(sock, &p, &r, &m))
                .await
                .is_err()
            {
                debug!(%peer, "admin request timed out");
            }
        });
    }
}

async fn handle(
    mut sock: TcpStream,
    cluster: &Cluster,
    readiness: &Readiness,
    metrics: &PrometheusHandle,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 16 * 1024 {
            return respond(&mut sock, 431, "text/plain", "request header too large\n").await;
        }
    }
    let line = String::from_utf8_lossy(&buf[..buf.iter().position(|b| *b == b'\r').unwrap_or(0)])
        .to_string();
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    if method != "GET" && method != "HEAD" {
        return respond(&mut sock, 405, "text/plain", "only GET\n").await;
    }
    match path {
        "/metrics" => {
            respond(
                &mut sock,
                200,
                "text/plain; version=0.0.4",
                &metrics.render(),
            )
            .await
        }
        "/healthz" | "/livez" => respond(&mut sock, 200, "text/plain", "ok\n").await,
        "/startupz" | "/readyz" | "/clusterz" => {
            let (ok, why) = match path {
                "/startupz" => started(cluster, readiness),
                "/readyz" => ready(cluster, readiness),
                _ => cluster_fresh(cluster),
            };
            respond(
                &mut sock,
                if ok { 200 } else { 503 },
                "text/plain",
                &format!("{why}\n"),
            )
            .await
        }
        "/leadership" => {
            let body =
                serde_json::to_string_pretty(&leadership_view(&cluster.leadership, &cluster.pool))
                    .unwrap_or_default();
            respond(&mut sock, 200, "application/json", &body).await
        }
        _ => {
            respond(
                &mut sock,
                404,
                "text/plain",
                "not found: try /metrics, /startupz, /livez, /readyz, /clusterz, /leadership\n",
            )
            .await
        }
    }
}

/// Readiness: fairlead can take connections: its listeners are bound, a port for every broker
/// in the cluster included (one another process holds is retried meanwhile and named here).
/// Every condition here is about fairlead itself, none about Kafka being reachable: a sidecar that turned unready with the cluster would take
/// its application out of its Services, even for requests that never touch Kafka.
fn ready(cluster: &Cluster, readiness: &Readiness) -> (bool, String) {
    if !readiness.listeners_bound.load(Ordering::Acquire) {
        return (false, "not ready: listeners not bound yet".into());
    }
    if let Some(unbound) = cluster.ports.unbound_report() {
        return (false, format!("not ready: {unbound}"));
    }
    (true, "ready: listeners bound".into())
}

/// Start-up is done: listeners bound and the first metadata loaded.
fn started(cluster: &Cluster, readiness: &Readiness) -> (bool, String) {
    if cluster.leadership.last_metadata().is_none() {
        return (
            false,
            "not started: no metadata from the cluster yet".into(),
        );
    }
    match ready(cluster, readiness) {
        (true, _) => (true, "started: metadata loaded, listeners bound".into()),
        (false, why) => (false, why.replacen("not ready", "not started", 1)),
    }
}

/// Whether fairlead's view of the cluster is fresh (for alerts, never for a probe).
fn cluster_fresh(cluster: &Cluster) -> (bool, String) {
    match cluster.leadership.last_metadata() {
        None => (false, "stale: no metadata from the cluster yet".into()),
        Some(t) if t.elapsed() > cluster.cfg.ready_max_metadata_age => (
            false,
            format!(
                "stale: metadata is {}s old (limit {}s)",
                t.elapsed().as_secs(),
                cluster.cfg.ready_max_metadata_age.as_secs()
            ),
        ),
        Some(t) => (
            true,
            format!("fresh: metadata {}ms old", t.elapsed().as_millis()),
        ),
    }
}

async fn respond(sock: &mut TcpStream, code: u16, ctype: &str, body: &str) -> std::io::Result<()> {
    let status = match code {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let head = format!("HTTP/1.1 {code} {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    sock.write_all(head.as_bytes()).await?;
    sock.write_all(body.as_bytes()).await?;
    sock.shutdown().await
}

#[derive(Serialize)]
pub struct LeadershipView {
    pub brokers: Vec<BrokerView>,
    pub partitions: Vec<PartitionView>,
    /// The group and transaction coordinators fairlead knows.
    pub coordinators: Vec<CoordinatorView>,
    pub metadata_age_ms: Option<u64>,
}

#[derive(Serialize)]
pub struct CoordinatorView {
    /// "group" or "transaction".
    pub key_type: &'static str,
    /// The group id or transactional id.
    pub key: String,
    pub node: i32,
    /// When fairlead learned it (ms since the epoch).
    pub learned_ms: u64,
}

#[derive(Serialize)]
pub struct BrokerView {
    pub id: i32,
    pub address: String,
    pub rack: Option<String>,
    /// fairlead's last attempt to connect to it succeeded.
    pub reachable: bool,
    /// Why the last attempt failed.
    pub error: Option<String>,
}

#[derive(Serialize)]
pub struct PartitionView {
    pub topic: String,
    pub partition: i32,
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub under_replicated: bool,
    /// When fairlead saw the leader change (ms since the epoch); null: not since it started.
    pub last_change_ms: Option<u64>,
}

pub fn leadership_view(l: &Leadership, pool: &crate::upstream::pool::Pool) -> LeadershipView {
    let brokers = l.brokers();
    let mut partitions = Vec::new();
    let topics: BTreeMap<_, _> = l.topics_snapshot();
    for (name, t) in topics {
        for (i, p) in t.partitions.iter().enumerate() {
            let Some(p) = p else { continue };
            partitions.push(PartitionView {
                topic: name.clone(),
                partition: i as i32,
                leader: p.leader,
                leader_epoch: p.epoch,
                replicas: p.replicas.clone(),
                isr: p.isr.clone(),
                under_replicated: p.isr.len() < p.replicas.len(),
                last_change_ms: p.changed_at.and_then(|t| {
                    t.duration_since(UNIX_EPOCH)
                        .ok()
                        .map(|d| d.as_millis() as u64)
                }),
            });
        }
    }
    LeadershipView {
        brokers: brokers
            .values()
            .map(|b| {
                let error = pool.unreachable(b.id);
                BrokerView {
                    id: b.id,
                    address: b.addr(),
                    rack: b.rack.clone(),
                    reachable: error.is_none(),
                    error,
                }
            })
            .collect(),
        partitions,
        coordinators: l
            .coordinators
            .snapshot()
            .into_iter()
            .map(|(key, known)| CoordinatorView {
                key_type: key.kind.label(),
                key: key.id,
                node: known.node,
                learned_ms: known
                    .learned_at
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64),
            })
            .collect(),
        metadata_age_ms: l.last_metadata().map(|t| t.elapsed().as_millis() as u64),
    }
}

/// `fairlead status`: fairlead's view of leadership as a table, read from a running
/// fairlead's /leadership.
pub fn status(admin: &str, under_replicated_only: bool) -> Result<(), String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(admin)
        .map_err(|e| format!("cannot reach the admin endpoint at {admin}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(
        s,
        "GET /leadership HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).map_err(|e| e.to_string())?;
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .ok_or("malformed HTTP response")?;
    let v: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("unexpected answer from {admin}: {e}"))?;
    print!("{}", render_status(&v, under_replicated_only));
    Ok(())
}

/// The table `fairlead status` prints.
pub fn render_status(v: &serde_json::Value, under_replicated_only: bool) -> String {
    let empty = Vec::new();
    let brokers = v["brokers"].as_array().unwrap_or(&empty);
    let parts = v["partitions"].as_array().unwrap_or(&empty);
    let coordinators = v["coordinators"].as_array().unwrap_or(&empty);
    let under = parts.iter().filter(|p| under_replicated(p)).count();
    let mut out = brokers_table(brokers);
    out += &partitions_table(parts, under_replicated_only);
    if !under_replicated_only && !coordinators.is_empty() {
        out += &coordinators_table(coordinators);
    }
    out += &format!(
        "\n{} partitions, {} under-replicated, {} coordinators known; metadata {} ms old\n",
        parts.len(),
        under,
        coordinators.len(),
        v["metadata_age_ms"]
    );
    out
}

fn under_replicated(p: &serde_json::Value) -> bool {
    p["under_replicated"].as_bool().unwrap_or(false)
}

fn brokers_table(brokers: &[serde_json::Value]) -> String {
    let mut out = "BROKER  ADDRESS                  RACK        REACHABLE\n".to_string();
    for b in brokers {
        let reachable = if b["reachable"].as_bool().unwrap_or(false) {
            "yes"
        } else {
            "NO"
        };
        out += &format!(
            "{:<7} {:<24} {:<11} {}\n",
            // serde_json's Display ignores width: padded as strings.
            b["id"].to_string(),
            b["address"].as_str().unwrap_or("?"),
            b["rack"].as_str().unwrap_or("-"),
            reachable
        );
    }
    out
}

fn partitions_table(parts: &[serde_json::Value], under_replicated_only: bool) -> String {
    let mut out = "\nTOPIC                            PARTITION  LEADER  EPOCH  REPLICAS      ISR           STATUS\n".to_string();
    for p in parts
        .iter()
        .filter(|p| !under_replicated_only || under_replicated(p))
    {
        let list = |k: &str| {
            p[k].as_array()
                .map(|a| {
                    a.iter()
                        .map(|x| x.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default()
        };
        let status = if p["leader"].as_i64().unwrap_or(-1) < 0 {
            "OFFLINE"
        } else if under_replicated(p) {
            "UNDER-REPLICATED"
        } else {
            "ok"
        };
        out += &format!(
            "{:<32} {:<10} {:<7} {:<6} {:<13} {:<13} {}\n",
            p["topic"].as_str().unwrap_or("?"),
            p["partition"].to_string(),
            p["leader"].to_string(),
            p["leader_epoch"].to_string(),
            list("replicas"),
            list("isr"),
            status
        );
    }
    out
}

fn coordinators_table(coordinators: &[serde_json::Value]) -> String {
    let mut out = "\nCOORDINATOR  KEY                              NODE\n".to_string();
    for c in coordinators {
        out += &format!(
            "{:<12} {:<32} {}\n",
            c["key_type"].as_str().unwrap_or("?"),
            c["key"].as_str().unwrap_or("?"),
            c["node"]
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::render_status;

    fn status() -> serde_json::Value {
        serde_json::json!({
            "brokers": [
                {"id": 1, "address": "127.0.0.1:19092", "rack": "r1", "reachable": true},
                {"id": 2, "address": "127.0.0.1:19093", "rack": null, "reachable": false},
            ],
            "partitions": [
                {"topic": "t", "partition": 0, "leader": 1, "leader_epoch": 4,
                 "replicas": [1, 2], "isr": [1, 2], "under_replicated": false},
                {"topic": "t", "partition": 1, "leader": 2, "leader_epoch": 7,
                 "replicas": [2, 1], "isr": [2], "under_replicated": true},
                {"topic": "u", "partition": 0, "leader": -1, "leader_epoch": 2,
                 "replicas": [2], "isr": [], "under_replicated": false},
            ],
            "coordinators": [{"key_type": "group", "key": "g1", "node": 1}],
            "metadata_age_ms": 1234,
        })
    }

    #[test]
    fn status_prints_brokers_partitions_and_coordinators() {
        let expected = "\
BROKER  ADDRESS                  RACK        REACHABLE
1       127.0.0.1:19092          r1          yes
2       127.0.0.1:19093          -           NO

TOPIC                            PARTITION  LEADER  EPOCH  REPLICAS      ISR           STATUS
t                                0          1       4      1,2           1,2           ok
t                                1          2       7      2,1           2             UNDER-REPLICATED
u                                0          -1      2      2                           OFFLINE

COORDINATOR  KEY                              NODE
group        g1                               1

3 partitions, 1 under-replicated, 1 coordinators known; metadata 1234 ms old
";
        assert_eq!(render_status(&status(), false), expected);
    }

    #[test]
    fn under_replicated_only_shows_those_partitions_and_no_coordinators() {
        let out = render_status(&status(), true);
        assert!(out.contains("UNDER-REPLICATED"), "{out}");
        assert!(!out.contains(" ok\n") && !out.contains("OFFLINE"), "{out}");
        assert!(!out.contains("COORDINATOR"), "{out}");
        assert!(
            out.ends_with(
                "3 partitions, 1 under-replicated, 1 coordinators known; metadata 1234 ms old\n"
            ),
            "{out}"
        );
    }
}
