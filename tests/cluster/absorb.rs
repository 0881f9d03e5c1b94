//! The product's promise, end to end: unmodified legacy clients pointed at fairlead never see a
//! leadership error while partitions move (moves, a rolling restart, reassignments), and
//! nothing they had acknowledged is lost, duplicated or reordered.

#[path = "../support/mod.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;
use support::observer::{Observer, LEADERSHIP_CODES};
use support::scenario::{self, Outcome, Plan};
use support::{Admin, ClientKind, ClientProc, Fairlead};

fn through_fairlead(name: &str, client: ClientKind, rolling_restart: bool) -> (Outcome, Fairlead) {
    let cluster = support::cluster();
    let dir = support::run_dir(name);
    let fairlead = Fairlead::start(
        &cluster.bootstrap,
        &dir,
        &["--log-level", "info,fairlead::router=debug"],
    );
    let mut plan = Plan::new(name, client);
    plan.move_rounds = 20;
    plan.move_interval = std::time::Duration::from_millis(1000);
    plan.rolling_restart = rolling_restart;
    plan.reassignments = 2;
    plan.idempotent_producer = true;
    let out = scenario::run(&plan, &fairlead.bootstrap, dir);
    println!("{}", out.summary());
    (out, fairlead)
}

fn assert_absorbed(out: &Outcome, fairlead: &Fairlead) {
    let ctx = format!(
        "{}\n--- fairlead log tail ---\n{}",
        out.summary(),
        support::tail(&fairlead.log, 6000)
    );
    assert!(
        out.partition_moves >= 20,
        "only {} partition moves\n{ctx}",
        out.partition_moves
    );
    assert_eq!(
        out.leadership_errors_seen, 0,
        "leadership errors reached clients through fairlead\n{ctx}"
    );
    assert_eq!(
        out.fetch_gaps, 0,
        "fetch answers skipped records the consumer asked for\n{ctx}"
    );
    for (name, s) in out.legacy.iter().chain(&out.idempotent) {
        assert_eq!(
            scenario::num(&s["failed"]),
            0.0,
            "{name} had failed sends\n{ctx}"
        );
        assert_eq!(
            scenario::num(&s["record_error_total"]),
            0.0,
            "{name} record-error-total\n{ctx}"
        );
        assert_eq!(
            scenario::num(&s["record_retry_total"]),
            0.0,
            "{name} record-retry-total\n{ctx}"
        );
    }
    for (run, topic, v) in &out.verdicts {
        if run.starts_with("idem") {
            assert!(
                v.exactly_once_in_order(),
                "{run} on {topic}: not exactly once in order: {v:?}\n{ctx}"
            );
        } else {
            assert!(
                v.lossless(),
                "{run} on {topic}: acknowledged records missing: {:?}\n{ctx}",
                v.missing
            );
        }
        assert!(
            v.acked > 100,
            "{run} on {topic}: only {} records acknowledged\n{ctx}",
            v.acked
        );
    }
    let absorbed = fairlead.metric("fairlead_errors_absorbed_total", &[]);
    let rerouted = fairlead.metric("fairlead_reroutes_total", &[]);
    assert!(
        absorbed + rerouted > 0.0,
        "fairlead neither absorbed nor rerouted anything: the chaos did not reach it\n{ctx}"
    );
    println!(
        "fairlead absorbed {absorbed} leadership errors and rerouted {rerouted} partition requests"
    );
}

#[test]
fn java_clients_through_fairlead_never_see_leadership_errors() {
    if support::skip_without_testbed() {
        return;
    }
    let _chaos = support::chaos_lock();
    let (out, fairlead) = through_fairlead("absorb-java", ClientKind::Java, true);
    assert_absorbed(&out, &fairlead);
}

#[test]
fn librdkafka_clients_through_fairlead_never_see_leadership_errors() {
    if support::skip_without_testbed() {
        return;
    }
    let _chaos = support::chaos_lock();
    let (out, fairlead) = through_fairlead("absorb-librdkafka", ClientKind::Librdkafka, false);
    assert_absorbed(&out, &fairlead);
}

/// Issue 20, item 6, on the real cluster: two applications in one pod, both idempotent Java
/// producers with the same client.id from the same address, produce through one fairlead to
/// one partition while its leader moves. Each must keep its own lane: its records exactly once
/// in order, and never a batch of one on a broker connection carrying the other's (the lane
/// keyed by the producer id and epoch of the batch, `router::lanes`). The broker side of
/// fairlead is watched by an observer: fairlead bootstraps from it, so every connection it makes
/// to a broker goes through it, and it names the producer ids of the batches each one carried.
///
/// Whether one producer's batches waited on the other's replay is not asserted here: both are
/// replayed at the same moves, to the same leader, so a wait of one's own and one on the other
/// cannot be told apart on a real cluster (the fake broker test
/// `producers_sharing_an_address_and_client_id_do_not_share_lanes` holds one answer alone and
/// asserts it). The producers' own round-trip figures are printed.
#[test]
fn producers_with_one_client_id_keep_their_own_lanes_and_broker_connections() {
    if support::skip_without_testbed() {
        return;
    }
    const CLIENT_ID: &str = "producer-1";
    const RATE: u32 = 200;
    const MOVES: usize = 6;
    let _chaos = support::chaos_lock();
    let started = std::time::Instant::now();
    let cluster = support::cluster();
    let dir = support::run_dir("absorb-one-client-id");
    let mut admin = Admin::connect(&cluster.bootstrap);
    let topic = support::unique("one-client-id");
    admin.create_topic(&topic, 1, 3);
    let brokers_side = Observer::start(&cluster.bootstrap).expect("start the observer");
    let fairlead = Fairlead::start(
        &brokers_side.bootstrap(),
        &dir,
        &["--log-level", "info,fairlead::router=debug"],
    );
    // Unmodified idempotent producers (the client's defaults besides the client id), which do
    // not refresh metadata on their own for the length of the test: they keep sending to the
    // first leader, and fairlead reroutes.
    let props = [
        ("client.id", CLIENT_ID),
        ("acks", "all"),
        ("enable.idempotence", "true"),
        ("max.in.flight.requests.per.connection", "5"),
        ("metadata.max.age.ms", "3600000"),
    ];
    let runs = ["app-a", "app-b"];
    let mut producers: Vec<ClientProc> = runs
        .iter()
        .map(|run| {
            ClientProc::producer(
                ClientKind::Java,
                &dir,
                run,
                &fairlead.bootstrap,
                &topic,
                RATE,
                &props,
            )
        })
        .collect();
    for p in &mut producers {
        p.wait_records(50, Duration::from_secs(90));
    }
    let mut leaders = Vec::new();
    for _ in 0..MOVES {
        let m = admin.move_leader(&topic, 0);
        leaders.push(m["new_leader"].as_i64().unwrap_or(-1));
        std::thread::sleep(Duration::from_millis(2000));
    }
    let summaries: Vec<(String, Value)> = runs
        .iter()
        .zip(producers)
        .map(|(run, p)| (run.to_string(), p.stop()))
        .collect();
    let consumer = ClientProc::consumer(
        ClientKind::Java,
        &dir,
        "consumer",
        &cluster.bootstrap,
        &[&topic],
        None,
        &[],
    );
    let consumed_path = consumer.data.clone();
    let consumer_summary = consumer.stop();

    let conns = brokers_side.producing_connections();
    let log = fairlead.log_text();
    let ctx = format!(
        "producers: {summaries:?}\nconsumer: {consumer_summary}\nleaders after each move: \
         {leaders:?}\nfairlead's broker connections that carried batches: {conns:#?}\n{}\n\
         --- fairlead log tail ---\n{}",
        brokers_side.report(),
        support::tail(&fairlead.log, 6000)
    );
    for (run, s) in &summaries {
        let v = support::verify(
            &support::read_acked(&dir.join(format!("{run}.acked"))),
            &support::read_consumed(&consumed_path, &topic, run),
        );
        println!(
            "{run}: acked {} missing {} duplicated {} out-of-order {}; Produce round trip avg \
             {:.1} ms, max {:.0} ms",
            v.acked,
            v.missing.len(),
            v.duplicated.len(),
            v.out_of_order.len(),
            scenario::num(&s["request_latency_avg"]),
            scenario::num(&s["request_latency_max"]),
        );
        assert!(
            v.exactly_once_in_order(),
            "{run}: not exactly once in order: {v:?}\n{ctx}"
        );
        assert!(
            v.acked > 1000,
            "{run}: only {} acknowledged\n{ctx}",
            v.acked
        );
        for counter in ["failed", "record_error_total", "record_retry_total"] {
            assert_eq!(scenario::num(&s[counter]), 0.0, "{run}: {counter}\n{ctx}");
        }
    }

    // The moves reached fairlead: the brokers answered it with leadership errors, or it sent
    // batches to a leader other than the one the producers address.
    let absorbed = fairlead.metric("fairlead_errors_absorbed_total", &[]);
    let rerouted = fairlead.metric("fairlead_reroutes_total", &[]);
    assert!(
        absorbed + rerouted > 0.0,
        "fairlead neither absorbed nor rerouted anything: the moves did not reach it\n{ctx}"
    );

    // No broker connection of fairlead's carried batches of two producers.
    for c in &conns {
        assert!(
            c.producers.len() == 1 && !c.producers.contains_key(&-1),
            "connection {} to {} carried batches of producers {:?}\n{ctx}",
            c.serial,
            c.upstream,
            c.producers
        );
    }
    // Both producers' batches went to one broker at some point (on connections of their own):
    // where sharing a connection was possible, it did not happen.
    let mut by_broker: BTreeMap<&str, BTreeSet<i64>> = BTreeMap::new();
    for c in &conns {
        by_broker
            .entry(&c.upstream)
            .or_default()
            .extend(c.producers.keys());
    }
    let ids: BTreeSet<i64> = by_broker.values().flatten().copied().collect();
    assert!(ids.len() >= 2, "producer ids seen: {ids:?}\n{ctx}");
    assert!(
        by_broker.values().any(|p| p.len() >= 2),
        "the producers never wrote to the same broker: {by_broker:?}\n{ctx}"
    );

    let lane_waits = log
        .matches("held a batch until its partition's earlier batches were resolved")
        .count();
    println!(
        "one client id, two producers: {} leader moves (leaders {leaders:?}); fairlead absorbed \
         {absorbed} leadership errors and rerouted {rerouted} partition requests; the brokers \
         answered fairlead with {} leadership errors; {lane_waits} batches waited for their lane to \
         drain; {} broker connections carried batches, producer ids per broker {by_broker:?}; \
         {:.1} s",
        leaders.len(),
        brokers_side.count(&LEADERSHIP_CODES),
        conns.len(),
        started.elapsed().as_secs_f64()
    );
}
