//! Byte-level tests of every rewrite, merge and replay rule, with fairlead running in-process in
//! front of fake brokers (tests/support/fake.rs) and a raw client speaking the protocol with
//! kafka-protocol. Each test starts its own fairlead and fake cluster (nodes 1, 2, 3); the tests
//! run one at a time (metrics are process-global, and the timing of some tests matters).

#[path = "../support/fake.rs"]
mod fake;
#[path = "../support/fake_bed.rs"]
mod fake_bed;

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId, DescribeClusterRequest,
    DescribeClusterResponse, FetchRequest, FetchResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, ListOffsetsRequest, ListOffsetsResponse, MetadataRequest,
    MetadataResponse, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use fake::{FetchAnswer, OffsetAnswer, ProduceAnswer, Received};
use fake_bed::*;

// ---------------------------------------------------------------------------------------------
// Request builders
// ---------------------------------------------------------------------------------------------

fn topic_name(n: &str) -> TopicName {
    TopicName(StrBytes::from_string(n.to_string()))
}

/// A produce request with these acks and (topic, partition, records) in this order.
fn produce(acks: i16, parts: &[(&str, i32, Bytes)]) -> ProduceRequest {
    let mut topics: Vec<TopicProduceData> = Vec::new();
    for (t, p, records) in parts {
        let data = PartitionProduceData::default()
            .with_index(*p)
            .with_records(Some(records.clone()));
        match topics.iter_mut().find(|x| x.name.0.as_str() == *t) {
            Some(x) => x.partition_data.push(data),
            None => topics.push(
                TopicProduceData::default()
                    .with_name(topic_name(t))
                    .with_partition_data(vec![data]),
            ),
        }
    }
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(topics)
}

/// A produce request like [`produce`], naming topics by id from v13.
fn produce_with(
    version: i16,
    ids: &dyn Fn(&str) -> Uuid,
    acks: i16,
    parts: &[(&str, i32, Bytes)],
) -> ProduceRequest {
    let mut r = produce(acks, parts);
    if version >= 13 {
        for t in r.topic_data.iter_mut() {
            t.topic_id = ids(t.name.0.as_str());
            t.name = TopicName::default();
        }
    }
    r
}

/// (topic, partition, error, base offset) of a produce response, in response order.
fn produce_results(r: &ProduceResponse) -> Vec<(String, i32, i16, i64)> {
    r.responses
        .iter()
        .flat_map(|t| {
            t.partition_responses.iter().map(move |p| {
                (
                    if t.topic_id.is_nil() {
                        t.name.0.to_string()
                    } else {
                        t.topic_id.to_string()
                    },
                    p.index,
                    p.error_code,
                    p.base_offset,
                )
            })
        })
        .collect()
}

/// A fetch request with (topic, partition, current leader epoch, fetch offset) in this order;
/// by topic id from v13.
fn fetch(
    version: i16,
    ids: &dyn Fn(&str) -> Uuid,
    session: (i32, i32),
    parts: &[(&str, i32, i32, i64)],
) -> FetchRequest {
    let mut topics: Vec<(String, FetchTopic)> = Vec::new();
    for (t, p, epoch, offset) in parts {
        let part = FetchPartition::default()
            .with_partition(*p)
            .with_current_leader_epoch(*epoch)
            .with_fetch_offset(*offset)
            .with_partition_max_bytes(1 << 20);
        match topics.iter_mut().find(|(n, _)| n == t) {
            Some((_, x)) => x.partitions.push(part),
            None => {
                let ft = if version >= 13 {
                    FetchTopic::default().with_topic_id(ids(t))
                } else {
                    FetchTopic::default().with_topic(topic_name(t))
                };
                topics.push((t.to_string(), ft.with_partitions(vec![part])));
            }
        }
    }
    FetchRequest::default()
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_session_id(session.0)
        .with_session_epoch(session.1)
        .with_topics(topics.into_iter().map(|(_, t)| t).collect())
}

/// (topic name or id, partition, error, records) of a fetch response, in response order.
fn fetch_results(r: &FetchResponse) -> Vec<(String, i32, i16, Bytes)> {
    r.responses
        .iter()
        .flat_map(|t| {
            let name = if t.topic_id.is_nil() {
                t.topic.0.to_string()
            } else {
                t.topic_id.to_string()
            };
            t.partitions.iter().map(move |p| {
                (
                    name.clone(),
                    p.partition_index,
                    p.error_code,
                    p.records.clone().unwrap_or_default(),
                )
            })
        })
        .collect()
}

fn list_offsets(parts: &[(&str, i32, i32)]) -> ListOffsetsRequest {
    let topics = parts
        .iter()
        .map(|(t, p, epoch)| {
            ListOffsetsTopic::default()
                .with_name(topic_name(t))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(*p)
                    .with_current_leader_epoch(*epoch)
                    .with_timestamp(-1)])
        })
        .collect();
    ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(topics)
}

/// A non-idempotent batch (producer id -1) and an idempotent one (producer id 4711).
fn plain(values: &[&str]) -> Bytes {
    fake::batch(-1, -1, values)
}

fn idempotent(seq: i32, values: &[&str]) -> Bytes {
    fake::batch(4711, seq, values)
}

/// The standard bed, where node 1 holds its first t/0 produce for `hold_ms`, then answers it
/// NOT_LEADER_OR_FOLLOWER.
async fn bed_where_node_1_answers_t0_with_6_after(hold_ms: u64) -> Bed {
    Bed::start(|s| {
        standard(s);
        s.produce(
            1,
            "t",
            0,
            ProduceAnswer::error(6, -1).delayed(Duration::from_millis(hold_ms)),
        );
    })
    .await
}

/// Moves t/0's leadership to node 2 (epoch 6), and lets fairlead learn it from another client's
/// Metadata.
async fn move_t0_to_node_2_and_tell_fairlead(bed: &Bed) {
    bed.move_leader("t", 0, 2, 6);
    let mut other = bed.client(None).await;
    let _: MetadataResponse = other
        .call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(None),
        )
        .await;
    assert_eq!(
        bed.server.cluster.leadership.leader("t", 0).map(|l| l.node),
        Some(2)
    );
}

fn produce_v(r: &Received) -> Vec<(String, i32, Bytes)> {
    r.produce_parts()
}

// ---------------------------------------------------------------------------------------------
// Rewrites
// ---------------------------------------------------------------------------------------------

/// Metadata v1, v9, v12: every broker address is fairlead's (advertised host, node_port_base +
/// node id); everything else is the broker's answer, to the byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_brokers_point_at_fairlead_and_nothing_else_changes() {
    let bed = Bed::start(standard).await;
    let mut c = bed.client(None).await;
    for version in [1i16, 9, 12] {
        let req = MetadataRequest::default().with_topics(None);
        let corr = c.send(ApiKey::Metadata, version, &req).await;
        let frame = c.recv().await;
        let (got_corr, got): (i32, MetadataResponse) =
            decode_response(&frame, ApiKey::Metadata, version);
        assert_eq!(got_corr, corr);
        assert_eq!(got.brokers.len(), 3, "v{version}");
        for b in &got.brokers {
            assert_eq!(
                (b.host.as_str(), b.port),
                ("127.0.0.1", bed.port(b.node_id.0)),
                "v{version}: broker {}",
                b.node_id.0
            );
        }
        let sent = bed
            .fake
            .client_requests_any(ApiKey::Metadata)
            .into_iter()
            .rfind(|r| r.version == version)
            .expect("the broker saw the client's Metadata request");
        let (_, mut expected): (i32, MetadataResponse) =
            decode_response(sent.response.as_ref().unwrap(), ApiKey::Metadata, version);
        assert!(
            expected
                .brokers
                .iter()
                .all(|b| b.port != bed.port(b.node_id.0)),
            "the fake's own addresses differ from fairlead's"
        );
        for b in expected.brokers.iter_mut() {
            b.port = bed.port(b.node_id.0);
        }
        assert_eq!(got, expected, "v{version}: only broker addresses change");
        assert_eq!(
            frame,
            fake::respond(ApiKey::Metadata, version, corr, &expected),
            "v{version}: byte for byte"
        );
    }
}

/// FindCoordinator v3 (top-level node) and v4 (coordinators[]) point at fairlead; an error
/// answer (node -1) reaches the client untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_coordinator_v3_and_v4_rewritten_errors_untouched() {
    let bed = Bed::start(|s| {
        standard(s);
        s.coordinators.insert("g".into(), (2, 0));
        s.coordinators.insert("gone".into(), (-1, 15));
    })
    .await;
    let mut c = bed.client(Some(1)).await;

    let r: FindCoordinatorResponse = c
        .call(
            ApiKey::FindCoordinator,
            3,
            &FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g")),
        )
        .await;
    assert_eq!(
        (r.error_code, r.node_id.0, r.host.as_str(), r.port),
        (0, 2, "127.0.0.1", bed.port(2))
    );

    let corr = c
        .send(
            ApiKey::FindCoordinator,
            3,
            &FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("gone")),
        )
        .await;
    let frame = c.recv().await;
    let sent = bed
        .fake
        .client_requests(1, ApiKey::FindCoordinator)
        .pop()
        .unwrap();
    assert_eq!(
        frame,
        with_correlation(sent.response.as_ref().unwrap(), RESPONSE_CORR_AT, corr),
        "an error answer is the broker's, byte for byte"
    );
    let (_, r): (i32, FindCoordinatorResponse) =
        decode_response(&frame, ApiKey::FindCoordinator, 3);
    assert_eq!((r.error_code, r.node_id.0, r.port), (15, -1, -1));

    let keys = ["g", "gone", "h"].map(StrBytes::from_static_str).to_vec();
    let r: FindCoordinatorResponse = c
        .call(
            ApiKey::FindCoordinator,
            4,
            &FindCoordinatorRequest::default().with_coordinator_keys(keys),
        )
        .await;
    let got: Vec<_> = r
        .coordinators
        .iter()
        .map(|c| {
            (
                c.key.to_string(),
                c.error_code,
                c.node_id.0,
                c.host.to_string(),
                c.port,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("g".into(), 0, 2, "127.0.0.1".into(), bed.port(2)),
            ("gone".into(), 15, -1, String::new(), -1),
            ("h".into(), 0, 1, "127.0.0.1".into(), bed.port(1))
        ]
    );
}

/// DescribeCluster (v0 and v1): brokers point at fairlead, the rest is the broker's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_cluster_brokers_rewritten() {
    let bed = Bed::start(standard).await;
    let mut c = bed.client(Some(3)).await;
    for version in [0i16, 1] {
        let corr = c
            .send(
                ApiKey::DescribeCluster,
                version,
                &DescribeClusterRequest::default(),
            )
            .await;
        let frame = c.recv().await;
        let (_, got): (i32, DescribeClusterResponse) =
            decode_response(&frame, ApiKey::DescribeCluster, version);
        let sent = bed
            .fake
            .client_requests(3, ApiKey::DescribeCluster)
            .pop()
            .unwrap();
        let (_, mut expected): (i32, DescribeClusterResponse) = decode_response(
            sent.response.as_ref().unwrap(),
            ApiKey::DescribeCluster,
            version,
        );
        for b in expected.brokers.iter_mut() {
            b.port = bed.port(b.broker_id.0);
        }
        assert_eq!(got.brokers.len(), 3);
        assert_eq!(got, expected, "v{version}");
        assert_eq!(
            frame,
            fake::respond(ApiKey::DescribeCluster, version, corr, &expected)
        );
    }
}

/// ApiVersions: inspected APIs capped to what fairlead decodes, unknown keys untouched; a
/// version the broker does not know (its error answer comes in v0) passes byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_versions_capped_unknown_keys_kept_unsupported_version_passed_through() {
    let bed = Bed::start(|s| {
        standard(s);
        s.api_versions = vec![(0, 0, 99), (1, 4, 17), (3, 0, 13), (18, 0, 4), (1000, 0, 3)];
    })
    .await;
    let mut c = bed.client(None).await;
    let req = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("fake-test"))
        .with_client_software_version(StrBytes::from_static_str("1"));
    let r: ApiVersionsResponse = c.call(ApiKey::ApiVersions, 3, &req).await;
    let got: Vec<_> = r
        .api_keys
        .iter()
        .map(|k| (k.api_key, k.min_version, k.max_version))
        .collect();
    assert_eq!(
        got,
        vec![
            (0, 0, ApiKey::Produce.valid_versions().max),
            (1, 4, 17),
            (3, 0, 13),
            (18, 0, 4),
            (1000, 0, 3)
        ]
    );

    // ApiVersions v5, header v2, compact strings: unknown to the broker (and to kafka-protocol).
    let mut body = vec![0u8]; // no header tagged fields
    body.extend_from_slice(&[5, b'f', b'a', b'k', b'e', 2, b'1', 0]);
    let frame = {
        let mut f = raw_request(ApiKey::ApiVersions as i16, 5, 77, &[]).to_vec();
        f.extend_from_slice(&body);
        let len = (f.len() - 4) as i32;
        f[0..4].copy_from_slice(&len.to_be_bytes());
        Bytes::from(f)
    };
    c.send_bytes(&frame).await;
    let resp = c.recv().await;
    let sent = bed
        .fake
        .client_requests_any(ApiKey::ApiVersions)
        .into_iter()
        .rfind(|r| r.version == 5)
        .expect("the v5 request reached a broker");
    let broker_corr = sent.correlation_id;
    assert_eq!(
        sent.frame,
        with_correlation(&frame, REQUEST_CORR_AT, broker_corr),
        "request byte for byte"
    );
    assert_eq!(
        resp,
        with_correlation(sent.response.as_ref().unwrap(), RESPONSE_CORR_AT, 77),
        "response byte for byte"
    );
    let (_, r): (i32, ApiVersionsResponse) = decode_response(&resp, ApiKey::ApiVersions, 0);
    assert_eq!(r.error_code, 35);
}

/// Produce v12: a 6 that reaches the client (a write of unknown outcome the leader's log cannot
/// settle before the absorb timeout) carries KIP-951 node endpoints: they name fairlead's ports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_error_node_endpoints_rewritten_when_the_error_reaches_the_client() {
    let bed = Bed::start_with(
        |s| {
            standard(s);
            s.produce(1, "t", 0, ProduceAnswer::error(6, 7).hint(2, 6));
            s.fetch_always(2, "t", 0, FetchAnswer::records(Bytes::new(), 7));
            // Epoch 5 ended after offset 7 on the new leader: something old may be at 7.
            s.epochs_always(
                2,
                "t",
                0,
                fake::EpochAnswer {
                    error: 0,
                    leader_epoch: 5,
                    end_offset: 8,
                },
            );
        },
        |c| c.absorb_timeout = Duration::from_secs(1),
    )
    .await;
    bed.move_leader("t", 0, 2, 6);
    let mut c = bed.client(Some(1)).await;
    let started = Instant::now();
    let r: ProduceResponse = c
        .call(
            ApiKey::Produce,
            12,
            &produce(-1, &[("t", 0, plain(&["a"]))]),
        )
        .await;
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "the error waited for the absorb timeout"
    );
    assert_eq!(produce_results(&r), vec![("t".into(), 0, 6, 7)]);
    let p = &r.responses[0].partition_responses[0];
    assert_eq!(
        (p.current_leader.leader_id.0, p.current_leader.leader_epoch),
        (2, 6)
    );
    let endpoints: Vec<_> = r
        .node_endpoints
        .iter()
        .map(|e| (e.node_id.0, e.host.to_string(), e.port))
        .collect();
    assert_eq!(endpoints, vec![(2, "127.0.0.1".into(), bed.port(2))]);
    assert!(
        bed.fake.client_requests(2, ApiKey::Produce).is_empty(),
        "nothing was replayed"
    );
}

/// A broker port held by another process when fairlead starts (node 2's): fairlead serves the
/// other brokers, says why it is not ready, counts the failed tries, and never gives a client
/// that port. Broker lists leave node 2 out; a bound replica stands in where it leads (u-0:
/// node 1), a bound broker where it coordinates ("g": node 3). A produce for u-0 sent to the
/// stand-in reaches node 2 all the same. Once the port is freed it is bound within the back-off
/// and named again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_port_held_elsewhere_is_never_given_to_clients_and_is_bound_once_freed() {
    let mut holder = None;
    let bed = Bed::start_with(
        |s| {
            standard(s);
            s.coordinators.insert("g".into(), (2, 0));
        },
        |c| {
            let port = c.node_port_base + 2;
            holder = Some(std::net::TcpListener::bind(("127.0.0.1", port)).unwrap());
        },
    )
    .await;
    let held = bed.port(2);

    let mut c = bed.client(None).await;
    let r: MetadataResponse = c
        .call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(None),
        )
        .await;
    let brokers: Vec<(i32, String, i32)> = r
        .brokers
        .iter()
        .map(|b| (b.node_id.0, b.host.to_string(), b.port))
        .collect();
    assert_eq!(
        brokers,
        vec![
            (1, "127.0.0.1".into(), bed.port(1)),
            (3, "127.0.0.1".into(), bed.port(3))
        ]
    );
    let leaders: Vec<(String, i32, i32, i32)> = r
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                (
                    t.name.as_ref().unwrap().0.to_string(),
                    p.partition_index,
                    p.leader_id.0,
                    p.leader_epoch,
                )
            })
        })
        .collect();
    assert_eq!(
        leaders,
        vec![
            ("t".into(), 0, 1, 5),
            ("t".into(), 1, 1, 5),
            ("u".into(), 0, 1, 3)
        ],
        "u-0 (led by 2, replicas 2, 1, 3): replica 1 stands in, same epoch"
    );

    let v3: FindCoordinatorResponse = c
        .call(
            ApiKey::FindCoordinator,
            3,
            &FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g")),
        )
        .await;
    assert_eq!(
        (v3.error_code, v3.node_id.0, v3.port),
        (0, 3, bed.port(3)),
        "the next bound broker stands in for coordinator 2"
    );
    let v4: FindCoordinatorResponse = c
        .call(
            ApiKey::FindCoordinator,
            4,
            &FindCoordinatorRequest::default()
                .with_coordinator_keys(["g", "h"].map(StrBytes::from_static_str).to_vec()),
        )
        .await;
    let got: Vec<_> = v4
        .coordinators
        .iter()
        .map(|c| (c.key.to_string(), c.node_id.0, c.port))
        .collect();
    assert_eq!(
        got,
        vec![("g".into(), 3, bed.port(3)), ("h".into(), 1, bed.port(1))]
    );
    let dc: DescribeClusterResponse = c
        .call(
            ApiKey::DescribeCluster,
            1,
            &DescribeClusterRequest::default(),
        )
        .await;
    let ids: Vec<_> = dc.brokers.iter().map(|b| (b.broker_id.0, b.port)).collect();
    assert_eq!(ids, vec![(1, bed.port(1)), (3, bed.port(3))]);

    // A client follows the stand-in: u-0's produce goes to node 1's port, and on to node 2.
    let mut at_stand_in = bed.client(Some(1)).await;
    let r: ProduceResponse = at_stand_in
        .call(ApiKey::Produce, 9, &produce(-1, &[("u", 0, plain(&["a"]))]))
        .await;
    assert_eq!(produce_results(&r)[0].2, 0, "{r:?}");
    assert_eq!(bed.fake.client_requests(2, ApiKey::Produce).len(), 1);
    assert!(bed.fake.client_requests(1, ApiKey::Produce).is_empty());

    let (code, body) = bed.admin_get("/readyz").await;
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains(&format!("node 2 127.0.0.1:{held} (")),
        "/readyz names the port: {body}"
    );
    assert_eq!(bed.metric("fairlead_broker_ports_unbound", &[]).await, 1.0);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let failures = bed
        .metric("fairlead_broker_port_bind_failures_total", &[])
        .await;
    assert!(
        failures >= 4.0,
        "tried at 0, 0.1, 0.3, 0.7 s: {failures} failures counted"
    );

    // Freed: bound within the back-off (at most 5 s), then named again.
    drop(holder);
    let freed = Instant::now();
    loop {
        let (code, body) = bed.admin_get("/readyz").await;
        if code == 200 {
            break;
        }
        assert!(
            freed.elapsed() < Duration::from_secs(6),
            "still not ready {:?} after the port was freed: {body}",
            freed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("port bound {:?} after it was freed", freed.elapsed());
    assert_eq!(bed.metric("fairlead_broker_ports_unbound", &[]).await, 0.0);
    let r: MetadataResponse = c
        .call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(None),
        )
        .await;
    let brokers: Vec<_> = r.brokers.iter().map(|b| (b.node_id.0, b.port)).collect();
    assert_eq!(brokers, vec![(1, bed.port(1)), (2, held), (3, bed.port(3))]);
    assert_eq!(
        r.topics[1].partitions[0].leader_id.0, 2,
        "u-0: its own leader again"
    );
    let v3: FindCoordinatorResponse = c
        .call(
            ApiKey::FindCoordinator,
            3,
            &FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g")),
        )
        .await;
    assert_eq!((v3.node_id.0, v3.port), (2, held));
    let mut at_2 = bed.client(Some(2)).await;
    let r: MetadataResponse = at_2
        .call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(None),
        )
        .await;
    assert_eq!(r.brokers.len(), 3, "node 2's port serves clients");
}

/// Produce v12: a 6 that reaches the client names its new leader, node 2, in a KIP-951 hint.
/// While node 2's port is held elsewhere its node endpoint is left out (a client given a hint
/// without an endpoint asks for metadata, where a bound broker stands in).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_endpoints_leave_out_a_broker_whose_port_is_not_bound() {
    let mut holder = None;
    let bed = Bed::start_with(
        |s| {
            standard(s);
            s.produce(1, "t", 0, ProduceAnswer::error(6, 7).hint(2, 6));
            s.fetch_always(2, "t", 0, FetchAnswer::records(Bytes::new(), 7));
            s.epochs_always(
                2,
                "t",
                0,
                fake::EpochAnswer {
                    error: 0,
                    leader_epoch: 5,
                    end_offset: 8,
                },
            );
        },
        |c| {
            c.absorb_timeout = Duration::from_secs(1);
            let port = c.node_port_base + 2;
            holder = Some(std::net::TcpListener::bind(("127.0.0.1", port)).unwrap());
        },
    )
    .await;
    bed.move_leader("t", 0, 2, 6);
    let mut c = bed.client(Some(1)).await;
    let r: ProduceResponse = c
        .call(
            ApiKey::Produce,
            12,
            &produce(-1, &[("t", 0, plain(&["a"]))]),
        )
        .await;
    assert_eq!(produce_results(&r), vec![("t".into(), 0, 6, 7)]);
    assert!(
        r.node_endpoints.is_empty(),
        "node 2's port is not bound: {:?}",
        r.node_endpoints
    );
    drop(holder);
}

/// An answer that names brokers but cannot be decoded cannot be rewritten: fairlead closes that
/// client's connection (the broker's own addresses must not leak), counts it as such and not as
/// a frame passed blind, and every other connection goes on.
#[tokio::test]
async fn an_answer_naming_brokers_that_cannot_be_decoded_closes_only_its_connection() {
    let bed = Bed::start(|s| {
        standard(s);
        // DescribeCluster v0: the flexible header's empty tag buffer, then a body cut short.
        s.raw(
            Some(1),
            ApiKey::DescribeCluster as i16,
            0,
            Bytes::from_static(b"\x00\x00\x00"),
        );
    })
    .await;
    let closed = || {
        bed.metric(
            "fairlead_client_connections_closed_total",
            &[("reason", "unrewritable_answer")],
        )
    };
    let blind = || {
        bed.metric(
            "fairlead_frames_passed_blind_total",
            &[("api", "DescribeCluster")],
        )
    };
    let (closed_before, blind_before) = (closed().await, blind().await);
    let mut other = bed.client(Some(1)).await;
    let mut c = bed.client(Some(1)).await;
    c.send(
        ApiKey::DescribeCluster,
        0,
        &DescribeClusterRequest::default(),
    )
    .await;
    assert!(
        c.closed_within(Duration::from_secs(5)).await,
        "its connection is closed"
    );
    assert_eq!(closed().await - closed_before, 1.0);
    assert_eq!(blind().await - blind_before, 0.0, "nothing passed blind");
    let r: DescribeClusterResponse = other
        .call(
            ApiKey::DescribeCluster,
            0,
            &DescribeClusterRequest::default(),
        )
        .await;
    assert_eq!(r.error_code, 0, "the other connection is answered");
}

/// An API key fairlead does not know, and Produce v2 (below what kafka-protocol decodes): the
/// request reaches the broker and the response the client byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_api_and_old_produce_pass_through_byte_identical() {
    let bed = Bed::start(|s| {
        standard(s);
        s.raw(
            Some(1),
            0x7f00,
            1,
            Bytes::from_static(b"\x00\x01whatever the broker says"),
        );
        // Produce v2 response: [topic t: [partition 0, error 0, base offset 42, append time -1]],
        // throttle 0.
        let mut b = BytesMut::new();
        b.put_i32(1);
        b.put_i16(1);
        b.put_slice(b"t");
        b.put_i32(1);
        b.put_i32(0);
        b.put_i16(0);
        b.put_i64(42);
        b.put_i64(-1);
        b.put_i32(0);
        s.raw(Some(1), 0, 2, b.freeze());
    })
    .await;
    let mut c = bed.client(Some(1)).await;

    let frame = raw_request(0x7f00, 1, 5, b"\x00\x00\x00\x03opaque-body");
    c.send_bytes(&frame).await;
    let resp = c.recv().await;
    let sent = bed.fake.client_requests(1, ApiKey::Produce).len();
    assert_eq!(sent, 0);
    let got = bed
        .fake
        .received()
        .into_iter()
        .rfind(|r| r.api_key == 0x7f00)
        .expect("the unknown API reached node 1");
    assert_eq!(got.node, 1);
    assert_eq!(
        got.frame,
        with_correlation(&frame, REQUEST_CORR_AT, got.correlation_id),
        "request byte for byte"
    );
    assert_eq!(
        resp,
        with_correlation(got.response.as_ref().unwrap(), RESPONSE_CORR_AT, 5),
        "response byte for byte"
    );

    // Produce v2: acks=1, timeout, [t: [0: message set v1 bytes]].
    let mut body = BytesMut::new();
    body.put_i16(1);
    body.put_i32(1000);
    body.put_i32(1);
    body.put_i16(1);
    body.put_slice(b"t");
    body.put_i32(1);
    body.put_i32(0);
    let legacy = b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x12legacy-message-v1!";
    body.put_i32(legacy.len() as i32);
    body.put_slice(legacy);
    let frame = raw_request(0, 2, 6, &body);
    c.send_bytes(&frame).await;
    let resp = c.recv().await;
    let got = bed
        .fake
        .client_requests(1, ApiKey::Produce)
        .pop()
        .expect("the v2 produce reached node 1");
    assert_eq!(got.version, 2);
    assert_eq!(
        got.frame,
        with_correlation(&frame, REQUEST_CORR_AT, got.correlation_id),
        "request byte for byte"
    );
    assert_eq!(
        resp,
        with_correlation(got.response.as_ref().unwrap(), RESPONSE_CORR_AT, 6),
        "response byte for byte"
    );
}

// ---------------------------------------------------------------------------------------------
// Merge and routing
// ---------------------------------------------------------------------------------------------

/// Proactive routing: a produce sent to node 1 for partitions led by nodes 1 and 2 is split; each
/// broker gets only its partitions; the client gets one response, partitions in request order.
/// Produce v9 (topic names) and v13 (topic ids).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_split_by_leader_and_merged_in_request_order() {
    let bed = Bed::start(|s| {
        s.topic("t", &[(2, 5), (1, 5)]);
        s.topic("u", &[(1, 3)]);
        for _ in 0..2 {
            s.produce(1, "t", 1, ProduceAnswer::ok(11));
            s.produce(1, "u", 0, ProduceAnswer::ok(33));
            s.produce(2, "t", 0, ProduceAnswer::ok(22));
        }
    })
    .await;
    let ids = bed.topic_ids();
    let (b_t1, b_t0, b_u0) = (plain(&["t1"]), plain(&["t0"]), plain(&["u0"]));
    let mut c = bed.client(Some(1)).await;
    for version in [9i16, 13] {
        let name = |n: &str| {
            if version >= 13 {
                ids(n).to_string()
            } else {
                n.to_string()
            }
        };
        let parts = [
            ("t", 1, b_t1.clone()),
            ("t", 0, b_t0.clone()),
            ("u", 0, b_u0.clone()),
        ];
        let r: ProduceResponse = c
            .call(
                ApiKey::Produce,
                version,
                &produce_with(version, &ids, -1, &parts),
            )
            .await;
        assert_eq!(
            produce_results(&r),
            vec![
                (name("t"), 1, 0, 11),
                (name("t"), 0, 0, 22),
                (name("u"), 0, 0, 33)
            ],
            "v{version}"
        );

        let n1 = bed.fake.client_requests(1, ApiKey::Produce).pop().unwrap();
        let n2 = bed.fake.client_requests(2, ApiKey::Produce).pop().unwrap();
        assert_eq!(
            produce_v(&n1),
            vec![(name("t"), 1, b_t1.clone()), (name("u"), 0, b_u0.clone())],
            "v{version}"
        );
        assert_eq!(
            produce_v(&n2),
            vec![(name("t"), 0, b_t0.clone())],
            "v{version}"
        );
        assert_eq!(
            (n2.produce().acks, n2.version, n2.client_id.as_deref()),
            (-1, version, Some(CLIENT_ID)),
            "the part keeps the client's envelope and header"
        );
    }
    assert_eq!(bed.fake.client_requests(1, ApiKey::Produce).len(), 2);
    assert_eq!(bed.fake.client_requests(2, ApiKey::Produce).len(), 2);
}

/// Fetch v12 and v13 (topic ids): split by leader, merged with exactly the partitions asked
/// for, in order, records unchanged, throttle = max. A client fetch that would open a session
/// (0, 0) goes upstream sessionless (0, -1), and the client is told session 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_split_and_merged_sessionless_upstream() {
    let (r0, r1, ru) = (
        fake::stored_at(&plain(&["zero"]), 10, 5),
        fake::stored_at(&plain(&["one"]), 20, 5),
        fake::stored_at(&plain(&["u"]), 30, 3),
    );
    let bed = Bed::start(|s| {
        s.topic("t", &[(1, 5), (2, 5)]);
        s.topic("u", &[(2, 3)]);
        for _ in 0..2 {
            s.fetch(
                1,
                "t",
                0,
                FetchAnswer::records(r0.clone(), 11).throttled(10),
            );
            s.fetch(
                2,
                "t",
                1,
                FetchAnswer::records(r1.clone(), 21).throttled(30),
            );
            s.fetch(2, "u", 0, FetchAnswer::records(ru.clone(), 31));
        }
    })
    .await;
    let ids = bed.topic_ids();
    let mut c = bed.client(Some(1)).await;
    for version in [12i16, 13] {
        let req = fetch(
            version,
            &ids,
            (0, 0),
            &[("t", 1, 5, 20), ("t", 0, 5, 10), ("u", 0, 3, 30)],
        );
        let r: FetchResponse = c.call(ApiKey::Fetch, version, &req).await;
        let name = |n: &str| {
            if version >= 13 {
                ids(n).to_string()
            } else {
                n.to_string()
            }
        };
        assert_eq!(
            fetch_results(&r),
            vec![
                (name("t"), 1, 0, r1.clone()),
                (name("t"), 0, 0, r0.clone()),
                (name("u"), 0, 0, ru.clone())
            ],
            "v{version}"
        );
        assert_eq!(
            (r.session_id, r.error_code, r.throttle_time_ms),
            (0, 0, 30),
            "v{version}"
        );

        let n1 = bed.fake.client_requests(1, ApiKey::Fetch).pop().unwrap();
        let n2 = bed.fake.client_requests(2, ApiKey::Fetch).pop().unwrap();
        for n in [&n1, &n2] {
            assert_eq!(n.version, version);
            assert_eq!(
                (n.fetch().session_id, n.fetch().session_epoch),
                (0, -1),
                "v{version}: sessionless upstream"
            );
        }
        assert_eq!(n1.fetch_parts(), vec![(name("t"), 0, 5, 10)]);
        assert_eq!(
            n2.fetch_parts(),
            vec![(name("t"), 1, 5, 20), (name("u"), 0, 3, 30)]
        );
    }
}

/// A fetch carrying an older current_leader_epoch than fairlead knows goes out with the known
/// one (or the broker would fence it with 74); an unset epoch (-1) stays unset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_carries_the_known_leader_epoch() {
    let bed = Bed::start(standard).await;
    let mut c = bed.client(Some(1)).await;
    let req = fetch(
        12,
        &|_| Uuid::nil(),
        (0, -1),
        &[("t", 0, 3, 0), ("t", 1, -1, 0)],
    );
    let r: FetchResponse = c.call(ApiKey::Fetch, 12, &req).await;
    assert_eq!(r.responses[0].partitions.len(), 2);
    let got = bed.fake.client_requests(1, ApiKey::Fetch).pop().unwrap();
    assert_eq!(
        got.fetch_parts(),
        vec![("t".into(), 0, 5, 0), ("t".into(), 1, -1, 0)]
    );
}

/// Pipelining: three requests sent back to back, the first answered 300 ms late by its broker
/// (which answers the others at once): the client gets the three answers in request order,
/// each with its correlation id, and all three reached the broker before the first was answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_leave_in_request_order_under_pipelining() {
    let bed = Bed::start(|s| {
        standard(s);
        s.ordered = false;
        s.produce(
            1,
            "t",
            0,
            ProduceAnswer::ok(5).delayed(Duration::from_millis(300)),
        );
    })
    .await;
    let mut c = bed.client(Some(1)).await;
    let started = Instant::now();
    let c1 = c
        .send(
            ApiKey::Produce,
            9,
            &produce(-1, &[("t", 0, plain(&["slow"]))]),
        )
        .await;
    let c2 = c
        .send(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(None),
        )
        .await;
    let c3 = c
        .send(ApiKey::ListOffsets, 7, &list_offsets(&[("t", 1, 5)]))
        .await;
    let f1 = c.recv().await;
    assert!(started.elapsed() >= Duration::from_millis(290));
    let f2 = c.recv().await;
    let f3 = c.recv().await;
    let (g1, r1): (i32, ProduceResponse) = decode_response(&f1, ApiKey::Produce, 9);
    let (g2, _): (i32, MetadataResponse) = decode_response(&f2, ApiKey::Metadata, 12);
    let (g3, r3): (i32, ListOffsetsResponse) = decode_response(&f3, ApiKey::ListOffsets, 7);
    assert_eq!((g1, g2, g3), (c1, c2, c3));
    assert_eq!(produce_results(&r1), vec![("t".into(), 0, 0, 5)]);
    assert_eq!(r3.topics[0].partitions[0].partition_index, 1);

    let rec: Vec<Received> = bed
        .fake
        .received()
        .into_iter()
        // From `started` on: the bed's own Metadata ask (see `Bed::start_with`) may have gone
        // to node 1 too.
        .filter(|r| r.is_from_client() && r.node == 1 && r.at >= started)
        .collect();
    assert_eq!(
        rec.iter().map(|r| r.api_key).collect::<Vec<_>>(),
        vec![0, 3, 2],
        "sent upstream in request order"
    );
    assert!(
        rec[2].at < rec[0].at + Duration::from_millis(250),
        "pipelined: the later requests did not wait for the first answer"
    );
}

/// acks=0: the produce is forwarded (to its leader, also when that is not the client's broker),
/// the client gets no response, and the next request's response carries its own correlation id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_zero_produce_gets_no_response() {
    let bed = Bed::start(standard).await;
    let mut c = bed.client(Some(1)).await;
    let (b, bu) = (plain(&["fire", "forget"]), plain(&["to", "node 2"]));
    c.send(ApiKey::Produce, 9, &produce(0, &[("t", 0, b.clone())]))
        .await;
    c.send(ApiKey::Produce, 9, &produce(0, &[("u", 0, bu.clone())]))
        .await;
    let r: MetadataResponse = c
        .call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(None),
        )
        .await;
    assert_eq!(r.topics.len(), 2);
    assert!(
        c.recv_within(Duration::from_millis(200)).await.is_none(),
        "nothing else comes"
    );
    let got = bed.fake.client_requests(1, ApiKey::Produce);
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].produce().acks, produce_v(&got[0])),
        (0, vec![("t".into(), 0, b)])
    );
    let got = bed.fake.client_requests(2, ApiKey::Produce);
    assert_eq!(got.len(), 1, "u-0 went straight to its leader");
    assert_eq!(
        (got[0].produce().acks, produce_v(&got[0])),
        (0, vec![("u".into(), 0, bu)])
    );
}

/// A KIP-951 CurrentLeader hint with the 6 is a free leadership update: the produce is replayed
/// to the hinted leader without a Metadata round trip, and later requests go there directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_leader_hint_reroutes_without_a_metadata_refresh() {
    let bed = Bed::start(|s| {
        standard(s);
        s.produce(1, "t", 0, ProduceAnswer::error(6, -1).hint(2, 6));
        s.produce(2, "t", 0, ProduceAnswer::ok(70));
        s.produce(2, "t", 0, ProduceAnswer::ok(71));
    })
    .await;
    let refreshes = bed
        .fake
        .received()
        .iter()
        .filter(|r| !r.is_from_client() && r.api_key == ApiKey::Metadata as i16)
        .count();
    let mut c = bed.client(Some(1)).await;
    let r: ProduceResponse = c
        .call(
            ApiKey::Produce,
            12,
            &produce(-1, &[("t", 0, idempotent(0, &["a"]))]),
        )
        .await;
    assert_eq!(produce_results(&r), vec![("t".into(), 0, 0, 70)]);
    let r: ProduceResponse = c
        .call(
            ApiKey::Produce,
            12,
            &produce(-1, &[("t", 0, idempotent(1, &["b"]))]),
        )
        .await;
    assert_eq!(produce_results(&r), vec![("t".into(), 0, 0, 71)]);
    assert!(r
        .node_endpoints
        .iter()
        .all(|e| e.port == bed.port(e.node_id.0)));
    assert_eq!(
        bed.fake.client_requests(1, ApiKey::Produce).len(),
        1,
        "the second produce went to node 2 directly"
    );
    assert_eq!(bed.fake.client_requests(2, ApiKey::Produce).len(), 2);
    let after = bed
        .fake
        .received()
        .iter()
        .filter(|r| !r.is_from_client() && r.api_key == ApiKey::Metadata as i16)
        .count();
    assert_eq!(after, refreshes, "no Metadata request was needed");
}

/// A broker answers the requests of one connection one at a time. Requests rerouted to a broker
/// go on their client connection's own connection to it: a produce another client is waiting on
/// (acks=all in purgatory) holds up neither this client's rerouted requests nor fairlead's own
/// Metadata requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_rerouted_request_holds_up_no_other_client_and_no_refresh() {
    const HOLD: Duration = Duration::from_millis(1500);
    let bed = Bed::start(|s| {
        // Both partitions are led by node 2; the clients below use node 1's port.
        s.topic("t", &[(2, 5), (2, 5)]);
        s.produce(2, "t", 0, ProduceAnswer::ok(10).delayed(HOLD));
        s.produce(2, "t", 1, ProduceAnswer::ok(20));
    })
    .await;
    let mut a = bed.client(Some(1)).await;
    let mut b = bed.client(Some(1)).await;
    let held = a
        .send(
            ApiKey::Produce,
            9,
            &produce(-1, &[("t", 0, idempotent(0, &["slow"]))]),
        )
        .await;
    bed.fake
        .wait_for("a's produce at node 2", Duration::from_secs(5), |r| {
            r.iter().any(|r| r.node == 2 && r.api_key == 0)
        })
        .await;

    let asked = Instant::now();
    let r: ProduceResponse = b
        .call(
            ApiKey::Produce,
            9,
            &produce(-1, &[("t", 1, idempotent(0, &["quick"]))]),
        )
        .await;
    let took = asked.elapsed();
    assert_eq!(produce_results(&r), vec![("t".into(), 1, 0, 20)]);
    assert!(
        took < HOLD / 2,
        "b's produce took {took:?}: it waited behind a's ({HOLD:?} at the broker)"
    );

    // A refresh while a's produce is still held: answered at once whichever broker it asks.
    let asked = Instant::now();
    let cluster = &bed.server.cluster;
    cluster
        .refresh(
            cluster.leadership.generation(),
            fairlead::testing::Trigger::Periodic,
        )
        .await
        .expect("a Metadata refresh");
    let took = asked.elapsed();
    assert!(
        took < HOLD / 2,
        "a Metadata refresh took {took:?} while a client's produce was held"
    );

    let (corr, r): (i32, ProduceResponse) = decode_response(&a.recv().await, ApiKey::Produce, 9);
    assert_eq!(corr, held);
    assert_eq!(produce_results(&r), vec![("t".into(), 0, 0, 10)]);

    let at2 = bed.fake.client_requests(2, ApiKey::Produce);
    assert_eq!(at2.len(), 2);
    assert_ne!(
        at2[0].conn, at2[1].conn,
        "two client connections' reroutes shared a broker connection"
    );
    let own: Vec<u64> = bed
        .fake
        .received()
        .iter()
        .filter(|r| !r.is_from_client())
        .map(|r| r.conn)
        .collect();
    assert!(!own.is_empty());
    assert!(
        bed.fake
            .received()
            .iter()
            .filter(|r| r.is_from_client())
            .all(|r| !own.contains(&r.conn)),
        "a client's request went on one of fairlead's own connections"
    );
}

/// Fetch v17: 74 with a KIP-951 hint and node endpoints: fetched from the hinted leader with its
/// epoch, without a Metadata round trip; every node endpoint the client sees is fairlead's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_v17_leader_hint_reroutes_and_node_endpoints_point_at_fairlead() {
    let data = fake::stored_at(&plain(&["hinted"]), 3, 6);
    let bed = Bed::start(|s| {
        standard(s);
        s.fetch(1, "t", 0, FetchAnswer::error(74).hint(2, 6));
        s.fetch(1, "t", 1, FetchAnswer::records(Bytes::new(), 0).hint(3, 5));
        s.fetch(2, "t", 0, FetchAnswer::records(data.clone(), 4));
    })
    .await;
    let ids = bed.topic_ids();
    let refreshes = bed
        .fake
        .received()
        .iter()
        .filter(|r| !r.is_from_client() && r.api_key == ApiKey::Metadata as i16)
        .count();
    let mut c = bed.client(Some(1)).await;
    let r: FetchResponse = c
        .call(
            ApiKey::Fetch,
            17,
            &fetch(17, &ids, (0, -1), &[("t", 0, 5, 3), ("t", 1, 5, 0)]),
        )
        .await;
    let t = ids("t").to_string();
    assert_eq!(
        fetch_results(&r),
        vec![(t.clone(), 0, 0, data), (t.clone(), 1, 0, Bytes::new())]
    );
    assert!(
        !r.node_endpoints.is_empty(),
        "the brokers' node endpoints are kept"
    );
    for e in &r.node_endpoints {
        assert_eq!(
            (e.host.as_str(), e.port),
            ("127.0.0.1", bed.port(e.node_id.0)),
            "node endpoint of {}",
            e.node_id.0
        );
    }
    assert_eq!(
        bed.fake.client_requests(2, ApiKey::Fetch)[0].fetch_parts(),
        vec![(t, 0, 6, 3)]
    );
    let after = bed
        .fake
        .received()
        .iter()
        .filter(|r| !r.is_from_client() && r.api_key == ApiKey::Metadata as i16)
        .count();
    assert_eq!(after, refreshes, "no Metadata request was needed");
}

// ---------------------------------------------------------------------------------------------
// Replay rules
// ---------------------------------------------------------------------------------------------

/// Idempotent produce answered 6 (with base offset -1 or >= 0): replayed to the new leader with
/// the client's batch bytes; the client sees success and the new leader's offsets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_produce_answered_6_is_replayed_to_the_new_leader() {
    let bed = Bed::start(|s| {
        standard(s);
        s.produce(1, "t", 0, ProduceAnswer::error(6, -1));
        s.produce(1, "t", 1, ProduceAnswer::error(6, 5));
        s.produce(2, "t", 0, ProduceAnswer::ok(100));
        s.produce(2, "t", 1, ProduceAnswer::ok(200));
    })
    .await;
    bed.move_leader("t", 0, 2, 6);
    bed.move_leader("t", 1, 2, 6);
    let (b0, b1) = (idempotent(0, &["a", "b"]), idempotent(0, &["c"]));
    let mut c = bed.client(Some(1)).await;
    let r: ProduceResponse = c
        .call(
            ApiKey::Produce,
            9,
            &produce(-1, &[("t", 0, b0.clone()), ("t", 1, b1.clone())]),
        )
        .await;
    assert_eq!(
        produce_results(&r),
        vec![("t".into(), 0, 0, 100), ("t".into(), 1, 0, 200)]
    );

    let n1 = bed.fake.client_requests(1, ApiKey::Produce);
    let n2 = bed.fake.client_requests(2, ApiKey::Produce);
    assert_eq!(n1.len(), 1, "node 1 got the client's request once");
    assert_eq!(n2.len(), 1, "one replay to node 2");
    assert_eq!(
        produce_v(&n2[0]),
        vec![("t".into(), 0, b0), ("t".into(), 1, b1)],
        "batches byte for byte"
    );
    // The replay reuses the client's header: same client id, same API version.
    let header_len = 2 + 2 + 4 + 2 + CLIENT_ID.len();
    assert_eq!(
        &n2[0].frame[12..4 + header_len],
        &n1[0].frame[12..4 + header_len]
    );
}

/// Non-idempotent produce answered 6 with base offset -1 (refused before the append): replayed.
/// The other partition of the request, answered fine by node 1, keeps its answer and its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_idempotent_produce_refused_before_the_append_is_replayed() {
    let bed = Bed::start(|s| {
        standard(s);
        s.produce(1, "t", 1, ProduceAnswer::ok(12));
        s.produce(1, "t", 0, ProduceAnswer::error(6, -1));
        s.produce(2, "t", 0, ProduceAnswer::ok(3));
    })
    .await;
    bed.move_leader("t", 0, 2, 6);
    let (b0, b1) = (plain(&["x"]), plain(&["y"]));
    let mut c = bed.client(Some(1)).await;
    let r: ProduceResponse = c
        .call(
            ApiKey::Produce,
            9,
            &produce(1, &[("t", 1, b1.clone()), ("t", 0, b0.clone())]),
        )
        .await;
    assert_eq!(
        produce_results(&r),
        vec![("t".into(), 1, 0, 12), ("t".into(), 0, 0, 3)]
    );
    let n1 = bed.fake.client_requests(1, ApiKey::Produce);
    let n2 = bed.fake.client_requests(2, ApiKey::Produce);
    assert_eq!(n1.len(), 1, "t-1 was not sent twice");
    assert_eq!(n2.len(), 1);
    assert_eq!(
        produce_v(&n2[0]),
        vec![("t".into(), 0, b0)],
        "only the refused partition is replayed"
    );
}

/// OffsetsForLeaderEpoch answered 74 and DeleteRecords answered 6 by the old leader: sent to the
/// new one (the epoch request with the new leader's epoch), the client sees the answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_for_leader_epoch_and_delete_records_are_rerouted() {
    use kafka_protocol::messages::delete_records_request::{
        DeleteRecordsPartition, DeleteRecordsTopic,
    };
    use kafka_protocol::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderPartition, OffsetForLeaderTopic,
    };
    use kafka_protocol::messages::{
        DeleteRecordsRequest, DeleteRecordsResponse, OffsetForLeaderEpochRequest,
        OffsetForLeaderEpochResponse,
    };
    let bed = Bed::start(|s| {
        standard(s);
        s.epochs(
            1,
            "t",
            0,
            fake::EpochAnswer {
                error: 74,
                leader_epoch: -1,
                end_offset: -1,
            },
        );
        s.epochs(
            2,
            "t",
            0,
            fake::EpochAnswer {
                error: 0,
                leader_epoch: 4,
                end_offset: 55,
            },
        );
        s.delete_records(1, "t", 1, 6);
    })
    .await;
    bed.move_leader("t", 0, 2, 6);
    bed.move_leader("t", 1, 3, 6);
    let mut c = bed.client(Some(1)).await;

    let req = OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![OffsetForLeaderTopic::default()
            .with_topic(topic_name("t"))
            .with_partitions(vec![OffsetForLeaderPartition::default()
                .with_partition(0)
                .with_current_leader_epoch(5)
                .with_leader_epoch(4)])]);
    let r: OffsetForLeaderEpochResponse = c.call(ApiKey::OffsetForLeaderEpoch, 4, &req).await;
    let p = &r.topics[0].partitions[0];
    assert_eq!(
        (p.partition, p.error_code, p.leader_epoch, p.end_offset),
        (0, 0, 4, 55)
    );
    let n2 = bed.fake.client_requests(2, ApiKey::OffsetForLeaderEpoch);
    assert_eq!(n2.len(), 1);
    assert_eq!(
        n2[0].epochs().topics[0].partitions[0].current_leader_epoch,
        6,
        "the new leader's epoch"
    );

    let req = DeleteRecordsRequest::default()
        .with_timeout_ms(1000)
        .with_topics(vec![DeleteRecordsTopic::default()
            .with_name(topic_name("t"))
            .with_partitions(vec![DeleteRecordsPartition::default()
                .with_partition_index(1)
                .with_offset(9)])]);
    let r: DeleteRecordsResponse = c.call(ApiKey::DeleteRecords, 2, &req).await;
    let p = &r.topics[0].partitions[0];
    assert_eq!(
        (p.partition_index, p.error_code, p.low_watermark),
        (1, 0, 9)
    );
    let n3 = bed.fake.client_requests(3, ApiKey::DeleteRecords);
    assert_eq!(n3.len(), 1);
    assert_eq!(n3[0].delete_records().topics[0].partitions[0].offset, 9);
}

/// Moves t-0 to node 2 (epoch 6) and sends a non-idempotent produce for it to node 1, which the
/// test scripted to answer 6 with base offset 7 (node 2's log is scripted by the test too).
/// Returns the client's response, the batch, and how long the answer took.
async fn unknown_outcome(bed: &Bed) -> (ProduceResponse, Bytes, Duration) {
    bed.move_leader("t", 0, 2, 6);
    let b = plain(&["maybe", "written"]);
    let mut c = bed.client(Some(1)).await;
    let started = Instant::now();
    let r: ProduceResponse = c
        .call(ApiKey::Produce, 9, &produce(-1, &[("t", 0, b.clone())]))
        .await;
    (r, b, started.elapsed())
}

/// 6 with base offset 7 on a non-idempotent batch, and the new leader's log holds this very
/// batch at 7: the client gets the success it would have got; nothing is written again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_outcome_found_in_the_log_is_a_success_without_replay() {
    let b = plain(&["maybe", "written"]);
    let stored = fake::stored_at(&b, 7, 5);
    let bed = Bed::start(|s| {
        standard(s);
        s.produce(1, "t", 0, ProduceAnswer::error(6, 7));
        s.fetch_always(2, "t", 0, FetchAnswer::records(stored, 9));
    })
    .await;
    let (r, _, _) = unknown_outcome(&bed).await;
    assert_eq!(produce_results(&r), vec![("t".into(), 0, 0, 7)]);
    assert!(
        bed.fake.client_requests(2, ApiKey::Produce).is_empty(),
        "the batch was not sent again"
    );
    let checks = bed.fake.own_requests(2, ApiKey::Fetch);
    assert!(!checks.is_empty(), "fairlead read node 2's log");
    assert_eq!(
        checks[0].fetch_parts(),
        vec![("t".into(), 0, 6, 7)],
        "at offset 7, with the new leader's epoch"
    );
}

/// ... and the new leader the cluster names is gone without a word (its port refuses: a
/// SIGKILL leaves no error to learn from, and the cluster names it for a few seconds more): the
/// log check asks the cluster again until it names the next leader, and reads that one's log.
/// Before, every look went to the dead broker until the absorb timeout, and the client got 6.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_outcome_with_the_new_leader_dead_is_checked_at_the_next_one() {
    let b = plain(&["maybe", "written"]);
    let stored = fake::stored_at(&b, 7, 5);
    let bed = Bed::start(|s| {
        standard(s);
        s.produce(1, "t", 0, ProduceAnswer::error(6, 7));
        s.fetch_always(3, "t", 0, FetchAnswer::records(stored, 9));
    })
    .await;
    bed.move_leader("t", 0, 2, 6);
    bed.fake.stop_node(2);
    let mut c = bed.client(Some(1)).await;
    let started = Instant::now();
    let call = tokio::spawn(async move {
        let r: ProduceResponse = c
            .call(ApiKey::Produce, 9, &produce(-1, &[("t", 0, b)]))
            .await;
        r
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    bed.move_leader("t", 0, 3, 7);
    let r = call.await.unwrap();
    assert_eq!(
        produce_results(&r),
        vec![("t".into(), 0, 0, 7)],
        "after {:?}",
        started.elapsed()
    );
    assert!(
        bed.fake.client_requests(3, ApiKey::Produce).is_empty(),
        "the batch was not sent again"
    );
    let checks = bed.fake.own_requests(3, ApiKey::Fetch);
    assert_eq!(
        checks.first().map(|c| c.fetch_parts()),
        Some(vec![("t".into(), 0, 7, 7)]),
        "node 3's log read at offset 7, with its epoch"
    );
}

/// ... and the log holds another batch at 7: the batch is gone, so it is replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_outcome_with_another_batch_in_the_log_is_replayed() {
    let other = fake::stored_at(&plain(&["someone", "else"]), 7, 6);
    let bed = Bed::start(|s| {
        standard(s);
        s.produce(1, "t", 0, ProduceAnswer::error(6, 7));
        s.fetch_always(2, "t", 0, FetchAnswer::records(other, 9));
        s.produce(2, "t", 0, ProduceAnswer::ok(9));
    })
    .await;
    let (r, b, _) = unknown_outcome(&bed).await;
    assert_eq!(produce_results(&r), vec![("t".into(), 0, 0, 9)]);
    let n2 = bed.fake.client_requests(2, ApiKey::Produce);
    assert_eq!(n2.len(), 1);
    assert_eq!(produce_v(&n2[0]), vec![("t".into(), 0, b)]);
}

/// ... and the log cannot tell (nothing committed at 7, epoch history does not rule it out) until
/// the absorb timeout: the client gets the original 6 and nothing is replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_outcome_the_log_cannot_settle_passes_the_error_through() {
    let bed = Bed::start_with(
        |s| {
            standard(s);
            s.produce(1, "t", 0, ProduceAnswer::error(6, 7));
            s.fetch_always(2, "t", 0, FetchAnswer::records(Bytes::new(), 7));
            s.epochs_always(
                2,
                "t",
                0,
                fake::EpochAnswer {
                    error: 0,
                    leader_epoch: 5,
                    end_offset: 8,
                },
            );
        },
        |c| c.absorb_timeout = Duration::from_secs(1),
    )
    .await;
    let labels = [("api", "Produce"), ("outcome", "gave_up")];
    let gave_up = bed.metric("fairlead_replays_total", &labels).await;
    let (r, _, took) = unknown_outcome(&bed).await;
    let gave_up_after = bed.metric("fairlead_replays_total", &labels).await;
    assert!(
        gave_up_after >= gave_up + 1.0,
        "gave_up counted ({gave_up} -> {gave_up_after})"
    );
    assert_eq!(
        produce_results(&r),
        vec![("t".into(), 0, 6, 7)],
        "the original error"
    );
    assert!(
        took >= Duration::from_millis(900),
        "kept trying until the absorb timeout ({took:?})"
    );
    assert!(
        bed.fake.client_requests(2, ApiKey::Produce).is_empty(),
        "nothing replayed"
    );
    assert!(
        bed.fake.own_requests(2, ApiKey::Fetch).len() >= 2,
        "the log was asked again while waiting"
    );
}

/// ... and the epoch history shows the new leader's log from the old epoch ends at or before 7:
/// the batch is not there, so it is replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_outcome_ruled_out_by_epoch_history_is_replayed() {
    let bed = Bed::start(|s| {
        standard(s);
        s.produce(1, "t", 0, ProduceAnswer::error(6, 7));
        s.fetch_always(2, "t", 0, FetchAnswer::records(Bytes::new(), 7));
        s.epochs_always(
            2,
            "t",
            0,
            fake::EpochAnswer {
                error: 0,
                leader_epoch: 5,
                end_offset: 7,
            },
        );
        s.produce(2, "t", 0, ProduceAnswer::ok(7));
    })
    .await;
    let (r, b, _) = unknown_outcome(&bed).await;
    assert_eq!(produce_results(&r), vec![("t".into(), 0, 0, 7)]);
    let n2 = bed.fake.client_requests(2, ApiKey::Produce);
    assert_eq!(n2.len(), 1);
    assert_eq!(produce_v(&n2[0]), vec![("t".into(), 0, b)]);
}

/// Per-partition order: two pipelined idempotent produces R1, R2 answered 6 by node 1 are
/// replayed to node 2 in order; R3, sent after fairlead learned node 2 leads, waits for them
/// instead of overtaking (lanes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_keep_partition_order_and_later_batches_wait_for_them() {
    // How long node 1 sits on R1: R3 must be sent within this window to prove it was held.
    const HOLD_MS: u64 = 600;
    let bed = Bed::start(|s| {
        standard(s);
        s.produce(
            1,
            "t",
            0,
            ProduceAnswer::error(6, -1).delayed(Duration::from_millis(HOLD_MS)),
        );
        s.produce(1, "t", 0, ProduceAnswer::error(6, -1));
    })
    .await;
    let mut c = bed.client(Some(1)).await;
    let (r1, r2, r3) = (
        idempotent(0, &["r1"]),
        idempotent(1, &["r2"]),
        idempotent(2, &["r3"]),
    );
    let c1 = c
        .send(ApiKey::Produce, 9, &produce(-1, &[("t", 0, r1)]))
        .await;
    let c2 = c
        .send(ApiKey::Produce, 9, &produce(-1, &[("t", 0, r2)]))
        .await;
    bed.fake
        .wait_for("R1 at node 1", Duration::from_secs(5), |r| {
            r.iter().any(|r| r.node == 1 && r.api_key == 0)
        })
        .await;

    // Leadership moves; another client's Metadata tells fairlead.
    move_t0_to_node_2_and_tell_fairlead(&bed).await;

    let sent_r3 = Instant::now();
    let c3 = c
        .send(ApiKey::Produce, 9, &produce(-1, &[("t", 0, r3)]))
        .await;
    for want in [c1, c2, c3] {
        let (corr, r): (i32, ProduceResponse) =
            decode_response(&c.recv().await, ApiKey::Produce, 9);
        assert_eq!(corr, want);
        assert_eq!(produce_results(&r)[0].2, 0, "request {want} succeeded");
    }

    let n1 = bed.fake.client_requests(1, ApiKey::Produce);
    let n2 = bed.fake.client_requests(2, ApiKey::Produce);
    assert_eq!(n1.len(), 2, "R3 never went to the old leader");
    let seqs: Vec<i32> = n2
        .iter()
        .map(|r| fake::base_sequence(&produce_v(r)[0].2))
        .collect();
    assert_eq!(
        seqs,
        vec![0, 1, 2],
        "node 2 got R1's replay, R2's replay, then R3"
    );
    let n1_answered = n1[0].at + Duration::from_millis(HOLD_MS);
    assert!(
        sent_r3 < n1_answered,
        "R3 was sent while R1 was still unanswered, so it was held back"
    );
}

/// Issue 20, item 5: while a partition is being absorbed, its client connection keeps reading.
/// R2, for the partition whose batch R1 is being replayed, waits for that replay (per-partition
/// order); R3, the connection's next request, for another partition, goes to its broker at once
/// instead of waiting behind R2. The answers still leave in request order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_being_absorbed_holds_up_none_of_the_connections_other_requests() {
    // How long node 1 sits on R1 before answering NOT_LEADER_OR_FOLLOWER.
    const HOLD_MS: u64 = 1500;
    let bed = bed_where_node_1_answers_t0_with_6_after(HOLD_MS).await;
    let mut c = bed.client(Some(1)).await;
    let c1 = c
        .send(
            ApiKey::Produce,
            9,
            &produce(-1, &[("t", 0, idempotent(0, &["r1"]))]),
        )
        .await;
    bed.fake
        .wait_for("R1 at node 1", Duration::from_secs(5), |r| {
            r.iter().any(|r| r.node == 1 && r.api_key == 0)
        })
        .await;
    move_t0_to_node_2_and_tell_fairlead(&bed).await;

    let c2 = c
        .send(
            ApiKey::Produce,
            9,
            &produce(-1, &[("t", 0, idempotent(1, &["r2"]))]),
        )
        .await;
    let c3 = c
        .send(
            ApiKey::Produce,
            9,
            &produce(-1, &[("u", 0, fake::batch(4711, 0, &["r3"]))]),
        )
        .await;
    bed.fake
        .wait_for("R3 at node 2", Duration::from_secs(5), |r| {
            r.iter()
                .any(|r| r.node == 2 && r.api_key == 0 && produce_v(r)[0].0 == "u")
        })
        .await;
    let n1 = bed.fake.client_requests(1, ApiKey::Produce);
    let r1_answered = n1[0].at + Duration::from_millis(HOLD_MS);
    let n2 = bed.fake.client_requests(2, ApiKey::Produce);
    let r3 = n2.iter().find(|r| produce_v(r)[0].0 == "u").unwrap();
    assert!(
        r3.at < r1_answered,
        "R3 reached its broker {:?} after R1 did: it waited behind R2, held for R1's replay",
        r3.at - n1[0].at
    );

    for want in [c1, c2, c3] {
        let (corr, r): (i32, ProduceResponse) =
            decode_response(&c.recv().await, ApiKey::Produce, 9);
        assert_eq!(corr, want, "answers in request order");
        assert_eq!(produce_results(&r)[0].2, 0, "request {want} succeeded");
    }
    let t0: Vec<i32> = bed
        .fake
        .client_requests(2, ApiKey::Produce)
        .iter()
        .filter(|r| produce_v(r)[0].0 == "t")
        .map(|r| fake::base_sequence(&produce_v(r)[0].2))
        .collect();
    assert_eq!(t0, vec![0, 1], "node 2 got R1's replay, then R2");
    assert_eq!(n1.len(), 1, "R2 never went to the old leader");
}

/// Issue 20: two applications in one pod (the same address, the same client id, as librdkafka's
/// "rdkafka" or two JVMs' "producer-1") are two producers, not one: an idempotent producer's
/// lane is its producer id and epoch. B's batch for the partition A is being replayed for goes
/// to the new leader at once instead of waiting for A's replay (keyed by address and client id
/// it waited, and could have joined A's broker connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producers_sharing_an_address_and_client_id_do_not_share_lanes() {
    const HOLD_MS: u64 = 1500;
    let bed = bed_where_node_1_answers_t0_with_6_after(HOLD_MS).await;
    let mut a = bed.client(Some(1)).await;
    let sent_a = Instant::now();
    let ca = a
        .send(
            ApiKey::Produce,
            9,
            &produce(-1, &[("t", 0, idempotent(0, &["a"]))]),
        )
        .await;
    bed.fake
        .wait_for("A's batch at node 1", Duration::from_secs(5), |r| {
            r.iter().any(|r| r.node == 1 && r.api_key == 0)
        })
        .await;
    move_t0_to_node_2_and_tell_fairlead(&bed).await;

    // B: another producer (id 4712) with the same client id from the same address.
    let mut b = bed.client(Some(2)).await;
    let rb: ProduceResponse = b
        .call(
            ApiKey::Produce,
            9,
            &produce(-1, &[("t", 0, fake::batch(4712, 0, &["b"]))]),
        )
        .await;
    let b_answered = sent_a.elapsed();
    assert_eq!(produce_results(&rb)[0].2, 0);
    assert!(
        b_answered < Duration::from_millis(HOLD_MS),
        "B was answered after {b_answered:?}: it waited for A's batch, held {HOLD_MS} ms"
    );
    let (corr, ra): (i32, ProduceResponse) = decode_response(&a.recv().await, ApiKey::Produce, 9);
    assert_eq!(corr, ca);
    assert_eq!(produce_results(&ra)[0].2, 0, "A's batch was replayed");
    let n2 = bed.fake.client_requests(2, ApiKey::Produce);
    assert_eq!(n2.len(), 2, "B's batch and A's replay, each on its own");
    assert!(n2.iter().all(|r| produce_v(r).len() == 1));
}

/// Right after a leader change, a non-idempotent producer's next batch for the partition waits
/// until the earlier one is settled, even when both go to the same new leader: the new leader
/// may refuse the first (not taken over yet) and accept the second at once, and the broker
/// cannot put plain batches back in order (lanes::SETTLE). Without the rule, node 2's log gets
/// b before a's replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_leader_change_a_non_idempotent_batch_waits_for_the_one_before_it() {
    let bed = Bed::start(|s| {
        standard(s);
        // The new leader refuses the first batch (nothing written), a moment later.
        s.produce(
            2,
            "t",
            0,
            ProduceAnswer::error(6, -1).delayed(Duration::from_millis(300)),
        );
    })
    .await;
    move_t0_to_node_2_and_tell_fairlead(&bed).await;

    let (a, b) = (plain(&["a"]), plain(&["b"]));
    let mut c = bed.client(Some(2)).await;
    let ca = c
        .send(ApiKey::Produce, 9, &produce(-1, &[("t", 0, a.clone())]))
        .await;
    let cb = c
        .send(ApiKey::Produce, 9, &produce(-1, &[("t", 0, b.clone())]))
        .await;
    for want in [ca, cb] {
        let (corr, r): (i32, ProduceResponse) =
            decode_response(&c.recv().await, ApiKey::Produce, 9);
        assert_eq!(corr, want);
        assert_eq!(produce_results(&r)[0].2, 0, "request {want} succeeded");
    }
    let at_node_2: Vec<Bytes> = bed
        .fake
        .client_requests(2, ApiKey::Produce)
        .iter()
        .map(|r| produce_v(r)[0].2.clone())
        .collect();
    assert_eq!(
        at_node_2,
        vec![a.clone(), a, b],
        "node 2 got a (refused), a's replay, then b"
    );
}

/// The client's broker goes down: its connection is served by another broker meanwhile, and
/// returns to its own broker once that is back (within a second or two), instead of staying on
/// the stand-in for as long as the client connection lives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_returns_to_its_broker_when_the_broker_is_back() {
    let bed = Bed::start(standard).await;
    let describe = kafka_protocol::messages::DescribeGroupsRequest::default()
        .with_groups(vec![StrBytes::from_static_str("g").into()]);
    let mut c = bed.client(Some(2)).await;
    let _: kafka_protocol::messages::DescribeGroupsResponse =
        c.call(ApiKey::DescribeGroups, 5, &describe).await;
    bed.fake.stop_node(2);
    let _: kafka_protocol::messages::DescribeGroupsResponse =
        c.call(ApiKey::DescribeGroups, 5, &describe).await;
    let at = |node| bed.fake.client_requests(node, ApiKey::DescribeGroups).len();
    assert_eq!(at(2), 1, "node 2 is down");
    assert_eq!(at(1) + at(3), 1, "another broker stood in");
    bed.fake.start_node(2).await;
    let back = Instant::now() + Duration::from_secs(5);
    while at(2) < 2 {
        assert!(
            Instant::now() < back,
            "the connection never went back to node 2 ({} requests elsewhere)",
            at(1) + at(3)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _: kafka_protocol::messages::DescribeGroupsResponse =
            c.call(ApiKey::DescribeGroups, 5, &describe).await;
    }
}

/// Fetch answered 74 by the old leader: fetched again from the new leader with its epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_fenced_by_the_old_leader_is_fetched_from_the_new_one() {
    let data = fake::stored_at(&plain(&["data"]), 40, 6);
    let bed = Bed::start(|s| {
        standard(s);
        s.fetch(1, "t", 0, FetchAnswer::error(74));
        s.fetch(2, "t", 0, FetchAnswer::records(data.clone(), 41));
    })
    .await;
    bed.move_leader("t", 0, 2, 6);
    let mut c = bed.client(Some(1)).await;
    let r: FetchResponse = c
        .call(
            ApiKey::Fetch,
            12,
            &fetch(12, &|_| Uuid::nil(), (0, -1), &[("t", 0, 5, 40)]),
        )
        .await;
    assert_eq!(fetch_results(&r), vec![("t".into(), 0, 0, data)]);
    let n2 = bed.fake.client_requests(2, ApiKey::Fetch);
    assert_eq!(n2.len(), 1);
    assert_eq!(
        n2[0].fetch_parts(),
        vec![("t".into(), 0, 6, 40)],
        "the new leader's epoch, the client's offset"
    );
    assert_eq!(n2[0].fetch().max_wait_ms, 0, "a replay does not long-poll");
}

/// ListOffsets: 78 (OFFSET_NOT_AVAILABLE) is retried on the same leader; 6 is rerouted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_offsets_78_retries_the_same_leader_and_6_reroutes() {
    let bed = Bed::start(|s| {
        standard(s);
        s.list_offsets(1, "t", 0, OffsetAnswer::error(78));
        s.list_offsets(1, "t", 0, OffsetAnswer::ok(50, 5));
        s.list_offsets(1, "t", 1, OffsetAnswer::error(6));
        s.list_offsets(2, "t", 1, OffsetAnswer::ok(60, 6));
    })
    .await;
    let mut c = bed.client(Some(1)).await;
    let r: ListOffsetsResponse = c
        .call(ApiKey::ListOffsets, 7, &list_offsets(&[("t", 0, 5)]))
        .await;
    let p = &r.topics[0].partitions[0];
    assert_eq!((p.partition_index, p.error_code, p.offset), (0, 0, 50));
    assert_eq!(
        bed.fake.client_requests(1, ApiKey::ListOffsets).len(),
        2,
        "asked node 1 twice"
    );
    assert!(bed.fake.client_requests(2, ApiKey::ListOffsets).is_empty());

    bed.move_leader("t", 1, 2, 6);
    let r: ListOffsetsResponse = c
        .call(ApiKey::ListOffsets, 7, &list_offsets(&[("t", 1, 5)]))
        .await;
    let p = &r.topics[0].partitions[0];
    assert_eq!(
        (p.partition_index, p.error_code, p.offset, p.leader_epoch),
        (1, 0, 60, 6)
    );
    let n2 = bed.fake.client_requests(2, ApiKey::ListOffsets);
    assert_eq!(n2.len(), 1);
    assert_eq!(
        n2[0].list_offsets().topics[0].partitions[0].current_leader_epoch,
        6
    );
}

/// LEADER_NOT_AVAILABLE (5) on a fetch: waited out until metadata shows a leader again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_leader_not_available_waits_for_the_election() {
    let data = fake::stored_at(&plain(&["after", "election"]), 0, 6);
    let bed = Bed::start(|s| {
        standard(s);
        s.fetch_always(1, "t", 0, FetchAnswer::error(5));
        s.fetch(2, "t", 0, FetchAnswer::records(data.clone(), 2));
    })
    .await;
    bed.fake.script().set_leaderless("t", 0);
    let started = Instant::now();
    let elect = {
        let script = bed.fake.script_handle();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            script.lock().unwrap().set_leader("t", 0, 2, 6);
        })
    };
    let mut c = bed.client(Some(1)).await;
    let r: FetchResponse = c
        .call(
            ApiKey::Fetch,
            12,
            &fetch(12, &|_| Uuid::nil(), (0, -1), &[("t", 0, 5, 0)]),
        )
        .await;
    elect.await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(fetch_results(&r), vec![("t".into(), 0, 0, data)]);
    assert!(
        bed.fake.client_requests(1, ApiKey::Fetch).len() >= 2,
        "retried while the election ran"
    );
    assert_eq!(
        bed.fake.client_requests(2, ApiKey::Fetch)[0].fetch_parts(),
        vec![("t".into(), 0, 6, 0)]
    );
}

/// A fetch is not held much past its own max_wait_ms: a partition whose replay has not been
/// answered by max_wait_ms + 500 ms gets "nothing yet" (no records, no error) and the client
/// fetches again. A late answer could reach a client that has since moved the partition to
/// another broker and back, and be taken as current.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_held_past_its_wait_is_answered_with_nothing_yet() {
    const MAX_WAIT_MS: i32 = 200;
    let data = fake::stored_at(&plain(&["late"]), 40, 6);
    let bed = Bed::start(|s| {
        standard(s);
        s.fetch(1, "t", 0, FetchAnswer::error(6));
        s.fetch(
            2,
            "t",
            0,
            FetchAnswer::records(data, 41).delayed(Duration::from_secs(3)),
        );
    })
    .await;
    bed.move_leader("t", 0, 2, 6);
    let labels = [("api", "Fetch"), ("outcome", "answered_empty")];
    let before = bed.metric("fairlead_replays_total", &labels).await;
    let mut c = bed.client(Some(1)).await;
    let asked = Instant::now();
    let r: FetchResponse = c
        .call(
            ApiKey::Fetch,
            12,
            &fetch(
                12,
                &|_| Uuid::nil(),
                (0, -1),
                &[("t", 0, 5, 40), ("t", 1, 5, 7)],
            )
            .with_max_wait_ms(MAX_WAIT_MS),
        )
        .await;
    let took = asked.elapsed();
    assert!(
        took >= Duration::from_millis(MAX_WAIT_MS as u64 + 400)
            && took < Duration::from_millis(1500),
        "answered at max_wait_ms + 500 ms, not when the replay was ({took:?})"
    );
    assert_eq!(
        fetch_results(&r),
        vec![
            ("t".into(), 0, 0, Bytes::new()),
            ("t".into(), 1, 0, Bytes::new())
        ],
        "both partitions, in order, no error"
    );
    let p0 = &r.responses[0].partitions[0];
    assert_eq!(
        (
            p0.high_watermark,
            p0.last_stable_offset,
            p0.log_start_offset
        ),
        (-1, -1, -1),
        "watermarks unknown, not made up"
    );
    assert_eq!(
        bed.fake.client_requests(2, ApiKey::Fetch)[0].fetch_parts(),
        vec![("t".into(), 0, 6, 40)],
        "it was replayed to the new leader"
    );
    let after = bed.metric("fairlead_replays_total", &labels).await;
    assert_eq!(after, before + 1.0, "answered_empty counted");
}

/// A replay that never settles: at the absorb timeout the client gets the original error, and
/// fairlead_replays_total{outcome="gave_up"} counts it. (Regression: the last replay used to
/// leave at the deadline, time out at once, and turn the broker's 6 into 13.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_that_never_settles_gives_up_with_the_original_error() {
    let bed = Bed::start_with(
        |s| {
            standard(s);
            s.produce_always(1, "t", 0, ProduceAnswer::error(6, -1));
        },
        |c| c.absorb_timeout = Duration::from_millis(800),
    )
    .await;
    let labels = [("api", "Produce"), ("outcome", "gave_up")];
    let before = bed.metric("fairlead_replays_total", &labels).await;
    let mut c = bed.client(Some(1)).await;
    let started = Instant::now();
    let r: ProduceResponse = c
        .call(
            ApiKey::Produce,
            9,
            &produce(-1, &[("t", 0, idempotent(0, &["stuck"]))]),
        )
        .await;
    let took = started.elapsed();
    assert_eq!(produce_results(&r), vec![("t".into(), 0, 6, -1)]);
    assert!(
        took >= Duration::from_millis(750) && took < Duration::from_secs(3),
        "gave up at the absorb timeout ({took:?})"
    );
    assert!(
        bed.fake.client_requests(1, ApiKey::Produce).len() >= 2,
        "it did retry"
    );
    let after = bed.metric("fairlead_replays_total", &labels).await;
    assert!(
        after >= before + 1.0,
        "gave_up counted ({before} -> {after})"
    );
}

/// Bad frames (negative length, over max_frame_bytes, shorter than a header, garbage after a
/// valid header of a routed API) close that connection only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_close_only_their_connection() {
    let bed = Bed::start(standard).await;
    let mut survivor = bed.client(Some(1)).await;
    let _: MetadataResponse = survivor
        .call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(None),
        )
        .await;

    let garbage_produce = raw_request(0, 9, 1, &[0xff; 40]);
    let garbage_fetch = raw_request(1, 12, 1, &[0xff; 40]);
    let cases: [(&str, Bytes); 5] = [
        (
            "negative length",
            Bytes::from_static(&[0xff, 0xff, 0xff, 0xf0, 0, 0, 0, 0]),
        ),
        (
            "over max_frame_bytes",
            Bytes::from((1i32 << 20).to_be_bytes().to_vec()),
        ),
        (
            "shorter than a header",
            Bytes::from_static(&[0, 0, 0, 3, 0, 1, 2]),
        ),
        ("garbage produce body", garbage_produce),
        ("garbage fetch body", garbage_fetch),
    ];
    for (what, frame) in cases {
        let mut c = bed.client(Some(1)).await;
        c.send_bytes(&frame).await;
        assert!(
            c.closed_within(Duration::from_secs(3)).await,
            "{what}: connection closed"
        );
    }
    let _: MetadataResponse = survivor
        .call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(None),
        )
        .await;
    let mut fresh = bed.client(Some(1)).await;
    let _: MetadataResponse = fresh
        .call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(None),
        )
        .await;
}

/// An idempotent producer's batches for one partition on two of its connections (it switched
/// after a metadata refresh of its own): fairlead sends both to the partition's leader on the
/// lane's one connection. The leader refuses the first (6, nothing written) and then the second
/// as out of sequence (45: it has no batch 0). The second connection's answer is settled while
/// fairlead is still absorbing the first (here: waiting for its metadata refresh), so the
/// partition must count as recovering from the moment the first is to be replayed, not only once
/// it is re-sent, else the 45 reaches the client (seen once in the real-cluster suite,
/// 2026-12-04, absorb.rs's idempotent producer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_out_of_sequence_batch_behind_one_being_absorbed_is_replayed_too() {
    let bed = Bed::start(|s| {
        standard(s);
        s.produce(1, "t", 0, ProduceAnswer::error(6, -1));
        s.produce(1, "t", 0, ProduceAnswer::error(45, -1));
    })
    .await;
    for node in [1, 2, 3] {
        bed.fake
            .script()
            .delay_next(node, ApiKey::Metadata, Duration::from_millis(400));
    }
    let mut first = bed.client(Some(1)).await;
    let mut second = bed.client(Some(2)).await;
    let c1 = first
        .send(
            ApiKey::Produce,
            9,
            &produce(-1, &[("t", 0, idempotent(0, &["a"]))]),
        )
        .await;
    bed.fake
        .wait_for("batch 0 at node 1", Duration::from_secs(5), |r| {
            r.iter().any(|r| r.node == 1 && r.api_key == 0)
        })
        .await;
    let c2 = second
        .send(
            ApiKey::Produce,
            9,
            &produce(-1, &[("t", 0, idempotent(1, &["b"]))]),
        )
        .await;
    for (c, want) in [(&mut first, c1), (&mut second, c2)] {
        let (corr, r): (i32, ProduceResponse) =
            decode_response(&c.recv().await, ApiKey::Produce, 9);
        assert_eq!(corr, want);
        assert_eq!(
            produce_results(&r)[0].2,
            0,
            "request {want} succeeded: {r:?}"
        );
    }
    let seqs: Vec<i32> = bed
        .fake
        .client_requests(1, ApiKey::Produce)
        .iter()
        .map(|r| fake::base_sequence(&produce_v(r)[0].2))
        .collect();
    assert_eq!(&seqs[..2], &[0, 1], "both went to the leader: {seqs:?}");
    assert_eq!(seqs.len(), 4, "both replayed: {seqs:?}");
}

// ---------------------------------------------------------------------------------------------
// Probes
// ---------------------------------------------------------------------------------------------

async fn probe(bed: &Bed, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(bed.server.admin_addr)
        .await
        .unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    let code = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").unwrap().1.trim().to_string();
    (code, body)
}

/// A Kafka outage must not take a sidecar's pod out of its Services (readiness) nor restart it
/// (liveness): it shows in /clusterz, for alerts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_outage_fails_clusterz_but_never_readiness_liveness_or_startup() {
    let bed = Bed::start_with(standard, |cfg| {
        cfg.metadata_max_age = Duration::from_millis(100);
        cfg.ready_max_metadata_age = Duration::from_millis(400);
    })
    .await;
    for path in ["/startupz", "/livez", "/healthz", "/readyz", "/clusterz"] {
        let (code, body) = probe(&bed, path).await;
        assert_eq!(code, 200, "{path} while the cluster is up: {body}");
    }
    for node in [1, 2, 3] {
        bed.fake.stop_node(node);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, body) = probe(&bed, "/clusterz").await;
        if code == 503 {
            assert!(body.starts_with("stale: metadata is"), "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/clusterz never reported the outage: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (path, says) in [
        ("/readyz", "ready: listeners bound"),
        ("/livez", "ok"),
        ("/startupz", "started"),
    ] {
        let (code, body) = probe(&bed, path).await;
        assert_eq!(code, 200, "{path} during the outage: {body}");
        assert!(body.starts_with(says), "{path}: {body}");
    }
    // And it still takes connections.
    let _client = bed.client(None).await;
}
