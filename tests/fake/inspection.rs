//! Every answer a client gets passes the same inspection, whichever path it took (issue 24):
//! routed by partition, routed to a coordinator, forwarded on the client's own broker
//! connection, sent again after that connection was lost, or routed on a re-established one.
//! Each error code a broker sends for a client's request ends up counted, once, as absorbed
//! (`fairlead_errors_absorbed_total`) or as reaching the client
//! (`fairlead_errors_passed_through_total`).

#[path = "../support/fake.rs"]
mod fake;
#[path = "../support/fake_bed.rs"]
mod fake_bed;

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, FindCoordinatorRequest, FindCoordinatorResponse,
    HeartbeatRequest, HeartbeatResponse, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};

use fake::{FetchAnswer, ProduceAnswer, Received};
use fake_bed::*;

const PRODUCE_V: i16 = 9;
const FETCH_V: i16 = 12;
const FETCH_V_ENDPOINTS: i16 = 16;
const FIND_V: i16 = 3;
const HEARTBEAT_V: i16 = 4;

fn name(n: &str) -> TopicName {
    TopicName(StrBytes::from_string(n.to_string()))
}

fn produce(topic: &str, partition: i32, values: &[&str]) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(fake::batch(-1, -1, values)))])])
}

fn fetch(session: (i32, i32), topic: &str, partition: i32, epoch: i32) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(100)
        .with_min_bytes(1)
        .with_session_id(session.0)
        .with_session_epoch(session.1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_current_leader_epoch(epoch)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])])
}

fn find(group: &str) -> FindCoordinatorRequest {
    FindCoordinatorRequest::default().with_key(StrBytes::from_string(group.into()))
}

fn heartbeat(group: &str) -> HeartbeatRequest {
    HeartbeatRequest::default()
        .with_group_id(StrBytes::from_string(group.into()).into())
        .with_generation_id(7)
        .with_member_id(StrBytes::from_static_str("m-1"))
}

fn fetch_codes(r: &FetchResponse) -> Vec<i16> {
    std::iter::once(r.error_code)
        .chain(
            r.responses
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
        )
        .filter(|c| *c != 0)
        .collect()
}

fn produce_codes(r: &ProduceResponse) -> Vec<i16> {
    r.responses
        .iter()
        .flat_map(|t| t.partition_responses.iter().map(|p| p.error_code))
        .filter(|c| *c != 0)
        .collect()
}

/// The non-zero error codes a fake broker sent in its answer to a client's request.
fn sent_codes(r: &Received) -> Vec<i16> {
    fn body<T: Decodable>(r: &Received, api: ApiKey) -> Option<T> {
        let frame = r.response.as_ref()?;
        Some(decode_response::<T>(frame, api, r.version).1)
    }
    let codes = match ApiKey::try_from(r.api_key) {
        Ok(ApiKey::Produce) => {
            body::<ProduceResponse>(r, ApiKey::Produce).map(|b| produce_codes(&b))
        }
        Ok(ApiKey::Fetch) => body::<FetchResponse>(r, ApiKey::Fetch).map(|b| fetch_codes(&b)),
        Ok(ApiKey::Heartbeat) => {
            body::<HeartbeatResponse>(r, ApiKey::Heartbeat).map(|b| vec![b.error_code])
        }
        Ok(ApiKey::FindCoordinator) => body::<FindCoordinatorResponse>(r, ApiKey::FindCoordinator)
            .map(|b| {
                std::iter::once(b.error_code)
                    .chain(b.coordinators.iter().map(|c| c.error_code))
                    .collect()
            }),
        _ => None,
    };
    codes
        .unwrap_or_default()
        .into_iter()
        .filter(|c| *c != 0)
        .collect()
}

/// Sum of a counter over every series, by (api, code).
async fn by_api_and_code(bed: &Bed, metric: &str) -> BTreeMap<(String, String), f64> {
    let mut s = tokio::net::TcpStream::connect(bed.server.admin_addr)
        .await
        .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: fairlead\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    let label = |l: &str, k: &str| -> String {
        let at = l.find(&format!("{k}=\"")).map(|i| i + k.len() + 2);
        at.map(|i| l[i..].split('"').next().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    let mut out = BTreeMap::new();
    for l in text
        .lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")))
    {
        let v: f64 = l.rsplit(' ').next().unwrap().parse().unwrap();
        *out.entry((label(l, "api"), label(l, "code"))).or_default() += v;
    }
    out
}

/// What each counter gained between two readings, without the zeros.
fn gained(
    before: &BTreeMap<(String, String), f64>,
    after: &BTreeMap<(String, String), f64>,
) -> BTreeMap<(String, String), f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d != 0.0)
        .collect()
}

/// A fetch inside an incremental fetch session is not routed (the session lives on its
/// broker): it is forwarded, and its answer is still counted.
#[tokio::test]
async fn a_forwarded_fetch_answer_is_counted() {
    let bed = Bed::start(standard).await;
    bed.fake.script().fetch(1, "t", 0, FetchAnswer::error(74));
    let before = by_api_and_code(&bed, "fairlead_errors_passed_through_total").await;
    let mut c = bed.client(Some(1)).await;
    let r: FetchResponse = c
        .call(ApiKey::Fetch, FETCH_V, &fetch((1001, 1), "t", 0, 4))
        .await;
    assert_eq!(
        fetch_codes(&r),
        vec![74],
        "the session fetch keeps its broker's answer"
    );
    assert_eq!(r.session_id, 1001, "and its session");
    let after = by_api_and_code(&bed, "fairlead_errors_passed_through_total").await;
    assert_eq!(
        gained(&before, &after),
        BTreeMap::from([(("Fetch".into(), "74".into()), 1.0)]),
        "the 74 that reached the client is counted"
    );
}

/// A forwarded fetch answer naming the new leader (KIP-951 node endpoints, Fetch v16+) names
/// fairlead's address for it, never the broker's.
#[tokio::test]
async fn a_forwarded_fetch_answer_names_only_fairlead() {
    let bed = Bed::start(standard).await;
    bed.fake
        .script()
        .fetch(1, "t", 0, FetchAnswer::error(6).hint(2, 6));
    let mut c = bed.client(Some(1)).await;
    let mut req = fetch((1001, 1), "t", 0, 5);
    req.topics[0].topic_id = bed.topic_ids()("t");
    let r: FetchResponse = c.call(ApiKey::Fetch, FETCH_V_ENDPOINTS, &req).await;
    let ports: Vec<i32> = r.node_endpoints.iter().map(|e| e.port).collect();
    assert_eq!(
        ports,
        vec![bed.port(2)],
        "the hinted leader at fairlead's port"
    );
    assert_eq!(r.session_id, 1001);
}

/// The client's broker goes away with a forwarded request in flight: it is sent again on a
/// re-established connection (another broker), and that answer is counted.
#[tokio::test]
async fn an_answer_after_a_lost_connection_is_counted() {
    let bed = Bed::start(|s| {
        standard(s);
        s.coordinators.insert("g".into(), (1, 30));
        s.delay_next(1, ApiKey::FindCoordinator, Duration::from_millis(400));
    })
    .await;
    let before = by_api_and_code(&bed, "fairlead_errors_passed_through_total").await;
    let mut c = bed.client(Some(1)).await;
    let corr = c.send(ApiKey::FindCoordinator, FIND_V, &find("g")).await;
    bed.fake
        .wait_for(
            "the FindCoordinator on node 1",
            Duration::from_secs(5),
            |r| {
                r.iter()
                    .any(|r| r.node == 1 && r.api_key == ApiKey::FindCoordinator as i16)
            },
        )
        .await;
    bed.fake.stop_node(1);
    let frame = c.recv().await;
    let (got, r): (i32, FindCoordinatorResponse) =
        decode_response(&frame, ApiKey::FindCoordinator, FIND_V);
    assert_eq!(got, corr);
    assert_eq!(r.error_code, 30);
    let resent = bed
        .fake
        .client_requests_any(ApiKey::FindCoordinator)
        .into_iter()
        .filter(|r| r.node != 1)
        .count();
    assert_eq!(resent, 1, "sent again, to another broker");
    let after = by_api_and_code(&bed, "fairlead_errors_passed_through_total").await;
    assert_eq!(
        gained(&before, &after),
        BTreeMap::from([(("FindCoordinator".into(), "30".into()), 1.0)])
    );
}

/// The client's broker went away between two requests: the next one is routed on a
/// re-established connection, and a leadership error there is absorbed and counted.
#[tokio::test]
async fn a_request_on_a_re_established_connection_is_inspected() {
    let bed = Bed::start(standard).await;
    let before = by_api_and_code(&bed, "fairlead_errors_absorbed_total").await;
    let mut c = bed.client(Some(1)).await;
    let r: ProduceResponse = c
        .call(ApiKey::Produce, PRODUCE_V, &produce("t", 0, &["a"]))
        .await;
    assert!(produce_codes(&r).is_empty());
    bed.fake.stop_node(1);
    bed.move_leader("t", 0, 2, 6);
    bed.fake
        .script()
        .produce(2, "t", 0, ProduceAnswer::error(6, -1));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r: ProduceResponse = c
        .call(ApiKey::Produce, PRODUCE_V, &produce("t", 0, &["b"]))
        .await;
    assert!(
        produce_codes(&r).is_empty(),
        "absorbed: {:?}",
        produce_codes(&r)
    );
    let after = by_api_and_code(&bed, "fairlead_errors_absorbed_total").await;
    assert_eq!(
        gained(&before, &after).get(&("Produce".into(), "6".into())),
        Some(&1.0)
    );
}

/// Every error code the brokers sent for the client's requests, whichever path they took, is
/// counted once: absorbed (the client got an answer without it) or passed through (the client
/// got it), per API and code.
#[tokio::test]
async fn absorbed_and_passed_through_add_up_to_what_the_brokers_sent() {
    let bed = Bed::start(|s| {
        standard(s);
        s.coordinators.insert("bad".into(), (1, 30));
    })
    .await;
    let metrics_before = (
        by_api_and_code(&bed, "fairlead_errors_absorbed_total").await,
        by_api_and_code(&bed, "fairlead_errors_passed_through_total").await,
    );
    {
        let mut s = bed.fake.script();
        // Routed produce: a leadership error, absorbed (the leader moved to node 2).
        s.produce(1, "t", 0, ProduceAnswer::error(6, -1));
        s.set_leader("t", 0, 2, 6);
        // Routed produce: an error fairlead does not absorb.
        s.produce(1, "t", 1, ProduceAnswer::error(87, -1));
        // Routed fetch: fenced once, then answered.
        s.fetch(2, "u", 0, FetchAnswer::error(74));
        // Forwarded fetch (a session): passed through.
        s.fetch(1, "t", 1, FetchAnswer::error(6));
        // A coordinator move, absorbed.
        s.coordinator_error(1, ApiKey::Heartbeat, 16);
    }
    let mut c1 = bed.client(Some(1)).await;
    let mut c2 = bed.client(Some(2)).await;
    let p: ProduceResponse = c1
        .call(ApiKey::Produce, PRODUCE_V, &produce("t", 0, &["a"]))
        .await;
    assert!(produce_codes(&p).is_empty());
    let p: ProduceResponse = c1
        .call(ApiKey::Produce, PRODUCE_V, &produce("t", 1, &["b"]))
        .await;
    assert_eq!(produce_codes(&p), vec![87]);
    let f: FetchResponse = c2
        .call(ApiKey::Fetch, FETCH_V, &fetch((0, -1), "u", 0, 3))
        .await;
    assert!(fetch_codes(&f).is_empty(), "{:?}", fetch_codes(&f));
    let f: FetchResponse = c1
        .call(ApiKey::Fetch, FETCH_V, &fetch((1001, 1), "t", 1, 5))
        .await;
    assert_eq!(fetch_codes(&f), vec![6]);
    let h: HeartbeatResponse = c1
        .call(ApiKey::Heartbeat, HEARTBEAT_V, &heartbeat("g"))
        .await;
    assert_eq!(h.error_code, 0);
    let fc: FindCoordinatorResponse = c2.call(ApiKey::FindCoordinator, FIND_V, &find("bad")).await;
    assert_eq!(fc.error_code, 30);

    let mut sent: BTreeMap<(String, String), f64> = BTreeMap::new();
    for r in bed.fake.received().iter().filter(|r| r.is_from_client()) {
        let api = ApiKey::try_from(r.api_key)
            .map(|k| format!("{k:?}"))
            .unwrap();
        for code in sent_codes(r) {
            *sent.entry((api.clone(), code.to_string())).or_default() += 1.0;
        }
    }
    let absorbed = gained(
        &metrics_before.0,
        &by_api_and_code(&bed, "fairlead_errors_absorbed_total").await,
    );
    let passed = gained(
        &metrics_before.1,
        &by_api_and_code(&bed, "fairlead_errors_passed_through_total").await,
    );
    let mut counted = absorbed.clone();
    for (k, v) in &passed {
        *counted.entry(k.clone()).or_default() += v;
    }
    assert_eq!(
        counted, sent,
        "absorbed {absorbed:?} + passed through {passed:?} must be what the brokers sent"
    );
    assert_eq!(
        sent.values().sum::<f64>(),
        6.0,
        "every path met an error: {sent:?}"
    );
}
