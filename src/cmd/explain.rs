//! `hostfw explain`: build one packet from the flags, take this node's desired ruleset for its
//! family (or, with `--live`, the kernel's) and print what the simulator says. Reads the policy directory and the host's interfaces (as
//! `show` does); never touches the kernel's rules, so it needs no root.

use super::common;
use super::{CmdResult, Exit};
use crate::cli::{DirectionArg, ExplainArgs, OutputFormat, StateArg};
use crate::explain::{self, ConnState, Direction, Packet};
use crate::ruleset::Family;
use crate::settings::Settings;

/// Source port used when none is given: the first ephemeral port.
const DEFAULT_SPORT: u16 = 49152;

pub fn run(settings: &Settings, args: &ExplainArgs) -> CmdResult {
    let packet = match packet(args) {
        Ok(p) => p,
        Err(msg) => {
            eprintln!("error: {msg}");
            return Ok(Exit::Invalid);
        }
    };
    let family = if packet.src.is_ipv6() {
        Family::V6
    } else {
        Family::V4
    };
    let (desired, ruleset, own_ctx) = match common::load_family(settings, family) {
        Ok(loaded) => loaded,
        Err(done) => return done,
    };
    let view = &desired.view;
    let e = if args.live {
        let live = live_ruleset(settings, view, family)?;
        let mut ctx = own_ctx.for_evaluating(&ruleset, &live.ruleset);
        ctx.kernel_policies = live.policies;
        let mut e = explain::explain(&live.ruleset, &ctx, &packet);
        e.notes.extend(
            live.unknown
                .iter()
                .map(|u| format!("rule not understood, treated as never matching: {u}")),
        );
        e
    } else {
        explain::explain(&ruleset, &own_ctx, &packet)
    };
    match args.output {
        OutputFormat::Text => print!("{e}"),
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&e)?),
    }
    Ok(Exit::Ok)
}

/// The kernel's tables of `family` and hostfw's ipsets, read through the dataplane.
fn live_ruleset(
    settings: &Settings,
    view: &crate::resolve::NodeView,
    family: Family,
) -> Result<explain::live::LiveRuleset, super::CmdError> {
    use crate::dataplane::Dataplane;
    use crate::ruleset::TableName;
    let dp = super::apply::open_dataplane(settings, Some(view.config.iptables_backend))?;
    let mut saves = Vec::new();
    for table in TableName::ALL {
        saves.push((table, dp.save(family, table)?));
    }
    let ipsets = crate::ruleset::parse_ipset_save(&dp.ipset_save()?)?;
    Ok(explain::live::parse(family, &saves, &ipsets))
}

/// The packet the flags describe, or what is wrong with them.
pub fn packet(args: &ExplainArgs) -> Result<Packet, String> {
    if args.src.is_ipv6() != args.dst.is_ipv6() {
        return Err(format!(
            "--src {} and --dst {} are of different IP families",
            args.src, args.dst
        ));
    }
    let proto = explain::protocol_number(&args.proto)
        .ok_or_else(|| format!("--proto {}: not a protocol name or number", args.proto))?;
    let direction = match args.direction {
        DirectionArg::Ingress => Direction::Ingress,
        DirectionArg::Egress => Direction::Egress,
        DirectionArg::Forward => Direction::Forward,
    };
    if direction == Direction::Forward && args.out_iface.is_none() {
        return Err("--direction forward needs --out-iface".into());
    }
    if direction != Direction::Forward && args.out_iface.is_some() {
        return Err("--out-iface is only meaningful with --direction forward".into());
    }
    let ports = matches!(proto, 6 | 17 | 33 | 132 | 136);
    let icmp = matches!(proto, 1 | 58);
    if ports && args.dport.is_none() {
        return Err(format!("--proto {} needs --dport", args.proto));
    }
    if !ports && (args.sport.is_some() || args.dport.is_some()) {
        return Err(format!("--proto {} has no ports", args.proto));
    }
    if !icmp && args.icmp_type.is_some() {
        return Err("--icmp-type needs --proto icmp or icmpv6".into());
    }
    if (proto == 1 && args.src.is_ipv6()) || (proto == 58 && args.src.is_ipv4()) {
        return Err(format!(
            "--proto {} does not go with {} addresses",
            args.proto,
            if args.src.is_ipv6() { "IPv6" } else { "IPv4" }
        ));
    }
    let echo = if proto == 58 { 128 } else { 8 };
    Ok(Packet {
        direction,
        iface: args.iface.clone(),
        out_iface: args.out_iface.clone(),
        src: args.src,
        dst: args.dst,
        proto,
        sport: ports.then(|| args.sport.unwrap_or(DEFAULT_SPORT)),
        dport: if ports { args.dport } else { None },
        icmp_type: icmp.then(|| args.icmp_type.unwrap_or(echo)),
        icmp_code: icmp.then(|| args.icmp_code.unwrap_or(0)),
        state: match args.state {
            StateArg::New => ConnState::New,
            StateArg::Established => ConnState::Established,
            StateArg::Invalid => ConnState::Invalid,
        },
        dnat: args.dnat,
    })
}
