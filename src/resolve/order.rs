//! Policy evaluation order: tier order, tier name, policy order, Felix's name tie-break, and the
//! per-class tier lists built from it. Pure.

use super::TierPolicies;
use crate::model::*;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Sort key for an optional order: absent means +infinity, after every number.
fn cmp_order(a: Option<f64>, b: Option<f64>) -> Ordering {
    match (a, b) {
        // Numeric comparison as Felix does (-0 equals 0, then the name decides); validation
        // admits no NaN, which would compare equal here.
        (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

/// A policy with its tier's order and default action, ready for per-endpoint filtering.
pub(super) struct OrderedPolicy<'a> {
    /// Position in `set.policies`.
    pub(super) index: usize,
    /// Which distinct selector text this policy has (policies often share one), so each
    /// distinct selector is evaluated once per endpoint.
    pub(super) selector_id: usize,
    pub(super) policy: &'a GlobalNetworkPolicy,
    /// The policy's name, one copy for every endpoint and class list it goes on.
    name: Arc<str>,
    default_action: TierAction,
}

/// Every policy in evaluation order: tier order (absent last), tier name, policy order (absent
/// last), then Felix's name tie-break (`tie_break`). Sorted once so that per endpoint only the selector is evaluated.
/// Also returns how many distinct selector texts there are.
pub(super) fn order_policies(set: &PolicySet) -> (Vec<OrderedPolicy<'_>>, usize) {
    let tiers: BTreeMap<&str, &Tier> = set
        .tiers
        .iter()
        .map(|t| (t.meta.name.as_str(), t))
        .collect();
    let tier_info = |name: &str| -> (Option<f64>, TierAction) {
        match tiers.get(name) {
            // A written-out `default` tier without order keeps the built-in order.
            Some(t) if name == DEFAULT_TIER => {
                (t.order.or(Some(DEFAULT_TIER_ORDER)), t.default_action)
            }
            Some(t) => (t.order, t.default_action),
            None if name == DEFAULT_TIER => (Some(DEFAULT_TIER_ORDER), TierAction::Deny),
            // Validation rejects unknown tiers; treat one defensively as last, fail closed.
            None => (None, TierAction::Deny),
        }
    };
    let mut selector_ids: HashMap<&str, usize> = HashMap::new();
    let mut ordered: Vec<(Option<f64>, OrderedPolicy<'_>)> = set
        .policies
        .iter()
        .enumerate()
        .map(|(index, p)| {
            let (tier_order, default_action) = tier_info(&p.tier);
            let next_id = selector_ids.len();
            let selector_id = *selector_ids.entry(p.selector.source()).or_insert(next_id);
            (
                tier_order,
                OrderedPolicy {
                    index,
                    selector_id,
                    policy: p,
                    name: p.meta.name.as_str().into(),
                    default_action,
                },
            )
        })
        .collect();
    ordered.sort_by(|(ta, a), (tb, b)| {
        cmp_order(*ta, *tb)
            .then_with(|| a.policy.tier.cmp(&b.policy.tier))
            .then_with(|| cmp_order(a.policy.order, b.policy.order))
            .then_with(|| tie_break(&a.policy.meta.name, &b.policy.meta.name))
    });
    let distinct = selector_ids.len();
    (ordered.into_iter().map(|(_, p)| p).collect(), distinct)
}

/// Felix v3.32's tie-break between policies of equal order (`PolKVLess` in
/// felix/calc/policy_sorter.go): the strings `name/namespace/kind` compare, not the names. Every
/// policy here is a GlobalNetworkPolicy without namespace, so the strings differ first where
/// the names do, or at the `/` after the shorter name: `web-2` sorts before `web` because `-`
/// is below `/`.
fn tie_break(a: &str, b: &str) -> Ordering {
    a.bytes().chain([b'/']).cmp(b.bytes().chain([b'/']))
}

/// Append `p` to a class list, opening a new tier entry when the tier changes.
pub(super) fn push_policy(list: &mut Vec<TierPolicies>, p: &OrderedPolicy<'_>) {
    match list.last_mut() {
        Some(last) if last.tier == p.policy.tier => last.policies.push(p.name.clone()),
        _ => list.push(TierPolicies {
            tier: p.policy.tier.clone(),
            default_action: p.default_action,
            policies: vec![p.name.clone()],
        }),
    }
}
