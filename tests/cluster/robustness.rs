//! Bad clients never cost other clients anything: each bad behaviour gets a defined outcome
//! (its connection closed with one log line naming the client and the reason, or the frame
//! passed through), and the process and every other connection keep working.

#[path = "../support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse,
};
use kafka_protocol::protocol::StrBytes;
use support::raw::Raw;
use support::Fairlead;

fn api_versions(c: &mut Raw) -> ApiVersionsResponse {
    let req = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("robustness"))
        .with_client_software_version(StrBytes::from_static_str("1"));
    c.call(ApiKey::ApiVersions, 3, &req)
}

/// The connection is closed by fairlead within `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut b = [0u8; 1024];
    let t0 = Instant::now();
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return t0.elapsed() < within,
        }
    }
}

fn still_serves(f: &Fairlead) {
    let mut c = Raw::connect(&f.bootstrap);
    assert_eq!(
        api_versions(&mut c).error_code,
        0,
        "another connection still works"
    );
    let md: MetadataResponse = c.call(
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(None),
    );
    assert!(!md.brokers.is_empty());
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn the_connection_limit_refuses_the_excess_cleanly() {
    if support::skip_without_testbed() {
        return;
    }
    let cluster = support::cluster();
    let f = Fairlead::start(
        &cluster.bootstrap,
        &support::run_dir("conn-limit"),
        &["--max-connections", "20"],
    );
    let mut held: Vec<Raw> = (0..20).map(|_| Raw::connect(&f.bootstrap)).collect();
    for c in held.iter_mut() {
        assert_eq!(api_versions(c).error_code, 0);
    }
    for _ in 0..5 {
        let mut extra = TcpStream::connect(&f.bootstrap).unwrap();
        assert!(
            closed_within(&mut extra, Duration::from_secs(5)),
            "the 21st connection is closed at accept"
        );
    }
    for c in held.iter_mut() {
        assert_eq!(
            api_versions(c).error_code,
            0,
            "the 20 admitted connections keep working"
        );
    }
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    still_serves(&f);
    assert!(
        f.log_text().contains("max_connections reached"),
        "one log line per refused connection"
    );
}

#[test]
fn a_slow_loris_client_is_disconnected_and_an_idle_one_too() {
    if support::skip_without_testbed() {
        return;
    }
    let cluster = support::cluster();
    let f = Fairlead::start(
        &cluster.bootstrap,
        &support::run_dir("slow-loris"),
        &[
            "--client-frame-timeout-ms",
            "1000",
            "--client-idle-timeout-ms",
            "3000",
        ],
    );
    let mut slow = TcpStream::connect(&f.bootstrap).unwrap();
    slow.write_all(&[0, 0, 0, 40, 0, 18]).unwrap(); // 6 of 44 bytes, then nothing
    let t0 = Instant::now();
    assert!(closed_within(&mut slow, Duration::from_secs(5)));
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "closed after the frame timeout, took {:?}",
        t0.elapsed()
    );
    let mut idle = TcpStream::connect(&f.bootstrap).unwrap();
    let t0 = Instant::now();
    assert!(closed_within(&mut idle, Duration::from_secs(8)));
    assert!(
        t0.elapsed() >= Duration::from_millis(2500),
        "not before the idle timeout"
    );
    still_serves(&f);
    let log = f.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("too slow to arrive"))
        .unwrap_or_else(|| panic!("no log line for the slow client:\n{log}"));
    assert!(line.contains("peer="), "the line names the client: {line}");
}

#[test]
fn a_client_that_never_reads_its_responses_is_bounded_then_disconnected() {
    if support::skip_without_testbed() {
        return;
    }
    let cluster = support::cluster();
    let f = Fairlead::start(
        &cluster.bootstrap,
        &support::run_dir("no-read"),
        &[
            "--client-write-timeout-ms",
            "3000",
            "--max-in-flight-per-connection",
            "16",
        ],
    );
    still_serves(&f);
    let rss_before = rss_kib(f.pid());
    // Pipelined Metadata requests for every topic, never reading an answer: the socket buffers
    // fill, fairlead stops reading this client (16 in flight), and finally closes it.
    let mut greedy = TcpStream::connect(&f.bootstrap).unwrap();
    greedy
        .set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let frame = Raw::frame(
        ApiKey::Metadata,
        12,
        1,
        &MetadataRequest::default().with_topics(None),
    );
    let mut sent = 0;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(4) {
        match greedy.write_all(&frame) {
            Ok(()) => sent += 1,
            Err(_) => break, // fairlead stopped reading us: backpressure
        }
    }
    assert!(sent > 16, "sent {sent}");
    // Meanwhile everyone else is served.
    still_serves(&f);
    // Still not reading: fairlead gives up on writing to it after the write timeout.
    let deadline = Instant::now() + Duration::from_secs(20);
    while f.metric(
        "fairlead_client_connections_closed_total",
        &[("reason", "client_not_reading")],
    ) < 1.0
    {
        assert!(
            Instant::now() < deadline,
            "the greedy client was never disconnected"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // What was already in the socket buffers can still be read, then the connection ends.
    assert!(
        closed_within(&mut greedy, Duration::from_secs(15)),
        "closed after the write timeout"
    );
    let grown = rss_kib(f.pid()).saturating_sub(rss_before);
    assert!(
        grown < 64 * 1024,
        "fairlead grew {grown} KiB for one greedy client"
    );
    still_serves(&f);
    assert!(f.log_text().contains("did not read its responses"));
}

#[test]
fn malformed_frames_close_only_their_connection_with_a_log_line() {
    if support::skip_without_testbed() {
        return;
    }
    let cluster = support::cluster();
    let f = Fairlead::start(
        &cluster.bootstrap,
        &support::run_dir("malformed"),
        &["--max-frame-bytes", "1048576"],
    );
    let mut healthy = Raw::connect(&f.bootstrap);
    for (name, bytes) in [
        ("negative length", vec![0xff, 0xff, 0xff, 0xf0, 0, 1, 2, 3]),
        ("oversized length", vec![0x7f, 0, 0, 0, 0, 0, 0, 0]),
        ("shorter than a header", vec![0, 0, 0, 3, 1, 2, 3]),
    ] {
        let mut s = TcpStream::connect(&f.bootstrap).unwrap();
        s.write_all(&bytes).unwrap();
        assert!(
            closed_within(&mut s, Duration::from_secs(5)),
            "{name}: connection closed"
        );
        assert_eq!(
            api_versions(&mut healthy).error_code,
            0,
            "{name}: the other connection is unaffected"
        );
    }
    // A truncated frame then EOF.
    let mut s = TcpStream::connect(&f.bootstrap).unwrap();
    s.write_all(&[0, 0, 0, 50, 0, 18, 0, 3]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(closed_within(&mut s, Duration::from_secs(5)));
    // A future version of a routed API fairlead cannot decode: passed through blind; the broker
    // decides (Kafka closes the connection for a version it does not know).
    let mut future = Raw::connect(&f.bootstrap);
    let mut frame = Raw::frame(
        ApiKey::Metadata,
        12,
        7,
        &MetadataRequest::default().with_topics(None),
    );
    frame[4..8].copy_from_slice(&[0, 0, 0, 99]); // Produce v99
    future.send_bytes(&frame);
    future.set_read_timeout(Duration::from_secs(10));
    assert!(
        future.recv().is_err(),
        "the broker refused a version it does not know"
    );
    still_serves(&f);
    assert!(f.metric("fairlead_frames_passed_blind_total", &[("api", "Produce")]) >= 1.0);
    let log = f.log_text();
    for reason in ["negative", "exceeds the maximum", "shorter than"] {
        assert!(
            log.lines().any(|l| l.contains("closing client connection")
                && l.contains(reason)
                && l.contains("peer=")),
            "no log line for {reason}:\n{log}"
        );
    }
}
