//! The legacy-client scenario under leader changes, run directly against the brokers (the
//! control) or through fairlead, with the strict observer between the clients and their target.
//!
//! Topics: "main" (6 partitions, RF 3) and optionally "moving" (3 partitions, RF 2, whose
//! replicas get reassigned). Clients: a legacy producer (metadata.max.age.ms=1h, retries=0,
//! acks=all, idempotence off), optionally an idempotent producer (max.in.flight 5), and a
//! consumer-group consumer (metadata.max.age.ms=1h), all real and unmodified.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::observer::{Observer, LEADERSHIP_CODES};
use super::*;

#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    pub client: ClientKind,
    /// Rounds of "move the leadership of every partition of every topic".
    pub move_rounds: usize,
    pub move_interval: Duration,
    /// A rolling restart of all brokers after half the moves.
    pub rolling_restart: bool,
    /// Replica reassignments on the RF2 topic (0 = no RF2 topic).
    pub reassignments: usize,
    pub idempotent_producer: bool,
    pub rate: u32,
    /// Rounds after which a broker is killed with SIGKILL and restarted (nodes in turn).
    pub kill_restart_rounds: Vec<usize>,
}

impl Plan {
    pub fn new(name: &str, client: ClientKind) -> Plan {
        Plan {
            name: name.to_string(),
            client,
            move_rounds: 10,
            move_interval: Duration::from_millis(1500),
            rolling_restart: false,
            reassignments: 0,
            idempotent_producer: false,
            rate: 100,
            kill_restart_rounds: Vec::new(),
        }
    }
}

pub struct Outcome {
    pub dir: PathBuf,
    pub legacy: Vec<(String, Value)>,
    pub idempotent: Vec<(String, Value)>,
    pub consumer: Value,
    /// (producer run, topic) -> verdict of acked vs consumed
    pub verdicts: Vec<(String, String, Verdict)>,
    pub leadership_errors_seen: u64,
    /// Fetch answers whose records started after the offset the consumer asked for.
    pub fetch_gaps: u64,
    pub observer_report: String,
    pub partition_moves: usize,
    pub elapsed: Duration,
}

impl Outcome {
    /// record-error-total + record-retry-total over the legacy producers.
    pub fn legacy_errors_and_retries(&self) -> f64 {
        self.legacy
            .iter()
            .chain(&self.idempotent)
            .map(|(_, s)| num(&s["record_error_total"]) + num(&s["record_retry_total"]))
            .sum()
    }

    pub fn summary(&self) -> String {
        let mut s = format!("scenario dir: {}\n", self.dir.display());
        for (n, v) in self.legacy.iter().chain(&self.idempotent) {
            s += &format!("producer {n}: {v}\n");
        }
        s += &format!("consumer: {}\n", self.consumer);
        for (run, topic, v) in &self.verdicts {
            s += &format!(
                "{run} on {topic}: acked {} missing {} duplicated {} out-of-order {}\n",
                v.acked,
                v.missing.len(),
                v.duplicated.len(),
                v.out_of_order.len()
            );
        }
        s += &format!(
            "partition moves: {}\n{}",
            self.partition_moves, self.observer_report
        );
        s
    }
}

pub fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

fn legacy_props(client: ClientKind) -> Vec<(&'static str, &'static str)> {
    match client {
        ClientKind::Java => vec![
            ("acks", "all"),
            ("retries", "0"),
            ("enable.idempotence", "false"),
            ("metadata.max.age.ms", "3600000"),
            ("max.in.flight.requests.per.connection", "5"),
        ],
        ClientKind::Librdkafka => vec![
            ("acks", "all"),
            ("retries", "0"),
            ("enable.idempotence", "false"),
            ("metadata.max.age.ms", "3600000"),
            ("topic.metadata.refresh.interval.ms", "-1"),
            ("max.in.flight.requests.per.connection", "5"),
        ],
        ClientKind::KafkaPython => vec![
            ("acks", "all"),
            ("retries", "0"),
            ("metadata_max_age_ms", "3600000"),
            ("max_in_flight_requests_per_connection", "5"),
        ],
    }
}

fn idempotent_props(client: ClientKind) -> Vec<(&'static str, &'static str)> {
    match client {
        ClientKind::Java => vec![
            ("acks", "all"),
            ("enable.idempotence", "true"),
            ("max.in.flight.requests.per.connection", "5"),
            ("metadata.max.age.ms", "3600000"),
        ],
        ClientKind::Librdkafka => vec![
            ("acks", "all"),
            ("enable.idempotence", "true"),
            ("max.in.flight.requests.per.connection", "5"),
            ("metadata.max.age.ms", "3600000"),
            ("topic.metadata.refresh.interval.ms", "-1"),
        ],
        ClientKind::KafkaPython => vec![
            ("acks", "all"),
            ("enable_idempotence", "true"),
            ("max_in_flight_requests_per_connection", "5"),
            ("metadata_max_age_ms", "3600000"),
        ],
    }
}

fn consumer_props(client: ClientKind) -> Vec<(&'static str, &'static str)> {
    match client {
        ClientKind::Java => vec![("metadata.max.age.ms", "3600000")],
        ClientKind::Librdkafka => vec![
            ("metadata.max.age.ms", "3600000"),
            ("topic.metadata.refresh.interval.ms", "-1"),
        ],
        ClientKind::KafkaPython => vec![("metadata_max_age_ms", "3600000")],
    }
}

/// Runs the scenario; `target` is the bootstrap the observer fronts (brokers or fairlead).
pub fn run(plan: &Plan, target: &str, dir: PathBuf) -> Outcome {
    let started = Instant::now();
    let c = cluster();
    let mut admin = Admin::connect(&c.bootstrap);
    let main = unique(&format!("{}-main", plan.name));
    admin.create_topic(&main, 6, 3);
    let moving = (plan.reassignments > 0).then(|| {
        let t = unique(&format!("{}-moving", plan.name));
        // min.insync.replicas=1: with two replicas and the default of 2, every restart or
        // reassignment would refuse acks=all writes (NOT_ENOUGH_REPLICAS), which is Kafka
        // doing its job, not a leadership change.
        admin.call(serde_json::json!({"op": "create-topic", "topic": t, "partitions": 3, "replication_factor": 2, "configs": {"min.insync.replicas": "1"}}));
        t
    });
    let mut topics = vec![main.clone()];
    topics.extend(moving.clone());

    let observer = Observer::start(target).expect("start the observer");
    let via = observer.bootstrap();

    let mut producers = Vec::new();
    for t in &topics {
        let short = if *t == main { "main" } else { "moving" };
        let legacy = format!("legacy-{short}");
        producers.push((
            legacy.clone(),
            t.clone(),
            false,
            ClientProc::producer(
                plan.client,
                &dir,
                &legacy,
                &via,
                t,
                plan.rate,
                &legacy_props(plan.client),
            ),
        ));
        if plan.idempotent_producer {
            let idem = format!("idem-{short}");
            producers.push((
                idem.clone(),
                t.clone(),
                true,
                ClientProc::producer(
                    plan.client,
                    &dir,
                    &idem,
                    &via,
                    t,
                    plan.rate,
                    &idempotent_props(plan.client),
                ),
            ));
        }
    }
    let topic_refs: Vec<&str> = topics.iter().map(|s| s.as_str()).collect();
    let mut consumer = ClientProc::consumer(
        plan.client,
        &dir,
        "consumer",
        &via,
        &topic_refs,
        Some(&unique("group")),
        &consumer_props(plan.client),
    );
    for (_, _, _, p) in producers.iter_mut() {
        p.wait_records(20, Duration::from_secs(90));
    }
    consumer.wait_records(20, Duration::from_secs(90));

    // Chaos.
    let mut partition_moves = 0;
    let mut reassigned = 0;
    for round in 0..plan.move_rounds {
        for t in &topics {
            // A partition whose followers are catching up (after a restart) has nobody to
            // move to yet: wait for full ISR and try again.
            let mut r = admin.try_call(serde_json::json!({"op": "move-all", "topic": t}));
            if r["ok"] != serde_json::json!(true) {
                admin.wait_healthy(&[t.as_str()]);
                r = admin.move_all(t);
            }
            partition_moves += r["moves"].as_array().map(|m| m.len()).unwrap_or(0);
        }
        if let Some(k) = plan.kill_restart_rounds.iter().position(|r| *r == round) {
            let node = (k % 3 + 1).to_string();
            testbed(&["kill-restart", &node]);
            admin.wait_healthy(&topic_refs);
        }
        if plan.rolling_restart && round == plan.move_rounds / 2 {
            testbed(&["rolling-restart"]);
            admin.wait_healthy(&topic_refs);
        }
        if let Some(m) = &moving {
            // Spread the reassignments over the run.
            if reassigned < plan.reassignments
                && round % (plan.move_rounds / plan.reassignments.max(1)).max(1) == 1
            {
                let parts = admin.describe(m);
                let replicas: Vec<i32> = parts[0]["replicas"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_i64().unwrap() as i32)
                    .collect();
                let spare = (1..=3).find(|b| !replicas.contains(b)).unwrap();
                // Drop the current first replica: the partition moves onto the spare broker.
                admin.reassign(m, 0, &[replicas[1], spare]);
                reassigned += 1;
            }
        }
        std::thread::sleep(plan.move_interval);
    }
    assert_eq!(reassigned, plan.reassignments, "reassignments done");

    // Stop producers first, then let the consumer drain everything that was written.
    let mut legacy = Vec::new();
    let mut idempotent = Vec::new();
    let mut runs = Vec::new();
    for (name, topic, idem, p) in producers {
        let data = p.data.clone();
        let s = p.stop();
        runs.push((name.clone(), topic, data));
        if idem {
            idempotent.push((name, s));
        } else {
            legacy.push((name, s));
        }
    }
    let consumed_path = consumer.data.clone();
    let consumer_summary = consumer.stop();
    let mut verdicts = Vec::new();
    for (name, topic, data) in runs {
        let v = verify(
            &read_acked(&data),
            &read_consumed(&consumed_path, &topic, &name),
        );
        verdicts.push((name, topic, v));
    }
    Outcome {
        dir,
        legacy,
        idempotent,
        consumer: consumer_summary,
        verdicts,
        leadership_errors_seen: observer.count(&LEADERSHIP_CODES),
        fetch_gaps: observer.fetch_gaps(),
        observer_report: observer.report(),
        partition_moves,
        elapsed: started.elapsed(),
    }
}
