//! The one HTTP request fairlead makes: a form POST to an OAuth token endpoint (http or https).
//!
//! Hand-written HTTP/1.1 over tokio and rustls (both already here for the Kafka side), rather
//! than hyper and its helpers: one request shape, `Connection: close`, a response read to its
//! end and bounded in size. It understands exactly what a token endpoint may answer with:
//! `Content-Length`, `Transfer-Encoding: chunked`, or a body ended by the close.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// A token endpoint's answer is a small JSON object: anything larger is refused.
const MAX_RESPONSE: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{url:?} is not an http:// or https:// URL with a host ({reason})")]
    Url { url: String, reason: &'static str },
    #[error("cannot reach {host}:{port}: {source}")]
    Connect {
        host: String,
        port: u16,
        source: std::io::Error,
    },
    #[error("TLS with {host} failed: {reason}")]
    Tls { host: String, reason: String },
    #[error("{host} did not answer within {0:?}", .timeout)]
    Timeout { host: String, timeout: Duration },
    #[error("unreadable HTTP response from {host}: {reason}")]
    Response { host: String, reason: String },
}

/// A parsed `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, at least "/".
    pub path: String,
}

impl Url {
    pub fn parse(url: &str) -> Result<Url, HttpError> {
        let bad = |reason| HttpError::Url {
            url: url.to_string(),
            reason,
        };
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(bad("the scheme must be http or https"));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err(bad("credentials in the URL are not supported"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("unclosed [ in host"))?;
            (h, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            Some(p) => p.parse().map_err(|_| bad("the port is not a number"))?,
            None if tls => 443,
            None => 80,
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        Ok(Url {
            tls,
            host: host.to_string(),
            port,
            path,
        })
    }
}

/// How https endpoints are verified: a CA bundle file, else the system's bundle.
#[derive(Clone)]
pub struct HttpsTrust(Arc<rustls::ClientConfig>);

impl HttpsTrust {
    /// `ca_file`, or else the first system bundle found (SSL_CERT_FILE, then Debian/Alpine,
    /// RHEL/Fedora, openSUSE paths): what OpenSSL-based tools on the same host would trust.
    pub fn new(ca_file: Option<&Path>) -> Result<HttpsTrust, super::tls::TlsError> {
        let path: PathBuf = match ca_file {
            Some(p) => p.to_path_buf(),
            None => system_bundle().ok_or_else(|| {
                super::tls::TlsError::Config(
                    "no system CA bundle found for the https token endpoint: set sasl_oauthbearer_ca_file"
                        .into(),
                )
            })?,
        };
        Ok(HttpsTrust(Arc::new(super::tls::client_config_for_ca(
            &path,
        )?)))
    }
}

fn system_bundle() -> Option<PathBuf> {
    let env = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    env.into_iter()
        .chain(
            [
                "/etc/ssl/certs/ca-certificates.crt",
                "/etc/pki/tls/certs/ca-bundle.crt",
                "/etc/ssl/ca-bundle.pem",
                "/etc/ssl/cert.pem",
            ]
            .map(PathBuf::from),
        )
        .find(|p| p.is_file())
}

/// The status and body of a response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// POSTs `body` (`application/x-www-form-urlencoded`) with the given extra headers, within
/// `timeout` for the whole exchange.
pub async fn post_form(
    url: &Url,
    headers: &[(&str, &str)],
    body: &str,
    trust: Option<&HttpsTrust>,
    timeout: Duration,
) -> Result<Response, HttpError> {
    let host = url.host.clone();
    match tokio::time::timeout(timeout, exchange(url, headers, body, trust)).await {
        Ok(r) => r,
        Err(_) => Err(HttpError::Timeout { host, timeout }),
    }
}

async fn exchange(
    url: &Url,
    headers: &[(&str, &str)],
    body: &str,
    trust: Option<&HttpsTrust>,
) -> Result<Response, HttpError> {
    let tcp = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|source| HttpError::Connect {
            host: url.host.clone(),
            port: url.port,
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    let request = request_bytes(url, headers, body);
    if !url.tls {
        return send(tcp, &request, &url.host).await;
    }
    let tls_err = |reason: String| HttpError::Tls {
        host: url.host.clone(),
        reason,
    };
    let trust = trust.ok_or_else(|| tls_err("no CA bundle to verify it with".into()))?;
    let name = ServerName::try_from(url.host.clone())
        .map_err(|_| tls_err("not a valid TLS server name".into()))?;
    let stream = tokio_rustls::TlsConnector::from(trust.0.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| tls_err(e.to_string()))?;
    send(stream, &request, &url.host).await
}

fn request_bytes(url: &Url, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let host = if url.host.contains(':') {
        format!("[{}]", url.host)
    } else {
        url.host.clone()
    };
    let mut r = format!(
        "POST {} HTTP/1.1\r\nHost: {host}:{}\r\nContent-Type: application/x-www-form-urlencoded\r\nAccept: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        url.path,
        url.port,
        body.len()
    );
    for (k, v) in headers {
        r.push_str(k);
        r.push_str(": ");
        r.push_str(v);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r.push_str(body);
    r.into_bytes()
}

async fn send<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    request: &[u8],
    host: &str,
) -> Result<Response, HttpError> {
    let bad = |reason: String| HttpError::Response {
        host: host.to_string(),
        reason,
    };
    s.write_all(request)
        .await
        .map_err(|e| bad(format!("sending the request: {e}")))?;
    s.flush().await.map_err(|e| bad(e.to_string()))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            // Servers often close TLS without close_notify once the body is complete.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => break,
            Err(e) => return Err(bad(e.to_string())),
        }
        if raw.len() > MAX_RESPONSE {
            return Err(bad(format!("longer than {MAX_RESPONSE} bytes")));
        }
        // Stop as soon as a length-delimited body is complete (some servers keep the
        // connection open despite `Connection: close`).
        if let Ok(Some(r)) = parse(&raw) {
            return Ok(r);
        }
    }
    match parse(&raw) {
        Ok(Some(r)) => Ok(r),
        Ok(None) => parse_until_close(&raw).map_err(bad),
        Err(e) => Err(bad(e)),
    }
}

/// A complete response with a known length (Content-Length or chunked), `None` if more is
/// needed or the body runs to the close.
fn parse(raw: &[u8]) -> Result<Option<Response>, String> {
    let Some(head_end) = find(raw, b"\r\n\r\n") else {
        return Ok(None);
    };
    let (status, headers) = head(&raw[..head_end])?;
    let body = &raw[head_end + 4..];
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    if header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        return Ok(dechunk(body)?.map(|body| Response { status, body }));
    }
    if let Some(len) = header("content-length") {
        let len: usize = len
            .trim()
            .parse()
            .map_err(|_| format!("bad Content-Length {len:?}"))?;
        return Ok((body.len() >= len).then(|| Response {
            status,
            body: body[..len].to_vec(),
        }));
    }
    Ok(None)
}

fn parse_until_close(raw: &[u8]) -> Result<Response, String> {
    let head_end =
        find(raw, b"\r\n\r\n").ok_or("the connection closed before the headers ended")?;
    let (status, _) = head(&raw[..head_end])?;
    Ok(Response {
        status,
        body: raw[head_end + 4..].to_vec(),
    })
}

fn head(head: &[u8]) -> Result<(u16, Vec<(String, String)>), String> {
    let text = std::str::from_utf8(head).map_err(|_| "headers are not UTF-8".to_string())?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (version, code) = (parts.next(), parts.next());
    if !version.is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Err(format!("not an HTTP/1.x status line: {status_line:?}"));
    }
    let status = code
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok((status, headers))
}

/// A chunked body, `None` until its last chunk is in.
fn dechunk(mut b: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = find(b, b"\r\n") else {
            return Ok(None);
        };
        let size_text = std::str::from_utf8(&b[..eol]).map_err(|_| "bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(Some(out));
        }
        if b.len() < size + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `application/x-www-form-urlencoded` encoding of one value (RFC 6749 appendix B: also how
/// client ids and secrets are encoded before HTTP Basic authentication).
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let u = Url::parse("https://auth.example.com/oauth2/token").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.path.as_str()),
            (true, "auth.example.com", 443, "/oauth2/token")
        );
        let u = Url::parse("http://127.0.0.1:4444").unwrap();
        assert_eq!((u.tls, u.port, u.path.as_str()), (false, 4444, "/"));
        let u = Url::parse("http://[::1]:8080/t?x=1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("::1", 8080, "/t?x=1")
        );
        for bad in [
            "ftp://x/",
            "http://",
            "http://:80/",
            "https://u:p@h/",
            "http://h:x/",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn responses_of_every_framing_parse() {
        let cl = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        let r = parse(cl).unwrap().unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"{}"[..]));
        assert!(
            parse(&cl[..cl.len() - 1]).unwrap().is_none(),
            "body incomplete"
        );
        let chunked =
            b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n3;x=y\r\n\":1\r\n1\r\n}\r\n0\r\n\r\n";
        let r = parse(chunked).unwrap().unwrap();
        assert_eq!((r.status, r.body.as_slice()), (400, &b"{\"a\":1}"[..]));
        assert!(parse(&chunked[..30]).unwrap().is_none());
        let to_close = b"HTTP/1.0 200 OK\r\nX: y\r\n\r\n{\"k\":2}";
        assert!(parse(to_close).unwrap().is_none());
        let r = parse_until_close(to_close).unwrap();
        assert_eq!(r.body, b"{\"k\":2}");
        assert!(parse(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
    }

    #[test]
    fn form_encoding_follows_rfc_6749_appendix_b() {
        assert_eq!(form_encode("a b+c/d:é~"), "a+b%2Bc%2Fd%3A%C3%A9%7E");
        assert_eq!(form_encode("Az09-._*"), "Az09-._*");
    }

    /// A real exchange with a local server that answers in chunks and keeps the connection open.
    #[tokio::test]
    async fn posts_and_reads_the_answer() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let (seen_tx, seen) = tokio::sync::oneshot::channel();
        let server = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            while !got.ends_with(b"grant_type=client_credentials") {
                let n = s.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
            }
            s.write_all(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
            )
            .await
            .unwrap();
            let _ = seen_tx.send(String::from_utf8(got).unwrap());
            // Not closed: the client must stop at the last chunk.
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let url = Url::parse(&format!("http://127.0.0.1:{port}/oauth2/token")).unwrap();
        let r = post_form(
            &url,
            &[("Authorization", "Basic eDp5")],
            "grant_type=client_credentials",
            None,
            Duration::from_secs(2),
        )
        .await
        .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"{}"[..]));
        let seen = seen.await.unwrap();
        assert!(
            seen.starts_with("POST /oauth2/token HTTP/1.1\r\n")
                && seen.contains("\r\nAuthorization: Basic eDp5\r\n")
                && seen.contains("\r\nContent-Length: 29\r\n"),
            "{seen}"
        );
        server.abort();
    }
}
