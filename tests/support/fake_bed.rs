//! The bed of the fake-broker tests: fairlead in-process in front of a fake cluster
//! (tests/support/fake.rs, nodes 1, 2, 3), and a raw client speaking the protocol with
//! kafka-protocol. Tests run one at a time (metrics are process-global, and the timing of some
//! tests matters).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use fairlead::config::Config;
use fairlead::server::Server;
use fairlead::testing::{Credentials, Mechanism, SaslLogin, SaslMode, Secret};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, MetadataRequest, MetadataResponse, RequestHeader, SaslAuthenticateRequest,
    SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse, TopicName,
};
use kafka_protocol::protocol::{encode_request_header_into_buffer, Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use uuid::Uuid;

use super::fake::{FakeCluster, Script};

pub const CLIENT_ID: &str = "fake-test";

/// SASL passthrough, fairlead's own connections authenticated as PLAIN user "fairlead" (the
/// fake brokers' scripts add the user).
pub fn plain_passthrough(cfg: &mut Config) {
    cfg.sasl_mode = SaslMode::Passthrough;
    cfg.sasl = Some(SaslLogin::Password {
        credentials: Credentials {
            mechanism: Mechanism::Plain,
            username: "fairlead".into(),
            password: Secret::new("fairlead-secret".into()),
        },
        password_file: None,
    });
}

// ---------------------------------------------------------------------------------------------
// The bed: fake cluster + fairlead
// ---------------------------------------------------------------------------------------------

/// One test at a time: fairlead's metrics are process-global, and several tests measure time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct Bed {
    pub fake: FakeCluster,
    pub server: Server,
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

/// A base port P in 30000-38000 with P..P+10 free: P is the bootstrap port, P+1+N node N's.
pub fn free_base() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let seed = (std::process::id() % 397) as u16;
    for _ in 0..400 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let p = 30_000 + ((seed + n) % 399) * 20;
        if (p..=p + 10).all(|q| std::net::TcpListener::bind(("127.0.0.1", q)).is_ok()) {
            return p;
        }
    }
    panic!("no free block of 11 ports in 30000-38000");
}

/// Topic t: partitions 0 and 1 led by node 1 (epoch 5); topic u: partition 0 led by node 2
/// (epoch 3).
pub fn standard(s: &mut Script) {
    s.topic("t", &[(1, 5), (1, 5)]);
    s.topic("u", &[(2, 3)]);
}

impl Bed {
    pub async fn start(setup: impl FnOnce(&mut Script)) -> Bed {
        Bed::start_with(setup, |_| {}).await
    }

    /// The bed, after a client asked Metadata for every topic of the script by name, as real
    /// clients do before they use a topic: fairlead tracks them from then on (it tracks only
    /// the topics its clients use, see `leadership::scope`).
    pub async fn start_with(
        setup: impl FnOnce(&mut Script),
        tweak: impl FnOnce(&mut Config),
    ) -> Bed {
        let bed = Bed::start_cold(setup, tweak).await;
        let names: Vec<String> = bed
            .fake
            .script()
            .topics
            .iter()
            .map(|t| t.name.clone())
            .collect();
        if !names.is_empty() {
            let req = MetadataRequest::default().with_topics(Some(
                names
                    .into_iter()
                    .map(|n| {
                        MetadataRequestTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string(n))))
                    })
                    .collect(),
            ));
            let mut c = bed.client(None).await;
            let _: MetadataResponse = c.call(ApiKey::Metadata, 12, &req).await;
        }
        bed
    }

    /// The bed with no client yet: fairlead knows the brokers and no topic.
    pub async fn start_cold(
        setup: impl FnOnce(&mut Script),
        tweak: impl FnOnce(&mut Config),
    ) -> Bed {
        let serial = SERIAL.lock().await;
        init_logging();
        let fake = FakeCluster::start(&[1, 2, 3]).await;
        setup(&mut fake.script());
        let base = free_base();
        let mut cfg = Config::with_bootstrap(&fake.bootstrap());
        cfg.listen = SocketAddr::from(([127, 0, 0, 1], base));
        cfg.node_port_base = base + 1;
        cfg.admin = "127.0.0.1:0".parse().unwrap();
        cfg.max_frame_bytes = 64 * 1024;
        cfg.connect_timeout = Duration::from_secs(1);
        cfg.request_timeout = Duration::from_secs(2);
        cfg.absorb_timeout = Duration::from_secs(2);
        cfg.coordinator_absorb_timeout = Duration::from_secs(2);
        cfg.retry_backoff = Duration::from_millis(25);
        cfg.metadata_max_age = Duration::from_secs(600);
        cfg.ready_max_metadata_age = Duration::from_secs(1200);
        cfg.startup_timeout = Duration::from_secs(5);
        cfg.drain_timeout = Duration::from_millis(200);
        tweak(&mut cfg);
        let server = Server::start(cfg)
            .await
            .expect("fairlead starts in front of the fake cluster");
        Bed {
            fake,
            server,
            _serial: serial,
        }
    }

    pub fn port(&self, node: i32) -> i32 {
        self.server.cluster.cfg.node_port_base as i32 + node
    }

    /// Connects to broker `node`'s port on fairlead, or (None) to the bootstrap port.
    pub async fn client(&self, node: Option<i32>) -> Client {
        let addr = match node {
            Some(n) => SocketAddr::from(([127, 0, 0, 1], self.port(n) as u16)),
            None => self.server.bootstrap_addr,
        };
        Client::connect(addr).await
    }

    /// Moves leadership in the fake's metadata; fairlead learns it at its next refresh.
    pub fn move_leader(&self, topic: &str, partition: i32, leader: i32, epoch: i32) {
        self.fake
            .script()
            .set_leader(topic, partition, leader, epoch);
    }

    /// Topic name -> id, as the fake cluster knows them.
    pub fn topic_ids(&self) -> impl Fn(&str) -> Uuid {
        let ids: Vec<(String, Uuid)> = self
            .fake
            .script()
            .topics
            .iter()
            .map(|t| (t.name.clone(), t.id))
            .collect();
        move |n: &str| {
            ids.iter()
                .find(|(name, _)| name == n)
                .map(|(_, id)| *id)
                .unwrap_or_else(|| panic!("no topic {n}"))
        }
    }

    /// (status, body) of a GET on fairlead's admin endpoint.
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        let mut s = TcpStream::connect(self.server.admin_addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: fairlead\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).await.unwrap();
        let code = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string());
        (code, body.unwrap_or_default())
    }

    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut s = TcpStream::connect(self.server.admin_addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: fairlead\r\n\r\n")
            .await
            .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).await.unwrap();
        text.lines()
            .filter(|l| {
                (l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
                    && labels
                        .iter()
                        .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

pub fn init_logging() {
    // FAKE_BROKER_LOG=fairlead=debug shows what fairlead does in a failing test.
    if let Ok(filter) = std::env::var("FAKE_BROKER_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

// ---------------------------------------------------------------------------------------------
// The raw client
// ---------------------------------------------------------------------------------------------

pub struct Client {
    s: TcpStream,
    next: i32,
}

/// A request frame (length prefix included) with client id "fake-test".
pub fn request_frame<Req: Encodable>(api: ApiKey, version: i16, corr: i32, req: &Req) -> Bytes {
    let h = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(corr)
        .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
    let mut b = BytesMut::new();
    b.put_i32(0);
    encode_request_header_into_buffer(&mut b, &h).unwrap();
    req.encode(&mut b, version).unwrap();
    let len = (b.len() - 4) as i32;
    b[0..4].copy_from_slice(&len.to_be_bytes());
    b.freeze()
}

/// A request frame built by hand: header v1 (key, version, correlation id, client id), then
/// `body` as given.
pub fn raw_request(api_key: i16, version: i16, corr: i32, body: &[u8]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i32(0);
    b.put_i16(api_key);
    b.put_i16(version);
    b.put_i32(corr);
    b.put_i16(CLIENT_ID.len() as i16);
    b.put_slice(CLIENT_ID.as_bytes());
    b.put_slice(body);
    let len = (b.len() - 4) as i32;
    b[0..4].copy_from_slice(&len.to_be_bytes());
    b.freeze()
}

/// Decodes a response frame: (correlation id, body).
pub fn decode_response<Resp: Decodable>(frame: &Bytes, api: ApiKey, version: i16) -> (i32, Resp) {
    let corr = i32::from_be_bytes(frame[4..8].try_into().unwrap());
    let hv = if api == ApiKey::ApiVersions {
        0
    } else {
        api.response_header_version(version)
    };
    let mut body = frame.slice(if hv >= 1 { 9 } else { 8 }..);
    let r = Resp::decode(&mut body, version)
        .unwrap_or_else(|e| panic!("{api:?} v{version} response does not decode: {e}"));
    assert!(
        body.is_empty(),
        "{api:?} v{version}: {} bytes left after the body",
        body.len()
    );
    (corr, r)
}

/// `frame` with its correlation id (at byte `at`) replaced.
pub fn with_correlation(frame: &Bytes, at: usize, corr: i32) -> Bytes {
    let mut b = frame.to_vec();
    b[at..at + 4].copy_from_slice(&corr.to_be_bytes());
    Bytes::from(b)
}

pub const REQUEST_CORR_AT: usize = 8;
pub const RESPONSE_CORR_AT: usize = 4;

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connect to fairlead at {addr}: {e}"));
        s.set_nodelay(true).unwrap();
        Client { s, next: 1 }
    }

    pub fn next_corr(&mut self) -> i32 {
        let c = self.next;
        self.next += 1;
        c
    }

    pub async fn send<Req: Encodable>(&mut self, api: ApiKey, version: i16, req: &Req) -> i32 {
        let corr = self.next_corr();
        self.s
            .write_all(&request_frame(api, version, corr, req))
            .await
            .unwrap();
        corr
    }

    pub async fn send_bytes(&mut self, frame: &[u8]) {
        self.s.write_all(frame).await.unwrap();
    }

    /// The next response frame (length prefix included), or None within `within`. Panics on
    /// a closed connection.
    pub async fn recv_within(&mut self, within: Duration) -> Option<Bytes> {
        let mut len = [0u8; 4];
        match tokio::time::timeout(within, self.s.read_exact(&mut len)).await {
            Err(_) => return None,
            Ok(r) => r.expect("fairlead closed the connection"),
        };
        let n = i32::from_be_bytes(len) as usize;
        let mut b = vec![0u8; 4 + n];
        b[..4].copy_from_slice(&len);
        tokio::time::timeout(Duration::from_secs(5), self.s.read_exact(&mut b[4..]))
            .await
            .expect("rest of a response frame")
            .expect("rest of a response frame");
        Some(Bytes::from(b))
    }

    pub async fn recv(&mut self) -> Bytes {
        self.recv_within(Duration::from_secs(10))
            .await
            .expect("a response within 10 s")
    }

    /// Sends a request, reads the response, checks its correlation id and decodes it.
    pub async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        req: &Req,
    ) -> Resp {
        let corr = self.send(api, version, req).await;
        let frame = self.recv().await;
        let (got, resp) = decode_response(&frame, api, version);
        assert_eq!(got, corr, "correlation id of the {api:?} response");
        resp
    }

    /// The client's own SASL exchange through fairlead (PLAIN in one step, SCRAM in two): the
    /// last step's error code.
    pub async fn authenticate(&mut self, mechanism: &str, steps: &[&[u8]]) -> i16 {
        let h: SaslHandshakeResponse = self
            .call(
                ApiKey::SaslHandshake,
                1,
                &SaslHandshakeRequest::default()
                    .with_mechanism(StrBytes::from_string(mechanism.into())),
            )
            .await;
        assert_eq!(h.error_code, 0);
        let mut code = 0;
        for step in steps {
            let r: SaslAuthenticateResponse = self
                .call(
                    ApiKey::SaslAuthenticate,
                    2,
                    &SaslAuthenticateRequest::default()
                        .with_auth_bytes(Bytes::copy_from_slice(step)),
                )
                .await;
            code = r.error_code;
        }
        code
    }

    /// True when fairlead closed the connection (EOF or reset) within `within`.
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let mut buf = [0u8; 256];
        let end = Instant::now() + within;
        loop {
            match tokio::time::timeout_at(end.into(), self.s.read(&mut buf)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
            }
        }
    }
}
