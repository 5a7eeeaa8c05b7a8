//! Interface dispatch chains (`docs/felix-layout.md` "Chains and hooks"; Felix
//! `felix/rules/dispatch.go`): one `--goto` per endpoint interface, split into a one-level
//! prefix tree when several names share the next character after their common prefix, and the
//! `*` endpoint as the end rule.

use super::names;
use super::static_chains::{in_iface, out_iface};
use super::{commented, put, rule, Ctx};
use crate::model::InterfaceName;
use crate::resolve::ActiveEndpoint;
use crate::ruleset::{Action, Chain, Match, Rule, TableName};
use std::collections::BTreeMap;

/// Add the dispatch chains of `table`.
pub fn add(ctx: &Ctx, table: TableName, chains: &mut BTreeMap<String, Chain>) {
    let eps = &ctx.view.endpoints;
    match table {
        TableName::Raw => {
            // Untracked policy never applies to the `*` endpoint (Felix ignores it there).
            let names = named(eps, |e| {
                !e.policies.untracked_ingress.is_empty() || !e.policies.untracked_egress.is_empty()
            });
            emit(
                chains,
                names::FROM_HOST_DISPATCH,
                &names,
                in_iface,
                names::FROM_HOST_ENDPOINT_PFX,
                &[],
            );
            emit(
                chains,
                names::TO_HOST_DISPATCH,
                &names,
                out_iface,
                names::TO_HOST_ENDPOINT_PFX,
                &[],
            );
        }
        TableName::Mangle => {
            let pre_dnat = named(eps, |e| !e.policies.pre_dnat_ingress.is_empty());
            let any_pre_dnat = any(eps).filter(|e| !e.policies.pre_dnat_ingress.is_empty());
            let from_end = default_goto(any_pre_dnat, names::FROM_HOST_ENDPOINT_PFX);
            emit(
                chains,
                names::FROM_HOST_DISPATCH,
                &pre_dnat,
                in_iface,
                names::FROM_HOST_ENDPOINT_PFX,
                &from_end,
            );
            let all = named(eps, |_| true);
            let mut to_end = Vec::new();
            if any(eps).is_some() {
                // Host-to-local-workload traffic never gets wildcard egress policy (one rule per
                // workload prefix, felix/rules/dispatch.go).
                for prefix in ctx.cfg.workload_prefixes() {
                    to_end.push(commented(
                        vec![out_iface(&format!("{prefix}+"))],
                        Action::Return,
                        "Skip egress WHEP policy for traffic to local workload",
                    ));
                }
            }
            to_end.extend(default_goto(any(eps), names::TO_HOST_ENDPOINT_PFX));
            emit(
                chains,
                names::TO_HOST_DISPATCH,
                &all,
                out_iface,
                names::TO_HOST_ENDPOINT_PFX,
                &to_end,
            );
        }
        TableName::Filter => {
            let all = named(eps, |_| true);
            let wildcard = any(eps);
            for (chain, matcher, prefix) in [
                (
                    names::FROM_HOST_DISPATCH,
                    in_iface as fn(&str) -> Match,
                    names::FROM_HOST_ENDPOINT_PFX,
                ),
                (
                    names::TO_HOST_DISPATCH,
                    out_iface,
                    names::TO_HOST_ENDPOINT_PFX,
                ),
                (
                    names::FROM_HEP_FORWARD_DISPATCH,
                    in_iface,
                    names::FROM_HOST_ENDPOINT_FORWARD_PFX,
                ),
                (
                    names::TO_HEP_FORWARD_DISPATCH,
                    out_iface,
                    names::TO_HOST_ENDPOINT_FORWARD_PFX,
                ),
            ] {
                let end = default_goto(wildcard, prefix);
                emit(chains, chain, &all, matcher, prefix, &end);
            }
        }
        TableName::Nat => {}
    }
}

/// Sorted, de-duplicated interface names of the named endpoints that satisfy `keep`.
fn named(eps: &[ActiveEndpoint], keep: impl Fn(&ActiveEndpoint) -> bool) -> Vec<String> {
    let mut names: Vec<String> = eps
        .iter()
        .filter(|e| keep(e))
        .filter_map(|e| match &e.interface {
            InterfaceName::Named(n) if !n.is_empty() => Some(n.clone()),
            _ => None,
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

fn any(eps: &[ActiveEndpoint]) -> Option<&ActiveEndpoint> {
    eps.iter().find(|e| e.interface == InterfaceName::Any)
}

fn default_goto(wildcard: Option<&ActiveEndpoint>, prefix: &str) -> Vec<Rule> {
    wildcard
        .map(|_| {
            rule(
                vec![],
                Action::Goto(names::endpoint_chain(prefix, names::ANY_INTERFACE).into()),
            )
        })
        .into_iter()
        .collect()
}

/// Build the root dispatch chain `root` (and its children) for `ifaces` (sorted, unique).
fn emit(
    chains: &mut BTreeMap<String, Chain>,
    root: &str,
    ifaces: &[String],
    matcher: fn(&str) -> Match,
    endpoint_prefix: &str,
    end_rules: &[Rule],
) {
    let goto = |name: &str| {
        rule(
            vec![matcher(name)],
            Action::Goto(names::endpoint_chain(endpoint_prefix, name).into()),
        )
    };
    let mut root_rules = Vec::new();
    for (prefix, members) in prefix_buckets(ifaces) {
        if members.len() > 1 {
            let child = names::dispatch_child_chain(root, &prefix.next);
            root_rules.push(rule(
                vec![matcher(&format!("{}+", prefix.full))],
                Action::Goto(child.as_str().into()),
            ));
            let mut child_rules: Vec<Rule> = members.iter().map(|n| goto(n)).collect();
            // The root's goto skips its end rules, so the child repeats them.
            child_rules.extend_from_slice(end_rules);
            put(chains, child, child_rules);
        } else {
            root_rules.extend(members.iter().map(|n| goto(n)));
        }
    }
    root_rules.extend_from_slice(end_rules);
    put(chains, root.to_string(), root_rules);
}

/// A bucket of the prefix tree: the common prefix plus one more character.
struct Prefix {
    full: String,
    /// The character after the common prefix (empty for a name equal to the common prefix).
    next: String,
}

/// Felix's `sortAndDivideEndpointNamesToPrefixTree`: bucket names by the first character after
/// their common prefix, keeping sorted order.
fn prefix_buckets(ifaces: &[String]) -> Vec<(Prefix, Vec<String>)> {
    let common = common_prefix(ifaces);
    let mut out: Vec<(Prefix, Vec<String>)> = Vec::new();
    for name in ifaces {
        let full: String = if name.len() > common.len() {
            let end = next_boundary(name, common.len());
            name[..end].to_string()
        } else {
            common.clone()
        };
        match out.last_mut() {
            Some((p, members)) if p.full == full => members.push(name.clone()),
            _ => {
                let next = full[common.len()..].to_string();
                out.push((Prefix { full, next }, vec![name.clone()]));
            }
        }
    }
    out
}

/// Byte length of the longest common prefix, cut back to a character boundary.
fn common_prefix(names: &[String]) -> String {
    let Some(first) = names.first() else {
        return String::new();
    };
    let mut len = first.len();
    for n in &names[1..] {
        len = len.min(
            first
                .bytes()
                .zip(n.bytes())
                .take_while(|(a, b)| a == b)
                .count(),
        );
    }
    while !first.is_char_boundary(len) {
        len -= 1;
    }
    first[..len].to_string()
}

/// Index just past the character starting at byte `at`.
fn next_boundary(s: &str, at: usize) -> usize {
    s[at..].chars().next().map_or(at, |c| at + c.len_utf8())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn single_name_is_direct() {
        let b = prefix_buckets(&strings(&["eth0"]));
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].1, strings(&["eth0"]));
    }

    #[test]
    fn buckets_by_next_character() {
        let b = prefix_buckets(&strings(&["eth0", "eth1", "eth10", "eth11", "eth2"]));
        let shape: Vec<(String, Vec<String>)> = b.into_iter().map(|(p, m)| (p.next, m)).collect();
        assert_eq!(
            shape,
            vec![
                ("0".to_string(), strings(&["eth0"])),
                ("1".to_string(), strings(&["eth1", "eth10", "eth11"])),
                ("2".to_string(), strings(&["eth2"])),
            ]
        );
    }

    #[test]
    fn tree_chains_repeat_end_rules() {
        let mut chains = BTreeMap::new();
        let end = vec![rule(
            vec![],
            Action::Goto("cali-fh-any-interface-at-all".into()),
        )];
        emit(
            &mut chains,
            names::FROM_HOST_DISPATCH,
            &strings(&["eth0", "eth1", "eth10"]),
            in_iface,
            names::FROM_HOST_ENDPOINT_PFX,
            &end,
        );
        let root = &chains["cali-from-host-endpoint"].rules;
        assert_eq!(root.len(), 3);
        assert_eq!(root[0].action, Action::Goto("cali-fh-eth0".into()));
        assert_eq!(root[1].matches, vec![in_iface("eth1+")].into());
        assert_eq!(
            root[1].action,
            Action::Goto("cali-from-host-endpoint-1".into())
        );
        assert_eq!(root[2], end[0]);
        let child = &chains["cali-from-host-endpoint-1"].rules;
        assert_eq!(child.len(), 3);
        assert_eq!(child[1].action, Action::Goto("cali-fh-eth10".into()));
        assert_eq!(child[2], end[0]);
    }
}
