//! Policy and profile chains (`docs/felix-layout.md` "Policy and profile chains"; Felix
//! `felix/rules/policy.go`): each API rule becomes one or more iptables rules — IP-version
//! filtering, match blocks for OR-ed nets and ports, the 15-slot multiport split, selector and
//! named-port ipsets, then the action via mark bits — each recorded as coming from its API rule.

use super::ipsets::{named_port_protocol, SetCollector, NAMED_PORT_ANY_PROTOCOL};
use super::memo::PolicyChain;
use super::names;
use super::provenance::{index_u32, ChainOwner, Origin, OwnerKind, Recorder};
use super::static_chains::same_family;
use super::{clear_mark, put, put_shared, rule, set_mark, Ctx, FastSet, RenderError};
use crate::model::selector::Selector;
use crate::model::{
    self, Direction, EntityRule, InterfaceName, IpVersion, Port, Protocol, RateUnit, RuleAction,
    DEFAULT_ALLOW_PROFILE,
};
use crate::resolve::NodeView;
use crate::ruleset::{Action, Chain, Family, Match, Name, PortSpec, Rule, SetDirection, TableName};
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::sync::LazyLock;

/// Slots in one `-m multiport` match: a port costs one, a range two.
pub(crate) const MULTIPORT_SLOTS: usize = 15;

/// iptables' limit on `--log-prefix`.
pub(crate) const MAX_LOG_PREFIX_LEN: usize = 29;

/// Who owns the rules being rendered: decides the chain comment and LOG prefix expansion.
struct Owner<'a> {
    /// `GlobalNetworkPolicy` or `Profile`.
    kind: &'static str,
    /// `gnp` or `pro` (LOG `%k`).
    kind_short: &'static str,
    name: &'a str,
    /// Tier (LOG `%t`); empty for profiles.
    tier: &'a str,
}

/// The policies whose filter chains are programmed even when no endpoint jumps to them
/// (`performanceHints: [AssumeNeededOnEveryNode]`; felix/dataplane/linux/policy_mgr.go sets
/// `ForceProgramming` on them in the filter table only).
pub(crate) fn forced_policies(view: &NodeView) -> impl Iterator<Item = &str> {
    view.policies
        .values()
        .filter(|p| p.assume_needed_on_every_node)
        .map(|p| p.meta.name.as_str())
}

/// Add the policy and profile chains that the endpoint chains of `table` jump to, recording
/// their owners and which API rule each iptables rule came from in `rec`.
pub fn add(
    ctx: &Ctx,
    table: TableName,
    sets: &mut SetCollector,
    chains: &mut BTreeMap<String, Chain>,
    rec: &mut Recorder,
) -> Result<(), RenderError> {
    // Hash sets while collecting (many endpoints list the same policies), sorted afterwards
    // so chains are built in a deterministic order.
    let mut policies: FastSet<(&str, Direction)> = FastSet::default();
    let mut profiles: FastSet<(&str, Direction)> = FastSet::default();
    for ep in &ctx.view.endpoints {
        let p = &ep.policies;
        let mut want = |tiers, dir| want_policies(&mut policies, tiers, dir);
        match table {
            TableName::Filter => {
                want(&p.ingress, Direction::Ingress);
                want(&p.egress, Direction::Egress);
                want(&p.forward_ingress, Direction::Ingress);
                want(&p.forward_egress, Direction::Egress);
                for prof in &ep.profiles {
                    profiles.insert((prof.as_str(), Direction::Ingress));
                    profiles.insert((prof.as_str(), Direction::Egress));
                }
            }
            TableName::Mangle => {
                want(&p.egress, Direction::Egress);
                want(&p.pre_dnat_ingress, Direction::Ingress);
                for prof in &ep.profiles {
                    profiles.insert((prof.as_str(), Direction::Egress));
                }
            }
            TableName::Raw => {
                if ep.interface != InterfaceName::Any {
                    want(&p.untracked_ingress, Direction::Ingress);
                    want(&p.untracked_egress, Direction::Egress);
                }
            }
            TableName::Nat => {}
        }
    }
    if table == TableName::Filter {
        for name in forced_policies(ctx.view) {
            for dir in Direction::ALL {
                policies.insert((name, dir));
            }
        }
    }
    let mut policies: Vec<(&str, Direction)> = policies.into_iter().collect();
    policies.sort_unstable();
    let mut profiles: Vec<(&str, Direction)> = profiles.into_iter().collect();
    profiles.sort_unstable();
    for (name, dir) in policies {
        let Some(policy) = ctx.view.policies.get(name) else {
            continue;
        };
        let owner = Owner {
            kind: names::GNP_KIND,
            kind_short: names::GNP_KIND_SHORT,
            name,
            tier: &policy.tier,
        };
        let api_rules = match dir {
            Direction::Ingress => &policy.ingress,
            Direction::Egress => &policy.egress,
        };
        let chain = ctx.policy_chain(name, dir);
        let mut taken = true;
        let built = ctx
            .memo
            .policy_chain(ctx.family, table, &chain, policy, || {
                taken = false;
                let (built, sets) =
                    sets.noting(|sets| chain_rules(ctx, table, sets, api_rules, &owner, dir));
                let (rules, origins) = built?;
                Ok(PolicyChain {
                    rules: rules.into(),
                    origins: origins.into(),
                    sets: sets.into(),
                })
            })?;
        // A chain built just now asked for its sets while it was built.
        if taken {
            sets.ask_again(&built.sets);
        }
        rec.own(
            &chain,
            ChainOwner {
                kind: OwnerKind::Policy {
                    tier: policy.tier.clone(),
                },
                name: name.to_string(),
                direction: dir,
            },
        );
        rec.rules(table, &chain, built.origins.iter().copied());
        put_shared(chains, chain.to_string(), built.rules.clone());
    }
    // The built-in `projectcalico-default-allow` profile: allow everything.
    let allow_all = vec![model::Rule::matching_all(RuleAction::Allow)];
    for (name, dir) in profiles {
        let api_rules = match (ctx.view.profiles.get(name), dir) {
            (Some(p), Direction::Ingress) => &p.ingress,
            (Some(p), Direction::Egress) => &p.egress,
            (None, _) if name == DEFAULT_ALLOW_PROFILE => &allow_all,
            (None, _) => continue,
        };
        let owner = Owner {
            kind: "Profile",
            kind_short: "pro",
            name,
            tier: "",
        };
        let (rules, origins) = chain_rules(ctx, table, sets, api_rules, &owner, dir)?;
        let chain = names::profile_chain(names::profile_prefix(dir), name);
        rec.own(
            &chain,
            ChainOwner {
                kind: OwnerKind::Profile,
                name: name.to_string(),
                direction: dir,
            },
        );
        rec.rules(table, &chain, origins);
        put(chains, chain, rules);
    }
    Ok(())
}

fn want_policies<'v>(
    set: &mut FastSet<(&'v str, Direction)>,
    tiers: &'v [crate::resolve::TierPolicies],
    dir: Direction,
) {
    for t in tiers {
        for name in &t.policies {
            set.insert((&**name, dir));
        }
    }
}

/// A policy or profile chain's rules and, for each, the API rule it came from.
type ChainRules = (Vec<Rule>, Vec<(u32, Origin)>);

/// All rules of one policy/profile chain: each API rule rendered, trailing RETURNs stripped (no
/// matter their matches they are no-ops), the chain comment on the first rule (on a placeholder
/// rule, which comes from no API rule, when nothing else is left).
fn chain_rules(
    ctx: &Ctx,
    table: TableName,
    sets: &mut SetCollector,
    api_rules: &[model::Rule],
    owner: &Owner,
    dir: Direction,
) -> Result<ChainRules, RenderError> {
    let mut rules = Vec::new();
    let mut origins = Vec::new();
    for (i, r) in api_rules.iter().enumerate() {
        let origin = Origin::ApiRule(index_u32(i));
        for one in api_rule(ctx, table, sets, r, owner)? {
            origins.push((index_u32(rules.len()), origin));
            rules.push(one);
        }
    }
    while rules.last().is_some_and(|r| r.action == Action::Return) {
        rules.pop();
        origins.pop();
    }
    if rules.is_empty() {
        rules.push(rule(vec![], Action::None));
    }
    let named = format!("{} {} {}", owner.kind, owner.name, dir.api_name());
    rules[0].comments = rules[0].comments.and([named.into()]);
    Ok((rules, origins))
}

/// Nets of one list kept for `family`; `None` when a non-empty list empties out, or (negated
/// lists) holds the catch-all, either of which removes the rule from this family.
fn filter_nets(nets: &[IpNet], family: Family, negated: bool) -> Option<Vec<IpNet>> {
    if nets.is_empty() {
        return Some(Vec::new());
    }
    let kept: Vec<IpNet> = nets
        .iter()
        .filter(|n| same_family(family, n))
        .copied()
        .collect();
    if kept.is_empty() || (negated && kept.iter().any(|n| n.prefix_len() == 0)) {
        return None;
    }
    Some(kept)
}

/// Whether an API rule is rendered in `family` at all (explicit `ipVersion`, or the version
/// implied by an ICMP/ICMPv6 protocol).
fn rule_in_family(r: &model::Rule, family: Family) -> bool {
    let want = match family {
        Family::V4 => IpVersion::V4,
        Family::V6 => IpVersion::V6,
    };
    let implied = match r.protocol {
        Some(Protocol::Icmp) => Some(IpVersion::V4),
        Some(Protocol::IcmpV6) => Some(IpVersion::V6),
        _ => None,
    };
    match r.ip_version.or(implied) {
        Some(v) => v == want,
        None => true,
    }
}

/// Felix's `SplitPortList`: greedy packing into splits of at most 15 slots.
pub(crate) fn split_ports(ports: &[PortSpec]) -> Vec<Vec<PortSpec>> {
    let mut splits = Vec::new();
    let mut current: Vec<PortSpec> = Vec::new();
    let mut free = MULTIPORT_SLOTS;
    for p in ports {
        let cost = match p {
            PortSpec::Range(a, b) if a != b => 2,
            _ => 1,
        };
        if free < cost {
            splits.push(std::mem::take(&mut current));
            free = MULTIPORT_SLOTS;
        }
        current.push(*p);
        free -= cost;
    }
    if !current.is_empty() {
        splits.push(current);
    }
    splits
}

/// Numeric ports as multiport items and the names of named ports, in rule order.
fn split_named(ports: &[Port]) -> (Vec<PortSpec>, Vec<String>) {
    let mut numeric = Vec::new();
    let mut named = Vec::new();
    for p in ports {
        match p {
            Port::Single(n) => numeric.push(PortSpec::Single(*n)),
            Port::Range(a, b) if a == b => numeric.push(PortSpec::Single(*a)),
            Port::Range(a, b) => numeric.push(PortSpec::Range(*a, *b)),
            Port::Named(n) => named.push(n.clone()),
        }
    }
    (numeric, named)
}

/// Felix folds a negated selector into the positive one (`(pos) && (!(neg))`) so one ipset
/// does; without a positive selector the negated one keeps its own set.
fn fold_selectors(e: &EntityRule) -> (Option<Selector>, Option<Selector>) {
    match (&e.selector, &e.not_selector) {
        (Some(pos), Some(neg)) => (Some(pos.and_not(neg)), None),
        (pos, neg) => (pos.clone(), neg.clone()),
    }
}

/// One side (source or destination) of an API rule, resolved for one family.
struct Side {
    nets: Vec<IpNet>,
    not_nets: Vec<IpNet>,
    /// Selector ipset names (positive, negated).
    sets: Vec<Name>,
    not_sets: Vec<Name>,
    ports: Vec<PortSpec>,
    not_ports: Vec<PortSpec>,
    /// Named-port ipset names.
    named: Vec<Name>,
    not_named: Vec<Name>,
}

fn side(
    e: &EntityRule,
    family: Family,
    sets: &mut SetCollector,
    named_proto: &'static str,
) -> Option<Side> {
    let (Some(nets), Some(not_nets)) = (
        filter_nets(&e.nets, family, false),
        filter_nets(&e.not_nets, family, true),
    ) else {
        return None;
    };
    let (pos_sel, neg_sel) = fold_selectors(e);
    let (ports, named_ports) = split_named(&e.ports);
    let (not_ports, not_named_ports) = split_named(&e.not_ports);
    // Named ports are filtered by the positive selector (Felix: the rule can only match where
    // that selector does), or by all() without one — also for the negated named ports.
    let port_sel = pos_sel.clone().unwrap_or_else(Selector::all);
    let named = named_ports
        .iter()
        .map(|n| sets.named_port_set(&port_sel, named_proto, n))
        .collect();
    let not_named = not_named_ports
        .iter()
        .map(|n| sets.named_port_set(&port_sel, named_proto, n))
        .collect();
    // With only named ports, their sets already apply the selector.
    let mut sel_sets = Vec::new();
    if let Some(sel) = &pos_sel {
        if !ports.is_empty() || named_ports.is_empty() {
            sel_sets.push(sets.selector_set(sel));
        }
    }
    let not_sets = neg_sel.iter().map(|s| sets.selector_set(s)).collect();
    Some(Side {
        nets,
        not_nets,
        sets: sel_sets,
        not_sets,
        ports,
        not_ports,
        named,
        not_named,
    })
}

/// Builds the extra rules that OR alternatives together through the scratch bits (Felix
/// `felix/rules/policy.go`, match blocks).
struct Blocks {
    s0: u32,
    s1: u32,
    rules: Vec<Rule>,
    started: bool,
    positive_blocks: usize,
}

impl Blocks {
    fn new(ctx: &Ctx) -> Self {
        Blocks {
            s0: ctx.marks.scratch0,
            s1: ctx.marks.scratch1,
            rules: Vec::new(),
            started: false,
            positive_blocks: 0,
        }
    }

    fn start(&mut self, initial: u32) {
        if !self.started {
            self.rules.push(rule(
                vec![],
                Action::SetMaskedMark {
                    value: initial,
                    mask: self.s0 | self.s1,
                },
            ));
            self.started = true;
        }
    }

    /// One positive block: any alternative matching sets the block's bit.
    fn positive(&mut self, alternatives: Vec<Vec<Match>>) {
        self.start(0);
        let bit = if self.positive_blocks == 0 {
            self.s0
        } else {
            self.s1
        };
        if self.positive_blocks >= 2 {
            // Felix leaves S1 as the previous block set it, so a failing third block could be
            // masked by a passing second one; reset it (only needed from the third block on,
            // which keeps every Felix-correct sequence identical to Felix's).
            self.rules.push(rule(vec![], clear_mark(self.s1)));
        }
        for matches in alternatives {
            self.rules.push(rule(matches, set_mark(bit)));
        }
        if self.positive_blocks > 0 {
            self.rules.push(rule(
                vec![Match::Mark {
                    negated: false,
                    value: 0,
                    mask: self.s1,
                }],
                clear_mark(self.s0),
            ));
        }
        self.positive_blocks += 1;
    }

    /// A negated block: any listed net matching clears "all blocks pass".
    fn negative(&mut self, alternatives: Vec<Vec<Match>>) {
        self.start(self.s0);
        for matches in alternatives {
            self.rules.push(rule(matches, clear_mark(self.s0)));
        }
    }
}

fn net_match(src: bool, negated: bool, net: IpNet) -> Match {
    if src {
        Match::Source { negated, net }
    } else {
        Match::Destination { negated, net }
    }
}

fn ports_match(src: bool, negated: bool, ports: Vec<PortSpec>) -> Match {
    if src {
        Match::SourcePorts {
            negated,
            ports: ports.into(),
        }
    } else {
        Match::DestinationPorts {
            negated,
            ports: ports.into(),
        }
    }
}

fn set_match(negated: bool, name: &Name, direction: SetDirection) -> Match {
    Match::Set {
        negated,
        name: name.clone(),
        direction,
    }
}

fn protocol_match(p: Protocol, negated: bool) -> Match {
    Match::Protocol {
        negated,
        name: protocol_name(p),
    }
}

/// The `-p` word of `p`, one shared copy per named protocol: nearly every policy rule names
/// one, and at 10,000 policies a copy each (with a copy of each set name per rule, which
/// `SetCollector` now shares too) was ~20 MB of the daemon's peak.
fn protocol_name(p: Protocol) -> Name {
    static NAMED: LazyLock<Vec<(Protocol, Name)>> = LazyLock::new(|| {
        [
            Protocol::Tcp,
            Protocol::Udp,
            Protocol::Icmp,
            Protocol::IcmpV6,
            Protocol::Sctp,
            Protocol::UdpLite,
        ]
        .into_iter()
        .map(|p| (p, p.iptables_name().into()))
        .collect()
    });
    match NAMED.iter().find(|(named, _)| *named == p) {
        Some((_, name)) => name.clone(),
        None => p.iptables_name().into(),
    }
}

/// One API rule as iptables rules (none when it does not apply to this family).
fn api_rule(
    ctx: &Ctx,
    table: TableName,
    sets: &mut SetCollector,
    r: &model::Rule,
    owner: &Owner,
) -> Result<Vec<Rule>, RenderError> {
    if !rule_in_family(r, ctx.family) {
        return Ok(Vec::new());
    }
    // iptables allows one `-p` per rule. `protocol: X, notProtocol: Y` is `protocol: X` when
    // they differ and can never match when they are the same protocol.
    let not_protocol = match (r.protocol, r.not_protocol) {
        (Some(p), Some(n)) if p.number() == n.number() => return Ok(Vec::new()),
        (Some(_), Some(_)) => None,
        (_, n) => n,
    };
    // felix/calc/rule_scanner.go: without a protocol a named port means that name on any
    // protocol; with one, Felix's `ProtocolFrom` (UDP, SCTP, else TCP).
    let named_proto = match r.protocol {
        None => NAMED_PORT_ANY_PROTOCOL,
        Some(p) => named_port_protocol(p).unwrap_or("tcp"),
    };
    let Some(mut src) = side(&r.source, ctx.family, sets, named_proto) else {
        return Ok(Vec::new());
    };
    let Some(mut dst) = side(&r.destination, ctx.family, sets, named_proto) else {
        return Ok(Vec::new());
    };

    let mut blocks = Blocks::new(ctx);
    for (is_src, s) in [(true, &mut src), (false, &mut dst)] {
        let splits = split_ports(&s.ports);
        if splits.len() + s.named.len() > 1 {
            let direction = if is_src {
                SetDirection::SrcSrc
            } else {
                SetDirection::DstDst
            };
            let mut alts: Vec<Vec<Match>> = splits
                .into_iter()
                .map(|split| {
                    let mut m = Vec::new();
                    if let Some(p) = r.protocol {
                        m.push(protocol_match(p, false));
                    }
                    m.push(ports_match(is_src, false, split));
                    m
                })
                .collect();
            alts.extend(s.named.iter().map(|n| vec![set_match(false, n, direction)]));
            blocks.positive(alts);
            s.ports.clear();
            s.named.clear();
        }
    }
    for (is_src, s) in [(true, &mut src), (false, &mut dst)] {
        if s.nets.len() > 1 {
            let alts = s
                .nets
                .iter()
                .map(|n| vec![net_match(is_src, false, *n)])
                .collect();
            blocks.positive(alts);
            s.nets.clear();
        }
    }
    for (is_src, s) in [(true, &mut src), (false, &mut dst)] {
        if s.nets.len() + s.not_nets.len() > 1 {
            let alts = s
                .not_nets
                .iter()
                .map(|n| vec![net_match(is_src, false, *n)])
                .collect();
            blocks.negative(alts);
            s.not_nets.clear();
        }
    }

    let mut m = main_match(ctx, r, not_protocol, &src, &dst);
    if blocks.started {
        m.push(ctx.mark_set(ctx.marks.scratch0));
    }
    let mut out = blocks.rules;
    out.extend(actions(ctx, table, r, owner, m));
    if !r.annotations.is_empty() {
        let annotations: Vec<Name> = r
            .annotations
            .iter()
            .map(|(k, v)| format!("{k}={v}").into())
            .collect();
        for rr in &mut out {
            rr.comments = rr.comments.and(annotations.iter().cloned());
        }
    }
    Ok(out)
}

/// Felix's `CalculateRuleMatch`: positive fragments, then the negated ones, in Felix's
/// fragment order (`felix/rules/policy.go`).
fn main_match(
    ctx: &Ctx,
    r: &model::Rule,
    not_protocol: Option<Protocol>,
    src: &Side,
    dst: &Side,
) -> Vec<Match> {
    let mut m = Vec::new();
    if let Some(p) = r.protocol {
        m.push(protocol_match(p, false));
    }
    push_side(&mut m, true, false, SideMatches::positive(src));
    push_side(&mut m, false, false, SideMatches::positive(dst));
    if let Some(icmp) = r.icmp {
        m.push(icmp_match(ctx, false, icmp));
    }
    if let Some(p) = not_protocol {
        m.push(protocol_match(p, true));
    }
    push_side(&mut m, true, true, SideMatches::negative(src));
    push_side(&mut m, false, true, SideMatches::negative(dst));
    if let Some(icmp) = r.not_icmp {
        m.push(icmp_match(ctx, true, icmp));
    }
    m
}

/// One side's (source or destination) fragments of one polarity, in Felix's order:
/// net, selector sets, ports, named-port sets.
struct SideMatches<'a> {
    net: Option<&'a IpNet>,
    sets: &'a [Name],
    ports: Vec<Vec<PortSpec>>,
    named: &'a [Name],
}

impl<'a> SideMatches<'a> {
    /// A positive port list is one multiport match: a longer list was already split into
    /// several rules (see `api_rule`), since one rule's matches are ANDed.
    fn positive(side: &'a Side) -> Self {
        SideMatches {
            net: side.nets.first(),
            sets: &side.sets,
            ports: if side.ports.is_empty() {
                Vec::new()
            } else {
                vec![side.ports.clone()]
            },
            named: &side.named,
        }
    }

    /// A negated port list may take several matches in one rule: all of them must miss.
    fn negative(side: &'a Side) -> Self {
        SideMatches {
            net: side.not_nets.first(),
            sets: &side.not_sets,
            ports: split_ports(&side.not_ports),
            named: &side.not_named,
        }
    }
}

/// Appends one side's fragments; `is_src` picks the source/destination flavour of each match.
fn push_side(m: &mut Vec<Match>, is_src: bool, negated: bool, side: SideMatches) {
    let (set_dir, named_dir) = if is_src {
        (SetDirection::Src, SetDirection::SrcSrc)
    } else {
        (SetDirection::Dst, SetDirection::DstDst)
    };
    if let Some(n) = side.net {
        m.push(net_match(is_src, negated, *n));
    }
    m.extend(side.sets.iter().map(|s| set_match(negated, s, set_dir)));
    for ports in side.ports {
        m.push(ports_match(is_src, negated, ports));
    }
    m.extend(side.named.iter().map(|s| set_match(negated, s, named_dir)));
}

fn icmp_match(ctx: &Ctx, negated: bool, icmp: model::IcmpMatch) -> Match {
    if ctx.is_v6() {
        Match::Icmp6 {
            negated,
            icmp_type: icmp.icmp_type,
            code: icmp.code,
        }
    } else {
        Match::Icmp {
            negated,
            icmp_type: icmp.icmp_type,
            code: icmp.code,
        }
    }
}

/// Felix's `CombineMatchAndActionsForProtoRule`: Log is one rule; Allow/Pass/Deny set their bit
/// on the match, then act on the bit.
fn actions(
    ctx: &Ctx,
    table: TableName,
    r: &model::Rule,
    owner: &Owner,
    m: Vec<Match>,
) -> Vec<Rule> {
    let marks = &ctx.marks;
    let (bit, verdict) = match r.action {
        RuleAction::Log => {
            let mut matches = Vec::new();
            if let Some(limit) = ctx.cfg.log_action_rate_limit {
                let unit = match limit.per {
                    RateUnit::Second => "second",
                    RateUnit::Minute => "minute",
                    RateUnit::Hour => "hour",
                    RateUnit::Day => "day",
                };
                let burst = ctx.cfg.log_action_rate_limit_burst;
                matches.push(Match::Limit {
                    rate: format!("{}/{unit}", limit.count).into(),
                    burst: (burst > 0).then_some(burst),
                });
            }
            matches.extend(m);
            return vec![rule(
                matches,
                Action::Log {
                    prefix: log_prefix(&ctx.cfg.log_prefix, owner).into(),
                    level: 5,
                },
            )];
        }
        RuleAction::Allow => (marks.accept, Action::Return),
        RuleAction::Pass => (marks.pass, Action::Return),
        RuleAction::Deny => (marks.drop, ctx.deny(table)),
    };
    vec![
        rule(m, set_mark(bit)),
        rule(vec![ctx.mark_set(bit)], verdict),
    ]
}

/// `logPrefix` with `%t` `%k` `%n` `%p` expanded, plus Felix's `: `, cut to iptables' 29.
fn log_prefix(configured: &str, owner: &Owner) -> String {
    let base = if configured.is_empty() {
        "calico-packet"
    } else {
        configured
    };
    let mut expanded = String::with_capacity(base.len());
    let mut chars = base.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '%' {
            let value = match chars.peek() {
                Some('t') => Some(owner.tier),
                Some('k') => Some(owner.kind_short),
                Some('n') | Some('p') => Some(owner.name),
                _ => None,
            };
            if let Some(v) = value {
                chars.next();
                expanded.push_str(v);
                continue;
            }
        }
        expanded.push(c);
    }
    let mut full = format!("{expanded}: ");
    while full.len() > MAX_LOG_PREFIX_LEN {
        full.pop();
    }
    full
}

#[cfg(test)]
mod tests {
    use super::*;

    fn singles(range: std::ops::RangeInclusive<u16>) -> Vec<PortSpec> {
        range.map(PortSpec::Single).collect()
    }

    #[test]
    fn split_fifteen_singles_fit_one_split() {
        let s = split_ports(&singles(1..=15));
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].len(), 15);
    }

    #[test]
    fn split_twenty_ports_in_two() {
        let s = split_ports(&singles(1..=20));
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].len(), s[1].len()), (15, 5));
    }

    #[test]
    fn range_costs_two_slots() {
        // 14 singles use 14 slots; a range needs 2 so it starts a new split.
        let mut ports = singles(1..=14);
        ports.push(PortSpec::Range(100, 200));
        ports.push(PortSpec::Single(300));
        let s = split_ports(&ports);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0], singles(1..=14));
        assert_eq!(s[1], vec![PortSpec::Range(100, 200), PortSpec::Single(300)]);
        // Seven ranges use 14 slots; the eighth does not fit, a single does.
        let mut ranges: Vec<PortSpec> = (0..7)
            .map(|i| PortSpec::Range(i * 10, i * 10 + 5))
            .collect();
        ranges.push(PortSpec::Single(1));
        ranges.push(PortSpec::Range(500, 600));
        let s = split_ports(&ranges);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].len(), 8);
        assert_eq!(s[1], vec![PortSpec::Range(500, 600)]);
    }

    #[test]
    fn empty_port_list_has_no_split() {
        assert!(split_ports(&[]).is_empty());
    }

    #[test]
    fn log_prefix_expansion() {
        let owner = Owner {
            kind: names::GNP_KIND,
            kind_short: "gnp",
            name: "web",
            tier: "default",
        };
        assert_eq!(log_prefix("", &owner), "calico-packet: ");
        assert_eq!(log_prefix("%t-%k-%n", &owner), "default-gnp-web: ");
        assert_eq!(log_prefix("100%", &owner), "100%: ");
        let long = log_prefix("a-very-long-prefix-%n-%n-%n-%n", &owner);
        assert_eq!(long.len(), MAX_LOG_PREFIX_LEN);
        assert!(long.starts_with("a-very-long-prefix-web-web-w"));
    }

    /// Felix's `policy_test.go` "CIDR split tests", with its mark values (A 0x80, S0 0x200,
    /// S1 0x400); the drop bit is not used by allow rules.
    fn felix_cidr_split(
        src: &[&str],
        not_src: &[&str],
        dst: &[&str],
        not_dst: &[&str],
    ) -> Vec<Rule> {
        use crate::render::tests::{api_rule as base, net, seed_view};
        let view = seed_view();
        let memo = crate::render::RenderMemo::default();
        let ctx = Ctx {
            view: &view,
            memo: &memo,
            cfg: &view.config,
            family: Family::V4,
            marks: crate::render::marks::Marks {
                accept: 0x80,
                pass: 0x100,
                drop: 0x800,
                scratch0: 0x200,
                scratch1: 0x400,
            },
            policies: Default::default(),
        };
        let mut r = base(RuleAction::Allow);
        r.source.nets = src.iter().map(|n| net(n)).collect();
        r.source.not_nets = not_src.iter().map(|n| net(n)).collect();
        r.destination.nets = dst.iter().map(|n| net(n)).collect();
        r.destination.not_nets = not_dst.iter().map(|n| net(n)).collect();
        let owner = Owner {
            kind: names::GNP_KIND,
            kind_short: "gnp",
            name: "test",
            tier: "default",
        };
        let mut sets = SetCollector::new(&view, Family::V4);
        api_rule(&ctx, TableName::Filter, &mut sets, &r, &owner).unwrap()
    }

    fn src(n: &str, negated: bool) -> Match {
        Match::Source {
            negated,
            net: n.parse().unwrap(),
        }
    }

    fn dst(n: &str, negated: bool) -> Match {
        Match::Destination {
            negated,
            net: n.parse().unwrap(),
        }
    }

    fn mark(value: u32, mask: u32) -> Match {
        Match::Mark {
            negated: false,
            value,
            mask,
        }
    }

    #[test]
    fn felix_cidr_split_one_of_everything() {
        let rules = felix_cidr_split(
            &["10.0.0.0/24"],
            &["11.0.0.0/24"],
            &["12.0.0.0/24"],
            &["13.0.0.0/24"],
        );
        let expected = vec![
            rule(
                vec![],
                Action::SetMaskedMark {
                    value: 0x200,
                    mask: 0x600,
                },
            ),
            rule(vec![src("11.0.0.0/24", false)], clear_mark(0x200)),
            rule(vec![dst("13.0.0.0/24", false)], clear_mark(0x200)),
            rule(
                vec![
                    src("10.0.0.0/24", false),
                    dst("12.0.0.0/24", false),
                    mark(0x200, 0x200),
                ],
                set_mark(0x80),
            ),
            rule(vec![mark(0x80, 0x80)], Action::Return),
        ];
        assert_eq!(rules, expected);
    }

    #[test]
    fn felix_cidr_split_two_of_everything() {
        let rules = felix_cidr_split(
            &["10.0.0.0/24", "10.0.1.0/24"],
            &["11.0.0.0/24", "11.0.1.0/24"],
            &["12.0.0.0/24", "12.0.1.0/24"],
            &["13.0.0.0/24", "13.0.1.0/24"],
        );
        let expected = vec![
            rule(
                vec![],
                Action::SetMaskedMark {
                    value: 0,
                    mask: 0x600,
                },
            ),
            rule(vec![src("10.0.0.0/24", false)], set_mark(0x200)),
            rule(vec![src("10.0.1.0/24", false)], set_mark(0x200)),
            rule(vec![dst("12.0.0.0/24", false)], set_mark(0x400)),
            rule(vec![dst("12.0.1.0/24", false)], set_mark(0x400)),
            rule(vec![mark(0, 0x400)], clear_mark(0x200)),
            rule(vec![src("11.0.0.0/24", false)], clear_mark(0x200)),
            rule(vec![src("11.0.1.0/24", false)], clear_mark(0x200)),
            rule(vec![dst("13.0.0.0/24", false)], clear_mark(0x200)),
            rule(vec![dst("13.0.1.0/24", false)], clear_mark(0x200)),
            rule(vec![mark(0x200, 0x200)], set_mark(0x80)),
            rule(vec![mark(0x80, 0x80)], Action::Return),
        ];
        assert_eq!(rules, expected);
    }

    #[test]
    fn felix_cidr_split_two_src_one_not_src() {
        let rules = felix_cidr_split(&["10.0.0.0/24", "10.0.1.0/24"], &["11.0.0.0/24"], &[], &[]);
        let expected = vec![
            rule(
                vec![],
                Action::SetMaskedMark {
                    value: 0,
                    mask: 0x600,
                },
            ),
            rule(vec![src("10.0.0.0/24", false)], set_mark(0x200)),
            rule(vec![src("10.0.1.0/24", false)], set_mark(0x200)),
            rule(
                vec![src("11.0.0.0/24", true), mark(0x200, 0x200)],
                set_mark(0x80),
            ),
            rule(vec![mark(0x80, 0x80)], Action::Return),
        ];
        assert_eq!(rules, expected);
    }

    #[test]
    fn nets_filtering() {
        let v4: IpNet = "10.0.0.0/8".parse().unwrap();
        let v6: IpNet = "2001:db8::/32".parse().unwrap();
        let any4: IpNet = "0.0.0.0/0".parse().unwrap();
        assert_eq!(filter_nets(&[], Family::V6, false), Some(vec![]));
        assert_eq!(filter_nets(&[v4], Family::V6, false), None);
        assert_eq!(filter_nets(&[v4, v6], Family::V6, false), Some(vec![v6]));
        assert_eq!(filter_nets(&[any4], Family::V4, true), None);
        assert_eq!(filter_nets(&[any4], Family::V4, false), Some(vec![any4]));
        assert_eq!(filter_nets(&[any4, v6], Family::V6, true), Some(vec![v6]));
    }
}
