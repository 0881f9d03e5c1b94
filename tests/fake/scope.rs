//! What fairlead asks the cluster follows what its clients use, never the cluster's size
//! (issue 20, `leadership::scope`): its own Metadata requests name the topics in use only, an
//! answer for every topic does not make it track every topic, unused topics are forgotten, and
//! a flood of unknown topics costs a bounded number of refreshes and holds nothing.

#[path = "../support/fake.rs"]
mod fake;
#[path = "../support/fake_bed.rs"]
mod fake_bed;

use std::time::Duration;

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use fake::{Decoded, Received};
use fake_bed::*;

const PRODUCE_V: i16 = 9;
const METADATA_V: i16 = 12;

fn name(n: &str) -> TopicName {
    TopicName(StrBytes::from_string(n.to_string()))
}

fn produce(topic: &str) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(fake::batch(-1, -1, &["v"])))])])
}

fn metadata_for(topics: Option<&[String]>) -> MetadataRequest {
    MetadataRequest::default().with_topics(topics.map(|ts| {
        ts.iter()
            .map(|t| MetadataRequestTopic::default().with_name(Some(name(t))))
            .collect()
    }))
}

/// The topic lists of fairlead's own Metadata requests, in order (None: every topic).
fn own_metadata_asks(received: &[Received]) -> Vec<Option<Vec<String>>> {
    received
        .iter()
        .filter(|r| !r.is_from_client())
        .filter_map(|r| match &r.request {
            Decoded::Metadata(m) => Some(m.topics.as_ref().map(|ts| {
                ts.iter()
                    .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
                    .collect()
            })),
            _ => None,
        })
        .collect()
}

fn tracked(bed: &Bed) -> Vec<String> {
    bed.server
        .cluster
        .leadership
        .topics_snapshot()
        .into_keys()
        .collect()
}

/// Waits up to 5 s for `cond`.
async fn until(cond: impl Fn() -> bool, what: &str) {
    let end = std::time::Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(std::time::Instant::now() < end, "not within 5 s: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Topic t (node 1 leads) and 200 other topics no client uses.
fn cluster(s: &mut fake::Script) {
    s.topic("t", &[(1, 5)]);
    s.topic("u", &[(2, 3)]);
    for i in 0..200 {
        s.topic(&format!("filler-{i:03}"), &[(1 + i % 3, 1)]);
    }
}

#[tokio::test]
async fn fairleads_own_metadata_names_only_the_topics_its_clients_use() {
    let bed = Bed::start_cold(cluster, |cfg| {
        // Refreshes every 300 ms: each one must name only what is in use at the time.
        cfg.metadata_max_age = Duration::from_millis(300);
        cfg.ready_max_metadata_age = Duration::from_secs(60);
    })
    .await;
    let asks = own_metadata_asks(&bed.fake.received());
    assert!(!asks.is_empty(), "fairlead asked for metadata at start");
    assert!(
        asks.iter().all(|a| a.as_deref() == Some(&[][..])),
        "at start, before any client, fairlead asks for brokers only: {asks:?}"
    );
    assert!(tracked(&bed).is_empty());

    // A request for a topic fairlead does not know: it asks for that topic, and only it.
    let mut c = bed.client(Some(1)).await;
    let r: ProduceResponse = c.call(ApiKey::Produce, PRODUCE_V, &produce("t")).await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    bed.fake
        .wait_for("fairlead's Metadata for t", Duration::from_secs(5), |r| {
            own_metadata_asks(r).contains(&Some(vec!["t".to_string()]))
        })
        .await;
    until(|| tracked(&bed) == ["t"], "fairlead tracks t").await;

    // A client asking for every topic gets every topic; fairlead still tracks only t.
    let mut all = bed.client(None).await;
    let r: MetadataResponse = all
        .call(ApiKey::Metadata, METADATA_V, &metadata_for(None))
        .await;
    assert_eq!(
        r.topics.len(),
        202,
        "the client gets the broker's full answer"
    );
    assert_eq!(tracked(&bed), ["t"]);

    // A client asking for u by name: fairlead tracks it too, and names both from then on.
    let _: MetadataResponse = all
        .call(
            ApiKey::Metadata,
            METADATA_V,
            &metadata_for(Some(&["u".to_string()])),
        )
        .await;
    assert_eq!(tracked(&bed), ["t", "u"]);
    bed.fake
        .wait_for(
            "a periodic refresh naming t and u",
            Duration::from_secs(5),
            |r| {
                own_metadata_asks(r).iter().flatten().any(|a| {
                    let mut a = a.clone();
                    a.sort();
                    a == ["t", "u"]
                })
            },
        )
        .await;
    let asks = own_metadata_asks(&bed.fake.received());
    assert!(
        asks.iter()
            .all(|a| a.as_ref().is_some_and(|a| a.len() <= 2)),
        "fairlead never asked for every topic, nor for one no client used: {asks:?}"
    );
}

#[tokio::test]
async fn topics_no_client_uses_are_forgotten_and_no_longer_asked_for() {
    let bed = Bed::start_cold(cluster, |cfg| {
        cfg.metadata_max_age = Duration::from_millis(200);
        cfg.ready_max_metadata_age = Duration::from_secs(60);
        cfg.metadata_scope.forget_after = Duration::from_millis(1500);
    })
    .await;
    let mut c = bed.client(Some(1)).await;
    let mut u = bed.client(Some(2)).await;
    // t is used throughout; u once.
    let _: ProduceResponse = u.call(ApiKey::Produce, PRODUCE_V, &produce("u")).await;
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        let r: ProduceResponse = c.call(ApiKey::Produce, PRODUCE_V, &produce("t")).await;
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(tracked(&bed), ["t"], "u, unused for 1.5 s, is forgotten");
    let asks = own_metadata_asks(&bed.fake.received());
    assert_eq!(
        asks.last().cloned().flatten().unwrap(),
        ["t"],
        "fairlead no longer asks about u: {asks:?}"
    );
    assert!(
        asks.iter()
            .any(|a| a.as_ref().is_some_and(|a| a.contains(&"u".to_string()))),
        "u was asked for while in use"
    );
    assert!(bed.metric("fairlead_topics_forgotten_total", &[]).await >= 1.0);
    assert_eq!(bed.metric("fairlead_topics_tracked", &[]).await, 1.0);
}

#[tokio::test]
async fn a_flood_of_unknown_topics_holds_nothing_and_costs_a_bounded_number_of_refreshes() {
    let bed = Bed::start_cold(cluster, |cfg| {
        cfg.max_frame_bytes = 16 * 1024 * 1024;
        cfg.metadata_scope.max_topics = 50;
    })
    .await;
    // A client asking for 100,000 topics the cluster does not have gets the broker's answer.
    let unknown: Vec<String> = (0..100_000).map(|i| format!("no-such-{i:06}")).collect();
    let mut c = bed.client(None).await;
    let r: MetadataResponse = c
        .call(ApiKey::Metadata, METADATA_V, &metadata_for(Some(&unknown)))
        .await;
    assert_eq!(r.topics.len(), 100_000);
    assert!(r.topics.iter().all(|t| t.error_code == 3));
    assert!(
        tracked(&bed).is_empty(),
        "nothing the cluster lacks is held"
    );

    // Produce requests naming one unknown topic, as fast as the broker answers for 2 s: at
    // most one refresh per topic per second.
    let own_before = own_metadata_asks(&bed.fake.received()).len();
    let mut p = bed.client(Some(1)).await;
    let start = std::time::Instant::now();
    let mut sent = 0;
    while start.elapsed() < Duration::from_secs(2) {
        let _: ProduceResponse = p
            .call(ApiKey::Produce, PRODUCE_V, &produce("no-such-topic"))
            .await;
        sent += 1;
    }
    let asks = own_metadata_asks(&bed.fake.received())[own_before..].to_vec();
    assert!(sent > 20, "the flood was a flood: {sent} requests");
    assert!(
        (1..=3).contains(&asks.len()),
        "{sent} requests for one unknown topic made {} refreshes",
        asks.len()
    );

    // Requests naming 500 distinct unknown topics: the topics asked about stay under the cap.
    for i in 0..500 {
        let _: ProduceResponse = p
            .call(ApiKey::Produce, PRODUCE_V, &produce(&format!("flood-{i}")))
            .await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let asks = own_metadata_asks(&bed.fake.received());
    let widest = asks
        .iter()
        .map(|a| a.as_ref().map_or(usize::MAX, Vec::len))
        .max()
        .unwrap();
    assert!(widest <= 50, "a refresh named {widest} topics (cap 50)");
    assert!(bed.metric("fairlead_topics_refused_total", &[]).await > 0.0);
    assert!(tracked(&bed).is_empty());
}
