//! Coordinator moves (issue #15): group and transaction coordinators restarted and killed under
//! real, unmodified clients, run directly against the brokers (the control) or through fairlead.
//!
//! Four clients run at once, each behind its own strict observer, so every client's count of
//! coordinator errors (COORDINATOR_LOAD_IN_PROGRESS 14, COORDINATOR_NOT_AVAILABLE 15,
//! NOT_COORDINATOR 16) is its own:
//!
//! * a Java group consumer with `group.protocol=classic`,
//! * a Java group consumer with `group.protocol=consumer` (KIP-848, Kafka 4.x),
//! * a librdkafka group consumer (classic),
//! * a Java transactional producer in consume-transform-produce mode: it reads the input topic as
//!   a classic group member and commits those offsets inside each transaction
//!   (sendOffsetsToTransaction: AddOffsetsToTxn + TxnOffsetCommit); every 4th transaction is
//!   aborted on purpose.
//!
//! The consumers commit synchronously what they processed after every poll. A feeder (an
//! idempotent Java producer, straight to the brokers and not under test) writes the input topic.
//! While they run, the brokers hosting the coordinators are restarted one by one, and one
//! is killed with SIGKILL and restarted. Then the verifiers check what the clients were promised:
//! committed offsets never go backwards, the groups' final committed offsets are at least the
//! last successful commit of their member, every acknowledged input record was consumed, every
//! transaction ended as the client asked, and a read_committed read of the output holds exactly
//! the committed transactions' records, once each, with every input record transformed exactly
//! once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::observer::Observer;
use super::*;

pub use super::observer::COORDINATOR_CODES;

/// The APIs a group member or a transactional producer sends to (or to find) a coordinator.
pub const COORDINATOR_APIS: [(i16, &str); 13] = [
    (8, "OffsetCommit"),
    (9, "OffsetFetch"),
    (10, "FindCoordinator"),
    (11, "JoinGroup"),
    (12, "Heartbeat"),
    (13, "LeaveGroup"),
    (14, "SyncGroup"),
    (22, "InitProducerId"),
    (24, "AddPartitionsToTxn"),
    (25, "AddOffsetsToTxn"),
    (26, "EndTxn"),
    (28, "TxnOffsetCommit"),
    (68, "ConsumerGroupHeartbeat"),
];

pub fn api_label(key: i16) -> String {
    COORDINATOR_APIS
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, n)| n.to_string())
        .unwrap_or_else(|| match kafka_protocol::messages::ApiKey::try_from(key) {
            Ok(api) => format!("{api:?}"),
            Err(()) => format!("ApiKey{key}"),
        })
}

fn code_label(code: i16) -> &'static str {
    match code {
        14 => "COORDINATOR_LOAD_IN_PROGRESS",
        15 => "COORDINATOR_NOT_AVAILABLE",
        16 => "NOT_COORDINATOR",
        _ => "",
    }
}

/// One chaos step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chaos {
    /// `testbed restart N` (SIGTERM: controlled shutdown, then start) of the broker hosting the
    /// coordinators of the most clients among those hit least so far (then the transaction
    /// coordinator's, then the one hosting the most coordinators).
    Restart,
    /// `testbed kill-restart N` (SIGKILL, then start) of the broker hosting the transaction
    /// coordinator.
    KillRestart,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    pub steps: Vec<Chaos>,
    /// Clients work undisturbed this long before the first step and after each one.
    pub settle: Duration,
    /// Records/s the feeder writes to the input topic.
    pub feed_rate: u32,
}

impl Plan {
    pub fn new(name: &str) -> Plan {
        Plan {
            name: name.to_string(),
            steps: vec![
                Chaos::Restart,
                Chaos::Restart,
                Chaos::Restart,
                Chaos::KillRestart,
            ],
            settle: Duration::from_secs(6),
            feed_rate: 40,
        }
    }
}

/// The four clients under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Member {
    JavaClassic,
    JavaConsumer,
    Librdkafka,
    Transactional,
}

impl Member {
    pub const ALL: [Member; 4] = [
        Member::JavaClassic,
        Member::JavaConsumer,
        Member::Librdkafka,
        Member::Transactional,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Member::JavaClassic => "java-classic",
            Member::JavaConsumer => "java-consumer",
            Member::Librdkafka => "librdkafka",
            Member::Transactional => "java-txn",
        }
    }
}

/// What one client did and what its observer counted.
pub struct MemberOutcome {
    pub member: Member,
    /// The consumer group (for the transactional client, its input group).
    pub group: String,
    pub summary: Value,
    /// (api key, code) -> count, every non-zero code that reached this client.
    pub errors: BTreeMap<(i16, i16), u64>,
    /// (api key, version) -> responses.
    pub versions: BTreeMap<(i16, i16), u64>,
    pub undecodable: u64,
    /// Connections the upstream side ended, and those of them with requests unanswered.
    pub upstream_closes: (u64, u64),
    /// Client connections that found no reachable upstream.
    pub refused: u64,
    pub observer_report: String,
    /// The observer's timeline of coordinator errors and FindCoordinator answers (the last 200).
    pub coordinator_samples: Vec<String>,
    /// What the verifiers found wrong (empty: nothing).
    pub violations: Vec<String>,
}

impl MemberOutcome {
    /// Coordinator errors (14/15/16) that reached this client, in any API.
    pub fn coordinator_errors(&self) -> u64 {
        self.errors
            .iter()
            .filter(|((_, code), _)| COORDINATOR_CODES.contains(code))
            .map(|(_, n)| n)
            .sum()
    }

    /// "OffsetCommit NOT_COORDINATOR x3, FindCoordinator COORDINATOR_NOT_AVAILABLE x1".
    pub fn coordinator_errors_text(&self) -> String {
        let parts: Vec<String> = self
            .errors
            .iter()
            .filter(|((_, code), _)| COORDINATOR_CODES.contains(code))
            .map(|((api, code), n)| format!("{} {} x{n}", api_label(*api), code_label(*code)))
            .collect();
        if parts.is_empty() {
            "none".to_string()
        } else {
            parts.join(", ")
        }
    }

    /// Every other non-zero code, "Api CODE xN".
    pub fn other_errors_text(&self) -> String {
        let parts: Vec<String> = self
            .errors
            .iter()
            .filter(|((_, code), _)| !COORDINATOR_CODES.contains(code))
            .map(|((api, code), n)| format!("{} code {code} x{n}", api_label(*api)))
            .collect();
        if parts.is_empty() {
            "none".to_string()
        } else {
            parts.join(", ")
        }
    }

    /// The versions this client used for the coordinator APIs, "OffsetCommit v9".
    pub fn versions_text(&self) -> String {
        let mut by_api: BTreeMap<i16, BTreeSet<i16>> = BTreeMap::new();
        for (api, version) in self.versions.keys() {
            if COORDINATOR_APIS.iter().any(|(k, _)| k == api) {
                by_api.entry(*api).or_default().insert(*version);
            }
        }
        by_api
            .iter()
            .map(|(api, vs)| {
                let vs: Vec<String> = vs.iter().map(|v| format!("v{v}")).collect();
                format!("{} {}", api_label(*api), vs.join("/"))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn commit_failures(&self) -> u64 {
        self.summary["commit_failures"].as_u64().unwrap_or(0)
    }
}

/// One chaos step as done.
#[derive(Debug, Clone)]
pub struct StepDone {
    pub chaos: Chaos,
    pub node: i32,
    /// Which coordinators were on the node: "group <label>" / "txn".
    pub hosted: Vec<String>,
    pub elapsed: Duration,
}

pub struct Outcome {
    pub dir: PathBuf,
    pub members: Vec<MemberOutcome>,
    pub steps: Vec<StepDone>,
    pub feeder: Value,
    /// Records of the output topic a read_committed reader got.
    pub output_read: usize,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn member(&self, m: Member) -> &MemberOutcome {
        self.members.iter().find(|x| x.member == m).unwrap()
    }

    pub fn summary(&self) -> String {
        let mut s = format!(
            "coordinator scenario in {:.0?} (dir {})\n",
            self.elapsed,
            self.dir.display()
        );
        for st in &self.steps {
            let _ = writeln!(
                s,
                "chaos: {:?} node {} hosting [{}] ({:.1?})",
                st.chaos,
                st.node,
                st.hosted.join(", "),
                st.elapsed
            );
        }
        let _ = writeln!(s, "feeder: {}", self.feeder);
        let _ = writeln!(s, "read_committed output records: {}", self.output_read);
        for m in &self.members {
            let _ = writeln!(s, "--- {} (group {})", m.member.label(), m.group);
            let _ = writeln!(s, "summary: {}", m.summary);
            let _ = writeln!(
                s,
                "coordinator errors seen: {} ({})",
                m.coordinator_errors(),
                m.coordinator_errors_text()
            );
            let _ = writeln!(s, "other errors seen: {}", m.other_errors_text());
            let _ = writeln!(s, "versions: {}", m.versions_text());
            let _ = writeln!(
                s,
                "connections ended by the upstream side: {} ({} with requests unanswered); refused: {}; undecodable: {}",
                m.upstream_closes.0, m.upstream_closes.1, m.refused, m.undecodable
            );
            if m.coordinator_errors() > 0 {
                let samples = &m.coordinator_samples;
                let _ = writeln!(
                    s,
                    "coordinator timeline (first and last of {}, all in {}.coordinator-samples):",
                    samples.len(),
                    m.member.label()
                );
                let head = samples.len().min(6);
                for line in &samples[..head] {
                    let _ = writeln!(s, "  {line}");
                }
                if samples.len() > 12 {
                    let _ = writeln!(s, "  ...");
                }
                for line in &samples[head.max(samples.len().saturating_sub(6))..] {
                    let _ = writeln!(s, "  {line}");
                }
            }
            if m.violations.is_empty() {
                let _ = writeln!(s, "verifiers: ok");
            } else {
                for v in &m.violations {
                    let _ = writeln!(s, "VIOLATION: {v}");
                }
            }
        }
        s
    }

    /// Every observer's full report, for failure messages.
    pub fn observer_reports(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("=== {}\n{}", m.member.label(), m.observer_report))
            .collect()
    }
}

struct Running {
    member: Member,
    group: String,
    observer: Observer,
    proc: ClientProc,
    commits: PathBuf,
}

fn group_consumer(
    member: Member,
    dir: &Path,
    bootstrap: &str,
    topic: &str,
    group: &str,
) -> (ClientProc, PathBuf) {
    let name = member.label();
    let summary = dir.join(format!("{name}.summary.json"));
    let consumed = dir.join(format!("{name}.consumed"));
    let commits = dir.join(format!("{name}.commits"));
    let stderr = dir.join(format!("{name}.stderr"));
    let (kind, protocol) = match member {
        Member::JavaClassic => (ClientKind::Java, "classic"),
        Member::JavaConsumer => (ClientKind::Java, "consumer"),
        Member::Librdkafka => (ClientKind::Librdkafka, "classic"),
        Member::Transactional => unreachable!("not a group consumer"),
    };
    let mut c = super::client_command(kind, "group-consume");
    c.args([
        "--bootstrap",
        bootstrap,
        "--topic",
        topic,
        "--group",
        group,
        "--protocol",
        protocol,
        "--drain-timeout",
        "60",
    ]);
    c.arg("--consumed").arg(&consumed);
    c.arg("--commits").arg(&commits);
    c.arg("--summary").arg(&summary);
    (
        ClientProc::spawn(name, c, summary, consumed, stderr),
        commits,
    )
}

#[allow(clippy::too_many_arguments)]
fn transactional(
    dir: &Path,
    run_id: &str,
    bootstrap: &str,
    input: &str,
    output: &str,
    group: &str,
    transactional_id: &str,
) -> ClientProc {
    let name = Member::Transactional.label();
    let summary = dir.join(format!("{name}.summary.json"));
    let log = dir.join(format!("{name}.txns"));
    let stderr = dir.join(format!("{name}.stderr"));
    let mut c = super::java("txn-produce");
    c.args([
        "--bootstrap",
        bootstrap,
        "--topic",
        output,
        "--run-id",
        run_id,
        "--transactional-id",
        transactional_id,
        "--input-topic",
        input,
        "--input-group",
        group,
        "--records-per-txn",
        "10",
        "--abort-every",
        "4",
        "--txn-rate",
        "5",
    ]);
    c.arg("--txn-log").arg(&log).arg("--summary").arg(&summary);
    ClientProc::spawn(name, c, summary, log, stderr)
}

/// (topic, partition) -> offsets, from a commits file ("topic partition offset" lines).
pub fn read_commits(path: &Path) -> BTreeMap<(String, i32), Vec<i64>> {
    let mut m: BTreeMap<(String, i32), Vec<i64>> = BTreeMap::new();
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() == 3 {
            m.entry((f[0].to_string(), f[1].parse().unwrap()))
                .or_default()
                .push(f[2].parse().unwrap());
        }
    }
    m
}

/// partition -> offset, from the Admin API answer of `group-offsets` for one topic.
pub fn offsets_of(v: &Value, topic: &str) -> BTreeMap<i32, i64> {
    v["offsets"][topic]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(p, off)| (p.parse().unwrap(), off.as_i64().unwrap()))
                .collect()
        })
        .unwrap_or_default()
}

/// Offsets committed by one member never go backwards, and the group's final committed offsets
/// are at least the member's last successful commit.
pub fn verify_commits(
    commits: &BTreeMap<(String, i32), Vec<i64>>,
    topic: &str,
    final_offsets: &BTreeMap<i32, i64>,
) -> Vec<String> {
    let mut v = Vec::new();
    for ((t, p), offs) in commits {
        if t != topic {
            continue;
        }
        if let Some(w) = offs.windows(2).find(|w| w[1] < w[0]) {
            v.push(format!(
                "{t}-{p}: a successful commit of {} after one of {}: committed offsets went backwards",
                w[1], w[0]
            ));
        }
        let last = *offs.last().unwrap();
        match final_offsets.get(p) {
            None => v.push(format!(
                "{t}-{p}: the group has no committed offset, the member last committed {last}"
            )),
            Some(f) if *f < last => v.push(format!(
                "{t}-{p}: the group's committed offset is {f}, the member last committed {last}: a commit was lost"
            )),
            _ => {}
        }
    }
    v
}

/// The transactional client: every transaction ended as asked, the read_committed output holds
/// exactly the committed transactions' records once each (and no record of any other), and the
/// committed transactions' input ranges cover each input offset below the group's committed
/// offset exactly once. Returns (violations, transactions whose end was not as asked).
pub fn verify_transactions(
    txn_log: &Path,
    output: &[Consumed],
    input_committed: &BTreeMap<i32, i64>,
) -> (Vec<String>, Vec<String>) {
    let mut v = Vec::new();
    let mut not_as_asked = Vec::new();
    let mut committed: BTreeSet<u64> = BTreeSet::new();
    let mut aborted: BTreeSet<u64> = BTreeSet::new();
    let mut unknown: Vec<(u64, BTreeSet<u64>)> = Vec::new();
    let mut ranges: BTreeMap<i32, Vec<(i64, i64, u64)>> = BTreeMap::new();
    let text = std::fs::read_to_string(txn_log).unwrap_or_default();
    let mut txns = 0;
    for line in text.lines() {
        let t: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("transaction log line {line:?}: {e}"));
        txns += 1;
        let idx = t["txn"].as_u64().unwrap();
        let first = t["first_seq"].as_u64().unwrap();
        let n = t["records"].as_u64().unwrap();
        let seqs: BTreeSet<u64> = (first..first + n).collect();
        let intent = t["intent"].as_str().unwrap();
        let fin = t["final"].as_str().unwrap();
        let asked = if intent == "commit" {
            "committed"
        } else {
            "aborted"
        };
        if t["outcome"] != json!("ok") || fin != asked {
            not_as_asked.push(format!(
                "txn {idx}: asked to {intent}, outcome {}, attempts {}, final {fin}",
                t["outcome"], t["attempts"]
            ));
        }
        match fin {
            "committed" => {
                committed.extend(seqs);
                for (p, r) in t["sources"].as_object().into_iter().flatten() {
                    ranges.entry(p.parse().unwrap()).or_default().push((
                        r[0].as_i64().unwrap(),
                        r[1].as_i64().unwrap(),
                        idx,
                    ));
                }
            }
            "aborted" => aborted.extend(seqs),
            _ => unknown.push((idx, seqs)),
        }
    }
    if txns == 0 {
        v.push("no transaction at all".to_string());
    }
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for c in output {
        *seen.entry(c.seq).or_default() += 1;
    }
    let missing: Vec<u64> = committed
        .iter()
        .filter(|s| !seen.contains_key(s))
        .copied()
        .collect();
    if !missing.is_empty() {
        v.push(format!(
            "{} records of committed transactions missing from the read_committed output (first: {:?})",
            missing.len(),
            &missing[..missing.len().min(10)]
        ));
    }
    let twice: Vec<u64> = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(s, _)| *s)
        .collect();
    if !twice.is_empty() {
        v.push(format!(
            "{} records read more than once (first: {:?})",
            twice.len(),
            &twice[..twice.len().min(10)]
        ));
    }
    let leaked: Vec<u64> = aborted
        .iter()
        .filter(|s| seen.contains_key(s))
        .copied()
        .collect();
    if !leaked.is_empty() {
        v.push(format!(
            "{} records of aborted transactions visible to read_committed (first: {:?})",
            leaked.len(),
            &leaked[..leaked.len().min(10)]
        ));
    }
    for (idx, seqs) in &unknown {
        let visible = seqs.iter().filter(|s| seen.contains_key(s)).count();
        if visible != 0 && visible != seqs.len() {
            v.push(format!(
                "txn {idx} (outcome unknown to the client): {visible} of {} records visible: not atomic",
                seqs.len()
            ));
        }
    }
    let known: BTreeSet<u64> = committed
        .iter()
        .chain(&aborted)
        .chain(unknown.iter().flat_map(|(_, s)| s))
        .copied()
        .collect();
    let strays = seen.keys().filter(|s| !known.contains(s)).count();
    if strays > 0 {
        v.push(format!(
            "{strays} records in the output belong to no logged transaction"
        ));
    }
    // Input exactly once: per partition, the committed transactions' source ranges tile
    // [0, the group's committed offset) with no gap and no overlap.
    let partitions: BTreeSet<i32> = ranges
        .keys()
        .chain(input_committed.keys())
        .copied()
        .collect();
    for p in partitions {
        let mut rs = ranges.get(&p).cloned().unwrap_or_default();
        rs.sort();
        let mut next = 0i64;
        for (from, to, idx) in &rs {
            if *from != next {
                v.push(format!(
                    "input partition {p}: committed txn {idx} processed offsets {from}..={to}, expected to start at {next} ({})",
                    if *from > next { "a gap: input records never processed" } else { "an overlap: input records processed twice" }
                ));
            }
            next = next.max(to + 1);
        }
        let group = input_committed.get(&p).copied().unwrap_or(0);
        if group != next {
            v.push(format!(
                "input partition {p}: the input group's committed offset is {group}, the committed transactions processed up to {next}"
            ));
        }
    }
    (v, not_as_asked)
}

/// Which node hosts each client's coordinators now: member -> nodes.
fn placement(
    admin: &mut Admin,
    groups: &[(Member, String)],
    txn_id: &str,
) -> BTreeMap<Member, Vec<(i32, String)>> {
    let names: Vec<&str> = groups.iter().map(|(_, g)| g.as_str()).collect();
    let r =
        admin.call(json!({"op": "coordinators", "groups": names, "transactional_ids": [txn_id]}));
    let node = |e: &Value| {
        let c = e["coordinator"].as_i64().unwrap_or(-1);
        if c >= 0 {
            c as i32
        } else {
            e["leader"].as_i64().unwrap_or(-1) as i32
        }
    };
    let mut out: BTreeMap<Member, Vec<(i32, String)>> = BTreeMap::new();
    for (m, g) in groups {
        out.entry(*m)
            .or_default()
            .push((node(&r["groups"][g]), format!("group of {}", m.label())));
    }
    out.entry(Member::Transactional)
        .or_default()
        .push((node(&r["transactions"][txn_id]), "txn".to_string()));
    out
}

/// Waits until the broker at `addr` answers an ApiVersions request. A SIGKILLed broker's socket
/// can still accept connections for a moment (its JVM is not gone yet) without answering, so
/// accepting alone does not tell that the new process is up.
pub fn wait_answering(addr: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !answers_api_versions(addr) {
        assert!(
            Instant::now() < deadline,
            "broker {addr} not answering after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn answers_api_versions(addr: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(sock) = addr.parse::<std::net::SocketAddr>() else {
        return false;
    };
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(1)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    // ApiVersions v0: api key 18, version 0, correlation id 1, client id "coord-test", no body.
    let client_id = b"coord-test";
    let mut frame = Vec::new();
    frame.extend_from_slice(&18i16.to_be_bytes());
    frame.extend_from_slice(&0i16.to_be_bytes());
    frame.extend_from_slice(&1i32.to_be_bytes());
    frame.extend_from_slice(&(client_id.len() as i16).to_be_bytes());
    frame.extend_from_slice(client_id);
    let mut out = (frame.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&frame);
    let mut size = [0u8; 4];
    s.write_all(&out).is_ok() && s.read_exact(&mut size).is_ok() && i32::from_be_bytes(size) > 0
}

/// Runs the scenario; `target` is what the observers front (the brokers or fairlead).
pub fn run(plan: &Plan, target: &str, dir: PathBuf) -> Outcome {
    let started = Instant::now();
    let c = cluster();
    let mut admin = Admin::connect(&c.bootstrap);
    let input = unique(&format!("{}-in", plan.name));
    let output = unique(&format!("{}-out", plan.name));
    admin.create_topic(&input, 6, 3);
    admin.create_topic(&output, 6, 3);
    let txn_id = unique(&format!("{}-txn", plan.name));
    let txn_run = "txn";
    let groups: Vec<(Member, String)> = Member::ALL
        .iter()
        .map(|m| (*m, unique(&format!("{}-{}", plan.name, m.label()))))
        .collect();

    // The feeder is not under test: the brokers directly, an idempotent Java producer (the
    // librdkafka one crashed once inside confluent-kafka's poll, SystemError, after logging
    // COORDINATOR_LOAD_IN_PROGRESS for its InitProducerId).
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
    for (member, group) in &groups {
        let observer = Observer::start(target).expect("start an observer");
        let via = observer.bootstrap();
        let (proc, commits) = match member {
            Member::Transactional => (
                transactional(&dir, txn_run, &via, &input, &output, group, &txn_id),
                PathBuf::new(),
            ),
            m => group_consumer(*m, &dir, &via, &input, group),
        };
        running.push(Running {
            member: *member,
            group: group.clone(),
            observer,
            proc,
            commits,
        });
    }
    feeder.wait_records(20, Duration::from_secs(90));
    for r in running.iter_mut() {
        let n = if r.member == Member::Transactional {
            3
        } else {
            20
        };
        r.proc.wait_records(n, Duration::from_secs(120));
    }
    std::thread::sleep(plan.settle);

    // Chaos: each step picks a broker by what it hosts (see `Chaos`).
    let mut steps = Vec::new();
    // How many steps hit each client's coordinators so far.
    let mut hits: BTreeMap<Member, usize> = Member::ALL.iter().map(|m| (*m, 0)).collect();
    for chaos in &plan.steps {
        let place = placement(&mut admin, &groups, &txn_id);
        let mut by_node: BTreeMap<i32, Vec<(Member, String)>> = BTreeMap::new();
        for (m, list) in &place {
            for (node, what) in list {
                by_node.entry(*node).or_default().push((*m, what.clone()));
            }
        }
        let txn_node = place[&Member::Transactional]
            .iter()
            .find(|(_, w)| w == "txn")
            .map(|(n, _)| *n)
            .unwrap();
        let score = |node: &i32| {
            let hosted = by_node.get(node).cloned().unwrap_or_default();
            let members: BTreeSet<Member> = hosted.iter().map(|(m, _)| *m).collect();
            let least = hits.values().min().copied().unwrap_or(0);
            let fresh = members.iter().filter(|m| hits[*m] == least).count();
            let txn = usize::from(*node == txn_node);
            match chaos {
                Chaos::Restart => (fresh, txn, hosted.len()),
                Chaos::KillRestart => (txn, 0, hosted.len()),
            }
        };
        let node = *by_node
            .keys()
            .filter(|n| **n > 0)
            .max_by_key(|n| score(n))
            .expect("no coordinator placed on any broker");
        let hosted = by_node[&node].clone();
        for m in hosted.iter().map(|(m, _)| *m).collect::<BTreeSet<_>>() {
            *hits.get_mut(&m).unwrap() += 1;
        }
        let t0 = Instant::now();
        let op = match chaos {
            Chaos::Restart => "restart",
            Chaos::KillRestart => "kill-restart",
        };
        testbed(&[op, &node.to_string()]);
        if *chaos == Chaos::KillRestart {
            // `testbed kill-restart` can return before the new process is up: the cluster has
            // not fenced the killed one yet, so it still looks registered and healthy.
            wait_answering(&c.brokers[&node], Duration::from_secs(120));
            testbed(&["wait-healthy", "--timeout", "120"]);
        }
        admin.wait_healthy(&[input.as_str(), output.as_str()]);
        steps.push(StepDone {
            chaos: *chaos,
            node,
            hosted: hosted.iter().map(|(_, w)| w.clone()).collect(),
            elapsed: t0.elapsed(),
        });
        std::thread::sleep(plan.settle);
    }

    // Stop the feeder, then every client at once (the consumers drain and commit at the end).
    let feed_acked = feeder.data.clone();
    let feeder_summary = feeder.stop();
    for r in running.iter_mut() {
        drop(r.proc.stdin.take());
    }
    // Draining takes seconds; a client stuck in a call (a commit or an EndTxn nobody answers)
    // is killed at the deadline and reported, so the observers' counts are still read.
    let stop_deadline = Instant::now() + Duration::from_secs(150);
    let mut stopped = Vec::new();
    for r in running {
        let Running {
            member,
            group,
            observer,
            proc,
            commits,
        } = r;
        let data = proc.data.clone();
        let (summary, stuck) = stop_by(proc, stop_deadline);
        stopped.push(Stopped {
            member,
            group,
            observer,
            data,
            commits,
            summary,
            stuck,
        });
    }

    // Verify.
    let acked = read_acked(&feed_acked);
    let out_reader = ClientProc::consumer(
        ClientKind::Java,
        &dir,
        "output-read-committed",
        &c.bootstrap,
        &[output.as_str()],
        None,
        &[("isolation.level", "read_committed")],
    );
    let out_path = out_reader.data.clone();
    let out_summary = out_reader.stop();
    let output_records = read_consumed(&out_path, &output, txn_run);
    let mut members = Vec::new();
    for r in stopped {
        let summary = r.summary;
        let final_offsets = offsets_of(
            &admin.call(json!({"op": "group-offsets", "group": r.group})),
            &input,
        );
        let mut violations = Vec::new();
        if let Some(stuck) = &r.stuck {
            violations.push(stuck.clone());
        }
        if summary.get("fatal").is_some() {
            violations.push(format!(
                "the client ended on a fatal error: {}",
                summary["fatal"]
            ));
        }
        if r.member == Member::Transactional {
            let (v, not_as_asked) = verify_transactions(&r.data, &output_records, &final_offsets);
            violations.extend(v);
            if !not_as_asked.is_empty() {
                violations.push(format!(
                    "{} transactions did not end as the client asked: {}",
                    not_as_asked.len(),
                    not_as_asked[..not_as_asked.len().min(10)].join("; ")
                ));
            }
            if out_summary["drained"] != json!(true) {
                violations.push(format!(
                    "the read_committed reader did not drain: {out_summary}"
                ));
            }
        } else {
            violations.extend(verify_commits(
                &read_commits(&r.commits),
                &input,
                &final_offsets,
            ));
            let consumed = read_consumed(&r.data, &input, "feed");
            let verdict = verify(&acked, &consumed);
            if !verdict.lossless() {
                violations.push(format!(
                    "{} of {} acknowledged input records never consumed (first: {:?})",
                    verdict.missing.len(),
                    verdict.acked,
                    &verdict.missing[..verdict.missing.len().min(10)]
                ));
            }
            if summary["drained"] != json!(true) {
                violations.push("the consumer did not drain".to_string());
            }
        }
        let samples = r.observer.coordinator_samples();
        let _ = std::fs::write(
            dir.join(format!("{}.coordinator-samples", r.member.label())),
            samples.join("\n") + "\n",
        );
        members.push(MemberOutcome {
            member: r.member,
            group: r.group.clone(),
            summary,
            errors: r.observer.errors(),
            versions: r.observer.versions(),
            undecodable: r.observer.undecodable().values().sum(),
            upstream_closes: r.observer.upstream_closes(),
            refused: r.observer.refused(),
            observer_report: r.observer.report(),
            coordinator_samples: r.observer.coordinator_samples(),
            violations,
        });
    }
    // Give the next test a cluster with the leaders where they started (no automatic rebalance).
    admin.call(json!({"op": "elect-preferred", "timeout_ms": 60000}));
    testbed(&["wait-healthy"]);
    Outcome {
        dir,
        members,
        steps,
        feeder: feeder_summary,
        output_read: output_records.len(),
        elapsed: started.elapsed(),
    }
}

struct Stopped {
    member: Member,
    group: String,
    observer: Observer,
    /// The consumed file (group consumers) or the transaction log.
    data: PathBuf,
    commits: PathBuf,
    summary: Value,
    /// Why the client had to be killed instead of stopping, with its last log lines.
    stuck: Option<String>,
}

/// Closes the client's stdin and waits for its summary until `deadline`; a client still running
/// then is killed: its summary is `null` and the second value says so, with its last log lines.
pub fn stop_by(mut proc: ClientProc, deadline: Instant) -> (Value, Option<String>) {
    drop(proc.stdin.take());
    loop {
        if let Some(status) = proc.child.try_wait().unwrap() {
            return match std::fs::read_to_string(&proc.summary) {
                Ok(text) => (serde_json::from_str(&text).unwrap(), None),
                Err(_) => (
                    Value::Null,
                    Some(format!(
                        "exited ({status}) without a summary; last log lines:\n{}",
                        tail(&proc.stderr, 3000)
                    )),
                ),
            };
        }
        if Instant::now() > deadline {
            let _ = proc.child.kill();
            let _ = proc.child.wait();
            return (
                Value::Null,
                Some(format!(
                    "did not stop in time (killed); last log lines:\n{}",
                    tail(&proc.stderr, 3000)
                )),
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
