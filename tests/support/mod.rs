//! Test support: the real cluster (tests/testbed/testbed), real clients (the Java testkit and
//! the Python drivers), fairlead as a separate process, and the strict observer.
//!
//! Nothing here skips once a test runs: if the cluster or a client cannot start, the test fails
//! and says why. Whether a cluster test runs at all is [`bed::skip_without_testbed`]'s call.

#![allow(dead_code)]

pub mod bed;
pub mod coordination;
pub mod gokit;
pub mod observer;
pub mod raw;
pub mod rolling;
pub mod scenario;

#[allow(unused_imports)]
pub use bed::skip_without_testbed;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where a test keeps its files (client outputs, fairlead's log): target/test-runs/<name>.
pub fn run_dir(name: &str) -> PathBuf {
    let d = repo().join("target").join("test-runs").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
        % 100_000_000;
    format!("{prefix}-{}-{t}", std::process::id())
}

/// Tests that move leadership or restart brokers take this lock: they would disturb each other.
pub fn chaos_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs the testbed script; returns its last stdout line as JSON. Panics with its stderr.
pub fn testbed(args: &[&str]) -> Value {
    let out = Command::new(repo().join("tests/testbed/testbed"))
        .args(args)
        .output()
        .expect("run tests/testbed/testbed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "testbed {args:?} failed:\n{}\n{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    // The last line that is a JSON object (the tools the script runs may print other lines),
    // else all of it (indented JSON), else nothing.
    stdout
        .lines()
        .rev()
        .filter(|l| l.trim_start().starts_with('{'))
        .find_map(|l| {
            serde_json::from_str::<Value>(l)
                .ok()
                .filter(Value::is_object)
        })
        .or_else(|| serde_json::from_str(&stdout).ok())
        .unwrap_or(Value::Null)
}

pub struct Cluster {
    pub bootstrap: String,
    pub version: String,
    /// node id -> "host:port", the brokers' own addresses.
    pub brokers: BTreeMap<i32, String>,
}

/// The cluster, started once per test run (`testbed up` is idempotent: a healthy cluster of
/// the wanted version is reused).
pub fn cluster() -> &'static Cluster {
    static C: OnceLock<Cluster> = OnceLock::new();
    C.get_or_init(|| {
        let v = testbed(&["up"]);
        Cluster {
            bootstrap: v["bootstrap"].as_str().expect("bootstrap").to_string(),
            version: v["version"].as_str().unwrap_or("?").to_string(),
            brokers: v["brokers"]
                .as_object()
                .expect("brokers in the testbed JSON")
                .iter()
                .map(|(id, addr)| (id.parse().unwrap(), addr.as_str().unwrap().to_string()))
                .collect(),
        }
    })
}

fn testkit_classpath() -> &'static str {
    static CP: OnceLock<String> = OnceLock::new();
    CP.get_or_init(|| {
        let out = Command::new(repo().join("tests/testbed/testbed"))
            .arg("testkit-classpath")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "building the Java testkit failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap()
            .trim()
            .to_string()
    })
}

fn java(cmd: &str) -> Command {
    let mut c = Command::new("java");
    c.args([
        "-Xmx256m",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "-cp",
        testkit_classpath(),
        "dev.fairlead.testkit.Main",
        cmd,
    ]);
    c
}

// ---------------------------------------------------------------------------------------------
// Admin: one long-lived Admin client (the testkit's admin-shell).

pub struct Admin {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Admin {
    pub fn connect(bootstrap: &str) -> Admin {
        Self::connect_with(bootstrap, &[])
    }

    pub fn connect_with(bootstrap: &str, props: &[(&str, &str)]) -> Admin {
        let mut cmd = java("admin-shell");
        cmd.args(["--bootstrap", bootstrap]);
        for (k, v) in props {
            cmd.args(["--prop", &format!("{k}={v}")]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start admin-shell");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut a = Admin {
            child,
            stdin,
            stdout,
        };
        a.call(json!({"op": "describe-cluster"}));
        a
    }

    /// Runs an operation; panics if it fails.
    pub fn call(&mut self, cmd: Value) -> Value {
        let v = self.try_call(cmd.clone());
        assert_eq!(v["ok"], json!(true), "admin {cmd} failed: {v}");
        v
    }

    pub fn try_call(&mut self, cmd: Value) -> Value {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("admin-shell answer");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("admin-shell said {line:?}: {e}"))
    }

    pub fn create_topic(&mut self, topic: &str, partitions: i32, rf: i32) -> Value {
        self.call(json!({"op": "create-topic", "topic": topic, "partitions": partitions, "replication_factor": rf}))
    }

    pub fn create_topic_with(&mut self, topic: &str, assignment: Value, configs: Value) -> Value {
        self.call(json!({"op": "create-topic", "topic": topic, "assignment": assignment, "configs": configs}))
    }

    pub fn describe(&mut self, topic: &str) -> Vec<Value> {
        self.call(json!({"op": "describe", "topic": topic}))["partitions"]
            .as_array()
            .unwrap()
            .clone()
    }

    pub fn move_all(&mut self, topic: &str) -> Value {
        self.call(json!({"op": "move-all", "topic": topic}))
    }

    pub fn move_leader(&mut self, topic: &str, partition: i32) -> Value {
        self.call(json!({"op": "move-leader", "topic": topic, "partition": partition}))
    }

    pub fn reassign(&mut self, topic: &str, partition: i32, replicas: &[i32]) -> Value {
        self.call(
            json!({"op": "reassign", "topic": topic, "partition": partition, "replicas": replicas}),
        )
    }

    pub fn wait_healthy(&mut self, topics: &[&str]) -> Value {
        self.call(json!({"op": "wait-healthy", "topics": topics, "timeout_ms": 90000}))
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// fairlead, as a separate process (the real binary).

pub struct Fairlead {
    child: Option<Child>,
    pub bootstrap: String,
    pub admin: String,
    pub listen_port: u16,
    pub log: PathBuf,
}

/// A free port P such that P..=P+span are all free (fairlead serves node N on P+1+N).
pub fn free_port_block(span: u16) -> u16 {
    static NEXT: Mutex<u16> = Mutex::new(0);
    let mut next = NEXT.lock().unwrap();
    if *next == 0 {
        *next = 20_000 + (std::process::id() % 800) as u16 * 10;
    }
    loop {
        let p = *next;
        *next = if p > 29_000 { 20_000 } else { p + span + 10 };
        if (p..=p + span).all(|q| TcpListener::bind(("127.0.0.1", q)).is_ok()) {
            return p;
        }
    }
}

impl Fairlead {
    pub fn start(bootstrap: &str, dir: &Path, extra: &[&str]) -> Fairlead {
        let listen_port = free_port_block(8);
        let admin_port = free_port_block(0);
        Self::start_on(bootstrap, dir, listen_port, admin_port, extra)
    }

    pub fn start_on(
        bootstrap: &str,
        dir: &Path,
        listen_port: u16,
        admin_port: u16,
        extra: &[&str],
    ) -> Fairlead {
        let mut f = Self::spawn_on(bootstrap, dir, listen_port, admin_port, extra);
        f.wait_ready(Duration::from_secs(30));
        f
    }

    /// Like [`Fairlead::start_on`], without waiting for /readyz.
    pub fn spawn_on(
        bootstrap: &str,
        dir: &Path,
        listen_port: u16,
        admin_port: u16,
        extra: &[&str],
    ) -> Fairlead {
        let log = dir.join(format!("fairlead-{listen_port}.log"));
        let logf = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_fairlead"))
            .args([
                "--bootstrap",
                bootstrap,
                "--listen",
                &format!("127.0.0.1:{listen_port}"),
                "--admin",
                &format!("127.0.0.1:{admin_port}"),
            ])
            .args(extra)
            .env("NO_COLOR", "1")
            .stdout(logf.try_clone().unwrap())
            .stderr(logf)
            .spawn()
            .expect("start fairlead");
        Fairlead {
            child: Some(child),
            bootstrap: format!("127.0.0.1:{listen_port}"),
            admin: format!("127.0.0.1:{admin_port}"),
            listen_port,
            log,
        }
    }

    pub fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok((200, _)) = http_get(&self.admin, "/readyz") {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "fairlead exited ({status}) before ready:\n{}",
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "fairlead not ready in {timeout:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn metrics(&self) -> String {
        http_get(&self.admin, "/metrics")
            .expect("scrape /metrics")
            .1
    }

    /// Sum of a metric's samples whose labels include all of `labels`.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_sum(&self.metrics(), name, labels)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGTERM, then wait (the process drains and exits).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        child.wait().unwrap()
    }
}

impl Drop for Fairlead {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let code = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

/// Sums the samples of `name` whose label set includes `labels` (Prometheus text format).
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut sum = 0.0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = match line.rsplit_once(' ') {
            Some(x) => x,
            None => continue,
        };
        let (n, lbl) = match series.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (series, ""),
        };
        if n != name {
            continue;
        }
        if labels
            .iter()
            .all(|(k, v)| lbl.split(',').any(|kv| kv == format!("{k}=\"{v}\"")))
        {
            sum += value.parse::<f64>().unwrap_or(0.0);
        }
    }
    sum
}

// ---------------------------------------------------------------------------------------------
// Clients

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    Java,
    /// librdkafka, through Python confluent-kafka.
    Librdkafka,
    KafkaPython,
}

/// A running producer or consumer process; stopped by closing its stdin.
pub struct ClientProc {
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    pub summary: PathBuf,
    pub data: PathBuf,
    pub stderr: PathBuf,
}

fn client_command(kind: ClientKind, cmd: &str) -> Command {
    match kind {
        ClientKind::Java => java(cmd),
        ClientKind::Librdkafka | ClientKind::KafkaPython => {
            let mut c = Command::new(python_venv());
            c.arg(repo().join("tests/testbed/python/driver.py"))
                .arg(cmd)
                .args([
                    "--client",
                    if kind == ClientKind::Librdkafka {
                        "confluent"
                    } else {
                        "kafka-python"
                    },
                ]);
            c
        }
    }
}

fn python_venv() -> &'static str {
    static PY: OnceLock<String> = OnceLock::new();
    PY.get_or_init(|| {
        let out = Command::new(repo().join("tests/testbed/python/setup-venv"))
            .output()
            .expect("run setup-venv");
        assert!(
            out.status.success(),
            "setting up the Python venv failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap()
            .trim()
            .to_string()
    })
}

impl ClientProc {
    pub fn producer(
        kind: ClientKind,
        dir: &Path,
        run_id: &str,
        bootstrap: &str,
        topic: &str,
        rate: u32,
        props: &[(&str, &str)],
    ) -> ClientProc {
        Self::producer_spawn(kind, dir, run_id, bootstrap, topic, rate, &[], props, &[])
    }

    /// A producer given driver options besides the client's properties (`("id-header", "id")`
    /// passes `--id-header id`).
    #[allow(clippy::too_many_arguments)]
    pub fn producer_with(
        kind: ClientKind,
        dir: &Path,
        run_id: &str,
        bootstrap: &str,
        topic: &str,
        rate: u32,
        options: &[(&str, &str)],
        props: &[(&str, &str)],
    ) -> ClientProc {
        Self::producer_spawn(
            kind,
            dir,
            run_id,
            bootstrap,
            topic,
            rate,
            options,
            props,
            &[],
        )
    }

    /// A producer whose process gets these environment variables too (e.g. JDK_JAVA_OPTIONS
    /// for a JVM system property).
    #[allow(clippy::too_many_arguments)]
    pub fn producer_with_env(
        kind: ClientKind,
        dir: &Path,
        run_id: &str,
        bootstrap: &str,
        topic: &str,
        rate: u32,
        props: &[(&str, &str)],
        env: &[(&str, &str)],
    ) -> ClientProc {
        Self::producer_spawn(kind, dir, run_id, bootstrap, topic, rate, &[], props, env)
    }

    #[allow(clippy::too_many_arguments)]
    fn producer_spawn(
        kind: ClientKind,
        dir: &Path,
        run_id: &str,
        bootstrap: &str,
        topic: &str,
        rate: u32,
        options: &[(&str, &str)],
        props: &[(&str, &str)],
        env: &[(&str, &str)],
    ) -> ClientProc {
        let summary = dir.join(format!("{run_id}.summary.json"));
        let data = dir.join(format!("{run_id}.acked"));
        let stderr = dir.join(format!("{run_id}.stderr"));
        let mut c = client_command(kind, "produce");
        c.args([
            "--bootstrap",
            bootstrap,
            "--topic",
            topic,
            "--run-id",
            run_id,
            "--rate",
            &rate.to_string(),
        ]);
        c.arg("--acked").arg(&data).arg("--summary").arg(&summary);
        for (k, v) in options {
            c.args([format!("--{k}"), v.to_string()]);
        }
        for (k, v) in props {
            c.args(["--prop", &format!("{k}={v}")]);
        }
        c.envs(env.iter().copied());
        Self::spawn(run_id, c, summary, data, stderr)
    }

    pub fn consumer(
        kind: ClientKind,
        dir: &Path,
        name: &str,
        bootstrap: &str,
        topics: &[&str],
        group: Option<&str>,
        props: &[(&str, &str)],
    ) -> ClientProc {
        Self::consumer_with(kind, dir, name, bootstrap, topics, group, &[], props)
    }

    /// A consumer given driver options besides the client's properties (see `producer_with`).
    #[allow(clippy::too_many_arguments)]
    pub fn consumer_with(
        kind: ClientKind,
        dir: &Path,
        name: &str,
        bootstrap: &str,
        topics: &[&str],
        group: Option<&str>,
        options: &[(&str, &str)],
        props: &[(&str, &str)],
    ) -> ClientProc {
        let summary = dir.join(format!("{name}.summary.json"));
        let data = dir.join(format!("{name}.consumed"));
        let stderr = dir.join(format!("{name}.stderr"));
        let mut c = client_command(kind, "consume");
        c.args([
            "--bootstrap",
            bootstrap,
            "--topic",
            &topics.join(","),
            "--drain-timeout",
            "60",
        ]);
        if let Some(g) = group {
            c.args(["--group", g]);
        }
        c.arg("--consumed")
            .arg(&data)
            .arg("--summary")
            .arg(&summary);
        for (k, v) in options {
            c.args([format!("--{k}"), v.to_string()]);
        }
        for (k, v) in props {
            c.args(["--prop", &format!("{k}={v}")]);
        }
        Self::spawn(name, c, summary, data, stderr)
    }

    fn spawn(
        name: &str,
        mut c: Command,
        summary: PathBuf,
        data: PathBuf,
        stderr: PathBuf,
    ) -> ClientProc {
        let errf = std::fs::File::create(&stderr).unwrap();
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(errf)
            .spawn()
            .unwrap_or_else(|e| panic!("start client {name}: {e}"));
        let stdin = child.stdin.take();
        ClientProc {
            name: name.to_string(),
            child,
            stdin,
            summary,
            data,
            stderr,
        }
    }

    /// Waits until the client has produced/consumed at least `n` records.
    pub fn wait_records(&mut self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let have = std::fs::read_to_string(&self.data)
                .map(|s| s.lines().count())
                .unwrap_or(0);
            if have >= n {
                return;
            }
            if let Some(st) = self.child.try_wait().unwrap() {
                panic!(
                    "client {} exited early ({st}):\n{}",
                    self.name,
                    std::fs::read_to_string(&self.stderr).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "client {} had {have} of {n} records after {timeout:?}:\n{}",
                self.name,
                tail(&self.stderr, 3000)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Closes stdin (the client stops, flushes, drains) and returns its summary.
    pub fn stop(mut self) -> Value {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                let text = std::fs::read_to_string(&self.summary).unwrap_or_else(|_| {
                    panic!(
                        "client {} exited ({st}) without a summary:\n{}",
                        self.name,
                        tail(&self.stderr, 4000)
                    )
                });
                return serde_json::from_str(&text).unwrap();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "client {} did not stop within 120 s:\n{}",
                    self.name,
                    tail(&self.stderr, 4000)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for ClientProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn tail(path: &Path, n: usize) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    s[s.len().saturating_sub(n)..].to_string()
}

// ---------------------------------------------------------------------------------------------
// Checking what was acknowledged against what was consumed.

/// (partition, seq) -> offset, from a producer's acked file.
pub fn read_acked(path: &Path) -> HashMap<(i32, u64), i64> {
    let mut m = HashMap::new();
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() == 3 {
            m.insert(
                (f[0].parse().unwrap(), f[1].parse().unwrap()),
                f[2].parse().unwrap(),
            );
        }
    }
    m
}

/// A consumed record of one producer run.
#[derive(Debug, Clone, Copy)]
pub struct Consumed {
    pub partition: i32,
    pub offset: i64,
    pub seq: u64,
}

/// Records of `run_id` on `topic` in a consumer's file.
pub fn read_consumed(path: &Path, topic: &str, run_id: &str) -> Vec<Consumed> {
    let prefix = format!("{run_id}:");
    let mut v = Vec::new();
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 4 || f[0] != topic {
            continue;
        }
        if let Some(seq) = f[3].strip_prefix(&prefix) {
            v.push(Consumed {
                partition: f[1].parse().unwrap(),
                offset: f[2].parse().unwrap(),
                seq: seq.parse().unwrap(),
            });
        }
    }
    v
}

#[derive(Debug, Default)]
pub struct Verdict {
    pub acked: usize,
    pub missing: Vec<(i32, u64)>,
    /// seqs written at more than one offset.
    pub duplicated: Vec<(i32, u64)>,
    /// per partition, a seq lower than an earlier offset's seq.
    pub out_of_order: Vec<(i32, i64)>,
}

impl Verdict {
    pub fn lossless(&self) -> bool {
        self.missing.is_empty()
    }
    pub fn exactly_once_in_order(&self) -> bool {
        self.missing.is_empty() && self.duplicated.is_empty() && self.out_of_order.is_empty()
    }
}

/// Checks every acknowledged record against what a consumer read.
pub fn verify(acked: &HashMap<(i32, u64), i64>, consumed: &[Consumed]) -> Verdict {
    let mut offsets_of: HashMap<(i32, u64), HashSet<i64>> = HashMap::new();
    let mut by_partition: BTreeMap<i32, BTreeMap<i64, u64>> = BTreeMap::new();
    for c in consumed {
        offsets_of
            .entry((c.partition, c.seq))
            .or_default()
            .insert(c.offset);
        by_partition
            .entry(c.partition)
            .or_default()
            .insert(c.offset, c.seq);
    }
    let mut v = Verdict {
        acked: acked.len(),
        ..Default::default()
    };
    for k in acked.keys() {
        match offsets_of.get(k) {
            None => v.missing.push(*k),
            Some(o) if o.len() > 1 => v.duplicated.push(*k),
            _ => {}
        }
    }
    for (p, recs) in by_partition {
        let mut last = None;
        for (off, seq) in recs {
            if last.is_some_and(|l| seq < l) {
                v.out_of_order.push((p, off));
            }
            last = Some(seq);
        }
    }
    v.missing.sort();
    v.duplicated.sort();
    v
}

// ---------------------------------------------------------------------------------------------
// Secrets

/// Fails if any of `secrets`, or anything shaped like a JWT (base64url of `{"`: "eyJ"), is in
/// `text` (fairlead's log or metrics).
pub fn assert_no_secrets(what: &str, text: &str, secrets: &[&str]) {
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        if let Some(i) = text.find(s) {
            let line = text[..i].rsplit('\n').next().unwrap_or_default();
            panic!("{what} shows a secret ({} chars) in: {line}...", s.len());
        }
    }
    if let Some(i) = text.find("eyJ") {
        let line = &text[text[..i].rfind('\n').map_or(0, |n| n + 1)..i];
        panic!("{what} shows what looks like a JWT, after: {line}");
    }
}
