//! The scale benchmarks' fake cluster (benches/fake_cluster) answers what kafka-protocol, and so
//! fairlead and clients, decode, and tells fairlead's own requests from its clients'.

#[path = "../../benches/fake_cluster/cluster.rs"]
mod cluster;
#[path = "../support/raw.rs"]
#[allow(dead_code)] // the raw client's other helpers serve other tests
mod raw;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse,
    ProduceResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};

use cluster::{Cluster, Shape};

fn shape(brokers: i32, partitions: usize) -> Shape {
    Shape {
        brokers,
        partitions,
        partitions_per_topic: 10,
        replication: 3,
    }
}

fn ports(brokers: i32) -> BTreeMap<i32, u16> {
    (1..=brokers).map(|id| (id, 40_000 + id as u16)).collect()
}

fn metadata_request(topics: Option<&[&str]>) -> MetadataRequest {
    MetadataRequest::default().with_topics(topics.map(|ts| {
        ts.iter()
            .map(|t| {
                MetadataRequestTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_string(t.to_string()))))
            })
            .collect()
    }))
}

#[test]
fn all_topics_answer_decodes_at_every_version() {
    // 1,003 partitions: 100 topics of 10 and a last one of 3.
    let c = Cluster::new(shape(5, 1003), "127.0.0.1", ports(5));
    for v in [0i16, 1, 4, 7, 9, 10, 12] {
        let mut body = c.full_metadata(v);
        let r = MetadataResponse::decode(&mut body, v)
            .unwrap_or_else(|e| panic!("v{v} does not decode: {e}"));
        assert!(body.is_empty(), "v{v}: bytes left after the answer");
        assert_eq!(r.brokers.len(), 5);
        for b in &r.brokers {
            assert_eq!(b.port, 40_000 + b.node_id.0);
            assert_eq!(b.host.as_str(), "127.0.0.1");
        }
        assert_eq!(r.topics.len(), 101, "v{v}");
        let parts: usize = r.topics.iter().map(|t| t.partitions.len()).sum();
        assert_eq!(parts, 1003, "v{v}");
        assert_eq!(r.topics[100].partitions.len(), 3);
        let mut leaders = HashSet::new();
        for t in &r.topics {
            for p in &t.partitions {
                let replicas: HashSet<i32> = p.replica_nodes.iter().map(|b| b.0).collect();
                assert_eq!(replicas.len(), 3, "three distinct replicas");
                assert!(replicas.iter().all(|id| (1..=5).contains(id)));
                assert_eq!(
                    p.replica_nodes[0], p.leader_id,
                    "the leader is the first replica"
                );
                assert_eq!(p.isr_nodes, p.replica_nodes);
                leaders.insert(p.leader_id.0);
            }
        }
        assert_eq!(leaders.len(), 5, "every broker leads something");
        if v >= 10 {
            let ids: HashSet<_> = r.topics.iter().map(|t| t.topic_id).collect();
            assert_eq!(ids.len(), 101, "topic ids unique");
            assert!(!ids.contains(&uuid::Uuid::nil()));
        }
    }
}

#[tokio::test]
async fn named_topics_and_unknown_ones() {
    let c = Cluster::new(shape(3, 100), "127.0.0.1", ports(3));
    let req = metadata_request(Some(&["t000004", "no-such-topic"]));
    let frame = raw::Raw::frame(ApiKey::Metadata, 12, 7, &req);
    let answer = c
        .answer(Bytes::from(frame).slice(4..))
        .await
        .expect("answered")
        .expect("an answer");
    let r: MetadataResponse = raw::decode(ApiKey::Metadata, 12, 7, answer[4..].to_vec());
    assert_eq!(r.topics.len(), 2);
    assert_eq!(r.topics[0].name.as_ref().unwrap().0.as_str(), "t000004");
    assert_eq!(r.topics[0].partitions.len(), 10);
    assert_eq!(r.topics[0].error_code, 0);
    assert_eq!(r.topics[1].error_code, 3, "UNKNOWN_TOPIC_OR_PARTITION");
    assert_eq!(c.counter("clients", "Metadata").requests, 1);
    assert_eq!(c.metadata_all_topics("clients"), 0);
}

/// fairlead bootstraps on the fake cluster, carries a client's Metadata and Produce, and the
/// fake counts fairlead's own requests apart from the client's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fairlead_runs_on_it_and_its_own_requests_are_told_apart() {
    let (fake, addrs) = cluster::start(shape(3, 1000), "127.0.0.1", 0)
        .await
        .expect("fake cluster binds");
    let bootstrap = addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let listen = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listen.local_addr().unwrap().port();
    drop(listen);
    let mut cfg = fairlead::config::Config::with_bootstrap(&bootstrap);
    cfg.listen = SocketAddr::from(([127, 0, 0, 1], port));
    // Node ports well away from the listen port: 3 brokers at +1000..+1003.
    cfg.node_port_base = free_block(4);
    cfg.admin = "127.0.0.1:0".parse().unwrap();
    cfg.startup_timeout = Duration::from_secs(10);
    cfg.drain_timeout = Duration::from_millis(200);
    let server = fairlead::server::Server::start(cfg)
        .await
        .expect("fairlead starts in front of the fake cluster");
    assert_eq!(
        fake.metadata_all_topics("fairlead"),
        0,
        "fairlead never asks for every topic (only for those its clients use)"
    );
    assert!(
        fake.counter("fairlead", "Metadata").requests >= 1,
        "its start-up refresh"
    );

    let node_base = server.cluster.cfg.node_port_base;
    let boot = server.bootstrap_addr.to_string();
    tokio::task::spawn_blocking(move || {
        let mut client = raw::Raw::connect(&boot);
        let v: ApiVersionsResponse = client.call(
            ApiKey::ApiVersions,
            3,
            &ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str("test"))
                .with_client_software_version(StrBytes::from_static_str("1")),
        );
        assert_eq!(v.error_code, 0);
        let md: MetadataResponse =
            client.call(ApiKey::Metadata, 12, &metadata_request(Some(&["t000000"])));
        assert_eq!(md.topics.len(), 1);
        let p0 = &md.topics[0].partitions[0];
        let leader = md
            .brokers
            .iter()
            .find(|b| b.node_id == p0.leader_id)
            .expect("the leader is among the brokers");
        assert_eq!(
            leader.port,
            node_base as i32 + leader.node_id.0,
            "fairlead advertises its own port for the leader"
        );
        let mut to_leader = raw::Raw::connect(&format!("127.0.0.1:{}", leader.port));
        let r: ProduceResponse = to_leader.call(
            ApiKey::Produce,
            9,
            &raw::produce("t000000", 0, raw::batch(&["a", "b"], -1, -1, -1), 1, 5000),
        );
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    })
    .await
    .expect("the client part passes");

    assert_eq!(fake.counter("clients", "Produce").requests, 1);
    assert!(fake.counter("clients", "Metadata").requests >= 1);
    assert_eq!(fake.counter("fairlead", "Produce").requests, 0);
    let own = fake.counter("fairlead", "Metadata");
    assert!(own.requests >= 1);
    let one_answer = fake.full_metadata(12).len() as u64;
    assert!(
        own.response_bytes < one_answer,
        "fairlead's own answers ({} bytes in all) are smaller than one all-topics answer \
         ({one_answer}): they name t000000 at most",
        own.response_bytes
    );
    assert!(own.response_bytes > 0, "its answers are counted");
    let stats = fake.stats();
    assert_eq!(stats["partitions"], 1000);
    assert!(stats["by_api"]["fairlead"]["ApiVersions"]["requests"].as_u64() >= Some(1));
    server.shutdown().await;
}

/// A base port with `span` free ports after it.
fn free_block(span: u16) -> u16 {
    for base in (41_200..48_000).step_by(37) {
        if (base..=base + span).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return base;
        }
    }
    panic!("no free block of ports");
}
