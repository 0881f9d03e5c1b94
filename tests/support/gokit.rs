//! The Go testkit (tests/testbed/go, built by `testbed fetch`): IBM/sarama and twmb/franz-go,
//! unmodified, spawned like the Java testkit's clients. See tests/testbed/go/README.md for what
//! each command does and writes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::{repo, ClientProc};

/// The gokit binary (built on first use if `testbed fetch` did not build it yet).
pub fn binary() -> &'static str {
    static BIN: OnceLock<String> = OnceLock::new();
    BIN.get_or_init(|| {
        let out = Command::new(repo().join("tests/testbed/testbed"))
            .arg("gokit-path")
            .output()
            .expect("run tests/testbed/testbed gokit-path");
        assert!(
            out.status.success(),
            "building the Go testkit failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .expect("the gokit path")
            .trim()
            .to_string()
    })
}

fn gokit(cmd: &str) -> Command {
    let mut c = Command::new(binary());
    c.arg(cmd);
    c
}

/// A running Go client and its extra files.
pub struct GoProc {
    pub proc: ClientProc,
    /// The events file (JSON lines: errors, assignments, revocations, transactions, by time).
    pub events: PathBuf,
    /// group-consume: the commits file.
    pub commits: PathBuf,
}

fn files(dir: &Path, name: &str, data_ext: &str) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    (
        dir.join(format!("{name}.summary.json")),
        dir.join(format!("{name}.{data_ext}")),
        dir.join(format!("{name}.stderr")),
        dir.join(format!("{name}.events")),
    )
}

/// A sarama consumer group member that commits what it processed after every batch.
pub fn group_consume(dir: &Path, name: &str, bootstrap: &str, topic: &str, group: &str) -> GoProc {
    let (summary, consumed, stderr, events) = files(dir, name, "consumed");
    let commits = dir.join(format!("{name}.commits"));
    let mut c = gokit("group-consume");
    c.args([
        "--bootstrap",
        bootstrap,
        "--topic",
        topic,
        "--group",
        group,
        "--drain-timeout",
        "60",
    ]);
    c.arg("--consumed").arg(&consumed);
    c.arg("--commits").arg(&commits);
    c.arg("--summary").arg(&summary);
    c.arg("--events").arg(&events);
    GoProc {
        proc: ClientProc::spawn(name, c, summary, consumed, stderr),
        events,
        commits,
    }
}

/// What a franz-go transactional consume-transform-produce client is given.
pub struct TxnSpec<'a> {
    pub run_id: &'a str,
    pub input: &'a str,
    pub group: &'a str,
    pub output: &'a str,
    pub transactional_id: &'a str,
    pub records_per_txn: u32,
    pub abort_every: u32,
    pub txn_rate: u32,
}

/// franz-go's GroupTransactSession: input records to the output topic, the input offsets
/// committed in each transaction. Its data file is the transaction log.
pub fn txn_transform(dir: &Path, name: &str, bootstrap: &str, spec: &TxnSpec<'_>) -> GoProc {
    let (summary, log, stderr, events) = files(dir, name, "txns");
    let mut c = gokit("txn-transform");
    c.args([
        "--bootstrap",
        bootstrap,
        "--input-topic",
        spec.input,
        "--input-group",
        spec.group,
        "--topic",
        spec.output,
        "--run-id",
        spec.run_id,
        "--transactional-id",
        spec.transactional_id,
        "--records-per-txn",
        &spec.records_per_txn.to_string(),
        "--abort-every",
        &spec.abort_every.to_string(),
        "--txn-rate",
        &spec.txn_rate.to_string(),
    ]);
    c.arg("--txn-log").arg(&log);
    c.arg("--summary").arg(&summary);
    c.arg("--events").arg(&events);
    GoProc {
        proc: ClientProc::spawn(name, c, summary, log, stderr),
        events,
        commits: PathBuf::new(),
    }
}

/// A sarama consumer reading every partition of `topic` from the start, read_committed.
pub fn read_committed(dir: &Path, name: &str, bootstrap: &str, topic: &str) -> GoProc {
    let (summary, consumed, stderr, events) = files(dir, name, "consumed");
    let mut c = gokit("read-committed");
    c.args([
        "--bootstrap",
        bootstrap,
        "--topic",
        topic,
        "--drain-timeout",
        "60",
    ]);
    c.arg("--consumed").arg(&consumed);
    c.arg("--summary").arg(&summary);
    c.arg("--events").arg(&events);
    GoProc {
        proc: ClientProc::spawn(name, c, summary, consumed, stderr),
        events,
        commits: PathBuf::new(),
    }
}
