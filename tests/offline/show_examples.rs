//! The shipped policy files (etc/hostfw/examples, etc/hostfw/demo) must pass `check`, alone and
//! together, and the demo set must resolve to what the demo relies on.

use hostfw::model::InterfaceName;
use hostfw::resolve::{flat_names, resolve, HostInterfaces};
use std::path::{Path, PathBuf};

fn etc(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("etc/hostfw")
        .join(sub)
}

fn assert_valid(paths: &[PathBuf]) -> hostfw::model::PolicySet {
    let loaded = hostfw::source::load_paths(paths);
    let errors: Vec<String> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.to_string())
        .collect();
    assert!(errors.is_empty(), "{paths:?}:\n{}", errors.join("\n"));
    loaded.set.expect("a valid set")
}

#[test]
fn every_example_file_is_valid_alone_and_together() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(etc("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 7, "examples missing: {files:?}");
    for f in &files {
        let set = assert_valid(std::slice::from_ref(f));
        let total = set.host_endpoints.len()
            + set.policies.len()
            + set.network_sets.len()
            + set.felix_configs.len();
        assert!(total > 0, "{}: no resources", f.display());
    }
    assert_valid(&[etc("examples")]);
}

#[test]
fn demo_set_resolves_to_one_default_deny_endpoint_without_failsafes() {
    let set = assert_valid(&[etc("demo")]);
    let host: HostInterfaces = [(
        "veth-host".to_string(),
        vec![
            "198.51.100.1".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
        ],
    )]
    .into_iter()
    .collect();
    let view = resolve(&set, "hostfw-demo", &host);
    assert_eq!(view.endpoints.len(), 1);
    let ep = &view.endpoints[0];
    assert_eq!(ep.interface, InterfaceName::Named("veth-host".into()));
    assert_eq!(flat_names(&ep.policies.ingress), ["demo"]);
    assert_eq!(flat_names(&ep.policies.egress), ["demo"]);
    assert!(view.config.failsafe_inbound.is_empty());
    assert!(view.config.failsafe_outbound.is_empty());
    // The rules the demo exercises, in order: 2222 from the peer, 8080, deny 9090, ICMP, 5x ICMPv6.
    let demo = &view.policies["demo"];
    assert_eq!(demo.ingress.len(), 9);
    assert_eq!(demo.egress.len(), 1);
}

#[test]
fn policy_dir_readme_exists() {
    let readme = std::fs::read_to_string(etc("policies.d/README")).unwrap();
    assert!(readme.contains("hostfw check"));
}
