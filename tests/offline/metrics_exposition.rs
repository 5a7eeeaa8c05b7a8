//! The `/metrics` text against a strict parser of the Prometheus text format (0.0.4), and the
//! Felix families' types and label names against Felix v3.32.1 (the facts listed in
//! src/metrics/families.rs). Every family must be there before anything happened.

use hostfw::metrics::{ActivePolicy, CounterReader, Metrics};
use hostfw::render::marks::Marks;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// One parsed family.
#[derive(Debug, Default)]
struct Parsed {
    kind: String,
    help: String,
    /// (sample name, labels) -> value.
    samples: BTreeMap<(String, BTreeMap<String, String>), f64>,
}

fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

/// `{a="x",b="y"}` -> labels, rejecting bad escapes, duplicate or malformed names.
fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    let mut chars = text.chars().peekable();
    while chars.peek().is_some() {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if !valid_label_name(&name) {
            return Err(format!("bad label name {name:?}"));
        }
        if chars.next() != Some('"') {
            return Err(format!("label {name}: value must be quoted"));
        }
        let mut value = String::new();
        loop {
            match chars.next() {
                Some('\\') => match chars.next() {
                    Some('\\') => value.push('\\'),
                    Some('"') => value.push('"'),
                    Some('n') => value.push('\n'),
                    other => return Err(format!("bad escape \\{other:?}")),
                },
                Some('"') => break,
                Some('\n') | None => return Err("unterminated label value".into()),
                Some(c) => value.push(c),
            }
        }
        if labels.insert(name.clone(), value).is_some() {
            return Err(format!("label {name} twice"));
        }
        match chars.next() {
            Some(',') | None => {}
            Some(c) => return Err(format!("expected , after a label, found {c:?}")),
        }
    }
    Ok(labels)
}

fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "NaN" => Ok(f64::NAN),
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => text.parse().map_err(|_| format!("bad value {text:?}")),
    }
}

/// Strict: HELP then TYPE once per family, before its samples; each sample belongs to the
/// family most recently declared (summaries: the name, `_sum`, `_count`); no duplicate series;
/// no timestamps; a trailing newline.
fn parse(text: &str) -> Result<BTreeMap<String, Parsed>, String> {
    if !text.ends_with('\n') {
        return Err("no trailing newline".into());
    }
    let mut families: BTreeMap<String, Parsed> = BTreeMap::new();
    let mut current: Option<String> = None;
    for (n, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line}", n + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest
                .split_once(' ')
                .ok_or_else(|| at("HELP without text".into()))?;
            if !valid_metric_name(name) || families.contains_key(name) {
                return Err(at("bad or repeated family".into()));
            }
            families.insert(
                name.to_string(),
                Parsed {
                    help: help.to_string(),
                    ..Parsed::default()
                },
            );
            current = Some(name.to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .ok_or_else(|| at("TYPE without type".into()))?;
            if current.as_deref() != Some(name) {
                return Err(at("TYPE does not follow its HELP".into()));
            }
            if !["counter", "gauge", "summary", "histogram", "untyped"].contains(&kind) {
                return Err(at(format!("unknown type {kind}")));
            }
            let family = families
                .get_mut(name)
                .ok_or_else(|| at("no family".into()))?;
            if !family.kind.is_empty() || !family.samples.is_empty() {
                return Err(at("TYPE repeated or after samples".into()));
            }
            family.kind = kind.to_string();
        } else if line.starts_with('#') || line.is_empty() {
            return Err(at("unexpected comment or blank line".into()));
        } else {
            let family_name = current
                .clone()
                .ok_or_else(|| at("sample before any family".into()))?;
            let (series, value) = line.rsplit_once(' ').ok_or_else(|| at("no value".into()))?;
            let value = parse_value(value).map_err(at)?;
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let inner = rest
                        .strip_suffix('}')
                        .ok_or_else(|| at("unclosed {".into()))?;
                    (name, parse_labels(inner).map_err(at)?)
                }
                None => (series, BTreeMap::new()),
            };
            if name.contains(' ') || !valid_metric_name(name) {
                return Err(at("bad sample name (or a timestamp)".into()));
            }
            let family = families
                .get_mut(&family_name)
                .ok_or_else(|| at("no family".into()))?;
            let allowed: Vec<String> = if family.kind == "summary" {
                vec![
                    family_name.clone(),
                    format!("{family_name}_sum"),
                    format!("{family_name}_count"),
                ]
            } else {
                vec![family_name.clone()]
            };
            if !allowed.iter().any(|a| a == name) {
                return Err(at(format!("sample does not belong to {family_name}")));
            }
            if family.kind == "summary" && name == family_name && !labels.contains_key("quantile") {
                return Err(at("summary sample without quantile".into()));
            }
            if family.kind != "summary" && labels.contains_key("quantile") {
                return Err(at("quantile label outside a summary".into()));
            }
            if family
                .samples
                .insert((name.to_string(), labels), value)
                .is_some()
            {
                return Err(at("duplicate series".into()));
            }
        }
    }
    Ok(families)
}

/// Felix v3.32.1's families: type and label names.
const FELIX: &[(&str, &str, &[&str])] = &[
    ("felix_iptables_restore_calls", "counter", &[]),
    ("felix_iptables_restore_errors", "counter", &[]),
    ("felix_iptables_save_calls", "counter", &[]),
    ("felix_iptables_save_errors", "counter", &[]),
    ("felix_iptables_chains", "gauge", &["ip_version", "table"]),
    ("felix_iptables_rules", "gauge", &["ip_version", "table"]),
    (
        "felix_iptables_lines_executed",
        "counter",
        &["ip_version", "table"],
    ),
    ("felix_ipset_calls", "counter", &[]),
    ("felix_ipset_errors", "counter", &[]),
    ("felix_ipsets_calico", "gauge", &["ip_version"]),
    ("felix_ipsets_total", "gauge", &[]),
    ("felix_int_dataplane_apply_time_seconds", "summary", &[]),
    ("felix_int_dataplane_failures", "counter", &[]),
    ("felix_resyncs_started", "counter", &[]),
    ("felix_active_local_endpoints", "gauge", &[]),
    ("felix_active_local_policies", "gauge", &[]),
    ("felix_active_local_selectors", "gauge", &[]),
    ("felix_cluster_num_host_endpoints", "gauge", &[]),
    ("felix_cluster_num_tiers", "gauge", &[]),
    ("felix_cluster_num_policies", "gauge", &[]),
    ("felix_cluster_num_profiles", "gauge", &[]),
];

fn label_names(family: &Parsed, sample: &str) -> BTreeSet<Vec<String>> {
    family
        .samples
        .keys()
        .filter(|(name, _)| name == sample)
        .map(|(_, labels)| labels.keys().cloned().collect())
        .collect()
}

#[test]
fn first_scrape_has_every_family_with_felix_types_and_labels() {
    let text = Metrics::new().render(Instant::now(), true);
    let families = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    for (name, kind, labels) in FELIX {
        let family = families
            .get(*name)
            .unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(family.kind, *kind, "{name}");
        assert!(!family.help.is_empty(), "{name}");
        assert!(!family.samples.is_empty(), "{name} has no zero series yet");
        let want: Vec<String> = labels.iter().map(|l| l.to_string()).collect();
        let sample = if *kind == "summary" {
            format!("{name}_count")
        } else {
            name.to_string()
        };
        assert_eq!(
            label_names(family, &sample),
            BTreeSet::from([want]),
            "{name} labels"
        );
    }
    let calico = &families["felix_ipsets_calico"].samples;
    for v in ["4", "6"] {
        let key = (
            "felix_ipsets_calico".to_string(),
            BTreeMap::from([("ip_version".to_string(), v.to_string())]),
        );
        assert_eq!(calico.get(&key), Some(&0.0), "ip_version {v}");
    }
    let rules = &families["felix_iptables_rules"].samples;
    assert_eq!(rules.len(), 6, "two families times raw, mangle, filter");
    let apply = &families["felix_int_dataplane_apply_time_seconds"];
    let quantiles: BTreeSet<String> = apply
        .samples
        .keys()
        .filter_map(|(_, l)| l.get("quantile").cloned())
        .collect();
    assert_eq!(
        quantiles,
        BTreeSet::from(["0.5".into(), "0.9".into(), "0.99".into()])
    );
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
        "hostfw_policy_packets",
        "hostfw_policy_bytes",
        "hostfw_drift_repairs",
        "hostfw_policy_generation",
        "hostfw_config_valid",
        "hostfw_config_diagnostics",
        "hostfw_last_successful_apply_timestamp_seconds",
        "hostfw_confirm_pending",
        "hostfw_lockout_guard_findings",
        "hostfw_active_local_tiers",
    ] {
        assert!(families.contains_key(name), "{name}");
    }
    assert_eq!(families["process_cpu_seconds_total"].kind, "counter");
    assert!(!families
        .keys()
        .any(|n| n.starts_with("felix_") && n.ends_with("_total") && *n != "felix_ipsets_total"));
}

#[test]
fn process_families_can_be_turned_off() {
    let text = Metrics::new().render(Instant::now(), false);
    assert!(!text.contains("process_"), "{text}");
}

/// Serves a fixed table and counts how often it was asked.
struct FixedCounters {
    table: String,
    reads: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl CounterReader for FixedCounters {
    fn read(&self) -> Result<Vec<String>, String> {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(vec![self.table.clone()])
    }
}

#[test]
fn per_policy_series_come_from_one_cached_counter_read() {
    let chain = hostfw::render::names::policy_chain(
        hostfw::render::names::POLICY_INBOUND_PFX,
        "platform.ssh",
    );
    let table = format!(
        "*filter\n:{chain} - [0:0]\n\
         [4:240] -A {chain} -p tcp -m tcp --dport 22 -j MARK --set-xmark 0x10000/0x10000\n\
         [4:240] -A {chain} -m mark --mark 0x10000/0x10000 -j RETURN\nCOMMIT\n"
    );
    let reads = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let metrics = Metrics::new();
    metrics.update(|v| {
        v.policies = vec![ActivePolicy {
            name: "platform.ssh".into(),
            tier: "platform".into(),
        }];
        v.marks = Some(Marks::allocate(0xffff0000).expect("enough bits"));
    });
    metrics.set_counter_reader(Some(Box::new(FixedCounters {
        table,
        reads: reads.clone(),
    })));
    let start = Instant::now();
    let text = metrics.render(start, false);
    let again = metrics.render(start + Duration::from_secs(1), false);
    assert_eq!(reads.load(std::sync::atomic::Ordering::SeqCst), 1, "cached");
    assert_eq!(text, again);
    let families = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let packets = &families["hostfw_policy_packets"];
    assert_eq!(packets.kind, "counter");
    let allowed = BTreeMap::from([
        ("policy".to_string(), "platform.ssh".to_string()),
        ("tier".to_string(), "platform".to_string()),
        ("direction".to_string(), "ingress".to_string()),
        ("kind".to_string(), "allowed".to_string()),
    ]);
    assert_eq!(
        packets
            .samples
            .get(&("hostfw_policy_packets".to_string(), allowed)),
        Some(&4.0)
    );
    assert_eq!(packets.samples.len(), 4, "allowed, denied, passed, logged");
    metrics.render(start + hostfw::metrics::COUNTER_TTL, false);
    assert_eq!(
        reads.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "re-read after the TTL"
    );
}

#[test]
fn the_strict_parser_rejects_what_prometheus_rejects() {
    for bad in [
        "x 1\n",
        "# HELP x h\n# TYPE x counter\nx{a=\"1\",a=\"2\"} 1\n",
        "# HELP x h\n# TYPE x counter\ny 1\n",
        "# HELP x h\n# TYPE x counter\nx 1\nx 2\n",
        "# HELP x h\n# TYPE x gauge\nx{a=\"\\q\"} 1\n",
        "# HELP x h\n# TYPE x gauge\nx one\n",
        "# HELP x h\n# TYPE x summary\nx 1\n",
        "# HELP x h\n# TYPE x counter\nx 1",
    ] {
        assert!(parse(bad).is_err(), "accepted: {bad:?}");
    }
}
