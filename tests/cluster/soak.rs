//! The soak: the acceptance scenario for a long time (30 minutes by default), with leadership
//! moving every 2 s, a broker killed with SIGKILL and restarted every 5 minutes, and a rolling
//! restart half-way; then client-visible leadership errors (must be 0), lost records (0), and
//! fairlead's RSS over the run (flat). Not part of `make test`: run it with
//! `tests/testbed/soak [MINUTES]` (see RELIABILITY.md).

#[path = "../support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::scenario::{self, Plan};
use support::{ClientKind, Fairlead};

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[test]
#[ignore = "long: run with tests/testbed/soak"]
fn soak() {
    if support::skip_without_testbed() {
        return;
    }
    let minutes: u64 = std::env::var("SOAK_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(30);
    let _chaos = support::chaos_lock();
    let cluster = support::cluster();
    let dir = support::run_dir("soak");
    let fairlead = Fairlead::start(&cluster.bootstrap, &dir, &[]);
    let pid = fairlead.pid();
    let samples = Arc::new(std::sync::Mutex::new(Vec::new()));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (samples, done) = (samples.clone(), done.clone());
        std::thread::spawn(move || {
            let t0 = std::time::Instant::now();
            while !done.load(Ordering::Relaxed) {
                if let Some(r) = rss_kib(pid) {
                    samples.lock().unwrap().push((t0.elapsed().as_secs(), r));
                }
                std::thread::sleep(Duration::from_secs(10));
            }
        })
    };
    let mut plan = Plan::new("soak", ClientKind::Java);
    // One round is a move of every partition plus a 2 s pause (about 2.5 s on this machine).
    let rounds = (minutes * 60 * 10 / 25) as usize;
    plan.move_rounds = rounds;
    plan.move_interval = Duration::from_secs(2);
    plan.rolling_restart = true;
    plan.reassignments = 4;
    plan.idempotent_producer = true;
    plan.kill_restart_rounds = (1..=minutes / 5)
        .map(|k| (k * 5 * 60 * 10 / 25) as usize)
        .filter(|r| *r < rounds)
        .collect();
    let out = scenario::run(&plan, &fairlead.bootstrap, dir.clone());
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let samples = samples.lock().unwrap().clone();
    let (first, last) = (
        samples.first().map(|s| s.1).unwrap_or(0),
        samples.last().map(|s| s.1).unwrap_or(0),
    );
    let max = samples.iter().map(|s| s.1).max().unwrap_or(0);
    let mut report = format!(
        "soak: {minutes} min ({:?}), {} partition moves, {} SIGKILL restarts, 1 rolling restart, 4 reassignments\n",
        out.elapsed,
        out.partition_moves,
        plan.kill_restart_rounds.len()
    );
    report += &format!(
        "client-visible leadership errors: {}\nfetch answers starting after the offset asked for: {}\n",
        out.leadership_errors_seen, out.fetch_gaps
    );
    for (run, topic, v) in &out.verdicts {
        report += &format!(
            "{run} on {topic}: acked {} lost {} duplicated {} out-of-order {}\n",
            v.acked,
            v.missing.len(),
            v.duplicated.len(),
            v.out_of_order.len()
        );
    }
    for (name, s) in out.legacy.iter().chain(&out.idempotent) {
        report += &format!(
            "producer {name}: sent {} acked {} failed {} errors {}\n",
            s["sent"], s["acked"], s["failed"], s["errors"]
        );
    }
    report += &format!(
        "fairlead RSS: start {first} KiB, end {last} KiB, max {max} KiB ({} samples)\n",
        samples.len()
    );
    report += &format!(
        "absorbed {} leadership errors, rerouted {} partition requests\n",
        fairlead.metric("fairlead_errors_absorbed_total", &[]),
        fairlead.metric("fairlead_reroutes_total", &[])
    );
    std::fs::write(dir.join("soak-report.txt"), &report).unwrap();
    std::fs::write(
        dir.join("rss.csv"),
        samples
            .iter()
            .map(|(t, r)| format!("{t},{r}\n"))
            .collect::<String>(),
    )
    .unwrap();
    println!("{report}\n{}", out.observer_report);
    assert_eq!(out.leadership_errors_seen, 0, "{report}");
    assert_eq!(out.fetch_gaps, 0, "{report}");
    for (run, _, v) in &out.verdicts {
        assert!(v.lossless(), "{run} lost records\n{report}");
        if run.starts_with("idem") {
            assert!(v.exactly_once_in_order(), "{run}\n{report}");
        }
    }
}
