//! The strict observer: a TCP interposer that counts every error code reaching a Kafka client.
//!
//! fairlead's central claim is negative: a client going through it never sees a leadership error
//! (LEADER_NOT_AVAILABLE 5, NOT_LEADER_OR_FOLLOWER 6, FENCED_LEADER_EPOCH 74, UNKNOWN_LEADER_EPOCH
//! 75). Client logs and metrics cannot prove that (the Java consumer logs fetch errors at DEBUG
//! and counts none), so tests put this observer between ANY client and its endpoint:
//!
//! ```text
//!   client --> observer --> fairlead --> brokers      (must count 0 leadership errors)
//!   client --> observer --> brokers                   (the control: must count some)
//! ```
//!
//! It decodes every response with kafka-protocol and counts each non-zero error code per
//! (api key, code), keeps the last leadership errors as readable samples, and rewrites every broker
//! address in responses (Metadata, FindCoordinator, DescribeCluster, KIP-951 node endpoints) to a
//! local listener of its own, so the client cannot slip past it by following a broker address.
//!
//! It is the judge of fairlead, so it shares no code with it (nothing from the `fairlead` crate)
//! and is kept small enough to check by reading: requests are forwarded byte-identical, responses
//! are forwarded byte-identical unless an address had to be rewritten, and anything it cannot
//! decode is counted as `undecodable` (strict tests assert that is zero) and forwarded unchanged.
//! ApiVersions responses are capped to the versions kafka-protocol can decode so a client never
//! negotiates a version the observer would have to wave through unread.
//!
//! It also checks that every Fetch answer starts where the client asked: a partition's records
//! must begin at or before the requested fetch offset (the broker returns the batch holding that
//! offset). On the test topics (no compaction, no transactions) records that start after it mean
//! records were skipped on the way, and a client would advance past them without ever seeing
//! them: counted as `fetch_gaps`, which strict tests assert is zero. Counted there too: an
//! answer whose batches all end before the offset asked for (an answer to some other request),
//! and one whose batch leader epochs go down (no log looks like that).
//!
//! Put between fairlead and the brokers (fairlead bootstraps from it), it sees fairlead's own
//! broker connections: for each one it keeps the producer ids of the Produce batches it carried
//! ([`Observer::producing_connections`]), which is how a test sees whether two producers'
//! batches ever shared a broker connection.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::{self, Display, Write as _};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::error::ParseResponseErrorCode;
use kafka_protocol::messages::{self, ApiKey, ResponseHeader};
use kafka_protocol::protocol::{decode_request_header_from_buffer, Decodable, Encodable, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::{Handle, Runtime};

/// LEADER_NOT_AVAILABLE, NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH, UNKNOWN_LEADER_EPOCH.
pub const LEADERSHIP_CODES: [i16; 4] = [5, 6, 74, 75];

/// COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR.
pub const COORDINATOR_CODES: [i16; 3] = [14, 15, 16];

/// Frames above this are treated as a broken stream and close the connection.
const MAX_FRAME_BYTES: usize = 100 * 1024 * 1024;
/// How many leadership samples (and undecodable reasons) are kept.
const MAX_SAMPLES: usize = 200;
/// How many entries of the error timeline are kept.
pub const MAX_TIMELINE: usize = 2000;
/// Bound on remembered requests per connection. Requests that get no response (acks=0 Produce)
/// are not remembered at all; this only guards against a peer that never answers.
const MAX_IN_FLIGHT: usize = 65_536;
/// The address every rewritten broker address points at.
const LOCAL_HOST: &str = "127.0.0.1";
const UNSUPPORTED_VERSION: i16 = 35;

/// A running observer. Dropping it stops its runtime and closes every connection it holds.
pub struct Observer {
    /// The listener clients bootstrap from (mapped to the whole upstream bootstrap list).
    bootstrap: SocketAddr,
    shared: Arc<Shared>,
    /// Owned so that dropping the observer ends every task and socket; `None` only during drop.
    runtime: Option<Runtime>,
}

impl Observer {
    /// Starts an observer in front of `upstream_bootstrap` ("host:port", or a comma-separated
    /// list tried in order for each client connection).
    pub fn start(upstream_bootstrap: &str) -> io::Result<Observer> {
        let upstreams = parse_bootstrap(upstream_bootstrap)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("strict-observer")
            .enable_all()
            .build()?;
        let shared = Arc::new(Shared {
            runtime: runtime.handle().clone(),
            upstream_bootstrap: upstream_bootstrap.to_owned(),
            routes: Mutex::default(),
            stats: Mutex::default(),
            started: std::time::Instant::now(),
            next_connection: AtomicU64::new(0),
        });
        let bootstrap = shared.listen(upstreams)?;
        Ok(Observer {
            bootstrap,
            shared,
            runtime: Some(runtime),
        })
    }

    /// "127.0.0.1:PORT", for the client's bootstrap.servers.
    pub fn bootstrap(&self) -> String {
        self.bootstrap.to_string()
    }

    /// Every non-zero error code that reached a client: (api_key, code) -> count.
    pub fn errors(&self) -> BTreeMap<(i16, i16), u64> {
        self.shared.stats().errors.clone()
    }

    /// How many times any of `codes` reached a client, in any API.
    pub fn count(&self, codes: &[i16]) -> u64 {
        let stats = self.shared.stats();
        stats
            .errors
            .iter()
            .filter(|((_, code), _)| codes.contains(code))
            .map(|(_, n)| n)
            .sum()
    }

    /// How many times any of `codes` reached a client in responses of `api_key`.
    pub fn count_api(&self, api_key: i16, codes: &[i16]) -> u64 {
        let stats = self.shared.stats();
        stats
            .errors
            .iter()
            .filter(|((key, code), _)| *key == api_key && codes.contains(code))
            .map(|(_, n)| n)
            .sum()
    }

    /// Responses decoded (and therefore checked), per api key.
    pub fn responses(&self) -> BTreeMap<i16, u64> {
        self.shared.stats().responses.clone()
    }

    /// Responses forwarded unread because they did not decode, per api key (-1: the response
    /// matched no request on its connection).
    pub fn undecodable(&self) -> BTreeMap<i16, u64> {
        self.shared.stats().undecodable.clone()
    }

    /// Responses decoded per (api key, api version): which versions the clients negotiated.
    pub fn versions(&self) -> BTreeMap<(i16, i16), u64> {
        self.shared.stats().versions.clone()
    }

    /// Client connections ended on the upstream side (closed, reset, an unreadable frame, or a
    /// failed write to the client) while the client still had them open: (all of them, those
    /// with requests still unanswered). Where a client meets a dead or restarting broker.
    pub fn upstream_closes(&self) -> (u64, u64) {
        let stats = self.shared.stats();
        (stats.upstream_closes, stats.upstream_closes_in_flight)
    }

    /// Every broker address ("host:port") a response has given a client so far.
    pub fn addresses_given(&self) -> Vec<String> {
        let mut a: Vec<String> = lock(&self.shared.routes)
            .keys()
            .map(|u| u.to_string())
            .collect();
        a.sort();
        a
    }

    /// Client connections that found no reachable upstream and were closed at once.
    pub fn refused(&self) -> u64 {
        self.shared.stats().refused
    }

    /// The last coordinator errors and FindCoordinator answers, in order, with the time since
    /// the observer started and where the response came from, e.g.
    /// "t+12.345s EndTxn v5 code=16 upstream=127.0.0.1:24212" or
    /// "t+12.301s FindCoordinator v6 key=g node=2 at 127.0.0.1:21093 upstream=127.0.0.1:24210".
    pub fn coordinator_samples(&self) -> Vec<String> {
        self.shared
            .stats()
            .coordinator_samples
            .iter()
            .cloned()
            .collect()
    }

    /// Fetch answers whose records started after the offset the client asked for.
    pub fn fetch_gaps(&self) -> u64 {
        self.shared.stats().fetch_gaps
    }

    /// The last leadership errors seen, e.g.
    /// "Produce v9 code=6 topic=t1 partition=3 upstream=127.0.0.1:19093".
    pub fn leadership_samples(&self) -> Vec<String> {
        self.shared.stats().samples.iter().cloned().collect()
    }

    /// Every response that carried a non-zero error code (the last [`MAX_TIMELINE`]), with the
    /// wall-clock time it reached the client (UTC, as fairlead logs), the request it answered
    /// and where each code was, e.g. "2026-01-02T03:04:05.678901Z Fetch v12 corr=41
    /// upstream=127.0.0.1:20013 errors=[74@t/2, 74@t/5] request: session=0/-1 t/2@118e3 ...".
    /// For lining a client-visible error up with fairlead's log.
    pub fn error_timeline(&self) -> Vec<String> {
        self.error_events().into_iter().map(|e| e.text).collect()
    }

    /// The error timeline with each entry's API and codes, for a test to pick from.
    pub fn error_events(&self) -> Vec<ErrorEvent> {
        self.shared.stats().timeline.iter().cloned().collect()
    }

    /// Every connection that carried Produce batches, in the order they were accepted, with
    /// the producer ids of its batches (-1: batches of a producer that is not idempotent).
    pub fn producing_connections(&self) -> Vec<ProducingConnection> {
        self.shared.stats().producing.values().cloned().collect()
    }

    /// A human summary, for test failure messages.
    pub fn report(&self) -> String {
        let routes: BTreeMap<String, SocketAddr> = lock(&self.shared.routes)
            .iter()
            .map(|(upstream, local)| (upstream.to_string(), *local))
            .collect();
        let stats = self.shared.stats();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "strict observer {} -> {}",
            self.bootstrap, self.shared.upstream_bootstrap
        );
        for (upstream, local) in &routes {
            let _ = writeln!(out, "  broker {upstream} seen by clients as {local}");
        }
        let _ = writeln!(out, "errors that reached clients:");
        if stats.errors.is_empty() {
            let _ = writeln!(out, "  none");
        }
        for ((key, code), n) in &stats.errors {
            let _ = writeln!(
                out,
                "  {} ({key}) {} ({code}): {n}",
                api_name(*key),
                code_name(*code)
            );
        }
        let _ = writeln!(out, "responses decoded:");
        for (key, n) in &stats.responses {
            let _ = writeln!(out, "  {} ({key}): {n}", api_name(*key));
        }
        let _ = writeln!(out, "undecodable responses:");
        if stats.undecodable.is_empty() {
            let _ = writeln!(out, "  none");
        }
        for (key, n) in &stats.undecodable {
            let _ = writeln!(out, "  {} ({key}): {n}", api_name(*key));
        }
        for reason in &stats.undecodable_reasons {
            let _ = writeln!(out, "    {reason}");
        }
        let _ = writeln!(
            out,
            "leadership samples (last {} of at most {MAX_SAMPLES}):",
            stats.samples.len()
        );
        for sample in &stats.samples {
            let _ = writeln!(out, "  {sample}");
        }
        let _ = writeln!(
            out,
            "fetch answers not fitting the offset asked for (gaps, stale answers, falling epochs): {}",
            stats.fetch_gaps
        );
        for sample in &stats.fetch_gap_samples {
            let _ = writeln!(out, "  {sample}");
        }
        out
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Drops every task, and with them every listener and connection.
            runtime.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

/// One connection through the observer that carried Produce requests (see
/// [`Observer::producing_connections`]).
#[derive(Debug, Clone)]
pub struct ProducingConnection {
    /// Connections are numbered in the order the observer accepted them.
    pub serial: u64,
    /// The broker it went to.
    pub upstream: String,
    /// Producer id -> how many batches of that producer it carried.
    pub producers: BTreeMap<i64, u64>,
}

/// One response that carried a non-zero error code (see [`Observer::error_timeline`]).
#[derive(Debug, Clone)]
pub struct ErrorEvent {
    /// When it reached the client, "2026-01-02T03:04:05.678901Z".
    pub at: String,
    pub api_key: i16,
    /// Its non-zero codes, one per place it was found.
    pub codes: Vec<i16>,
    /// The whole entry, as `error_timeline` gives it.
    pub text: String,
}

/// An upstream address exactly as a broker advertised it.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Upstream {
    host: String,
    port: u16,
}

impl Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

fn parse_bootstrap(list: &str) -> io::Result<Vec<Upstream>> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_owned());
    let mut upstreams = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (host, port) = entry
            .rsplit_once(':')
            .ok_or_else(|| invalid(&format!("no port in {entry:?}")))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = port
            .parse()
            .map_err(|_| invalid(&format!("bad port in {entry:?}")))?;
        upstreams.push(Upstream {
            host: host.to_owned(),
            port,
        });
    }
    if upstreams.is_empty() {
        return Err(invalid("empty bootstrap list"));
    }
    Ok(upstreams)
}

/// State shared by the observer handle and all its tasks.
struct Shared {
    /// Where listener and connection tasks are spawned.
    runtime: Handle,
    /// For the report.
    upstream_bootstrap: String,
    /// One local listener per upstream broker address seen in a response; bound under this lock
    /// so an address seen twice at once still gets a single listener.
    routes: Mutex<HashMap<Upstream, SocketAddr>>,
    stats: Mutex<Stats>,
    /// For the times in coordinator samples.
    started: std::time::Instant,
    /// The serial of the next connection accepted.
    next_connection: AtomicU64,
}

#[derive(Default)]
struct Stats {
    errors: BTreeMap<(i16, i16), u64>,
    responses: BTreeMap<i16, u64>,
    /// Responses decoded per (api key, version).
    versions: BTreeMap<(i16, i16), u64>,
    /// Connections ended from the upstream side, and how many of those had requests unanswered.
    upstream_closes: u64,
    upstream_closes_in_flight: u64,
    /// Client connections closed at once because no upstream could be reached.
    refused: u64,
    undecodable: BTreeMap<i16, u64>,
    /// Why the last responses were undecodable (bounded).
    undecodable_reasons: VecDeque<String>,
    /// The last leadership errors (bounded).
    samples: VecDeque<String>,
    /// The last coordinator errors and FindCoordinator answers (bounded).
    coordinator_samples: VecDeque<String>,
    /// Fetch answers whose records start after the fetch offset asked for, and the last ones.
    fetch_gaps: u64,
    fetch_gap_samples: VecDeque<String>,
    /// Responses with a non-zero error code, in order (bounded, see `error_timeline`).
    timeline: VecDeque<ErrorEvent>,
    /// Connections that carried Produce batches, by serial (one entry per connection: tests
    /// make few).
    producing: BTreeMap<u64, ProducingConnection>,
}

/// A request waiting for its response: its API, version and, for a Fetch, the offset asked for
/// per (topic name or id, partition).
struct Pending {
    key: i16,
    version: i16,
    correlation_id: i32,
    fetch_offsets: Option<HashMap<(String, i32), i64>>,
    /// What the request asked for, for the error timeline (Fetch and Produce only).
    detail: Option<String>,
}

/// What a Fetch request asks for, keyed as its response names topics.
fn fetch_offsets(frame: &Bytes, version: i16) -> Option<HashMap<(String, i32), i64>> {
    let mut buf = frame.clone();
    decode_request_header_from_buffer(&mut buf).ok()?;
    let request = messages::FetchRequest::decode(&mut buf, version).ok()?;
    let mut out = HashMap::new();
    for t in &request.topics {
        let topic = topic_key(&t.topic, &t.topic_id);
        for p in &t.partitions {
            out.insert((topic.clone(), p.partition), p.fetch_offset);
        }
    }
    Some(out)
}

/// A Fetch or Produce request in a few words, for the error timeline: a Fetch's session and,
/// per partition, offset and current leader epoch ("session=0/-1 replica=-1 t/2@118e3"); a
/// Produce's transactional id, acks and partitions.
fn request_detail(key: i16, frame: &Bytes, version: i16) -> Option<String> {
    let mut buf = frame.clone();
    decode_request_header_from_buffer(&mut buf).ok()?;
    let mut out = String::new();
    if key == ApiKey::Fetch as i16 {
        let r = messages::FetchRequest::decode(&mut buf, version).ok()?;
        let _ = write!(
            out,
            "session={}/{} max_wait={}ms",
            r.session_id, r.session_epoch, r.max_wait_ms
        );
        for t in &r.topics {
            let topic = topic_key(&t.topic, &t.topic_id);
            for p in &t.partitions {
                let _ = write!(
                    out,
                    " {topic}/{}@{}e{}",
                    p.partition, p.fetch_offset, p.current_leader_epoch
                );
            }
        }
        if !r.forgotten_topics_data.is_empty() {
            let _ = write!(out, " forgotten={}", r.forgotten_topics_data.len());
        }
    } else if key == ApiKey::Produce as i16 {
        let r = messages::ProduceRequest::decode(&mut buf, version).ok()?;
        let txn = r.transactional_id.as_ref().map_or("-", |t| t.as_str());
        let _ = write!(out, "txn={txn} acks={}", r.acks);
        for t in &r.topic_data {
            let topic = topic_key(&t.name, &t.topic_id);
            for p in &t.partition_data {
                let _ = write!(out, " {topic}/{}", p.index);
            }
        }
    } else {
        return None;
    }
    Some(out)
}

/// Now, as fairlead's log writes it: "2026-01-02T03:04:05.678901Z".
pub fn utc_now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_micros()
    )
}

fn topic_key(name: &str, id: &dyn Display) -> String {
    if name.is_empty() {
        id.to_string()
    } else {
        name.to_owned()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain counters behind: still worth reading.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn push_bounded(queue: &mut VecDeque<String>, item: String) {
    if queue.len() == MAX_SAMPLES {
        queue.pop_front();
    }
    queue.push_back(item);
}

impl Shared {
    fn stats(&self) -> MutexGuard<'_, Stats> {
        lock(&self.stats)
    }

    /// Binds a new local listener whose connections go to the first reachable of `upstreams`.
    /// The socket is listening when this returns, so a client may connect at once.
    fn listen(self: &Arc<Self>, upstreams: Vec<Upstream>) -> io::Result<SocketAddr> {
        let listener = std::net::TcpListener::bind((LOCAL_HOST, 0))?;
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        let shared = Arc::clone(self);
        self.runtime.spawn(async move {
            let Ok(listener) = TcpListener::from_std(listener) else {
                return;
            };
            loop {
                match listener.accept().await {
                    Ok((client, _)) => {
                        tokio::spawn(proxy(client, upstreams.clone(), Arc::clone(&shared)));
                    }
                    // E.g. out of file descriptors: back off instead of spinning.
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        });
        Ok(local)
    }

    /// The local address standing for the upstream broker `host:port`.
    fn route(self: &Arc<Self>, host: &str, port: u16) -> io::Result<SocketAddr> {
        let upstream = Upstream {
            host: host.to_owned(),
            port,
        };
        let mut routes = lock(&self.routes);
        if let Some(local) = routes.get(&upstream) {
            return Ok(*local);
        }
        let local = self.listen(vec![upstream.clone()])?;
        routes.insert(upstream, local);
        Ok(local)
    }

    /// Points one advertised broker address at the observer. Returns whether it changed;
    /// absent addresses (empty host or negative port, as in error responses) are left alone.
    fn rewrite(self: &Arc<Self>, host: &mut StrBytes, port: &mut i32) -> Result<bool, String> {
        let Ok(upstream_port) = u16::try_from(*port) else {
            return Ok(false);
        };
        if host.is_empty() {
            return Ok(false);
        }
        let local = self
            .route(host, upstream_port)
            .map_err(|e| format!("cannot listen for broker {host}:{port}: {e}"))?;
        *host = StrBytes::from_static_str(LOCAL_HOST);
        *port = i32::from(local.port());
        Ok(true)
    }

    /// Counts one response frame and returns the frame to send to the client.
    fn observe(self: &Arc<Self>, request: Option<Pending>, frame: Bytes, upstream: &str) -> Bytes {
        let Some(Pending {
            key,
            version,
            correlation_id,
            fetch_offsets,
            detail,
        }) = request
        else {
            self.record_undecodable(-1, "a response that matches no request".to_owned());
            return frame;
        };
        match self.inspect(
            key,
            version,
            frame.clone(),
            upstream,
            fetch_offsets.as_ref(),
        ) {
            Ok((tally, rewritten)) => {
                let mut stats = self.stats();
                *stats.responses.entry(key).or_default() += 1;
                *stats.versions.entry((key, version)).or_default() += 1;
                for code in &tally.codes {
                    *stats.errors.entry((key, *code)).or_default() += 1;
                }
                for sample in tally.samples {
                    push_bounded(&mut stats.samples, sample);
                }
                let t = self.started.elapsed().as_secs_f64();
                for sample in tally.coordinator_samples {
                    push_bounded(
                        &mut stats.coordinator_samples,
                        format!("t+{t:.3}s {sample}"),
                    );
                }
                for gap in tally.fetch_gaps {
                    stats.fetch_gaps += 1;
                    push_bounded(&mut stats.fetch_gap_samples, gap);
                }
                if !tally.located.is_empty() {
                    if stats.timeline.len() == MAX_TIMELINE {
                        stats.timeline.pop_front();
                    }
                    let request = detail.map(|d| format!(" request: {d}")).unwrap_or_default();
                    let at = utc_now();
                    let text = format!(
                        "{at} {} v{version} corr={correlation_id} upstream={upstream} errors=[{}]{request}",
                        api_name(key),
                        tally.located.join(", ")
                    );
                    stats.timeline.push_back(ErrorEvent {
                        at,
                        api_key: key,
                        codes: tally.codes,
                        text,
                    });
                }
                rewritten.unwrap_or(frame)
            }
            Err(reason) => {
                self.record_undecodable(key, format!("{} v{version}: {reason}", api_name(key)));
                frame
            }
        }
    }

    /// Notes the producer ids of a Produce request's batches against its connection (an
    /// undecodable request is left to the response side, which counts it).
    fn record_producers(&self, serial: u64, upstream: &str, frame: &Bytes, version: i16) {
        let mut buf = frame.clone();
        let Ok(request) = decode_request_header_from_buffer(&mut buf)
            .and_then(|_| messages::ProduceRequest::decode(&mut buf, version))
        else {
            return;
        };
        let mut stats = self.stats();
        let conn = stats
            .producing
            .entry(serial)
            .or_insert_with(|| ProducingConnection {
                serial,
                upstream: upstream.to_owned(),
                producers: BTreeMap::new(),
            });
        for t in &request.topic_data {
            for p in &t.partition_data {
                for b in p.records.as_deref().map(batch_headers).unwrap_or_default() {
                    if let Some(id) = b.producer_id {
                        *conn.producers.entry(id).or_default() += 1;
                    }
                }
            }
        }
    }

    fn record_undecodable(&self, key: i16, reason: String) {
        let mut stats = self.stats();
        *stats.undecodable.entry(key).or_default() += 1;
        push_bounded(&mut stats.undecodable_reasons, reason);
    }

    /// Decodes one response frame (header and body), walks its error codes and rewrites broker
    /// addresses. Returns the tally and, if an address changed, the re-encoded frame.
    fn inspect(
        self: &Arc<Self>,
        key: i16,
        version: i16,
        frame: Bytes,
        upstream: &str,
        fetch_offsets: Option<&HashMap<(String, i32), i64>>,
    ) -> Result<(Tally, Option<Bytes>), String> {
        let api = ApiKey::try_from(key).map_err(|()| "api key unknown to kafka-protocol")?;
        // ApiVersions answers always use header v0 (KIP-511); kafka-protocol knows.
        let header_version = api.response_header_version(version);
        let mut buf = frame;
        let header = ResponseHeader::decode(&mut buf, header_version).map_err(|e| e.to_string())?;
        let mut tally = Tally {
            api,
            version,
            upstream: upstream.to_owned(),
            codes: Vec::new(),
            samples: Vec::new(),
            coordinator_samples: Vec::new(),
            fetch_gaps: Vec::new(),
            located: Vec::new(),
        };
        let body = self.walk(api, version, &mut buf, &mut tally, fetch_offsets)?;
        let frame = match body {
            None => None,
            Some(body) => {
                let mut out = BytesMut::new();
                header
                    .encode(&mut out, header_version)
                    .map_err(|e| format!("re-encoding the header: {e}"))?;
                out.extend_from_slice(&body);
                Some(out.freeze())
            }
        };
        Ok((tally, frame))
    }

    /// The per-API part of [`Shared::inspect`]: `Some(body)` when the body was rewritten.
    fn walk(
        self: &Arc<Self>,
        api: ApiKey,
        version: i16,
        buf: &mut Bytes,
        tally: &mut Tally,
        fetch_offsets: Option<&HashMap<(String, i32), i64>>,
    ) -> Result<Option<Bytes>, String> {
        use messages::*;
        match api {
            ApiKey::Produce => {
                let mut r: ProduceResponse = decode(buf, version)?;
                for t in &r.responses {
                    let topic = TopicRef::new(&t.name, &t.topic_id);
                    for p in &t.partition_responses {
                        tally.partition(p.error_code, &topic, p.index);
                    }
                }
                let mut changed = false;
                for e in &mut r.node_endpoints {
                    changed |= self.rewrite(&mut e.host, &mut e.port)?;
                }
                reencode(changed, &r, version)
            }
            ApiKey::Fetch => {
                let mut r: FetchResponse = decode(buf, version)?;
                tally.code(r.error_code);
                for t in &r.responses {
                    let topic = TopicRef::new(&t.topic, &t.topic_id);
                    for p in &t.partitions {
                        tally.partition(p.error_code, &topic, p.partition_index);
                        let key = (topic_key(&t.topic, &t.topic_id), p.partition_index);
                        let asked = fetch_offsets.and_then(|o| o.get(&key)).copied();
                        let batches = p.records.as_deref().map(batch_headers).unwrap_or_default();
                        if let (0, Some(asked), Some(first)) =
                            (p.error_code, asked, batches.first())
                        {
                            let where_ = format!(
                                "Fetch v{version} topic={topic} partition={} asked offset {asked}",
                                p.partition_index
                            );
                            if first.base > asked {
                                tally.fetch_gaps.push(format!(
                                    "{where_}, records start at {} upstream={}",
                                    first.base, tally.upstream
                                ));
                            }
                            // A broker answers from the batch holding the offset asked for: an
                            // answer whose batches all end before it is someone else's answer.
                            let lasts: Vec<i64> = batches.iter().filter_map(|b| b.last).collect();
                            if !lasts.is_empty() && lasts.iter().all(|l| *l < asked) {
                                tally.fetch_gaps.push(format!(
                                    "{where_}, every batch ends before it (last offsets {lasts:?}) upstream={}",
                                    tally.upstream
                                ));
                            }
                            // Leader epochs never go down along a log.
                            let epochs: Vec<i32> = batches.iter().filter_map(|b| b.epoch).collect();
                            if epochs.windows(2).any(|w| w[1] < w[0]) {
                                tally.fetch_gaps.push(format!(
                                    "{where_}, batch leader epochs go down: {epochs:?} upstream={}",
                                    tally.upstream
                                ));
                            }
                        }
                    }
                }
                let mut changed = false;
                for e in &mut r.node_endpoints {
                    changed |= self.rewrite(&mut e.host, &mut e.port)?;
                }
                reencode(changed, &r, version)
            }
            ApiKey::ListOffsets => {
                let r: ListOffsetsResponse = decode(buf, version)?;
                for t in &r.topics {
                    for p in &t.partitions {
                        tally.partition(p.error_code, &TopicRef::name(&t.name), p.partition_index);
                    }
                }
                Ok(None)
            }
            ApiKey::OffsetForLeaderEpoch => {
                let r: OffsetForLeaderEpochResponse = decode(buf, version)?;
                for t in &r.topics {
                    for p in &t.partitions {
                        tally.partition(p.error_code, &TopicRef::name(&t.topic), p.partition);
                    }
                }
                Ok(None)
            }
            ApiKey::Metadata => {
                let mut r: MetadataResponse = decode(buf, version)?;
                tally.code(r.error_code);
                for t in &r.topics {
                    tally.code(t.error_code);
                    let name = t.name.as_ref().map_or("", |n| n.as_str());
                    let topic = TopicRef::new(name, &t.topic_id);
                    for p in &t.partitions {
                        tally.partition(p.error_code, &topic, p.partition_index);
                    }
                }
                let mut changed = false;
                for b in &mut r.brokers {
                    changed |= self.rewrite(&mut b.host, &mut b.port)?;
                }
                reencode(changed, &r, version)
            }
            ApiKey::DeleteRecords => {
                let r: DeleteRecordsResponse = decode(buf, version)?;
                for t in &r.topics {
                    for p in &t.partitions {
                        tally.partition(p.error_code, &TopicRef::name(&t.name), p.partition_index);
                    }
                }
                Ok(None)
            }
            ApiKey::DescribeProducers => {
                let r: DescribeProducersResponse = decode(buf, version)?;
                for t in &r.topics {
                    for p in &t.partitions {
                        tally.partition(p.error_code, &TopicRef::name(&t.name), p.partition_index);
                    }
                }
                Ok(None)
            }
            ApiKey::FindCoordinator => {
                let mut r: FindCoordinatorResponse = decode(buf, version)?;
                tally.code(r.error_code);
                let mut changed = false;
                if version <= 3 {
                    if r.error_code == 0 {
                        tally.coordinator_samples.push(format!(
                            "FindCoordinator v{version} node={} at {}:{} upstream={}",
                            r.node_id.0, r.host, r.port, tally.upstream
                        ));
                    }
                    changed |= self.rewrite(&mut r.host, &mut r.port)?;
                }
                for c in &mut r.coordinators {
                    tally.code(c.error_code);
                    if c.error_code == 0 {
                        tally.coordinator_samples.push(format!(
                            "FindCoordinator v{version} key={} node={} at {}:{} upstream={}",
                            c.key.as_str(),
                            c.node_id.0,
                            c.host,
                            c.port,
                            tally.upstream
                        ));
                    }
                    changed |= self.rewrite(&mut c.host, &mut c.port)?;
                }
                reencode(changed, &r, version)
            }
            ApiKey::DescribeCluster => {
                let mut r: DescribeClusterResponse = decode(buf, version)?;
                tally.code(r.error_code);
                let mut changed = false;
                for b in &mut r.brokers {
                    changed |= self.rewrite(&mut b.host, &mut b.port)?;
                }
                reencode(changed, &r, version)
            }
            ApiKey::ShareFetch => {
                let mut r: ShareFetchResponse = decode(buf, version)?;
                tally.code(r.error_code);
                for t in &r.responses {
                    let topic = TopicRef::new("", &t.topic_id);
                    for p in &t.partitions {
                        tally.partition(p.error_code, &topic, p.partition_index);
                        tally.partition(p.acknowledge_error_code, &topic, p.partition_index);
                    }
                }
                let mut changed = false;
                for e in &mut r.node_endpoints {
                    changed |= self.rewrite(&mut e.host, &mut e.port)?;
                }
                reencode(changed, &r, version)
            }
            ApiKey::ShareAcknowledge => {
                let mut r: ShareAcknowledgeResponse = decode(buf, version)?;
                tally.code(r.error_code);
                for t in &r.responses {
                    let topic = TopicRef::new("", &t.topic_id);
                    for p in &t.partitions {
                        tally.partition(p.error_code, &topic, p.partition_index);
                    }
                }
                let mut changed = false;
                for e in &mut r.node_endpoints {
                    changed |= self.rewrite(&mut e.host, &mut e.port)?;
                }
                reencode(changed, &r, version)
            }
            ApiKey::ApiVersions => {
                // A broker that does not support the requested version answers in v0 with
                // UNSUPPORTED_VERSION and its own version list (KIP-511); the client then
                // retries with a version from that list. Forward that answer unchanged.
                let code = buf
                    .chunk()
                    .get(..2)
                    .map(|b| i16::from_be_bytes([b[0], b[1]]));
                if code == Some(UNSUPPORTED_VERSION) {
                    let r: ApiVersionsResponse = decode(buf, 0)?;
                    tally.code(r.error_code);
                    return Ok(None);
                }
                let mut r: ApiVersionsResponse = decode(buf, version)?;
                tally.code(r.error_code);
                let changed = cap_api_versions(&mut r.api_keys);
                reencode(changed, &r, version)
            }
            ApiKey::OffsetCommit => {
                let r: OffsetCommitResponse = decode(buf, version)?;
                for t in &r.topics {
                    let topic = TopicRef::new(&t.name, &t.topic_id);
                    for p in &t.partitions {
                        tally.partition(p.error_code, &topic, p.partition_index);
                    }
                }
                Ok(None)
            }
            ApiKey::OffsetFetch => {
                let r: OffsetFetchResponse = decode(buf, version)?;
                tally.code(r.error_code);
                for t in &r.topics {
                    for p in &t.partitions {
                        tally.partition(p.error_code, &TopicRef::name(&t.name), p.partition_index);
                    }
                }
                for g in &r.groups {
                    tally.code(g.error_code);
                    for t in &g.topics {
                        let topic = TopicRef::new(&t.name, &t.topic_id);
                        for p in &t.partitions {
                            tally.partition(p.error_code, &topic, p.partition_index);
                        }
                    }
                }
                Ok(None)
            }
            ApiKey::TxnOffsetCommit => {
                let r: TxnOffsetCommitResponse = decode(buf, version)?;
                for t in &r.topics {
                    for p in &t.partitions {
                        tally.partition(p.error_code, &TopicRef::name(&t.name), p.partition_index);
                    }
                }
                Ok(None)
            }
            ApiKey::AddPartitionsToTxn => {
                let r: AddPartitionsToTxnResponse = decode(buf, version)?;
                tally.code(r.error_code);
                let v3_and_below = r.results_by_topic_v3_and_below.iter();
                let by_transaction = r
                    .results_by_transaction
                    .iter()
                    .flat_map(|x| &x.topic_results);
                for t in v3_and_below.chain(by_transaction) {
                    for p in &t.results_by_partition {
                        let topic = TopicRef::name(&t.name);
                        tally.partition(p.partition_error_code, &topic, p.partition_index);
                    }
                }
                Ok(None)
            }
            ApiKey::CreateTopics => {
                let r: CreateTopicsResponse = decode(buf, version)?;
                for t in &r.topics {
                    tally.code(t.error_code);
                    tally.code(t.topic_config_error_code);
                }
                Ok(None)
            }
            ApiKey::DeleteTopics => {
                let r: DeleteTopicsResponse = decode(buf, version)?;
                for t in &r.responses {
                    tally.code(t.error_code);
                }
                Ok(None)
            }
            ApiKey::CreatePartitions => {
                let r: CreatePartitionsResponse = decode(buf, version)?;
                for t in &r.results {
                    tally.code(t.error_code);
                }
                Ok(None)
            }
            ApiKey::DescribeTopicPartitions => {
                let r: DescribeTopicPartitionsResponse = decode(buf, version)?;
                for t in &r.topics {
                    tally.code(t.error_code);
                    let name = t.name.as_ref().map_or("", |n| n.as_str());
                    let topic = TopicRef::new(name, &t.topic_id);
                    for p in &t.partitions {
                        tally.partition(p.error_code, &topic, p.partition_index);
                    }
                }
                Ok(None)
            }
            ApiKey::LeaveGroup => {
                let r: LeaveGroupResponse = decode(buf, version)?;
                tally.code(r.error_code);
                for m in &r.members {
                    tally.code(m.error_code);
                }
                Ok(None)
            }
            ApiKey::DescribeGroups => {
                let r: DescribeGroupsResponse = decode(buf, version)?;
                for g in &r.groups {
                    tally.code(g.error_code);
                }
                Ok(None)
            }
            ApiKey::DeleteGroups => {
                let r: DeleteGroupsResponse = decode(buf, version)?;
                for g in &r.results {
                    tally.code(g.error_code);
                }
                Ok(None)
            }
            ApiKey::JoinGroup => {
                top_level::<JoinGroupResponse>(buf, version, tally, |r| r.error_code)
            }
            ApiKey::SyncGroup => {
                top_level::<SyncGroupResponse>(buf, version, tally, |r| r.error_code)
            }
            ApiKey::Heartbeat => {
                top_level::<HeartbeatResponse>(buf, version, tally, |r| r.error_code)
            }
            ApiKey::ListGroups => {
                top_level::<ListGroupsResponse>(buf, version, tally, |r| r.error_code)
            }
            ApiKey::InitProducerId => {
                top_level::<InitProducerIdResponse>(buf, version, tally, |r| r.error_code)
            }
            ApiKey::AddOffsetsToTxn => {
                top_level::<AddOffsetsToTxnResponse>(buf, version, tally, |r| r.error_code)
            }
            ApiKey::EndTxn => top_level::<EndTxnResponse>(buf, version, tally, |r| r.error_code),
            ApiKey::ConsumerGroupHeartbeat => {
                top_level::<ConsumerGroupHeartbeatResponse>(buf, version, tally, |r| r.error_code)
            }
            other => decode_only(other, buf, version).map(|()| None),
        }
    }
}

/// Lowers each API's max version to what kafka-protocol decodes, and drops APIs it cannot decode
/// at all (unknown keys, or a broker minimum above kafka-protocol's maximum): a client then never
/// sends a request whose response the observer would have to forward unread. Minimum versions
/// are left alone: clients choose the highest common version, and a client that can only speak
/// a version kafka-protocol no longer decodes shows up as `undecodable` instead of being hidden.
fn cap_api_versions(api_keys: &mut Vec<messages::api_versions_response::ApiVersion>) -> bool {
    let before = api_keys.clone();
    api_keys.retain_mut(|api| match ApiKey::try_from(api.api_key) {
        Err(()) => false,
        Ok(key) => {
            api.max_version = api.max_version.min(key.valid_versions().max);
            api.min_version <= api.max_version
        }
    });
    *api_keys != before
}

/// The error codes of one response, gathered before they are added to the totals.
struct Tally {
    api: ApiKey,
    version: i16,
    /// The broker (or proxy) address the response came from, for samples.
    upstream: String,
    codes: Vec<i16>,
    samples: Vec<String>,
    coordinator_samples: Vec<String>,
    fetch_gaps: Vec<String>,
    /// Each non-zero code and where it was: "16" (top level) or "74@topic/2".
    located: Vec<String>,
}

impl Tally {
    fn code(&mut self, code: i16) {
        if COORDINATOR_CODES.contains(&code) {
            self.coordinator_samples.push(format!(
                "{:?} v{} code={code} upstream={}",
                self.api, self.version, self.upstream
            ));
        }
        if code != 0 {
            self.codes.push(code);
            self.located.push(code.to_string());
        }
    }

    fn partition(&mut self, code: i16, topic: &TopicRef<'_>, partition: i32) {
        self.code(code);
        if code != 0 {
            if let Some(last) = self.located.last_mut() {
                *last = format!("{code}@{topic}/{partition}");
            }
        }
        if LEADERSHIP_CODES.contains(&code) {
            self.samples.push(format!(
                "{:?} v{} code={code} topic={topic} partition={partition} upstream={}",
                self.api, self.version, self.upstream
            ));
        }
    }
}

/// A topic as a response names it: by name, or by topic id where the version has no names
/// (Fetch v13+, OffsetCommit v10, Produce v13, share APIs).
struct TopicRef<'a> {
    name: &'a str,
    id: Option<&'a dyn Display>,
}

impl<'a> TopicRef<'a> {
    fn new(name: &'a str, id: &'a dyn Display) -> Self {
        TopicRef { name, id: Some(id) }
    }

    fn name(name: &'a str) -> Self {
        TopicRef { name, id: None }
    }
}

impl Display for TopicRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.id {
            Some(id) if self.name.is_empty() => write!(f, "{id}"),
            _ => f.write_str(self.name),
        }
    }
}

/// Decodes a whole body: bytes left over mean the decoder and the broker disagree on the layout.
fn decode<T: Decodable>(buf: &mut Bytes, version: i16) -> Result<T, String> {
    let message = T::decode(buf, version).map_err(|e| format!("{e:#}"))?;
    if buf.has_remaining() {
        return Err(format!("{} bytes left after the body", buf.remaining()));
    }
    Ok(message)
}

fn reencode<T: Encodable>(
    changed: bool,
    message: &T,
    version: i16,
) -> Result<Option<Bytes>, String> {
    if !changed {
        return Ok(None);
    }
    let mut out = BytesMut::new();
    message
        .encode(&mut out, version)
        .map_err(|e| format!("re-encoding: {e:#}"))?;
    Ok(Some(out.freeze()))
}

fn top_level<T: Decodable>(
    buf: &mut Bytes,
    version: i16,
    tally: &mut Tally,
    error_code: impl Fn(&T) -> i16,
) -> Result<Option<Bytes>, String> {
    let r: T = decode(buf, version)?;
    tally.code(error_code(&r));
    Ok(None)
}

/// Decodes responses of the APIs whose errors are not walked, so that `responses` and
/// `undecodable` still cover every API a client uses.
fn decode_only(api: ApiKey, buf: &mut Bytes, version: i16) -> Result<(), String> {
    macro_rules! decode_as {
        ($($key:ident => $response:ident),* $(,)?) => {
            match api {
                $(ApiKey::$key => decode::<messages::$response>(buf, version).map(drop),)*
                other => Err(format!("the observer has no decoder for {other:?}")),
            }
        };
    }
    decode_as!(
        SaslHandshake => SaslHandshakeResponse,
        WriteTxnMarkers => WriteTxnMarkersResponse,
        DescribeAcls => DescribeAclsResponse,
        CreateAcls => CreateAclsResponse,
        DeleteAcls => DeleteAclsResponse,
        DescribeConfigs => DescribeConfigsResponse,
        AlterConfigs => AlterConfigsResponse,
        AlterReplicaLogDirs => AlterReplicaLogDirsResponse,
        DescribeLogDirs => DescribeLogDirsResponse,
        SaslAuthenticate => SaslAuthenticateResponse,
        CreateDelegationToken => CreateDelegationTokenResponse,
        RenewDelegationToken => RenewDelegationTokenResponse,
        ExpireDelegationToken => ExpireDelegationTokenResponse,
        DescribeDelegationToken => DescribeDelegationTokenResponse,
        ElectLeaders => ElectLeadersResponse,
        IncrementalAlterConfigs => IncrementalAlterConfigsResponse,
        AlterPartitionReassignments => AlterPartitionReassignmentsResponse,
        ListPartitionReassignments => ListPartitionReassignmentsResponse,
        OffsetDelete => OffsetDeleteResponse,
        DescribeClientQuotas => DescribeClientQuotasResponse,
        AlterClientQuotas => AlterClientQuotasResponse,
        DescribeUserScramCredentials => DescribeUserScramCredentialsResponse,
        AlterUserScramCredentials => AlterUserScramCredentialsResponse,
        Vote => VoteResponse,
        BeginQuorumEpoch => BeginQuorumEpochResponse,
        EndQuorumEpoch => EndQuorumEpochResponse,
        DescribeQuorum => DescribeQuorumResponse,
        AlterPartition => AlterPartitionResponse,
        UpdateFeatures => UpdateFeaturesResponse,
        Envelope => EnvelopeResponse,
        FetchSnapshot => FetchSnapshotResponse,
        BrokerRegistration => BrokerRegistrationResponse,
        BrokerHeartbeat => BrokerHeartbeatResponse,
        UnregisterBroker => UnregisterBrokerResponse,
        DescribeTransactions => DescribeTransactionsResponse,
        ListTransactions => ListTransactionsResponse,
        AllocateProducerIds => AllocateProducerIdsResponse,
        ConsumerGroupDescribe => ConsumerGroupDescribeResponse,
        ControllerRegistration => ControllerRegistrationResponse,
        GetTelemetrySubscriptions => GetTelemetrySubscriptionsResponse,
        PushTelemetry => PushTelemetryResponse,
        AssignReplicasToDirs => AssignReplicasToDirsResponse,
        ListConfigResources => ListConfigResourcesResponse,
        ShareGroupHeartbeat => ShareGroupHeartbeatResponse,
        ShareGroupDescribe => ShareGroupDescribeResponse,
        AddRaftVoter => AddRaftVoterResponse,
        RemoveRaftVoter => RemoveRaftVoterResponse,
        UpdateRaftVoter => UpdateRaftVoterResponse,
        InitializeShareGroupState => InitializeShareGroupStateResponse,
        ReadShareGroupState => ReadShareGroupStateResponse,
        WriteShareGroupState => WriteShareGroupStateResponse,
        DeleteShareGroupState => DeleteShareGroupStateResponse,
        ReadShareGroupStateSummary => ReadShareGroupStateSummaryResponse,
        DescribeShareGroupOffsets => DescribeShareGroupOffsetsResponse,
        AlterShareGroupOffsets => AlterShareGroupOffsetsResponse,
        DeleteShareGroupOffsets => DeleteShareGroupOffsetsResponse,
    )
}

fn api_name(key: i16) -> String {
    match ApiKey::try_from(key) {
        Ok(api) => format!("{api:?}"),
        Err(()) if key == -1 => "(no matching request)".to_owned(),
        Err(()) => format!("ApiKey{key}"),
    }
}

fn code_name(code: i16) -> String {
    match code.err() {
        Some(error) => format!("{error:?}"),
        None => "NONE".to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Connections

/// Relays one client connection to the first reachable upstream until either side closes.
async fn proxy(client: TcpStream, upstreams: Vec<Upstream>, shared: Arc<Shared>) {
    let mut upstream = None;
    for candidate in &upstreams {
        let connect = TcpStream::connect((candidate.host.as_str(), candidate.port));
        if let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(10), connect).await {
            upstream = Some(stream);
            break;
        }
    }
    // No upstream: dropping the client socket closes it, as a dead broker would.
    let Some(upstream) = upstream else {
        shared.stats().refused += 1;
        return;
    };
    let label = match upstream.peer_addr() {
        Ok(addr) => addr.to_string(),
        Err(_) => "?".to_owned(),
    };
    let serial = shared.next_connection.fetch_add(1, Ordering::Relaxed);
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    // correlation id -> (api key, api version) of requests still waiting for their response.
    let in_flight = Mutex::new(HashMap::new());
    let (client_read, client_write) = client.into_split();
    let (upstream_read, upstream_write) = upstream.into_split();
    // Whichever side ends first (close, error, oversized frame) ends both: the sockets drop here.
    tokio::select! {
        _ = forward_requests(client_read, upstream_write, &in_flight, &shared, (serial, &label)) => {}
        _ = forward_responses(upstream_read, client_write, &in_flight, &shared, &label) => {
            let unanswered = !lock(&in_flight).is_empty();
            let mut stats = shared.stats();
            stats.upstream_closes += 1;
            stats.upstream_closes_in_flight += u64::from(unanswered);
        }
    }
}

async fn forward_requests(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    in_flight: &Mutex<HashMap<i32, Pending>>,
    shared: &Shared,
    (serial, upstream): (u64, &str),
) -> io::Result<()> {
    while let Some(frame) = read_frame(&mut from).await? {
        if frame.len() < 8 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "short request"));
        }
        let key = i16::from_be_bytes([frame[0], frame[1]]);
        let version = i16::from_be_bytes([frame[2], frame[3]]);
        let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
        if key == ApiKey::Produce as i16 {
            shared.record_producers(serial, upstream, &frame, version);
        }
        if expects_response(key, version, &frame) {
            let fetch_offsets = (key == ApiKey::Fetch as i16)
                .then(|| fetch_offsets(&frame, version))
                .flatten();
            let detail = request_detail(key, &frame, version);
            let mut in_flight = lock(in_flight);
            if in_flight.len() >= MAX_IN_FLIGHT {
                // Only reachable if the upstream stopped answering; forget the oldest-looking.
                if let Some(oldest) = in_flight.keys().min().copied() {
                    in_flight.remove(&oldest);
                }
            }
            // Remembered before the request leaves, so its response always finds it.
            in_flight.insert(
                correlation_id,
                Pending {
                    key,
                    version,
                    correlation_id,
                    fetch_offsets,
                    detail,
                },
            );
        }
        write_frame(&mut to, &frame).await?;
    }
    Ok(())
}

/// False only for acks=0 Produce requests, which the broker never answers.
fn expects_response(key: i16, version: i16, frame: &Bytes) -> bool {
    if key != ApiKey::Produce as i16 {
        return true;
    }
    let mut buf = frame.clone();
    let acks = decode_request_header_from_buffer(&mut buf)
        .and_then(|_| messages::ProduceRequest::decode(&mut buf, version))
        .map(|request| request.acks);
    !matches!(acks, Ok(0))
}

async fn forward_responses(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    in_flight: &Mutex<HashMap<i32, Pending>>,
    shared: &Arc<Shared>,
    upstream: &str,
) -> io::Result<()> {
    while let Some(frame) = read_frame(&mut from).await? {
        let request = frame
            .get(..4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .and_then(|correlation_id| lock(in_flight).remove(&correlation_id));
        let frame = shared.observe(request, frame, upstream);
        write_frame(&mut to, &frame).await?;
    }
    Ok(())
}

/// Reads one size-prefixed frame (without its prefix); `None` on a clean close between frames.
async fn read_frame(from: &mut (impl AsyncRead + Unpin)) -> io::Result<Option<Bytes>> {
    let mut size = [0u8; 4];
    match from.read_exact(&mut size).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let size = i32::from_be_bytes(size);
    let size = usize::try_from(size)
        .ok()
        .filter(|&size| size <= MAX_FRAME_BYTES)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("frame size {size}")))?;
    let mut frame = BytesMut::zeroed(size);
    from.read_exact(&mut frame).await?;
    Ok(Some(frame.freeze()))
}

async fn write_frame(to: &mut (impl AsyncWrite + Unpin), frame: &[u8]) -> io::Result<()> {
    let size = i32::try_from(frame.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "frame too large"))?;
    to.write_all(&size.to_be_bytes()).await?;
    to.write_all(frame).await
}

/// What a Fetch answer's record batch headers say, read as far as the bytes go (a broker may end
/// an answer with part of a batch).
#[derive(Debug, Clone, Copy)]
struct BatchHeader {
    base: i64,
    /// base + last offset delta, when the header is complete enough to say.
    last: Option<i64>,
    epoch: Option<i32>,
    producer_id: Option<i64>,
}

fn batch_headers(records: &[u8]) -> Vec<BatchHeader> {
    let be_i64 = |at: usize| {
        records
            .get(at..at + 8)
            .map(|b| i64::from_be_bytes(b.try_into().unwrap()))
    };
    let be_i32 = |at: usize| {
        records
            .get(at..at + 4)
            .map(|b| i32::from_be_bytes(b.try_into().unwrap()))
    };
    let mut out = Vec::new();
    let mut at = 0usize;
    // base offset (8), length (4), partition leader epoch (4), magic (1), crc (4),
    // attributes (2), last offset delta (4), base timestamp (8), max timestamp (8), producer id
    while let (Some(base), Some(length)) = (be_i64(at), be_i32(at + 8)) {
        out.push(BatchHeader {
            base,
            last: be_i32(at + 23).map(|d| base + i64::from(d)),
            epoch: be_i32(at + 12),
            producer_id: be_i64(at + 43),
        });
        if length <= 0 {
            break;
        }
        at += 12 + length as usize;
    }
    out
}
