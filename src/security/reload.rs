//! Certificates, keys and secrets read again when their files change, and on SIGHUP, without a
//! restart: established connections keep what they were made with, new ones use the new
//! material. A new file that does not make valid material (unparsable, empty, a key that does not
//! match its certificate) is refused with a log line naming the files and the reason, and the
//! old material stays in use.
//!
//! Changes are found by polling: every `reload_interval` each watched path is read (through
//! any symlinks) and its content hashed. Kubernetes secret volumes and cert-manager replace
//! files by swapping a `..data` symlink to a new directory, which inotify-based watchers miss
//! or see as a deletion of what they watched (the watch sits on the old inode); re-reading the
//! paths sees the new content whatever the mechanism (symlink swap, rename, rewrite in place),
//! costs a few small reads a second, and needs no dependency. A pair written non-atomically
//! (certificate, then key) is refused while half-written and taken once both are in.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::{watch, Notify};
use tracing::{error, info};

use super::oauth::TokenSource;
use super::sasl::Secret;
use super::tls::{TlsClient, TlsServer};
use super::Login;
use crate::metrics::{self, Material, ReloadOutcome};

/// Something rebuilt from files.
pub trait Reloadable: Send + Sync {
    fn material(&self) -> Material;
    fn files(&self) -> Vec<PathBuf>;
    /// Reads the files, checks them and installs what they hold; on error nothing changes.
    fn reload(&self) -> Result<(), String>;
}

/// The TLS client of fairlead's broker connections (inside the shared security settings).
pub struct UpstreamTlsFiles(pub Arc<super::UpstreamSecurity>);

impl Reloadable for UpstreamTlsFiles {
    fn material(&self) -> Material {
        Material::UpstreamTls
    }
    fn files(&self) -> Vec<PathBuf> {
        self.0
            .tls
            .as_ref()
            .map(TlsClient::files)
            .unwrap_or_default()
    }
    fn reload(&self) -> Result<(), String> {
        match &self.0.tls {
            Some(t) => t.reload().map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }
}

impl Reloadable for TlsServer {
    fn material(&self) -> Material {
        Material::ListenerTls
    }
    fn files(&self) -> Vec<PathBuf> {
        TlsServer::files(self)
    }
    fn reload(&self) -> Result<(), String> {
        TlsServer::reload(self).map_err(|e| e.to_string())
    }
}

/// A SASL password from `sasl_password_file`.
pub struct PasswordFile(pub Arc<super::UpstreamSecurity>);

impl Reloadable for PasswordFile {
    fn material(&self) -> Material {
        Material::SaslPassword
    }
    fn files(&self) -> Vec<PathBuf> {
        match &self.0.sasl {
            Some(Login::Password {
                password_file: Some(f),
                ..
            }) => vec![f.clone()],
            _ => vec![],
        }
    }
    fn reload(&self) -> Result<(), String> {
        let Some(Login::Password {
            password,
            password_file: Some(f),
            ..
        }) = &self.0.sasl
        else {
            return Ok(());
        };
        *password.write().unwrap() = read_secret(f)?;
        Ok(())
    }
}

/// An OAuth client secret from `sasl_oauthbearer_client_secret_file`.
pub struct ClientSecretFile(pub Arc<TokenSource>);

impl Reloadable for ClientSecretFile {
    fn material(&self) -> Material {
        Material::OAuthClientSecret
    }
    fn files(&self) -> Vec<PathBuf> {
        self.0
            .secret_file()
            .map(PathBuf::from)
            .into_iter()
            .collect()
    }
    fn reload(&self) -> Result<(), String> {
        if let Some(f) = self.0.secret_file() {
            self.0.set_secret(read_secret(f)?);
        }
        Ok(())
    }
}

/// A secret file's content: one line (a final newline is not part of it), never empty.
pub fn read_secret(path: &std::path::Path) -> Result<Secret, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let s = text.trim_end_matches(['\r', '\n']);
    if s.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(Secret::new(s.to_string()))
}

struct Watched {
    item: Arc<dyn Reloadable>,
    /// The content of the files the current material was built from.
    applied: Fingerprint,
    /// Content already refused: not tried (nor logged) again until it changes, or on SIGHUP.
    refused: Option<Fingerprint>,
}

type Fingerprint = [u8; 32];

/// A hash of the files' contents, as seen through any symlinks (a file that cannot be read
/// counts as its error).
fn fingerprint(files: &[PathBuf]) -> Fingerprint {
    let mut h = Sha256::new();
    for f in files {
        h.update(f.as_os_str().as_encoded_bytes());
        match std::fs::read(f) {
            Ok(bytes) => {
                h.update([1]);
                h.update((bytes.len() as u64).to_be_bytes());
                h.update(&bytes);
            }
            Err(e) => {
                h.update([0]);
                h.update(e.kind().to_string().as_bytes());
            }
        }
    }
    h.finalize().into()
}

/// Watches every reloadable material; [`Reloader::run`] polls, [`Reloader::reload_all`]
/// (SIGHUP) rebuilds everything now.
pub struct Reloader {
    watched: std::sync::Mutex<Vec<Watched>>,
    interval: Option<Duration>,
    hup: Notify,
}

impl Reloader {
    /// `interval` None: no polling, SIGHUP only.
    pub fn new(items: Vec<Arc<dyn Reloadable>>, interval: Option<Duration>) -> Reloader {
        let watched = items
            .into_iter()
            .filter(|i| !i.files().is_empty())
            .map(|item| Watched {
                applied: fingerprint(&item.files()),
                item,
                refused: None,
            })
            .collect();
        Reloader {
            watched: std::sync::Mutex::new(watched),
            interval,
            hup: Notify::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.watched.lock().unwrap().is_empty()
    }

    /// Asks the running [`Reloader::run`] to rebuild everything now (SIGHUP).
    pub fn hangup(&self) {
        self.hup.notify_one();
    }

    /// Rebuilds the materials whose files changed since they were last built (or refused).
    pub fn check(&self) -> Vec<(Material, ReloadOutcome)> {
        self.pass(false)
    }

    /// Rebuilds every material from its files, changed or not (SIGHUP).
    pub fn reload_all(&self) -> Vec<(Material, ReloadOutcome)> {
        self.pass(true)
    }

    fn pass(&self, all: bool) -> Vec<(Material, ReloadOutcome)> {
        let mut done = Vec::new();
        for w in self.watched.lock().unwrap().iter_mut() {
            let files = w.item.files();
            let now = fingerprint(&files);
            if !all && (now == w.applied || w.refused == Some(now)) {
                continue;
            }
            let material = w.item.material();
            let names = files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", ");
            let outcome = match w.item.reload() {
                Ok(()) => {
                    w.applied = now;
                    w.refused = None;
                    info!(material = material.label(), files = %names, "reloaded from its files: new connections use it");
                    ReloadOutcome::Ok
                }
                Err(reason) => {
                    w.refused = Some(now);
                    error!(material = material.label(), files = %names, %reason, "refused the new files: keeping the material in use");
                    ReloadOutcome::Failed
                }
            };
            metrics::reloaded(material, outcome);
            done.push((material, outcome));
        }
        done
    }

    /// Polls every interval and rebuilds on SIGHUP, until shutdown.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let poll = self.interval.unwrap_or(Duration::MAX);
        loop {
            let hup = tokio::select! {
                _ = tokio::time::sleep(poll) => false,
                _ = self.hup.notified() => true,
                _ = shutdown.changed() => return,
            };
            // File reads are small but blocking: off the runtime's thread.
            let me = self.clone();
            let _ =
                tokio::task::spawn_blocking(move || if hup { me.reload_all() } else { me.check() })
                    .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::path::Path;
    use std::sync::Mutex;

    /// A secret volume as the kubelet lays it out: `name -> ..data/name`, `..data -> ..<ts>`;
    /// an update writes a new timestamped directory and renames a new `..data` link over the
    /// old one.
    struct Volume {
        dir: PathBuf,
        n: u32,
    }

    impl Volume {
        fn new(name: &str, files: &[(&str, &[u8])]) -> Volume {
            let dir =
                std::env::temp_dir().join(format!("fairlead-reload-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let mut v = Volume { dir, n: 0 };
            v.update(files);
            for (f, _) in files {
                symlink(format!("..data/{f}"), v.dir.join(f)).unwrap();
            }
            v
        }

        fn update(&mut self, files: &[(&str, &[u8])]) {
            self.n += 1;
            let ts = format!("..2026_01_01_00_00_{:02}.{}", self.n, self.n);
            std::fs::create_dir(self.dir.join(&ts)).unwrap();
            for (f, content) in files {
                std::fs::write(self.dir.join(&ts).join(f), content).unwrap();
            }
            let tmp = self.dir.join("..data_tmp");
            symlink(&ts, &tmp).unwrap();
            std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
        }

        fn path(&self, f: &str) -> PathBuf {
            self.dir.join(f)
        }
    }

    /// A material that is the text of one file, refused when it says "bad".
    struct Text {
        file: PathBuf,
        current: Mutex<String>,
    }

    impl Reloadable for Text {
        fn material(&self) -> Material {
            Material::SaslPassword
        }
        fn files(&self) -> Vec<PathBuf> {
            vec![self.file.clone()]
        }
        fn reload(&self) -> Result<(), String> {
            let t = std::fs::read_to_string(&self.file).map_err(|e| e.to_string())?;
            if t.contains("bad") {
                return Err("it says bad".into());
            }
            *self.current.lock().unwrap() = t;
            Ok(())
        }
    }

    #[test]
    fn a_symlink_swap_is_seen_and_a_bad_file_keeps_the_old_material() {
        let mut v = Volume::new("text", &[("password", b"one")]);
        let t = Arc::new(Text {
            file: v.path("password"),
            current: Mutex::new("one".into()),
        });
        let r = Reloader::new(vec![t.clone()], None);
        assert!(r.check().is_empty(), "nothing changed");
        v.update(&[("password", b"two")]);
        assert_eq!(r.check(), vec![(Material::SaslPassword, ReloadOutcome::Ok)]);
        assert_eq!(*t.current.lock().unwrap(), "two");
        v.update(&[("password", b"bad")]);
        assert_eq!(
            r.check(),
            vec![(Material::SaslPassword, ReloadOutcome::Failed)]
        );
        assert_eq!(*t.current.lock().unwrap(), "two", "the old material stays");
        assert!(
            r.check().is_empty(),
            "a refused file is not retried until it changes"
        );
        // SIGHUP tries everything again, refused or not.
        assert_eq!(
            r.reload_all(),
            vec![(Material::SaslPassword, ReloadOutcome::Failed)]
        );
        v.update(&[("password", b"three")]);
        assert_eq!(r.check(), vec![(Material::SaslPassword, ReloadOutcome::Ok)]);
        assert_eq!(*t.current.lock().unwrap(), "three");
        // A file that disappears is a change that cannot be read: refused, old kept.
        std::fs::remove_file(v.path("password")).unwrap();
        assert_eq!(
            r.check(),
            vec![(Material::SaslPassword, ReloadOutcome::Failed)]
        );
        assert_eq!(*t.current.lock().unwrap(), "three");
    }

    /// Writes log lines into a shared buffer.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_refusal_is_logged_with_the_files_and_the_reason() {
        let mut v = Volume::new("log", &[("password", b"one")]);
        let t = Arc::new(Text {
            file: v.path("password"),
            current: Mutex::new("one".into()),
        });
        let r = Reloader::new(vec![t], None);
        v.update(&[("password", b"bad")]);
        let log = Captured::default();
        let sink = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || r.check());
        let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
        assert!(
            text.contains("ERROR")
                && text.contains("refused the new files: keeping the material in use")
                && text.contains("material=\"sasl_password\"")
                && text.contains(&v.path("password").display().to_string())
                && text.contains("it says bad"),
            "{text}"
        );
    }

    #[test]
    fn secret_files_lose_their_final_newline_and_may_not_be_empty() {
        let v = Volume::new("secret", &[("a", b"s3cret\n"), ("b", b"\n")]);
        assert_eq!(read_secret(&v.path("a")).unwrap().expose(), "s3cret");
        let e = read_secret(&v.path("b")).unwrap_err();
        assert!(e.contains("is empty"), "{e}");
        assert!(read_secret(Path::new("/nonexistent/x")).is_err());
    }

    /// SIGHUP: the running reloader rebuilds at once, with no polling at all.
    #[tokio::test]
    async fn a_hangup_reloads_without_polling() {
        let mut v = Volume::new("hup", &[("password", b"one")]);
        let t = Arc::new(Text {
            file: v.path("password"),
            current: Mutex::new("one".into()),
        });
        let r = Arc::new(Reloader::new(vec![t.clone()], None));
        let (_stop, stop_rx) = watch::channel(false);
        tokio::spawn(r.clone().run(stop_rx));
        v.update(&[("password", b"two")]);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            *t.current.lock().unwrap(),
            "one",
            "no polling: not seen yet"
        );
        r.hangup();
        for _ in 0..100 {
            if *t.current.lock().unwrap() == "two" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("SIGHUP did not reload");
    }

    /// Polling sees a change within its interval.
    #[tokio::test]
    async fn polling_finds_a_change() {
        let mut v = Volume::new("poll", &[("password", b"one")]);
        let t = Arc::new(Text {
            file: v.path("password"),
            current: Mutex::new("one".into()),
        });
        let r = Arc::new(Reloader::new(
            vec![t.clone()],
            Some(Duration::from_millis(50)),
        ));
        let (_stop, stop_rx) = watch::channel(false);
        tokio::spawn(r.clone().run(stop_rx));
        v.update(&[("password", b"two")]);
        for _ in 0..100 {
            if *t.current.lock().unwrap() == "two" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("polling did not reload");
    }
}
