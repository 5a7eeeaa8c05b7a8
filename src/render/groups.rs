//! Policy groups (Felix v3.28+: `groupPolicies` in felix/dataplane/linux/endpoint_mgr.go,
//! `PolicyGroup` and `PolicyGroupToIptablesChains` in felix/rules/endpoints.go): adjacent
//! policies of one tier and direction whose normalised selectors are equal share one
//! `cali-gi-`/`cali-go-` chain, so an endpoint chain jumps once per group. Pure.

use super::{commented, rule, Ctx};
use crate::model::Direction;
use crate::ruleset::{Action, Match, Rule, Shared};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha3::{Digest, Sha3_224};
use std::sync::Arc;

/// Felix's `PolicyGroupInboundPrefix` / `PolicyGroupOutboundPrefix`.
const INBOUND_PFX: &str = "cali-gi-";
const OUTBOUND_PFX: &str = "cali-go-";

/// Felix's `MaxPolicyGroupUIDLength`: the 28-character chain name limit less the prefix.
const UID_LEN: usize = 28 - INBOUND_PFX.len();

/// A RETURN on verdict is placed before every `RETURN_STRIDE`-th jump (Felix's `returnStride`).
const RETURN_STRIDE: usize = 5;

/// One run of adjacent policies with the same normalised selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Group<'a> {
    pub selector: &'a str,
    pub policies: &'a [Arc<str>],
}

impl Group<'_> {
    /// A group of one policy is jumped to directly (Felix's `ShouldBeInlined`).
    pub fn is_inlined(&self) -> bool {
        self.policies.len() < 2
    }
}

/// Splits a tier's policy list into groups, in order; `selector` gives a policy's normalised
/// selector (Felix's selector `String()`, `selector.Normalise` in felix/calc/rule_scanner.go).
pub(crate) fn group<'a>(
    policies: &'a [Arc<str>],
    selector: impl Fn(&str) -> &'a str,
) -> Vec<Group<'a>> {
    let mut groups: Vec<Group<'a>> = Vec::new();
    let mut start = 0;
    let mut current: Option<&'a str> = None;
    for (i, name) in policies.iter().enumerate() {
        let sel = selector(name);
        match current {
            Some(c) if c == sel => {}
            _ => {
                if let Some(c) = current.take() {
                    groups.push(Group {
                        selector: c,
                        policies: &policies[start..i],
                    });
                }
                start = i;
                current = Some(sel);
            }
        }
    }
    if let Some(c) = current {
        groups.push(Group {
            selector: c,
            policies: &policies[start..],
        });
    }
    groups
}

/// The group's chain: prefix plus Felix's `UniqueID()`, SHA3-224 over the selector, the
/// direction word (Felix's `PolicyDirection`: `inbound`/`outbound`, `Direction::label`), the
/// policy count and each policy's `PolicyID.String()`, each followed by a newline, base64url
/// without padding, cut to [`UID_LEN`].
pub(crate) fn chain_name(group: &Group, direction: Direction) -> String {
    let mut h = Sha3_224::new();
    let mut write = |s: &str| {
        h.update(s.as_bytes());
        h.update(b"\n");
    };
    write(group.selector);
    write(direction.label());
    write(&group.policies.len().to_string());
    for name in group.policies {
        write(&format!(
            "{{Name: {name}, Namespace: , Kind: GlobalNetworkPolicy}}"
        ));
    }
    let uid = URL_SAFE_NO_PAD.encode(h.finalize());
    let prefix = match direction {
        Direction::Ingress => INBOUND_PFX,
        Direction::Egress => OUTBOUND_PFX,
    };
    format!("{prefix}{}", &uid[..UID_LEN])
}

/// The group chain's rules: a jump to each policy chain; within each block of
/// [`RETURN_STRIDE`] only the first jump is unconditional (nothing can have set a verdict bit
/// yet), the others run only while pass and accept are clear, and a RETURN on either bit
/// opens every further block.
pub(crate) fn chain_rules(ctx: &Ctx, group: &Group, direction: Direction) -> Vec<Rule> {
    let m = &ctx.marks;
    let verdict = m.pass | m.accept;
    let unverdicted: Shared<Match> = vec![ctx.mark_clear(verdict)].into();
    // Every block's return is the same rule: one copy of its match and comment.
    let on_verdict = commented(
        vec![Match::Mark {
            negated: true,
            value: 0,
            mask: verdict,
        }],
        Action::Return,
        "Return on verdict",
    );
    let mut rules = Vec::with_capacity(group.policies.len() + group.policies.len() / 5);
    for (i, name) in group.policies.iter().enumerate() {
        if i != 0 && i % RETURN_STRIDE == 0 {
            rules.push(on_verdict.clone());
        }
        let guard = if i % RETURN_STRIDE == 0 {
            Shared::default()
        } else {
            unverdicted.clone()
        };
        rules.push(rule(guard, Action::Jump(ctx.policy_chain(name, direction))));
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<Arc<str>> {
        list.iter().map(|&s| s.into()).collect()
    }

    #[test]
    fn adjacent_equal_selectors_group() {
        // endpoint_mgr.go groupPolicies: a selector change starts a new group, even when an
        // earlier group had the same selector.
        let policies = names(&["a", "b", "c", "d", "e"]);
        let sel = |n: &str| if n == "c" { "x" } else { "all()" };
        let groups = group(&policies, sel);
        let shape: Vec<(&str, Vec<&str>)> = groups
            .iter()
            .map(|g| (g.selector, g.policies.iter().map(|p| &**p).collect()))
            .collect();
        assert_eq!(
            shape,
            [
                ("all()", vec!["a", "b"]),
                ("x", vec!["c"]),
                ("all()", vec!["d", "e"])
            ]
        );
        assert!(!groups[0].is_inlined());
        assert!(groups[1].is_inlined());
        assert!(group(&[], sel).is_empty());
    }

    #[test]
    fn chain_names_follow_felix_uid() {
        // Computed from the definition in felix/rules/endpoints.go with Python's
        // hashlib.sha3_224 (Felix's tests publish no value, only that IDs differ and are
        // stable): policies a, b with selector all().
        let ab = names(&["a", "b"]);
        let g = Group {
            selector: "all()",
            policies: &ab,
        };
        assert_eq!(
            chain_name(&g, Direction::Ingress),
            "cali-gi-js-B7zioflPRrAki3OCu"
        );
        assert_eq!(chain_name(&g, Direction::Ingress).len(), 28);
        assert_ne!(
            chain_name(&g, Direction::Ingress)[8..],
            chain_name(&g, Direction::Egress)[8..]
        );
        // endpoints_test.go "should make sensible UIDs": the inputs are delimited, so
        // (aaa, bbb) and (aaab, bb) differ.
        let (x, y) = (names(&["aaa", "bbb"]), names(&["aaab", "bb"]));
        let gx = Group {
            selector: "all()",
            policies: &x,
        };
        let gy = Group {
            selector: "all()",
            policies: &y,
        };
        assert_ne!(
            chain_name(&gx, Direction::Ingress),
            chain_name(&gy, Direction::Ingress)
        );
    }
}
