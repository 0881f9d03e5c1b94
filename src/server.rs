//! Start-up, the background refresh, and graceful shutdown.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tracing::{debug, info, warn};

use crate::admin::{self, Readiness};
use crate::cluster::Cluster;
use crate::config::Config;
use crate::leadership::refresh::{RefreshError, Trigger};
use crate::leadership::scope::now_ms;
use crate::listener;
use crate::ports::{self, Ports};
use crate::router::Router;
use crate::security::reload::{
    ClientSecretFile, PasswordFile, Reloadable, Reloader, UpstreamTlsFiles,
};
use crate::security::tls::{TlsClient, TlsClientSettings, TlsServer};
use crate::security::{Login, UpstreamSecurity};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot reach the Kafka cluster at {bootstrap} within {waited:?}: {last}")]
    ClusterUnreachable {
        bootstrap: String,
        waited: Duration,
        last: String,
    },
    #[error("TLS/SASL settings: {0}")]
    Security(String),
    #[error("the cluster refused fairlead: {0}")]
    Refused(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running fairlead.
pub struct Server {
    pub cluster: Arc<Cluster>,
    pub router: Arc<Router>,
    pub bootstrap_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    connections: Arc<Semaphore>,
    reloader: Arc<Reloader>,
}

impl Server {
    /// Loads metadata from the cluster (retrying up to `startup_timeout`), binds the bootstrap
    /// port, a port per broker and the admin port, and starts serving.
    pub async fn start(cfg: Config) -> Result<Server, StartError> {
        let metrics = admin::install_metrics();
        let readiness = Arc::new(Readiness::default());
        let (shutdown, shutdown_rx) = watch::channel(false);

        // Admin first, so /healthz answers and /readyz says why it is not ready yet.
        let (admin_listener, admin_addr) = bind_admin(cfg.admin).await?;

        crate::metrics::enable_topic_labels(cfg.topic_labels);
        let security = Arc::new(upstream_security(&cfg)?);
        let listener_tls = listener_tls(&cfg)?;
        for w in &cfg.warnings {
            warn!("{w}");
        }
        if let Some(Login::OAuthBearer(tokens)) = &security.sasl {
            tokio::spawn(tokens.clone().run_refresh(shutdown_rx.clone()));
        }
        let reloader = Arc::new(reloader(&cfg, &security, listener_tls.as_ref()));
        let _ = security.reloader.set(Arc::downgrade(&reloader));
        tokio::spawn(reloader.clone().run(shutdown_rx.clone()));
        // Ports bind sockets as brokers become known; the accept loops take them from here.
        let (bound_tx, bound_rx) = tokio::sync::mpsc::unbounded_channel();
        let ports = Ports::new(cfg.listen, cfg.node_port_base, bound_tx);
        let cluster = Cluster::new(cfg, ports, security);
        tokio::spawn(admin::serve(
            admin_listener,
            cluster.clone(),
            readiness.clone(),
            metrics,
            shutdown_rx.clone(),
        ));
        info!(addr = %admin_addr, "admin endpoint: /metrics /healthz /readyz /leadership");

        load_metadata(&cluster).await?;

        let bootstrap_addr = cluster
            .ports
            .bind_bootstrap()
            .map_err(|source| StartError::Bind {
                addr: cluster.cfg.listen,
                source,
            })?;
        for id in cluster.leadership.brokers().keys() {
            cluster.ports.ensure_node(*id);
        }
        raise_fd_limit(cluster.cfg.max_connections, cluster.cfg.max_connections_set);
        let connections = Arc::new(Semaphore::new(cluster.cfg.max_connections));
        let router = Router::new(cluster.clone());
        tokio::spawn(listener::run(
            router.clone(),
            bound_rx,
            connections.clone(),
            listener_tls,
            shutdown_rx.clone(),
        ));
        tokio::spawn(periodic_refresh(cluster.clone(), shutdown_rx.clone()));
        tokio::spawn(close_incidents(cluster.clone(), shutdown_rx.clone()));
        tokio::spawn(retry_broker_ports(cluster.clone(), shutdown_rx));
        readiness.listeners_bound.store(true, Ordering::Release);
        match cluster.ports.unbound_report() {
            None => {
                info!(bootstrap = %bootstrap_addr, brokers = cluster.leadership.brokers().len(), "fairlead ready")
            }
            Some(why) => {
                warn!(bootstrap = %bootstrap_addr, brokers = cluster.leadership.brokers().len(), "fairlead serving, not ready: {why}")
            }
        }
        Ok(Server {
            cluster,
            router,
            bootstrap_addr,
            admin_addr,
            shutdown,
            connections,
            reloader,
        })
    }

    /// Reads every certificate, key and secret file again now (SIGHUP).
    pub fn reload(&self) {
        if self.reloader.is_empty() {
            info!("SIGHUP: no certificate, key or secret files to reload");
        }
        self.reloader.hangup();
    }

    /// Stops accepting, lets connections answer what they have in flight (bounded by
    /// `drain_timeout`), then returns.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let max = self.cluster.cfg.max_connections as u32;
        let drained = tokio::time::timeout(
            self.cluster.cfg.drain_timeout + Duration::from_millis(500),
            self.connections.acquire_many(max),
        )
        .await;
        match drained {
            Ok(_) => info!("all client connections drained"),
            Err(_) => warn!(
                open = max as usize - self.connections.available_permits(),
                "drain time over; exiting with connections open"
            ),
        }
    }
}

/// The first Metadata, retried with backoff up to `startup_timeout` (TLS or SASL refusals stop
/// at once: waiting will not change the cluster's mind).
async fn load_metadata(cluster: &Cluster) -> Result<(), StartError> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(200);
    loop {
        let e = match cluster
            .refresh(cluster.leadership.generation(), Trigger::Startup)
            .await
        {
            Ok(_) => return Ok(()),
            Err(RefreshError::NoBroker {
                last,
                refused: true,
                ..
            }) => return Err(StartError::Refused(last)),
            Err(e) => e,
        };
        if started.elapsed() >= cluster.cfg.startup_timeout {
            return Err(StartError::ClusterUnreachable {
                bootstrap: cluster.cfg.bootstrap.join(","),
                waited: started.elapsed(),
                last: e.to_string(),
            });
        }
        warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "cluster not reachable yet");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// Each client connection holds two file descriptors (the client's socket and its broker
/// connection): raise the soft limit to the hard one, and say if max_connections cannot fit:
/// a warning when the operator set max_connections, a plain line when it is the default (the
/// default must not make every start on a small-limit host look like a misconfiguration).
fn raise_fd_limit(max_connections: usize, max_connections_set: bool) {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            let fits = (limit.saturating_sub(64) / 2) as usize;
            if fits < max_connections && max_connections_set {
                warn!(nofile = limit, max_connections, fits, "the open-file limit allows fewer client connections than max_connections (each uses two descriptors)");
            } else if fits < max_connections {
                info!(nofile = limit, fits, "open-file limit (each client connection uses two descriptors; fewer than the default max_connections fit)");
            } else {
                info!(nofile = limit, "open-file limit");
            }
        }
        Err(e) => warn!(error = %e, "cannot read or raise the open-file limit"),
    }
}

fn upstream_security(cfg: &Config) -> Result<UpstreamSecurity, StartError> {
    let tls = match &cfg.upstream_tls {
        None => None,
        Some(t) => Some(
            TlsClient::new(TlsClientSettings {
                ca_file: t.ca_file.clone(),
                cert_file: t.cert_file.clone(),
                key_file: t.key_file.clone(),
                server_name: t.server_name.clone(),
                insecure_skip_verify: t.insecure_skip_verify,
            })
            .map_err(|e| StartError::Security(e.to_string()))?,
        ),
    };
    let sasl = match &cfg.sasl {
        None => None,
        Some(s) => Some(Login::new(s).map_err(|e| StartError::Security(e.to_string()))?),
    };
    Ok(UpstreamSecurity {
        tls,
        sasl,
        sasl_mode: cfg.sasl_mode,
        reloader: Default::default(),
    })
}

/// Everything read from files that can change while fairlead runs.
fn reloader(
    cfg: &Config,
    security: &Arc<UpstreamSecurity>,
    listener_tls: Option<&Arc<TlsServer>>,
) -> Reloader {
    let mut items: Vec<Arc<dyn Reloadable>> = vec![
        Arc::new(UpstreamTlsFiles(security.clone())),
        Arc::new(PasswordFile(security.clone())),
    ];
    if let Some(Login::OAuthBearer(tokens)) = &security.sasl {
        items.push(Arc::new(ClientSecretFile(tokens.clone())));
    }
    if let Some(l) = listener_tls {
        items.push(l.clone());
    }
    Reloader::new(items, cfg.reload_interval)
}

async fn periodic_refresh(cluster: Arc<Cluster>, mut shutdown: watch::Receiver<bool>) {
    let every = cluster.cfg.metadata_max_age;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        let forgotten = cluster.leadership.forget_unused(now_ms());
        if forgotten > 0 {
            debug!(topics = forgotten, "forgot topics no client used");
        }
        // Only if nothing refreshed in the meantime.
        if cluster
            .leadership
            .last_metadata()
            .is_some_and(|t| t.elapsed() < every / 2)
        {
            continue;
        }
        if let Err(e) = cluster
            .refresh(cluster.leadership.generation(), Trigger::Periodic)
            .await
        {
            warn!(error = %e, "periodic metadata refresh failed");
        }
    }
}

/// Broker ports that could not be bound, tried again as their back-off runs out (see `ports`),
/// for as long as their broker is in the cluster.
async fn retry_broker_ports(cluster: Arc<Cluster>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let brokers = cluster.leadership.brokers();
        let next = cluster
            .ports
            .retry_due(Instant::now(), |n| brokers.contains_key(&n));
        drop(brokers);
        // At least every MAX_RETRY: a broker that left while its port was unbound (or mapped
        // to no port) must leave /readyz's list too.
        let at = next.unwrap_or_else(|| Instant::now() + ports::MAX_RETRY);
        let sleep = tokio::time::sleep_until(at.into());
        tokio::select! {
            _ = sleep => {}
            _ = cluster.ports.failed() => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn close_incidents(cluster: Arc<Cluster>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
        cluster.incidents.sweep();
    }
}

/// The admin endpoint's socket and the address it got (port 0 picks one).
async fn bind_admin(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), StartError> {
    let bind = |source| StartError::Bind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(bind)?;
    let local = listener.local_addr().map_err(bind)?;
    Ok((listener, local))
}

/// TLS for client connections, when configured.
fn listener_tls(cfg: &Config) -> Result<Option<Arc<TlsServer>>, StartError> {
    let Some(t) = &cfg.listener_tls else {
        return Ok(None);
    };
    TlsServer::new(&t.cert_file, &t.key_file, t.client_ca_file.as_deref())
        .map(|tls| Some(Arc::new(tls)))
        .map_err(|e| StartError::Security(e.to_string()))
}
