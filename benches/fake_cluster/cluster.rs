//! A fake Kafka cluster of any size, for fairlead's scale benchmarks (benches/e2e/metadata-scale).
//!
//! N brokers (node ids 1..=N), each on its own 127.0.0.1 port, answering from one shared,
//! immutable cluster shape: T topics `t000000`, `t000001`, ... of P/T partitions each, partition
//! `i` (counted over the whole cluster) led by node `i % N + 1`, replicas the leader and the next
//! nodes, all in sync, leader epoch 0. It speaks just enough Kafka to bootstrap fairlead and to
//! carry a benchmark's clients: ApiVersions, Metadata (v0-12; the all-topics answer is encoded
//! once per version and then sent as stored bytes, so a 200,000-partition answer costs the fake a
//! copy, not an encoding), FindCoordinator, InitProducerId, ListOffsets, Produce (appends nothing:
//! every partition of a known topic answers success at the next offset) and Fetch (no records;
//! answered after the request's max wait, at most 500 ms, as a broker with no new data would).
//!
//! What it is for is the record of who asked what: every request is counted by who sent it
//! (`fairlead` when the request header's client id is "fairlead", which fairlead puts on its own
//! requests, else `clients`: what fairlead forwarded for its clients) and by API, with the bytes
//! of the request and of the answer, plus how many Metadata requests asked for all topics and
//! how many topics the others named. [`FakeCluster::stats`] is that record as JSON; the binary
//! (main.rs) serves it on a control port.
//!
//! Shared by the binary (benches/fake_cluster/fake_cluster.rs) and its test (tests/fake/fake_cluster.rs).

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, FetchRequest, FetchResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, InitProducerIdRequest, InitProducerIdResponse, ListOffsetsRequest,
    ListOffsetsResponse, MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse,
    ProducerId, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use uuid::Uuid;

/// The client id fairlead puts on its own requests (src/codec/message.rs).
pub const FAIRLEAD_CLIENT_ID: &str = "fairlead";
/// The largest request the fake reads (a client's request, never an answer).
const MAX_REQUEST: usize = 64 << 20;

/// The version ranges the fake answers (ApiVersions tells clients, and fairlead, these).
/// Produce stops at 12 and Fetch at 12: later versions name topics by id only.
pub const VERSIONS: [(ApiKey, i16, i16); 8] = [
    (ApiKey::Produce, 3, 12),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::DescribeCluster, 0, 0),
];

/// The size and layout of the fake cluster.
#[derive(Debug, Clone)]
pub struct Shape {
    pub brokers: i32,
    pub partitions: usize,
    pub partitions_per_topic: usize,
    pub replication: usize,
}

impl Shape {
    pub fn topics(&self) -> usize {
        self.partitions.div_ceil(self.partitions_per_topic.max(1))
    }
}

/// Topic `i`'s name.
pub fn topic_name(i: usize) -> String {
    format!("t{i:06}")
}

fn topic_id(i: usize) -> Uuid {
    Uuid::from_u128(0xfa11_1ead_0000_0000_0000_0000_0000_0000 | (i as u128 + 1))
}

/// Counters of one (who, API) pair.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Counter {
    pub requests: u64,
    pub request_bytes: u64,
    pub response_bytes: u64,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct Stats {
    /// who ("fairlead" or "clients") -> API name -> counters.
    pub by_api: BTreeMap<String, BTreeMap<String, Counter>>,
    /// who -> Metadata requests that asked for every topic.
    pub metadata_all_topics: BTreeMap<String, u64>,
    /// who -> topics named by the other Metadata requests, summed.
    pub metadata_topics_named: BTreeMap<String, u64>,
    /// Connections accepted, per node id.
    pub connections: BTreeMap<i32, u64>,
}

pub struct Cluster {
    pub shape: Shape,
    pub host: String,
    /// node id -> port.
    pub ports: BTreeMap<i32, u16>,
    full: MetadataResponse,
    by_name: HashMap<String, usize>,
    by_id: HashMap<Uuid, usize>,
    /// Version -> the all-topics Metadata body, encoded once.
    encoded: Mutex<HashMap<i16, Bytes>>,
    stats: Mutex<Stats>,
    next_offset: AtomicI64,
    next_producer_id: AtomicI64,
    pub started: Instant,
    pub requests: AtomicU64,
}

impl Cluster {
    /// Builds the cluster's metadata for brokers at `host:ports[node]`.
    pub fn new(shape: Shape, host: &str, ports: BTreeMap<i32, u16>) -> Cluster {
        let n = shape.brokers.max(1);
        let rf = shape.replication.clamp(1, n as usize);
        let brokers = ports
            .iter()
            .map(|(&id, &port)| {
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(id))
                    .with_host(StrBytes::from_string(host.to_string()))
                    .with_port(port as i32)
            })
            .collect();
        let per = shape.partitions_per_topic.max(1);
        let mut topics = Vec::with_capacity(shape.topics());
        let mut global = 0usize;
        let mut t = 0usize;
        while global < shape.partitions {
            let count = per.min(shape.partitions - global);
            let partitions = (0..count)
                .map(|p| {
                    let leader = ((global + p) % n as usize) as i32 + 1;
                    let replicas: Vec<BrokerId> = (0..rf)
                        .map(|r| BrokerId((leader - 1 + r as i32) % n + 1))
                        .collect();
                    MetadataResponsePartition::default()
                        .with_partition_index(p as i32)
                        .with_leader_id(BrokerId(leader))
                        .with_leader_epoch(0)
                        .with_isr_nodes(replicas.clone())
                        .with_replica_nodes(replicas)
                })
                .collect();
            topics.push(
                MetadataResponseTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_string(topic_name(t)))))
                    .with_topic_id(topic_id(t))
                    .with_partitions(partitions),
            );
            global += count;
            t += 1;
        }
        let by_name = (0..topics.len()).map(|i| (topic_name(i), i)).collect();
        let by_id = (0..topics.len()).map(|i| (topic_id(i), i)).collect();
        let full = MetadataResponse::default()
            .with_brokers(brokers)
            .with_cluster_id(Some(StrBytes::from_static_str("fake-cluster-0000000000")))
            .with_controller_id(BrokerId(1))
            .with_topics(topics);
        Cluster {
            shape,
            host: host.to_string(),
            ports,
            full,
            by_name,
            by_id,
            encoded: Mutex::new(HashMap::new()),
            stats: Mutex::new(Stats::default()),
            next_offset: AtomicI64::new(0),
            next_producer_id: AtomicI64::new(1000),
            started: Instant::now(),
            requests: AtomicU64::new(0),
        }
    }

    /// The all-topics Metadata answer's body at `version`, encoded on first use.
    pub fn full_metadata(&self, version: i16) -> Bytes {
        let mut enc = self.encoded.lock().unwrap();
        enc.entry(version)
            .or_insert_with(|| {
                let mut b = BytesMut::with_capacity(self.full.compute_size(version).unwrap_or(0));
                self.full
                    .encode(&mut b, version)
                    .expect("the fake's metadata encodes");
                b.freeze()
            })
            .clone()
    }

    /// The answer to a Metadata request naming topics (by name, or by id from v10).
    fn named_metadata(&self, req: &MetadataRequest, version: i16) -> Bytes {
        let topics = req
            .topics
            .iter()
            .flatten()
            .map(|t| {
                let found = match &t.name {
                    Some(n) => self.by_name.get(n.0.as_str()),
                    None => self.by_id.get(&t.topic_id),
                };
                match found {
                    Some(&i) => self.full.topics[i].clone(),
                    None => MetadataResponseTopic::default()
                        .with_error_code(3) // UNKNOWN_TOPIC_OR_PARTITION
                        .with_name(t.name.clone())
                        .with_topic_id(t.topic_id),
                }
            })
            .collect();
        let r = MetadataResponse::default()
            .with_brokers(self.full.brokers.clone())
            .with_cluster_id(self.full.cluster_id.clone())
            .with_controller_id(self.full.controller_id)
            .with_topics(topics);
        let mut b = BytesMut::new();
        r.encode(&mut b, version).expect("metadata encodes");
        b.freeze()
    }

    fn known(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    fn partitions_of(&self, name: &str) -> usize {
        self.by_name
            .get(name)
            .map(|&i| self.full.topics[i].partitions.len())
            .unwrap_or(0)
    }

    fn count(&self, who: &str, api: &str, req_bytes: usize, resp_bytes: usize) {
        let mut s = self.stats.lock().unwrap();
        let c = s
            .by_api
            .entry(who.to_string())
            .or_default()
            .entry(api.to_string())
            .or_default();
        c.requests += 1;
        c.request_bytes += req_bytes as u64;
        c.response_bytes += resp_bytes as u64;
    }

    /// Every counter so far, with the shape and the uptime.
    pub fn stats(&self) -> serde_json::Value {
        let s = self.stats.lock().unwrap();
        serde_json::json!({
            "brokers": self.shape.brokers,
            "partitions": self.shape.partitions,
            "topics": self.full.topics.len(),
            "partitions_per_topic": self.shape.partitions_per_topic,
            "uptime_s": self.started.elapsed().as_secs_f64(),
            "by_api": s.by_api,
            "metadata_all_topics": s.metadata_all_topics,
            "metadata_topics_named": s.metadata_topics_named,
            "connections": s.connections,
        })
    }

    /// The counters of one (who, API) pair.
    pub fn counter(&self, who: &str, api: &str) -> Counter {
        let s = self.stats.lock().unwrap();
        s.by_api
            .get(who)
            .and_then(|m| m.get(api))
            .cloned()
            .unwrap_or_default()
    }

    pub fn metadata_all_topics(&self, who: &str) -> u64 {
        let s = self.stats.lock().unwrap();
        s.metadata_all_topics.get(who).copied().unwrap_or(0)
    }

    /// The answer to one request frame (without its length prefix), or None when none is due
    /// (acks=0 produce). Err: a request the fake cannot parse, or of an API it does not speak.
    pub async fn answer(&self, frame: Bytes) -> Result<Option<Bytes>, String> {
        let head = parse_head(&frame).ok_or("unreadable request header")?;
        let api =
            ApiKey::try_from(head.api_key).map_err(|_| format!("api key {}", head.api_key))?;
        let v = head.version;
        let who = if head.client_id.as_deref() == Some(FAIRLEAD_CLIENT_ID) {
            "fairlead"
        } else {
            "clients"
        };
        self.requests.fetch_add(1, Ordering::Relaxed);
        let body = frame.slice(head.body..);
        let answer: Option<Bytes> = match api {
            ApiKey::ApiVersions => {
                let keys = VERSIONS
                    .iter()
                    .map(|(k, min, max)| {
                        ApiVersion::default()
                            .with_api_key(*k as i16)
                            .with_min_version(*min)
                            .with_max_version(*max)
                    })
                    .collect();
                let r = ApiVersionsResponse::default().with_api_keys(keys);
                // A version the fake does not speak is answered at v0, as brokers do.
                let v = if v > 3 { 0 } else { v };
                Some(respond(api, v, head.correlation_id, &r))
            }
            ApiKey::Metadata => {
                let req: MetadataRequest = decode(body, v)?;
                let all = match &req.topics {
                    None => true,
                    Some(t) => v == 0 && t.is_empty(),
                };
                let body = if all {
                    self.full_metadata(v)
                } else {
                    self.named_metadata(&req, v)
                };
                {
                    let mut s = self.stats.lock().unwrap();
                    if all {
                        *s.metadata_all_topics.entry(who.to_string()).or_default() += 1;
                    } else {
                        *s.metadata_topics_named.entry(who.to_string()).or_default() +=
                            req.topics.as_ref().map_or(0, |t| t.len()) as u64;
                    }
                }
                Some(respond_raw(api, v, head.correlation_id, &body))
            }
            ApiKey::Produce => {
                let req: ProduceRequest = decode(body, v)?;
                let responses = req
                    .topic_data
                    .iter()
                    .map(|t| {
                        let known = self.known(t.name.0.as_str());
                        let n = self.partitions_of(t.name.0.as_str()) as i32;
                        TopicProduceResponse::default()
                            .with_name(t.name.clone())
                            .with_partition_responses(
                                t.partition_data
                                    .iter()
                                    .map(|p| {
                                        let ok = known && p.index >= 0 && p.index < n;
                                        PartitionProduceResponse::default()
                                            .with_index(p.index)
                                            .with_error_code(if ok { 0 } else { 3 })
                                            .with_base_offset(if ok {
                                                self.next_offset.fetch_add(1, Ordering::Relaxed)
                                            } else {
                                                -1
                                            })
                                            .with_log_append_time_ms(-1)
                                            .with_log_start_offset(0)
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                if req.acks == 0 {
                    None
                } else {
                    let r = ProduceResponse::default().with_responses(responses);
                    Some(respond(api, v, head.correlation_id, &r))
                }
            }
            ApiKey::Fetch => {
                let req: FetchRequest = decode(body, v)?;
                let wait = Duration::from_millis(req.max_wait_ms.clamp(0, 500) as u64);
                tokio::time::sleep(wait).await;
                let responses = req
                    .topics
                    .iter()
                    .map(|t| {
                        let known = self.known(t.topic.0.as_str());
                        FetchableTopicResponse::default()
                            .with_topic(t.topic.clone())
                            .with_topic_id(t.topic_id)
                            .with_partitions(
                                t.partitions
                                    .iter()
                                    .map(|p| {
                                        PartitionData::default()
                                            .with_partition_index(p.partition)
                                            .with_error_code(if known { 0 } else { 3 })
                                            .with_high_watermark(0)
                                            .with_last_stable_offset(0)
                                            .with_log_start_offset(0)
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                let r = FetchResponse::default().with_responses(responses);
                Some(respond(api, v, head.correlation_id, &r))
            }
            ApiKey::ListOffsets => {
                let req: ListOffsetsRequest = decode(body, v)?;
                let topics = req
                    .topics
                    .iter()
                    .map(|t| {
                        ListOffsetsTopicResponse::default()
                            .with_name(t.name.clone())
                            .with_partitions(
                                t.partitions
                                    .iter()
                                    .map(|p| {
                                        ListOffsetsPartitionResponse::default()
                                            .with_partition_index(p.partition_index)
                                            .with_timestamp(-1)
                                            .with_offset(0)
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                let r = ListOffsetsResponse::default().with_topics(topics);
                Some(respond(api, v, head.correlation_id, &r))
            }
            ApiKey::FindCoordinator => {
                let req: FindCoordinatorRequest = decode(body, v)?;
                let node = |key: &str| {
                    let h = key
                        .bytes()
                        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32));
                    (h % self.shape.brokers.max(1) as u32) as i32 + 1
                };
                let port = |id: i32| self.ports.get(&id).copied().unwrap_or(0) as i32;
                let host = StrBytes::from_string(self.host.clone());
                let r = if v < 4 {
                    let id = node(req.key.as_str());
                    FindCoordinatorResponse::default()
                        .with_node_id(BrokerId(id))
                        .with_host(host)
                        .with_port(port(id))
                } else {
                    FindCoordinatorResponse::default().with_coordinators(
                        req.coordinator_keys
                            .iter()
                            .map(|k| {
                                let id = node(k.as_str());
                                Coordinator::default()
                                    .with_key(k.clone())
                                    .with_node_id(BrokerId(id))
                                    .with_host(host.clone())
                                    .with_port(port(id))
                            })
                            .collect(),
                    )
                };
                Some(respond(api, v, head.correlation_id, &r))
            }
            ApiKey::InitProducerId => {
                let _req: InitProducerIdRequest = decode(body, v)?;
                let id = self.next_producer_id.fetch_add(1, Ordering::Relaxed);
                let r = InitProducerIdResponse::default()
                    .with_producer_id(ProducerId(id))
                    .with_producer_epoch(0);
                Some(respond(api, v, head.correlation_id, &r))
            }
            other => return Err(format!("the fake does not speak {other:?}")),
        };
        self.count(
            who,
            &format!("{api:?}"),
            frame.len() + 4,
            answer.as_ref().map_or(0, |a| a.len()),
        );
        Ok(answer)
    }
}

// ---------------------------------------------------------------------------------------------
// Wire helpers
// ---------------------------------------------------------------------------------------------

pub struct Head {
    pub api_key: i16,
    pub version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
    /// Offset of the body in the frame.
    pub body: usize,
}

/// The request header (v1 or v2) of a frame without its length prefix.
pub fn parse_head(b: &[u8]) -> Option<Head> {
    let api_key = i16::from_be_bytes(b.get(0..2)?.try_into().ok()?);
    let version = i16::from_be_bytes(b.get(2..4)?.try_into().ok()?);
    let correlation_id = i32::from_be_bytes(b.get(4..8)?.try_into().ok()?);
    let len = i16::from_be_bytes(b.get(8..10)?.try_into().ok()?);
    let mut off = 10;
    let mut client_id = None;
    if len >= 0 {
        let s = b.get(off..off + len as usize)?;
        client_id = Some(String::from_utf8_lossy(s).into_owned());
        off += len as usize;
    }
    let api = ApiKey::try_from(api_key).ok()?;
    if api.request_header_version(version) >= 2 {
        let n = uvarint(b, &mut off)?;
        for _ in 0..n {
            uvarint(b, &mut off)?;
            off += uvarint(b, &mut off)? as usize;
        }
    }
    (off <= b.len()).then_some(Head {
        api_key,
        version,
        correlation_id,
        client_id,
        body: off,
    })
}

fn uvarint(b: &[u8], off: &mut usize) -> Option<u32> {
    let mut v = 0u32;
    for shift in (0..35).step_by(7) {
        let byte = *b.get(*off)?;
        *off += 1;
        v |= ((byte & 0x7f) as u32) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn decode<T: Decodable>(mut body: Bytes, version: i16) -> Result<T, String> {
    T::decode(&mut body, version).map_err(|e| format!("undecodable request: {e}"))
}

fn response_header_version(api: ApiKey, version: i16) -> i16 {
    // ApiVersions answers always carry header v0, so that any client can read them.
    if api == ApiKey::ApiVersions {
        0
    } else {
        api.response_header_version(version)
    }
}

/// A response frame: length, correlation id, (tagged fields for header v1), body.
pub fn respond<T: Encodable>(api: ApiKey, version: i16, corr: i32, msg: &T) -> Bytes {
    let mut b = BytesMut::new();
    msg.encode(&mut b, version)
        .unwrap_or_else(|e| panic!("fake {api:?} v{version} response does not encode: {e}"));
    respond_raw(api, version, corr, &b)
}

/// A response frame around a body already encoded.
pub fn respond_raw(api: ApiKey, version: i16, corr: i32, body: &[u8]) -> Bytes {
    let flexible = response_header_version(api, version) >= 1;
    let head = 4 + 4 + flexible as usize;
    let mut b = BytesMut::with_capacity(head + body.len());
    b.put_i32((head - 4 + body.len()) as i32);
    b.put_i32(corr);
    if flexible {
        b.put_u8(0);
    }
    b.put_slice(body);
    b.freeze()
}

// ---------------------------------------------------------------------------------------------
// Serving
// ---------------------------------------------------------------------------------------------

/// The brokers' listeners, bound before the metadata that names their ports is built.
pub struct Listeners {
    pub host: String,
    pub listeners: Vec<(i32, TcpListener)>,
}

impl Listeners {
    /// Binds node `id` (1..=brokers) on `base_port + id`, or on any free port when `base_port`
    /// is 0.
    pub async fn bind(host: &str, brokers: i32, base_port: u16) -> std::io::Result<Listeners> {
        let mut listeners = Vec::new();
        for id in 1..=brokers {
            let port = if base_port == 0 {
                0
            } else {
                base_port + id as u16
            };
            listeners.push((id, TcpListener::bind((host, port)).await?));
        }
        Ok(Listeners {
            host: host.to_string(),
            listeners,
        })
    }

    pub fn ports(&self) -> BTreeMap<i32, u16> {
        self.listeners
            .iter()
            .map(|(id, l)| (*id, l.local_addr().map(|a| a.port()).unwrap_or(0)))
            .collect()
    }

    /// Serves every node until the process ends.
    pub fn serve(self, cluster: Arc<Cluster>) {
        for (id, l) in self.listeners {
            let c = cluster.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((sock, _)) = l.accept().await else {
                        continue;
                    };
                    *c.stats.lock().unwrap().connections.entry(id).or_default() += 1;
                    let c = c.clone();
                    tokio::spawn(async move {
                        let _ = serve_connection(c, sock).await;
                    });
                }
            });
        }
    }
}

/// Answers one connection's requests in order, as a broker does.
async fn serve_connection(cluster: Arc<Cluster>, mut sock: TcpStream) -> std::io::Result<()> {
    sock.set_nodelay(true)?;
    loop {
        let mut len = [0u8; 4];
        sock.read_exact(&mut len).await?;
        let len = i32::from_be_bytes(len);
        if len < 0 || len as usize > MAX_REQUEST {
            return Ok(());
        }
        let mut buf = vec![0u8; len as usize];
        sock.read_exact(&mut buf).await?;
        match cluster.answer(Bytes::from(buf)).await {
            Ok(Some(a)) => sock.write_all(&a).await?,
            Ok(None) => {}
            Err(e) => {
                eprintln!("fake cluster: closing a connection: {e}");
                return Ok(());
            }
        }
    }
}

/// Binds, builds and serves a fake cluster; returns it with the brokers' addresses.
pub async fn start(
    shape: Shape,
    host: &str,
    base_port: u16,
) -> std::io::Result<(Arc<Cluster>, Vec<SocketAddr>)> {
    let listeners = Listeners::bind(host, shape.brokers, base_port).await?;
    let ports = listeners.ports();
    let addrs = listeners
        .listeners
        .iter()
        .filter_map(|(_, l)| l.local_addr().ok())
        .collect();
    let cluster = Arc::new(Cluster::new(shape, host, ports));
    listeners.serve(cluster.clone());
    Ok((cluster, addrs))
}
