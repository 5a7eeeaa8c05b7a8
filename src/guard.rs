//! Lockout guard: would the new rules cut off the admin's SSH session, or leave no inbound SSH
//! at all? The core (`check`, `parse_proc_net_tcp`, `parse_ssh_connection`) is pure and asks
//! `explain` about a few packets of the rulesets `desired::compute` rendered; the one effect,
//! `observe`, reads `SSH_CONNECTION`, `/proc/net/tcp{,6}` (as `sshd::SocketTables` read them) and
//! sshd's sockets and is kept apart at the bottom of this file. Decides nothing about what the caller does with a finding (`check`
//! warns, `apply` refuses, the daemon logs or refuses through `daemon_gate`).

use crate::diag::Diagnostic;
use crate::explain::{self, ConnState, Context, Direction, Packet};
use crate::finding::{Finding, FindingKind};
use crate::model::InterfaceName;
use crate::resolve::{HostInterfaces, NodeView};
use crate::ruleset::{Family, IpsetType, Match, Ruleset};
use crate::sshd::SocketTables;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The SSH port assumed when no session tells otherwise.
pub const SSH_PORT: u16 = 22;

/// One SSH session into this host: the client and the local (server) end.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SshSession {
    pub client: SocketAddr,
    pub server: SocketAddr,
    /// Where it was seen: `SSH_CONNECTION` or `/proc/net/tcp`.
    pub seen_in: &'static str,
}

/// What the guard protects: the admin's sessions and the ports sshd listens on (22 when
/// neither says otherwise).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub sessions: Vec<SshSession>,
    /// Ports a new SSH login must still reach: sshd's listening ports, the sessions' ports, 22.
    pub ssh_ports: BTreeSet<u16>,
}

impl Observed {
    /// `sessions`, with their ports and 22 as the SSH ports.
    pub fn from_sessions(sessions: Vec<SshSession>) -> Observed {
        Observed::new(sessions, BTreeSet::new())
    }

    /// `sessions` and sshd's `listening` ports, plus the sessions' ports; 22 only when sshd's
    /// ports are unknown (a 22 kept open by the failsafes does not help an sshd on 2222).
    pub fn new(sessions: Vec<SshSession>, listening: BTreeSet<u16>) -> Observed {
        let mut ssh_ports = listening;
        if ssh_ports.is_empty() {
            ssh_ports.insert(SSH_PORT);
        }
        ssh_ports.extend(sessions.iter().map(|s| s.server.port()));
        Observed {
            sessions,
            ssh_ports,
        }
    }
}

/// What to do with findings in the daemon (`--lockout-guard`, `HOSTFW_LOCKOUT_GUARD`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DaemonMode {
    /// The default: keep the current rules instead of applying an edit that would cut off an
    /// SSH session the daemon can see (a saved edit is in force within a second, long before
    /// anyone could `apply --confirm` it); log the other findings and apply.
    Sessions,
    /// Log loudly and apply anyway (`HOSTFW_LOCKOUT_GUARD=warn`: the set opts in).
    Warn,
    /// Keep the current rules on any finding (`HOSTFW_LOCKOUT_GUARD=refuse`).
    Refuse,
}

impl DaemonMode {
    /// The mode for a `HOSTFW_LOCKOUT_GUARD` value (`refuse`, `warn`; `sessions`, unset or
    /// anything else: `Sessions`).
    pub fn from_value(value: Option<&str>) -> DaemonMode {
        match value.map(str::trim) {
            Some(v) if v.eq_ignore_ascii_case("refuse") => DaemonMode::Refuse,
            Some(v) if v.eq_ignore_ascii_case("warn") => DaemonMode::Warn,
            _ => DaemonMode::Sessions,
        }
    }

    /// Whether a finding of `kind` keeps the current rules.
    fn refuses(self, kind: FindingKind) -> bool {
        match self {
            DaemonMode::Refuse => true,
            DaemonMode::Sessions => kind == FindingKind::Lockout,
            DaemonMode::Warn => false,
        }
    }
}

/// A rendered family ready for explain.
struct Prepared<'a> {
    ruleset: &'a Ruleset,
    ctx: &'a Context,
}

/// Check `sessions` and SSH reachability against `rulesets` (rendered from `view`, with their
/// explain `contexts` in the same order). `interfaces` are the host's (they tell which interface
/// a session's local address is on).
pub fn check(
    view: &NodeView,
    rulesets: &[Ruleset],
    contexts: &[Context],
    interfaces: &HostInterfaces,
    observed: &Observed,
) -> Vec<Finding> {
    let prepared: Vec<Prepared> = rulesets
        .iter()
        .zip(contexts)
        .map(|(ruleset, ctx)| Prepared { ruleset, ctx })
        .collect();
    analyse(view, &prepared, interfaces, observed)
}

fn analyse(
    view: &NodeView,
    families: &[Prepared],
    interfaces: &HostInterfaces,
    observed: &Observed,
) -> Vec<Finding> {
    let sessions = observed.sessions.as_slice();
    let mut findings = Vec::new();
    let for_family = |ip: &IpAddr| {
        let fam = if ip.is_ipv6() { Family::V6 } else { Family::V4 };
        families.iter().find(|p| p.ruleset.family == fam)
    };
    for s in sessions {
        let Some(p) = for_family(&s.server.ip()) else {
            continue;
        };
        let ifaces = ifaces_with(interfaces, s.server.ip());
        for iface in &ifaces {
            let inbound = |state| Packet {
                direction: Direction::Ingress,
                iface: iface.clone(),
                out_iface: None,
                src: s.client.ip(),
                dst: s.server.ip(),
                proto: 6,
                sport: Some(s.client.port()),
                dport: Some(s.server.port()),
                icmp_type: None,
                icmp_code: None,
                state,
                dnat: false,
            };
            let reply = Packet {
                direction: Direction::Egress,
                src: s.server.ip(),
                dst: s.client.ip(),
                sport: Some(s.server.port()),
                dport: Some(s.client.port()),
                ..inbound(ConnState::Established)
            };
            let what = format!(
                "SSH session {} -> {} (seen in {}) on {iface}",
                s.client, s.server, s.seen_in
            );
            // IPv6 needs neighbour discovery both ways, which the kernel leaves untracked: a
            // set that drops it kills the session when the neighbour entry expires.
            let neighbour = |direction, src, dst, icmp_type| Packet {
                direction,
                src,
                dst,
                proto: 58,
                sport: None,
                dport: None,
                icmp_type: Some(icmp_type),
                icmp_code: Some(0),
                ..inbound(ConnState::New)
            };
            let (client, server) = (s.client.ip(), s.server.ip());
            let nd: Vec<(Packet, &str)> = if server.is_ipv6() {
                vec![
                    (
                        neighbour(Direction::Ingress, client, server, 135),
                        "neighbour solicitations from its side (ICMPv6 type 135, untracked) \
                         would be dropped, so it dies when the neighbour entry expires,",
                    ),
                    (
                        neighbour(Direction::Egress, server, client, 136),
                        "neighbour advertisements to its side (ICMPv6 type 136, untracked) \
                         would be dropped, so it dies when the neighbour entry expires,",
                    ),
                ]
            } else {
                Vec::new()
            };
            for (packet, words) in [
                (
                    inbound(ConnState::Established),
                    "its packets would be dropped",
                ),
                (reply, "the replies to it would be dropped"),
                (
                    inbound(ConnState::New),
                    "a new login from the same client would be dropped",
                ),
            ]
            .into_iter()
            .chain(nd)
            {
                let e = explain::explain(p.ruleset, p.ctx, &packet);
                if !e.verdict.passes() {
                    findings.push(Finding {
                        kind: FindingKind::Lockout,
                        message: format!("{what}: {words} by {}", e.reason),
                        decision: Some(e.decision),
                    });
                    break;
                }
            }
        }
    }
    if let Some(f) = unreachable(view, families, interfaces, observed) {
        findings.push(f);
    }
    findings
}

/// Interfaces holding `ip`; every interface when none does (a session this host cannot place).
fn ifaces_with(interfaces: &HostInterfaces, ip: IpAddr) -> Vec<String> {
    let holding: Vec<String> = interfaces
        .iter()
        .filter(|(_, addrs)| addrs.contains(&ip))
        .map(|(name, _)| name.clone())
        .collect();
    if holding.is_empty() {
        interfaces.keys().cloned().collect()
    } else {
        holding
    }
}

/// `Some` when no new inbound SSH connection would be accepted on any host endpoint interface
/// from any plausible source (the admins' clients, the nets and sets the rules name, and an
/// arbitrary outside address).
fn unreachable(
    view: &NodeView,
    families: &[Prepared],
    interfaces: &HostInterfaces,
    observed: &Observed,
) -> Option<Finding> {
    let sessions = observed.sessions.as_slice();
    let ports = &observed.ssh_ports;
    let mut targets: Vec<(String, IpAddr)> = Vec::new();
    for ep in &view.endpoints {
        for (name, addrs) in interfaces {
            let covered = match &ep.interface {
                InterfaceName::Named(n) => n == name,
                InterfaceName::Any => true,
            };
            if covered {
                targets.extend(addrs.iter().map(|a| (name.clone(), *a)));
            }
        }
    }
    targets.sort();
    targets.dedup();
    // A host without endpoints (or without addresses on them) is not firewalled by hostfw.
    if targets.is_empty() {
        return None;
    }
    let mut last_denial = None;
    for (iface, dst) in &targets {
        let Some(p) = families
            .iter()
            .find(|p| (p.ruleset.family == Family::V6) == dst.is_ipv6())
        else {
            continue;
        };
        for src in candidate_sources(p.ruleset, sessions, dst.is_ipv6()) {
            for port in ports {
                let packet = Packet {
                    direction: Direction::Ingress,
                    iface: iface.clone(),
                    out_iface: None,
                    src,
                    dst: *dst,
                    proto: 6,
                    sport: Some(49152),
                    dport: Some(*port),
                    icmp_type: None,
                    icmp_code: None,
                    state: ConnState::New,
                    dnat: false,
                };
                let e = explain::explain(p.ruleset, p.ctx, &packet);
                if e.verdict.passes() {
                    return None;
                }
                last_denial = Some(e);
            }
        }
    }
    let e = last_denial?;
    let port_list: Vec<String> = ports.iter().map(u16::to_string).collect();
    Some(Finding {
        kind: FindingKind::Unreachable,
        message: format!(
            "no inbound SSH (tcp port {}) would be accepted on any host endpoint address from \
             any source the rules name (e.g. {} -> {} is dropped by {}); the failsafe ports do \
             not cover it",
            port_list.join(", "),
            e.packet.src,
            e.packet.dst,
            e.reason
        ),
        decision: Some(e.decision),
    })
}

/// The sources worth trying: the sessions' clients, the first address of every source net and
/// `hash:net` ipset member of the ruleset, and one address from nowhere in particular.
fn candidate_sources(rs: &Ruleset, sessions: &[SshSession], v6: bool) -> Vec<IpAddr> {
    let mut out: BTreeSet<IpAddr> = sessions
        .iter()
        .map(|s| s.client.ip())
        .filter(|ip| ip.is_ipv6() == v6)
        .collect();
    for table in &rs.tables {
        for chain in table.chains.values() {
            for rule in &chain.rules {
                for m in &rule.matches {
                    if let Match::Source {
                        negated: false,
                        net,
                    } = m
                    {
                        out.insert(net.network());
                    }
                }
            }
        }
    }
    for set in rs.ipsets.values() {
        if set.set_type != IpsetType::HashNet {
            continue;
        }
        for member in &set.members {
            if let Ok(net) = member.parse::<ipnet::IpNet>() {
                out.insert(net.network());
            } else if let Ok(ip) = member.parse::<IpAddr>() {
                out.insert(ip);
            }
        }
    }
    out.insert(if v6 {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1))
    } else {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))
    });
    out.into_iter()
        .filter(|ip| ip.is_ipv6() == v6)
        .take(128)
        .collect()
}

/// `SSH_CONNECTION` = `client_ip client_port server_ip server_port`.
pub fn parse_ssh_connection(value: &str) -> Option<SshSession> {
    let mut words = value.split_whitespace();
    let client_ip: IpAddr = words.next()?.parse().ok()?;
    let client_port: u16 = words.next()?.parse().ok()?;
    let server_ip: IpAddr = words.next()?.parse().ok()?;
    let server_port: u16 = words.next()?.parse().ok()?;
    if words.next().is_some() {
        return None;
    }
    Some(SshSession {
        client: SocketAddr::new(unmap(client_ip), client_port),
        server: SocketAddr::new(unmap(server_ip), server_port),
        seen_in: "SSH_CONNECTION",
    })
}

/// IPv4 peers of an IPv6 socket show up as `::ffff:a.b.c.d`; the packets are IPv4.
fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Established TCP sessions to local port `port` from `/proc/net/tcp` or `/proc/net/tcp6` text.
pub fn parse_proc_net_tcp(text: &str, port: u16) -> Vec<SshSession> {
    const ESTABLISHED: &str = "01";
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(remote), Some(state)) =
            (fields.get(1), fields.get(2), fields.get(3))
        else {
            continue;
        };
        if *state != ESTABLISHED {
            continue;
        }
        let (Some(server), Some(client)) = (hex_socket(local), hex_socket(remote)) else {
            continue;
        };
        if server.port() == port {
            out.push(SshSession {
                client,
                server,
                seen_in: "/proc/net/tcp",
            });
        }
    }
    out
}

/// `0100007F:0016` (IPv4) or 32 hex digits `:PORT` (IPv6): the address is stored as 32-bit
/// words in host byte order (little-endian on the machines hostfw runs on), the port in hex.
fn hex_socket(text: &str) -> Option<SocketAddr> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |s: &str| u32::from_str_radix(s, 16).ok().map(u32::swap_bytes);
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(addr)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                let w = word(addr.get(i * 8..i * 8 + 8)?)?;
                bytes[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(unmap(ip), port))
}

/// Keep the sessions whose local address is on this host (namespace) and drop duplicates.
pub fn local_sessions(sessions: Vec<SshSession>, interfaces: &HostInterfaces) -> Vec<SshSession> {
    let local: BTreeSet<IpAddr> = interfaces.values().flatten().copied().collect();
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for s in sessions {
        if local.contains(&s.server.ip()) && seen.insert((s.client, s.server)) {
            out.push(s);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Effects: the only part of the guard that reads the environment and /proc.

/// The admin's sessions as this process sees them: `SSH_CONNECTION` first, then established
/// TCP sessions to the SSH port(s) in `/proc/net/tcp{,6}` (this network namespace), keeping
/// only those whose local address is on `interfaces`.
/// Sessions are looked for on every port sshd listens on (found through `/proc`, see `sshd`,
/// which walks the processes again only when the listening sockets changed) as well as 22,
/// and those ports are what a new login must still reach: a daemon or a `sudo`
/// that has no `SSH_CONNECTION` still guards an sshd moved to another port. `tables`: the
/// socket listings being read (`sshd::SocketTables`), started while the caller loaded.
pub fn observe(interfaces: &HostInterfaces, tables: SocketTables) -> Observed {
    let mut sessions = Vec::new();
    if let Some(s) = std::env::var("SSH_CONNECTION")
        .ok()
        .as_deref()
        .and_then(parse_ssh_connection)
    {
        sessions.push(s);
    }
    let tables = tables.wait();
    let listening = crate::sshd::listening_ports(&tables);
    let ports = Observed::new(sessions.clone(), listening.clone()).ssh_ports;
    for text in &tables {
        for port in &ports {
            sessions.extend(parse_proc_net_tcp(text, *port));
        }
    }
    Observed::new(local_sessions(sessions, interfaces), listening)
}

/// The daemon's use of the guard on a new policy set: log every guard finding loudly; each the
/// mode refuses (`DaemonMode::refuses`) becomes an error diagnostic (cited as `origin`) that
/// rejects the set, so the current rules stay. Empty: go ahead.
pub fn daemon_gate<'a>(
    findings: impl IntoIterator<Item = &'a Finding>,
    mode: DaemonMode,
    origin: &str,
) -> Vec<Diagnostic> {
    findings
        .into_iter()
        .filter(|f| f.kind.is_guard())
        .filter_map(|f| {
            log::warn!("lockout guard: {}", f.message);
            mode.refuses(f.kind).then(|| {
                Diagnostic::file_error(
                    origin,
                    format!(
                        "lockout guard: {} (kept the rules in force; HOSTFW_LOCKOUT_GUARD=warn \
                         applies such sets anyway)",
                        f.message
                    ),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_connection_parses_and_unmaps() {
        let s = parse_ssh_connection("198.51.100.2 51234 198.51.100.1 22").unwrap();
        assert_eq!(s.client, "198.51.100.2:51234".parse().unwrap());
        assert_eq!(s.server, "198.51.100.1:22".parse().unwrap());
        let m = parse_ssh_connection("::ffff:198.51.100.2 1 ::ffff:198.51.100.1 2222").unwrap();
        assert_eq!(m.server, "198.51.100.1:2222".parse().unwrap());
        assert!(parse_ssh_connection("198.51.100.2 x 198.51.100.1 22").is_none());
        assert!(parse_ssh_connection("198.51.100.2 1 198.51.100.1").is_none());
        assert!(parse_ssh_connection("").is_none());
    }

    #[test]
    fn proc_net_tcp_established_ssh_only() {
        // 127.0.0.1:22 <- 127.0.0.1:0xC350 established (01); a listener (0A) and another port.
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
                  0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n\
                  1: 0100007F:0016 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 20 4 30 10 -1\n\
                  2: 0164A8C0:0050 0264A8C0:C351 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0 20 4 30 10 -1\n";
        let s = parse_proc_net_tcp(v4, 22);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].server, "127.0.0.1:22".parse().unwrap());
        assert_eq!(s[0].client, "127.0.0.1:50000".parse().unwrap());
        // 2001:db8::1 as stored by the kernel: each 32-bit word little-endian.
        let v6 = "  sl  local_address                         remote_address                        st\n\
                  0: B80D0120000000000000000001000000:0016 B80D0120000000000000000002000000:C350 01 0\n";
        let s6 = parse_proc_net_tcp(v6, 22);
        assert_eq!(s6.len(), 1);
        assert_eq!(s6[0].server, "[2001:db8::1]:22".parse().unwrap());
        assert_eq!(s6[0].client, "[2001:db8::2]:50000".parse().unwrap());
    }

    #[test]
    fn only_local_sessions_are_kept() {
        let mut ifaces = HostInterfaces::new();
        ifaces.insert("eth0".into(), vec!["198.51.100.1".parse().unwrap()]);
        let here = parse_ssh_connection("198.51.100.2 1 198.51.100.1 22").unwrap();
        let elsewhere = parse_ssh_connection("198.51.100.2 1 203.0.113.1 22").unwrap();
        let kept = local_sessions(vec![here.clone(), elsewhere, here.clone()], &ifaces);
        assert_eq!(kept, vec![here]);
    }

    #[test]
    fn daemon_mode_values() {
        assert_eq!(DaemonMode::from_value(None), DaemonMode::Sessions);
        assert_eq!(DaemonMode::from_value(Some("warn")), DaemonMode::Warn);
        assert_eq!(DaemonMode::from_value(Some("REFUSE")), DaemonMode::Refuse);
    }
}
