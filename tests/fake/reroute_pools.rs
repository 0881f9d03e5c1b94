//! The connections that carry rerouted requests are shared by the client connections of one
//! identity (issue 20): a few per broker, whatever the number of client connections; one per
//! producer, never two producers' batches on one; never across principals; closed once idle;
//! and no client waits behind another's slow request. The fake brokers record every connection they accept and
//! when it ends.

#[path = "../support/fake.rs"]
mod fake;
#[path = "../support/fake_bed.rs"]
mod fake_bed;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use fake::ProduceAnswer;
use fake_bed::*;

const GAUGE: &str = "fairlead_upstream_reroute_connections";

/// A produce of one batch to u/0 (led by node 2), from producer id `pid`: its own lane, so
/// lanes do not pin the batches of different clients to one connection.
fn produce_u0(pid: i64) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("u")))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(fake::batch(pid, 0, &["v"])))])])
}

fn code(r: &ProduceResponse) -> i16 {
    r.responses[0].partition_responses[0].error_code
}

/// The connections at node 2 that carried client produce requests.
fn produce_conns_at_2(bed: &Bed) -> BTreeSet<u64> {
    bed.fake
        .client_requests(2, ApiKey::Produce)
        .iter()
        .map(|r| r.conn)
        .collect()
}

/// `n` clients on node 1's port each send one produce for u/0 at once, client `i` as producer
/// `pid(i)`; all answered.
async fn burst(bed: &Bed, n: i64, pid: impl Fn(i64) -> i64) {
    let mut clients = Vec::new();
    for i in 0..n {
        let mut c = bed.client(Some(1)).await;
        let corr = c.send(ApiKey::Produce, 9, &produce_u0(pid(i))).await;
        clients.push((c, corr));
    }
    for (mut c, corr) in clients {
        let (got, r): (i32, ProduceResponse) = decode_response(&c.recv().await, ApiKey::Produce, 9);
        assert_eq!(got, corr);
        assert_eq!(code(&r), 0);
    }
}

/// The producer id of a recorded produce request's first batch.
fn pid_of(r: &fake::Received) -> i64 {
    r.produce().topic_data[0].partition_data[0]
        .records
        .as_ref()
        .map(|b| i64::from_be_bytes(b[43..51].try_into().unwrap()))
        .unwrap()
}

/// The producers whose batches each connection at node 2 carried.
fn producers_by_conn_at_2(bed: &Bed) -> BTreeMap<u64, BTreeSet<i64>> {
    let mut by: BTreeMap<u64, BTreeSet<i64>> = BTreeMap::new();
    for r in bed.fake.client_requests(2, ApiKey::Produce) {
        by.entry(r.conn).or_default().insert(pid_of(&r));
    }
    by
}

/// 16 client connections of 4 producers reroute to node 2 at once: one broker connection per
/// producer, not per client connection, each carrying that producer's batches only; a second
/// burst from new client connections of the same producers goes on the same connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_connections_rerouting_to_one_broker_share_one_connection_per_producer() {
    let bed = Bed::start_with(
        |s| {
            standard(s);
            // Each answer takes a while: the requests of the burst are in flight together.
            s.produce_always(
                2,
                "u",
                0,
                ProduceAnswer::ok(0).delayed(Duration::from_millis(150)),
            );
        },
        |c| c.reroute_connections.per_broker = 4,
    )
    .await;
    burst(&bed, 16, |i| 100 + i % 4).await;
    assert_eq!(bed.fake.client_requests(2, ApiKey::Produce).len(), 16);
    let first = producers_by_conn_at_2(&bed);
    assert_eq!(
        first.values().cloned().collect::<BTreeSet<_>>(),
        (100..104)
            .map(|p| BTreeSet::from([p]))
            .collect::<BTreeSet<_>>(),
        "16 client connections of 4 producers: one broker connection each, never shared: \
         {first:?}"
    );
    assert_eq!(bed.metric(GAUGE, &[]).await, 4.0);

    burst(&bed, 16, |i| 100 + i % 4).await;
    let all = producers_by_conn_at_2(&bed);
    assert_eq!(all, first, "the second burst went on the same connections");
    assert_eq!(bed.metric(GAUGE, &[]).await, 4.0);
}

/// A produce held at the broker (acks=all in purgatory) holds up no other client's request on
/// a shared connection: the next one goes on another connection, opened for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_request_on_a_shared_connection_holds_no_other_client() {
    const HOLD: Duration = Duration::from_millis(1500);
    let bed = Bed::start(|s| {
        standard(s);
        s.produce(2, "u", 0, ProduceAnswer::ok(5));
        s.produce(2, "u", 0, ProduceAnswer::ok(10).delayed(HOLD));
        s.produce(2, "u", 0, ProduceAnswer::ok(20));
    })
    .await;
    // Warm the pool: one connection to node 2, idle, last used by a's producer.
    let mut warm = bed.client(Some(1)).await;
    let r: ProduceResponse = warm.call(ApiKey::Produce, 9, &produce_u0(2)).await;
    assert_eq!(code(&r), 0);

    let mut a = bed.client(Some(1)).await;
    let mut b = bed.client(Some(1)).await;
    let held = a.send(ApiKey::Produce, 9, &produce_u0(2)).await;
    bed.fake
        .wait_for("a's produce at node 2", Duration::from_secs(5), |r| {
            r.iter().filter(|r| r.node == 2 && r.api_key == 0).count() == 2
        })
        .await;
    let asked = Instant::now();
    let r: ProduceResponse = b.call(ApiKey::Produce, 9, &produce_u0(3)).await;
    let took = asked.elapsed();
    assert_eq!(code(&r), 0);
    assert!(
        took < HOLD / 2,
        "b's produce took {took:?}: it waited behind a's ({HOLD:?} at the broker)"
    );
    let (corr, r): (i32, ProduceResponse) = decode_response(&a.recv().await, ApiKey::Produce, 9);
    assert_eq!((corr, code(&r)), (held, 0));
    let at2 = bed.fake.client_requests(2, ApiKey::Produce);
    assert_eq!(at2.len(), 3);
    assert_eq!(
        at2[0].conn, at2[1].conn,
        "a's produce took its producer's idle connection, from another client connection"
    );
    assert_ne!(at2[1].conn, at2[2].conn, "b's went on another one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_shared_connection_is_closed_and_a_busy_one_is_not() {
    const IDLE: Duration = Duration::from_millis(400);
    let bed = Bed::start_with(standard, |c| c.reroute_connections.idle_close = IDLE).await;
    // A request longer than the idle time: its connection stays open while it is in flight.
    bed.fake
        .script()
        .produce(2, "u", 0, ProduceAnswer::ok(0).delayed(IDLE * 3));
    let mut c = bed.client(Some(1)).await;
    let r: ProduceResponse = c.call(ApiKey::Produce, 9, &produce_u0(1)).await;
    assert_eq!(
        code(&r),
        0,
        "answered after {:?} on its connection",
        IDLE * 3
    );
    let conns = produce_conns_at_2(&bed);
    assert_eq!(conns.len(), 1);
    let conn = *conns.iter().next().unwrap();
    assert!(bed.fake.open_connections(2).contains(&conn));
    assert_eq!(bed.metric(GAUGE, &[]).await, 1.0);

    // Unused from now on: closed within the idle time and a quarter.
    let end = Instant::now() + IDLE * 3;
    while bed.fake.open_connections(2).contains(&conn) {
        assert!(
            Instant::now() < end,
            "the reroute connection is still open {:?} after its last use",
            IDLE * 3
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(bed.metric(GAUGE, &[]).await, 0.0);

    // The client connection lives on; its next reroute opens a new connection.
    let r: ProduceResponse = c.call(ApiKey::Produce, 9, &produce_u0(1)).await;
    assert_eq!(code(&r), 0);
    assert_eq!(produce_conns_at_2(&bed).len(), 2);
}

async fn authenticate_plain(c: &mut Client, user: &str, password: &str) {
    let step = format!("\0{user}\0{password}");
    assert_eq!(
        c.authenticate("PLAIN", &[step.as_bytes()]).await,
        0,
        "{user} authenticated"
    );
}

/// SASL passthrough: clients of one principal share reroute connections opened with their
/// credentials; two principals never share one, even with requests in flight together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_principals_never_share_a_reroute_connection() {
    let bed = Bed::start_with(
        |s| {
            standard(s);
            s.users.insert("alice".into(), "alice-secret".into());
            s.users.insert("bob".into(), "bob-secret".into());
            s.users.insert("fairlead".into(), "fairlead-secret".into());
            s.produce_always(
                2,
                "u",
                0,
                ProduceAnswer::ok(0).delayed(Duration::from_millis(100)),
            );
        },
        plain_passthrough,
    )
    .await;
    let mut clients = Vec::new();
    for (i, user) in ["alice", "bob", "alice", "bob", "alice", "bob"]
        .into_iter()
        .enumerate()
    {
        let mut c = bed.client(Some(1)).await;
        authenticate_plain(&mut c, user, &format!("{user}-secret")).await;
        clients.push((user, i as i64, c));
    }
    // All at once, then one after another.
    let mut sent = Vec::new();
    for (_, pid, c) in clients.iter_mut() {
        sent.push(c.send(ApiKey::Produce, 9, &produce_u0(*pid)).await);
    }
    for ((_, _, c), corr) in clients.iter_mut().zip(sent) {
        let (got, r): (i32, ProduceResponse) = decode_response(&c.recv().await, ApiKey::Produce, 9);
        assert_eq!((got, code(&r)), (corr, 0));
    }
    for (_, pid, c) in clients.iter_mut() {
        let r: ProduceResponse = c.call(ApiKey::Produce, 9, &produce_u0(*pid)).await;
        assert_eq!(code(&r), 0);
    }

    let at2 = bed.fake.client_requests(2, ApiKey::Produce);
    assert_eq!(at2.len(), 12);
    let conns_of = |user: &str| -> BTreeSet<u64> {
        at2.iter()
            .filter(|r| r.principal.as_deref() == Some(user))
            .map(|r| r.conn)
            .collect()
    };
    assert!(
        at2.iter()
            .all(|r| matches!(r.principal.as_deref(), Some("alice" | "bob"))),
        "every rerouted request on a connection authenticated as a client"
    );
    let (alice, bob) = (conns_of("alice"), conns_of("bob"));
    assert!(alice.is_disjoint(&bob), "alice {alice:?}, bob {bob:?}");
    // Each request's producer id says whose it was: on its own principal's connection.
    for r in &at2 {
        let pid = pid_of(r);
        let user = if pid % 2 == 0 { "alice" } else { "bob" };
        assert_eq!(
            r.principal.as_deref(),
            Some(user),
            "producer {pid}'s request"
        );
    }
    assert!(
        alice.len() <= 3 && bob.len() <= 3,
        "each principal's 3 producers x 2 requests: one connection per producer: alice \
         {alice:?}, bob {bob:?}"
    );
}
