//! `fairlead webhook`: the Kubernetes sidecar-injection webhook (a mutating admission webhook).
//!
//! The API server sends an AdmissionReview (v1) for every pod created in the namespaces the
//! chart's MutatingWebhookConfiguration selects; a pod annotated `fairlead.io/inject: "true"`
//! is answered with a JSON Patch that adds fairlead as a native sidecar (an init container with
//! `restartPolicy: Always`, Kubernetes 1.29+): started, and probed, before the application,
//! stopped after it. Everything else is answered "allowed, unchanged".
//!
//! * `inject`: the decision and the patch, pure functions of the review and the sidecar;
//! * `serve`: HTTPS (rustls, the serving certificate re-read when it changes), one request per
//!   connection, bounded like the admin endpoint.
//!
//! The sidecar itself (image, resources, probes, options, Secrets) is rendered by the Helm chart
//! (docker/helm/fairlead) into a JSON file; the webhook adds only what a pod's annotations ask
//! for, and never a credential: annotations name a ConfigMap, Secrets come from the chart.

mod inject;
mod serve;

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::CommandFactory;

use crate::config::{Cli, WebhookArgs};

pub use inject::{review, Sidecar};

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("cannot read the sidecar file {path}: {source}")]
    ReadSidecar {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("sidecar file {path}: {message}")]
    Sidecar { path: PathBuf, message: String },
    #[error("invalid --listen {0:?}: IP:PORT, e.g. 0.0.0.0:8443")]
    Listen(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] crate::security::tls::TlsError),
}

/// fairlead's options that a pod may set by annotation (`config.fairlead.io/<option>`), with
/// their environment variables: every option of the CLI but those the sidecar's wiring depends
/// on (its addresses, which the probes and the application's bootstrap use, and the config
/// file, which `fairlead.io/config-map` sets). The SASL password is no CLI option: it can only
/// come from a Secret.
pub fn annotation_options() -> BTreeMap<String, String> {
    const WIRED: [&str; 5] = [
        "listen",
        "advertised_host",
        "node_port_base",
        "admin",
        "config",
    ];
    Cli::command()
        .get_arguments()
        .filter_map(|a| {
            let key = a.get_long()?.replace('-', "_");
            let env = a.get_env()?.to_str()?.to_string();
            (!WIRED.contains(&key.as_str())).then_some((key, env))
        })
        .collect()
}

/// Runs the webhook until SIGTERM/SIGINT.
pub async fn run(args: WebhookArgs) -> Result<(), WebhookError> {
    let text = std::fs::read_to_string(&args.sidecar_file).map_err(|source| {
        WebhookError::ReadSidecar {
            path: args.sidecar_file.clone(),
            source,
        }
    })?;
    let sidecar = Sidecar::from_json(&text).map_err(|message| WebhookError::Sidecar {
        path: args.sidecar_file.clone(),
        message,
    })?;
    serve::run(args, sidecar).await
}
