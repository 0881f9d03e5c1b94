//! Rolling bounces of the coordinators' broker (issue #24, item 4): SIGKILL and graceful stops
//! of the broker hosting the group and transaction coordinators, alternating, five times per
//! run, under three Go clients (sarama consumer group with manual commits, franz-go
//! transactional consume-transform-produce, sarama read_committed reader), each behind its own
//! strict observer. See tests/support/rolling.rs for the scenario and what is judged.
//!
//! The control runs once directly against the brokers and must show errors reaching every
//! client. Through fairlead the run is repeated three times in a row (FAIRLEAD_ROLLING_RUNS
//! changes that) with one fairlead, which logs at debug: not one error code, library error,
//! rebalance, duplicate or transaction ended otherwise than asked may reach any client in any
//! run. All runs are done before the verdict, so a failure lists every run's findings. Each
//! run's files (client outputs and logs, the observers' error timelines in report.txt) are in
//! target/test-runs/rolling-*/; fairlead's log is beside the runs.
//!
//! Wall time: a run is five broker restarts, each waited for until every partition is back in
//! full ISR. On the 2-core machine shared with other builds and clusters (load average ~20) a
//! run took 8 to 12 minutes (the control 485 s, the three runs through fairlead 1960 s), most of
//! it broker start-up; FAIRLEAD_ROLLING_RUNS=1 cuts the fairlead test to one run.

#[path = "../support/mod.rs"]
mod support;

use std::time::Duration;

use support::rolling::{self, Plan};
use support::Fairlead;

fn runs() -> usize {
    std::env::var("FAIRLEAD_ROLLING_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

#[test]
fn clients_talking_directly_to_the_brokers_see_errors_during_rolling_bounces() {
    if support::skip_without_testbed() {
        return;
    }
    let _chaos = support::chaos_lock();
    let cluster = support::cluster();
    let name = "rolling-control";
    let out = rolling::run(&Plan::new(name), &cluster.bootstrap, support::run_dir(name));
    println!("{}", out.summary());
    let ctx = format!("{}\n{}", out.summary(), out.observer_reports());
    for c in &out.clients {
        assert!(
            c.visible_errors() > 0,
            "no error reached {} directly: the control proves nothing for it\n{ctx}",
            c.role.label()
        );
        assert_eq!(
            c.undecodable,
            0,
            "{}: undecodable responses\n{ctx}",
            c.role.label()
        );
        // Kafka's own guarantees must hold directly too, else the verifiers would be judging
        // the brokers, not fairlead. Only what the clients' applications met may differ.
        assert!(
            c.broken.is_empty(),
            "{}: the verifiers fail directly against the brokers: {:?}\n{ctx}",
            c.role.label(),
            c.broken
        );
    }
}

#[test]
fn clients_through_fairlead_see_nothing_of_three_rolling_bounce_runs() {
    if support::skip_without_testbed() {
        return;
    }
    let _chaos = support::chaos_lock();
    let cluster = support::cluster();
    let base = support::run_dir("rolling-absorb");
    let fairlead = Fairlead::start(
        &cluster.bootstrap,
        &base,
        &["--log-level", "info,fairlead=debug"],
    );
    let mut failures = Vec::new();
    for i in 1..=runs() {
        let dir = base.join(format!("run-{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let before = rolling::error_counters(&fairlead.metrics());
        let out = rolling::run(
            &Plan::new(&format!("rolling-absorb-{i}")),
            &fairlead.bootstrap,
            dir,
        );
        let after = rolling::error_counters(&fairlead.metrics());
        println!(
            "=== run {i}\n{}fairlead's counters during the run:\n{}",
            out.summary(),
            rolling::counter_deltas(&before, &after)
        );
        // What fairlead said when each error reached a client (its INFO and WARN lines of
        // the second before), also kept beside the run's report.
        let mut said = String::new();
        for c in &out.clients {
            for e in c.visible_events() {
                said.push_str(&format!("{}: {}\n", c.role.label(), e.text));
                let around = rolling::log_around(
                    &fairlead.log,
                    &e.at,
                    Duration::from_secs(1),
                    Duration::from_millis(100),
                );
                for line in around.iter().rev().take(20).rev() {
                    said.push_str(&format!("    fairlead: {line}\n"));
                }
            }
        }
        if !said.is_empty() {
            println!("what fairlead logged as errors reached clients:\n{said}");
            let _ = std::fs::write(out.dir.join("fairlead-context.txt"), &said);
        }
        failures.extend(out.failures().into_iter().map(|f| format!("run {i}: {f}")));
    }
    // Clean clients are only proof if the bounces reached them: fairlead must have absorbed
    // errors (the control shows what reaches clients directly).
    let absorbed = fairlead.metric("fairlead_errors_absorbed_total", &[]);
    assert!(
        absorbed > 0.0,
        "fairlead absorbed no error: the bounces did not reach the clients"
    );
    assert!(
        failures.is_empty(),
        "through fairlead ({} runs; fairlead's log: {}):\n  {}",
        runs(),
        fairlead.log.display(),
        failures.join("\n  ")
    );
}
