//! `explain`: one packet through the rendered ruleset, evaluated the way the kernel walks its
//! tables (raw → mangle → filter hooks, jump/goto/return, marks, conntrack state, ipsets), with
//! the verdict attributed to a policy rule, a failsafe entry or an endpoint default. Pure: it
//! reads no files and spawns nothing; the caller hands in the typed `Ruleset` and the chain
//! owners (`context`).

pub mod context;
pub mod live;
mod sim;
mod text;

pub use context::Context;

use serde::Serialize;
use std::net::IpAddr;

/// Which way the packet travels relative to this host: the packet's path through the hooks,
/// not a rule direction (`model::Direction`): a forwarded packet crosses both an ingress and
/// an egress endpoint chain, so the path needs a third value that no rule list has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Arrives on `iface` for a local address: PREROUTING then INPUT.
    Ingress,
    /// Sent by the host out of `iface`: OUTPUT then POSTROUTING.
    Egress,
    /// Routed from `iface` to `out_iface`: PREROUTING, FORWARD, POSTROUTING.
    Forward,
}

/// The connection-tracking state conntrack gives the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnState {
    New,
    Established,
    Invalid,
}

/// One packet to evaluate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Packet {
    pub direction: Direction,
    /// Ingress and forward: the arrival interface; egress: the departure interface.
    pub iface: String,
    /// Forward only: the departure interface.
    pub out_iface: Option<String>,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP protocol number (6 tcp, 17 udp, 1 icmp, 58 icmpv6, ...).
    pub proto: u8,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
    pub state: ConnState,
    /// Whether conntrack recorded a DNAT for this flow (`--ctstate DNAT`).
    pub dnat: bool,
}

impl Packet {
    /// The interface the packet arrives on, when it arrives from the network.
    pub fn in_iface(&self) -> Option<&str> {
        match self.direction {
            Direction::Ingress | Direction::Forward => Some(&self.iface),
            Direction::Egress => None,
        }
    }

    /// The interface the packet leaves by, when it leaves to the network.
    pub fn out_iface(&self) -> Option<&str> {
        match self.direction {
            Direction::Egress => Some(&self.iface),
            Direction::Forward => self.out_iface.as_deref(),
            Direction::Ingress => None,
        }
    }
}

/// The fate of the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    Accept,
    Drop,
    Reject,
}

impl Verdict {
    /// The iptables spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Accept => "ACCEPT",
            Verdict::Drop => "DROP",
            Verdict::Reject => "REJECT",
        }
    }

    /// True when the packet gets through.
    pub fn passes(self) -> bool {
        self == Verdict::Accept
    }
}

/// What a policy or profile rule does to the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RuleVerdict {
    Allow,
    Deny,
    Pass,
}

/// What decided the verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Decision {
    /// A GlobalNetworkPolicy rule (`rule` is the 0-based index in the policy's `ingress` or
    /// `egress` list; `None` when it cannot be told).
    Policy {
        policy: String,
        tier: String,
        direction: String,
        rule: Option<usize>,
        action: RuleVerdict,
    },
    /// A Profile rule.
    Profile {
        profile: String,
        direction: String,
        rule: Option<usize>,
        action: RuleVerdict,
    },
    /// A failsafe port entry (`tcp:22`, with its net when it has one).
    Failsafe { direction: String, entry: String },
    /// Conntrack: an established flow is accepted, an invalid packet dropped.
    Conntrack { state: String },
    /// Every applicable policy of the tier was evaluated and none allowed or passed it.
    EndOfTier { tier: String, endpoint: String },
    /// The endpoint has no policy for this direction and no profile.
    NoPolicy { endpoint: String },
    /// Policies passed (or none applied) and no profile allowed it.
    NoProfileMatched { endpoint: String },
    /// A forwarded packet on an endpoint without forward policy is allowed by default.
    ForwardDefault { endpoint: String },
    /// The interface is no host endpoint: hostfw leaves the packet alone.
    NotHostEndpoint,
    /// No rule took a verdict: the policy of a kernel chain decided.
    KernelPolicy {
        table: String,
        chain: String,
        verdict: Verdict,
    },
    /// Any other rule (workload-interface handling, hand-built rulesets).
    Rule {
        table: String,
        chain: String,
        index: usize,
        comment: Option<String>,
    },
}

impl Decision {
    /// One line for humans.
    pub fn describe(&self) -> String {
        match self {
            Decision::Policy {
                policy,
                tier,
                direction,
                rule,
                action,
            } => format!(
                "GlobalNetworkPolicy {policy} (tier {tier}), {direction} {}: {action:?}",
                rule_word(*rule)
            ),
            Decision::Profile {
                profile,
                direction,
                rule,
                action,
            } => format!(
                "Profile {profile}, {direction} {}: {action:?}",
                rule_word(*rule)
            ),
            Decision::Failsafe { direction, entry } => {
                format!("failsafe {direction} entry {entry}")
            }
            Decision::Conntrack { state } => match state.as_str() {
                "invalid" => "conntrack: invalid packet dropped".into(),
                s => format!("conntrack: {s} flow accepted"),
            },
            Decision::EndOfTier { tier, endpoint } => format!(
                "end of tier {tier} default: policies applied to {endpoint} but none allowed \
                 or passed the packet"
            ),
            Decision::NoPolicy { endpoint } => {
                format!("no policy selected this endpoint ({endpoint}) and it has no profile")
            }
            Decision::NoProfileMatched { endpoint } => {
                format!("no profile matched on endpoint {endpoint}")
            }
            Decision::ForwardDefault { endpoint } => {
                format!("forwarded traffic allowed by default: no forward policy on {endpoint}")
            }
            Decision::NotHostEndpoint => {
                "not a host endpoint: hostfw leaves this traffic alone".into()
            }
            Decision::KernelPolicy {
                table,
                chain,
                verdict,
            } => format!(
                "no rule decided: the policy of {table} {chain} ({})",
                verdict.as_str()
            ),
            Decision::Rule {
                table,
                chain,
                index,
                comment,
            } => match comment {
                Some(c) => format!("{table} {chain} rule {index} ({c})"),
                None => format!("{table} {chain} rule {index}"),
            },
        }
    }
}

fn rule_word(rule: Option<usize>) -> String {
    match rule {
        Some(i) => format!("rule {i}"),
        None => "rule (index unknown)".into(),
    }
}

/// One rule that matched on the way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub chain: String,
    /// 0-based position in the chain (hook rules: within our hook rules of the kernel chain).
    pub index: usize,
    /// The rule in Felix form (comments, matches, action).
    pub rule: String,
    /// Who owns the chain, e.g. `GlobalNetworkPolicy web ingress rule 1`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// One kernel hook the packet went through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HookTrace {
    pub table: String,
    pub chain: String,
    /// `ACCEPT`, `DROP`, `REJECT`, or `policy ACCEPT` when it fell off the end.
    pub outcome: String,
    pub steps: Vec<Step>,
}

/// The full answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub packet: Packet,
    pub verdict: Verdict,
    pub decision: Decision,
    /// `decision` in words.
    pub reason: String,
    /// The host endpoint whose chains the packet went through last, if any.
    pub endpoint: Option<String>,
    pub hooks: Vec<HookTrace>,
    /// Caveats (a LOG rule, a rate limit assumed to match, a missing chain or set).
    pub notes: Vec<String>,
}

/// Evaluate `packet` through `ruleset` (which must be of the packet's family).
pub fn explain(ruleset: &crate::ruleset::Ruleset, ctx: &Context, packet: &Packet) -> Explanation {
    sim::run(ruleset, ctx, packet)
}

/// The IP protocol number of a protocol name as iptables spells it (or a number).
pub fn protocol_number(name: &str) -> Option<u8> {
    match name.to_ascii_lowercase().as_str() {
        "tcp" => Some(6),
        "udp" => Some(17),
        "icmp" => Some(1),
        "icmpv6" | "ipv6-icmp" | "icmp6" => Some(58),
        "sctp" => Some(132),
        "udplite" => Some(136),
        "dccp" => Some(33),
        "gre" => Some(47),
        "esp" => Some(50),
        "ah" => Some(51),
        n => n.parse().ok(),
    }
}
