//! The files under docker/ (Dockerfile, Compose, Prometheus, Grafana, Kubernetes) agree with the
//! code: every YAML and JSON file parses, every `FAIRLEAD_*` variable and flag is a real option,
//! the ports are the ones the defaults and the resolved configuration give, the admin paths
//! exist, and the dashboard queries exactly the metrics fairlead exports.
//!
//! No Docker, Kubernetes or network needed: the files are parsed and the options they set are
//! resolved with fairlead's own configuration code (`fairlead::config::resolve`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches};
use fairlead::config::{self, Cli, Config, Options};
use fairlead::testing::metrics as m;
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

const CONFIG_RS: &str = include_str!("../../src/config.rs");
const METRICS_RS: &str = include_str!("../../src/metrics.rs");
const ADMIN_RS: &str = include_str!("../../src/admin.rs");
const CARGO_TOML: &str = include_str!("../../Cargo.toml");

/// The metrics every deployment exports: each must be on the dashboard.
const MAIN_METRICS: [&str; 22] = [
    m::ERRORS_ABSORBED,
    m::ERRORS_PASSED_THROUGH,
    m::REROUTES,
    m::REPLAYS,
    m::LEADER_CHANGES,
    m::METADATA_REFRESHES,
    m::REQUEST_DURATION,
    m::ABSORB_DURATION,
    m::CLIENT_CONNECTIONS,
    m::UPSTREAM_CONNECTIONS,
    m::REROUTE_CONNECTIONS,
    m::BYTES,
    m::CONNECTIONS_CLOSED,
    m::PASSED_BLIND,
    m::PRODUCE_CHECKS,
    m::RELOADS,
    m::NOT_ABSORBED,
    m::BROKER_PORTS_UNBOUND,
    m::BROKER_PORT_BIND_FAILURES,
    m::TOPICS_TRACKED,
    m::TOPICS_REFUSED,
    m::TOPICS_FORGOTTEN,
];
/// Opt-in series (`topic_labels`): the dashboard may use them, need not.
const OPT_IN_METRICS: [&str; 2] = [m::TOPIC_ERRORS_ABSORBED, m::TOPIC_REROUTES];
const HISTOGRAMS: [&str; 2] = [m::REQUEST_DURATION, m::ABSORB_DURATION];

/// Node ids the image's EXPOSE range is documented to cover.
const EXPOSED_NODE_IDS: std::ops::RangeInclusive<i32> = 0..=9;

// ---------------------------------------------------------------------------------------------
// Files

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn docker() -> PathBuf {
    repo().join("docker")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            walk(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn docker_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    walk(&docker(), &mut files);
    files.sort();
    files
}

fn rel(path: &Path) -> String {
    path.strip_prefix(repo())
        .unwrap_or(path)
        .display()
        .to_string()
}

fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

/// Every document of a YAML file, with `<<` merge keys applied (Compose uses them).
fn yaml_docs(path: &Path) -> Result<Vec<Yaml>, String> {
    let text = read(path);
    let mut docs = Vec::new();
    for (i, de) in serde_yaml::Deserializer::from_str(&text).enumerate() {
        let mut v = <Yaml as serde::Deserialize>::deserialize(de)
            .map_err(|e| format!("{}: document {}: {e}", rel(path), i + 1))?;
        v.apply_merge()
            .map_err(|e| format!("{}: document {}: merge keys: {e}", rel(path), i + 1))?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    Ok(docs)
}

fn yaml(rel_path: &str) -> Yaml {
    let path = docker().join(rel_path);
    let mut docs = yaml_docs(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(docs.len(), 1, "{}: expected one YAML document", rel(&path));
    docs.remove(0)
}

fn json(rel_path: &str) -> Json {
    let path = docker().join(rel_path);
    serde_json::from_str(&read(&path)).unwrap_or_else(|e| panic!("{}: {e}", rel(&path)))
}

/// A scalar YAML value as text (Compose and Kubernetes accept numbers and booleans for
/// strings).
fn scalar(v: &Yaml) -> Option<String> {
    match v {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn strings(v: &Yaml) -> Vec<String> {
    v.as_sequence()
        .map(|s| s.iter().filter_map(scalar).collect())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Options: the code's own CLI and resolution

/// `FAIRLEAD_*` names declared in src/config.rs (`env = "FAIRLEAD_..."`).
fn env_vars_in_source() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = CONFIG_RS;
    while let Some(i) = rest.find("env = \"") {
        rest = &rest[i + 7..];
        let end = rest.find('"').expect("closing quote");
        if rest[..end].starts_with("FAIRLEAD_") {
            out.insert(rest[..end].to_string());
        }
        rest = &rest[end..];
    }
    assert!(
        out.len() >= 10,
        "found only {out:?} in src/config.rs: did the `env = \"FAIRLEAD_...\"` form change?"
    );
    out
}

/// `FAIRLEAD_X` environment variable -> `--x` long flag, from the CLI clap builds.
fn env_to_flag() -> BTreeMap<String, String> {
    Cli::command()
        .get_arguments()
        .filter_map(|a| {
            let env = a.get_env()?.to_str()?.to_string();
            Some((env, a.get_long()?.to_string()))
        })
        .collect()
}

/// Parses `args` (after the binary) and `env` the way fairlead would, without reading this
/// process's environment: each variable becomes its flag unless the flag is already given
/// (flags win over the environment).
fn run_args(args: &[String], env: &[(String, String)], what: &str) -> Options {
    let flags = env_to_flag();
    let mut argv = vec!["fairlead".to_string()];
    argv.extend(args.iter().cloned());
    for (name, value) in env.iter().filter(|(n, _)| n.starts_with("FAIRLEAD_")) {
        let long = flags.get(name).unwrap_or_else(|| {
            panic!(
                "{what}: {name} is not one of fairlead's environment variables (src/config.rs \
                 knows {:?})",
                flags.keys().collect::<Vec<_>>()
            )
        });
        let flag = format!("--{long}");
        let given = args
            .iter()
            .any(|a| *a == flag || a.starts_with(&format!("{flag}=")));
        if !given {
            argv.push(flag);
            argv.push(value.clone());
        }
    }
    let cmd = Cli::command().mut_args(|a| a.env(None));
    let matches = cmd
        .try_get_matches_from(&argv)
        .unwrap_or_else(|e| panic!("{what}: fairlead would reject {argv:?}:\n{e}"));
    let cli = Cli::from_arg_matches(&matches)
        .unwrap_or_else(|e| panic!("{what}: fairlead would reject {argv:?}:\n{e}"));
    assert!(
        cli.command.is_none(),
        "{what}: {argv:?} runs a subcommand, not the proxy"
    );
    cli.run
}

fn resolve(file: Options, args: &[String], env: &[(String, String)], what: &str) -> Config {
    let run = run_args(args, env, what);
    config::resolve(file, run)
        .unwrap_or_else(|e| panic!("{what}: fairlead would refuse to start: {e}"))
}

fn default_addr(s: &str) -> SocketAddr {
    s.parse().expect("default address parses")
}

fn listen_port() -> u16 {
    default_addr(config::DEFAULT_LISTEN).port()
}

fn admin_port() -> u16 {
    default_addr(config::DEFAULT_ADMIN).port()
}

// ---------------------------------------------------------------------------------------------
// Dockerfile

#[derive(Debug)]
struct Instr {
    /// 0 for the first FROM's stage.
    stage: usize,
    op: String,
    args: String,
}

struct Dockerfile {
    instrs: Vec<Instr>,
    stages: usize,
}

impl Dockerfile {
    fn load() -> Dockerfile {
        let text = read(&docker().join("Dockerfile"));
        let mut logical = Vec::new();
        let mut cur = String::new();
        for line in text.lines() {
            let t = line.trim();
            if t.starts_with('#') || (t.is_empty() && cur.is_empty()) {
                continue;
            }
            if let Some(body) = t.strip_suffix('\\') {
                cur.push_str(body);
                cur.push(' ');
            } else {
                cur.push_str(t);
                logical.push(std::mem::take(&mut cur));
            }
        }
        assert!(
            cur.is_empty(),
            "docker/Dockerfile ends inside a continuation"
        );
        let mut instrs = Vec::new();
        let mut stages = 0;
        for l in logical.iter().filter(|l| !l.trim().is_empty()) {
            let (op, args) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
            let op = op.to_ascii_uppercase();
            if op == "FROM" {
                stages += 1;
            }
            assert!(stages > 0, "docker/Dockerfile: {op} before the first FROM");
            instrs.push(Instr {
                stage: stages - 1,
                op,
                args: args.trim().to_string(),
            });
        }
        Dockerfile { instrs, stages }
    }

    fn all<'a>(&'a self, op: &'a str) -> impl Iterator<Item = &'a Instr> + 'a {
        self.instrs.iter().filter(move |i| i.op == op)
    }

    fn last_stage<'a>(&'a self, op: &'a str) -> impl Iterator<Item = &'a Instr> + 'a {
        let last = self.stages - 1;
        self.all(op).filter(move |i| i.stage == last)
    }

    /// ENV of the runtime (last) stage, both `K=V ...` and `K V` forms.
    fn env(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for i in self.last_stage("ENV") {
            if i.args
                .split_whitespace()
                .next()
                .is_some_and(|t| t.contains('='))
            {
                for pair in i.args.split_whitespace() {
                    let (k, v) = pair.split_once('=').unwrap_or_else(|| {
                        panic!("docker/Dockerfile: cannot read ENV {:?}", i.args)
                    });
                    out.push((k.to_string(), v.trim_matches('"').to_string()));
                }
            } else if let Some((k, v)) = i.args.split_once(char::is_whitespace) {
                out.push((k.to_string(), v.trim().trim_matches('"').to_string()));
            }
        }
        out
    }

    fn exposed(&self) -> BTreeSet<u16> {
        let mut out = BTreeSet::new();
        for i in self.last_stage("EXPOSE") {
            for t in i.args.split_whitespace() {
                let t = t.split('/').next().unwrap_or(t);
                let bad = || panic!("docker/Dockerfile: cannot read EXPOSE {t:?}");
                let (a, b) = t.split_once('-').unwrap_or((t, t));
                let (a, b) = match (a.parse::<u16>(), b.parse::<u16>()) {
                    (Ok(a), Ok(b)) if a <= b => (a, b),
                    _ => bad(),
                };
                out.extend(a..=b);
            }
        }
        out
    }

    /// The runtime image's configuration: its ENV plus a bootstrap (required, not in the image).
    fn config(&self) -> Config {
        resolve(
            Options::default(),
            &["--bootstrap".into(), "kafka:9092".into()],
            &self.env(),
            "docker/Dockerfile ENV",
        )
    }

    fn user_uid(&self) -> u32 {
        let user = self
            .last_stage("USER")
            .last()
            .expect("docker/Dockerfile: the runtime stage sets no USER (it would run as root)");
        let uid = user.args.split(':').next().unwrap_or("");
        let uid: u32 = uid.parse().unwrap_or_else(|_| {
            panic!(
                "docker/Dockerfile: USER {:?} is not numeric; Kubernetes runAsNonRoot can only \
                 verify a numeric user",
                user.args
            )
        });
        assert_ne!(uid, 0, "docker/Dockerfile: USER 0 is root");
        uid
    }
}

fn json_array(s: &str, what: &str) -> Vec<String> {
    serde_json::from_str(s)
        .unwrap_or_else(|e| panic!("{what} {s:?} is not an exec-form JSON array: {e}"))
}

#[test]
fn dockerfile_runs_as_a_numeric_non_root_user() {
    Dockerfile::load().user_uid();
}

#[test]
fn dockerfile_listens_on_all_interfaces_at_the_default_ports() {
    let df = Dockerfile::load();
    let env: BTreeMap<_, _> = df.env().into_iter().collect();
    for var in ["FAIRLEAD_LISTEN", "FAIRLEAD_ADMIN"] {
        assert!(
            env.contains_key(var),
            "docker/Dockerfile: the runtime stage must set {var} (fairlead's default is loopback, \
             unreachable from outside the container)"
        );
    }
    let cfg = df.config();
    assert!(
        cfg.listen.ip().is_unspecified(),
        "docker/Dockerfile: FAIRLEAD_LISTEN resolves to {}, not all interfaces",
        cfg.listen
    );
    assert!(
        cfg.admin.ip().is_unspecified(),
        "docker/Dockerfile: FAIRLEAD_ADMIN resolves to {}, not all interfaces",
        cfg.admin
    );
    assert_eq!(
        cfg.listen.port(),
        listen_port(),
        "docker/Dockerfile: listen port differs from DEFAULT_LISTEN {}",
        config::DEFAULT_LISTEN
    );
    assert_eq!(
        cfg.admin.port(),
        admin_port(),
        "docker/Dockerfile: admin port differs from DEFAULT_ADMIN {}",
        config::DEFAULT_ADMIN
    );
}

#[test]
fn dockerfile_exposes_listen_node_and_admin_ports() {
    let df = Dockerfile::load();
    let cfg = df.config();
    let exposed = df.exposed();
    let mut wanted = vec![("listen", cfg.listen.port()), ("admin", cfg.admin.port())];
    for id in EXPOSED_NODE_IDS {
        wanted.push(("node", cfg.node_port(id).expect("node port fits")));
    }
    let missing: Vec<_> = wanted
        .iter()
        .filter(|(_, p)| !exposed.contains(p))
        .collect();
    assert!(
        missing.is_empty(),
        "docker/Dockerfile: EXPOSE {exposed:?} misses {missing:?} (node N is served on \
         node_port_base {} + N; node ids {EXPOSED_NODE_IDS:?})",
        cfg.node_port_base
    );
    assert_eq!(
        (cfg.listen.port(), cfg.node_port_base, cfg.admin.port()),
        (9092, 9093, 9464),
        "the defaults changed: update the port numbers in docker/ (comments, compose ports, \
         prometheus.yml, k8s, README)"
    );
}

#[test]
fn dockerfile_builds_the_binary_and_runs_it() {
    let df = Dockerfile::load();
    assert!(
        df.stages >= 2,
        "docker/Dockerfile: expected a multi-stage build"
    );

    // Builder: an official Rust image at least as new as Cargo.toml's rust-version.
    let from = &df.all("FROM").next().expect("a FROM").args;
    let image = from.split_whitespace().next().unwrap_or("");
    let version = image
        .strip_prefix("rust:")
        .unwrap_or_else(|| panic!("docker/Dockerfile: the builder {image:?} is not rust:<tag>"));
    let minor = |v: &str| -> u32 {
        v.split(['.', '-'])
            .nth(1)
            .and_then(|m| m.parse().ok())
            .unwrap_or_else(|| panic!("cannot read a Rust version from {v:?}"))
    };
    let manifest: toml::Value = toml::from_str(CARGO_TOML).expect("Cargo.toml parses");
    let required = manifest["package"]["rust-version"]
        .as_str()
        .expect("Cargo.toml has a rust-version");
    assert!(
        minor(version) >= minor(required),
        "docker/Dockerfile: builder {image} is older than Cargo.toml's rust-version {required}"
    );

    let runs: Vec<&str> = df.all("RUN").map(|i| i.args.as_str()).collect();
    let build = "cargo build --release --locked --bin fairlead";
    assert!(
        runs.iter().filter(|r| r.contains(build)).count() >= 2,
        "docker/Dockerfile: expected `{build}` for the dependency layer and for the sources"
    );
    // The dependency layer builds against placeholders: cargo reads every target the manifest
    // names, so each bench needs a placeholder file.
    if let Some(benches) = manifest.get("bench").and_then(|b| b.as_array()) {
        for b in benches {
            let name = b["name"].as_str().expect("bench name");
            assert!(
                runs.iter()
                    .any(|r| r.contains(&format!("benches/{name}.rs"))),
                "docker/Dockerfile: the placeholder build must create benches/{name}.rs \
                 (Cargo.toml declares the bench)"
            );
        }
    }

    // Build-context sources exist and the Dockerfile-specific ignore file lets them through.
    let ignore = read(&docker().join("Dockerfile.dockerignore"));
    let allowed: Vec<&str> = ignore
        .lines()
        .filter_map(|l| l.trim().strip_prefix('!'))
        .map(|p| p.trim_end_matches('/'))
        .collect();
    for copy in df.all("COPY").filter(|i| !i.args.contains("--from")) {
        let parts: Vec<&str> = copy
            .args
            .split_whitespace()
            .filter(|p| !p.starts_with("--"))
            .collect();
        for src in &parts[..parts.len() - 1] {
            assert!(
                repo().join(src).exists(),
                "docker/Dockerfile: COPY {src}: no such path in the repository (the build \
                 context is the repository root)"
            );
            assert!(
                allowed.contains(src),
                "docker/Dockerfile.dockerignore: COPY {src} needs a `!{src}` line"
            );
        }
    }
    let copied_config = df
        .last_stage("COPY")
        .any(|i| i.args.starts_with("config/fairlead.toml "));
    assert!(
        copied_config,
        "docker/Dockerfile: the runtime image should carry config/fairlead.toml"
    );
    config::read_file(&repo().join("config/fairlead.toml"))
        .unwrap_or_else(|e| panic!("config/fairlead.toml, copied into the image: {e}"));

    // Runtime: the binary from the builder is the entrypoint.
    let entry = df
        .last_stage("ENTRYPOINT")
        .last()
        .expect("docker/Dockerfile: no ENTRYPOINT");
    let entry = json_array(&entry.args, "docker/Dockerfile ENTRYPOINT");
    assert_eq!(
        entry,
        ["/usr/local/bin/fairlead"],
        "docker/Dockerfile: ENTRYPOINT"
    );
    assert!(
        df.last_stage("COPY")
            .any(|i| i.args.contains("--from=builder")
                && i.args.contains("target/release/fairlead")
                && i.args.ends_with(&entry[0])),
        "docker/Dockerfile: the runtime stage must COPY --from=builder the release binary to {}",
        entry[0]
    );

    // A HEALTHCHECK, if any, must work without a shell: exec form, fairlead's own client, the
    // admin port.
    if let Some(hc) = df.last_stage("HEALTHCHECK").last() {
        let cmd = hc
            .args
            .split_once("CMD")
            .map(|(_, c)| c.trim())
            .unwrap_or_else(|| panic!("docker/Dockerfile: HEALTHCHECK without CMD"));
        let cmd = json_array(
            cmd,
            "docker/Dockerfile HEALTHCHECK CMD (the image has no shell)",
        );
        assert_eq!(
            cmd[0], entry[0],
            "docker/Dockerfile: HEALTHCHECK runs fairlead"
        );
        assert_eq!(cmd.get(1).map(String::as_str), Some("status"));
        let admin = cmd
            .iter()
            .position(|a| a == "--admin")
            .and_then(|i| cmd.get(i + 1))
            .expect("HEALTHCHECK passes --admin");
        let addr: SocketAddr = admin.parse().expect("HEALTHCHECK --admin is IP:PORT");
        assert_eq!(
            addr.port(),
            df.config().admin.port(),
            "docker/Dockerfile: HEALTHCHECK checks another port than the admin endpoint's"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Compose

fn compose() -> Yaml {
    yaml("compose.yaml")
}

fn service<'a>(compose: &'a Yaml, name: &str) -> &'a Yaml {
    let s = &compose["services"][name];
    assert!(s.is_mapping(), "docker/compose.yaml: no service {name:?}");
    s
}

/// Compose `environment`, as a map or as a list of `K=V`.
fn compose_env(svc: &Yaml) -> Vec<(String, String)> {
    match &svc["environment"] {
        Yaml::Mapping(map) => map
            .iter()
            .map(|(k, v)| {
                (
                    scalar(k).expect("environment key"),
                    scalar(v).unwrap_or_default(),
                )
            })
            .collect(),
        Yaml::Sequence(list) => list
            .iter()
            .filter_map(scalar)
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((&kv, ""));
                (k.to_string(), v.to_string())
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Published `(host, container)` ports of a service (short and long syntax, ranges).
fn published(svc: &Yaml, name: &str) -> BTreeSet<(u16, u16)> {
    let range = |s: &str| -> Vec<u16> {
        let (a, b) = s.split_once('-').unwrap_or((s, s));
        match (a.parse::<u16>(), b.parse::<u16>()) {
            (Ok(a), Ok(b)) if a <= b => (a..=b).collect(),
            _ => panic!("docker/compose.yaml: {name}: cannot read port {s:?}"),
        }
    };
    let mut out = BTreeSet::new();
    for p in svc["ports"].as_sequence().into_iter().flatten() {
        if p.is_mapping() {
            let (Some(h), Some(c)) = (scalar(&p["published"]), scalar(&p["target"])) else {
                continue;
            };
            out.extend(range(&h).into_iter().zip(range(&c)));
            continue;
        }
        let s = scalar(p).expect("port entry");
        let s = s.split('/').next().unwrap_or(&s);
        let parts: Vec<&str> = s.split(':').collect();
        let (host, container) = match parts.as_slice() {
            [_container] => continue, // an ephemeral host port
            [h, c] | [_, h, c] => (range(h), range(c)),
            _ => panic!("docker/compose.yaml: {name}: cannot read port {s:?}"),
        };
        assert_eq!(
            host.len(),
            container.len(),
            "docker/compose.yaml: {name}: port ranges of different lengths in {s:?}"
        );
        out.extend(host.into_iter().zip(container));
    }
    out
}

/// `10s`, `1m30s`, `500ms` (Compose durations).
fn duration(s: &str) -> Duration {
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let n: u64 = rest[..digits]
            .parse()
            .unwrap_or_else(|_| panic!("cannot read duration {s:?}"));
        rest = &rest[digits..];
        let unit = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        total += match &rest[..unit] {
            "h" => Duration::from_secs(n * 3600),
            "m" => Duration::from_secs(n * 60),
            "s" => Duration::from_secs(n),
            "ms" => Duration::from_millis(n),
            u => panic!("cannot read duration {s:?} (unit {u:?})"),
        };
        rest = &rest[unit..];
    }
    total
}

struct Broker {
    service: String,
    node_id: i32,
    /// The PLAINTEXT advertised listener, `host:port`.
    address: String,
}

fn brokers(compose: &Yaml) -> Vec<Broker> {
    let mut out = Vec::new();
    for (name, svc) in compose["services"].as_mapping().expect("services") {
        let name = scalar(name).expect("service name");
        let image = svc["image"].as_str().unwrap_or("");
        if !image.starts_with("apache/kafka:") {
            continue;
        }
        let env: BTreeMap<_, _> = compose_env(svc).into_iter().collect();
        let get = |k: &str| {
            env.get(k)
                .unwrap_or_else(|| panic!("docker/compose.yaml: {name}: {k} is not set"))
                .clone()
        };
        let node_id: i32 = get("KAFKA_NODE_ID")
            .parse()
            .unwrap_or_else(|_| panic!("docker/compose.yaml: {name}: KAFKA_NODE_ID"));
        let advertised = get("KAFKA_ADVERTISED_LISTENERS");
        let address = advertised
            .split(',')
            .find_map(|l| l.strip_prefix("PLAINTEXT://"))
            .unwrap_or_else(|| {
                panic!("docker/compose.yaml: {name}: no PLAINTEXT:// advertised listener")
            })
            .to_string();
        out.push(Broker {
            service: name,
            node_id,
            address,
        });
    }
    out
}

fn compose_fairlead_config(compose: &Yaml) -> Config {
    let svc = service(compose, "fairlead");
    let args = match &svc["command"] {
        Yaml::Sequence(_) => strings(&svc["command"]),
        Yaml::String(s) => s.split_whitespace().map(String::from).collect(),
        _ => Vec::new(),
    };
    // The image's ENV, then the service's environment over it.
    let mut env: BTreeMap<String, String> = Dockerfile::load().env().into_iter().collect();
    env.extend(compose_env(svc));
    let env: Vec<_> = env.into_iter().collect();
    resolve(
        Options::default(),
        &args,
        &env,
        "docker/compose.yaml fairlead service",
    )
}

#[test]
fn compose_kafka_cluster_is_three_kraft_nodes_in_combined_mode() {
    let c = compose();
    let brokers = brokers(&c);
    let ids: BTreeSet<i32> = brokers.iter().map(|b| b.node_id).collect();
    assert_eq!(
        ids,
        BTreeSet::from([1, 2, 3]),
        "docker/compose.yaml: expected 3 apache/kafka services with node ids 1, 2, 3"
    );
    let mut cluster_ids = BTreeSet::new();
    for b in &brokers {
        let svc = service(&c, &b.service);
        let env: BTreeMap<_, _> = compose_env(svc).into_iter().collect();
        let what = format!("docker/compose.yaml: {}", b.service);
        for (k, v) in &env {
            assert!(
                k == "CLUSTER_ID"
                    || (k.starts_with("KAFKA_")
                        && k.chars()
                            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')),
                "{what}: {k} does not follow the apache/kafka image's KAFKA_<PROPERTY> convention"
            );
            assert!(!v.is_empty(), "{what}: {k} is empty");
        }
        let want = [
            ("KAFKA_PROCESS_ROLES", "broker,controller"),
            (
                "KAFKA_CONTROLLER_QUORUM_VOTERS",
                "1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093",
            ),
            ("KAFKA_LISTENERS", "PLAINTEXT://:19092,CONTROLLER://:9093"),
            ("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER"),
            ("KAFKA_DEFAULT_REPLICATION_FACTOR", "3"),
            ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "3"),
            ("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "3"),
            ("KAFKA_MIN_INSYNC_REPLICAS", "2"),
            ("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "2"),
            ("KAFKA_AUTO_LEADER_REBALANCE_ENABLE", "false"),
        ];
        for (k, v) in want {
            assert_eq!(env.get(k).map(String::as_str), Some(v), "{what}: {k}");
        }
        // Every voter is a compose service with that node id.
        for voter in env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(',') {
            let (id, host) = voter.split_once('@').expect("id@host:port");
            let host = host.split(':').next().unwrap_or("");
            assert!(
                brokers
                    .iter()
                    .any(|o| o.node_id.to_string() == id && o.service == host),
                "{what}: quorum voter {voter} is not a service with that KAFKA_NODE_ID"
            );
        }
        assert_eq!(
            b.address,
            format!("{}:19092", b.service),
            "{what}: PLAINTEXT must be advertised as <service>:19092"
        );
        cluster_ids.insert(env.get("CLUSTER_ID").cloned().unwrap_or_default());
        let hc = strings(&svc["healthcheck"]["test"]).join(" ");
        assert!(
            hc.contains("/opt/kafka/bin/kafka-broker-api-versions.sh"),
            "{what}: healthcheck should call kafka-broker-api-versions.sh, got {hc:?}"
        );
    }
    assert_eq!(
        cluster_ids.len(),
        1,
        "docker/compose.yaml: the brokers disagree on CLUSTER_ID: {cluster_ids:?}"
    );
    let id = cluster_ids.into_iter().next().unwrap_or_default();
    assert!(
        id.len() == 22
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "docker/compose.yaml: CLUSTER_ID {id:?} is not a base64url-encoded UUID (22 characters)"
    );
}

#[test]
fn compose_fairlead_bootstraps_at_every_broker() {
    let c = compose();
    let cfg = compose_fairlead_config(&c);
    let bootstrap: BTreeSet<String> = cfg.bootstrap.iter().cloned().collect();
    let brokers: BTreeSet<String> = brokers(&c).into_iter().map(|b| b.address).collect();
    assert_eq!(
        bootstrap, brokers,
        "docker/compose.yaml: fairlead's --bootstrap should name every kafka service's \
         advertised PLAINTEXT listener"
    );
    assert_eq!(
        bootstrap,
        BTreeSet::from([
            "kafka-1:19092".to_string(),
            "kafka-2:19092".to_string(),
            "kafka-3:19092".to_string()
        ])
    );
    assert_eq!(
        cfg.advertised_host, "fairlead",
        "docker/compose.yaml: clients on the compose network reach fairlead by its service name"
    );
    let svc = service(&c, "fairlead");
    assert_eq!(svc["build"]["context"].as_str(), Some(".."));
    let dockerfile = svc["build"]["dockerfile"].as_str().unwrap_or("");
    assert!(
        docker().join("..").join(dockerfile).is_file() && dockerfile == "docker/Dockerfile",
        "docker/compose.yaml: fairlead must build docker/Dockerfile with context .., got {dockerfile:?}"
    );
    let deps = &svc["depends_on"];
    for b in brokers_of(&c) {
        assert_eq!(
            deps[b.as_str()]["condition"].as_str(),
            Some("service_healthy"),
            "docker/compose.yaml: fairlead should wait for {b} to be healthy"
        );
    }
    let grace = svc["stop_grace_period"]
        .as_str()
        .map(duration)
        .unwrap_or(Duration::from_secs(10));
    assert!(
        grace > cfg.drain_timeout,
        "docker/compose.yaml: stop_grace_period {grace:?} does not cover drain_timeout_ms \
         ({:?}); docker would SIGKILL fairlead mid-drain",
        cfg.drain_timeout
    );
}

fn brokers_of(c: &Yaml) -> Vec<String> {
    brokers(c).into_iter().map(|b| b.service).collect()
}

#[test]
fn compose_publishes_bootstrap_node_and_admin_ports() {
    let c = compose();
    let cfg = compose_fairlead_config(&c);
    let ports = published(service(&c, "fairlead"), "fairlead");
    let mut wanted = vec![cfg.listen.port(), cfg.admin.port()];
    for b in brokers(&c) {
        wanted.push(cfg.node_port(b.node_id).expect("node port fits"));
    }
    wanted.sort();
    for p in &wanted {
        assert!(
            ports.contains(&(*p, *p)),
            "docker/compose.yaml: fairlead must publish {p}:{p} (published: {ports:?}; listen \
             {}, admin {}, node N on {} + N)",
            cfg.listen.port(),
            cfg.admin.port(),
            cfg.node_port_base
        );
    }
    assert_eq!(wanted, [9092, 9094, 9095, 9096, 9464]);
    // The node ports must also be ports the image exposes (documentation, but keep it true).
    let exposed = Dockerfile::load().exposed();
    assert!(
        wanted.iter().all(|p| exposed.contains(p)),
        "docker/Dockerfile: EXPOSE {exposed:?} should include the compose ports {wanted:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Prometheus and Grafana

#[test]
fn prometheus_scrapes_the_admin_endpoint() {
    let p = yaml("prometheus.yml");
    let c = compose();
    let cfg = compose_fairlead_config(&c);
    let target = format!("fairlead:{}", cfg.admin.port());
    let jobs = p["scrape_configs"]
        .as_sequence()
        .expect("docker/prometheus.yml: scrape_configs");
    let job = jobs
        .iter()
        .find(|j| {
            j["static_configs"]
                .as_sequence()
                .into_iter()
                .flatten()
                .any(|s| strings(&s["targets"]).contains(&target))
        })
        .unwrap_or_else(|| panic!("docker/prometheus.yml: no job scrapes {target}"));
    let path = job["metrics_path"].as_str().unwrap_or("/metrics");
    assert_eq!(path, "/metrics", "docker/prometheus.yml: metrics_path");
    assert!(
        ADMIN_RS.contains("\"/metrics\""),
        "src/admin.rs no longer serves /metrics"
    );
    let interval = job["scrape_interval"]
        .as_str()
        .or(p["global"]["scrape_interval"].as_str())
        .map(duration);
    assert_eq!(
        interval,
        Some(Duration::from_secs(5)),
        "docker/prometheus.yml: scrape every 5s"
    );
    service(&c, "prometheus");
    let mounts = strings(&service(&c, "prometheus")["volumes"]);
    assert!(
        mounts
            .iter()
            .any(|v| v.starts_with("./prometheus.yml:/etc/prometheus/prometheus.yml")),
        "docker/compose.yaml: prometheus must mount ./prometheus.yml, got {mounts:?}"
    );
}

/// The container path a compose service mounts `host` (relative to docker/) at.
fn mount_target(svc: &Yaml, host: &str) -> Option<String> {
    strings(&svc["volumes"]).into_iter().find_map(|v| {
        let mut parts = v.split(':');
        let (h, t) = (parts.next()?, parts.next()?);
        (h.trim_end_matches('/') == host).then(|| t.trim_end_matches('/').to_string())
    })
}

fn datasource_uids() -> BTreeSet<String> {
    let dir = docker().join("grafana/provisioning/datasources");
    let mut files = Vec::new();
    walk(&dir, &mut files);
    let mut uids = BTreeSet::new();
    for f in files.iter().filter(|f| is_yaml(f)) {
        for doc in yaml_docs(f).unwrap_or_else(|e| panic!("{e}")) {
            for ds in doc["datasources"].as_sequence().into_iter().flatten() {
                let uid = ds["uid"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{}: a datasource without uid", rel(f)));
                assert_eq!(ds["type"].as_str(), Some("prometheus"), "{}", rel(f));
                let url = ds["url"].as_str().unwrap_or("");
                assert_eq!(
                    url,
                    "http://prometheus:9090",
                    "{}: the datasource should point at the compose prometheus service",
                    rel(f)
                );
                uids.insert(uid.to_string());
            }
        }
    }
    assert!(!uids.is_empty(), "no datasource in {}", rel(&dir));
    uids
}

#[test]
fn grafana_provisioning_matches_the_compose_mounts() {
    let c = compose();
    let g = service(&c, "grafana");
    assert_eq!(
        mount_target(g, "./grafana/provisioning").as_deref(),
        Some("/etc/grafana/provisioning"),
        "docker/compose.yaml: grafana must mount ./grafana/provisioning at \
         /etc/grafana/provisioning"
    );
    let dashboards_at = mount_target(g, "./grafana/dashboards")
        .expect("docker/compose.yaml: grafana must mount ./grafana/dashboards");
    let providers = yaml("grafana/provisioning/dashboards/fairlead.yaml");
    let paths: Vec<&str> = providers["providers"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|p| p["options"]["path"].as_str())
        .collect();
    assert!(
        paths.contains(&dashboards_at.as_str()),
        "grafana/provisioning/dashboards: provider paths {paths:?} do not include the mount \
         {dashboards_at}"
    );
    let env: BTreeMap<_, _> = compose_env(g).into_iter().collect();
    if let Some(home) = env.get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH") {
        let file = home
            .strip_prefix(&format!("{dashboards_at}/"))
            .unwrap_or_else(|| panic!("home dashboard {home} is outside {dashboards_at}"));
        assert!(
            docker().join("grafana/dashboards").join(file).is_file(),
            "docker/compose.yaml: home dashboard {home} does not exist in grafana/dashboards"
        );
    }
    datasource_uids();
}

/// Every string in a JSON document (titles, descriptions, queries, variables).
fn json_strings<'a>(v: &'a Json, out: &mut Vec<&'a str>) {
    match v {
        Json::String(s) => out.push(s),
        Json::Array(a) => a.iter().for_each(|x| json_strings(x, out)),
        Json::Object(o) => o.values().for_each(|x| json_strings(x, out)),
        _ => {}
    }
}

/// `fairlead_[a-z_]+` tokens in a string.
fn metric_tokens(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find("fairlead_") {
        let preceded = rest[..i]
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(tail.len());
        if !preceded {
            out.push(tail[..end].to_string());
        }
        rest = &tail[end.max(1)..];
    }
    out
}

/// A metric family name from a series name (`_bucket`, `_sum`, `_count` of histograms).
fn family(token: &str) -> String {
    let known = |n: &str| MAIN_METRICS.contains(&n) || OPT_IN_METRICS.contains(&n);
    if known(token) {
        return token.to_string();
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = token.strip_suffix(suffix) {
            if HISTOGRAMS.contains(&base) {
                return base.to_string();
            }
        }
    }
    token.to_string()
}

#[test]
fn metric_lists_cover_every_metric_constant() {
    // Every `pub const X: &str = "fairlead_..."` in src/metrics.rs is in one of the lists here,
    // so a new metric fails this test until the dashboard (and this list) know it.
    let mut declared = BTreeSet::new();
    for line in METRICS_RS.lines() {
        let line = line.trim();
        if line.starts_with("pub const ") && line.contains(": &str = \"fairlead_") {
            let name = line.split('"').nth(1).expect("quoted name");
            declared.insert(name.to_string());
        }
    }
    let listed: BTreeSet<String> = MAIN_METRICS
        .iter()
        .chain(OPT_IN_METRICS.iter())
        .map(|s| s.to_string())
        .collect();
    assert_eq!(
        declared, listed,
        "src/metrics.rs declares metrics this test does not list (add them to MAIN_METRICS, \
         and a panel to docker/grafana/dashboards/fairlead.json, or to OPT_IN_METRICS)"
    );
}

#[test]
fn grafana_dashboard_uses_exactly_the_exported_metrics() {
    let path = "grafana/dashboards/fairlead.json";
    let d = json(path);
    let schema = d["schemaVersion"].as_u64().unwrap_or(0);
    assert!(
        (36..=45).contains(&schema),
        "{path}: schemaVersion {schema} (expected about 39)"
    );
    assert!(
        d["uid"].is_string(),
        "{path}: a fixed uid keeps links stable"
    );

    // Datasources: only the provisioned uid (or Grafana's built-in annotations source).
    let uids = datasource_uids();
    let mut refs = Vec::new();
    collect_datasources(&d, &mut refs);
    assert!(!refs.is_empty(), "{path}: no datasource references");
    for (ty, uid) in &refs {
        assert!(
            ty == "grafana" || uids.contains(uid),
            "{path}: datasource uid {uid:?} is not provisioned ({uids:?})"
        );
    }

    // Every panel has queries; panel ids are unique.
    let panels = all_panels(&d);
    let mut ids = BTreeSet::new();
    let mut exprs = Vec::new();
    for p in &panels {
        let title = p["title"].as_str().unwrap_or("?");
        if let Some(id) = p["id"].as_u64() {
            assert!(ids.insert(id), "{path}: duplicate panel id {id} ({title})");
        }
        if p["type"] == "row" {
            continue;
        }
        let targets = p["targets"].as_array().cloned().unwrap_or_default();
        assert!(!targets.is_empty(), "{path}: panel {title:?} has no query");
        for t in &targets {
            let expr = t["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("{path}: panel {title:?}: a target without expr"));
            exprs.push((title.to_string(), expr.to_string()));
        }
    }

    // Every fairlead_* name anywhere in the dashboard is an exported metric.
    let mut strings = Vec::new();
    json_strings(&d, &mut strings);
    let mut unknown = BTreeSet::new();
    for s in &strings {
        for t in metric_tokens(s) {
            let f = family(&t);
            if !MAIN_METRICS.contains(&f.as_str()) && !OPT_IN_METRICS.contains(&f.as_str()) {
                unknown.insert(t);
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "{path}: these names are not metrics fairlead exports (src/metrics.rs): {unknown:?}"
    );

    // Every main metric is queried by some panel.
    let used: BTreeSet<String> = exprs
        .iter()
        .flat_map(|(_, e)| metric_tokens(e))
        .map(|t| family(&t))
        .collect();
    let missing: Vec<_> = MAIN_METRICS
        .iter()
        .filter(|n| !used.contains(**n))
        .collect();
    assert!(missing.is_empty(), "{path}: no panel queries {missing:?}");

    // Histograms are read through their buckets; label values are the ones the code uses.
    for h in HISTOGRAMS {
        assert!(
            exprs.iter().any(|(_, e)| e.contains("histogram_quantile")
                && e.contains(&format!("{h}_bucket"))
                && e.contains("le")),
            "{path}: no histogram_quantile over {h}_bucket by le"
        );
    }
    for (title, e) in &exprs {
        for (label, allowed) in [
            (
                "code",
                m::LEADERSHIP_CODES
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>(),
            ),
            (
                "outcome",
                m::Replay::ALL
                    .iter()
                    .map(|r| r.label().to_string())
                    .collect(),
            ),
            (
                "trigger",
                m::RefreshTrigger::ALL
                    .iter()
                    .map(|t| t.label().to_string())
                    .collect(),
            ),
        ] {
            for value in label_matcher_values(e, label) {
                assert!(
                    allowed.contains(&value),
                    "{path}: panel {title:?}: {label}={value:?} is not a value fairlead uses \
                     ({allowed:?})"
                );
            }
        }
    }
}

/// Values in `label="a"` / `label=~"a|b"` matchers of a PromQL expression.
fn label_matcher_values(expr: &str, label: &str) -> Vec<String> {
    let mut out = Vec::new();
    for op in ["=~\"", "=\""] {
        let pat = format!("{label}{op}");
        let mut rest = expr;
        while let Some(i) = rest.find(&pat) {
            let preceded = rest[..i]
                .chars()
                .last()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
            rest = &rest[i + pat.len()..];
            let end = rest.find('"').unwrap_or(rest.len());
            if !preceded {
                out.extend(rest[..end].split('|').map(String::from));
            }
            rest = &rest[end..];
        }
    }
    out
}

fn collect_datasources(v: &Json, out: &mut Vec<(String, String)>) {
    match v {
        Json::Object(o) => {
            for (k, x) in o {
                if k == "datasource" {
                    if let Some(uid) = x["uid"].as_str() {
                        let ty = x["type"].as_str().unwrap_or("").to_string();
                        out.push((ty, uid.to_string()));
                    }
                }
                collect_datasources(x, out);
            }
        }
        Json::Array(a) => a.iter().for_each(|x| collect_datasources(x, out)),
        _ => {}
    }
}

fn all_panels(d: &Json) -> Vec<&Json> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().into_iter().flatten() {
        out.push(p);
        // Panels inside collapsed rows.
        out.extend(p["panels"].as_array().into_iter().flatten());
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Kubernetes

fn k8s_docs() -> Vec<Yaml> {
    yaml_docs(&docker().join("k8s/sidecar.yaml")).unwrap_or_else(|e| panic!("{e}"))
}

fn k8s_kind<'a>(docs: &'a [Yaml], kind: &str) -> &'a Yaml {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("docker/k8s/sidecar.yaml: no {kind}"))
}

struct Sidecar<'a> {
    pod: &'a Yaml,
    fairlead: &'a Yaml,
    apps: Vec<&'a Yaml>,
    cfg: Config,
}

fn sidecar(docs: &[Yaml]) -> Sidecar<'_> {
    let deploy = k8s_kind(docs, "Deployment");
    let pod = &deploy["spec"]["template"]["spec"];
    let is_fairlead = |c: &Yaml| c["image"].as_str().unwrap_or("").contains("fairlead");
    let inits: Vec<&Yaml> = pod["initContainers"]
        .as_sequence()
        .into_iter()
        .flatten()
        .collect();
    let containers: Vec<&Yaml> = pod["containers"]
        .as_sequence()
        .into_iter()
        .flatten()
        .collect();
    let fairlead = inits
        .iter()
        .chain(containers.iter())
        .find(|c| is_fairlead(c))
        .copied()
        .expect("docker/k8s/sidecar.yaml: no container with a fairlead image");
    if inits.iter().any(|c| std::ptr::eq(*c, fairlead)) {
        assert_eq!(
            fairlead["restartPolicy"].as_str(),
            Some("Always"),
            "docker/k8s/sidecar.yaml: fairlead as an init container must be a native sidecar \
             (restartPolicy: Always), or the pod never gets past it"
        );
    }
    let apps: Vec<&Yaml> = containers
        .iter()
        .filter(|c| !is_fairlead(c))
        .copied()
        .collect();
    assert!(
        !apps.is_empty(),
        "docker/k8s/sidecar.yaml: no application container"
    );

    let mut args = strings(&fairlead["command"]);
    if args
        .first()
        .is_some_and(|a| a.ends_with("/fairlead") || a == "fairlead")
    {
        args.remove(0);
    }
    args.extend(strings(&fairlead["args"]));
    let env: Vec<(String, String)> = fairlead["env"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|e| Some((scalar(&e["name"])?, scalar(&e["value"])?)))
        .collect();

    // --config names a file in a volume that carries the ConfigMap.
    let config_path = args
        .iter()
        .position(|a| a == "--config")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .or_else(|| {
            env.iter()
                .find(|(k, _)| k == "FAIRLEAD_CONFIG")
                .map(|(_, v)| v.clone())
        });
    let file = match config_path {
        None => Options::default(),
        Some(path) => {
            let p = Path::new(&path);
            let dir = p.parent().and_then(|d| d.to_str()).unwrap_or("");
            let key = p.file_name().and_then(|f| f.to_str()).unwrap_or("");
            let mount = fairlead["volumeMounts"]
                .as_sequence()
                .into_iter()
                .flatten()
                .find(|m| m["mountPath"].as_str() == Some(dir))
                .unwrap_or_else(|| {
                    panic!(
                        "docker/k8s/sidecar.yaml: nothing is mounted at {dir} for --config {path}"
                    )
                });
            let volume = pod["volumes"]
                .as_sequence()
                .into_iter()
                .flatten()
                .find(|v| v["name"] == mount["name"])
                .expect("docker/k8s/sidecar.yaml: the mounted volume is not declared");
            let cm_name = volume["configMap"]["name"]
                .as_str()
                .expect("docker/k8s/sidecar.yaml: the config volume is not a ConfigMap");
            let cm = docs
                .iter()
                .find(|d| {
                    d["kind"].as_str() == Some("ConfigMap")
                        && d["metadata"]["name"].as_str() == Some(cm_name)
                })
                .unwrap_or_else(|| panic!("docker/k8s/sidecar.yaml: no ConfigMap {cm_name}"));
            let text = cm["data"][key].as_str().unwrap_or_else(|| {
                panic!("docker/k8s/sidecar.yaml: ConfigMap {cm_name} has no key {key}")
            });
            toml::from_str::<Options>(text).unwrap_or_else(|e| {
                panic!("docker/k8s/sidecar.yaml: ConfigMap {cm_name}/{key} is not a valid fairlead config: {e}")
            })
        }
    };
    // The image's ENV applies unless the container's env overrides it.
    let mut merged: BTreeMap<String, String> = Dockerfile::load().env().into_iter().collect();
    merged.extend(env);
    let merged: Vec<_> = merged.into_iter().collect();
    let cfg = resolve(
        file,
        &args,
        &merged,
        "docker/k8s/sidecar.yaml fairlead container",
    );
    Sidecar {
        pod,
        fairlead,
        apps,
        cfg,
    }
}

/// A probe's or annotation's port: a number or a named container port.
fn port_of(container: &Yaml, port: &Yaml) -> u16 {
    if let Some(n) = port.as_u64() {
        return n as u16;
    }
    let name = port.as_str().expect("port is a number or a name");
    if let Ok(n) = name.parse() {
        return n;
    }
    container["ports"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|p| p["name"].as_str() == Some(name))
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("no container port named {name}")) as u16
}

#[test]
fn k8s_sidecar_listens_on_loopback_and_serves_admin_to_the_pod() {
    let docs = k8s_docs();
    let s = sidecar(&docs);
    let cfg = &s.cfg;
    assert!(
        cfg.listen.ip().is_loopback(),
        "docker/k8s/sidecar.yaml: a sidecar proxy should listen on loopback, got {}",
        cfg.listen
    );
    assert_eq!(cfg.listen.port(), listen_port());
    assert_eq!(
        cfg.advertised_host, "localhost",
        "docker/k8s/sidecar.yaml: the application reaches the broker ports at localhost"
    );
    assert!(
        cfg.admin.ip().is_unspecified(),
        "docker/k8s/sidecar.yaml: the admin endpoint must be reachable at the pod IP for probes \
         and Prometheus, got {}",
        cfg.admin
    );
    assert_eq!(cfg.admin.port(), admin_port());
    assert!(
        !cfg.bootstrap.is_empty(),
        "docker/k8s/sidecar.yaml: no bootstrap"
    );

    // The application bootstraps at fairlead.
    let want = format!("localhost:{}", cfg.listen.port());
    let bootstraps: Vec<String> = s
        .apps
        .iter()
        .flat_map(|c| c["env"].as_sequence().into_iter().flatten())
        .filter(|e| e["name"].as_str().is_some_and(|n| n.contains("BOOTSTRAP")))
        .filter_map(|e| scalar(&e["value"]))
        .collect();
    assert!(
        !bootstraps.is_empty() && bootstraps.iter().all(|b| *b == want),
        "docker/k8s/sidecar.yaml: the application should bootstrap at {want}, got {bootstraps:?}"
    );
}

#[test]
fn k8s_sidecar_probes_and_scrape_annotations_use_the_admin_endpoint() {
    let docs = k8s_docs();
    let s = sidecar(&docs);
    let admin = s.cfg.admin.port();
    for path in ["/startupz", "/livez", "/readyz", "/metrics"] {
        assert!(
            ADMIN_RS.contains(&format!("\"{path}\"")),
            "src/admin.rs no longer serves {path}"
        );
    }
    for (probe, path, required) in [
        ("livenessProbe", "/livez", true),
        ("readinessProbe", "/readyz", true),
        ("startupProbe", "/startupz", true),
    ] {
        let get = &s.fairlead[probe]["httpGet"];
        if !required && s.fairlead[probe].is_null() {
            continue;
        }
        assert_eq!(
            get["path"].as_str(),
            Some(path),
            "docker/k8s/sidecar.yaml: {probe} should GET {path}"
        );
        assert_eq!(
            port_of(s.fairlead, &get["port"]),
            admin,
            "docker/k8s/sidecar.yaml: {probe} should use the admin port"
        );
    }
    let declared: Vec<u64> = s.fairlead["ports"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|p| p["containerPort"].as_u64())
        .collect();
    assert!(
        declared.contains(&(admin as u64)),
        "docker/k8s/sidecar.yaml: fairlead should declare containerPort {admin}"
    );
    let deploy = k8s_kind(&docs, "Deployment");
    let ann = &deploy["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(ann["prometheus.io/scrape"].as_str(), Some("true"));
    assert_eq!(
        ann["prometheus.io/port"].as_str(),
        Some(admin.to_string().as_str()),
        "docker/k8s/sidecar.yaml: prometheus.io/port (a string) should be the admin port"
    );
    assert_eq!(ann["prometheus.io/path"].as_str(), Some("/metrics"));

    // The selector matches the pod template.
    let labels = &deploy["spec"]["template"]["metadata"]["labels"];
    for (k, v) in deploy["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .expect("matchLabels")
    {
        assert_eq!(
            &labels[k], v,
            "docker/k8s/sidecar.yaml: selector label {k:?} is not on the pod template"
        );
    }
    let grace = s.pod["terminationGracePeriodSeconds"]
        .as_u64()
        .unwrap_or(30);
    assert!(
        Duration::from_secs(grace) > s.cfg.drain_timeout,
        "docker/k8s/sidecar.yaml: terminationGracePeriodSeconds {grace} does not cover \
         drain_timeout_ms ({:?})",
        s.cfg.drain_timeout
    );
}

#[test]
fn k8s_sidecar_is_locked_down_and_bounded() {
    let docs = k8s_docs();
    let s = sidecar(&docs);
    let sc = &s.fairlead["securityContext"];
    let pod_sc = &s.pod["securityContext"];
    let non_root = sc["runAsNonRoot"]
        .as_bool()
        .or(pod_sc["runAsNonRoot"].as_bool());
    assert_eq!(
        non_root,
        Some(true),
        "docker/k8s/sidecar.yaml: runAsNonRoot"
    );
    if let Some(uid) = sc["runAsUser"].as_u64() {
        assert_eq!(
            uid,
            Dockerfile::load().user_uid() as u64,
            "docker/k8s/sidecar.yaml: runAsUser differs from the image's USER"
        );
    }
    assert_eq!(
        sc["readOnlyRootFilesystem"].as_bool(),
        Some(true),
        "docker/k8s/sidecar.yaml: readOnlyRootFilesystem"
    );
    assert_eq!(
        sc["allowPrivilegeEscalation"].as_bool(),
        Some(false),
        "docker/k8s/sidecar.yaml: allowPrivilegeEscalation"
    );
    assert!(
        strings(&sc["capabilities"]["drop"]).contains(&"ALL".to_string()),
        "docker/k8s/sidecar.yaml: capabilities.drop should contain ALL"
    );
    let res = &s.fairlead["resources"];
    for (k, v) in [
        ("requests", "cpu"),
        ("requests", "memory"),
        ("limits", "memory"),
    ] {
        assert!(
            scalar(&res[k][v]).is_some(),
            "docker/k8s/sidecar.yaml: fairlead resources.{k}.{v} is not set"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Helm chart (rendered and validated with the real helm by tests/k8s)

/// Every option fairlead has, by its config-file key: the keys `Options` serializes (what the
/// file accepts; `config` itself is a flag only).
fn option_keys() -> BTreeSet<String> {
    match serde_json::to_value(Options::default()) {
        Ok(Json::Object(m)) => m.keys().cloned().collect(),
        other => panic!("Options serializes to a map, got {other:?}"),
    }
}

#[test]
fn helm_values_expose_every_option_and_no_credential() {
    let values = yaml("helm/fairlead/values.yaml");
    let config: BTreeSet<String> = values["config"]
        .as_mapping()
        .expect("docker/helm/fairlead/values.yaml: `config` is a map of fairlead's options")
        .keys()
        .filter_map(|k| k.as_str().map(str::to_string))
        .collect();
    let options = option_keys();
    assert!(
        options.len() > 30 && options.contains("absorb_timeout_ms"),
        "{options:?}"
    );
    // The options that are credentials come from Secrets, never from values.
    let from_secret = ["sasl_password", "sasl_oauthbearer_client_secret"];
    assert!(from_secret.iter().all(|o| options.contains(*o)));
    let missing: Vec<_> = options
        .iter()
        .filter(|o| !from_secret.contains(&o.as_str()) && !config.contains(*o))
        .collect();
    assert!(
        missing.is_empty(),
        "docker/helm/fairlead/values.yaml `config` lacks options src/config.rs has: {missing:?}"
    );
    let unknown: Vec<_> = config.iter().filter(|k| !options.contains(*k)).collect();
    assert!(
        unknown.is_empty(),
        "docker/helm/fairlead/values.yaml `config` has keys fairlead does not know: {unknown:?}"
    );
    for credential in from_secret {
        assert!(
            !config.contains(credential),
            "docker/helm/fairlead/values.yaml: {credential} must come from a Secret \
             (sasl.passwordSecret, sasl.oauthClientSecret), not a value"
        );
    }
    assert!(values["sasl"]["passwordSecret"]["name"].is_string());
    assert!(values["sasl"]["oauthClientSecret"]["name"].is_string());

    // Defaults never weakened: a loopback listener, the admin port the image exposes.
    let listen: SocketAddr = values["config"]["listen"]
        .as_str()
        .expect("config.listen")
        .parse()
        .expect("config.listen is IP:PORT");
    assert!(
        listen.ip().is_loopback(),
        "sidecars listen on loopback, got {listen}"
    );
    assert_eq!(listen.port(), listen_port());
    let admin: SocketAddr = values["config"]["admin"].as_str().unwrap().parse().unwrap();
    assert_eq!(admin.port(), admin_port());
    let sc = &values["sidecar"]["securityContext"];
    assert_eq!(sc["runAsNonRoot"].as_bool(), Some(true));
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(
        sc["runAsUser"].as_u64(),
        Some(Dockerfile::load().user_uid() as u64)
    );
}

#[test]
fn helm_chart_ships_the_grafana_dashboard_unchanged() {
    assert_eq!(
        json("helm/fairlead/files/fairlead.json"),
        json("grafana/dashboards/fairlead.json"),
        "docker/helm/fairlead/files/fairlead.json is a copy of docker/grafana/dashboards/\
         fairlead.json (a chart cannot read files outside itself): copy it again"
    );
}

// ---------------------------------------------------------------------------------------------
// All files

#[test]
fn every_yaml_and_json_file_parses() {
    let mut parsed = Vec::new();
    let mut failures = Vec::new();
    for f in docker_files() {
        // Helm templates are Go templates that render to YAML (tests/k8s renders them with helm).
        if rel(&f).contains("/templates/") {
            continue;
        }
        let result = if is_yaml(&f) {
            yaml_docs(&f).map(|_| ())
        } else if f.extension().and_then(|e| e.to_str()) == Some("json") {
            serde_json::from_str::<Json>(&read(&f))
                .map(|_| ())
                .map_err(|e| format!("{}: {e}", rel(&f)))
        } else {
            continue;
        };
        match result {
            Ok(()) => parsed.push(rel(&f)),
            Err(e) => failures.push(e),
        }
    }
    assert!(
        failures.is_empty(),
        "unparsable files:\n{}",
        failures.join("\n")
    );
    for expected in [
        "docker/compose.yaml",
        "docker/prometheus.yml",
        "docker/k8s/sidecar.yaml",
        "docker/helm/fairlead/Chart.yaml",
        "docker/helm/fairlead/values.yaml",
        "docker/grafana/dashboards/fairlead.json",
        "docker/grafana/provisioning/datasources/prometheus.yaml",
        "docker/grafana/provisioning/dashboards/fairlead.yaml",
    ] {
        assert!(
            parsed.iter().any(|p| p == expected),
            "{expected} is missing (parsed: {parsed:?})"
        );
    }
}

#[test]
fn every_fairlead_variable_and_flag_in_docker_files_exists() {
    let known = env_vars_in_source();
    let clap_known: BTreeSet<String> = env_to_flag().into_keys().collect();
    assert!(
        clap_known.is_subset(&known),
        "the CLI has variables src/config.rs does not declare as `env = \"...\"`: {:?}",
        clap_known.difference(&known).collect::<Vec<_>>()
    );
    let flags: BTreeSet<String> = Cli::command()
        .get_arguments()
        .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
        .collect();
    let mut unknown = Vec::new();
    for f in docker_files() {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        let mut rest = text.as_str();
        while let Some(i) = rest.find("FAIRLEAD_") {
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(tail.len());
            let name = &tail[..end];
            // "FAIRLEAD_*" and "FAIRLEAD_<OPTION>" in prose name no variable.
            if name.len() > "FAIRLEAD_".len() && !known.contains(name) {
                unknown.push(format!("{}: {name}", rel(&f)));
            }
            rest = &tail[end..];
        }
    }
    assert!(
        unknown.is_empty(),
        "unknown environment variables (src/config.rs declares {known:?}):\n{}",
        unknown.join("\n")
    );

    // Flags fairlead is run with in compose and Kubernetes.
    let c = compose();
    let mut used = strings(&service(&c, "fairlead")["command"]);
    let docs = k8s_docs();
    used.extend(strings(&sidecar(&docs).fairlead["args"]));
    let bad: Vec<_> = used
        .iter()
        .filter(|a| a.starts_with("--"))
        .map(|a| a.split('=').next().unwrap_or(a).to_string())
        .filter(|a| !flags.contains(a))
        .collect();
    assert!(
        bad.is_empty(),
        "flags fairlead does not have: {bad:?} (it has {flags:?})"
    );
}
