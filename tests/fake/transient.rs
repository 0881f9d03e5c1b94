//! Transient produce errors (issue 24): NOT_ENOUGH_REPLICAS (19), raised before the append, is
//! sent again for every producer (a non-idempotent batch only when nothing of its partition is
//! in flight behind it); NOT_ENOUGH_REPLICAS_AFTER_APPEND (20) and REQUEST_TIMED_OUT (7), raised
//! after it, only for idempotent and transactional producers. Each within the absorb budget,
//! in partition order, counted by code.

#[path = "../support/fake.rs"]
mod fake;
#[path = "../support/fake_bed.rs"]
mod fake_bed;

use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use fake::ProduceAnswer;
use fake_bed::*;

const V: i16 = 9;

fn produce(records: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])])
}

fn code(r: &ProduceResponse) -> i16 {
    r.responses[0].partition_responses[0].error_code
}

/// The records of every produce for t/0 node 1 received, in arrival order.
fn sent(bed: &Bed) -> Vec<Bytes> {
    bed.fake
        .client_requests(1, ApiKey::Produce)
        .iter()
        .flat_map(|r| r.produce_parts())
        .filter(|(t, p, _)| t == "t" && *p == 0)
        .map(|(_, _, records)| records)
        .collect()
}

async fn absorbed(bed: &Bed, code: &str) -> f64 {
    bed.metric(
        "fairlead_errors_absorbed_total",
        &[("api", "Produce"), ("code", code)],
    )
    .await
}

async fn passed(bed: &Bed, code: &str) -> f64 {
    bed.metric(
        "fairlead_errors_passed_through_total",
        &[("api", "Produce"), ("code", code)],
    )
    .await
}

#[tokio::test]
async fn not_enough_replicas_is_sent_again_for_idempotent_and_lone_batches() {
    for (what, records) in [
        ("idempotent", fake::batch(7, 0, &["a"])),
        ("non-idempotent, alone", fake::batch(-1, -1, &["a"])),
    ] {
        let bed = Bed::start(|s| {
            standard(s);
            s.produce(1, "t", 0, ProduceAnswer::error(19, -1));
            s.produce(1, "t", 0, ProduceAnswer::error(19, -1));
        })
        .await;
        let before = absorbed(&bed, "19").await;
        let mut c = bed.client(Some(1)).await;
        let r: ProduceResponse = c.call(ApiKey::Produce, V, &produce(records.clone())).await;
        assert_eq!(code(&r), 0, "{what}: absorbed");
        assert_eq!(
            sent(&bed),
            vec![records.clone(); 3],
            "{what}: the same bytes to the same leader until it took them"
        );
        assert_eq!(absorbed(&bed, "19").await - before, 1.0, "{what}");
    }
}

#[tokio::test]
async fn a_non_idempotent_batch_with_a_later_one_in_flight_gets_not_enough_replicas() {
    let bed = Bed::start(|s| {
        standard(s);
        s.produce(
            1,
            "t",
            0,
            ProduceAnswer::error(19, -1).delayed(Duration::from_millis(300)),
        );
        s.produce(1, "t", 0, ProduceAnswer::ok(0));
    })
    .await;
    let before = passed(&bed, "19").await;
    let mut c = bed.client(Some(1)).await;
    let first = fake::batch(-1, -1, &["first"]);
    let second = fake::batch(-1, -1, &["second"]);
    let c1 = c.send(ApiKey::Produce, V, &produce(first.clone())).await;
    let c2 = c.send(ApiKey::Produce, V, &produce(second.clone())).await;
    let (g1, r1): (i32, ProduceResponse) = decode_response(&c.recv().await, ApiKey::Produce, V);
    let (g2, r2): (i32, ProduceResponse) = decode_response(&c.recv().await, ApiKey::Produce, V);
    assert_eq!((g1, g2), (c1, c2));
    assert_eq!(
        (code(&r1), code(&r2)),
        (19, 0),
        "the second batch was appended while the first waited: re-sending the first would put it after the second"
    );
    assert_eq!(sent(&bed), vec![first, second], "nothing sent again");
    assert_eq!(passed(&bed, "19").await - before, 1.0);
}

#[tokio::test]
async fn errors_after_the_append_are_sent_again_only_for_idempotent_batches() {
    for code_after in [20, 7] {
        let bed = Bed::start(|s| {
            standard(s);
            s.produce(1, "t", 0, ProduceAnswer::error(code_after, 12));
        })
        .await;
        let label = code_after.to_string();
        let mut c = bed.client(Some(1)).await;
        let idempotent = fake::batch(7, 0, &["i"]);
        let r: ProduceResponse = c
            .call(ApiKey::Produce, V, &produce(idempotent.clone()))
            .await;
        assert_eq!(
            code(&r),
            0,
            "{code_after}: the broker de-duplicates the re-send"
        );
        assert_eq!(sent(&bed), vec![idempotent.clone(); 2]);
        assert_eq!(absorbed(&bed, &label).await, 1.0);

        bed.fake
            .script()
            .produce(1, "t", 0, ProduceAnswer::error(code_after, 13));
        let plain = fake::batch(-1, -1, &["p"]);
        let r: ProduceResponse = c.call(ApiKey::Produce, V, &produce(plain.clone())).await;
        assert_eq!(
            code(&r),
            code_after,
            "{code_after}: written already; a re-send would write it twice"
        );
        assert_eq!(sent(&bed), vec![idempotent.clone(), idempotent, plain]);
        assert_eq!(passed(&bed, &label).await, 1.0);
    }
}

#[tokio::test]
async fn past_the_absorb_budget_the_client_gets_not_enough_replicas() {
    let bed = Bed::start(|s| {
        standard(s);
        s.produce_always(1, "t", 0, ProduceAnswer::error(19, -1));
    })
    .await;
    let before = passed(&bed, "19").await;
    let mut c = bed.client(Some(1)).await;
    let started = Instant::now();
    let r: ProduceResponse = c
        .call(ApiKey::Produce, V, &produce(fake::batch(7, 0, &["a"])))
        .await;
    let took = started.elapsed();
    assert_eq!(code(&r), 19);
    let budget = bed.server.cluster.cfg.absorb_timeout;
    assert!(
        took >= budget && took < budget + Duration::from_secs(2),
        "answered at the end of the absorb budget ({budget:?}), took {took:?}"
    );
    assert!(
        sent(&bed).len() >= 3,
        "sent again with back-off, {} times",
        sent(&bed).len()
    );
    assert_eq!(passed(&bed, "19").await - before, 1.0);
}

/// An idempotent producer's two batches in flight: the first refused (19), so the second meets a
/// sequence gap (45). Both are sent again, the first first.
#[tokio::test]
async fn re_sends_keep_the_partition_order() {
    let bed = Bed::start(|s| {
        standard(s);
        s.produce(1, "t", 0, ProduceAnswer::error(19, -1));
        s.produce(1, "t", 0, ProduceAnswer::error(45, -1));
    })
    .await;
    let mut c = bed.client(Some(1)).await;
    let first = fake::batch(7, 0, &["first"]);
    let second = fake::batch(7, 1, &["second"]);
    let c1 = c.send(ApiKey::Produce, V, &produce(first.clone())).await;
    let c2 = c.send(ApiKey::Produce, V, &produce(second.clone())).await;
    let (g1, r1): (i32, ProduceResponse) = decode_response(&c.recv().await, ApiKey::Produce, V);
    let (g2, r2): (i32, ProduceResponse) = decode_response(&c.recv().await, ApiKey::Produce, V);
    assert_eq!((g1, g2), (c1, c2));
    assert_eq!((code(&r1), code(&r2)), (0, 0));
    assert_eq!(
        sent(&bed),
        vec![first.clone(), second.clone(), first, second],
        "each sent again, in the order the producer sent them"
    );
}
