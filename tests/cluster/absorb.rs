//! The product's promise, end to end: unmodified legacy clients pointed at fairlead never see a
//! leadership error while partitions move (moves, a rolling restart, reassignments), and
//! nothing they had acknowledged is lost, duplicated or reordered.

#[path = "../support/mod.rs"]
mod support;

use support::scenario::{self, Outcome, Plan};
use support::{ClientKind, Fairlead};

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
