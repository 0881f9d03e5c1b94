//! `fake_cluster`: a fake Kafka cluster of up to hundreds of brokers and hundreds of thousands of
//! partitions, for fairlead's scale benchmarks (benches/e2e/metadata-scale; what it answers and
//! what it records: cluster.rs).
//!
//! ```sh
//! cargo build --release --example fake_cluster
//! target/release/examples/fake_cluster --brokers 100 --partitions 200000 --base-port 28600
//! ```
//!
//! Node N listens on 127.0.0.1:(base-port + N); the control port (base-port itself) answers
//! every connection with one line of JSON, the counters so far, and closes it. Once the brokers
//! listen and the all-topics Metadata answer is encoded, one line of JSON goes to stdout:
//! `{"ready": true, "bootstrap": ..., "metadata_v12_bytes": ..., ...}`.

mod cluster;

use std::time::Instant;

use clap::Parser;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

#[derive(Parser, Debug)]
#[command(about = "A fake Kafka cluster for fairlead's scale benchmarks")]
struct Args {
    /// Brokers (node ids 1..=N).
    #[arg(long, default_value_t = 3)]
    brokers: i32,
    /// Partitions in all.
    #[arg(long, default_value_t = 1000)]
    partitions: usize,
    /// Partitions per topic (the last topic takes the rest).
    #[arg(long, default_value_t = 10)]
    partitions_per_topic: usize,
    #[arg(long, default_value_t = 3)]
    replication: usize,
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Node N on base-port + N; the control port on base-port.
    #[arg(long, default_value_t = 28600)]
    base_port: u16,
    /// Metadata versions to encode before saying ready (comma-separated).
    #[arg(long, default_value = "12")]
    warm_versions: String,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let shape = cluster::Shape {
            brokers: args.brokers,
            partitions: args.partitions,
            partitions_per_topic: args.partitions_per_topic,
            replication: args.replication,
        };
        let control = match TcpListener::bind((args.host.as_str(), args.base_port)).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!(
                    "fake cluster: cannot bind the control port {}: {e}",
                    args.base_port
                );
                return std::process::ExitCode::FAILURE;
            }
        };
        let t0 = Instant::now();
        let (cluster, addrs) = match cluster::start(shape, &args.host, args.base_port).await {
            Ok(x) => x,
            Err(e) => {
                eprintln!("fake cluster: cannot bind the brokers' ports: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        let built_ms = t0.elapsed().as_secs_f64() * 1000.0;
        let mut sizes = serde_json::Map::new();
        for v in args
            .warm_versions
            .split(',')
            .filter_map(|v| v.trim().parse::<i16>().ok())
        {
            sizes.insert(
                format!("metadata_v{v}_bytes"),
                cluster.full_metadata(v).len().into(),
            );
        }
        let c = cluster.clone();
        tokio::spawn(async move {
            loop {
                if let Ok((mut s, _)) = control.accept().await {
                    let mut line = c.stats().to_string();
                    line.push('\n');
                    let _ = s.write_all(line.as_bytes()).await;
                }
            }
        });
        let mut ready = serde_json::json!({
            "ready": true,
            "bootstrap": addrs.iter().take(3).map(|a| a.to_string()).collect::<Vec<_>>().join(","),
            "control": format!("{}:{}", args.host, args.base_port),
            "brokers": args.brokers,
            "partitions": args.partitions,
            "topics": cluster.shape.topics(),
            "build_ms": built_ms.round(),
            "ready_ms": (t0.elapsed().as_secs_f64() * 1000.0).round(),
        });
        ready.as_object_mut().unwrap().extend(sizes);
        println!("{ready}");
        // Until killed.
        std::future::pending::<()>().await;
        std::process::ExitCode::SUCCESS
    })
}
