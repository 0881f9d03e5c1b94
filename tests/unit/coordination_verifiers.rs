//! The verifiers of the coordinator-move tests (tests/cluster/coordinator.rs), checked on
//! made-up files: each must catch what it is there to catch, or the real test proves nothing.

#[path = "../support/mod.rs"]
mod support;

use support::coordination;

fn txn_log(dir: &std::path::Path, lines: &[serde_json::Value]) -> std::path::PathBuf {
    let p = dir.join("txns");
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&p, text).unwrap();
    p
}

fn out(seqs: &[u64]) -> Vec<support::Consumed> {
    seqs.iter()
        .enumerate()
        .map(|(i, s)| support::Consumed {
            partition: 0,
            offset: i as i64,
            seq: *s,
        })
        .collect()
}

#[test]
fn transaction_verifier_catches_loss_duplicates_leaks_and_input_gaps() {
    use serde_json::json;
    let dir = support::run_dir("coord-verifier-txn");
    let log = txn_log(
        &dir,
        &[
            json!({"txn":0,"intent":"commit","first_seq":0,"records":2,"outcome":"ok","attempts":[],"final":"committed","sources":{"0":[0,1]}}),
            json!({"txn":1,"intent":"abort","first_seq":2,"records":2,"outcome":"ok","attempts":[],"final":"aborted","sources":{"0":[2,3]}}),
            json!({"txn":2,"intent":"commit","first_seq":4,"records":2,"outcome":"ok","attempts":[],"final":"committed","sources":{"0":[2,3]}}),
        ],
    );
    let committed = std::collections::BTreeMap::from([(0, 4)]);
    let (v, asked) = coordination::verify_transactions(&log, &out(&[0, 1, 4, 5]), &committed);
    assert!(v.is_empty() && asked.is_empty(), "{v:?} {asked:?}");

    let (v, _) = coordination::verify_transactions(&log, &out(&[0, 4, 5]), &committed);
    assert!(v.iter().any(|x| x.contains("missing")), "{v:?}");
    let (v, _) = coordination::verify_transactions(&log, &out(&[0, 1, 1, 4, 5]), &committed);
    assert!(v.iter().any(|x| x.contains("more than once")), "{v:?}");
    let (v, _) = coordination::verify_transactions(&log, &out(&[0, 1, 2, 4, 5]), &committed);
    assert!(v.iter().any(|x| x.contains("aborted")), "{v:?}");
    let (v, _) = coordination::verify_transactions(&log, &out(&[0, 1, 4, 5, 9]), &committed);
    assert!(
        v.iter().any(|x| x.contains("no logged transaction")),
        "{v:?}"
    );
    let ahead = std::collections::BTreeMap::from([(0, 6)]);
    let (v, _) = coordination::verify_transactions(&log, &out(&[0, 1, 4, 5]), &ahead);
    assert!(
        v.iter().any(|x| x.contains("committed offset is 6")),
        "{v:?}"
    );

    let gap = txn_log(
        &dir,
        &[
            json!({"txn":0,"intent":"commit","first_seq":0,"records":1,"outcome":"ok","attempts":[],"final":"committed","sources":{"0":[0,0]}}),
            json!({"txn":1,"intent":"commit","first_seq":1,"records":1,"outcome":"TimeoutException","attempts":["TimeoutException"],"final":"unknown","sources":{"0":[1,1]}}),
            json!({"txn":2,"intent":"commit","first_seq":2,"records":1,"outcome":"ok","attempts":[],"final":"committed","sources":{"0":[2,2]}}),
        ],
    );
    let (v, asked) = coordination::verify_transactions(
        &gap,
        &out(&[0, 2]),
        &std::collections::BTreeMap::from([(0, 3)]),
    );
    assert!(v.iter().any(|x| x.contains("a gap")), "{v:?}");
    assert_eq!(asked.len(), 1, "{asked:?}");
}

#[test]
fn commit_verifier_catches_offsets_going_backwards_and_lost_commits() {
    let t =
        |offs: &[i64]| std::collections::BTreeMap::from([(("t".to_string(), 0), offs.to_vec())]);
    let group = std::collections::BTreeMap::from([(0, 10)]);
    assert!(coordination::verify_commits(&t(&[3, 5, 10]), "t", &group).is_empty());
    let v = coordination::verify_commits(&t(&[3, 7, 5]), "t", &group);
    assert!(v.iter().any(|x| x.contains("backwards")), "{v:?}");
    let v = coordination::verify_commits(&t(&[3, 11]), "t", &group);
    assert!(v.iter().any(|x| x.contains("lost")), "{v:?}");
    let v = coordination::verify_commits(&t(&[3]), "t", &std::collections::BTreeMap::new());
    assert!(v.iter().any(|x| x.contains("no committed offset")), "{v:?}");
}

// The rolling-bounce test's own checks (tests/cluster/rolling.rs).

#[test]
fn rolling_reader_check_catches_missing_and_uncommitted_records() {
    use support::rolling::same_records;
    let at = |partition, offset| support::Consumed {
        partition,
        offset,
        seq: 0,
    };
    let reference = [at(0, 0), at(0, 1), at(1, 0)];
    assert!(same_records(&reference, &reference).is_empty());
    let v = same_records(&[at(0, 0), at(1, 0), at(2, 7)], &reference);
    assert_eq!(v.len(), 2, "{v:?}");
    assert!(
        v[0].contains("1 committed records") && v[0].contains("(0, 1)"),
        "{v:?}"
    );
    assert!(
        v[1].contains("1 records read") && v[1].contains("(2, 7)"),
        "{v:?}"
    );
}

#[test]
fn rolling_places_ids_as_the_brokers_do() {
    // Java: "abc".hashCode() == 96354, "".hashCode() == 0; a hash of i32::MIN maps to 0
    // (Kafka's Utils.abs): "polygenelubricants".hashCode() == Integer.MIN_VALUE.
    use support::rolling::coordinator_partition;
    assert_eq!(coordinator_partition("abc", 50), 96354 % 50);
    assert_eq!(coordinator_partition("", 6), 0);
    assert_eq!(coordinator_partition("polygenelubricants", 6), 0);
    // A negative hash (it wraps): "zzzzzzzzzz".hashCode() == -1580979136, abs % 6 == 4.
    assert_eq!(coordinator_partition("zzzzzzzzzz", 6), 4);
}

#[test]
fn rolling_finds_what_fairlead_logged_around_an_error() {
    let dir = support::run_dir("rolling-log-around");
    let log = dir.join("fairlead.log");
    std::fs::write(
        &log,
        "2026-01-02T03:04:04.000000Z  WARN too early\n\
         2026-01-02T03:04:04.900000Z  WARN gave up absorbing\n\
         2026-01-02T03:04:04.950000Z DEBUG noise\n\
         2026-01-02T03:04:05.050000Z  INFO just after\n\
         2026-01-02T03:04:05.300000Z  WARN too late\n\
         2026-01-03T03:04:05.000000Z  WARN another day\n",
    )
    .unwrap();
    let got = support::rolling::log_around(
        &log,
        "2026-01-02T03:04:05.000000Z",
        std::time::Duration::from_millis(500),
        std::time::Duration::from_millis(100),
    );
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[0].ends_with("gave up absorbing") && got[1].ends_with("just after"));
}
