//! The control: the legacy scenario directly against the brokers, without fairlead.
//!
//! It proves the problem is real on this test bed: with metadata.max.age.ms=1h and retries=0,
//! a producer talking to the brokers directly fails or retries sends when leadership moves, and
//! leadership error codes reach the clients. Without this, a zero through fairlead would mean
//! nothing.

#[path = "../support/mod.rs"]
mod support;

use support::scenario::{self, Plan};
use support::ClientKind;

fn control(name: &str, client: ClientKind) -> scenario::Outcome {
    let _chaos = support::chaos_lock();
    let cluster = support::cluster();
    let plan = Plan::new(name, client);
    let out = scenario::run(&plan, &cluster.bootstrap, support::run_dir(name));
    println!("{}", out.summary());
    assert!(
        out.partition_moves >= 10,
        "leadership moved {} times",
        out.partition_moves
    );
    assert!(
        out.leadership_errors_seen > 0,
        "no leadership error reached a client directly: the control proves nothing\n{}",
        out.summary()
    );
    // The premise of the observer's fetch-gap check, held by the brokers themselves: a Fetch
    // answer's records start at or before the offset asked for.
    assert_eq!(
        out.fetch_gaps,
        0,
        "a broker answered a fetch with records after the offset asked for\n{}",
        out.summary()
    );
    out
}

#[test]
fn legacy_java_clients_talking_directly_to_the_brokers_see_leadership_errors() {
    if support::skip_without_testbed() {
        return;
    }
    let out = control("control-java", ClientKind::Java);
    assert!(
        out.legacy_errors_and_retries() > 0.0,
        "the legacy producer saw no error and no retry: the control proves nothing\n{}",
        out.summary()
    );
}

#[test]
fn legacy_librdkafka_clients_talking_directly_to_the_brokers_see_leadership_errors() {
    if support::skip_without_testbed() {
        return;
    }
    // librdkafka keeps no per-record retry metric for these: the observer's count is the proof.
    control("control-librdkafka", ClientKind::Librdkafka);
}
