//! Version negotiation against the real broker: fairlead relays ApiVersions capped to what it
//! can decode for every API it inspects, and leaves everything else as the broker says.

#[path = "../support/mod.rs"]
mod support;

use fairlead::testing::api_versions::{is_inspected, max_supported};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::StrBytes;
use support::raw::Raw;
use support::Fairlead;

fn api_versions(addr: &str) -> ApiVersionsResponse {
    let req = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("versions-test"))
        .with_client_software_version(StrBytes::from_static_str("1"));
    Raw::connect(addr).call(ApiKey::ApiVersions, 3, &req)
}

#[test]
fn relayed_api_versions_are_capped_to_what_fairlead_decodes() {
    if support::skip_without_testbed() {
        return;
    }
    let cluster = support::cluster();
    let dir = support::run_dir("versions");
    let fairlead = Fairlead::start(&cluster.bootstrap, &dir, &[]);
    let direct = api_versions(cluster.bootstrap.split(',').next().unwrap());
    let via = api_versions(&fairlead.bootstrap);
    assert_eq!(via.error_code, 0);
    let mut capped = Vec::new();
    for d in &direct.api_keys {
        let key = ApiKey::try_from(d.api_key).ok();
        let v = via.api_keys.iter().find(|v| v.api_key == d.api_key);
        match key.filter(|k| is_inspected(*k)) {
            Some(k) => {
                let ours = max_supported(k);
                let v = v.unwrap_or_else(|| panic!("{k:?} missing from the relayed versions"));
                assert_eq!(v.min_version, d.min_version, "{k:?} min");
                assert_eq!(
                    v.max_version,
                    d.max_version.min(ours),
                    "{k:?}: broker max {}, fairlead decodes up to {ours}",
                    d.max_version
                );
                if d.max_version > ours {
                    capped.push(format!("{k:?} {} -> {ours}", d.max_version));
                }
            }
            None => assert_eq!(
                v,
                Some(d),
                "api key {} is not inspected: relayed as the broker says",
                d.api_key
            ),
        }
    }
    assert_eq!(via.api_keys.len(), direct.api_keys.len());
    println!(
        "Kafka {}: capped {}",
        cluster.version,
        if capped.is_empty() {
            "nothing (the broker is not newer than fairlead's protocol crate)".to_string()
        } else {
            capped.join(", ")
        }
    );
}
