//! Package inputs that must agree with the code, checked without building a package (the
//! package build and install tests are `scripts/test-packages.sh`): the defaults file documents
//! every variable the CLI reads, with the CLI's defaults, and the versions in the changelogs match
//! Cargo.toml. Reads files of the source tree only.

use clap::CommandFactory;
use hostfw::settings::{DEFAULT_POLICY_DIR, DEFAULT_RUN_DIR, DEFAULT_STATE_DIR};
use std::path::Path;

fn source_file(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `#NAME=value` lines of an EnvironmentFile template: the documented defaults.
fn documented(file: &str) -> Vec<(String, String)> {
    file.lines()
        .filter_map(|l| l.strip_prefix('#'))
        .filter_map(|l| l.split_once('='))
        .filter(|(name, _)| {
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn defaults_file_documents_every_variable_the_cli_reads() {
    let file = source_file("etc/default/hostfw");
    let names: Vec<String> = documented(&file).into_iter().map(|(n, _)| n).collect();
    let cli = hostfw::cli::Cli::command();
    let from_cli: Vec<String> = cli
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect();
    assert!(
        from_cli.len() >= 6,
        "the CLI reads at least the six HOSTFW_* variables the README documents: {from_cli:?}"
    );
    for name in from_cli
        .iter()
        .map(String::as_str)
        .chain(["HOSTFW_LOCKOUT_GUARD", "RUST_LOG"])
    {
        assert!(
            names.iter().any(|n| n == name),
            "etc/default/hostfw has no '#{name}=' line"
        );
    }
}

#[test]
fn defaults_file_shows_the_built_in_defaults() {
    let vars = documented(&source_file("etc/default/hostfw"));
    let value = |name: &str| {
        vars.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("{name} not documented"))
    };
    for (name, default) in [
        ("HOSTFW_POLICY_DIR", DEFAULT_POLICY_DIR),
        ("HOSTFW_RUN_DIR", DEFAULT_RUN_DIR),
        ("HOSTFW_STATE_DIR", DEFAULT_STATE_DIR),
        // main.rs starts env_logger with "info" when nothing is set.
        ("HOSTFW_LOG_LEVEL", "info"),
        // Empty: the kernel hostname is the default, not a fixed value.
        ("HOSTFW_NODENAME", ""),
        ("HOSTFW_IPTABLES_BACKEND", "auto"),
        ("HOSTFW_LOCKOUT_GUARD", "sessions"),
    ] {
        assert_eq!(value(name), default, "{name}");
    }
    assert_eq!(
        hostfw::guard::DaemonMode::from_value(Some("sessions")),
        hostfw::guard::DaemonMode::from_value(None),
        "the value the file shows is the built-in default"
    );
}

#[test]
fn debian_and_rpm_settings_files_are_the_same() {
    assert_eq!(
        source_file("etc/default/hostfw"),
        source_file("etc/sysconfig/hostfw"),
        "etc/default/hostfw (deb) and etc/sysconfig/hostfw (rpm) must stay identical"
    );
}

#[test]
fn changelogs_name_the_crate_version() {
    let version = env!("CARGO_PKG_VERSION");
    let debian = source_file("packaging/deb/changelog");
    let first = debian.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!("hostfw ({version}-1) ")),
        "packaging/deb/changelog must start with version {version}-1: {first}"
    );
    assert!(
        source_file("CHANGELOG.md").contains(&format!("\n## [{version}]")),
        "CHANGELOG.md has no '## [{version}]' section"
    );
}

#[test]
fn both_packages_install_the_reload_script_the_unit_runs() {
    let manifest = source_file("Cargo.toml");
    assert!(
        manifest.contains("[\"systemd/hostfw-reload\", \"usr/libexec/hostfw/\", \"755\"]")
            && manifest.contains("dest = \"/usr/libexec/hostfw/hostfw-reload\", mode = \"755\""),
        "both packages must install systemd/hostfw-reload as /usr/libexec/hostfw/hostfw-reload"
    );
}
