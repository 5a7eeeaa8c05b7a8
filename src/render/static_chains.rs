//! Hook rules and the chains that always exist (`docs/felix-layout.md` "Chains and hooks",
//! "Static chains"; Felix `felix/rules/static.go`): the top-level `cali-*` chains, failsafe
//! chains (each rule recorded as a failsafe entry in the provenance) and the workload-to-host
//! chains.
//!
//! hostfw keeps Felix's rules and their order for every chain it writes, and leaves out the parts
//! that mean nothing on a non-cluster host: tunnel (IPIP/VXLAN/WireGuard) allow rules,
//! kube-proxy IPVS endpoint marks, the nat table. Felix's rules that only matter with workloads,
//! IP pools, QoS endpoints or service CIDRs are kept, because on a host without them they change
//! no packet's fate and a Felix host's chains are then taken over unchanged: raw
//! `cali-PREROUTING`'s workload RPF check (`cali-rpf-skip`), mangle `cali-POSTROUTING`'s DSCP rule
//! (`cali-egress-dscp` and its three empty sets) and `cali-FORWARD`'s `cali-cidr-block` jump.
//!
//! The workload-to-host feature stays (seed document: `defaultEndpointToHostAction`): `-i
//! <prefix>+ --goto cali-wl-to-host` in `cali-INPUT`, `cali-wl-to-host` (without Felix's jump to
//! the workload dispatch chain, which on a host without workloads would drop everything before
//! the configured action), the workload dispatch chains (end rules only, as there are no
//! workloads), `-o <prefix>+ RETURN` in `cali-OUTPUT` and the workload jumps in `cali-FORWARD`.
//! Every rule naming the workload prefix is written once per `interfacePrefix` entry, as Felix
//! does.

use super::names::{self, kernel};
use super::provenance::{index_u32, Origin, Recorder};
use super::{clear_mark, commented, put, rule, set_mark, Ctx};
use crate::model::{
    Direction, EndpointToHostAction, FailsafePort, FailsafeProtocol, InsertMode, IpVersion,
};
use crate::ruleset::{
    Action, Chain, Family, HookPosition, HookRule, IpsetType, Match, PortSpec, Rule, SetDirection,
    TableName,
};
use ipnet::IpNet;
use std::collections::BTreeMap;

const ACCEPTED_COMMENT: &str = "Host endpoint policy accepted packet.";

/// The hook rules of `table`, in the order they must appear in each kernel chain.
pub fn hooks(ctx: &Ctx, table: TableName) -> Vec<HookRule> {
    let pos = match ctx.cfg.chain_insert_mode {
        InsertMode::Insert => HookPosition::Insert,
        InsertMode::Append => HookPosition::Append,
    };
    let jump = |kernel_chain: &str, target: &str| HookRule {
        kernel_chain: kernel_chain.to_string(),
        position: pos,
        rule: rule(vec![], Action::Jump(target.into())),
    };
    match table {
        TableName::Raw => vec![
            jump(kernel::PREROUTING, names::PREROUTING),
            jump(kernel::OUTPUT, names::OUTPUT),
        ],
        TableName::Mangle => vec![
            jump(kernel::PREROUTING, names::PREROUTING),
            jump(kernel::POSTROUTING, names::POSTROUTING),
        ],
        TableName::Filter => {
            let a = ctx.marks.accept;
            vec![
                jump(kernel::INPUT, names::INPUT),
                jump(kernel::FORWARD, names::FORWARD),
                jump(kernel::OUTPUT, names::OUTPUT),
                HookRule {
                    kernel_chain: kernel::FORWARD.to_string(),
                    position: HookPosition::AlwaysAppend,
                    rule: commented(
                        vec![ctx.mark_set(a)],
                        ctx.filter_allow(),
                        "Policy explicitly accepted packet.",
                    ),
                },
                // Stamps forwarded packets so mangle POSTROUTING skips host egress policy.
                HookRule {
                    kernel_chain: kernel::FORWARD.to_string(),
                    position: HookPosition::AlwaysAppend,
                    rule: rule(vec![], set_mark(a)),
                },
            ]
        }
        TableName::Nat => Vec::new(),
    }
}

/// Add the static chains of `table` (pruning later drops the unreferenced ones, e.g. failsafe
/// chains when no endpoint is active).
pub fn add(ctx: &Ctx, table: TableName, chains: &mut BTreeMap<String, Chain>, rec: &mut Recorder) {
    match table {
        TableName::Raw => raw(ctx, chains),
        TableName::Mangle => mangle(ctx, chains),
        TableName::Filter => filter(ctx, chains),
        // hostfw renders nothing into nat (`TableName::ALL`).
        TableName::Nat => {}
    }
    for (name, dir) in [
        (names::FAILSAFE_IN, Direction::Ingress),
        (names::FAILSAFE_OUT, Direction::Egress),
    ] {
        let rules = failsafe(ctx, table, dir);
        let origins = (0..rules.len()).map(|i| (index_u32(i), Origin::Failsafe(dir)));
        rec.rules(table, name, origins);
        put(chains, name.into(), rules);
    }
}

fn raw(ctx: &Ctx, chains: &mut BTreeMap<String, Chain>) {
    let m = &ctx.marks;
    // Felix marks packets from workload interfaces with scratch-0, lets `cali-rpf-skip`
    // accept the ones allowed to spoof, drops the others that fail the reverse-path check, and
    // sends only unmarked packets to the host endpoint chains (`StaticRawPreroutingChain`).
    let from_workload = m.scratch0;
    let mut prerouting = vec![rule(vec![], clear_mark(m.all()))];
    prerouting.extend(
        ctx.cfg
            .workload_prefixes()
            .map(|p| rule(vec![in_iface(&wildcard(p))], set_mark(from_workload))),
    );
    prerouting.extend([
        rule(
            vec![ctx.mark_set(from_workload)],
            Action::Jump(names::RPF_SKIP.into()),
        ),
        rule(
            vec![ctx.mark_set(from_workload), Match::RpfCheckFailed],
            ctx.deny(TableName::Raw),
        ),
        rule(
            vec![ctx.mark_clear(from_workload)],
            Action::Jump(names::FROM_HOST_DISPATCH.into()),
        ),
        rule(vec![ctx.mark_set(m.accept)], Action::Accept),
    ]);
    put(chains, names::PREROUTING.into(), prerouting);
    // Filled by Felix only for workloads allowed to spoof (endpoint_mgr.go updateRPFSkipChain).
    put(chains, names::RPF_SKIP.into(), Vec::new());
    put(
        chains,
        names::OUTPUT.into(),
        vec![
            rule(vec![], clear_mark(m.all())),
            rule(vec![], Action::Jump(names::TO_HOST_DISPATCH.into())),
            rule(vec![ctx.mark_set(m.accept)], Action::Accept),
        ],
    );
}

/// `<prefix>+`: every interface whose name starts with `prefix`.
fn wildcard(prefix: &str) -> String {
    format!("{prefix}+")
}

/// The sets mangle `cali-POSTROUTING`'s DSCP rule names, with their types (Felix's
/// `dscp_mgr.go`, `masq_mgr.go`, `hostip_mgr.go`); hostfw keeps them empty.
pub(crate) const DSCP_SETS: [(&str, IpsetType); 3] = [
    (names::IPSET_ID_DSCP_SOURCES, IpsetType::HashNet),
    (names::IPSET_ID_ALL_POOLS, IpsetType::HashNet),
    (names::IPSET_ID_THIS_HOST, IpsetType::HashIp),
];

/// `-m set [!] --match-set <set> <dir>` for one of [`DSCP_SETS`].
fn dscp_set(ctx: &Ctx, id: &str, negated: bool, direction: SetDirection) -> Match {
    Match::Set {
        negated,
        name: names::ipset_name(ctx.family, id).into(),
        direction,
    }
}

fn mangle(ctx: &Ctx, chains: &mut BTreeMap<String, Chain>) {
    let m = &ctx.marks;
    let allow = ctx.mangle_allow();
    put(
        chains,
        names::PREROUTING.into(),
        vec![
            rule(vec![ctstate("RELATED,ESTABLISHED")], allow.clone()),
            rule(vec![ctx.mark_set(m.accept)], allow.clone()),
            rule(vec![], Action::Jump(names::FROM_HOST_DISPATCH.into())),
            commented(vec![ctx.mark_set(m.accept)], allow, ACCEPTED_COMMENT),
        ],
    );
    put(
        chains,
        names::POSTROUTING.into(),
        vec![
            // v3.31+ (StaticManglePostroutingChain): DSCP for traffic from QoS endpoints that
            // leaves the cluster. Without QoS endpoints the source set is empty.
            commented(
                vec![
                    dscp_set(ctx, names::IPSET_ID_DSCP_SOURCES, false, SetDirection::Src),
                    dscp_set(ctx, names::IPSET_ID_ALL_POOLS, true, SetDirection::Dst),
                    dscp_set(ctx, names::IPSET_ID_THIS_HOST, true, SetDirection::Dst),
                ],
                Action::Jump(names::EGRESS_DSCP.into()),
                "set dscp for traffic leaving cluster.",
            ),
            rule(vec![ctx.mark_set(m.accept)], Action::Return),
            rule(vec![], clear_mark(m.all())),
            rule(
                vec![ctstate("DNAT")],
                Action::Jump(names::TO_HOST_DISPATCH.into()),
            ),
            commented(
                vec![ctx.mark_set(m.accept)],
                Action::Return,
                ACCEPTED_COMMENT,
            ),
        ],
    );
    // Felix's dscp.go EgressDSCPChain: one rule per QoS endpoint address; none here.
    put(chains, names::EGRESS_DSCP.into(), Vec::new());
}

fn filter(ctx: &Ctx, chains: &mut BTreeMap<String, Chain>) {
    let m = &ctx.marks;
    let allow = ctx.filter_allow();
    let prefixes: Vec<String> = ctx.cfg.workload_prefixes().map(wildcard).collect();
    let mut input: Vec<Rule> = prefixes
        .iter()
        .map(|wl| rule(vec![in_iface(wl)], Action::Goto(names::WL_TO_HOST.into())))
        .collect();
    input.extend([
        rule(vec![ctx.mark_set(m.accept)], allow.clone()),
        rule(vec![], clear_mark(m.all())),
        rule(vec![], Action::Jump(names::FROM_HOST_DISPATCH.into())),
        commented(
            vec![ctx.mark_set(m.accept)],
            allow.clone(),
            ACCEPTED_COMMENT,
        ),
    ]);
    put(chains, names::INPUT.into(), input);
    let mut output = vec![rule(vec![ctx.mark_set(m.accept)], allow.clone())];
    output.extend(
        prefixes
            .iter()
            .map(|wl| rule(vec![out_iface(wl)], Action::Return)),
    );
    output.extend([
        rule(vec![], clear_mark(m.all())),
        rule(
            vec![Match::ConntrackState {
                negated: true,
                states: "DNAT".into(),
            }],
            Action::Jump(names::TO_HOST_DISPATCH.into()),
        ),
        commented(
            vec![ctx.mark_set(m.accept)],
            allow.clone(),
            ACCEPTED_COMMENT,
        ),
    ]);
    put(chains, names::OUTPUT.into(), output);
    let mut forward = vec![
        rule(vec![], clear_mark(m.all() & !m.accept)),
        rule(
            vec![ctx.mark_clear(m.accept)],
            Action::Jump(names::FROM_HEP_FORWARD_DISPATCH.into()),
        ),
    ];
    for wl in &prefixes {
        forward.push(rule(
            vec![in_iface(wl)],
            Action::Jump(names::FROM_WL_DISPATCH.into()),
        ));
        forward.push(rule(
            vec![out_iface(wl)],
            Action::Jump(names::TO_WL_DISPATCH.into()),
        ));
    }
    forward.extend([
        rule(vec![], Action::Jump(names::TO_HEP_FORWARD_DISPATCH.into())),
        // Service-loop prevention (StaticFilterForwardChains); empty without service CIDRs
        // (felix/rules/nat.go BlockedCIDRsToIptablesChains).
        rule(vec![], Action::Jump(names::CIDR_BLOCK.into())),
    ]);
    put(chains, names::FORWARD.into(), forward);
    put(chains, names::CIDR_BLOCK.into(), Vec::new());
    let mut wl_to_host = Vec::new();
    if ctx.is_v6() {
        // Felix lets workloads do router discovery and MLD before their egress policy.
        for t in [130u8, 131, 132, 133, 135, 136] {
            wl_to_host.push(rule(
                vec![
                    Match::Protocol {
                        negated: false,
                        name: "58".into(),
                    },
                    Match::Icmp6 {
                        negated: false,
                        icmp_type: t,
                        code: None,
                    },
                ],
                allow.clone(),
            ));
        }
    }
    // Felix jumps to `cali-from-wl-dispatch` here so that known workloads' policy runs first. A
    // standalone host has no known workloads, and that chain would drop every packet as
    // "Unknown interface" before the configured action: defaultEndpointToHostAction would never
    // take effect. So the configured action follows directly.
    let endpoint_to_host = match ctx.cfg.default_endpoint_to_host_action {
        EndpointToHostAction::Drop => Action::Drop,
        EndpointToHostAction::Return => Action::Return,
        // Felix uses a plain ACCEPT here, not iptablesFilterAllowAction.
        EndpointToHostAction::Accept => Action::Accept,
    };
    wl_to_host.push(commented(
        vec![],
        endpoint_to_host,
        "Configured DefaultEndpointToHostAction",
    ));
    put(chains, names::WL_TO_HOST.into(), wl_to_host);
    // No workloads: both dispatch chains hold only their end rule.
    for chain in [names::FROM_WL_DISPATCH, names::TO_WL_DISPATCH] {
        put(
            chains,
            chain.into(),
            vec![commented(
                vec![],
                ctx.deny(TableName::Filter),
                "Unknown interface",
            )],
        );
    }
}

/// `cali-failsafe-in` / `cali-failsafe-out`. The raw copies add the reverse rules so the
/// replies of failsafe flows are accepted before any untracked policy sees them.
fn failsafe(ctx: &Ctx, table: TableName, dir: Direction) -> Vec<Rule> {
    let (forward, reverse) = match dir {
        Direction::Ingress => (&ctx.cfg.failsafe_inbound, &ctx.cfg.failsafe_outbound),
        Direction::Egress => (&ctx.cfg.failsafe_outbound, &ctx.cfg.failsafe_inbound),
    };
    let mut rules: Vec<Rule> = forward
        .iter()
        .filter_map(|p| failsafe_rule(ctx, p, false, dir == Direction::Ingress))
        .collect();
    if table == TableName::Raw {
        rules.extend(
            reverse
                .iter()
                .filter_map(|p| failsafe_rule(ctx, p, true, dir == Direction::Ingress)),
        );
    }
    rules
}

/// One failsafe entry: `-p P -m multiport --destination-ports N [--source|--destination NET]`,
/// or with `--source-ports` for the reverse raw rules. Entries whose net is of the other family
/// are skipped.
fn failsafe_rule(ctx: &Ctx, port: &FailsafePort, reverse: bool, inbound: bool) -> Option<Rule> {
    let proto = match port.protocol {
        FailsafeProtocol::Tcp => "tcp",
        FailsafeProtocol::Udp => "udp",
    };
    let ports = vec![PortSpec::Single(port.port)];
    let mut matches = vec![
        Match::Protocol {
            negated: false,
            name: proto.into(),
        },
        if reverse {
            Match::SourcePorts {
                negated: false,
                ports: ports.into(),
            }
        } else {
            Match::DestinationPorts {
                negated: false,
                ports: ports.into(),
            }
        },
    ];
    if let Some(net) = port.net {
        if !same_family(ctx.family, &net) {
            return None;
        }
        // The peer is the source of everything `cali-failsafe-in` accepts (requests to our
        // inbound ports, replies to our outbound ones) and the destination in
        // `cali-failsafe-out`.
        matches.push(if inbound {
            source(net)
        } else {
            destination(net)
        });
    }
    Some(rule(matches, Action::Accept))
}

pub(crate) fn same_family(family: Family, net: &IpNet) -> bool {
    matches!(
        (family, IpVersion::of_net(net)),
        (Family::V4, IpVersion::V4) | (Family::V6, IpVersion::V6)
    )
}

fn source(net: IpNet) -> Match {
    Match::Source {
        negated: false,
        net,
    }
}

fn destination(net: IpNet) -> Match {
    Match::Destination {
        negated: false,
        net,
    }
}

fn ctstate(states: &str) -> Match {
    Match::ConntrackState {
        negated: false,
        states: states.into(),
    }
}

pub(crate) fn in_iface(name: &str) -> Match {
    Match::InInterface {
        negated: false,
        name: name.into(),
    }
}

pub(crate) fn out_iface(name: &str) -> Match {
    Match::OutInterface {
        negated: false,
        name: name.into(),
    }
}
