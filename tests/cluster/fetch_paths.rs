//! Fetch paths beyond "fetch from the leader": rack-aware follower fetching (KIP-392).

#[path = "../support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::observer::{Observer, LEADERSHIP_CODES};
use support::{Admin, ClientKind, ClientProc, Fairlead};

/// A consumer with client.rack fetches from the follower in its rack; when that follower loses
/// its replica (reassignment), the consumer sees no error and no stall beyond a fetch wait.
#[test]
fn a_rack_aware_consumer_survives_its_follower_losing_the_replica() {
    if support::skip_without_testbed() {
        return;
    }
    let _chaos = support::chaos_lock();
    let cluster = support::cluster();
    let dir = support::run_dir("rack-aware");
    let fairlead = Fairlead::start(&cluster.bootstrap, &dir, &[]);
    let mut admin = Admin::connect(&cluster.bootstrap);
    let topic = support::unique("rack");
    // Leader 1, follower 2; brokers are in racks rack-1, rack-2, rack-3.
    admin.call(json!({"op": "create-topic", "topic": topic, "assignment": {"0": [1, 2]}, "configs": {"min.insync.replicas": "1"}}));

    let observer = Observer::start(&fairlead.bootstrap).unwrap();
    let mut producer = ClientProc::producer(
        ClientKind::Java,
        &dir,
        "p",
        &cluster.bootstrap,
        &topic,
        50,
        &[("acks", "all")],
    );
    let mut consumer = ClientProc::consumer(
        ClientKind::Java,
        &dir,
        "c",
        &observer.bootstrap(),
        &[&topic],
        Some(&support::unique("rack-group")),
        &[
            ("client.rack", "rack-2"),
            ("metadata.max.age.ms", "3600000"),
        ],
    );
    producer.wait_records(20, Duration::from_secs(60));
    consumer.wait_records(20, Duration::from_secs(60));
    // Give the consumer time to switch to its preferred (rack-2) replica.
    std::thread::sleep(Duration::from_secs(3));
    let absorbed_before = fairlead.metric(
        "fairlead_errors_absorbed_total",
        &[("api", "Fetch"), ("code", "6")],
    );

    admin.reassign(&topic, 0, &[1, 3]);
    let moved = Instant::now();
    let acked_at_move = support::read_acked(&producer.data).len();
    // Records produced after the reassignment reach the consumer promptly.
    let deadline = moved + Duration::from_secs(20);
    let caught_up = loop {
        let acked = support::read_acked(&producer.data);
        let consumed = support::read_consumed(&consumer.data, &topic, "p");
        let newest_consumed = consumed.iter().map(|c| c.seq).max().unwrap_or(0) as usize;
        if acked.len() > acked_at_move + 50 && newest_consumed > acked_at_move + 25 {
            break moved.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "the consumer stalled after its follower lost the replica\n{}",
            observer.report()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let p = producer.stop();
    let c = consumer.stop();
    println!(
        "caught up {caught_up:?} after the reassignment; producer {p}; consumer {c}\n{}",
        observer.report()
    );
    assert_eq!(
        observer.count(&LEADERSHIP_CODES),
        0,
        "a leadership error reached the consumer\n{}",
        observer.report()
    );
    let absorbed = fairlead.metric(
        "fairlead_errors_absorbed_total",
        &[("api", "Fetch"), ("code", "6")],
    ) - absorbed_before;
    assert!(absorbed > 0.0, "the follower's NOT_LEADER_OR_FOLLOWER never came (was the consumer fetching from rack-2?)\n{}", support::tail(&fairlead.log, 3000));
    let v = support::verify(
        &support::read_acked(&dir.join("p.acked")),
        &support::read_consumed(&dir.join("c.consumed"), &topic, "p"),
    );
    assert!(v.lossless(), "records missing: {:?}", v.missing);
}
