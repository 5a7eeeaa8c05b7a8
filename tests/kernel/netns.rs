//! Real-kernel test harness: network namespaces (removed on drop, also when a test fails), veth
//! pairs with documentation addresses, commands run with `ip netns exec`, and TCP/UDP/ICMP
//! probes run on threads that have entered a namespace (sockets keep the namespace they were
//! made in). Touches nothing outside the namespaces it creates.
//!
//! Gate: `kernel_tests_enabled()` returns false (with a loud message) when not root, unless
//! `CI=true`, where it panics: under CI these tests must run.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// How long a probe waits for an answer: a dropped packet shows up as a timeout.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(1000);

pub const HOST4: &str = "198.51.100.1";
pub const PEER4: &str = "198.51.100.2";
pub const HOST6: &str = "2001:db8::1";
pub const PEER6: &str = "2001:db8::2";

/// True when kernel tests can run here; false (after saying so) when they cannot and we are not
/// in CI; panics in CI.
pub fn kernel_tests_enabled() -> bool {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let root = nix::unistd::Uid::effective().is_root();
    let ip = Command::new("ip").arg("-V").output().is_ok();
    if root && ip {
        return true;
    }
    let why = if !root { "not root" } else { "no `ip` command" };
    if ci {
        panic!("CI=true but the real-kernel tests cannot run: {why}");
    }
    eprintln!("\n*** skipped: real-kernel test needs root and iproute2 ({why}) ***\n");
    false
}

/// A unique, parallel-safe namespace name.
fn unique_name(tag: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("hfw-dp-{tag}-{}-{n}", std::process::id())
}

/// Run a command, panicking with its output when it fails.
pub fn must(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// One network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = unique_name(tag);
        must(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NS args...`
    pub fn ip(&self, args: &[&str]) -> Output {
        must(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// `ip netns exec NS argv...`, not checked.
    pub fn exec(&self, argv: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(argv)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {argv:?} in {}: {e}", self.name))
    }

    /// `ip netns exec NS argv...`, panicking on failure; returns stdout.
    pub fn must(&self, argv: &[&str]) -> String {
        let out = must(
            Command::new("ip")
                .args(["netns", "exec", &self.name])
                .args(argv),
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Set a sysctl inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) {
        self.must(&["sysctl", "-q", "-w", &format!("{key}={value}")]);
    }

    /// Run `f` on a thread that has entered this namespace; sockets it creates live here.
    pub fn run_in<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = PathBuf::from("/run/netns").join(&self.name);
        thread::spawn(move || {
            let file = File::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|e| panic!("setns {}: {e}", path.display()));
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }

    /// Give `dev` an address (IPv6 without duplicate address detection, usable at once).
    pub fn addr(&self, dev: &str, cidr: &str) {
        if cidr.contains(':') {
            self.ip(&["addr", "add", cidr, "dev", dev, "nodad"]);
        } else {
            self.ip(&["addr", "add", cidr, "dev", dev]);
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Join `a` and `b` with a veth pair named `a_dev` (in a) and `b_dev` (in b), both up.
pub fn veth(a: &Netns, a_dev: &str, b: &Netns, b_dev: &str) {
    a.ip(&[
        "link", "add", a_dev, "type", "veth", "peer", "name", b_dev, "netns", &b.name,
    ]);
    a.ip(&["link", "set", a_dev, "up"]);
    b.ip(&["link", "set", b_dev, "up"]);
}

/// The usual pair: "host" (where hostfw runs) and "peer", joined by `eth0` on both sides,
/// 198.51.100.1/.2 and 2001:db8::1/::2.
pub struct Pair {
    pub host: Netns,
    pub peer: Netns,
}

impl Pair {
    pub fn new(tag: &str) -> Pair {
        Pair::with_devs(tag, "eth0", "eth0")
    }

    pub fn with_devs(tag: &str, host_dev: &str, peer_dev: &str) -> Pair {
        let host = Netns::new(&format!("{tag}-h"));
        let peer = Netns::new(&format!("{tag}-p"));
        veth(&host, host_dev, &peer, peer_dev);
        host.addr(host_dev, &format!("{HOST4}/24"));
        host.addr(host_dev, &format!("{HOST6}/64"));
        peer.addr(peer_dev, &format!("{PEER4}/24"));
        peer.addr(peer_dev, &format!("{PEER6}/64"));
        neighbours(&host, host_dev, &peer, peer_dev, &[PEER4, PEER6]);
        neighbours(&peer, peer_dev, &host, host_dev, &[HOST4, HOST6]);
        Pair { host, peer }
    }
}

/// The MAC address of `dev` in `ns`.
pub fn mac(ns: &Netns, dev: &str) -> String {
    let out = ns.ip(&["-o", "link", "show", "dev", dev]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut words = text.split_whitespace();
    words
        .find(|w| *w == "link/ether")
        .and_then(|_| words.next())
        .unwrap_or_else(|| panic!("no MAC for {dev}: {text}"))
        .to_string()
}

/// Permanent neighbour entries in `ns` (on `dev`) for `addrs`, which live on `other`'s
/// `other_dev`: ARP and neighbour discovery are then never needed, so host policy that does not
/// allow ICMPv6 ND still leaves IPv6 reachable, as on a host with static neighbours.
pub fn neighbours(ns: &Netns, dev: &str, other: &Netns, other_dev: &str, addrs: &[&str]) {
    let lladdr = mac(other, other_dev);
    for addr in addrs {
        ns.ip(&[
            "neigh",
            "replace",
            addr,
            "lladdr",
            &lladdr,
            "dev",
            dev,
            "nud",
            "permanent",
        ]);
    }
}

/// One side of a router: a namespace linked by its eth0, holding `addrs` (IPv4 in a /24, IPv6
/// in a /64), whose gateway is the router's (IPv4, IPv6) address `via` on that link.
pub struct Side<'a> {
    ns: &'a Netns,
    addrs: &'a [&'a str],
    via: [&'a str; 2],
}

impl<'a> Side<'a> {
    pub fn new(ns: &'a Netns, addrs: &'a [&'a str], via: [&'a str; 2]) -> Side<'a> {
        Side { ns, addrs, via }
    }
}

/// Link `client` to the router's eth0 and `server` to its eth1, address both ends, and route
/// them through `router`: static neighbours both ways, default routes via it, forwarding on.
pub fn route_through(router: &Netns, client: Side, server: Side) {
    let with_prefix = |a: &str| format!("{a}/{}", if a.contains(':') { 64 } else { 24 });
    for (dev, side) in [("eth0", client), ("eth1", server)] {
        veth(router, dev, side.ns, "eth0");
        for via in side.via {
            router.addr(dev, &with_prefix(via));
        }
        for a in side.addrs {
            side.ns.addr("eth0", &with_prefix(a));
        }
        neighbours(router, dev, side.ns, "eth0", side.addrs);
        neighbours(side.ns, "eth0", router, dev, &side.via);
        side.ns.ip(&["route", "add", "default", "via", side.via[0]]);
        side.ns
            .ip(&["-6", "route", "add", "default", "via", side.via[1]]);
    }
    router.sysctl("net.ipv4.ip_forward", "1");
    router.sysctl("net.ipv6.conf.all.forwarding", "1");
}

pub fn sock(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().expect("test address"), port)
}

/// A background server inside a namespace; stops on drop.
pub struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A TCP server on `addr` in `ns` that answers every connection with "ok\n".
pub fn tcp_server(ns: &Netns, addr: SocketAddr) -> Server {
    let listener = ns.run_in(move || {
        let l = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        l.set_nonblocking(true).expect("nonblocking listener");
        l
    });
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = thread::spawn(move || {
        while !flag.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((mut conn, _)) => {
                    let _ = conn.set_nonblocking(false);
                    let _ = conn.write_all(b"ok\n");
                }
                Err(_) => thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    Server {
        stop,
        thread: Some(thread),
    }
}

/// A UDP server on `addr` in `ns` that echoes every datagram.
pub fn udp_server(ns: &Netns, addr: SocketAddr) -> Server {
    let socket = ns.run_in(move || {
        let s = UdpSocket::bind(addr).unwrap_or_else(|e| panic!("bind udp {addr}: {e}"));
        s.set_read_timeout(Some(Duration::from_millis(20)))
            .expect("read timeout");
        s
    });
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while !flag.load(Ordering::SeqCst) {
            if let Ok((n, from)) = socket.recv_from(&mut buf) {
                let _ = socket.send_to(&buf[..n], from);
            }
        }
    });
    Server {
        stop,
        thread: Some(thread),
    }
}

/// From `ns`, connect to `to` (optionally from source address `from`) and read the greeting.
/// True only when the full exchange worked (SYN out, SYN-ACK back, data back).
pub fn tcp_ok(ns: &Netns, from: Option<&str>, to: SocketAddr) -> bool {
    let from: Option<IpAddr> = from.map(|f| f.parse().expect("test address"));
    ns.run_in(move || {
        let stream = match from {
            None => TcpStream::connect_timeout(&to, PROBE_TIMEOUT),
            Some(src) => connect_from(src, to),
        };
        let Ok(mut stream) = stream else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(PROBE_TIMEOUT));
        let mut buf = [0u8; 3];
        stream.read_exact(&mut buf).is_ok() && &buf == b"ok\n"
    })
}

/// A TCP connect bound to a chosen source address (std has no bind-before-connect).
fn connect_from(src: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    use nix::sys::socket::{
        bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrStorage,
    };
    let family = if src.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_NONBLOCK, None)?;
    bind(
        fd.as_raw_fd(),
        &SockaddrStorage::from(SocketAddr::new(src, 0)),
    )?;
    match connect(fd.as_raw_fd(), &SockaddrStorage::from(to)) {
        Ok(()) | Err(nix::errno::Errno::EINPROGRESS) => {}
        Err(e) => return Err(e.into()),
    }
    // Wait for the connect to finish with poll(2).
    let deadline = Instant::now() + PROBE_TIMEOUT;
    let stream = TcpStream::from(fd);
    loop {
        match stream.peer_addr() {
            Ok(_) => break,
            Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(e),
        }
    }
    if let Some(e) = stream.take_error()? {
        return Err(e);
    }
    stream.set_nonblocking(false)?;
    Ok(stream)
}

/// From `ns`, send one datagram to `to` and wait for the echo.
pub fn udp_ok(ns: &Netns, to: SocketAddr) -> bool {
    ns.run_in(move || {
        let local: SocketAddr = if to.is_ipv4() {
            "0.0.0.0:0".parse().expect("literal")
        } else {
            "[::]:0".parse().expect("literal")
        };
        let Ok(s) = UdpSocket::bind(local) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(PROBE_TIMEOUT));
        if s.send_to(b"probe", to).is_err() {
            return false;
        }
        let mut buf = [0u8; 16];
        matches!(s.recv_from(&mut buf), Ok((5, from)) if from == to)
    })
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// From `ns`, ping `to` once (ICMP echo or ICMPv6 echo over a raw socket).
pub fn ping_ok(ns: &Netns, to: IpAddr) -> bool {
    use nix::sys::socket::{
        recvfrom, sendto, setsockopt, socket, sockopt, AddressFamily, MsgFlags, SockFlag,
        SockProtocol, SockType, SockaddrStorage,
    };
    ns.run_in(move || {
        let (family, proto, request, reply) = if to.is_ipv4() {
            (AddressFamily::Inet, SockProtocol::Icmp, 8u8, 0u8)
        } else {
            (AddressFamily::Inet6, SockProtocol::IcmpV6, 128u8, 129u8)
        };
        let fd: OwnedFd = socket(family, SockType::Raw, SockFlag::empty(), proto)
            .expect("raw ICMP socket (root)");
        // A fresh id per probe: a reused id could match an earlier echo's conntrack entry and
        // pass as an established flow.
        static NEXT_ID: AtomicUsize = AtomicUsize::new(1);
        let id = (std::process::id() as u16) ^ (NEXT_ID.fetch_add(1, Ordering::SeqCst) as u16);
        let mut packet = vec![request, 0, 0, 0, (id >> 8) as u8, id as u8, 0, 1];
        packet.extend_from_slice(b"hostfw-probe");
        if to.is_ipv4() {
            let sum = checksum(&packet);
            packet[2..4].copy_from_slice(&sum.to_be_bytes());
        }
        // (For ICMPv6 the kernel fills in the checksum.)
        let _ = setsockopt(
            &fd,
            sockopt::ReceiveTimeout,
            &nix::sys::time::TimeVal::new(0, 100_000),
        );
        let dest = SockaddrStorage::from(SocketAddr::new(to, 0));
        if sendto(fd.as_raw_fd(), &packet, &dest, MsgFlags::empty()).is_err() {
            return false;
        }
        let deadline = Instant::now() + PROBE_TIMEOUT;
        let mut buf = [0u8; 1500];
        while Instant::now() < deadline {
            let Ok((n, from)) = recvfrom::<SockaddrStorage>(fd.as_raw_fd(), &mut buf) else {
                continue;
            };
            let from_ip: Option<IpAddr> = from.and_then(|a| {
                a.as_sockaddr_in()
                    .map(|s| IpAddr::V4(s.ip()))
                    .or_else(|| a.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip())))
            });
            if from_ip != Some(to) {
                continue;
            }
            // IPv4 raw sockets deliver the IP header too.
            let icmp = if to.is_ipv4() {
                let header = usize::from(buf[0] & 0x0f) * 4;
                &buf[header..n]
            } else {
                &buf[..n]
            };
            if icmp.len() >= 8 && icmp[0] == reply && icmp[4..6] == id.to_be_bytes() {
                return true;
            }
        }
        false
    })
}

/// A scratch directory for one hostfw invocation: policies, run and state dirs.
/// Tamper as another tool would: insert an `iptables-legacy` rule sending TCP to `dport` to
/// `target` at the top of INPUT, above hostfw's hook.
pub fn insert_above_hook(ns: &Netns, dport: u16, target: &str) {
    ns.must(&[
        "iptables-legacy",
        "-I",
        "INPUT",
        "1",
        "-p",
        "tcp",
        "--dport",
        &dport.to_string(),
        "-j",
        target,
    ]);
}

/// A host/peer pair named `tag` and a policy directory holding `policies`.
pub fn pair_with_policies(tag: &str, policies: &str) -> (Pair, Workdir) {
    (Pair::new(tag), Workdir::holding(policies))
}

pub struct Workdir {
    pub dir: tempfile::TempDir,
}

impl Workdir {
    pub fn new() -> Workdir {
        Workdir {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn policy_dir(&self) -> PathBuf {
        self.dir.path().join("policies")
    }

    /// A new, empty directory `name` inside the work directory.
    pub fn new_dir(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        path
    }

    /// A fresh directory whose policy directory holds `yaml` as its one file.
    pub fn holding(yaml: &str) -> Workdir {
        let work = Workdir::new();
        work.write_policies(yaml);
        work
    }

    /// Replace the policy directory's content with one file.
    pub fn write_policies(&self, yaml: &str) {
        self.write_policy_files(&[("policies.yaml".to_string(), yaml.to_string())]);
    }

    /// Replace the policy directory's content with these files.
    pub fn write_policy_files(&self, files: &[(String, String)]) {
        let dir = self.policy_dir();
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("policy dir");
        for (name, yaml) in files {
            std::fs::write(dir.join(name), yaml).expect("write policies");
        }
    }
}

/// The result of one hostfw run.
pub struct HostfwRun {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Debug for HostfwRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Run the built hostfw inside `ns` with `work`'s directories, node `node`, backend `backend`.
pub fn hostfw(ns: &Netns, work: &Workdir, node: &str, backend: &str, args: &[&str]) -> HostfwRun {
    hostfw_with_path(ns, work, node, backend, args, None)
}

/// As `hostfw`, with `extra_path` prepended to PATH (wrapper binaries that inject failures).
pub fn hostfw_with_path(
    ns: &Netns,
    work: &Workdir,
    node: &str,
    backend: &str,
    args: &[&str],
    extra_path: Option<&Path>,
) -> HostfwRun {
    let mut cmd = hostfw_command(ns, work, node, backend, args);
    if let Some(extra) = extra_path {
        prepend_path(&mut cmd, extra);
    }
    run_hostfw(cmd)
}

/// Put `extra` in front of `cmd`'s PATH, so its binaries (wrappers) are found first.
pub fn prepend_path(cmd: &mut Command, extra: &Path) {
    let path = std::env::var("PATH").unwrap_or_default();
    cmd.env("PATH", format!("{}:{path}", extra.display()));
}

/// The hostfw command line inside `ns` with `work`'s directories, not yet run, so a caller can
/// still adjust its environment. The HOSTFW_* variables are removed so the flags alone decide.
pub fn hostfw_command(
    ns: &Netns,
    work: &Workdir,
    node: &str,
    backend: &str,
    args: &[&str],
) -> Command {
    let root = work.dir.path();
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &ns.name, env!("CARGO_BIN_EXE_hostfw")])
        .arg("--policy-dir")
        .arg(work.policy_dir())
        .args(["--node", node, "--backend", backend])
        .arg("--run-dir")
        .arg(root.join("run"))
        .arg("--state-dir")
        .arg(root.join("state"))
        .args(args)
        .env_remove("HOSTFW_IPTABLES_BACKEND")
        .env_remove("HOSTFW_NODENAME")
        .env_remove("HOSTFW_POLICY_DIR");
    cmd
}

/// Runs a command made by `hostfw_command` to completion.
pub fn run_hostfw(mut cmd: Command) -> HostfwRun {
    let out = cmd.output().expect("run hostfw");
    HostfwRun {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The node name the per-backend `Scenario` tests run hostfw as.
pub const SCENARIO_NODE: &str = "hfw-test";

/// A HostEndpoint for `SCENARIO_NODE` owning the host side's addresses, on `interface` or,
/// without one, matched by its expectedIPs alone.
pub fn scenario_hep(name: &str, interface: Option<&str>, labels: &str) -> String {
    let iface = interface
        .map(|i| format!("  interfaceName: \"{i}\"\n"))
        .unwrap_or_default();
    format!(
        "---\napiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata:\n  name: {name}\n  \
         labels: {labels}\nspec:\n{iface}  node: {SCENARIO_NODE}\n  expectedIPs: [\"{HOST4}\", \"{HOST6}\"]\n"
    )
}

/// The FelixConfiguration `default` (a YAML document of its own) with `spec` as its fields.
pub fn felix_configuration(spec: &str) -> String {
    format!(
        "---\napiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata:\n  \
         name: default\nspec:\n{spec}"
    )
}

/// A GlobalNetworkPolicy `name` letting TCP to `ports` (YAML list items) into `role == 'web'`.
pub fn allow_ports_policy(name: &str, ports: &str) -> String {
    allow_tcp_in(name, "role == 'web'", "", ports)
}

/// A GlobalNetworkPolicy `name` letting TCP to `ports` (YAML list items) into what `selector`
/// selects; `spec_extra` (indented spec lines) follows the selector.
pub fn allow_tcp_in(name: &str, selector: &str, spec_extra: &str, ports: &str) -> String {
    format!(
        "---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: {name}\n\
         spec:\n  selector: \"{selector}\"\n{spec_extra}  types: [Ingress]\n  ingress:\n  - action: Allow\n    \
         protocol: TCP\n    destination:\n      ports: [{ports}]\n"
    )
}

/// A host/peer pair with a policy directory and a backend: one per-backend scenario test.
pub struct Scenario {
    pub pair: Pair,
    pub work: Workdir,
    pub backend: &'static str,
}

impl Scenario {
    /// Namespaces named after `tag` and the backend, with `yaml` as the only policy file.
    pub fn new(tag: &str, backend: &'static str, yaml: &str) -> Scenario {
        let pair = Pair::new(&format!("{tag}-{backend}"));
        let work = Workdir::new();
        work.write_policies(yaml);
        Scenario {
            pair,
            work,
            backend,
        }
    }

    /// hostfw on the host side, as node `SCENARIO_NODE`.
    pub fn run(&self, args: &[&str]) -> HostfwRun {
        hostfw(
            &self.pair.host,
            &self.work,
            SCENARIO_NODE,
            self.backend,
            args,
        )
    }
}

/// `mod NAME { legacy, nft }`: one test per backend running `fn NAME(backend)`, skipped
/// (loudly) when not root outside CI. The calling file must have `kernel_tests_enabled` in scope.
#[allow(unused_macros)]
macro_rules! on_both_backends {
    ($scenario:ident) => {
        mod $scenario {
            #[test]
            fn legacy() {
                if super::kernel_tests_enabled() {
                    super::$scenario("legacy");
                }
            }
            #[test]
            fn nft() {
                if super::kernel_tests_enabled() {
                    super::$scenario("nft");
                }
            }
        }
    };
}
// Exported by path so `use netns::*` brings it in; unused in the files without backends.
#[allow(unused_imports)]
pub(crate) use on_both_backends;

/// `ip[6]tables-<backend>-save [-c] [-t table]` inside `ns`, with the header and comment lines
/// (which carry timestamps) removed.
pub fn save(ns: &Netns, backend: &str, v6: bool, table: &str, counters: bool) -> String {
    let tool = format!(
        "{}-{backend}-save",
        if v6 { "ip6tables" } else { "iptables" }
    );
    let mut argv = vec![tool.as_str(), "-t", table];
    if counters {
        argv.push("-c");
    }
    ns.must(&argv)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Feed restore input to `ip[6]tables-<backend>-restore --noflush` inside `ns` (test setup).
pub fn restore(ns: &Netns, backend: &str, v6: bool, input: &str) {
    let tool = format!(
        "{}-{backend}-restore",
        if v6 { "ip6tables" } else { "iptables" }
    );
    feed(ns, &[&tool, "--noflush"], input);
}

/// Run `argv` inside `ns` with `stdin` as its input, panicking with its stderr (and the input)
/// when it fails.
pub fn feed(ns: &Netns, argv: &[&str], stdin: &str) {
    let child = Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .args(argv)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {argv:?}: {e}"));
    let out = finish_with_input(child, stdin);
    assert!(
        out.status.success(),
        "{argv:?} failed: {}\n{stdin}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Write `input` to the spawned `child`'s piped stdin, close it, and wait for the child's output.
pub fn finish_with_input(mut child: Child, input: &str) -> Output {
    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin.write_all(input.as_bytes()).expect("write stdin");
    drop(stdin);
    child.wait_with_output().expect("wait for child")
}

/// Poll `cond` every 50 ms until it holds (true) or `within` passes (false).
pub fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// `GET path` over plain HTTP/1.0 from inside `ns`: status and body, None when it cannot
/// connect.
pub fn http_get(ns: &Netns, addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let path = path.to_string();
    ns.run_in(move || {
        let mut s = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let status = text.split_whitespace().nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
        Some((status, body))
    })
}

/// `tool`'s path as a shell would find it on `PATH` (for wrappers that hand over to it).
pub fn which(tool: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}
