//! Whether the tests that need the real Kafka test bed run.
//!
//! `make test` (tests/run-all) sets FAIRLEAD_TESTBED=required: every cluster test runs, and a
//! test bed that cannot start is a failure. A plain `cargo test` uses a test bed that is already
//! running (`tests/testbed/testbed up`) and otherwise skips the cluster tests, each with one line
//! saying so, instead of failing for want of Kafka.

use std::io::Write;
use std::process::Command;
use std::sync::OnceLock;

/// True (after printing why) when this cluster test must not run: no test bed is running and
/// none is required. Call it first in every test of tests/cluster/.
pub fn skip_without_testbed() -> bool {
    static RUNNING: OnceLock<bool> = OnceLock::new();
    if required() {
        return false;
    }
    let running = *RUNNING.get_or_init(|| {
        Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/testbed/testbed"
        ))
        .arg("status")
        .output()
        .is_ok_and(|o| o.status.success())
    });
    if !running {
        let test = std::thread::current()
            .name()
            .unwrap_or("this test")
            .to_string();
        // Straight to the process's stderr: the test harness captures eprintln! of a test
        // that passes, and this line is the point.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: no Kafka test bed is running. `make test` runs every test with one; \
             or start it with tests/testbed/testbed up (FAIRLEAD_TESTBED=required makes a \
             missing test bed a failure)"
        );
    }
    !running
}

fn required() -> bool {
    std::env::var("FAIRLEAD_TESTBED").is_ok_and(|v| v == "required")
}
