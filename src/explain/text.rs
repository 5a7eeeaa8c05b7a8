//! The human form of an explanation: verdict and reason first, then the path hook by hook with
//! the rules that matched. Pure string building.

use super::{Direction, Explanation};
use std::fmt::Write as _;

/// Text for `hostfw explain` (without `--output json`).
pub fn render_text(e: &Explanation) -> String {
    let mut out = String::new();
    let p = &e.packet;
    let ports = match (p.sport, p.dport) {
        (Some(s), Some(d)) => format!(" {s} -> {d}"),
        (None, Some(d)) => format!(" -> {d}"),
        _ => String::new(),
    };
    let icmp = match (p.icmp_type, p.icmp_code) {
        (Some(t), Some(c)) => format!(" icmp type {t} code {c}"),
        (Some(t), None) => format!(" icmp type {t}"),
        _ => String::new(),
    };
    let via = match (p.direction, &p.out_iface) {
        (Direction::Forward, Some(o)) => format!("{} -> {o}", p.iface),
        _ => p.iface.clone(),
    };
    // Writing into a String cannot fail.
    let _ = writeln!(
        out,
        "packet:   {:?} via {via}: {} -> {} proto {}{ports}{icmp}, state {:?}{}",
        p.direction,
        p.src,
        p.dst,
        p.proto,
        p.state,
        if p.dnat { " (DNAT)" } else { "" }
    );
    let _ = writeln!(out, "verdict:  {}", e.verdict.as_str());
    let _ = writeln!(out, "decided:  {}", e.reason);
    if let Some(ep) = &e.endpoint {
        let _ = writeln!(out, "endpoint: {ep}");
    }
    out.push_str("path:\n");
    for h in &e.hooks {
        let _ = writeln!(out, "  {} {}: {}", h.table, h.chain, h.outcome);
        for s in &h.steps {
            let _ = write!(out, "    {}[{}] {}", s.chain, s.index, s.rule);
            if let Some(o) = &s.owner {
                let _ = write!(out, "    <- {o}");
            }
            out.push('\n');
        }
    }
    for n in &e.notes {
        let _ = writeln!(out, "note: {n}");
    }
    out
}
