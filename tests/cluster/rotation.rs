//! Certificates and passwords rotated without a restart, against real brokers, under load.
//!
//! Files are laid out as Kubernetes secret volumes are (and cert-manager updates them): each
//! name a symlink into `..data`, itself a symlink swapped atomically to a new directory.
//!
//! * The upstream client certificate, on the test bed's MTLS listener (a client certificate
//!   from its CA is required): the first certificate expires during the test, so every broker
//!   connection made after that proves the new one is in use, while the connections made with
//!   the old one keep working. A key that does not match its certificate is refused first.
//! * The SCRAM password: changed on the brokers first (Admin API), then in the file, then
//!   SIGHUP (no polling at all in this test). Brokers end SASL sessions every 20 s, so every
//!   connection re-authenticates with the new password during the test.
//!
//! Clients produce (idempotent, acks=all) and consume through fairlead the whole time: no
//! failure, no retry, nothing lost, duplicated or reordered.

#[path = "../support/mod.rs"]
mod support;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};
use support::raw::Raw;
use support::{Admin, ClientKind, ClientProc, Fairlead};

/// A secret volume as the kubelet lays it out.
struct Volume {
    dir: PathBuf,
    n: u32,
}

impl Volume {
    fn new(dir: PathBuf, files: &[(&str, &[u8])]) -> Volume {
        std::fs::create_dir_all(&dir).unwrap();
        let mut v = Volume { dir, n: 0 };
        v.update(files);
        for (f, _) in files {
            symlink(format!("..data/{f}"), v.dir.join(f)).unwrap();
        }
        v
    }

    /// Writes a new timestamped directory and swaps `..data` to it (rename over the link).
    fn update(&mut self, files: &[(&str, &[u8])]) {
        self.n += 1;
        let ts = format!("..2026_01_01_00_00_{:02}.{}", self.n, std::process::id());
        std::fs::create_dir(self.dir.join(&ts)).unwrap();
        for (f, content) in files {
            std::fs::write(self.dir.join(&ts).join(f), content).unwrap();
        }
        let tmp = self.dir.join("..data_tmp");
        symlink(&ts, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
    }

    fn path(&self, f: &str) -> String {
        self.dir.join(f).display().to_string()
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// ASN.1 UTCTime (YYMMDDHHMMSSZ) of `t`.
fn utc_time(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{:02}{m:02}{d:02}{:02}{:02}{:02}Z",
        y % 100,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A client certificate (PEM) and key signed by the test bed's CA, valid until `until` (X.509
/// v3: extensions make it so, and rustls takes no v1 certificate).
fn client_cert(dir: &Path, tls: &Path, name: &str, until: SystemTime) -> (Vec<u8>, Vec<u8>) {
    let ca = dir.join("ca");
    std::fs::create_dir_all(&ca).unwrap();
    let _ = std::fs::write(ca.join("index.txt"), "");
    if !ca.join("serial").exists() {
        std::fs::write(ca.join("serial"), "1000\n").unwrap();
    }
    std::fs::write(
        ca.join("ca.cnf"),
        format!(
            "[ca]\ndefault_ca = d\n[d]\ndatabase = {0}/index.txt\nnew_certs_dir = {0}\n\
             serial = {0}/serial\ndefault_md = sha256\npolicy = p\nunique_subject = no\n\
             x509_extensions = e\n[p]\ncommonName = supplied\n\
             [e]\nbasicConstraints = CA:FALSE\nextendedKeyUsage = clientAuth\n",
            ca.display()
        ),
    )
    .unwrap();
    let start = utc_time(SystemTime::now() - Duration::from_secs(60));
    let end = utc_time(until);
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={name}"),
        ],
    );
    openssl(
        dir,
        &[
            "ca",
            "-batch",
            "-notext",
            "-config",
            ca.join("ca.cnf").to_str().unwrap(),
            "-cert",
            tls.join("ca.pem").to_str().unwrap(),
            "-keyfile",
            tls.join("ca.key").to_str().unwrap(),
            "-in",
            &format!("{name}.csr"),
            "-out",
            &format!("{name}.pem"),
            "-startdate",
            &start,
            "-enddate",
            &end,
        ],
    );
    (
        std::fs::read(dir.join(format!("{name}.pem"))).unwrap(),
        std::fs::read(dir.join(format!("{name}.key"))).unwrap(),
    )
}

/// A new client connection through fairlead (so a new broker connection behind it, with the
/// material in use now) answers a Metadata request.
fn new_connection_works(fairlead: &Fairlead) {
    let mut raw = Raw::connect(&fairlead.bootstrap);
    raw.set_read_timeout(Duration::from_secs(20));
    let r: MetadataResponse = raw.call(ApiKey::Metadata, 4, &MetadataRequest::default());
    assert_eq!(r.brokers.len(), 3, "{r:?}");
}

/// Waits until fairlead_reloads_total{labels} reaches `value`.
fn wait_for_metric(fairlead: &Fairlead, labels: &[(&str, &str)], value: f64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v = fairlead.metric("fairlead_reloads_total", labels);
        if v >= value {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "fairlead_reloads_total{labels:?} = {v}, not {value}:\n{}",
            support::tail(&fairlead.log, 3000)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Producer and consumer through fairlead; `during` runs while they do; then every
/// acknowledged record must have been consumed once, in order, and no client saw an error.
fn under_load(fairlead: &Fairlead, dir: &Path, during: impl FnOnce()) {
    let topic = support::unique("rotation");
    let group = support::unique("rotation-group");
    let mut p = ClientProc::producer(
        ClientKind::Java,
        dir,
        "p",
        &fairlead.bootstrap,
        &topic,
        200,
        &[("acks", "all"), ("enable.idempotence", "true")],
    );
    p.wait_records(100, Duration::from_secs(60));
    let c = ClientProc::consumer(
        ClientKind::Java,
        dir,
        "c",
        &fairlead.bootstrap,
        &[&topic],
        Some(&group),
        &[("auto.offset.reset", "earliest")],
    );
    during();
    let acked = p.data.clone();
    let ps = p.stop();
    let consumed = c.data.clone();
    let cs = c.stop();
    let ctx = format!("{ps}\n{cs}\n{}", support::tail(&fairlead.log, 4000));
    assert_eq!(ps["failed"], serde_json::json!(0), "{ctx}");
    assert_eq!(ps["record_retry_total"].as_f64(), Some(0.0), "{ctx}");
    let v = support::verify(
        &support::read_acked(&acked),
        &support::read_consumed(&consumed, &topic, "p"),
    );
    assert!(v.acked > 1000 && v.exactly_once_in_order(), "{v:?}\n{ctx}");
}

#[test]
fn the_upstream_client_certificate_rotates_under_load() {
    if support::skip_without_testbed() {
        return;
    }
    support::cluster();
    let bed = support::testbed(&["up"]);
    let tls = PathBuf::from(bed["tls_dir"].as_str().unwrap());
    let dir = support::run_dir("rotation-mtls");
    let t0 = Instant::now();
    let expires = SystemTime::now() + Duration::from_secs(50);
    let (cert_a, key_a) = client_cert(&dir, &tls, "rotation-a", expires);
    let (cert_b, key_b) = client_cert(
        &dir,
        &tls,
        "rotation-b",
        SystemTime::now() + Duration::from_secs(86_400),
    );
    let mut vol = Volume::new(
        dir.join("tls"),
        &[("tls.crt", &cert_a), ("tls.key", &key_a)],
    );
    let cfg = dir.join("fairlead.toml");
    std::fs::write(
        &cfg,
        format!(
            "bootstrap = '{}'\nupstream_tls = true\nupstream_tls_ca_file = '{}'\n\
             upstream_tls_cert_file = '{}'\nupstream_tls_key_file = '{}'\nreload_interval_ms = 300\n",
            bed["mtls_bootstrap"].as_str().unwrap(),
            tls.join("ca.pem").display(),
            vol.path("tls.crt"),
            vol.path("tls.key"),
        ),
    )
    .unwrap();
    let fairlead = Fairlead::start(
        bed["mtls_bootstrap"].as_str().unwrap(),
        &dir,
        &["--config", cfg.to_str().unwrap(), "--log-level", "debug"],
    );
    let ok = [("material", "upstream_tls"), ("outcome", "ok")];
    let failed = [("material", "upstream_tls"), ("outcome", "failed")];
    under_load(&fairlead, &dir, || {
        // Half a rotation (the new key with the old certificate): refused, the old pair stays.
        vol.update(&[("tls.crt", &cert_a), ("tls.key", &key_b)]);
        wait_for_metric(&fairlead, &failed, 1.0);
        assert!(fairlead.log_text().contains("refused the new files"));
        new_connection_works(&fairlead);
        vol.update(&[("tls.crt", &cert_b), ("tls.key", &key_b)]);
        wait_for_metric(&fairlead, &ok, 1.0);
        // Past the first certificate's end, new broker connections can only be made with the
        // second; the clients' connections made with the first go on.
        let until = t0 + Duration::from_secs(65);
        while Instant::now() < until {
            new_connection_works(&fairlead);
            std::thread::sleep(Duration::from_secs(2));
        }
        assert!(SystemTime::now() > expires + Duration::from_secs(10));
    });
    assert_eq!(fairlead.metric("fairlead_reloads_total", &ok), 1.0);
    assert_eq!(fairlead.metric("fairlead_reloads_total", &failed), 1.0);
    let keys = [&key_a, &key_b].map(|k| String::from_utf8_lossy(k).to_string());
    let key_lines: Vec<&str> = keys
        .iter()
        .flat_map(|k| k.lines().filter(|l| !l.starts_with("-----")))
        .collect();
    support::assert_no_secrets("fairlead's debug log", &fairlead.log_text(), &key_lines);
}

#[test]
fn the_scram_password_rotates_under_load() {
    if support::skip_without_testbed() {
        return;
    }
    let cluster = support::cluster();
    let bed = support::testbed(&["up"]);
    let tls = PathBuf::from(bed["tls_dir"].as_str().unwrap());
    let dir = support::run_dir("rotation-scram");
    let user = support::unique("carol");
    let (one, two) = (format!("{user}-first-pw"), format!("{user}-second-pw"));
    let mut admin = Admin::connect(&cluster.bootstrap);
    let set_password = |admin: &mut Admin, pw: &str| {
        let r = admin.call(serde_json::json!({"op": "scram-upsert", "user": user, "password": pw}));
        assert_eq!(r["ok"], serde_json::json!(true), "{r}");
    };
    set_password(&mut admin, &one);
    let mut vol = Volume::new(dir.join("secret"), &[("password", one.as_bytes())]);
    let cfg = dir.join("fairlead.toml");
    std::fs::write(
        &cfg,
        format!(
            "bootstrap = '{}'\nupstream_tls = true\nupstream_tls_ca_file = '{}'\n\
             sasl_mechanism = 'SCRAM-SHA-512'\nsasl_username = '{user}'\n\
             sasl_password_file = '{}'\nreload_interval_ms = 0\n",
            bed["secure_bootstrap"].as_str().unwrap(),
            tls.join("ca.pem").display(),
            vol.path("password"),
        ),
    )
    .unwrap();
    // The new user reaches every broker through the metadata log: retried until it has.
    let fairlead = {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let f = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                Fairlead::start(
                    bed["secure_bootstrap"].as_str().unwrap(),
                    &dir,
                    &["--config", cfg.to_str().unwrap(), "--log-level", "debug"],
                )
            }));
            match f {
                Ok(f) => break f,
                Err(e) if Instant::now() > deadline => std::panic::resume_unwind(e),
                Err(_) => std::thread::sleep(Duration::from_secs(1)),
            }
        }
    };
    let ok = [("material", "sasl_password"), ("outcome", "ok")];
    under_load(&fairlead, &dir, || {
        std::thread::sleep(Duration::from_secs(5));
        // The brokers first, then the file, then SIGHUP (this fairlead does not poll).
        set_password(&mut admin, &two);
        vol.update(&[("password", two.as_bytes())]);
        let hup = Command::new("kill")
            .args(["-HUP", &fairlead.pid().to_string()])
            .status()
            .unwrap();
        assert!(hup.success());
        wait_for_metric(&fairlead, &ok, 1.0);
        // Every broker session ends within 20 s (connections.max.reauth.ms): by then every
        // connection has been replaced by one that authenticated with the new password.
        std::thread::sleep(Duration::from_secs(25));
        new_connection_works(&fairlead);
    });
    let log = fairlead.log_text();
    assert!(log.contains("SIGHUP received"), "{log}");
    support::assert_no_secrets("fairlead's debug log", &log, &[&one, &two]);
    support::assert_no_secrets("fairlead's metrics", &fairlead.metrics(), &[&one, &two]);
}
