//! Per-policy packet and byte counts for `hostfw_policy_packets` / `hostfw_policy_bytes`: the
//! kernel's rule counters in each policy chain, grouped by what the rule does (allowed, denied,
//! passed, logged). Pure: the tables come in already read.
//!
//! How a rule's verdict shows in the chains render writes (Felix's layout, felix/rules/): allow
//! sets the accept mark, pass sets the pass mark, deny sets the drop mark and a second rule
//! DROPs on it (only the DROP is counted, so each denied packet counts once), log is a LOG or
//! NFLOG rule. RETURNs only end the chain and count as nothing.

use crate::render::marks::Marks;
use crate::render::names;
use crate::ruleset::save::LiveTable;
use std::collections::BTreeMap;

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

/// Sum each active policy's chains over every table and family. A policy with no chain in the
/// kernel gets no series; one with chains gets all four kinds (zero until traffic comes).
pub fn count(policies: &[ActivePolicy], tables: &[LiveTable], marks: &Marks) -> Vec<PolicyCount> {
    let mut out = Vec::new();
    for policy in policies {
        for (direction, prefix) in [
            ("ingress", names::POLICY_INBOUND_PFX),
            ("egress", names::POLICY_OUTBOUND_PFX),
        ] {
            let chain = names::policy_chain(prefix, &policy.name);
            let mut sums: BTreeMap<&'static str, (u64, u64)> = BTreeMap::new();
            let mut present = false;
            for live in tables.iter().filter_map(|t| t.chains.get(&chain)) {
                present = true;
                for rule in &live.rules {
                    if let Some(kind) = kind_of(&rule.text, marks) {
                        let entry = sums.entry(kind).or_default();
                        entry.0 = entry.0.saturating_add(rule.packets);
                        entry.1 = entry.1.saturating_add(rule.bytes);
                    }
                }
            }
            if !present {
                continue;
            }
            for kind in KINDS {
                let (packets, bytes) = sums.get(kind).copied().unwrap_or_default();
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
    use crate::ruleset::save::parse_save;

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
        let table = parse_save(&text).expect("parses");
        let policies = [ActivePolicy {
            name: "web".into(),
            tier: "default".into(),
        }];
        let counts = count(&policies, &[table], &marks());
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
        assert!(count(&policies, &[LiveTable::default()], &marks()).is_empty());
    }
}
