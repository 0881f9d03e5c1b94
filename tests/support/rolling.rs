//! Rolling bounces of the coordinators' broker (issue #24): SIGKILL and graceful stops of the
//! broker hosting the group and transaction coordinators, alternating, five times per run, under
//! three Go clients, each behind its own strict observer:
//!
//! * `sarama-group`: a sarama consumer group member (classic) reading the input topic and
//!   committing what it processed after every batch (gokit `group-consume`);
//! * `franz-txn`: franz-go's GroupTransactSession reading the input topic as a member of its own
//!   group and writing each batch of up to 12 records to the output topic in a transaction that
//!   also commits the input offsets (AddOffsetsToTxn + TxnOffsetCommit); every 5th transaction
//!   is aborted on purpose (gokit `txn-transform`);
//! * `sarama-read-committed`: a sarama consumer reading the output topic read_committed while
//!   it is written (gokit `read-committed`).
//!
//! A feeder (an idempotent Java producer, straight to the brokers, not under test) writes the
//! input topic. The topics have 6 partitions, replication factor 3 and min.insync.replicas 2
//! (the test bed's broker defaults). The group ids and the transactional id are picked to hash
//! to the same `__consumer_offsets` / `__transaction_state` partition, and each bounce takes the
//! broker that hosts most of their coordinators (the transaction coordinator's on a tie):
//! `testbed kill N` (SIGKILL; returns once the controller fenced it) or `testbed stop N`
//! (SIGTERM: controlled shutdown), then a few seconds down, then `testbed start N`, which returns
//! once every partition is back in full ISR.
//!
//! What is judged, per client: every error code its observer saw (except the protocol steps of
//! [`PROTOCOL_STEPS`]), what its library returned to the application (`errors_total`), its
//! rebalances, and the verifiers: the group's commits (never backwards, none lost), no input
//! record lost, no record read twice, every transaction ended as asked, and a read_committed
//! read of the output (a Java reader after the run, straight to the brokers) holding exactly
//! the committed transactions' records once each, with every input record transformed exactly
//! once; the Go read_committed reader must have read exactly that.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::coordination::{
    api_label, offsets_of, read_commits, stop_by, verify_commits, verify_transactions,
    wait_answering,
};
use super::gokit::{self, GoProc, TxnSpec};
use super::observer::{utc_now, ErrorEvent, Observer};
use super::*;

/// (api key, code) pairs that are steps of the protocol, met without any fault (seen on a calm
/// cluster too, and by every client): not errors.
///
/// * JoinGroup MEMBER_ID_REQUIRED (79): KIP-394, every first join of a classic member.
/// * ApiVersions UNSUPPORTED_VERSION (35): KIP-511, a client asking a version newer than the
///   broker's (franz-go 1.22 asks v5 of Kafka 4.1) gets the broker's list and asks again.
/// * CONCURRENT_TRANSACTIONS (51) on Produce (transaction protocol v2: the first write of a
///   transaction while the previous one's markers are still being written), EndTxn v5 and
///   AddPartitionsToTxn: the coordinator is completing the previous transaction; the client
///   retries. franz-go meets it on most transactions of a fast loop.
pub const PROTOCOL_STEPS: [(i16, i16); 5] = [(11, 79), (18, 35), (0, 51), (24, 51), (26, 51)];

/// How a bounce takes the broker down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bounce {
    /// SIGKILL (`testbed kill N`, which returns once the controller fenced the broker).
    Kill,
    /// SIGTERM, a controlled shutdown (`testbed stop N`).
    Stop,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    pub bounces: Vec<Bounce>,
    /// How long the broker stays down before `testbed start`.
    pub down: Duration,
    /// Clients work undisturbed this long before the first bounce and after each one.
    pub settle: Duration,
    /// Records/s the feeder writes to the input topic.
    pub feed_rate: u32,
}

fn bounces() -> usize {
    std::env::var("FAIRLEAD_ROLLING_BOUNCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(5)
}

impl Plan {
    /// Five bounces (FAIRLEAD_ROLLING_BOUNCES), alternating SIGKILL and graceful stop.
    pub fn new(name: &str) -> Plan {
        Plan {
            name: name.to_string(),
            // FAIRLEAD_ROLLING_BOUNCES shortens a run (make test's time budget); five by default.
            bounces: [Bounce::Kill, Bounce::Stop]
                .into_iter()
                .cycle()
                .take(bounces())
                .collect(),
            down: Duration::from_secs(3),
            settle: Duration::from_secs(4),
            feed_rate: 40,
        }
    }
}

/// The three clients under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Group,
    Txn,
    ReadCommitted,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Group, Role::Txn, Role::ReadCommitted];

    pub fn label(self) -> &'static str {
        match self {
            Role::Group => "sarama-group",
            Role::Txn => "franz-txn",
            Role::ReadCommitted => "sarama-read-committed",
        }
    }
}

/// What one client did, what its observer counted and what the verifiers found.
pub struct ClientOutcome {
    pub role: Role,
    pub summary: Value,
    /// (api key, code) -> count, every non-zero code that reached this client.
    pub errors: BTreeMap<(i16, i16), u64>,
    pub undecodable: u64,
    pub fetch_gaps: u64,
    /// Connections the upstream side ended, and those of them with requests unanswered.
    pub upstream_closes: (u64, u64),
    pub refused: u64,
    /// Every response that carried an error, by wall-clock time (see `Observer::error_timeline`).
    pub timeline: Vec<ErrorEvent>,
    pub observer_report: String,
    /// Kafka's own guarantees broken (must hold directly too): lost commits, lost records,
    /// not exactly-once output, a client that did not stop.
    pub broken: Vec<String>,
    /// What the client's application met (fairlead must make these go away): errors the
    /// library returned, rebalances, records read twice, transactions not ended as asked.
    pub effects: Vec<String>,
}

impl ClientOutcome {
    /// Error codes that reached the client, protocol steps left out.
    pub fn visible_errors(&self) -> u64 {
        self.errors
            .iter()
            .filter(|(k, _)| !PROTOCOL_STEPS.contains(k))
            .map(|(_, n)| n)
            .sum()
    }

    /// "Fetch 74 x2, OffsetCommit 16 x1" (protocol steps left out).
    pub fn visible_errors_text(&self) -> String {
        let parts: Vec<String> = self
            .errors
            .iter()
            .filter(|(k, _)| !PROTOCOL_STEPS.contains(k))
            .map(|((api, code), n)| format!("{} {code} x{n}", api_label(*api)))
            .collect();
        if parts.is_empty() {
            "none".to_string()
        } else {
            parts.join(", ")
        }
    }

    /// The timeline's responses that carried an error other than a protocol step.
    pub fn visible_events(&self) -> Vec<&ErrorEvent> {
        self.timeline
            .iter()
            .filter(|e| {
                e.codes
                    .iter()
                    .any(|c| !PROTOCOL_STEPS.contains(&(e.api_key, *c)))
            })
            .collect()
    }

    /// What the library returned to the application, from its summary.
    pub fn library_errors(&self) -> u64 {
        self.summary["errors_total"].as_u64().unwrap_or(0)
    }
}

/// One bounce as done, with wall-clock times (UTC) to line up with the logs.
#[derive(Debug, Clone)]
pub struct BounceDone {
    pub bounce: Bounce,
    pub node: i32,
    /// Which coordinators the node hosted: "group sarama-group", "group franz-txn", "txn".
    pub hosted: Vec<String>,
    pub began: String,
    /// When `testbed kill/stop` returned (the broker is out of the cluster).
    pub down: String,
    /// When `testbed start` began, and when the cluster was healthy again.
    pub starting: String,
    pub healthy: String,
    pub elapsed: Duration,
}

pub struct Outcome {
    pub dir: PathBuf,
    pub clients: Vec<ClientOutcome>,
    pub bounces: Vec<BounceDone>,
    pub feeder: Value,
    /// Records of the output topic the reference reader (Java, read_committed, direct) got.
    pub output_read: usize,
    pub started: String,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn client(&self, r: Role) -> &ClientOutcome {
        self.clients.iter().find(|c| c.role == r).unwrap()
    }

    pub fn summary(&self) -> String {
        let mut s = format!(
            "rolling-bounce run in {:.0?} from {} (dir {})\n",
            self.elapsed,
            self.started,
            self.dir.display()
        );
        for b in &self.bounces {
            let _ = writeln!(
                s,
                "bounce: {:?} node {} hosting [{}]: began {}, down {}, starting {}, healthy {} ({:.1?})",
                b.bounce,
                b.node,
                b.hosted.join(", "),
                b.began,
                b.down,
                b.starting,
                b.healthy,
                b.elapsed
            );
        }
        let _ = writeln!(s, "feeder: {}", self.feeder);
        let _ = writeln!(
            s,
            "reference read_committed output records: {}",
            self.output_read
        );
        for c in &self.clients {
            let _ = writeln!(s, "--- {}", c.role.label());
            let _ = writeln!(s, "summary: {}", c.summary);
            let _ = writeln!(
                s,
                "error codes that reached it: {} ({}); library errors: {}; undecodable: {}; fetch gaps: {}; upstream closes: {:?}; refused: {}",
                c.visible_errors(),
                c.visible_errors_text(),
                c.library_errors(),
                c.undecodable,
                c.fetch_gaps,
                c.upstream_closes,
                c.refused
            );
            for e in c.visible_events().iter().rev().take(30).rev() {
                let _ = writeln!(s, "  {}", e.text);
            }
            for v in &c.broken {
                let _ = writeln!(s, "BROKEN: {v}");
            }
            for v in &c.effects {
                let _ = writeln!(s, "EFFECT: {v}");
            }
        }
        s
    }

    /// Everything that must not happen through fairlead, one line each.
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        for c in &self.clients {
            let label = c.role.label();
            if c.visible_errors() > 0 {
                out.push(format!(
                    "{label}: {} error codes reached the client: {}",
                    c.visible_errors(),
                    c.visible_errors_text()
                ));
            }
            if c.undecodable > 0 {
                out.push(format!("{label}: {} undecodable responses", c.undecodable));
            }
            if c.fetch_gaps > 0 {
                out.push(format!(
                    "{label}: {} fetch answers not fitting the offset asked",
                    c.fetch_gaps
                ));
            }
            for v in c.broken.iter().chain(&c.effects) {
                out.push(format!("{label}: {v}"));
            }
        }
        out
    }

    /// Every observer's report and whole error timeline, for the run's report file.
    pub fn observer_reports(&self) -> String {
        let mut s = String::new();
        for c in &self.clients {
            let _ = writeln!(s, "=== {}\n{}", c.role.label(), c.observer_report);
            let _ = writeln!(s, "error timeline ({} entries):", c.timeline.len());
            for e in &c.timeline {
                let _ = writeln!(s, "  {}", e.text);
            }
        }
        s
    }
}

/// Java's String.hashCode, as the brokers place a group or transactional id:
/// abs(hashCode) % partitions (Utils.abs maps i32::MIN to 0).
pub fn coordinator_partition(id: &str, partitions: i32) -> i32 {
    let mut h: i32 = 0;
    for unit in id.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions
}

/// A name starting with `prefix` that the brokers place on coordinator partition `partition`
/// (of 6: the test bed's `offsets.topic.num.partitions` and
/// `transaction.state.log.num.partitions`).
fn name_on(prefix: &str, partition: i32) -> String {
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .find(|n| coordinator_partition(n, 6) == partition)
        .unwrap()
}

struct Ids {
    group: String,
    txn_group: String,
    txn_id: String,
}

fn ids(name: &str) -> Ids {
    let group = unique(&format!("{name}-group"));
    let partition = coordinator_partition(&group, 6);
    Ids {
        txn_group: name_on(&unique(&format!("{name}-txn-group")), partition),
        txn_id: name_on(&unique(&format!("{name}-txn-id")), partition),
        group,
    }
}

/// node -> the coordinators it hosts now ("group sarama-group", "group franz-txn", "txn").
fn placement(admin: &mut Admin, ids: &Ids) -> (BTreeMap<i32, Vec<String>>, i32) {
    let r = admin.call(json!({
        "op": "coordinators",
        "groups": [ids.group, ids.txn_group],
        "transactional_ids": [ids.txn_id],
    }));
    let node = |e: &Value| {
        let c = e["coordinator"].as_i64().unwrap_or(-1);
        if c >= 0 {
            c as i32
        } else {
            e["leader"].as_i64().unwrap_or(-1) as i32
        }
    };
    let mut by_node: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    by_node
        .entry(node(&r["groups"][&ids.group]))
        .or_default()
        .push(format!("group {}", Role::Group.label()));
    by_node
        .entry(node(&r["groups"][&ids.txn_group]))
        .or_default()
        .push(format!("group {}", Role::Txn.label()));
    let txn_node = node(&r["transactions"][&ids.txn_id]);
    by_node.entry(txn_node).or_default().push("txn".to_string());
    (by_node, txn_node)
}

struct Running {
    role: Role,
    observer: Observer,
    go: GoProc,
}

/// Runs the scenario once; `target` is what the observers front (the brokers or fairlead).
pub fn run(plan: &Plan, target: &str, dir: PathBuf) -> Outcome {
    let started = Instant::now();
    let started_utc = utc_now();
    let c = cluster();
    let mut admin = Admin::connect(&c.bootstrap);
    let input = unique(&format!("{}-in", plan.name));
    let output = unique(&format!("{}-out", plan.name));
    admin.create_topic(&input, 6, 3);
    admin.create_topic(&output, 6, 3);
    let ids = ids(&plan.name);
    let txn_run = "txn";

    let mut feeder = ClientProc::producer(
        ClientKind::Java,
        &dir,
        "feed",
        &c.bootstrap,
        &input,
        plan.feed_rate,
        &[("acks", "all"), ("enable.idempotence", "true")],
    );
    let mut running = Vec::new();
    for role in Role::ALL {
        let observer = Observer::start(target).expect("start an observer");
        let via = observer.bootstrap();
        let go = match role {
            Role::Group => gokit::group_consume(&dir, role.label(), &via, &input, &ids.group),
            Role::Txn => gokit::txn_transform(
                &dir,
                role.label(),
                &via,
                &TxnSpec {
                    run_id: txn_run,
                    input: &input,
                    group: &ids.txn_group,
                    output: &output,
                    transactional_id: &ids.txn_id,
                    records_per_txn: 12,
                    abort_every: 5,
                    txn_rate: 5,
                },
            ),
            Role::ReadCommitted => gokit::read_committed(&dir, role.label(), &via, &output),
        };
        running.push(Running { role, observer, go });
    }
    feeder.wait_records(20, Duration::from_secs(120));
    for r in running.iter_mut() {
        let n = match r.role {
            Role::Group => 20,
            Role::Txn => 2,
            Role::ReadCommitted => 12,
        };
        r.go.proc.wait_records(n, Duration::from_secs(120));
    }
    std::thread::sleep(plan.settle);

    let mut bounces = Vec::new();
    for bounce in &plan.bounces {
        let (by_node, txn_node) = placement(&mut admin, &ids);
        let node = *by_node
            .iter()
            .filter(|(n, _)| **n > 0)
            .max_by_key(|(n, hosted)| (hosted.len(), **n == txn_node))
            .map(|(n, _)| n)
            .expect("no coordinator placed on any broker");
        let t0 = Instant::now();
        let began = utc_now();
        let op = match bounce {
            Bounce::Kill => "kill",
            Bounce::Stop => "stop",
        };
        testbed(&[op, &node.to_string(), "--timeout", "120"]);
        let down = utc_now();
        std::thread::sleep(plan.down);
        let starting = utc_now();
        testbed(&["start", &node.to_string(), "--timeout", "180"]);
        wait_answering(&c.brokers[&node], Duration::from_secs(120));
        admin.wait_healthy(&[input.as_str(), output.as_str()]);
        bounces.push(BounceDone {
            bounce: *bounce,
            node,
            hosted: by_node[&node].clone(),
            began,
            down,
            starting,
            healthy: utc_now(),
            elapsed: t0.elapsed(),
        });
        std::thread::sleep(plan.settle);
    }

    // Stop the feeder, then the group member and the transactional client (they drain and
    // commit), then the reader (it drains the output up to its end).
    let feed_acked = feeder.data.clone();
    let feeder_summary = feeder.stop();
    let deadline = Instant::now() + Duration::from_secs(150);
    let mut stopped = Vec::new();
    let (readers, writers): (Vec<Running>, Vec<Running>) = running
        .into_iter()
        .partition(|r| r.role == Role::ReadCommitted);
    for batch in [writers, readers] {
        // Every stdin of the batch closed first, so they stop together.
        let mut procs = Vec::new();
        for mut r in batch {
            drop(r.go.proc.stdin.take());
            procs.push(r);
        }
        for r in procs {
            let Running { role, observer, go } = r;
            let data = go.proc.data.clone();
            let stderr = go.proc.stderr.clone();
            let (summary, stuck) = stop_by(go.proc, deadline);
            stopped.push((
                role, observer, data, go.commits, go.events, stderr, summary, stuck,
            ));
        }
    }

    // The reference read of the output: Java, read_committed, straight to the brokers.
    let reference = ClientProc::consumer(
        ClientKind::Java,
        &dir,
        "reference-read-committed",
        &c.bootstrap,
        &[output.as_str()],
        None,
        &[("isolation.level", "read_committed")],
    );
    let reference_path = reference.data.clone();
    let reference_summary = reference.stop();
    let output_records = read_consumed(&reference_path, &output, txn_run);
    let acked = read_acked(&feed_acked);

    let mut clients = Vec::new();
    for (role, observer, data, commits, _events, _stderr, summary, stuck) in stopped {
        let mut broken = Vec::new();
        let mut effects = Vec::new();
        if let Some(stuck) = stuck {
            broken.push(stuck);
        }
        if summary.get("fatal").is_some() {
            broken.push(format!(
                "the client ended on a fatal error: {}",
                summary["fatal"]
            ));
        }
        let library_errors = summary["errors_total"].as_u64().unwrap_or(0);
        if library_errors > 0 {
            effects.push(format!(
                "the library returned {library_errors} errors to the application: {}",
                summary["errors"]
            ));
        }
        match role {
            Role::Group => {
                let finals = offsets_of(
                    &admin.call(json!({"op": "group-offsets", "group": ids.group})),
                    &input,
                );
                broken.extend(verify_commits(&read_commits(&commits), &input, &finals));
                let consumed = read_consumed(&data, &input, "feed");
                let verdict = verify(&acked, &consumed);
                if !verdict.lossless() {
                    broken.push(format!(
                        "{} of {} acknowledged input records never consumed (first: {:?})",
                        verdict.missing.len(),
                        verdict.acked,
                        &verdict.missing[..verdict.missing.len().min(10)]
                    ));
                }
                if summary["drained"] != json!(true) {
                    broken.push("the consumer did not drain".to_string());
                }
                group_effects(&summary, &mut effects);
            }
            Role::Txn => {
                let finals = offsets_of(
                    &admin.call(json!({"op": "group-offsets", "group": ids.txn_group})),
                    &input,
                );
                let (v, not_as_asked) = verify_transactions(&data, &output_records, &finals);
                broken.extend(v);
                if !not_as_asked.is_empty() {
                    effects.push(format!(
                        "{} transactions did not end as the client asked: {}",
                        not_as_asked.len(),
                        not_as_asked[..not_as_asked.len().min(10)].join("; ")
                    ));
                }
                if reference_summary["drained"] != json!(true) {
                    broken.push(format!(
                        "the reference read_committed reader did not drain: {reference_summary}"
                    ));
                }
                let producers = summary["producers_created"].as_u64().unwrap_or(0);
                if producers > 1 {
                    effects.push(format!(
                        "the transactional client had to be replaced: {producers} producers"
                    ));
                }
                group_effects(&summary, &mut effects);
            }
            Role::ReadCommitted => {
                let mine = read_consumed(&data, &output, txn_run);
                broken.extend(same_records(&mine, &output_records));
                if summary["drained"] != json!(true) {
                    broken.push("the read_committed reader did not drain".to_string());
                }
                for what in ["redelivered", "duplicates"] {
                    let n = summary[what].as_u64().unwrap_or(0);
                    if n > 0 {
                        effects.push(format!("{n} records {what}"));
                    }
                }
            }
        }
        clients.push(ClientOutcome {
            role,
            summary,
            errors: observer.errors(),
            undecodable: observer.undecodable().values().sum(),
            fetch_gaps: observer.fetch_gaps(),
            upstream_closes: observer.upstream_closes(),
            refused: observer.refused(),
            timeline: observer.error_events(),
            observer_report: observer.report(),
            broken,
            effects,
        });
    }
    // Leave the cluster with the leaders where they started (no automatic rebalance).
    admin.call(json!({"op": "elect-preferred", "timeout_ms": 60000}));
    testbed(&["wait-healthy"]);
    let outcome = Outcome {
        dir: dir.clone(),
        clients,
        bounces,
        feeder: feeder_summary,
        output_read: output_records.len(),
        started: started_utc,
        elapsed: started.elapsed(),
    };
    let _ = std::fs::write(
        dir.join("report.txt"),
        format!("{}\n{}", outcome.summary(), outcome.observer_reports()),
    );
    outcome
}

/// What a group member's application met: rebalances after the first assignment, revoked or
/// lost partitions, records read twice.
fn group_effects(summary: &Value, effects: &mut Vec<String>) {
    let rebalances = summary["rebalances"].as_u64().unwrap_or(0);
    if rebalances != 1 {
        effects.push(format!(
            "{rebalances} assignments: the group rebalanced {} times after the first",
            rebalances.saturating_sub(1)
        ));
    }
    for what in ["revocations", "lost", "redelivered", "duplicates"] {
        let n = summary[what].as_u64().unwrap_or(0);
        if n > 0 {
            effects.push(format!("{n} {what}"));
        }
    }
    let failures = summary["commit_failures"].as_u64().unwrap_or(0);
    if failures > 0 {
        effects.push(format!("{failures} commits failed"));
    }
}

/// The Go reader read exactly the records the reference reader read (partition and offset).
pub fn same_records(mine: &[Consumed], reference: &[Consumed]) -> Vec<String> {
    let key = |c: &Consumed| (c.partition, c.offset);
    let mine_set: BTreeSet<(i32, i64)> = mine.iter().map(key).collect();
    let reference_set: BTreeSet<(i32, i64)> = reference.iter().map(key).collect();
    let missing: Vec<_> = reference_set.difference(&mine_set).collect();
    let extra: Vec<_> = mine_set.difference(&reference_set).collect();
    let mut v = Vec::new();
    if !missing.is_empty() {
        v.push(format!(
            "{} committed records the reference reader read were never read (first: {:?})",
            missing.len(),
            &missing[..missing.len().min(10)]
        ));
    }
    if !extra.is_empty() {
        v.push(format!(
            "{} records read that the reference read_committed reader did not read: uncommitted or aborted data (first: {:?})",
            extra.len(),
            &extra[..extra.len().min(10)]
        ));
    }
    v
}

/// fairlead's error counters: "<metric>{api=..,code=..}" -> value.
pub fn error_counters(metrics: &str) -> BTreeMap<String, f64> {
    let names: HashSet<&str> = [
        "fairlead_errors_passed_through_total",
        "fairlead_errors_absorbed_total",
        "fairlead_frames_passed_blind_total",
        "fairlead_client_connections_closed_total",
    ]
    .into_iter()
    .collect();
    let mut out = BTreeMap::new();
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let name = series.split('{').next().unwrap_or("");
        if names.contains(name) {
            out.insert(series.to_string(), value.parse().unwrap_or(0.0));
        }
    }
    out
}

/// The counters that changed between two scrapes, "series +delta" each.
pub fn counter_deltas(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> String {
    let mut s = String::new();
    for (series, v) in after {
        let d = v - before.get(series).copied().unwrap_or(0.0);
        if d != 0.0 {
            let _ = writeln!(s, "  {series} +{d}");
        }
    }
    if s.is_empty() {
        s.push_str("  none\n");
    }
    s
}

/// "2026-01-02T03:04:05.678901Z" as (date, microseconds into the day).
fn instant_of(ts: &str) -> Option<(&str, i64)> {
    let (date, time) = ts.get(..27)?.split_once('T')?;
    let n = |r: std::ops::Range<usize>| time.get(r)?.parse::<i64>().ok();
    let micros = ((n(0..2)? * 60 + n(3..5)?) * 60 + n(6..8)?) * 1_000_000 + n(9..15)?;
    Some((date, micros))
}

/// fairlead's log lines at INFO or above from `before` ahead of `at` to `after` past it: what
/// fairlead said about the moment an error reached a client.
pub fn log_around(log: &Path, at: &str, before: Duration, after: Duration) -> Vec<String> {
    let Some((date, t)) = instant_of(at) else {
        return Vec::new();
    };
    let (from, to) = (t - before.as_micros() as i64, t + after.as_micros() as i64);
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.contains(" DEBUG ") && !l.contains(" TRACE "))
        .filter(|l| instant_of(l).is_some_and(|(d, m)| d == date && (from..=to).contains(&m)))
        .map(str::to_string)
        .collect()
}
