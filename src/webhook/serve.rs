//! The webhook's HTTPS server: POST /mutate (AdmissionReview), GET /livez and /readyz (its own
//! probes). One request per connection (the API server opens another when we close), bounded
//! header and body sizes and a timeout per connection, like the admin endpoint.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

use super::{annotation_options, review, Sidecar, WebhookError};
use crate::config::WebhookArgs;
use crate::security::tls::TlsServer;

const MAX_HEADER: usize = 16 * 1024;
/// The API server's own limit on an object is 3 MiB (etcd's request size); a review carries
/// the object once (twice for an update, which this webhook is not registered for).
const MAX_BODY: usize = 8 * 1024 * 1024;

/// The serving certificate, rebuilt when its files change (cert-manager renews it in place;
/// a Secret volume's update is an atomic rename, so a changed modification time means both
/// files are new).
struct Certificate {
    args: WebhookArgs,
    current: Mutex<(Option<SystemTime>, Arc<TlsServer>)>,
}

impl Certificate {
    fn load(args: WebhookArgs) -> Result<Certificate, WebhookError> {
        let server = TlsServer::new(&args.tls_cert_file, &args.tls_key_file, None)?;
        let stamp = stamp(&args.tls_cert_file, &args.tls_key_file);
        Ok(Certificate {
            args,
            current: Mutex::new((stamp, Arc::new(server))),
        })
    }

    fn acceptor(&self) -> Arc<TlsServer> {
        let mut cur = self.current.lock().expect("certificate lock");
        let now = stamp(&self.args.tls_cert_file, &self.args.tls_key_file);
        if now.is_some() && now != cur.0 {
            match TlsServer::new(&self.args.tls_cert_file, &self.args.tls_key_file, None) {
                Ok(s) => {
                    info!("serving certificate reloaded");
                    *cur = (now, Arc::new(s));
                }
                // Mid-rotation or broken: keep serving the certificate that works.
                Err(e) => warn!(error = %e, "cannot reload the serving certificate"),
            }
        }
        cur.1.clone()
    }
}

fn stamp(cert: &Path, key: &Path) -> Option<SystemTime> {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some(m(cert)?.max(m(key)?))
}

pub async fn run(args: WebhookArgs, sidecar: Sidecar) -> Result<(), WebhookError> {
    let addr: SocketAddr = args
        .listen
        .parse()
        .map_err(|_| WebhookError::Listen(args.listen.clone()))?;
    let cert = Arc::new(Certificate::load(args)?);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| WebhookError::Bind { addr, source })?;
    let addr = listener.local_addr().unwrap_or(addr);
    let ctx = Arc::new((sidecar, annotation_options()));
    info!(%addr, "fairlead sidecar injector: POST /mutate");
    let stop = stop_signal();
    tokio::pin!(stop);
    loop {
        let (tcp, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(x) => x,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stop => {
                info!("stopping");
                return Ok(());
            }
        };
        let (cert, ctx) = (cert.clone(), ctx.clone());
        tokio::spawn(async move {
            let work = async {
                let tls = cert.acceptor().accept(tcp).await?;
                handle(tls, &ctx.0, &ctx.1).await
            };
            match tokio::time::timeout(Duration::from_secs(30), work).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => debug!(%peer, error = %e, "webhook connection failed"),
                Err(_) => debug!(%peer, "webhook request timed out"),
            }
        });
    }
}

async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Reads one request, answers it, closes.
async fn handle<S: AsyncRead + AsyncWrite + Unpin>(
    mut sock: S,
    sidecar: &Sidecar,
    options: &BTreeMap<String, String>,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEADER {
            return respond(&mut sock, 431, "text/plain", b"request header too large\n").await;
        }
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split_whitespace();
    let (method, target) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let header = |name: &str| {
        head.split("\r\n").skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    match (method, path) {
        ("GET", "/livez" | "/readyz" | "/healthz") => {
            respond(&mut sock, 200, "text/plain", b"ok\n").await
        }
        ("POST", "/mutate") => {
            if header("transfer-encoding").is_some() {
                return respond(&mut sock, 411, "text/plain", b"Content-Length required\n").await;
            }
            let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) else {
                return respond(&mut sock, 411, "text/plain", b"Content-Length required\n").await;
            };
            if len > MAX_BODY {
                return respond(&mut sock, 413, "text/plain", b"AdmissionReview too large\n").await;
            }
            let mut body = buf[head_end..].to_vec();
            while body.len() < len {
                let n = sock.read(&mut chunk).await?;
                if n == 0 {
                    return Ok(());
                }
                body.extend_from_slice(&chunk[..n]);
            }
            body.truncate(len);
            let answer = review(&body, sidecar, options);
            log(&body, &answer);
            let out = serde_json::to_vec(&answer).expect("a JSON value serializes");
            respond(&mut sock, 200, "application/json", &out).await
        }
        ("GET" | "POST", _) => {
            respond(
                &mut sock,
                404,
                "text/plain",
                b"not found: POST /mutate, GET /livez\n",
            )
            .await
        }
        _ => respond(&mut sock, 405, "text/plain", b"only GET and POST\n").await,
    }
}

fn log(body: &[u8], answer: &serde_json::Value) {
    let r = &answer["response"];
    if r["allowed"] == false {
        warn!(uid = %r["uid"], reason = %r["status"]["message"], "refused");
    } else if r["patch"].is_string() {
        let req: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let meta = &req["request"]["object"]["metadata"];
        let name = meta["name"]
            .as_str()
            .or(meta["generateName"].as_str())
            .unwrap_or("");
        info!(namespace = %req["request"]["namespace"].as_str().unwrap_or(""), pod = name, "injected");
    }
}

async fn respond<S: AsyncWrite + Unpin>(
    sock: &mut S,
    code: u16,
    ctype: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let status = match code {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Payload Too Large",
        _ => "Request Header Fields Too Large",
    };
    let head = format!(
        "HTTP/1.1 {code} {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    sock.write_all(head.as_bytes()).await?;
    sock.write_all(body).await?;
    sock.shutdown().await
}
