//! The Prometheus text exposition format (version 0.0.4), written out: `# HELP`, `# TYPE`, then
//! one line per sample. Pure; knows nothing of which families exist.
//!
//! Our own encoder rather than a crate: `prometheus-client` writes OpenMetrics and appends
//! `_total` to every counter (Felix's `felix_iptables_restore_calls` has none), and the
//! `prometheus` crate has no Summary type; Felix's dashboards query both exactly.

use std::fmt::Write;

/// A family's type, as `# TYPE` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Summary,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Summary => "summary",
        }
    }
}

/// One line of a family: `name{labels} value`, where the name is the family's plus `suffix`
/// (`_sum`, `_count` for summaries, empty otherwise).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub suffix: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

impl Sample {
    /// A sample without labels.
    pub fn plain(value: f64) -> Sample {
        Sample {
            suffix: "",
            labels: Vec::new(),
            value,
        }
    }

    /// A sample with labels.
    pub fn labelled(labels: Vec<(&'static str, String)>, value: f64) -> Sample {
        Sample {
            suffix: "",
            labels,
            value,
        }
    }
}

/// A metric family with its samples. A family with no samples still gets its HELP and TYPE
/// lines, so scrapers learn the name before anything happened.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub samples: Vec<Sample>,
}

/// The whole exposition, families in the order given.
pub fn encode(families: &[Family]) -> String {
    let mut out = String::with_capacity(families.len() * 160);
    for family in families {
        let _ = writeln!(out, "# HELP {} {}", family.name, escape_help(family.help));
        let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind.as_str());
        for sample in &family.samples {
            out.push_str(family.name);
            out.push_str(sample.suffix);
            if !sample.labels.is_empty() {
                out.push('{');
                for (i, (name, value)) in sample.labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{name}=\"{}\"", escape_label(value));
                }
                out.push('}');
            }
            out.push(' ');
            out.push_str(&format_value(sample.value));
            out.push('\n');
        }
    }
    out
}

/// Go's formatting of floats as Prometheus clients print them: integers without a fraction,
/// `NaN`, `+Inf`, `-Inf`.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        // Rust's shortest round-trip form; `1` for 1.0, `0.25` for 0.25, `1e21` for large.
        format!("{v}")
    }
}

/// HELP text: backslash and newline escaped.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Label values: backslash, double quote and newline escaped.
fn escape_label(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_without_samples_keep_help_and_type() {
        let text = encode(&[Family {
            name: "felix_iptables_restore_calls",
            help: "Number of iptables-restore calls.",
            kind: Kind::Counter,
            samples: vec![],
        }]);
        assert_eq!(
            text,
            "# HELP felix_iptables_restore_calls Number of iptables-restore calls.\n\
             # TYPE felix_iptables_restore_calls counter\n"
        );
    }

    #[test]
    fn labels_are_escaped_and_values_formatted_as_go_does() {
        let text = encode(&[Family {
            name: "x",
            help: "a\\b\nc",
            kind: Kind::Gauge,
            samples: vec![
                Sample::labelled(
                    vec![("policy", "a\"b\\c\nd".into()), ("t", "v".into())],
                    3.0,
                ),
                Sample::plain(0.25),
                Sample::plain(f64::NAN),
            ],
        }]);
        assert_eq!(
            text,
            "# HELP x a\\\\b\\nc\n# TYPE x gauge\nx{policy=\"a\\\"b\\\\c\\nd\",t=\"v\"} 3\nx 0.25\nx NaN\n"
        );
    }
}
