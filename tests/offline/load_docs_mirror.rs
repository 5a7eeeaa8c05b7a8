//! Verdicts on fixtures that mirror Calico's documentation examples one for one (our own
//! content, same shapes and the same mistakes). Expected verdicts are Calico v3.32.1's: the docs
//! examples with placeholders, a non-strict rule CIDR, a 16-character interface name and an
//! ICMP type of 256 are rejected by Calico itself; the rest load (some with warnings).

use std::path::PathBuf;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/policy/docs-mirror");

/// (file, None = valid, Some((field, message fragment)) = rejected with that error).
const VERDICTS: &[(&str, Option<(&str, &str)>)] = &[
    ("01-hep-full-sample.yaml", None),
    ("02-hep-flow-ips.yaml", None),
    ("03-gnp-ingress-egress.yaml", None),
    ("04-felix-unused-fields.yaml", None),
    ("05-gnp-bare-list.yaml", None),
    (
        "06-gnp-placeholders.yaml",
        Some(("spec.ingress[0].source.nets[0]", "not a CIDR")),
    ),
    ("07-gnp-empty-forward.yaml", None),
    ("08-hep-ip-only-list.yaml", None),
    ("09-gnp-double-quoted-selector.yaml", None),
    ("10-gns-sample.yaml", None),
    ("11-profile-labels.yaml", None),
    ("12-hep-quoted-label.yaml", None),
    ("13-gns-quoted-nets.yaml", None),
    ("14-gnp-untracked-deny.yaml", None),
    ("15-gnp-forward-egress.yaml", None),
    ("16-hep-dotted-name.yaml", None),
    ("17-gnp-deny-icmp-both.yaml", None),
    ("18-gnp-ping-types.yaml", None),
    ("19-gnp-icmp-code.yaml", None),
    (
        "20-gnp-prednat-loose-cidr.yaml",
        Some(("spec.ingress[0].source.nets[0]", "host bits set")),
    ),
    ("21-gnp-egress-only.yaml", None),
    (
        "22-hep-placeholder-ip.yaml",
        Some(("spec.expectedIPs[0]", "not an IP address")),
    ),
    ("23-gnp-prednat-nodeport.yaml", None),
    ("24-gnp-prednat-multidoc.yaml", None),
    ("25-hep-interface-only.yaml", None),
    ("26-gnp-log-then-allow.yaml", None),
    ("27-felix-mtu.yaml", None),
    ("28-gnp-rule-annotations.yaml", None),
    ("29-gnp-comments-between-rules.yaml", None),
    ("30-gnp-workers.yaml", None),
    (
        "43-hep-long-interface.yaml",
        Some(("spec.interfaceName", "is invalid")),
    ),
    (
        "44-profile-icmp-type-too-big.yaml",
        Some(("spec.ingress[0].icmp.type", "out of range")),
    ),
];

#[test]
fn every_fixture_has_a_verdict() {
    let mut names: Vec<String> = std::fs::read_dir(DIR)
        .expect("fixture dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let listed: Vec<&str> = VERDICTS.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, listed);
}

#[test]
fn verdicts_agree_with_calico() {
    let mut failures = Vec::new();
    for (name, verdict) in VERDICTS {
        let loaded = hostfw::source::load_paths(&[PathBuf::from(DIR).join(name)]);
        let errors: Vec<_> = loaded.diagnostics.iter().filter(|d| d.is_error()).collect();
        match verdict {
            None if loaded.set.is_some() => {}
            Some((field, msg))
                if loaded.set.is_none()
                    && errors
                        .iter()
                        .any(|d| d.field.as_deref() == Some(*field) && d.message.contains(msg)) => {
            }
            _ => failures.push(format!(
                "{name}: want {verdict:?}, got {:?}",
                loaded
                    .diagnostics
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn unused_felix_fields_and_case_variants_warn() {
    let load = |n: &str| hostfw::source::load_paths(&[PathBuf::from(DIR).join(n)]);
    let warned = |n: &str| -> Vec<String> {
        load(n)
            .diagnostics
            .iter()
            .filter(|d| !d.is_error())
            .filter_map(|d| d.field.clone())
            .collect()
    };
    assert_eq!(
        warned("04-felix-unused-fields.yaml"),
        vec!["spec.vxlanEnabled", "spec.reportingInterval"]
    );
    assert_eq!(warned("27-felix-mtu.yaml"), vec!["spec.vxlanMTU"]);
    // The whole directory at once: invalid (five rejected files), every error reported.
    let all = hostfw::source::load_paths(&[PathBuf::from(DIR)]);
    assert!(all.set.is_none());
    let files_with_errors: std::collections::BTreeSet<String> = all
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.file.rsplit('/').next().unwrap_or("").to_string())
        .collect();
    assert_eq!(files_with_errors.len(), 5, "{files_with_errors:?}");
}
