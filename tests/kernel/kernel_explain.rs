//! Differential test: `explain`'s verdict against what the kernel really does. A client, the
//! host running hostfw (a router: eth0 to the client, eth1 to a server) and the server live in
//! network namespaces; hostfw applies a scenario; a few hundred generated packets (TCP SYNs,
//! UDP datagrams, ICMP echo requests; IPv4 and IPv6; from sources inside and outside the
//! scenario's nets; to the host, from the host and through it) are sent for real, and each one's
//! fate is compared with `explain` over the same rendered ruleset.
//!
//! Observation (all probes fired at once, then one short wait):
//! - UDP: dual-stack listeners on every pool port in every namespace record (source, sport).
//! - TCP: a non-blocking connect from a bound source; connected or refused (RST) means the SYN
//!   got through, still pending after the wait means it was dropped (deny action is DROP).
//! - ICMP: an echo request with a unique id; the echo reply comes back only if it got through.
//!   Replies of all three are conntrack ESTABLISHED/RELATED and pass every hostfw chain, so the
//!   outcome is the fate of the first packet, which is what `explain` evaluates.
//!
//! The same probes also go through `explain --live`'s path (the kernel's tables read back with
//! iptables-save and parsed): it must reach the same verdict and decision as the rendered one.

use crate::netns;

use hostfw::explain::{self, ConnState, Decision, Direction, Packet};
use hostfw::policy::load_sources;
use hostfw::ruleset::{parse_ipset_save, Family, TableName};
use hostfw::source::NamedText;
use netns::*;
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

const NODE: &str = "hfw-explain";
const PROBES: usize = 320;
/// How long a dropped probe is waited for.
const WAIT: Duration = Duration::from_millis(1800);

const HOST_C4: &str = "198.51.100.1";
const HOST_C6: &str = "2001:db8::1";
const HOST_S4: &str = "203.0.113.1";
const HOST_S6: &str = "2001:db8:1::1";
const CLIENTS4: [&str; 6] = [
    "198.51.100.2",
    "198.51.100.3",
    "198.51.100.20",
    "198.51.100.70",
    "198.51.100.130",
    "198.51.100.200",
];
const CLIENTS6: [&str; 5] = [
    "2001:db8::2",
    "2001:db8::3",
    "2001:db8::20",
    "2001:db8::170",
    "2001:db8::8000",
];
const SERVERS4: [&str; 2] = ["203.0.113.2", "203.0.113.77"];
const SERVERS6: [&str; 2] = ["2001:db8:1::2", "2001:db8:1::77"];
const PORTS: [u16; 10] = [22, 53, 80, 443, 5353, 7000, 7070, 8080, 9090, 10250];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Client,
    Host,
    Server,
}

struct Topo {
    client: Netns,
    host: Netns,
    server: Netns,
    work: Workdir,
    backend: &'static str,
}

impl Topo {
    fn new(tag: &str, backend: &'static str, yaml: &str) -> Topo {
        let client = Netns::new(&format!("x{tag}-{backend}-c"));
        let host = Netns::new(&format!("x{tag}-{backend}-h"));
        let server = Netns::new(&format!("x{tag}-{backend}-s"));
        let clients: Vec<&str> = CLIENTS4.iter().chain(&CLIENTS6).copied().collect();
        let servers: Vec<&str> = SERVERS4.iter().chain(&SERVERS6).copied().collect();
        route_through(
            &host,
            Side::new(&client, &clients, [HOST_C4, HOST_C6]),
            Side::new(&server, &servers, [HOST_S4, HOST_S6]),
        );
        let work = Workdir::holding(yaml);
        Topo {
            client,
            host,
            server,
            work,
            backend,
        }
    }

    fn ns(&self, role: Role) -> &Netns {
        match role {
            Role::Client => &self.client,
            Role::Host => &self.host,
            Role::Server => &self.server,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Tcp,
    Udp,
    Icmp,
}

#[derive(Debug, Clone)]
struct Probe {
    id: usize,
    proto: Proto,
    from: Role,
    packet: Packet,
}

/// xorshift64*: a fixed, reproducible sequence without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn generate(seed: u64) -> Vec<Probe> {
    let mut rng = Rng(seed);
    (0..PROBES)
        .map(|id| {
            let v6 = rng.below(2) == 1;
            let (clients, servers, host_c, host_s): (&[&str], &[&str], &str, &str) = if v6 {
                (&CLIENTS6, &SERVERS6, HOST_C6, HOST_S6)
            } else {
                (&CLIENTS4, &SERVERS4, HOST_C4, HOST_S4)
            };
            let proto = match rng.below(20) {
                0..=8 => Proto::Tcp,
                9..=15 => Proto::Udp,
                _ => Proto::Icmp,
            };
            // (from, direction, in/out iface, src, dst)
            let (from, direction, iface, out, src, dst) = match rng.below(20) {
                0..=6 => (
                    Role::Client,
                    Direction::Ingress,
                    "eth0",
                    None,
                    rng.pick(clients),
                    host_c,
                ),
                7..=8 => (
                    Role::Server,
                    Direction::Ingress,
                    "eth1",
                    None,
                    rng.pick(servers),
                    host_s,
                ),
                9..=12 => (
                    Role::Host,
                    Direction::Egress,
                    "eth0",
                    None,
                    host_c,
                    rng.pick(clients),
                ),
                13 => (
                    Role::Host,
                    Direction::Egress,
                    "eth1",
                    None,
                    host_s,
                    rng.pick(servers),
                ),
                14..=17 => (
                    Role::Client,
                    Direction::Forward,
                    "eth0",
                    Some("eth1"),
                    rng.pick(clients),
                    rng.pick(servers),
                ),
                _ => (
                    Role::Server,
                    Direction::Forward,
                    "eth1",
                    Some("eth0"),
                    rng.pick(servers),
                    rng.pick(clients),
                ),
            };
            let ports = proto != Proto::Icmp;
            let dport = PORTS[rng.below(PORTS.len())];
            Probe {
                id,
                proto,
                from,
                packet: Packet {
                    direction,
                    iface: iface.into(),
                    out_iface: out.map(str::to_string),
                    src: ip(src),
                    dst: ip(dst),
                    proto: match proto {
                        Proto::Tcp => 6,
                        Proto::Udp => 17,
                        Proto::Icmp if v6 => 58,
                        Proto::Icmp => 1,
                    },
                    sport: ports.then_some(20000 + id as u16),
                    dport: ports.then_some(dport),
                    icmp_type: (!ports).then_some(if v6 { 128 } else { 8 }),
                    icmp_code: (!ports).then_some(0),
                    state: ConnState::New,
                    dnat: false,
                },
            }
        })
        .collect()
}

fn icmp_id(p: &Probe) -> u16 {
    1000 + p.id as u16
}

/// Everything fired from one namespace, still to be observed.
struct Fired {
    tcp: Vec<(usize, TcpStream)>,
    icmp_rx: Vec<(bool, OwnedFd)>,
}

/// A non-blocking connect; `None` when the kernel refused to send at all (EPERM: our own OUTPUT
/// rules dropped the SYN), which counts as dropped.
fn tcp_connect(src: SocketAddr, dst: SocketAddr) -> Option<TcpStream> {
    use nix::sys::socket::{
        bind, connect, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType,
        SockaddrStorage,
    };
    let family = if src.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_NONBLOCK, None).expect("socket");
    let _ = setsockopt(&fd, sockopt::ReuseAddr, &true);
    bind(fd.as_raw_fd(), &SockaddrStorage::from(src)).unwrap_or_else(|e| panic!("bind {src}: {e}"));
    match connect(fd.as_raw_fd(), &SockaddrStorage::from(dst)) {
        Ok(()) | Err(nix::errno::Errno::EINPROGRESS) => Some(TcpStream::from(fd)),
        Err(nix::errno::Errno::EPERM) => None,
        Err(e) => panic!("connect {src} -> {dst}: {e}"),
    }
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn icmp_socket(v6: bool) -> OwnedFd {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockProtocol, SockType};
    let (family, proto) = if v6 {
        (AddressFamily::Inet6, SockProtocol::IcmpV6)
    } else {
        (AddressFamily::Inet, SockProtocol::Icmp)
    };
    socket(family, SockType::Raw, SockFlag::SOCK_NONBLOCK, proto).expect("raw ICMP socket")
}

fn send_echo(src: IpAddr, dst: IpAddr, id: u16) {
    use nix::sys::socket::{bind, sendto, MsgFlags, SockaddrStorage};
    let fd = icmp_socket(src.is_ipv6());
    bind(
        fd.as_raw_fd(),
        &SockaddrStorage::from(SocketAddr::new(src, 0)),
    )
    .expect("bind raw");
    let request = if src.is_ipv6() { 128 } else { 8 };
    let mut packet = vec![request, 0, 0, 0, (id >> 8) as u8, id as u8, 0, 1];
    packet.extend_from_slice(b"hostfw-explain");
    if src.is_ipv4() {
        let sum = checksum(&packet);
        packet[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    let dest = SockaddrStorage::from(SocketAddr::new(dst, 0));
    // EPERM: dropped by our own OUTPUT rules; no reply will come.
    match sendto(fd.as_raw_fd(), &packet, &dest, MsgFlags::empty()) {
        Ok(_) | Err(nix::errno::Errno::EPERM) => {}
        Err(e) => panic!("send echo {src} -> {dst}: {e}"),
    }
}

/// Fire every probe of one source namespace (run on a thread inside it).
fn fire(probes: Vec<Probe>) -> Fired {
    let icmp_rx = vec![(false, icmp_socket(false)), (true, icmp_socket(true))];
    let mut tcp = Vec::new();
    for p in probes {
        let pk = &p.packet;
        match p.proto {
            Proto::Tcp => {
                let src = SocketAddr::new(pk.src, pk.sport.expect("port"));
                let dst = SocketAddr::new(pk.dst, pk.dport.expect("port"));
                if let Some(stream) = tcp_connect(src, dst) {
                    tcp.push((p.id, stream));
                }
            }
            Proto::Udp => {
                let src = SocketAddr::new(pk.src, pk.sport.expect("port"));
                let s = UdpSocket::bind(src).unwrap_or_else(|e| panic!("bind udp {src}: {e}"));
                let dst = SocketAddr::new(pk.dst, pk.dport.expect("port"));
                // EPERM: dropped by our own OUTPUT rules; the listener will not see it.
                if let Err(e) = s.send_to(format!("probe {}", p.id).as_bytes(), dst) {
                    assert_eq!(
                        e.raw_os_error(),
                        Some(nix::libc::EPERM),
                        "send {src} -> {dst}"
                    );
                }
            }
            Proto::Icmp => send_echo(pk.src, pk.dst, icmp_id(&p)),
        }
    }
    Fired { tcp, icmp_rx }
}

/// Dual-stack UDP listeners on every pool port (run inside a namespace).
fn listeners() -> Vec<UdpSocket> {
    PORTS
        .iter()
        .map(|port| {
            let s = UdpSocket::bind(SocketAddr::new(ip("::"), *port))
                .unwrap_or_else(|e| panic!("bind [::]:{port}: {e}"));
            s.set_nonblocking(true).expect("nonblocking");
            s
        })
        .collect()
}

fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Echo-reply ids seen on a raw socket.
fn drain_icmp(v6: bool, fd: &OwnedFd, seen: &mut BTreeSet<u16>) {
    use nix::sys::socket::{recvfrom, SockaddrStorage};
    let mut buf = [0u8; 2048];
    while let Ok((n, _)) = recvfrom::<SockaddrStorage>(fd.as_raw_fd(), &mut buf) {
        let icmp = if v6 {
            &buf[..n]
        } else {
            let header = usize::from(buf[0] & 0x0f) * 4;
            if n < header {
                continue;
            }
            &buf[header..n]
        };
        let reply = if v6 { 129 } else { 0 };
        if icmp.len() >= 8 && icmp[0] == reply {
            seen.insert(u16::from_be_bytes([icmp[4], icmp[5]]));
        }
    }
}

/// Send every probe for real; the ids of those that got through.
fn observe(t: &Topo, probes: &[Probe]) -> BTreeSet<usize> {
    let roles = [Role::Client, Role::Host, Role::Server];
    let udp: Vec<UdpSocket> = roles
        .iter()
        .flat_map(|r| t.ns(*r).run_in(listeners))
        .collect();
    let mut fired = Vec::new();
    for role in roles {
        let mine: Vec<Probe> = probes.iter().filter(|p| p.from == role).cloned().collect();
        fired.push(t.ns(role).run_in(move || fire(mine)));
    }
    let mut delivered = BTreeSet::new();
    let mut echo_ids = BTreeSet::new();
    let mut pending: Vec<(usize, TcpStream)> =
        fired.iter_mut().flat_map(|f| f.tcp.drain(..)).collect();
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        pending.retain(|(id, s)| match s.take_error() {
            Ok(Some(e)) if e.raw_os_error() == Some(nix::libc::ECONNREFUSED) => {
                delivered.insert(*id);
                false
            }
            Ok(Some(_)) => false,
            _ if s.peer_addr().is_ok() => {
                delivered.insert(*id);
                false
            }
            _ => true,
        });
        for f in &fired {
            for (v6, fd) in &f.icmp_rx {
                drain_icmp(*v6, fd, &mut echo_ids);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut udp_seen = BTreeSet::new();
    let mut buf = [0u8; 64];
    for s in &udp {
        while let Ok((_, from)) = s.recv_from(&mut buf) {
            udp_seen.insert((unmap(from.ip()), from.port()));
        }
    }
    for p in probes {
        let got = match p.proto {
            Proto::Tcp => continue,
            Proto::Udp => udp_seen.contains(&(p.packet.src, p.packet.sport.unwrap_or(0))),
            Proto::Icmp => echo_ids.contains(&icmp_id(p)),
        };
        if got {
            delivered.insert(p.id);
        }
    }
    delivered
}

fn differential(tag: &str, backend: &'static str, yaml: &str, seed: u64) {
    let t = Topo::new(tag, backend, yaml);
    let run = hostfw(&t.host, &t.work, NODE, t.backend, &["apply"]);
    assert_eq!(run.code, 0, "apply failed: {run:?}");

    // explain's side: the same policy, resolved with the host namespace's interfaces.
    let loaded = load_sources(&[NamedText {
        name: "policies.yaml".into(),
        text: yaml.into(),
    }]);
    let set = loaded.set.expect("valid scenario");
    let ifaces = t
        .host
        .run_in(|| hostfw::host::interfaces().expect("interfaces"));
    let options = hostfw::desired::Options {
        families: hostfw::desired::Families::Enabled,
        guard: None,
    };
    let desired =
        hostfw::desired::compute(&set, NODE, &ifaces, options).expect("render both families");
    let prepared = |family| {
        let rs = desired.ruleset(family).expect("family enabled").clone();
        let ctx = desired.context(family).expect("family enabled").clone();
        (rs, ctx)
    };
    let v4_rendered = prepared(Family::V4);
    let v6_rendered = prepared(Family::V6);

    // `explain --live`'s side: the kernel's own tables, parsed back.
    let live = |family: Family| {
        let v6 = family == Family::V6;
        let saves: Vec<_> = TableName::ALL
            .into_iter()
            .map(|table| (table, save(&t.host, backend, v6, table.as_str(), false)))
            .collect();
        let ipsets = parse_ipset_save(&t.host.must(&["ipset", "save"])).expect("ipset save");
        let live = explain::live::parse(family, &saves, &ipsets);
        assert!(
            live.unknown.is_empty(),
            "unparsed rules: {:?}",
            live.unknown
        );
        let own = desired.ruleset(family).expect("family enabled");
        let mut ctx = desired
            .context(family)
            .expect("family enabled")
            .for_evaluating(own, &live.ruleset);
        ctx.kernel_policies = live.policies;
        (live.ruleset, ctx)
    };
    let live4 = live(Family::V4);
    let live6 = live(Family::V6);

    let probes = generate(seed);
    let delivered = observe(&t, &probes);
    let mut wrong = Vec::new();
    let mut passes = 0;
    let mut decided: std::collections::BTreeMap<String, usize> = Default::default();
    for p in &probes {
        let v6 = p.packet.src.is_ipv6();
        let (rs, ctx) = if v6 { &v6_rendered } else { &v4_rendered };
        let e = explain::explain(rs, ctx, &p.packet);
        let (lrs, lctx) = if v6 { &live6 } else { &live4 };
        let l = explain::explain(lrs, lctx, &p.packet);
        if l.verdict != e.verdict || l.decision != e.decision {
            wrong.push(format!(
                "probe {}: --live says {} by {}, rendered says {} by {}",
                p.id,
                l.verdict.as_str(),
                l.reason,
                e.verdict.as_str(),
                e.reason
            ));
        }
        passes += usize::from(e.verdict.passes());
        let kind = match &e.decision {
            Decision::Policy {
                policy,
                rule,
                action,
                ..
            } => format!("{policy}[{}] {action:?}", rule.map_or(-1, |r| r as i64)),
            Decision::Profile {
                profile,
                rule,
                action,
                ..
            } => format!(
                "profile {profile}[{}] {action:?}",
                rule.map_or(-1, |r| r as i64)
            ),
            other => serde_json::to_value(other).expect("json")["kind"]
                .as_str()
                .unwrap_or("?")
                .to_string(),
        };
        *decided.entry(kind).or_default() += 1;
        let kernel = delivered.contains(&p.id);
        if kernel != e.verdict.passes() {
            wrong.push(format!(
                "probe {} ({:?} from {:?}): kernel {}, explain {}\n{e}",
                p.id,
                p.proto,
                p.from,
                if kernel { "delivered" } else { "dropped" },
                e.verdict.as_str(),
            ));
        }
    }
    eprintln!(
        "{tag}/{backend}: {} probes, {passes} pass per explain, {} delivered by the kernel, {} \
         mismatches",
        probes.len(),
        delivered.len(),
        wrong.len()
    );
    eprintln!("  decided by: {decided:?}");
    assert!(
        wrong.is_empty(),
        "{tag}/{backend}: {} of {} probes disagree:\n{}",
        wrong.len(),
        probes.len(),
        wrong.join("\n")
    );
    // A differential test where everything passes or everything drops proves little.
    assert!(
        passes >= PROBES / 10 && PROBES - passes >= PROBES / 10,
        "{tag}/{backend}: unbalanced scenario: {passes} of {PROBES} pass"
    );
}

fn hep(name: &str, iface: &str, ips: &[&str]) -> String {
    let ips: Vec<String> = ips.iter().map(|i| format!("\"{i}\"")).collect();
    format!(
        "---\napiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata:\n  name: {name}\n  \
         labels: {{role: worker}}\nspec:\n  interfaceName: \"{iface}\"\n  node: {NODE}\n  \
         expectedIPs: [{}]\n",
        ips.join(", ")
    )
}

/// Named eth0 endpoint, default failsafe ports, nets, a selector ipset, ICMP types, an
/// untracked allow, a preDNAT deny, an applyOnForward policy, egress rules.
fn scenario_named() -> String {
    let policies = r#"apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: partners, labels: {trust: high}}
spec: {nets: ["198.51.100.64/26", "2001:db8::100/120"]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: mgmt}
spec:
  order: 10
  selector: "role == 'worker'"
  ingress:
  - {action: Allow, protocol: TCP, source: {nets: ["198.51.100.0/28"]}, destination: {ports: [443, 8080]}}
  - {action: Allow, protocol: TCP, source: {nets: ["2001:db8::/124"]}, destination: {ports: [443, 8080]}}
  - {action: Deny, protocol: TCP, destination: {ports: [9090]}}
  - {action: Allow, protocol: UDP, source: {nets: ["198.51.100.0/25", "198.51.100.192/26"]}, destination: {ports: [53, 5353]}}
  - {action: Allow, protocol: UDP, source: {nets: ["2001:db8::/121"]}, destination: {ports: [53, 5353]}}
  - {action: Allow, protocol: ICMP, icmp: {type: 8}}
  - {action: Allow, protocol: TCP, source: {selector: "trust == 'high'"}, destination: {ports: [7000, 80]}}
  - {action: Allow, protocol: ICMPv6, source: {selector: "trust == 'high'"}}
  egress:
  - {action: Allow, protocol: UDP, destination: {ports: [53]}}
  - {action: Allow, protocol: TCP, destination: {nets: ["198.51.100.0/28"], ports: [80, 443]}}
  - {action: Allow, protocol: TCP, destination: {nets: ["2001:db8::/124"], ports: [80, 443]}}
  - {action: Deny, protocol: UDP, destination: {ports: [9090]}}
  - {action: Allow, protocol: ICMP}
  - {action: Allow, protocol: ICMPv6, destination: {notNets: ["2001:db8::100/120"]}}
  - {action: Allow, protocol: UDP, destination: {notPorts: [7000, 7070]}}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: fwd}
spec:
  order: 20
  selector: "role == 'worker'"
  applyOnForward: true
  types: [Ingress]
  ingress:
  - {action: Allow, protocol: TCP, destination: {ports: [80, 8080]}}
  - {action: Allow, protocol: UDP, destination: {ports: [5353, 53]}}
  - {action: Deny, protocol: ICMP}
  - {action: Allow, protocol: ICMPv6}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: untracked}
spec:
  order: 5
  selector: "role == 'worker'"
  doNotTrack: true
  applyOnForward: true
  ingress:
  - {action: Allow, protocol: UDP, source: {notNets: ["198.51.100.128/25"]}, destination: {ports: [7070]}}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: pre}
spec:
  order: 1
  selector: "role == 'worker'"
  preDNAT: true
  applyOnForward: true
  ingress:
  - {action: Deny, protocol: TCP, source: {nets: ["198.51.100.192/26"]}, destination: {ports: [80, 8080, 7000]}}
  - {action: Deny, protocol: TCP, source: {nets: ["2001:db8::8000/113"]}, destination: {ports: [80, 8080, 7000]}}
"#;
    format!(
        "{policies}{}",
        hep("worker-eth0", "eth0", &[HOST_C4, HOST_C6])
    )
}

/// `*` endpoint, no inbound failsafe ports, a tier that denies and passes before the default
/// tier, forward policy in both directions.
fn scenario_star() -> String {
    let policies = r#"apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: default}
spec:
  failsafeInboundHostPorts: []
  failsafeOutboundHostPorts: [{protocol: UDP, port: 53}]
---
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 100}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: security.gate}
spec:
  tier: security
  order: 1
  selector: all()
  applyOnForward: true
  ingress:
  - {action: Deny, protocol: TCP, destination: {ports: [9090]}}
  - {action: Pass, protocol: TCP}
  - {action: Pass, protocol: UDP, source: {nets: ["198.51.100.0/25", "203.0.113.0/24"]}}
  - {action: Pass, protocol: UDP, source: {nets: ["2001:db8::/121", "2001:db8:1::/64"]}}
  - {action: Pass, protocol: ICMPv6}
  - {action: Allow, protocol: ICMP}
  egress:
  - {action: Deny, protocol: UDP, destination: {ports: [10250]}}
  - {action: Pass}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: host-in}
spec:
  selector: all()
  ingress:
  - {action: Allow, protocol: TCP, destination: {ports: [22, 80, 443]}}
  - {action: Allow, protocol: UDP, destination: {ports: [53, 5353]}}
  - {action: Allow, protocol: ICMPv6, icmp: {type: 128}}
  egress:
  - {action: Allow, protocol: TCP, destination: {ports: [80, 443, 22]}}
  - {action: Allow, protocol: ICMP}
  - {action: Deny, protocol: UDP, destination: {ports: [9090]}}
  - {action: Allow, protocol: UDP}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: fwd}
spec:
  selector: all()
  applyOnForward: true
  ingress:
  - {action: Allow, protocol: TCP, destination: {ports: [8080, 80]}}
  - {action: Allow, protocol: UDP, destination: {ports: [7070]}}
  egress:
  - {action: Allow, protocol: TCP, destination: {ports: [80]}}
  - {action: Allow, protocol: UDP}
"#;
    format!(
        "{policies}{}",
        hep("all", "*", &[HOST_C4, HOST_C6, HOST_S4, HOST_S6])
    )
}

/// A tier that ends in Pass, a named port (`hash:ip,port` ipset), and a profile deciding what
/// the tier passes on; egress allowed by the profile only.
fn scenario_profile() -> String {
    format!(
        r#"apiVersion: projectcalico.org/v3
kind: Tier
metadata: {{name: edge}}
spec: {{order: 50, defaultAction: Pass}}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {{name: edge.web}}
spec:
  tier: edge
  selector: "role == 'worker'"
  types: [Ingress]
  ingress:
  - {{action: Deny, protocol: TCP, source: {{nets: ["198.51.100.128/25"]}}}}
  - {{action: Allow, protocol: TCP, destination: {{ports: [http]}}}}
  - {{action: Deny, protocol: UDP, destination: {{ports: [dns]}}, source: {{nets: ["2001:db8::/124"]}}}}
---
apiVersion: projectcalico.org/v3
kind: Profile
metadata: {{name: open-dns}}
spec:
  ingress:
  - {{action: Allow, protocol: UDP, destination: {{ports: [53, 5353]}}}}
  - {{action: Allow, protocol: ICMP}}
  - {{action: Allow, protocol: TCP, destination: {{ports: [443]}}}}
  egress:
  - {{action: Deny, protocol: TCP, destination: {{ports: [9090]}}}}
  - {{action: Allow}}
---
apiVersion: projectcalico.org/v3
kind: HostEndpoint
metadata:
  name: worker-eth0
  labels: {{role: worker}}
spec:
  interfaceName: eth0
  node: {NODE}
  expectedIPs: ["{HOST_C4}", "{HOST_C6}"]
  profiles: [open-dns]
  ports:
  - {{name: http, port: 8080, protocol: TCP}}
  - {{name: dns, port: 5353, protocol: UDP}}
"#
    )
}

macro_rules! differential_test {
    ($name:ident, $scenario:ident, $backend:literal, $seed:literal) => {
        #[test]
        fn $name() {
            if kernel_tests_enabled() {
                differential(stringify!($scenario), $backend, &$scenario(), $seed);
            }
        }
    };
}

differential_test!(named_legacy, scenario_named, "legacy", 0x5eed_0001);
differential_test!(named_nft, scenario_named, "nft", 0x5eed_0002);
differential_test!(star_legacy, scenario_star, "legacy", 0x5eed_0003);
differential_test!(star_nft, scenario_star, "nft", 0x5eed_0004);
differential_test!(profile_legacy, scenario_profile, "legacy", 0x5eed_0005);
differential_test!(profile_nft, scenario_profile, "nft", 0x5eed_0006);
