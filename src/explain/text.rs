//! The human form of an explanation (`Display`): verdict and reason first, then the path hook by
//! hook with the rules that matched. Pure string building.

use super::{Direction, Explanation};
use std::fmt::{self, Write as _};

impl fmt::Display for Explanation {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.packet;
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
        writeln!(
            out,
            "packet:   {:?} via {via}: {} -> {} proto {}{ports}{icmp}, state {:?}{}",
            p.direction,
            p.src,
            p.dst,
            p.proto,
            p.state,
            if p.dnat { " (DNAT)" } else { "" }
        )?;
        writeln!(out, "verdict:  {}", self.verdict.as_str())?;
        writeln!(out, "decided:  {}", self.reason)?;
        if let Some(ep) = &self.endpoint {
            writeln!(out, "endpoint: {ep}")?;
        }
        out.write_str("path:\n")?;
        for h in &self.hooks {
            writeln!(out, "  {} {}: {}", h.table, h.chain, h.outcome)?;
            for s in &h.steps {
                write!(out, "    {}[{}] {}", s.chain, s.index, s.rule)?;
                if let Some(o) = &s.owner {
                    write!(out, "    <- {o}")?;
                }
                out.write_char('\n')?;
            }
        }
        for n in &self.notes {
            writeln!(out, "note: {n}")?;
        }
        Ok(())
    }
}
