//! Rule hashes (the `cali:<16 chars>` comment), computed exactly as Felix does so that hashes
//! match a real Felix's: `h0 = SHA-224(chain name)`, `h_i = SHA-224(h_{i-1} || S_i)` with
//! `S_i` the Felix form `-A <chain> HASH ...`, text = first 16 chars of base64url-nopad(h_i).
//! Pure; knows nothing about the kernel.

use super::felix::write_hash_input;
use super::{HookPosition, HookRule, Rule, Table};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha224};
use std::collections::BTreeMap;

/// Length of the hash text Felix writes (96 bits of entropy).
pub const HASH_LEN: usize = 16;

/// Suffix Felix adds to a kernel chain's name when hashing its always-appended rules, so that
/// they differ from inserted rules with the same text.
pub const APPENDS_SUFFIX: &str = "*appends*";

/// Hashes of `rules` as rules of chain `chain_name`, in order. Linear in the total text size;
/// one scratch buffer is reused for every rule.
pub fn rule_hashes<'a, I>(chain_name: &str, rules: I) -> Vec<String>
where
    I: IntoIterator<Item = &'a Rule>,
{
    let mut hashes = Vec::new();
    each_rule_hash(chain_name, rules, |h| hashes.push(h.to_string()));
    hashes
}

/// `rule_hashes`, handing each hash to `out` in order instead of collecting them.
pub fn each_rule_hash<'a, I>(chain_name: &str, rules: I, mut out: impl FnMut(&str))
where
    I: IntoIterator<Item = &'a Rule>,
{
    let mut prev = Sha224::digest(chain_name.as_bytes());
    let mut scratch = String::with_capacity(256);
    let mut b64 = String::with_capacity(40);
    for rule in rules {
        scratch.clear();
        write_hash_input(&mut scratch, chain_name, rule);
        let mut h = Sha224::new();
        h.update(prev);
        h.update(scratch.as_bytes());
        prev = h.finalize();
        b64.clear();
        URL_SAFE_NO_PAD.encode_string(prev, &mut b64);
        out(&b64[..HASH_LEN]);
    }
}

/// Our hook rules in one kernel chain with their hashes, split by where they go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelChainHooks<'a> {
    /// Rules at the top of the chain (insert mode), in order.
    pub top: Vec<(&'a Rule, String)>,
    /// Rules after the foreign rules (append mode), in order.
    pub bottom: Vec<(&'a Rule, String)>,
    /// Rules at the very end regardless of mode, hashed as `<CHAIN>*appends*`.
    pub always_appended: Vec<(&'a Rule, String)>,
}

impl KernelChainHooks<'_> {
    /// All our hashes in the order they must appear, given the foreign rules in between.
    pub fn expected_layout(&self, foreign_rules: usize) -> Vec<Option<&str>> {
        let mut out = Vec::with_capacity(
            self.top.len() + foreign_rules + self.bottom.len() + self.always_appended.len(),
        );
        out.extend(self.top.iter().map(|(_, h)| Some(h.as_str())));
        out.extend(std::iter::repeat_n(None, foreign_rules));
        out.extend(self.bottom.iter().map(|(_, h)| Some(h.as_str())));
        out.extend(self.always_appended.iter().map(|(_, h)| Some(h.as_str())));
        out
    }

    /// True when the chain has none of our rules.
    pub fn is_empty(&self) -> bool {
        self.top.is_empty() && self.bottom.is_empty() && self.always_appended.is_empty()
    }
}

/// Groups a table's hook rules by kernel chain and hashes them as Felix does: the
/// inserted-or-appended rules of a kernel chain form one list hashed under the kernel chain's
/// name (Felix's `InsertOrAppendRules`); the always-appended ones form another hashed under
/// `<CHAIN>*appends*` (Felix's `AppendRules`).
pub fn hook_hashes(hooks: &[HookRule]) -> BTreeMap<&str, KernelChainHooks<'_>> {
    let mut grouped: BTreeMap<&str, (Vec<&HookRule>, Vec<&HookRule>)> = BTreeMap::new();
    for h in hooks {
        let entry = grouped.entry(h.kernel_chain.as_str()).or_default();
        match h.position {
            HookPosition::Insert | HookPosition::Append => entry.0.push(h),
            HookPosition::AlwaysAppend => entry.1.push(h),
        }
    }
    grouped
        .into_iter()
        .map(|(chain, (inserted, appended))| {
            let mut out = KernelChainHooks::default();
            let ins_hashes = rule_hashes(chain, inserted.iter().map(|h| &h.rule));
            for (h, hash) in inserted.iter().zip(ins_hashes) {
                match h.position {
                    HookPosition::Insert => out.top.push((&h.rule, hash)),
                    _ => out.bottom.push((&h.rule, hash)),
                }
            }
            let app_chain = format!("{chain}{APPENDS_SUFFIX}");
            let app_hashes = rule_hashes(&app_chain, appended.iter().map(|h| &h.rule));
            out.always_appended = appended
                .iter()
                .zip(app_hashes)
                .map(|(h, hash)| (&h.rule, hash))
                .collect();
            (chain, out)
        })
        .collect()
}

/// Hashes of every chain of a table, by chain name.
pub fn table_hashes(table: &Table) -> BTreeMap<&str, Vec<String>> {
    table
        .chains
        .values()
        .map(|c| (c.name.as_str(), rule_hashes(&c.name, &c.rules)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ruleset::{Action, Match};

    #[test]
    fn empty_chain_has_no_hashes() {
        assert!(rule_hashes("cali-x", &[]).is_empty());
    }

    #[test]
    fn hashes_depend_on_chain_and_position() {
        let r = Rule::jump_to("cali-a");
        let a = rule_hashes("cali-x", [&r, &r]);
        let b = rule_hashes("cali-y", [&r]);
        assert_eq!(a.len(), 2);
        assert_ne!(a[0], a[1]);
        assert_ne!(a[0], b[0]);
        assert!(a.iter().all(|h| h.len() == HASH_LEN
            && h.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')));
    }

    #[test]
    fn hash_follows_the_documented_construction() {
        // Recompute by hand from the definition (independent of rule_hashes' loop).
        let r = Rule {
            matches: vec![Match::ConntrackState {
                negated: false,
                states: "INVALID".into(),
            }]
            .into(),
            action: Action::Drop,
            comments: Default::default(),
        };
        let h0 = Sha224::digest(b"cali-fh-eth0");
        let mut h = Sha224::new();
        h.update(h0);
        h.update(b"-A cali-fh-eth0 HASH -m conntrack --ctstate INVALID --jump DROP");
        let expect = URL_SAFE_NO_PAD.encode(h.finalize())[..16].to_string();
        assert_eq!(rule_hashes("cali-fh-eth0", [&r]), vec![expect]);
    }
}

/// Hashes published by real Felix deployments (public `iptables-save` dumps in GitHub issues
/// and blog posts) reproduced from the Felix-form text of the rule.
#[cfg(test)]
mod felix_vectors {
    use super::*;
    use crate::ruleset::{Action, Match, PortSpec};

    fn failsafe(proto: &str, port: u16) -> Rule {
        Rule {
            matches: vec![
                Match::Protocol {
                    negated: false,
                    name: proto.into(),
                },
                Match::DestinationPorts {
                    negated: false,
                    ports: vec![PortSpec::Single(port)].into(),
                },
            ]
            .into(),
            action: Action::Accept,
            comments: Default::default(),
        }
    }

    #[test]
    fn hook_rules() {
        // `-A INPUT -m comment --comment "cali:Cz_u1IQiXIMmKD4c" -j cali-INPUT` (issue
        // projectcalico/calico#8002 and many k8s dumps); FORWARD from the same dumps.
        assert_eq!(
            rule_hashes("INPUT", [&Rule::jump_to("cali-INPUT")]),
            ["Cz_u1IQiXIMmKD4c"]
        );
        assert_eq!(
            rule_hashes("FORWARD", [&Rule::jump_to("cali-FORWARD")]),
            ["wUHhoiAYhphO9Mso"]
        );
    }

    #[test]
    fn failsafe_in_chain() {
        // projectcalico/calico#3835: cali-failsafe-in with tcp:22, udp:68, tcp:179,
        // tcp:2379, tcp:2380, tcp:6443 (a pre-5473 default list).
        let rules = [
            failsafe("tcp", 22),
            failsafe("udp", 68),
            failsafe("tcp", 179),
            failsafe("tcp", 2379),
            failsafe("tcp", 2380),
            failsafe("tcp", 6443),
        ];
        assert_eq!(
            rule_hashes("cali-failsafe-in", &rules),
            [
                "wWFQM43tJU7wwnFZ",
                "LwNV--R8MjeUYacw",
                "QOO5NUOqOSS1_Iw0",
                "cwZWoBSwVeIAZmVN",
                "7FbNXT91kugE_upR",
                "mPbJtAVtggkxHxc5",
            ]
        );
    }

    #[test]
    fn other_hooks_and_forward_appends() {
        // OUTPUT, PREROUTING, POSTROUTING hooks and FORWARD's two always-appended rules, as
        // seen in public k8s dumps (`-A FORWARD ... "cali:S93hcgKJrXEqnTfs" -m comment
        // --comment "Policy explicitly accepted packet." -m mark --mark 0x10000/0x10000 -j
        // ACCEPT` then `"cali:mp77cMpurHhyjLrM" -j MARK --set-xmark 0x10000/0x10000`).
        assert_eq!(
            rule_hashes("OUTPUT", [&Rule::jump_to("cali-OUTPUT")]),
            ["tVnHkvAo15HuiPy0"]
        );
        assert_eq!(
            rule_hashes("PREROUTING", [&Rule::jump_to("cali-PREROUTING")]),
            ["6gwbT8clXdHdC1b1"]
        );
        assert_eq!(
            rule_hashes("POSTROUTING", [&Rule::jump_to("cali-POSTROUTING")]),
            ["O3lYWMrLQYEMJtB5"]
        );
        let appends = [
            crate::ruleset::HookRule {
                kernel_chain: "FORWARD".into(),
                position: HookPosition::AlwaysAppend,
                rule: Rule {
                    matches: vec![Match::Mark {
                        negated: false,
                        value: 0x10000,
                        mask: 0x10000,
                    }]
                    .into(),
                    action: Action::Accept,
                    comments: vec!["Policy explicitly accepted packet.".into()].into(),
                },
            },
            crate::ruleset::HookRule {
                kernel_chain: "FORWARD".into(),
                position: HookPosition::AlwaysAppend,
                rule: Rule {
                    matches: Default::default(),
                    action: Action::SetMark {
                        value: 0x10000,
                        mask: 0x10000,
                    },
                    comments: Default::default(),
                },
            },
            crate::ruleset::HookRule {
                kernel_chain: "FORWARD".into(),
                position: HookPosition::Insert,
                rule: Rule::jump_to("cali-FORWARD"),
            },
        ];
        let grouped = hook_hashes(&appends);
        let fwd = &grouped["FORWARD"];
        assert_eq!(fwd.top.len(), 1);
        assert_eq!(fwd.top[0].1, "wUHhoiAYhphO9Mso");
        let app: Vec<&str> = fwd
            .always_appended
            .iter()
            .map(|(_, h)| h.as_str())
            .collect();
        assert_eq!(app, ["S93hcgKJrXEqnTfs", "mp77cMpurHhyjLrM"]);
    }

    #[test]
    fn clear_mark_spellings() {
        // A Felix v3.2x cali-FORWARD starts with `"cali:vjrMJCRpqwy5oRoX" -j MARK --set-xmark
        // 0x0/0xe0000` then `"cali:A_sPAO0mcxbT9mOV" -m mark --mark 0x0/0x10000 -j
        // cali-from-hep-forward`: only the Felix spelling `0/M` (not `0x0/M`) reproduces them.
        let rules = [
            Rule {
                matches: Default::default(),
                action: Action::SetMark {
                    value: 0,
                    mask: 0xe0000,
                },
                comments: Default::default(),
            },
            Rule {
                matches: vec![Match::Mark {
                    negated: false,
                    value: 0,
                    mask: 0x10000,
                }]
                .into(),
                action: Action::Jump("cali-from-hep-forward".into()),
                comments: Default::default(),
            },
        ];
        assert_eq!(
            rule_hashes("cali-FORWARD", &rules),
            ["vjrMJCRpqwy5oRoX", "A_sPAO0mcxbT9mOV"]
        );
    }

    #[test]
    fn nat_postrouting_chain() {
        // nat cali-POSTROUTING in a public dump: jump cali-fip-snat, then cali-nat-outgoing.
        assert_eq!(
            rule_hashes(
                "cali-POSTROUTING",
                [
                    &Rule::jump_to("cali-fip-snat"),
                    &Rule::jump_to("cali-nat-outgoing")
                ]
            ),
            ["Z-c7XtVd2Bq7s_hA", "nYKhEzDlr11Jccal"]
        );
    }
}
