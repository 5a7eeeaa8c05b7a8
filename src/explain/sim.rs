//! The packet walk: kernel hooks in netfilter order, each an otherwise empty kernel chain with
//! policy ACCEPT holding only our hook rules; user chains with jump/goto/return; matches and
//! mark/NOTRACK side effects as the kernel's xtables modules define them. Attribution of the
//! verdict follows Felix's mark protocol: a policy rule sets the accept/pass/drop bit and later
//! rules act on that bit, so the rule that last set a verdict bit is what decided.

use super::context::Context;
use super::{
    protocol_number, ConnState, Decision, Direction, Explanation, HookTrace, Packet, RuleVerdict,
    Step, Verdict,
};
use crate::render::names;
use crate::render::provenance::{Origin, OwnerKind};
use crate::ruleset::felix::write_rule_body;
use crate::ruleset::{
    Action, HookPosition, IpsetType, Match, PortSpec, Rule, Ruleset, SetDirection, Table, TableName,
};
use std::net::IpAddr;

/// Bound on rules evaluated per hook: iptables forbids loops, so only a broken hand-built
/// ruleset gets near it.
const MAX_STEPS: usize = 100_000;

/// One kernel hook on the packet's path: table, kernel chain, and the interfaces the kernel
/// hands to that hook (`-i` is empty in OUTPUT/POSTROUTING, `-o` in PREROUTING/INPUT).
struct Hook {
    table: TableName,
    chain: &'static str,
    in_iface: String,
    out_iface: String,
}

fn path(p: &Packet) -> Vec<Hook> {
    let in_if = p.in_iface().unwrap_or("").to_string();
    let out_if = p.out_iface().unwrap_or("").to_string();
    let hook = |table, chain, i: &str, o: &str| Hook {
        table,
        chain,
        in_iface: i.to_string(),
        out_iface: o.to_string(),
    };
    match p.direction {
        Direction::Ingress => vec![
            hook(TableName::Raw, "PREROUTING", &in_if, ""),
            hook(TableName::Mangle, "PREROUTING", &in_if, ""),
            hook(TableName::Filter, "INPUT", &in_if, ""),
        ],
        Direction::Egress => vec![
            hook(TableName::Raw, "OUTPUT", "", &out_if),
            hook(TableName::Filter, "OUTPUT", "", &out_if),
            hook(TableName::Mangle, "POSTROUTING", "", &out_if),
        ],
        Direction::Forward => vec![
            hook(TableName::Raw, "PREROUTING", &in_if, ""),
            hook(TableName::Mangle, "PREROUTING", &in_if, ""),
            hook(TableName::Filter, "FORWARD", &in_if, &out_if),
            hook(TableName::Mangle, "POSTROUTING", "", &out_if),
        ],
    }
}

/// How a hook ended.
enum HookEnd {
    /// A terminal verdict from a rule, and what decided it.
    Verdict(Verdict, Decision),
    /// No terminal rule: the kernel chain's policy (ACCEPT) applies.
    Policy,
}

struct Sim<'a> {
    rs: &'a Ruleset,
    ctx: &'a Context,
    pkt: &'a Packet,
    mark: u32,
    untracked: bool,
    /// False while in raw: conntrack has not seen the packet yet.
    tracked: bool,
    /// The last rule that set a verdict bit (accept/pass/drop), as a decision.
    last_event: Option<Decision>,
    /// The last host endpoint chain entered.
    endpoint: Option<String>,
    entered_endpoint: bool,
    notes: Vec<String>,
}

pub(super) fn run(rs: &Ruleset, ctx: &Context, pkt: &Packet) -> Explanation {
    let mut sim = Sim {
        rs,
        ctx,
        pkt,
        mark: 0,
        untracked: false,
        tracked: false,
        last_event: None,
        endpoint: None,
        entered_endpoint: false,
        notes: Vec::new(),
    };
    if is_untracked_icmpv6(pkt) {
        // nf_conntrack_proto_icmpv6 never tracks neighbour discovery and MLD: from the first
        // rule on the packet is UNTRACKED, so RELATED,ESTABLISHED rules and the failsafe ports
        // (NEW TCP/UDP) never admit it; only a rule allowing it does.
        sim.untracked = true;
        sim.notes.push(
            "ICMPv6 neighbour discovery / MLD: the kernel does not track it (ctstate UNTRACKED)"
                .into(),
        );
    }
    if !family_matches(rs, pkt) {
        sim.notes
            .push("the packet's addresses are not of the ruleset's family".into());
    }
    let mut hooks = Vec::new();
    let mut accepted_by: Option<Decision> = None;
    let mut result: Option<(Verdict, Decision)> = None;
    for hook in path(pkt) {
        sim.tracked = hook.table != TableName::Raw;
        let Some(table) = rs.tables.iter().find(|t| t.name == hook.table) else {
            continue;
        };
        let (mut trace, end) = sim.hook(table, &hook);
        let end = match end {
            HookEnd::Policy => match ctx.kernel_policies.get(&(hook.table, hook.chain.into())) {
                Some(v) if *v != Verdict::Accept => {
                    trace.outcome = format!("policy {}", v.as_str());
                    let d = Decision::KernelPolicy {
                        table: hook.table.as_str().into(),
                        chain: hook.chain.into(),
                        verdict: *v,
                    };
                    HookEnd::Verdict(*v, d)
                }
                _ => HookEnd::Policy,
            },
            end => end,
        };
        hooks.push(trace);
        match end {
            HookEnd::Verdict(Verdict::Accept, d) => accepted_by = Some(d),
            HookEnd::Verdict(v, d) => {
                result = Some((v, d));
                break;
            }
            HookEnd::Policy => {}
        }
    }
    let (verdict, decision) = result.unwrap_or_else(|| {
        let decision = if !sim.entered_endpoint {
            Decision::NotHostEndpoint
        } else {
            // With `iptables*AllowAction: Return` nothing ACCEPTs: the verdict bit set by the
            // deciding rule is all there is, and the kernel policy lets the packet through.
            accepted_by
                .or_else(|| sim.last_event.clone())
                .unwrap_or_else(|| {
                    let last = hooks.last();
                    Decision::KernelPolicy {
                        table: last.map_or_else(String::new, |h| h.table.clone()),
                        chain: last.map_or_else(String::new, |h| h.chain.clone()),
                        verdict: Verdict::Accept,
                    }
                })
        };
        (Verdict::Accept, decision)
    });
    Explanation {
        packet: pkt.clone(),
        verdict,
        reason: decision.describe(),
        decision,
        endpoint: sim.endpoint,
        hooks,
        notes: sim.notes,
    }
}

fn family_matches(rs: &Ruleset, pkt: &Packet) -> bool {
    let v6 = rs.family == crate::ruleset::Family::V6;
    pkt.src.is_ipv6() == v6 && pkt.dst.is_ipv6() == v6
}

/// A frame of the chain stack.
struct Frame<'r> {
    chain: &'r str,
    rules: &'r [Rule],
    next: usize,
}

impl<'a> Sim<'a> {
    fn hook(&mut self, table: &'a Table, hook: &Hook) -> (HookTrace, HookEnd) {
        // Our hook rules in an otherwise empty kernel chain: inserted/appended ones in order,
        // the always-appended ones last.
        let mut hook_rules: Vec<Rule> = Vec::new();
        for always in [false, true] {
            hook_rules.extend(
                table
                    .hooks
                    .iter()
                    .filter(|h| h.kernel_chain == hook.chain)
                    .filter(|h| (h.position == HookPosition::AlwaysAppend) == always)
                    .map(|h| h.rule.clone()),
            );
        }
        let mut trace = HookTrace {
            table: table.name.as_str().into(),
            chain: hook.chain.into(),
            outcome: "policy ACCEPT".into(),
            steps: Vec::new(),
        };
        let end = self.walk(table, hook, &hook_rules, &mut trace);
        if let HookEnd::Verdict(v, _) = &end {
            trace.outcome = v.as_str().into();
        }
        (trace, end)
    }

    fn walk(
        &mut self,
        table: &'a Table,
        hook: &Hook,
        hook_rules: &[Rule],
        trace: &mut HookTrace,
    ) -> HookEnd {
        let mut stack: Vec<Frame> = vec![Frame {
            chain: hook.chain,
            rules: hook_rules,
            next: 0,
        }];
        let mut budget = MAX_STEPS;
        while let Some(frame) = stack.last_mut() {
            if frame.next >= frame.rules.len() {
                stack.pop();
                continue;
            }
            budget = budget.saturating_sub(1);
            if budget == 0 {
                self.notes
                    .push(format!("gave up after {MAX_STEPS} rules in {}", hook.chain));
                return HookEnd::Policy;
            }
            let index = frame.next;
            frame.next += 1;
            let chain = frame.chain;
            let rule = &frame.rules[index];
            if !self.matches(rule, hook) {
                continue;
            }
            trace.steps.push(self.step(table.name, chain, index, rule));
            match &rule.action {
                Action::Accept => {
                    let d = self.decide(table, chain, index, rule, Verdict::Accept);
                    return HookEnd::Verdict(Verdict::Accept, d);
                }
                Action::Drop | Action::Reject => {
                    let v = if rule.action == Action::Drop {
                        Verdict::Drop
                    } else {
                        Verdict::Reject
                    };
                    let d = self.decide(table, chain, index, rule, v);
                    return HookEnd::Verdict(v, d);
                }
                Action::Return => {
                    stack.pop();
                }
                Action::Jump(target) | Action::Goto(target) => {
                    let Some(next) = table.chains.get(&**target) else {
                        self.notes.push(format!(
                            "{} {chain} rule {index} targets missing chain {target}",
                            table.name.as_str()
                        ));
                        continue;
                    };
                    if matches!(rule.action, Action::Goto(_)) {
                        stack.pop();
                    }
                    self.enter(target);
                    stack.push(Frame {
                        chain: &next.name,
                        rules: &next.rules,
                        next: 0,
                    });
                }
                Action::SetMark { value, mask } | Action::SetMaskedMark { value, mask } => {
                    self.mark = (self.mark & !mask) | (value & mask);
                    if value & self.verdict_bits() != 0 {
                        self.last_event = Some(self.event(table, chain, index, rule, *value));
                    }
                }
                Action::Log { prefix, .. } => self.notes.push(format!(
                    "logged by {} {chain} rule {index} (prefix \"{prefix}\")",
                    table.name.as_str()
                )),
                Action::NoTrack => self.untracked = true,
                Action::None => {}
            }
        }
        HookEnd::Policy
    }

    fn verdict_bits(&self) -> u32 {
        let m = &self.ctx.marks;
        m.accept | m.pass | m.drop
    }

    fn enter(&mut self, chain: &str) {
        if let Some(owner) = self.ctx.owner(chain) {
            if let OwnerKind::Endpoint { interface } = &owner.kind {
                self.entered_endpoint = true;
                self.endpoint = Some(format!("{} ({interface})", owner.name));
                return;
            }
        }
        let endpoint_chain = [
            names::FROM_HOST_ENDPOINT_PFX,
            names::TO_HOST_ENDPOINT_PFX,
            names::FROM_HOST_ENDPOINT_FORWARD_PFX,
            names::TO_HOST_ENDPOINT_FORWARD_PFX,
        ]
        .iter()
        .any(|p| chain.starts_with(p));
        if endpoint_chain {
            self.entered_endpoint = true;
            self.endpoint = Some(chain.to_string());
        }
    }

    fn step(&self, table: TableName, chain: &str, index: usize, rule: &Rule) -> Step {
        let mut text = String::new();
        write_rule_body(&mut text, rule);
        let owner = self.ctx.owner(chain).map(|o| {
            let direction = o.direction.api_name();
            match &o.kind {
                OwnerKind::Policy { .. } | OwnerKind::Profile => {
                    let kind = if matches!(o.kind, OwnerKind::Profile) {
                        "Profile"
                    } else {
                        names::GNP_KIND
                    };
                    match self.ctx.api_rule(table, chain, index) {
                        Some(i) => format!("{kind} {} {direction} rule {i}", o.name),
                        None => format!("{kind} {} {direction}", o.name),
                    }
                }
                OwnerKind::Endpoint { interface } => {
                    format!("HostEndpoint {} ({interface}) {direction}", o.name)
                }
            }
        });
        Step {
            chain: chain.to_string(),
            index,
            rule: text.trim_start().to_string(),
            owner,
        }
    }

    /// The decision a verdict-bit-setting rule records.
    fn event(&self, table: &Table, chain: &str, index: usize, rule: &Rule, value: u32) -> Decision {
        let m = &self.ctx.marks;
        let action = if value & m.drop != 0 {
            RuleVerdict::Deny
        } else if value & m.pass != 0 {
            RuleVerdict::Pass
        } else {
            RuleVerdict::Allow
        };
        if let Some(d) = self.policy_decision(table.name, chain, index, action) {
            return d;
        }
        if let Some(state) = ct_state_of(rule) {
            return Decision::Conntrack { state };
        }
        if self.ctx.origin(table.name, chain, index) == Some(Origin::ForwardDefaultAllow) {
            return Decision::ForwardDefault {
                endpoint: self.endpoint_name(chain),
            };
        }
        other(table.name, chain, index, rule)
    }

    fn policy_decision(
        &self,
        table: TableName,
        chain: &str,
        index: usize,
        action: RuleVerdict,
    ) -> Option<Decision> {
        let owner = self.ctx.owner(chain)?;
        let rule = self.ctx.api_rule(table, chain, index);
        match &owner.kind {
            OwnerKind::Policy { tier } => Some(Decision::Policy {
                policy: owner.name.clone(),
                tier: tier.clone(),
                direction: owner.direction.api_name().into(),
                rule,
                action,
            }),
            OwnerKind::Profile => Some(Decision::Profile {
                profile: owner.name.clone(),
                direction: owner.direction.api_name().into(),
                rule,
                action,
            }),
            OwnerKind::Endpoint { .. } => None,
        }
    }

    fn endpoint_name(&self, chain: &str) -> String {
        match self.ctx.owner(chain) {
            Some(o) => match &o.kind {
                OwnerKind::Endpoint { interface } => format!("{} ({interface})", o.name),
                _ => chain.to_string(),
            },
            None => chain.to_string(),
        }
    }

    /// What decided a terminal verdict taken by `rule`.
    fn decide(
        &self,
        table: &Table,
        chain: &str,
        index: usize,
        rule: &Rule,
        verdict: Verdict,
    ) -> Decision {
        let m = &self.ctx.marks;
        let acts_on_bit = rule.matches.iter().any(|x| {
            matches!(x, Match::Mark { negated: false, value, mask }
                if value == mask && *value != 0 && value & (m.accept | m.pass | m.drop) == *value)
        });
        if acts_on_bit {
            if let Some(e) = &self.last_event {
                return e.clone();
            }
        }
        let action = match verdict {
            Verdict::Accept => RuleVerdict::Allow,
            _ => RuleVerdict::Deny,
        };
        if let Some(d) = self.policy_decision(table.name, chain, index, action) {
            return d;
        }
        let origin = self.ctx.origin(table.name, chain, index);
        if let Some(Origin::Failsafe(direction)) = origin {
            return Decision::Failsafe {
                direction: direction.label().into(),
                entry: failsafe_entry(rule),
            };
        }
        if let Some(state) = ct_state_of(rule) {
            return Decision::Conntrack { state };
        }
        let endpoint = || self.endpoint_name(chain);
        match origin {
            Some(Origin::TierEnd(tier)) => Decision::EndOfTier {
                tier: self.ctx.provenance.tier(tier).to_string(),
                endpoint: endpoint(),
            },
            Some(Origin::ProfileFallThrough) => Decision::NoProfileMatched {
                endpoint: endpoint(),
            },
            Some(Origin::DefaultAction) => Decision::NoPolicy {
                endpoint: endpoint(),
            },
            _ => other(table.name, chain, index, rule),
        }
    }

    fn matches(&mut self, rule: &Rule, hook: &Hook) -> bool {
        rule.matches.iter().all(|m| self.match_one(m, hook))
    }

    fn match_one(&mut self, m: &Match, hook: &Hook) -> bool {
        let p = self.pkt;
        match m {
            Match::Protocol { negated, name } => {
                let hit = match &**name {
                    "all" | "0" => true,
                    n => protocol_number(n) == Some(p.proto),
                };
                hit != *negated
            }
            Match::Source { negated, net } => net.contains(&p.src) != *negated,
            Match::Destination { negated, net } => net.contains(&p.dst) != *negated,
            Match::InInterface { negated, name } => iface_match(name, &hook.in_iface) != *negated,
            Match::OutInterface { negated, name } => iface_match(name, &hook.out_iface) != *negated,
            Match::Set {
                negated,
                name,
                direction,
            } => match self.rs.ipsets.get(&**name) {
                Some(set) => {
                    let hit = set
                        .members
                        .iter()
                        .any(|member| member_matches(set.set_type, member, *direction, p));
                    hit != *negated
                }
                None => {
                    self.notes
                        .push(format!("ipset {name} is not in the ruleset"));
                    false
                }
            },
            Match::SourcePorts { negated, ports } => match p.sport {
                Some(port) if has_ports(p.proto) => in_ports(ports, port) != *negated,
                _ => false,
            },
            Match::DestinationPorts { negated, ports } => match p.dport {
                Some(port) if has_ports(p.proto) => in_ports(ports, port) != *negated,
                _ => false,
            },
            Match::Icmp {
                negated,
                icmp_type,
                code,
            } => p.proto == 1 && icmp_match(p, *icmp_type, *code) != *negated,
            Match::Icmp6 {
                negated,
                icmp_type,
                code,
            } => p.proto == 58 && icmp_match(p, *icmp_type, *code) != *negated,
            Match::ConntrackState { negated, states } => {
                let mine = self.ct_states();
                let hit = states
                    .split(',')
                    .any(|s| mine.iter().any(|m| m.eq_ignore_ascii_case(s.trim())));
                hit != *negated
            }
            Match::Mark {
                negated,
                value,
                mask,
            } => ((self.mark & mask) == *value) != *negated,
            Match::Limit { rate, .. } => {
                self.notes
                    .push(format!("rate limit {rate} assumed not yet exceeded"));
                true
            }
            Match::RpfCheckFailed => {
                self.notes
                    .push("reverse-path check assumed to pass".to_string());
                false
            }
        }
    }

    /// The `--ctstate` words this packet has at this point.
    fn ct_states(&self) -> Vec<&'static str> {
        if self.untracked {
            return vec!["UNTRACKED"];
        }
        if !self.tracked {
            // Before conntrack (raw table) there is no connection: xt_conntrack says INVALID.
            return vec!["INVALID"];
        }
        match self.pkt.state {
            ConnState::Invalid => vec!["INVALID"],
            ConnState::New if self.pkt.dnat => vec!["NEW", "DNAT"],
            ConnState::New => vec!["NEW"],
            ConnState::Established if self.pkt.dnat => vec!["ESTABLISHED", "DNAT"],
            ConnState::Established => vec!["ESTABLISHED"],
        }
    }
}

/// ICMPv6 types conntrack leaves untracked: MLD (130-132, 143) and neighbour discovery
/// (133 router solicitation to 136 neighbour advertisement).
const UNTRACKED_ICMPV6: [u8; 8] = [130, 131, 132, 133, 134, 135, 136, 143];

fn is_untracked_icmpv6(pkt: &Packet) -> bool {
    pkt.proto == 58 && pkt.icmp_type.is_some_and(|t| UNTRACKED_ICMPV6.contains(&t))
}

fn first_comment(rule: &Rule) -> Option<&str> {
    rule.comments.first().map(|c| &**c)
}

fn other(table: TableName, chain: &str, index: usize, rule: &Rule) -> Decision {
    Decision::Rule {
        table: table.as_str().into(),
        chain: chain.into(),
        index,
        comment: first_comment(rule).map(str::to_string),
    }
}

/// `established`/`invalid` when the rule acts on that conntrack state.
fn ct_state_of(rule: &Rule) -> Option<String> {
    rule.matches.iter().find_map(|m| match m {
        Match::ConntrackState {
            negated: false,
            states,
        } => {
            if states.contains("ESTABLISHED") {
                Some("established".to_string())
            } else if states.contains("INVALID") {
                Some("invalid".to_string())
            } else {
                None
            }
        }
        _ => None,
    })
}

/// `tcp:22`, `udp:53 (net 10.0.0.0/8)`, `tcp:22 (reply)` from a failsafe rule's matches.
fn failsafe_entry(rule: &Rule) -> String {
    let mut proto = String::from("?");
    let mut port = String::from("?");
    let mut extra = Vec::new();
    for m in &rule.matches {
        match m {
            Match::Protocol { name, .. } => (**name).clone_into(&mut proto),
            Match::DestinationPorts { ports, .. } => port = ports_text(ports),
            Match::SourcePorts { ports, .. } => {
                port = ports_text(ports);
                extra.push("reply".to_string());
            }
            Match::Source { net, .. } | Match::Destination { net, .. } => {
                extra.push(format!("net {net}"));
            }
            _ => {}
        }
    }
    if extra.is_empty() {
        format!("{proto}:{port}")
    } else {
        format!("{proto}:{port} ({})", extra.join(", "))
    }
}

fn ports_text(ports: &[PortSpec]) -> String {
    ports
        .iter()
        .map(|p| match p {
            PortSpec::Single(n) => n.to_string(),
            PortSpec::Range(a, b) => format!("{a}:{b}"),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// iptables interface matching: exact, or a prefix when the name ends in `+`. An interface the
/// hook does not have (`""`) matches no name.
fn iface_match(pattern: &str, iface: &str) -> bool {
    if iface.is_empty() {
        return false;
    }
    match pattern.strip_suffix('+') {
        Some(prefix) => iface.starts_with(prefix),
        None => pattern == iface,
    }
}

/// Protocols whose header starts with source and destination ports (what multiport accepts).
fn has_ports(proto: u8) -> bool {
    matches!(proto, 6 | 17 | 33 | 132 | 136)
}

fn in_ports(ports: &[PortSpec], port: u16) -> bool {
    ports.iter().any(|p| match p {
        PortSpec::Single(n) => *n == port,
        PortSpec::Range(a, b) => (*a..=*b).contains(&port),
    })
}

/// xt_icmp: the type must be equal and the code within range (any code when none is given).
fn icmp_match(p: &Packet, icmp_type: u8, code: Option<u8>) -> bool {
    let code_ok = match code {
        Some(c) => p.icmp_code.unwrap_or(0) == c,
        None => true,
    };
    p.icmp_type == Some(icmp_type) && code_ok
}

/// Whether one ipset member (ipset's text form) matches the packet in `direction`.
fn member_matches(kind: IpsetType, member: &str, direction: SetDirection, p: &Packet) -> bool {
    // Our sets use one direction word per dimension, both the same (`src`, `dst,dst`, ...).
    let src = matches!(direction, SetDirection::Src | SetDirection::SrcSrc);
    let addr = if src { p.src } else { p.dst };
    match kind {
        IpsetType::HashNet => net_member_contains(member, addr),
        IpsetType::HashIp => member.trim().parse::<IpAddr>().is_ok_and(|ip| ip == addr),
        IpsetType::HashIpPort => {
            let Some((ip, proto_port)) = member.rsplit_once(',') else {
                return false;
            };
            let Ok(ip) = ip.trim().parse::<IpAddr>() else {
                return false;
            };
            let (proto, port) = match proto_port.split_once(':') {
                Some((proto, port)) => (protocol_number(proto), port),
                None => (Some(6), proto_port),
            };
            let Ok(port) = port.trim().parse::<u16>() else {
                return false;
            };
            let packet_port = if src { p.sport } else { p.dport };
            ip == addr && proto == Some(p.proto) && has_ports(p.proto) && packet_port == Some(port)
        }
    }
}

fn net_member_contains(member: &str, addr: IpAddr) -> bool {
    let text = member.split_whitespace().next().unwrap_or("");
    if let Ok(net) = text.parse::<ipnet::IpNet>() {
        return net.contains(&addr);
    }
    text.parse::<IpAddr>().is_ok_and(|ip| ip == addr)
}

#[cfg(test)]
mod tests {
    //! The walk itself over hand-built tables: kernel semantics of goto/return, hooks' missing
    //! interfaces, conntrack before and after raw, sets, kernel policies.
    use super::*;
    use crate::explain::context::Context;
    use crate::render::marks::Marks;
    use crate::ruleset::{Chain, Family, HookRule, Ipset};
    use std::collections::{BTreeMap, BTreeSet};

    fn rule(matches: Vec<Match>, action: Action) -> Rule {
        Rule {
            matches: matches.into(),
            action,
            comments: Default::default(),
        }
    }

    fn table(name: TableName, hooks: Vec<(&str, Rule)>, chains: Vec<(&str, Vec<Rule>)>) -> Table {
        Table {
            name,
            chains: chains
                .into_iter()
                .map(|(n, rules)| {
                    (
                        n.to_string(),
                        Chain {
                            name: n.to_string(),
                            rules: rules.into(),
                        },
                    )
                })
                .collect(),
            hooks: hooks
                .into_iter()
                .map(|(k, r)| HookRule {
                    kernel_chain: k.to_string(),
                    position: HookPosition::Append,
                    rule: r,
                })
                .collect(),
        }
    }

    fn ruleset(tables: Vec<Table>) -> Ruleset {
        let mut all: Vec<Table> = TableName::ALL
            .into_iter()
            .map(|n| table(n, vec![], vec![]))
            .collect();
        for t in tables {
            let i = TableName::ALL.iter().position(|n| *n == t.name).unwrap();
            all[i] = t;
        }
        Ruleset {
            family: Family::V4,
            tables: all,
            ipsets: BTreeMap::new(),
        }
    }

    fn ctx() -> Context {
        Context::bare(Marks::allocate(0xffff_0000).unwrap())
    }

    fn packet(proto: u8, dport: u16) -> Packet {
        Packet {
            direction: Direction::Ingress,
            iface: "eth0".into(),
            out_iface: None,
            src: "198.51.100.2".parse().unwrap(),
            dst: "198.51.100.1".parse().unwrap(),
            proto,
            sport: Some(40000),
            dport: Some(dport),
            icmp_type: None,
            icmp_code: None,
            state: ConnState::New,
            dnat: false,
        }
    }

    const BIT: u32 = 0x10000;

    fn mark_set() -> Match {
        Match::Mark {
            negated: false,
            value: BIT,
            mask: BIT,
        }
    }

    #[test]
    fn goto_returns_to_the_caller_of_the_chain_that_jumped() {
        // INPUT: jump a; a: goto b, then DROP (skipped: b returns past it); b: set bit, return.
        // Back in INPUT: ACCEPT on the bit.
        let rs = ruleset(vec![table(
            TableName::Filter,
            vec![
                ("INPUT", rule(vec![], Action::Jump("a".into()))),
                ("INPUT", rule(vec![mark_set()], Action::Accept)),
                ("INPUT", rule(vec![], Action::Drop)),
            ],
            vec![
                (
                    "a",
                    vec![
                        rule(vec![], Action::Goto("b".into())),
                        rule(vec![], Action::Drop),
                    ],
                ),
                (
                    "b",
                    vec![
                        rule(
                            vec![],
                            Action::SetMark {
                                value: BIT,
                                mask: BIT,
                            },
                        ),
                        rule(vec![], Action::Return),
                        rule(vec![], Action::Drop),
                    ],
                ),
            ],
        )]);
        let e = run(&rs, &ctx(), &packet(6, 80));
        assert_eq!(e.verdict, Verdict::Accept);
        let steps: Vec<(String, usize)> = e.hooks[2]
            .steps
            .iter()
            .map(|s| (s.chain.clone(), s.index))
            .collect();
        assert_eq!(
            steps,
            vec![
                ("INPUT".into(), 0),
                ("a".into(), 0),
                ("b".into(), 0),
                ("b".into(), 1),
                ("INPUT".into(), 1)
            ]
        );
    }

    #[test]
    fn kernel_chain_policy_and_return_in_a_kernel_chain() {
        let rs = ruleset(vec![table(
            TableName::Filter,
            vec![
                ("INPUT", rule(vec![], Action::Return)),
                ("INPUT", rule(vec![], Action::Accept)),
            ],
            vec![],
        )]);
        let mut c = ctx();
        c.kernel_policies
            .insert((TableName::Filter, "INPUT".into()), Verdict::Drop);
        let e = run(&rs, &c, &packet(6, 80));
        assert_eq!(e.verdict, Verdict::Drop);
        assert_eq!(
            e.decision,
            Decision::KernelPolicy {
                table: "filter".into(),
                chain: "INPUT".into(),
                verdict: Verdict::Drop
            }
        );
        // With the default ACCEPT policy and no endpoint chain: not a host endpoint.
        let e = run(&rs, &ctx(), &packet(6, 80));
        assert_eq!(
            (e.verdict, e.decision),
            (Verdict::Accept, Decision::NotHostEndpoint)
        );
    }

    #[test]
    fn interfaces_wildcards_and_missing_out_interface() {
        let iface = |name: &str, negated| Match::InInterface {
            negated,
            name: name.into(),
        };
        let cases = [
            (iface("eth+", false), true),
            (iface("eth0", false), true),
            (iface("eth1", false), false),
            (iface("et", false), false),
            (iface("wlan+", true), true),
            // PREROUTING has no out interface: `-o eth0` never matches, `! -o eth0` always.
            (
                Match::OutInterface {
                    negated: false,
                    name: "eth0".into(),
                },
                false,
            ),
            (
                Match::OutInterface {
                    negated: true,
                    name: "eth0".into(),
                },
                true,
            ),
        ];
        for (m, hit) in cases {
            let rs = ruleset(vec![table(
                TableName::Raw,
                vec![("PREROUTING", rule(vec![m.clone()], Action::Drop))],
                vec![],
            )]);
            let e = run(&rs, &ctx(), &packet(17, 53));
            assert_eq!(e.verdict == Verdict::Drop, hit, "{m:?}");
        }
    }

    /// A neighbour solicitation is UNTRACKED from the start: a RELATED,ESTABLISHED accept does
    /// not admit it, an echo request of the same flow would be NEW.
    #[test]
    fn neighbour_discovery_is_untracked() {
        let ct = |s: &str| Match::ConntrackState {
            negated: false,
            states: s.into(),
        };
        let mut rs = ruleset(vec![table(
            TableName::Filter,
            vec![
                (
                    "INPUT",
                    rule(vec![ct("RELATED,ESTABLISHED")], Action::Accept),
                ),
                ("INPUT", rule(vec![], Action::Drop)),
            ],
            vec![],
        )]);
        rs.family = Family::V6;
        let mut ns = packet(58, 0);
        ns.src = "fe80::2".parse().unwrap();
        ns.dst = "ff02::1:ff00:1".parse().unwrap();
        (ns.sport, ns.dport) = (None, None);
        ns.icmp_type = Some(135);
        ns.state = ConnState::Established;
        let e = run(&rs, &ctx(), &ns);
        assert_eq!(e.verdict, Verdict::Drop);
        assert!(
            e.notes.iter().any(|n| n.contains("UNTRACKED")),
            "{:?}",
            e.notes
        );
        ns.icmp_type = Some(128);
        assert_eq!(run(&rs, &ctx(), &ns).verdict, Verdict::Accept);
    }

    #[test]
    fn conntrack_state_is_invalid_in_raw_and_untracked_after_notrack() {
        let ct = |s: &str| Match::ConntrackState {
            negated: false,
            states: s.into(),
        };
        let mut p = packet(6, 80);
        p.state = ConnState::Established;
        // raw sees INVALID (no conntrack yet) even for an established flow.
        let rs = ruleset(vec![table(
            TableName::Raw,
            vec![("PREROUTING", rule(vec![ct("INVALID")], Action::Drop))],
            vec![],
        )]);
        assert_eq!(run(&rs, &ctx(), &p).verdict, Verdict::Drop);
        // After NOTRACK in raw, mangle sees UNTRACKED, not ESTABLISHED.
        let rs = ruleset(vec![
            table(
                TableName::Raw,
                vec![("PREROUTING", rule(vec![], Action::NoTrack))],
                vec![],
            ),
            table(
                TableName::Mangle,
                vec![
                    (
                        "PREROUTING",
                        rule(vec![ct("RELATED,ESTABLISHED")], Action::Accept),
                    ),
                    ("PREROUTING", rule(vec![ct("UNTRACKED")], Action::Drop)),
                ],
                vec![],
            ),
        ]);
        assert_eq!(run(&rs, &ctx(), &p).verdict, Verdict::Drop);
        // DNAT is a state of its own, only when asked for.
        let rs = ruleset(vec![table(
            TableName::Filter,
            vec![("INPUT", rule(vec![ct("DNAT")], Action::Drop))],
            vec![],
        )]);
        assert_eq!(run(&rs, &ctx(), &p).verdict, Verdict::Accept);
        p.dnat = true;
        assert_eq!(run(&rs, &ctx(), &p).verdict, Verdict::Drop);
    }

    #[test]
    fn ipset_members_net_and_ip_port() {
        let mut rs = ruleset(vec![table(
            TableName::Filter,
            vec![
                (
                    "INPUT",
                    rule(
                        vec![Match::Set {
                            negated: false,
                            name: "ports".into(),
                            direction: SetDirection::DstDst,
                        }],
                        Action::Accept,
                    ),
                ),
                (
                    "INPUT",
                    rule(
                        vec![Match::Set {
                            negated: true,
                            name: "nets".into(),
                            direction: SetDirection::Src,
                        }],
                        Action::Reject,
                    ),
                ),
                ("INPUT", rule(vec![], Action::Drop)),
            ],
            vec![],
        )]);
        let set = |name: &str, t, members: &[&str]| Ipset {
            name: name.into(),
            set_type: t,
            family: Family::V4,
            max_elements: 10,
            members: members
                .iter()
                .map(|m| m.to_string())
                .collect::<BTreeSet<_>>(),
        };
        rs.ipsets.insert(
            "ports".into(),
            set("ports", IpsetType::HashIpPort, &["198.51.100.1,tcp:80"]),
        );
        rs.ipsets.insert(
            "nets".into(),
            set(
                "nets",
                IpsetType::HashNet,
                &["198.51.100.0/30", "203.0.113.9"],
            ),
        );
        assert_eq!(run(&rs, &ctx(), &packet(6, 80)).verdict, Verdict::Accept);
        // udp:80 is not tcp:80; the source is in `nets`, so not rejected: dropped.
        assert_eq!(run(&rs, &ctx(), &packet(17, 80)).verdict, Verdict::Drop);
        let mut outside = packet(6, 81);
        outside.src = "198.51.100.9".parse().unwrap();
        assert_eq!(run(&rs, &ctx(), &outside).verdict, Verdict::Reject);
    }
}
