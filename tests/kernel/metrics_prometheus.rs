//! The daemon's `/metrics`, `/liveness` and `/readiness` inside a namespace, scraped by a real
//! Prometheus (Debian's `prometheus`, started by the test in the same namespace with its own
//! config and data directory, scrape interval 1 s) and queried through Prometheus' HTTP API:
//! Felix's series exist with sensible values, restore calls grow after an edit, a policy's
//! packet counter grows with matching traffic, the listener is bound to exactly the configured
//! address, and readiness flips to 503 while a newer generation waits and back to 200.
//!
//! Waits are bounded polls, never assertions about how fast something was. Under CI=true a
//! Prometheus that cannot start fails the test.

use crate::daemon_netns::{base_policies, hold_with_pending_confirmation, put, Daemon, ALLOW_9090};
use crate::netns;

use netns::{
    eventually, http_get, kernel_tests_enabled, sock, tcp_ok, tcp_server, Netns, Pair, Workdir,
    HOST4,
};
use std::collections::BTreeMap;
use std::fs;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Bound for anything that should happen "soon" (a few scrape intervals); generous for CI.
const WITHIN: Duration = Duration::from_secs(30);
const METRICS_PORT: u16 = 9091;
const HEALTH_PORT: u16 = 9099;
const PROMETHEUS_PORT: u16 = 9090;

/// The daemon tests' policies (eth0 of node h, labelled web; TCP 8080 may come in), with
/// metrics on the host address only and health on Felix's default (localhost:9099), no refresh
/// timer, and `felix_extra` lines.
fn policies(felix_extra: &str) -> String {
    base_policies(&format!(
        "  iptablesRefreshInterval: 0s\n  prometheusMetricsEnabled: true\n  \
         prometheusMetricsHost: \"{HOST4}\"\n  prometheusMetricsPort: {METRICS_PORT}\n  \
         healthEnabled: true\n{felix_extra}"
    ))
}

/// Namespaces named `tag`, the policies, and a daemon that has reported ready. `rust_log`:
/// keep RUST_LOG=debug (else the log level is logSeverityScreen's).
fn ready_daemon(tag: &str, felix_extra: &str, rust_log: bool) -> (Pair, Workdir, Daemon) {
    let (pair, work) = netns::pair_with_policies(tag, &policies(felix_extra));
    // An empty RUST_LOG counts as unset.
    let env: &[(&str, &str)] = if rust_log { &[] } else { &[("RUST_LOG", "")] };
    let d = Daemon::start_with_env(&pair.host, &work, env);
    assert!(
        eventually(WITHIN, || readiness(&pair.host) == Some(200)),
        "never ready:\n{}",
        d.log_text()
    );
    (pair, work, d)
}

/// Prometheus in a namespace with a temporary config and data directory; killed on drop.
struct Prometheus {
    child: Child,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Scrape `target` every second. None (after a loud message) when Prometheus is not
    /// installed outside CI; under CI=true that is a failure.
    fn start(ns: &Netns, target: SocketAddr) -> Option<Prometheus> {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        if Command::new("prometheus")
            .arg("--version")
            .output()
            .is_err()
        {
            assert!(!ci, "CI=true but prometheus is not installed (make deps)");
            eprintln!("SKIPPED: prometheus is not installed (make deps installs it)");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("prometheus.yml");
        fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: hostfw\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("prometheus config");
        let log = fs::File::create(dir.path().join("prometheus.log")).expect("prometheus log");
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "prometheus"])
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let prometheus = Prometheus { child, dir };
        let ready = eventually(WITHIN, || {
            http_get(ns, prometheus.addr(), "/-/ready").is_some_and(|(status, _)| status == 200)
        });
        assert!(
            ready,
            "prometheus did not become ready:\n{}",
            prometheus.log_text()
        );
        Some(prometheus)
    }

    fn addr(&self) -> SocketAddr {
        sock("127.0.0.1", PROMETHEUS_PORT)
    }

    fn log_text(&self) -> String {
        fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// An instant query: each result's labels and value.
    fn query(&self, ns: &Netns, promql: &str) -> Vec<(BTreeMap<String, String>, f64)> {
        let path = format!("/api/v1/query?query={}", url_encode(promql));
        let Some((200, body)) = http_get(ns, self.addr(), &path) else {
            return Vec::new();
        };
        let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let results = json["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        results
            .iter()
            .filter_map(|r| {
                let labels = r["metric"]
                    .as_object()?
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                    .collect();
                let value = r["value"][1].as_str()?.parse().ok()?;
                Some((labels, value))
            })
            .collect()
    }

    /// The value of a query that must return exactly one series, once it does.
    fn value(&self, ns: &Netns, promql: &str) -> Option<f64> {
        let mut found = None;
        eventually(WITHIN, || {
            let r = self.query(ns, promql);
            found = (r.len() == 1).then(|| r[0].1);
            found.is_some()
        });
        found
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encoding for a query parameter (unreserved characters kept).
fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn readiness(ns: &Netns) -> Option<u16> {
    http_get(ns, sock("127.0.0.1", HEALTH_PORT), "/readiness").map(|(status, _)| status)
}

#[test]
fn prometheus_scrapes_felix_and_hostfw_series() {
    if !kernel_tests_enabled() {
        return;
    }
    let (pair, work, d) = ready_daemon("met-prom", "", true);
    let _web = tcp_server(&pair.host, sock(HOST4, 8080));

    // Bound exactly to prometheusMetricsHost: loopback on the same port answers nothing.
    let target = sock(HOST4, METRICS_PORT);
    let (status, text) = http_get(&pair.host, target, "/metrics").expect("metrics answer");
    assert_eq!(status, 200);
    assert!(
        http_get(&pair.host, sock("127.0.0.1", METRICS_PORT), "/metrics").is_none(),
        "metrics also reachable on 127.0.0.1"
    );
    // Prometheus' own parser, through promtool (lint findings about Felix's names aside).
    let check = promtool_check(&text);
    assert!(!check.contains("parsing error"), "{check}");

    let Some(prom) = Prometheus::start(&pair.host, target) else {
        return;
    };
    let up = prom.value(&pair.host, "up{job=\"hostfw\"}");
    assert_eq!(up, Some(1.0), "{}", prom.log_text());
    let rules = prom.value(
        &pair.host,
        "felix_iptables_rules{ip_version=\"4\",table=\"filter\"}",
    );
    assert!(rules.is_some_and(|v| v > 0.0), "{rules:?}");
    for (promql, at_least) in [
        ("felix_active_local_endpoints", 1.0),
        ("felix_active_local_policies", 1.0),
        ("felix_cluster_num_host_endpoints", 1.0),
        ("felix_cluster_num_tiers", 1.0),
        ("felix_ipsets_calico{ip_version=\"4\"}", 0.0),
        ("felix_int_dataplane_apply_time_seconds_count", 1.0),
        ("felix_int_dataplane_failures", 0.0),
        ("hostfw_policy_generation", 1.0),
        ("hostfw_config_valid", 1.0),
        ("hostfw_in_sync", 1.0),
        ("process_resident_memory_bytes", 1.0),
        ("process_open_fds", 1.0),
    ] {
        let v = prom.value(&pair.host, promql);
        assert!(v.is_some_and(|v| v >= at_least), "{promql} = {v:?}");
    }
    let quantile = prom.query(
        &pair.host,
        "felix_int_dataplane_apply_time_seconds{quantile=\"0.99\"}",
    );
    assert_eq!(quantile.len(), 1, "{quantile:?}");

    // An edit: more iptables-restore calls.
    let restores = prom
        .value(&pair.host, "felix_iptables_restore_calls")
        .expect("restore calls");
    assert!(restores >= 1.0);
    put(&work.policy_dir(), "20-allow-9090.yaml", ALLOW_9090);
    assert!(
        eventually(WITHIN, || prom
            .query(&pair.host, "felix_iptables_restore_calls")
            .first()
            .is_some_and(|(_, v)| *v > restores)),
        "restore calls did not grow after an edit:\n{}",
        d.log_text()
    );

    // Traffic allow-8080 accepts: its packet counter grows.
    let allowed =
        "hostfw_policy_packets{policy=\"allow-8080\",direction=\"ingress\",kind=\"allowed\"}";
    let before = prom.value(&pair.host, allowed).expect("per-policy series");
    for _ in 0..5 {
        assert!(tcp_ok(&pair.peer, None, sock(HOST4, 8080)));
    }
    assert!(
        eventually(WITHIN, || prom
            .query(&pair.host, allowed)
            .first()
            .is_some_and(|(_, v)| *v >= before + 5.0)),
        "{allowed} did not grow: {:?}",
        prom.query(&pair.host, "hostfw_policy_packets")
    );
    let tier = prom.query(&pair.host, allowed);
    assert_eq!(tier[0].0.get("tier").map(String::as_str), Some("default"));
}

/// `promtool check metrics` on `text`: what it said.
fn promtool_check(text: &str) -> String {
    let Ok(child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "CI=true but promtool (package prometheus) is missing"
        );
        return String::new();
    };
    let out = netns::finish_with_input(child, text);
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn readiness_is_503_while_a_newer_generation_waits() {
    if !kernel_tests_enabled() {
        return;
    }
    let (pair, work, d) = ready_daemon("met-ready", "", true);
    let health = sock("127.0.0.1", HEALTH_PORT);
    assert_eq!(
        http_get(&pair.host, health, "/liveness").map(|(s, _)| s),
        Some(200)
    );
    // Felix's healthHost default is localhost: the host address does not answer.
    assert!(http_get(&pair.host, sock(HOST4, HEALTH_PORT), "/readiness").is_none());

    // A pending `apply --confirm` holds the kernel; an edit makes a newer generation that
    // cannot be applied yet.
    hold_with_pending_confirmation(&d.run_dir);
    put(&work.policy_dir(), "20-allow-9090.yaml", ALLOW_9090);
    assert!(
        eventually(WITHIN, || readiness(&pair.host) == Some(503)),
        "still ready with a generation waiting:\n{}",
        d.log_text()
    );
    let (_, body) = http_get(&pair.host, health, "/readiness").expect("answer");
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
    assert_eq!(json["ready"], false, "{body}");

    fs::remove_file(d.run_dir.join(hostfw::confirm::PENDING_FILE)).expect("remove pending");
    d.signal(nix::sys::signal::Signal::SIGHUP);
    assert!(
        eventually(WITHIN, || readiness(&pair.host) == Some(200)),
        "not ready again after the confirmation ended:\n{}",
        d.log_text()
    );
}

#[test]
fn an_edit_moves_the_listeners_and_the_log_level() {
    if !kernel_tests_enabled() {
        return;
    }
    // logSeverityScreen decides only when neither RUST_LOG nor --log-level does.
    let (pair, work, d) = ready_daemon("met-move", "  logSeverityScreen: Debug\n", false);
    assert!(d.log_text().contains("[DEBUG"), "{}", d.log_text());

    // Port 9092, health off, Warning: the old listeners close, the new one answers, and info
    // lines (such as the next "applied policy generation") are no longer logged.
    let moved = policies("  logSeverityScreen: Warning\n")
        .replace(
            &format!("prometheusMetricsPort: {METRICS_PORT}"),
            "prometheusMetricsPort: 9092",
        )
        .replace("  healthEnabled: true\n", "");
    put(&work.policy_dir(), "policies.yaml", &moved);
    let new = sock(HOST4, 9092);
    assert!(
        eventually(WITHIN, || http_get(&pair.host, new, "/metrics")
            .is_some_and(
                |(s, body)| s == 200 && body.contains("hostfw_policy_generation 2")
            )),
        "{}",
        d.log_text()
    );
    assert!(http_get(&pair.host, sock(HOST4, METRICS_PORT), "/metrics").is_none());
    assert!(readiness(&pair.host).is_none(), "health still served");
    let log = d.log_text();
    let after = log
        .rsplit_once("log level is now WARN")
        .map(|(_, rest)| rest.to_string())
        .unwrap_or_else(|| panic!("no level change logged:\n{log}"));
    assert!(!after.contains("[INFO"), "info logged at Warning:\n{after}");
}
