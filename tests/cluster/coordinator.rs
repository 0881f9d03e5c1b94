//! Coordinator moves (issue #15): the group and transaction coordinators' brokers restarted one
//! by one and killed with SIGKILL, under a Java consumer group (classic and KIP-848
//! `group.protocol=consumer`), a librdkafka consumer group and a transactional Java producer
//! (consume-transform-produce), all real and unmodified, each behind its own strict observer.
//!
//! The control runs them directly against the brokers and must show coordinator errors
//! (COORDINATOR_LOAD_IN_PROGRESS 14, COORDINATOR_NOT_AVAILABLE 15, NOT_COORDINATOR 16) reaching
//! every client; through fairlead none may reach any client, and nothing may be lost: no
//! committed offset, no input record, no transaction ending otherwise than the client asked,
//! exactly-once output. `group.protocol=consumer` needs Kafka 4.x: this file runs on the default
//! 4.1 cluster only (tests/run-all does not run it on 3.9).

#[path = "../support/mod.rs"]
mod support;

use support::coordination::{self, Outcome, Plan};
use support::Fairlead;

#[test]
fn clients_talking_directly_to_the_brokers_see_coordinator_errors() {
    if support::skip_without_testbed() {
        return;
    }
    let _chaos = support::chaos_lock();
    let cluster = support::cluster();
    let name = "coord-control";
    let out = coordination::run(&Plan::new(name), &cluster.bootstrap, support::run_dir(name));
    println!("{}", out.summary());
    let ctx = format!("{}\n{}", out.summary(), out.observer_reports());
    for m in &out.members {
        assert!(
            m.coordinator_errors() > 0,
            "no coordinator error reached {} directly: the control proves nothing for it\n{ctx}",
            m.member.label()
        );
        assert_eq!(
            m.undecodable,
            0,
            "{}: undecodable responses\n{ctx}",
            m.member.label()
        );
    }
    // Kafka's own guarantees (committed offsets, no loss, exactly-once output) must hold
    // directly too, else the verifiers would be judging the brokers, not fairlead. Only how the
    // clients' own calls ended may differ.
    for m in &out.members {
        let broken: Vec<&String> = m
            .violations
            .iter()
            .filter(|v| !v.contains("did not end as the client asked"))
            .collect();
        assert!(
            broken.is_empty(),
            "{}: the verifiers fail directly against the brokers: {broken:?}\n{ctx}",
            m.member.label()
        );
    }
}

fn assert_absorbed(out: &Outcome, fairlead: &Fairlead) {
    let ctx = format!(
        "{}\n{}\n--- fairlead log tail ---\n{}",
        out.summary(),
        out.observer_reports(),
        support::tail(&fairlead.log, 6000)
    );
    let mut failures = Vec::new();
    for m in &out.members {
        let label = m.member.label();
        if m.coordinator_errors() > 0 {
            failures.push(format!(
                "{label}: {} coordinator errors reached the client: {}",
                m.coordinator_errors(),
                m.coordinator_errors_text()
            ));
        }
        if m.commit_failures() > 0 {
            failures.push(format!(
                "{label}: {} commit failures: {}",
                m.commit_failures(),
                m.summary["commit_exceptions"]
            ));
        }
        if m.undecodable > 0 {
            failures.push(format!("{label}: {} undecodable responses", m.undecodable));
        }
        for v in &m.violations {
            failures.push(format!("{label}: {v}"));
        }
    }
    assert!(
        failures.is_empty(),
        "through fairlead:\n  {}\n{ctx}",
        failures.join("\n  ")
    );
}

#[test]
fn clients_through_fairlead_never_see_coordinator_errors() {
    if support::skip_without_testbed() {
        return;
    }
    let _chaos = support::chaos_lock();
    let cluster = support::cluster();
    let name = "coord-absorb";
    let dir = support::run_dir(name);
    let fairlead = Fairlead::start(&cluster.bootstrap, &dir, &["--log-level", "info"]);
    let out = coordination::run(&Plan::new(name), &fairlead.bootstrap, dir);
    println!("{}", out.summary());
    // Clean clients are only proof if the moves happened to them: fairlead must have absorbed
    // coordinator errors (the control shows how many reach clients directly).
    let metrics = fairlead.metrics();
    let mut absorbed = Vec::new();
    for code in ["14", "15", "16"] {
        let n = support::metric_sum(
            &metrics,
            "fairlead_errors_absorbed_total",
            &[("code", code)],
        );
        absorbed.push(format!("{code}: {n}"));
    }
    let total = support::metric_sum(
        &metrics,
        "fairlead_errors_absorbed_total",
        &[("code", "16")],
    ) + support::metric_sum(
        &metrics,
        "fairlead_errors_absorbed_total",
        &[("code", "15")],
    ) + support::metric_sum(
        &metrics,
        "fairlead_errors_absorbed_total",
        &[("code", "14")],
    );
    println!(
        "coordinator errors absorbed by fairlead, by code: {}",
        absorbed.join(", ")
    );
    assert!(
        total > 0.0,
        "fairlead absorbed no coordinator error: the chaos did not reach the clients\n{}",
        out.summary()
    );
    assert_absorbed(&out, &fairlead);
}

// The verifiers themselves, on made-up files: each must catch what it is there to catch, or a
// green run would prove nothing.
