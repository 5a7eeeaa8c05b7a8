//! Per-endpoint chains (`docs/felix-layout.md` "Endpoint chains"; Felix
//! `felix/rules/endpoints.go`, `endpointIptablesChain`): conntrack, failsafe, tiers of policy
//! jumps, profiles and the final deny, per chain type, with the provenance of the rules that
//! decide a verdict (tier ends, the forward default, the profile fall-through).
//!
//! Within a tier, adjacent policies with the same normalised selector are jumped to through
//! one policy-group chain, as Felix v3.28+ does (`groups`).
//!
//! A chain's body is taken from the render memo (`memo`) when an earlier endpoint of this
//! render, or the last render, built it from the same inputs (`Spec::feed`).

use super::groups;
use super::memo::Body;
use super::names;
use super::provenance::{ChainOwner, Origin, OwnerKind, Recorder, Traced};
use super::{clear_mark, commented, put_shared, rule, set_mark, with_comments, Ctx};
use crate::model::{Direction, InterfaceName, TierAction};
use crate::resolve::{ActiveEndpoint, NodeView, TierPolicies};
use crate::ruleset::{Action, Chain, Match, Name, Rule, Shared, TableName};
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

/// Felix's endpoint chain types; they differ in conntrack, failsafe, end-of-tier and profile
/// handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Normal,
    Forward,
    PreDnat,
    Untracked,
}

/// The interface name an endpoint's chains are named after.
pub(crate) fn iface_name(ep: &ActiveEndpoint) -> &str {
    match &ep.interface {
        InterfaceName::Named(n) => n,
        InterfaceName::Any => names::ANY_INTERFACE,
    }
}

/// Add the endpoint chains of `table` for every active endpoint, recording their owners and
/// rule origins in `rec`.
pub fn add<'v>(
    ctx: &Ctx<'v>,
    table: TableName,
    chains: &mut BTreeMap<String, Chain>,
    rec: &mut Recorder,
) {
    let view: &'v NodeView = ctx.view;
    for ep in &view.endpoints {
        let iface = iface_name(ep);
        let shown = match &ep.interface {
            InterfaceName::Named(n) => n.as_str(),
            InterfaceName::Any => "*",
        };
        let p = &ep.policies;
        // Felix allows forwarded traffic by default only when the endpoint has no forward tier
        // in either direction (felix/calc/event_sequencer.go tierInfoToProtoTierInfo,
        // felix/rules/endpoints.go endpointIptablesChain).
        let forward_tiers = p
            .forward_ingress
            .iter()
            .chain(&p.forward_egress)
            .any(|t| !t.policies.is_empty());
        let mut add = |prefix: &str, spec: Spec<'v>| {
            let name = names::endpoint_chain(prefix, iface);
            let key = ctx.memo.key_of(|h| spec.feed(ctx, table, forward_tiers, h));
            let body = ctx.memo.body(ctx.family, table, key, || {
                let mut groups = Vec::new();
                let (traced, tier_ends) = spec.rules(ctx, table, rec, forward_tiers, &mut groups);
                Body {
                    rules: traced.rules.into(),
                    origins: traced.origins,
                    tier_ends,
                    groups: groups.into_iter().map(|(n, r)| (n, r.into())).collect(),
                }
            });
            // The group chains are the same for every endpoint sharing the body.
            for (group, rules) in &body.groups {
                put_shared(chains, group.clone(), rules.clone());
            }
            rec.own(
                &name,
                ChainOwner {
                    kind: OwnerKind::Endpoint {
                        interface: shown.to_string(),
                    },
                    name: ep.hep.clone(),
                    direction: spec.dir,
                },
            );
            let mut tier_ends = body.tier_ends.iter();
            // Collected: a tier's index is the recorder's, which `rules` borrows too.
            let origins: Vec<_> = body
                .origins
                .iter()
                .map(|&(i, origin)| match origin {
                    Origin::TierEnd(_) => {
                        let tier = tier_ends.next().map_or("", String::as_str);
                        (i, Origin::TierEnd(rec.tier(tier)))
                    }
                    _ => (i, origin),
                })
                .collect();
            rec.rules(table, &name, origins);
            put_shared(chains, name, body.rules.clone());
        };
        match table {
            TableName::Filter => {
                let allow = ctx.filter_allow();
                add(
                    names::TO_HOST_ENDPOINT_PFX,
                    Spec::new(
                        Kind::Normal,
                        Direction::Egress,
                        &p.egress,
                        &ep.profiles,
                        allow.clone(),
                    ),
                );
                add(
                    names::FROM_HOST_ENDPOINT_PFX,
                    Spec::new(
                        Kind::Normal,
                        Direction::Ingress,
                        &p.ingress,
                        &ep.profiles,
                        allow.clone(),
                    ),
                );
                add(
                    names::TO_HOST_ENDPOINT_FORWARD_PFX,
                    Spec::new(
                        Kind::Forward,
                        Direction::Egress,
                        &p.forward_egress,
                        &ep.profiles,
                        allow.clone(),
                    ),
                );
                add(
                    names::FROM_HOST_ENDPOINT_FORWARD_PFX,
                    Spec::new(
                        Kind::Forward,
                        Direction::Ingress,
                        &p.forward_ingress,
                        &ep.profiles,
                        allow,
                    ),
                );
            }
            TableName::Mangle => {
                // Mangle returns rather than accepts so other mangle users still see the packet.
                add(
                    names::TO_HOST_ENDPOINT_PFX,
                    Spec::new(
                        Kind::Normal,
                        Direction::Egress,
                        &p.egress,
                        &ep.profiles,
                        Action::Return,
                    ),
                );
                if !p.pre_dnat_ingress.is_empty() {
                    add(
                        names::FROM_HOST_ENDPOINT_PFX,
                        Spec::new(
                            Kind::PreDnat,
                            Direction::Ingress,
                            &p.pre_dnat_ingress,
                            &[],
                            ctx.mangle_allow(),
                        ),
                    );
                }
            }
            TableName::Raw => {
                let untracked = !p.untracked_ingress.is_empty() || !p.untracked_egress.is_empty();
                if untracked && ep.interface != InterfaceName::Any {
                    add(
                        names::TO_HOST_ENDPOINT_PFX,
                        Spec::new(
                            Kind::Untracked,
                            Direction::Egress,
                            &p.untracked_egress,
                            &[],
                            Action::Accept,
                        ),
                    );
                    add(
                        names::FROM_HOST_ENDPOINT_PFX,
                        Spec::new(
                            Kind::Untracked,
                            Direction::Ingress,
                            &p.untracked_ingress,
                            &[],
                            Action::Accept,
                        ),
                    );
                }
            }
            TableName::Nat => {}
        }
    }
}

struct Spec<'a> {
    kind: Kind,
    dir: Direction,
    tiers: &'a [TierPolicies],
    profiles: &'a [String],
    allow: Action,
}

impl<'a> Spec<'a> {
    fn new(
        kind: Kind,
        dir: Direction,
        tiers: &'a [TierPolicies],
        profiles: &'a [String],
        allow: Action,
    ) -> Self {
        Spec {
            kind,
            dir,
            tiers,
            profiles,
            allow,
        }
    }

    /// The chain's rules, and the tier of each tier end among their origins; the policy-group
    /// chains it jumps to go to `group_chains`. `forward_tiers`: whether the endpoint has
    /// forward policy in either direction. Reads only what `feed` hashes.
    fn rules(
        &self,
        ctx: &Ctx,
        table: TableName,
        rec: &mut Recorder,
        forward_tiers: bool,
        group_chains: &mut Vec<(String, Vec<Rule>)>,
    ) -> (Traced, Vec<String>) {
        let mut tier_ends = Vec::new();
        let m = &ctx.marks;
        let deny = ctx.deny(table);
        // A jump and a return per policy (and a NOTRACK between them when untracked), a tier
        // start and end per tier: at most, as a policy group takes one jump for several.
        let per_policy = if self.kind == Kind::Untracked { 3 } else { 2 };
        let jumps: usize = self
            .tiers
            .iter()
            .map(|t| per_policy * t.policies.len() + 2)
            .sum();
        let mut rules = Traced::with_capacity(8 + jumps + 2 * self.profiles.len());
        if self.kind != Kind::Untracked {
            let established = Match::ConntrackState {
                negated: false,
                states: "RELATED,ESTABLISHED".into(),
            };
            if self.allow != Action::Accept {
                // RETURN alone would lose the verdict; flag it for the caller.
                rules.push(rule(vec![established.clone()], set_mark(m.accept)));
            }
            rules.push(rule(vec![established], self.allow.clone()));
            if !ctx.cfg.disable_conntrack_invalid_check {
                rules.push(rule(
                    vec![Match::ConntrackState {
                        negated: false,
                        states: "INVALID".into(),
                    }],
                    deny.clone(),
                ));
            }
        }
        if self.kind != Kind::Forward {
            let failsafe = match self.dir {
                Direction::Ingress => names::FAILSAFE_IN,
                Direction::Egress => names::FAILSAFE_OUT,
            };
            rules.push(rule(vec![], Action::Jump(failsafe.into())));
        }
        rules.push(rule(vec![], clear_mark(m.accept | m.pass)));
        // One copy for the return after every policy jump of the chain, and one of each match
        // every jump and return carries (`Shared`).
        let accepted: Shared<Name> = vec!["Return if policy accepted".into()].into();
        let unpassed: Shared<Match> = vec![ctx.mark_clear(m.pass)].into();
        let was_accepted: Shared<Match> = vec![ctx.mark_set(m.accept)].into();
        for tier in self.tiers.iter().filter(|t| !t.policies.is_empty()) {
            rules.push(commented(
                vec![],
                clear_mark(m.pass),
                &format!("Start of tier {}", tier.tier),
            ));
            for group in groups::group(&tier.policies, |name| ctx.policy_selector(name)) {
                let target = if group.is_inlined() {
                    ctx.policy_chain(&group.policies[0], self.dir)
                } else {
                    let name = groups::chain_name(&group, self.dir);
                    let target = name.as_str().into();
                    group_chains.push((name, groups::chain_rules(ctx, &group, self.dir)));
                    target
                };
                rules.push(rule(unpassed.clone(), Action::Jump(target)));
                if self.kind == Kind::Untracked {
                    // An untracked allow is "NOTRACK and allow".
                    rules.push(rule(was_accepted.clone(), Action::NoTrack));
                }
                rules.push(with_comments(
                    was_accepted.clone(),
                    Action::Return,
                    accepted.clone(),
                ));
            }
            let ends_in_deny = matches!(self.kind, Kind::Normal | Kind::Forward)
                && tier.default_action != TierAction::Pass;
            if ends_in_deny {
                let origin = Origin::TierEnd(rec.tier(&tier.tier));
                tier_ends.push(tier.tier.clone());
                rules.push_from(
                    commented(
                        vec![ctx.mark_clear(m.pass)],
                        deny.clone(),
                        &format!(
                            "End of tier {}. {} if no policies passed packet",
                            tier.tier,
                            ctx.deny_word(table)
                        ),
                    ),
                    origin,
                );
            }
        }
        let any_tier = self.tiers.iter().any(|t| !t.policies.is_empty());
        if !forward_tiers && self.kind == Kind::Forward {
            rules.push_from(
                commented(
                    vec![],
                    set_mark(m.accept),
                    "Allow forwarded traffic by default",
                ),
                Origin::ForwardDefaultAllow,
            );
            rules.push(commented(
                vec![],
                Action::Return,
                "Return for accepted forward traffic",
            ));
        }
        if self.kind == Kind::Normal {
            let profile_prefix = names::profile_prefix(self.dir);
            for profile in self.profiles {
                rules.push(rule(
                    vec![],
                    Action::Jump(names::profile_chain(profile_prefix, profile).into()),
                ));
                rules.push(commented(
                    vec![ctx.mark_set(m.accept)],
                    Action::Return,
                    "Return if profile accepted",
                ));
            }
            // With nothing to jump to, the deny is the endpoint's default rather than the end
            // of an evaluation.
            let origin = if any_tier || !self.profiles.is_empty() {
                Origin::ProfileFallThrough
            } else {
                Origin::DefaultAction
            };
            rules.push_from(
                commented(
                    vec![],
                    deny,
                    &format!("{} if no profiles matched", ctx.deny_word(table)),
                ),
                origin,
            );
        }
        (rules, tier_ends)
    }

    /// Everything `rules` builds the chain from, into `h` (`bodies`: equal inputs, equal
    /// chains). Policy chain names are a function of the policy names, so those stand for them.
    fn feed(&self, ctx: &Ctx, table: TableName, forward_tiers: bool, h: &mut impl Hasher) {
        ctx.family.hash(h);
        table.hash(h);
        ctx.marks.hash(h);
        ctx.deny(table).hash(h);
        ctx.cfg.disable_conntrack_invalid_check.hash(h);
        self.kind.hash(h);
        self.dir.hash(h);
        self.allow.hash(h);
        forward_tiers.hash(h);
        self.profiles.hash(h);
        self.tiers.len().hash(h);
        for tier in self.tiers {
            tier.tier.hash(h);
            tier.default_action.hash(h);
            tier.policies.len().hash(h);
            for name in &tier.policies {
                name.hash(h);
                // The selectors decide the policy groups.
                ctx.policy_selector(name).hash(h);
            }
        }
    }
}
