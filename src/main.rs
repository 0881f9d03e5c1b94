//! The `fairlead` binary: parse options, start, run until SIGTERM/SIGINT, drain, exit.

use std::process::ExitCode;

use clap::Parser;
use fairlead::config::{self, Cli, Command, LogFormat};
use fairlead::server::Server;
use tracing::{error, info};

/// mimalloc rather than glibc's malloc: memory freed after a burst (10,000 client connections
/// opened, then closed) goes back to the system within seconds; glibc's kept nearly all of it
/// (BENCHMARKS.md, issue 20).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
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
