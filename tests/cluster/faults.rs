//! Upstream faults: brokers killed with SIGKILL or frozen while requests are in flight, and
//! fairlead itself restarting. Nothing acknowledged is lost, idempotent writes are never lost,
//! duplicated or reordered, and no success is ever faked.

#[path = "../support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::observer::{Observer, LEADERSHIP_CODES};
use support::scenario::{self, Plan};
use support::{Admin, ClientKind, ClientProc, Fairlead};

#[test]
fn brokers_killed_with_sigkill_during_the_acceptance_scenario_lose_nothing() {
    if support::skip_without_testbed() {
        return;
    }
    let _chaos = support::chaos_lock();
    let cluster = support::cluster();
    let dir = support::run_dir("faults-kill9");
    let fairlead = Fairlead::start(
        &cluster.bootstrap,
        &dir,
        &["--log-level", "info,fairlead::router=debug"],
    );
    let mut plan = Plan::new("faults-kill9", ClientKind::Java);
    plan.move_rounds = 24;
    plan.move_interval = Duration::from_millis(1000);
    plan.reassignments = 2;
    plan.idempotent_producer = true;
    // A broker killed with SIGKILL about every minute (the moves, restarts and waits between).
    plan.kill_restart_rounds = vec![4, 16];
    let out = scenario::run(&plan, &fairlead.bootstrap, dir);
    let ctx = format!(
        "{}\n--- fairlead log tail ---\n{}",
        out.summary(),
        support::tail(&fairlead.log, 5000)
    );
    println!("{ctx}");
    assert_eq!(
        out.leadership_errors_seen, 0,
        "leadership errors reached clients\n{ctx}"
    );
    assert_eq!(out.fetch_gaps, 0, "fetch answers skipped records\n{ctx}");
    for (run, topic, v) in &out.verdicts {
        if run.starts_with("idem") {
            assert!(v.exactly_once_in_order(), "{run} on {topic}: {v:?}\n{ctx}");
        } else {
            assert!(
                v.lossless(),
                "{run} on {topic}: acknowledged records missing {:?}\n{ctx}",
                v.missing
            );
        }
    }
    for (name, s) in &out.idempotent {
        assert_eq!(
            scenario::num(&s["failed"]),
            0.0,
            "{name}: idempotent sends in flight to a killed broker are replayed\n{ctx}"
        );
    }
    // A legacy (non-idempotent) send in flight to a killed broker has an unknown outcome: the
    // client may get a retriable error (never a fake success, checked above by losslessness).
    for (name, s) in &out.legacy {
        let errors = s["errors"].as_object().cloned().unwrap_or_default();
        for (e, _) in errors {
            assert!(
                ["NetworkException", "TimeoutException"].contains(&e.as_str()),
                "{name}: {e} is not a retriable connection error\n{ctx}"
            );
        }
    }
}

#[test]
fn a_frozen_leader_is_timed_out_and_its_partitions_served_by_the_new_leader() {
    if support::skip_without_testbed() {
        return;
    }
    let _chaos = support::chaos_lock();
    let cluster = support::cluster();
    let dir = support::run_dir("faults-frozen");
    let fairlead = Fairlead::start(
        &cluster.bootstrap,
        &dir,
        &["--log-level", "info,fairlead::router=debug"],
    );
    let mut admin = Admin::connect_with(&cluster.bootstrap, &[("request.timeout.ms", "3000")]);
    let controller = admin.call(json!({"op": "quorum"}))["leader"]
        .as_i64()
        .unwrap() as i32;
    let frozen = (1..=3).find(|n| *n != controller).unwrap();
    let topic = support::unique("frozen");
    admin.create_topic(&topic, 6, 3);
    let observer = Observer::start(&fairlead.bootstrap).unwrap();
    let mut p = ClientProc::producer(
        ClientKind::Java,
        &dir,
        "p",
        &observer.bootstrap(),
        &topic,
        200,
        &[
            ("acks", "all"),
            ("enable.idempotence", "true"),
            ("metadata.max.age.ms", "3600000"),
        ],
    );
    p.wait_records(100, Duration::from_secs(60));
    // Freeze a broker: it keeps its connections and answers nothing. After the session timeout
    // (6 s on the test bed) the controller fences it and its partitions get new leaders.
    support::testbed(&["pause", &frozen.to_string()]);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(12));
    support::testbed(&["resume", &frozen.to_string()]);
    let acked_at_resume = support::read_acked(&p.data).len();
    p.wait_records(acked_at_resume + 200, Duration::from_secs(60));
    let s = p.stop();
    admin.wait_healthy(&[&topic]);
    println!(
        "frozen node {frozen} for {:?}; producer {s}\n{}",
        t0.elapsed(),
        observer.report()
    );
    assert_eq!(
        s["failed"],
        json!(0),
        "{s}\n{}",
        support::tail(&fairlead.log, 4000)
    );
    assert_eq!(
        observer.count(&LEADERSHIP_CODES),
        0,
        "{}",
        observer.report()
    );
    let mut c = ClientProc::consumer(
        ClientKind::Java,
        &dir,
        "c",
        &cluster.bootstrap,
        &[&topic],
        None,
        &[],
    );
    let acked = support::read_acked(&dir.join("p.acked"));
    c.wait_records(acked.len(), Duration::from_secs(60));
    c.stop();
    let v = support::verify(
        &acked,
        &support::read_consumed(&dir.join("c.consumed"), &topic, "p"),
    );
    assert!(v.exactly_once_in_order(), "{v:?}");
}

#[test]
fn clients_reconnect_and_carry_on_when_fairlead_restarts() {
    if support::skip_without_testbed() {
        return;
    }
    let _chaos = support::chaos_lock();
    let cluster = support::cluster();
    let dir = support::run_dir("faults-restart");
    let listen = support::free_port_block(8);
    let admin_port = support::free_port_block(0);
    let mut fairlead = Fairlead::start_on(&cluster.bootstrap, &dir, listen, admin_port, &[]);
    let mut admin = Admin::connect(&cluster.bootstrap);
    let topic = support::unique("restart");
    admin.create_topic(&topic, 6, 3);
    let mut p = ClientProc::producer(
        ClientKind::Java,
        &dir,
        "p",
        &fairlead.bootstrap,
        &topic,
        200,
        &[("acks", "all")],
    );
    let mut c = ClientProc::consumer(
        ClientKind::Java,
        &dir,
        "c",
        &fairlead.bootstrap,
        &[&topic],
        Some(&support::unique("g")),
        &[],
    );
    p.wait_records(100, Duration::from_secs(60));
    c.wait_records(100, Duration::from_secs(60));
    assert!(fairlead.terminate().success());
    std::thread::sleep(Duration::from_secs(1));
    let fairlead = Fairlead::start_on(&cluster.bootstrap, &dir, listen, admin_port, &[]);
    let acked = support::read_acked(&p.data).len();
    p.wait_records(acked + 400, Duration::from_secs(60));
    let consumed = std::fs::read_to_string(&c.data).unwrap().lines().count();
    c.wait_records(consumed + 400, Duration::from_secs(60));
    let s = p.stop();
    c.stop();
    assert_eq!(
        s["failed"],
        json!(0),
        "the producer retried across the restart: {s}"
    );
    let v = support::verify(
        &support::read_acked(&dir.join("p.acked")),
        &support::read_consumed(&dir.join("c.consumed"), &topic, "p"),
    );
    assert!(v.lossless(), "{:?}", v.missing);
    drop(fairlead);
}
