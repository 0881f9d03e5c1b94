//! The `fairlead` binary: parse options, start, run until SIGTERM/SIGINT, drain, exit.

use std::process::ExitCode;

use clap::Parser;
use fairlead::config::{self, Cli, Command, LogFormat};
use fairlead::server::Server;
use tracing::{error, info};

// The global allocator. Memory a burst took (10,000 client connections opened, then closed)
// must go back to the system: glibc's malloc kept all of it (BENCHMARKS.md, 2026-12-05 23:39),
// mimalloc set as below gives it back within seconds (2026-12-06, "the allocator", where
// jemalloc was measured in the same run). `alloc-jemalloc` and `alloc-glibc` (Cargo.toml)
// build the others for that comparison.
#[cfg(not(any(feature = "alloc-jemalloc", feature = "alloc-glibc")))]
mod allocator {
    #[global_allocator]
    static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

    // mimalloc's option numbers (mi_option_e in its mimalloc.h, v3): libmimalloc-sys names
    // only a few of them.
    const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

    /// Before the first allocation (see [`super::EARLY`]): purge freed pages at once (the
    /// default waits, then purges only on the owning thread's next allocations: an idle
    /// fairlead kept 248 MiB), and commit arena memory as it is used (its first arena, reserved
    /// at the first allocation, was otherwise committed whole and faulted in 2 MiB huge pages:
    /// 10.8 MiB at start instead of 7.7). `set_default` leaves an option alone if its
    /// MIMALLOC_* environment variable set it.
    pub fn early() {
        // SAFETY: plain stores into mimalloc's option table; mimalloc reads both options each
        // time it reserves or purges memory.
        unsafe {
            libmimalloc_sys::mi_option_set_default(PURGE_DELAY, 0);
            libmimalloc_sys::mi_option_set_default(ARENA_EAGER_COMMIT, 0);
        }
    }

    pub fn start() {}
}

#[cfg(feature = "alloc-jemalloc")]
mod allocator {
    #[global_allocator]
    static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

    /// jemalloc's options, read at its start (`_RJEM_MALLOC_CONF` in the environment overrides
    /// them): a background thread purges freed pages after dirty_decay_ms, at once for muzzy.
    #[allow(non_upper_case_globals)]
    #[export_name = "_rjem_malloc_conf"]
    pub static malloc_conf: &[u8; 60] =
        b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

    pub fn early() {}

    pub fn start() {}
}

#[cfg(all(feature = "alloc-glibc", not(feature = "alloc-jemalloc")))]
mod allocator {
    pub fn early() {}

    /// glibc's malloc never gives back freed memory below the top of its heap: trim it every
    /// 10 s from a thread of its own.
    pub fn start() {
        std::thread::spawn(|| loop {
            std::thread::sleep(std::time::Duration::from_secs(10));
            // SAFETY: malloc_trim takes no pointers and locks the arenas it walks.
            unsafe { libc::malloc_trim(0) };
        });
    }
}

/// Runs from the ELF init array, before Rust's runtime starts and so before the first
/// allocation: what must hold for the whole heap is set here, not in `main`.
#[cfg(target_os = "linux")]
#[used]
#[link_section = ".init_array"]
static EARLY: extern "C" fn() = early;

extern "C" fn early() {
    no_transparent_huge_pages();
    allocator::early();
}

/// Transparent huge pages off for this process: where the kernel backs anonymous memory with
/// 2 MiB pages by default (`always`, as on the machine of BENCHMARKS.md), the heap is faulted
/// in 2 MiB pieces and khugepaged folds freed 4 KiB pages back into huge ones: with mimalloc
/// the start was 15.1 MiB instead of 7.7, and RSS after 10,000 connections closed crept from
/// 36 to 56 MiB in a minute with nothing open (2026-12-06, "the allocator").
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with integer arguments only; failure (an old kernel) changes nothing.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

fn main() -> ExitCode {
    #[cfg(not(target_os = "linux"))]
    early();
    allocator::start();
    let cli = Cli::parse();
    if let Some(Command::Status {
        admin,
        under_replicated,
    }) = cli.command
    {
        return match fairlead::status(&admin, under_replicated) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("fairlead status: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::Webhook(args)) = cli.command {
        return webhook(args);
    }
    let cfg = match config::load(cli.run) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fairlead: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(cfg.log_format, &cfg.log_level);
    // One thread by default: a sidecar carries one application's traffic, and a single-threaded
    // runtime spends less CPU per request than a work-stealing one, whose workers wake each other
    // across threads on every hop: 7-19% less than 2 workers, as little as 1 worker, with no
    // latency lost, also beside 200,000-partition Metadata answers (BENCHMARKS.md, 2026-12-05
    // "runtime and floor"; benches/HISTORY.md, "the runtime change").
    let mut builder = match cfg.worker_threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        n => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            if n > 1 {
                b.worker_threads(n);
            }
            b
        }
    };
    let rt = match builder.enable_all().thread_name("fairlead").build() {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let server = match Server::start(cfg).await {
            Ok(s) => s,
            Err(e) => {
                error!(error = %e, "start-up failed");
                return ExitCode::FAILURE;
            }
        };
        wait_for_signal(&server).await;
        info!("shutting down: no new connections; answering requests in flight");
        server.shutdown().await;
        ExitCode::SUCCESS
    })
}

/// `fairlead webhook`: the sidecar injector, on a single-threaded runtime (a few requests a
/// second at most: one per pod created).
fn webhook(args: config::WebhookArgs) -> ExitCode {
    init_logging(LogFormat::Json, &args.log_level);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(fairlead::webhook::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %e, "fairlead webhook failed");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Until SIGTERM or SIGINT; SIGHUP reloads certificates, keys and secrets from their files.
async fn wait_for_signal(server: &Server) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    let mut hup = signal(SignalKind::hangup()).expect("install SIGHUP handler");
    loop {
        tokio::select! {
            _ = term.recv() => return info!("SIGTERM received"),
            _ = int.recv() => return info!("SIGINT received"),
            _ = hup.recv() => {
                info!("SIGHUP received: reloading certificates, keys and secrets");
                server.reload();
            }
        }
    }
}
