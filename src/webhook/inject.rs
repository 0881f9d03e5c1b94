//! What the webhook answers: the AdmissionReview response, and for a pod to inject, the JSON
//! Patch (RFC 6902) that adds the sidecar.
//!
//! Annotations a pod may carry (none holds a credential):
//! * `fairlead.io/inject: "true"`: inject (any other value, or none: leave the pod alone);
//! * `fairlead.io/bootstrap: HOST:PORT[,HOST:PORT...]`: the cluster, over the chart's default;
//! * `fairlead.io/bootstrap-env: NAME[,NAME...]`: the application containers' environment
//!   variables that hold their bootstrap servers, set to fairlead's address in the pod;
//! * `fairlead.io/config-map: NAME`: a ConfigMap of the pod's namespace whose `fairlead.toml`
//!   the sidecar reads (`--config`; the chart's values, being environment variables, win);
//! * `config.fairlead.io/<option>: VALUE`: one option (e.g. `absorb_timeout_ms`), over the
//!   chart's value.
//!
//! The webhook marks what it injected with `fairlead.io/status: injected` (and the label
//! `fairlead.io/injected: "true"`, for the chart's PodMonitor); a pod with that mark,
//! or with a container of the sidecar's name, is left as it is (idempotent: the API server may
//! call a webhook twice, `reinvocationPolicy`, and a pod may be re-created from an injected spec).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

pub const INJECT: &str = "fairlead.io/inject";
pub const STATUS: &str = "fairlead.io/status";
pub const BOOTSTRAP: &str = "fairlead.io/bootstrap";
pub const BOOTSTRAP_ENV: &str = "fairlead.io/bootstrap-env";
pub const CONFIG_MAP: &str = "fairlead.io/config-map";
pub const OPTION_PREFIX: &str = "config.fairlead.io/";
/// Label of injected pods, for the chart's PodMonitor (monitors select by label only).
pub const INJECTED_LABEL: &str = "fairlead.io/injected";

/// Where a pod's own ConfigMap (`fairlead.io/config-map`) is mounted in the sidecar.
const POD_CONFIG_DIR: &str = "/etc/fairlead/pod";
const POD_CONFIG_VOLUME: &str = "fairlead-pod-config";

/// The sidecar to inject, as the chart renders it.
#[derive(Debug, Clone)]
pub struct Sidecar {
    /// A Kubernetes Container (name, image, env, probes, resources, securityContext, mounts).
    container: Map<String, Value>,
    /// The volumes its mounts need (Secrets with certificates and the SASL password).
    volumes: Vec<Value>,
    /// What the application's bootstrap variables are set to: fairlead's address in the pod.
    app_bootstrap: String,
}

impl Sidecar {
    /// Reads `{"container": {...}, "volumes": [...], "app_bootstrap": "localhost:9092"}`.
    pub fn from_json(text: &str) -> Result<Sidecar, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let container = v["container"]
            .as_object()
            .filter(|c| c.get("name").and_then(Value::as_str).is_some())
            .ok_or("`container` must be a Kubernetes container with a name")?
            .clone();
        let volumes = match &v["volumes"] {
            Value::Null => Vec::new(),
            Value::Array(a) if a.iter().all(|x| x["name"].is_string()) => a.clone(),
            _ => return Err("`volumes` must be a list of Kubernetes volumes with names".into()),
        };
        let app_bootstrap = v["app_bootstrap"]
            .as_str()
            .filter(|b| valid_bootstrap(b))
            .ok_or("`app_bootstrap` must be HOST:PORT (fairlead's address in the pod)")?
            .to_string();
        Ok(Sidecar {
            container,
            volumes,
            app_bootstrap,
        })
    }

    fn name(&self) -> &str {
        self.container["name"].as_str().unwrap_or("fairlead")
    }
}

/// The AdmissionReview (v1) to answer `body` with. Never fails: a review that cannot be read
/// is answered allowed=false with the reason, so the API server shows it to whoever created
/// the pod (with failurePolicy Ignore it is not enforced, with Fail it is).
pub fn review(body: &[u8], sidecar: &Sidecar, options: &BTreeMap<String, String>) -> Value {
    let request: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return answer("", Err(format!("the body is not JSON: {e}"))),
    };
    let uid = request["request"]["uid"].as_str().unwrap_or("").to_string();
    let outcome = check_review(&request).and_then(|pod| match pod {
        None => Ok(None),
        Some(pod) => patch(pod, sidecar, options),
    });
    answer(&uid, outcome)
}

/// The pod to consider, or None for a request the webhook does not change (not a pod
/// creation).
fn check_review(r: &Value) -> Result<Option<&Value>, String> {
    if r["apiVersion"] != "admission.k8s.io/v1" || r["kind"] != "AdmissionReview" {
        return Err(format!(
            "expected an AdmissionReview of admission.k8s.io/v1, got kind {} of apiVersion {}",
            r["kind"], r["apiVersion"]
        ));
    }
    let req = &r["request"];
    if !req.is_object() {
        return Err("the AdmissionReview has no `request`".into());
    }
    if req["uid"].as_str().is_none_or(str::is_empty) {
        return Err("the AdmissionReview request has no `uid`".into());
    }
    let kind = &req["kind"];
    let is_pod = kind["group"].as_str().unwrap_or("").is_empty() && kind["kind"] == "Pod";
    if !is_pod || req["operation"] != "CREATE" {
        return Ok(None);
    }
    let pod = &req["object"];
    if !pod["spec"]["containers"].is_array() {
        return Err("the Pod in the request has no spec.containers list".into());
    }
    Ok(Some(pod))
}

fn answer(uid: &str, outcome: Result<Option<Vec<Value>>, String>) -> Value {
    let response = match outcome {
        Ok(None) => json!({"uid": uid, "allowed": true}),
        Ok(Some(ops)) => {
            use base64::Engine;
            let patch = serde_json::to_vec(&ops).expect("a JSON value serializes");
            json!({
                "uid": uid,
                "allowed": true,
                "patchType": "JSONPatch",
                "patch": base64::engine::general_purpose::STANDARD.encode(patch),
            })
        }
        Err(message) => json!({
            "uid": uid,
            "allowed": false,
            "status": {"code": 400, "message": format!("fairlead sidecar injector: {message}")},
        }),
    };
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
}

/// The JSON Patch that injects `sidecar` into `pod`, None if the pod is to stay as it is.
pub fn patch(
    pod: &Value,
    sidecar: &Sidecar,
    options: &BTreeMap<String, String>,
) -> Result<Option<Vec<Value>>, String> {
    let annotations = pod["metadata"]["annotations"].as_object();
    let ann = |k: &str| annotations.and_then(|a| a.get(k)).and_then(Value::as_str);
    if ann(INJECT) != Some("true") || ann(STATUS).is_some() {
        return Ok(None);
    }
    let spec = &pod["spec"];
    let named = |list: &str| {
        spec[list]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["name"] == sidecar.name())
    };
    if named("initContainers") || named("containers") {
        return Ok(None);
    }

    let mut container = sidecar.container.clone();
    // What makes it a native sidecar: it runs for the pod's whole life, started before the
    // application containers and stopped after them.
    container.insert("restartPolicy".into(), "Always".into());
    let mut volumes = sidecar.volumes.clone();
    if let Some(b) = ann(BOOTSTRAP) {
        if !valid_bootstrap(b) {
            return Err(format!(
                "annotation {BOOTSTRAP}: {b:?} is not HOST:PORT[,HOST:PORT...]"
            ));
        }
        set_env(&mut container, "FAIRLEAD_BOOTSTRAP", b);
    }
    if let Some(name) = ann(CONFIG_MAP) {
        if !dns_label(name) && !dns_subdomain(name) {
            return Err(format!(
                "annotation {CONFIG_MAP}: {name:?} is not a ConfigMap name"
            ));
        }
        volumes.push(json!({"name": POD_CONFIG_VOLUME, "configMap": {"name": name}}));
        push(
            &mut container,
            "volumeMounts",
            json!({"name": POD_CONFIG_VOLUME, "mountPath": POD_CONFIG_DIR, "readOnly": true}),
        );
        set_env(
            &mut container,
            "FAIRLEAD_CONFIG",
            &format!("{POD_CONFIG_DIR}/fairlead.toml"),
        );
    }
    for (k, v) in annotations.into_iter().flatten() {
        let Some(option) = k.strip_prefix(OPTION_PREFIX) else {
            continue;
        };
        let env = options.get(option).ok_or_else(|| {
            format!(
                "annotation {k}: `{option}` is not an option a pod may set (those are: {}; \
                 credentials only come from Secrets)",
                options.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })?;
        let value = v
            .as_str()
            .ok_or_else(|| format!("annotation {k}: not a string"))?;
        check_option(option, value).map_err(|e| format!("annotation {k}: {e}"))?;
        set_env(&mut container, env, value);
    }

    let taken: Vec<&str> = spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str())
        .collect();
    if let Some(clash) = volumes
        .iter()
        .filter_map(|v| v["name"].as_str())
        .find(|n| taken.contains(n))
    {
        return Err(format!(
            "the pod already has a volume named {clash:?}, which the sidecar needs: rename it"
        ));
    }

    let mut ops = Vec::new();
    if annotations.is_none() {
        ops.push(json!({"op": "add", "path": "/metadata/annotations", "value": {}}));
    }
    ops.push(json!({
        "op": "add",
        "path": format!("/metadata/annotations/{}", pointer_escape(STATUS)),
        "value": "injected",
    }));
    if !pod["metadata"]["labels"].is_object() {
        ops.push(json!({"op": "add", "path": "/metadata/labels", "value": {}}));
    }
    ops.push(json!({
        "op": "add",
        "path": format!("/metadata/labels/{}", pointer_escape(INJECTED_LABEL)),
        "value": "true",
    }));
    // First among the init containers: those after it may use Kafka through it, and the
    // kubelet starts the application containers only once its startupProbe passes.
    if spec["initContainers"].is_array() {
        ops.push(json!({"op": "add", "path": "/spec/initContainers/0", "value": container}));
    } else {
        ops.push(json!({"op": "add", "path": "/spec/initContainers", "value": [container]}));
    }
    if !volumes.is_empty() {
        if spec["volumes"].is_array() {
            for v in volumes {
                ops.push(json!({"op": "add", "path": "/spec/volumes/-", "value": v}));
            }
        } else {
            ops.push(json!({"op": "add", "path": "/spec/volumes", "value": volumes}));
        }
    }
    if let Some(names) = ann(BOOTSTRAP_ENV) {
        let names: Vec<&str> = names.split(',').map(str::trim).collect();
        if let Some(bad) = names.iter().find(|n| !env_name(n)) {
            return Err(format!(
                "annotation {BOOTSTRAP_ENV}: {bad:?} is not an environment variable name"
            ));
        }
        for (i, c) in spec["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            ops.extend(rewrite_env(i, c, &names, &sidecar.app_bootstrap));
        }
    }
    Ok(Some(ops))
}

/// The operations that set each of `names` to `value` in application container `i`.
fn rewrite_env(i: usize, c: &Value, names: &[&str], value: &str) -> Vec<Value> {
    let base = format!("/spec/containers/{i}/env");
    let Some(env) = c["env"].as_array() else {
        let all: Vec<Value> = names
            .iter()
            .map(|n| json!({"name": n, "value": value}))
            .collect();
        return vec![json!({"op": "add", "path": base, "value": all})];
    };
    names
        .iter()
        .map(|n| {
            let entry = json!({"name": n, "value": value});
            // Replaced whole: a valueFrom must not survive beside the value.
            match env.iter().position(|e| e["name"] == *n) {
                Some(j) => json!({"op": "replace", "path": format!("{base}/{j}"), "value": entry}),
                None => json!({"op": "add", "path": format!("{base}/-"), "value": entry}),
            }
        })
        .collect()
}

/// Sets an environment variable of the container, replacing an entry of the same name.
fn set_env(c: &mut Map<String, Value>, name: &str, value: &str) {
    let entry = json!({"name": name, "value": value});
    let env = c.entry("env").or_insert_with(|| Value::Array(Vec::new()));
    if !env.is_array() {
        *env = Value::Array(Vec::new());
    }
    let list = env.as_array_mut().expect("made an array above");
    match list.iter_mut().find(|e| e["name"] == name) {
        Some(e) => *e = entry,
        None => list.push(entry),
    }
}

fn push(c: &mut Map<String, Value>, list: &str, v: Value) {
    let l = c.entry(list).or_insert_with(|| Value::Array(Vec::new()));
    if let Some(a) = l.as_array_mut() {
        a.push(v);
    } else {
        *l = Value::Array(vec![v]);
    }
}

/// An option's value as fairlead's own command line would parse it (types, enums), so that a
/// typo is refused at admission rather than crash-looping the sidecar.
fn check_option(option: &str, value: &str) -> Result<(), String> {
    use clap::CommandFactory;
    let flag = format!("--{}", option.replace('_', "-"));
    crate::config::Cli::command()
        .mut_args(|a| a.env(None))
        .try_get_matches_from(["fairlead", &flag, value])
        .map(|_| ())
        .map_err(|e| {
            let text = e.to_string();
            text.lines()
                .next()
                .unwrap_or(&text)
                .trim_start_matches("error: ")
                .to_string()
        })
}

/// RFC 6901: `~` and `/` in a key.
fn pointer_escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn valid_bootstrap(s: &str) -> bool {
    !s.is_empty()
        && s.split(',').all(|b| {
            b.rsplit_once(':').is_some_and(|(h, p)| {
                !h.is_empty()
                    && !h.contains(char::is_whitespace)
                    && p.parse::<u16>().is_ok_and(|p| p > 0)
            })
        })
}

fn env_name(s: &str) -> bool {
    s.chars().next().is_some_and(|c| !c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

fn dns_label(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(dns_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sidecar() -> Sidecar {
        Sidecar::from_json(
            r#"{"container": {"name": "fairlead", "image": "fairlead:test",
                 "env": [{"name": "FAIRLEAD_BOOTSTRAP", "value": "kafka:9092"}]},
                "volumes": [{"name": "fairlead-sasl", "secret": {"secretName": "s"}}],
                "app_bootstrap": "localhost:9092"}"#,
        )
        .unwrap()
    }

    fn options() -> BTreeMap<String, String> {
        crate::webhook::annotation_options()
    }

    fn pod(annotations: Value) -> Value {
        json!({"metadata": {"annotations": annotations},
               "spec": {"containers": [{"name": "app", "image": "app"}]}})
    }

    fn review_of(pod: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                        "operation": "CREATE", "object": pod}
        }))
        .unwrap()
    }

    fn ops(pod: Value) -> Vec<Value> {
        patch(&pod, &sidecar(), &options())
            .unwrap()
            .expect("injected")
    }

    #[test]
    fn pods_without_the_annotation_or_already_injected_are_left_alone() {
        for p in [
            json!({"spec": {"containers": []}}),
            pod(json!({INJECT: "false"})),
            pod(json!({INJECT: "true", STATUS: "injected"})),
            json!({"metadata": {"annotations": {INJECT: "true"}},
                   "spec": {"containers": [{"name": "fairlead"}]}}),
        ] {
            assert_eq!(patch(&p, &sidecar(), &options()), Ok(None), "{p}");
        }
    }

    #[test]
    fn annotations_set_the_sidecars_environment_and_refuse_what_is_not_an_option() {
        let o = ops(pod(json!({INJECT: "true", BOOTSTRAP: "k1:9092,k2:9092",
                               "config.fairlead.io/absorb_timeout_ms": "5000"})));
        let c = &o
            .iter()
            .find(|op| op["path"] == "/spec/initContainers")
            .unwrap()["value"][0];
        assert_eq!(c["restartPolicy"], "Always");
        let env = c["env"].as_array().unwrap();
        let get = |n: &str| {
            env.iter()
                .find(|e| e["name"] == n)
                .map(|e| e["value"].clone())
        };
        assert_eq!(get("FAIRLEAD_BOOTSTRAP"), Some(json!("k1:9092,k2:9092")));
        assert_eq!(get("FAIRLEAD_ABSORB_TIMEOUT_MS"), Some(json!("5000")));
        assert_eq!(
            env.iter()
                .filter(|e| e["name"] == "FAIRLEAD_BOOTSTRAP")
                .count(),
            1
        );

        for (k, v, says) in [
            (
                "config.fairlead.io/sasl_password",
                "x",
                "not an option a pod may set",
            ),
            (
                "config.fairlead.io/listen",
                "0.0.0.0:9092",
                "not an option a pod may set",
            ),
            (
                "config.fairlead.io/absorb_timeout_ms",
                "soon",
                "invalid value",
            ),
            (BOOTSTRAP, "kafka", "not HOST:PORT"),
            (CONFIG_MAP, "Not_A_Name", "not a ConfigMap name"),
            (BOOTSTRAP_ENV, "A B", "not an environment variable name"),
        ] {
            let e = patch(&pod(json!({INJECT: "true", k: v})), &sidecar(), &options()).unwrap_err();
            assert!(e.contains(says), "{k}: {e}");
        }
    }

    #[test]
    fn malformed_reviews_are_refused_with_a_reason() {
        for (body, says) in [
            (b"{not json".to_vec(), "not JSON"),
            (b"{}".to_vec(), "expected an AdmissionReview"),
            (
                br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(),
                "no `request`",
            ),
            (
                br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","kind":{"kind":"Pod"},"operation":"CREATE","object":{"spec":1}}}"#.to_vec(),
                "no spec.containers",
            ),
        ] {
            let r = review(&body, &sidecar(), &options());
            assert_eq!(r["kind"], "AdmissionReview");
            assert_eq!(r["response"]["allowed"], false, "{r}");
            let msg = r["response"]["status"]["message"].as_str().unwrap();
            assert!(msg.contains(says), "{msg}");
        }
    }

    #[test]
    fn a_review_echoes_the_uid_and_carries_a_base64_json_patch() {
        use base64::Engine;
        let r = review(
            &review_of(pod(json!({INJECT: "true"}))),
            &sidecar(),
            &options(),
        );
        assert_eq!(r["response"]["uid"], "u-1");
        assert_eq!(r["response"]["allowed"], true);
        assert_eq!(r["response"]["patchType"], "JSONPatch");
        let raw = base64::engine::general_purpose::STANDARD
            .decode(r["response"]["patch"].as_str().unwrap())
            .unwrap();
        let ops: Vec<Value> = serde_json::from_slice(&raw).unwrap();
        assert!(ops
            .iter()
            .any(|o| o["path"] == "/metadata/annotations/fairlead.io~1status"));
        let plain = review(&review_of(pod(json!({}))), &sidecar(), &options());
        assert_eq!(plain["response"], json!({"uid": "u-1", "allowed": true}));
    }
}
