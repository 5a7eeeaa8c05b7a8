//! Per-policy packet and byte counts for `hostfw_policy_packets` / `hostfw_policy_bytes`: the
//! kernel's rule counters in each policy chain, grouped by what the rule does (allowed, denied,
//! passed, logged). Pure: the `iptables-save -c` text comes in already read.
//!
//! How a rule's verdict shows in the chains render writes (Felix's layout, felix/rules/): allow
//! sets the accept mark, pass sets the pass mark, deny sets the drop mark and a second rule
//! DROPs on it (only the DROP is counted, so each denied packet counts once), log is a LOG or
//! NFLOG rule. RETURNs only end the chain and count as nothing.

use crate::render::marks::Marks;
use crate::render::names;
use std::collections::HashMap;

/// The verdict kinds, in label order.
pub const KINDS: [&str; 4] = ["allowed", "denied", "passed", "logged"];

/// A policy in force and its tier.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ActivePolicy {
    pub name: String,
    pub tier: String,
}

/// One series: a policy, a direction, a verdict kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyCount {
    pub policy: String,
    pub tier: String,
    /// `ingress` (the policy's `cali-pi-` chain) or `egress` (`cali-po-`).
    pub direction: &'static str,
    pub kind: &'static str,
    pub packets: u64,
    pub bytes: u64,
}

/// What a rule (its save-form text) does, if it is one of the counted kinds.
fn kind_of(rule_text: &str, marks: &Marks) -> Option<&'static str> {
    let words: Vec<&str> = rule_text.split_whitespace().collect();
    let target = words
        .iter()
        .rposition(|w| *w == "-j" || *w == "--jump")
        .and_then(|i| words.get(i + 1))?;
    match *target {
        "DROP" | "REJECT" => Some("denied"),
        "LOG" | "NFLOG" => Some("logged"),
        "ACCEPT" => Some("allowed"),
        "MARK" => {
            let value = words
                .iter()
                .position(|w| *w == "--set-xmark" || *w == "--set-mark")
                .and_then(|i| words.get(i + 1))?;
            let bits = value.split('/').next()?;
            let bits = u32::from_str_radix(bits.trim_start_matches("0x"), 16).ok()?;
            if bits & marks.accept != 0 {
                Some("allowed")
            } else if bits & marks.pass != 0 {
                Some("passed")
            } else {
                None
            }
        }
        _ => None,
    }
}

/// Sums of one chain: present in the kernel, and packets and bytes per kind (KINDS order).
#[derive(Default)]
struct ChainSums {
    present: bool,
    sums: [(u64, u64); 4],
}

/// `[packets:bytes] -A CHAIN rule...` -> (packets, bytes, chain, rest of the line).
fn counted_rule(line: &str) -> Option<(u64, u64, &str, &str)> {
    let (counters, rest) = line.strip_prefix('[')?.split_once("] -A ")?;
    let (packets, bytes) = counters.split_once(':')?;
    let (chain, rule) = rest.split_once(' ').unwrap_or((rest, ""));
    Some((packets.parse().ok()?, bytes.parse().ok()?, chain, rule))
}

/// Sum each active policy's chains over every table and family of `saves` (`iptables-save -c`
/// output, all tables). A policy with no chain in the kernel gets no series; one with chains
/// gets all four kinds (zero until traffic comes). Scans the text once and looks only at the
/// policy chains' lines: at M scale the save is 16 MB, almost all of it other chains.
pub fn count(policies: &[ActivePolicy], saves: &[String], marks: &Marks) -> Vec<PolicyCount> {
    const DIRECTIONS: [(&str, &str); 2] = [
        ("ingress", names::POLICY_INBOUND_PFX),
        ("egress", names::POLICY_OUTBOUND_PFX),
    ];
    let mut chains: HashMap<String, ChainSums> = policies
        .iter()
        .flat_map(|p| {
            DIRECTIONS
                .map(|(_, prefix)| (names::policy_chain(prefix, &p.name), ChainSums::default()))
        })
        .collect();
    for line in saves.iter().flat_map(|s| s.lines()) {
        if let Some(declared) = line.strip_prefix(':') {
            let name = declared.split(' ').next().unwrap_or(declared);
            if let Some(c) = chains.get_mut(name) {
                c.present = true;
            }
        } else if let Some((packets, bytes, chain, rule)) = counted_rule(line) {
            let Some(c) = chains.get_mut(chain) else {
                continue;
            };
            if let Some(i) = kind_of(rule, marks).and_then(|k| KINDS.iter().position(|x| *x == k)) {
                c.sums[i].0 = c.sums[i].0.saturating_add(packets);
                c.sums[i].1 = c.sums[i].1.saturating_add(bytes);
            }
        }
    }
    let mut out = Vec::new();
    for policy in policies {
        for (direction, prefix) in DIRECTIONS {
            let Some(c) = chains.get(&names::policy_chain(prefix, &policy.name)) else {
                continue;
            };
            if !c.present {
                continue;
            }
            for (kind, (packets, bytes)) in KINDS.into_iter().zip(c.sums) {
                out.push(PolicyCount {
                    policy: policy.name.clone(),
                    tier: policy.tier.clone(),
                    direction,
                    kind,
                    packets,
                    bytes,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marks() -> Marks {
        Marks::allocate(0xffff0000).expect("enough bits")
    }

    #[test]
    fn rules_are_grouped_by_verdict() {
        let chain = names::policy_chain(names::POLICY_INBOUND_PFX, "web");
        let text = format!(
            "*filter\n:{chain} - [0:0]\n\
             [5:300] -A {chain} -p tcp -m tcp --dport 23 -j LOG --log-prefix \"x\"\n\
             [5:300] -A {chain} -p tcp -m tcp --dport 23 -j MARK --set-xmark 0x40000/0x40000\n\
             [5:300] -A {chain} -m mark --mark 0x40000/0x40000 -j DROP\n\
             [7:700] -A {chain} -p tcp -m tcp --dport 80 -j MARK --set-xmark 0x10000/0x10000\n\
             [7:700] -A {chain} -m mark --mark 0x10000/0x10000 -j RETURN\n\
             [2:100] -A {chain} -j MARK --set-xmark 0x20000/0x20000\nCOMMIT\n"
        );
        let policies = [ActivePolicy {
            name: "web".into(),
            tier: "default".into(),
        }];
        let counts = count(&policies, &[text], &marks());
        let got: Vec<(&str, &str, u64, u64)> = counts
            .iter()
            .map(|c| (c.direction, c.kind, c.packets, c.bytes))
            .collect();
        assert_eq!(
            got,
            [
                ("ingress", "allowed", 7, 700),
                ("ingress", "denied", 5, 300),
                ("ingress", "passed", 2, 100),
                ("ingress", "logged", 5, 300),
            ]
        );
    }

    #[test]
    fn policies_without_chains_have_no_series() {
        let policies = [ActivePolicy {
            name: "absent".into(),
            tier: "default".into(),
        }];
        assert!(count(&policies, &["*filter\nCOMMIT\n".to_string()], &marks()).is_empty());
    }
}
