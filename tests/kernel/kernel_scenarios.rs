//! Real-kernel scenarios: the built `hostfw` applies policies inside a network namespace and real
//! TCP, UDP and ICMP/ICMPv6 traffic from a peer namespace shows what passes. Every scenario runs
//! on both backends and checks allowed AND denied flows, in IPv4 and IPv6, and checks the same
//! flows pass before `apply` (so a denial is hostfw's doing, not the topology's).
//! Expected verdicts follow Felix's semantics (docs/felix-layout.md; felix/rules/endpoints.go, policy.go).

use crate::netns;

use netns::*;
use std::net::IpAddr;

const NODE: &str = SCENARIO_NODE;

/// Both families' addresses of one role, and how to format a socket address.
#[derive(Clone, Copy)]
struct Fam {
    v6: bool,
    host: &'static str,
    peer: &'static str,
}

const V4: Fam = Fam {
    v6: false,
    host: HOST4,
    peer: PEER4,
};
const V6: Fam = Fam {
    v6: true,
    host: HOST6,
    peer: PEER6,
};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

/// Collects (flow, expected, actual) and reports every mismatch at once.
#[derive(Default)]
pub(crate) struct Verdicts {
    rows: Vec<(String, bool, bool)>,
}

impl Verdicts {
    /// Run `probe`. A flow expected to pass that did not is probed once more (a loaded machine
    /// can make one handshake miss the short timeout); a flow expected to be blocked is never
    /// retried, so a leak cannot hide.
    pub(crate) fn check(
        &mut self,
        what: impl Into<String>,
        expected: bool,
        probe: impl Fn() -> bool,
    ) {
        let mut actual = probe();
        if expected && !actual {
            actual = probe();
        }
        self.rows.push((what.into(), expected, actual));
    }

    pub(crate) fn assert(self, context: &str) {
        let bad: Vec<String> = self
            .rows
            .iter()
            .filter(|(_, e, a)| e != a)
            .map(|(w, e, a)| {
                let word = |b: &bool| if *b { "pass" } else { "blocked" };
                format!("  {w}: expected {}, got {}", word(e), word(a))
            })
            .collect();
        assert!(
            bad.is_empty(),
            "{context}: {} of {} flows wrong:\n{}",
            bad.len(),
            self.rows.len(),
            bad.join("\n")
        );
    }
}

/// The common shape of a scenario: every flow of `probe` before apply (`applied = false`, all
/// expectations must hold), then `apply`, then every flow again (`applied = true`), reported
/// under `after`.
pub(crate) fn around_apply<R>(
    probe: &impl Fn(&mut Verdicts, bool),
    apply: impl FnOnce() -> R,
    after: &str,
) {
    let mut before = Verdicts::default();
    probe(&mut before, false);
    before.assert("before apply");
    apply();
    let mut later = Verdicts::default();
    probe(&mut later, true);
    later.assert(after);
}

// Per-file additions to the shared harness's scenario.
impl Scenario {
    pub(crate) fn apply(&self) -> HostfwRun {
        let run = self.run(&["apply"]);
        assert_eq!(run.code, 0, "apply failed: {run:?}");
        run
    }
}

// ------------------------------------------------------------------------------------------
// The seed's k8s-worker policy (seeds/000: management SSH, ICMP, kubelet; egress etcd + DNS),
// with the management-net and etcd rules written once per family (one rule may not mix them).

const MGMT_PEER4: &str = "198.51.100.2"; // inside the management net 198.51.100.0/28
const OTHER_PEER4: &str = "198.51.100.100"; // outside it
const OTHER_PEER6: &str = "2001:db8::100"; // outside 2001:db8::/124

fn k8s_worker_yaml() -> String {
    let policy = r#"apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: k8s-worker
spec:
  selector: "role == 'k8s-worker'"
  order: 0
  ingress:
  - action: Allow
    protocol: TCP
    source:
      nets: ["198.51.100.0/28"]
    destination:
      ports: [22]
  - action: Allow
    protocol: TCP
    source:
      nets: ["2001:db8::/124"]
    destination:
      ports: [22]
  - action: Allow
    protocol: ICMP
  - action: Allow
    protocol: TCP
    destination:
      ports: [10250]
  egress:
  - action: Allow
    protocol: TCP
    destination:
      nets: ["198.51.100.2/32"]
      ports: [2379]
  - action: Allow
    protocol: TCP
    destination:
      nets: ["2001:db8::2/128"]
      ports: [2379]
  - action: Allow
    protocol: UDP
    destination:
      ports: [53, 67]
"#;
    format!(
        "{policy}{}",
        scenario_hep(
            "my-host-eth0",
            Some("eth0"),
            "{role: k8s-worker, environment: production}"
        )
    )
}

fn k8s_worker(backend: &'static str) {
    let s = Scenario::new("k8sw", backend, &k8s_worker_yaml());
    let (host, peer) = (&s.pair.host, &s.pair.peer);
    peer.addr("eth0", &format!("{OTHER_PEER4}/24"));
    peer.addr("eth0", &format!("{OTHER_PEER6}/64"));
    neighbours(host, "eth0", peer, "eth0", &[OTHER_PEER4, OTHER_PEER6]);
    let _servers = [22, 10250, 8080]
        .map(|p| tcp_server(host, sock("::", p)))
        .into_iter()
        .chain([2379, 8080].map(|p| tcp_server(peer, sock("::", p))))
        // Bound per address: a wildcard UDP socket may answer from the peer's other address.
        .chain([PEER4, PEER6].map(|a| udp_server(peer, sock(a, 53))))
        .collect::<Vec<_>>();

    let probe = |v: &mut Verdicts, f: Fam, open: bool| {
        let other = if f.v6 { OTHER_PEER6 } else { OTHER_PEER4 };
        let mgmt = if f.v6 { PEER6 } else { MGMT_PEER4 };
        let fam = if f.v6 { "v6" } else { "v4" };
        v.check(format!("{fam} peer(mgmt) -> host:22"), true, || {
            tcp_ok(peer, Some(mgmt), sock(f.host, 22))
        });
        v.check(
            format!("{fam} peer(other) -> host:22 (failsafe)"),
            true,
            || tcp_ok(peer, Some(other), sock(f.host, 22)),
        );
        v.check(format!("{fam} peer -> host:10250"), true, || {
            tcp_ok(peer, None, sock(f.host, 10250))
        });
        v.check(format!("{fam} peer -> host:8080"), open, || {
            tcp_ok(peer, None, sock(f.host, 8080))
        });
        // `protocol: ICMP` is IPv4 only; ICMPv6 echo has no allow rule.
        v.check(format!("{fam} peer pings host"), open || !f.v6, || {
            ping_ok(peer, ip(f.host))
        });
        v.check(format!("{fam} host -> etcd peer:2379"), true, || {
            tcp_ok(host, None, sock(f.peer, 2379))
        });
        v.check(format!("{fam} host -> peer:8080"), open, || {
            tcp_ok(host, None, sock(f.peer, 8080))
        });
        v.check(format!("{fam} host -> peer DNS udp:53"), true, || {
            udp_ok(host, sock(f.peer, 53))
        });
    };

    let mut before = Verdicts::default();
    probe(&mut before, V4, true);
    probe(&mut before, V6, true);
    before.assert("before apply");

    s.apply();
    let mut after = Verdicts::default();
    probe(&mut after, V4, false);
    probe(&mut after, V6, false);
    after.assert(&format!("after apply ({backend})"));

    let flushed = s.run(&["flush"]);
    assert_eq!(flushed.code, 0, "{flushed:?}");
    let mut open = Verdicts::default();
    probe(&mut open, V4, true);
    probe(&mut open, V6, true);
    open.assert("after flush");
}
on_both_backends!(k8s_worker);

// ------------------------------------------------------------------------------------------
// failsafeInboundHostPorts: [] removes the SSH safety net.

fn failsafe_empty(backend: &'static str) {
    let yaml = format!(
        r#"{}---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: kubelet-only
spec:
  selector: "role == 'worker'"
  types: [Ingress]
  ingress:
  - action: Allow
    protocol: TCP
    destination:
      ports: [10250]
{}"#,
        felix_configuration("  failsafeInboundHostPorts: []\n"),
        scenario_hep("h-eth0", Some("eth0"), "{role: worker}")
    );
    let s = Scenario::new("fsempty", backend, &yaml);
    let (host, peer) = (&s.pair.host, &s.pair.peer);
    let _servers = [22, 10250].map(|p| tcp_server(host, sock("::", p)));
    let probe = |v: &mut Verdicts, applied: bool| {
        for f in [V4, V6] {
            v.check(format!("{} ssh", f.host), !applied, || {
                tcp_ok(peer, None, sock(f.host, 22))
            });
            v.check(format!("{} kubelet", f.host), true, || {
                tcp_ok(peer, None, sock(f.host, 10250))
            });
        }
    };
    let mut before = Verdicts::default();
    probe(&mut before, false);
    before.assert("before apply");
    // The lockout guard refuses a set that leaves no inbound SSH, and writes nothing...
    let refused = s.run(&["apply"]);
    assert_eq!(refused.code, 1, "apply without --force: {refused:?}");
    assert!(refused.stderr.contains("--force"), "{refused:?}");
    let mut still_open = Verdicts::default();
    probe(&mut still_open, false);
    still_open.assert("after the refused apply");
    // ...until the admin insists.
    let forced = s.run(&["apply", "--force"]);
    assert_eq!(forced.code, 0, "apply --force: {forced:?}");
    let mut after = Verdicts::default();
    probe(&mut after, true);
    after.assert(&format!("after apply ({backend})"));
}
on_both_backends!(failsafe_empty);

// ------------------------------------------------------------------------------------------
// Router topologies: client — router (hostfw, HEP on its client side eth0) — server.

pub(crate) const CLIENT4: &str = "198.51.100.2";
pub(crate) const CLIENT6: &str = "2001:db8::2";
const ROUTER_C4: &str = "198.51.100.1";
const ROUTER_C6: &str = "2001:db8::1";
const ROUTER_S4: &str = "203.0.113.1";
const ROUTER_S6: &str = "2001:db8:1::1";
pub(crate) const SERVER4: &str = "203.0.113.2";
pub(crate) const SERVER6: &str = "2001:db8:1::2";

pub(crate) struct Router {
    pub(crate) client: Netns,
    pub(crate) router: Netns,
    pub(crate) server: Netns,
    work: Workdir,
    backend: &'static str,
}

impl Router {
    pub(crate) fn new(tag: &str, backend: &'static str, yaml: &str) -> Router {
        let client = Netns::new(&format!("{tag}-{backend}-c"));
        let router = Netns::new(&format!("{tag}-{backend}-r"));
        let server = Netns::new(&format!("{tag}-{backend}-s"));
        route_through(
            &router,
            Side::new(&client, &[CLIENT4, CLIENT6], [ROUTER_C4, ROUTER_C6]),
            Side::new(&server, &[SERVER4, SERVER6], [ROUTER_S4, ROUTER_S6]),
        );
        let work = Workdir::holding(yaml);
        Router {
            client,
            router,
            server,
            work,
            backend,
        }
    }

    pub(crate) fn apply(&self) {
        let run = hostfw(&self.router, &self.work, NODE, self.backend, &["apply"]);
        assert_eq!(run.code, 0, "apply failed: {run:?}");
    }
}

/// The seed's preDNAT example (docs/design.md, "Product contract"): only 80 and 443 in, to the host and through it.
fn pre_dnat_router(backend: &'static str) {
    let yaml = format!(
        r#"- apiVersion: projectcalico.org/v3
  kind: GlobalNetworkPolicy
  metadata:
    name: allow-http-https-traffic-only
  spec:
    order: 10
    preDNAT: true
    applyOnForward: true
    ingress:
      - action: Allow
        protocol: TCP
        destination:
          ports: [80,443]
    selector: "role==\"master\" && type==\"external\""
- apiVersion: projectcalico.org/v3
  kind: GlobalNetworkPolicy
  metadata:
    name: drop-other-ingress
  spec:
    order: 20
    preDNAT: true
    applyOnForward: true
    ingress:
      - action: Deny
{}"#,
        scenario_hep(
            "master1-eth0",
            Some("eth0"),
            "{role: master, type: external}"
        )
    );
    let r = Router::new("prednat", backend, &yaml);
    let _servers = [80, 443, 8080]
        .map(|p| tcp_server(&r.server, sock("::", p)))
        .into_iter()
        .chain([80, 8080].map(|p| tcp_server(&r.router, sock("::", p))))
        .collect::<Vec<_>>();
    let probe = |v: &mut Verdicts, applied: bool| {
        for (server, router) in [(SERVER4, ROUTER_C4), (SERVER6, ROUTER_C6)] {
            for port in [80, 443] {
                v.check(format!("client -> server {server}:{port}"), true, || {
                    tcp_ok(&r.client, None, sock(server, port))
                });
            }
            v.check(format!("client -> server {server}:8080"), !applied, || {
                tcp_ok(&r.client, None, sock(server, 8080))
            });
            v.check(format!("client -> router {router}:80"), true, || {
                tcp_ok(&r.client, None, sock(router, 80))
            });
            v.check(format!("client -> router {router}:8080"), !applied, || {
                tcp_ok(&r.client, None, sock(router, 8080))
            });
        }
    };
    around_apply(&probe, || r.apply(), &format!("after apply ({backend})"));
}
on_both_backends!(pre_dnat_router);

/// A normal policy with applyOnForward: it governs forwarded traffic entering eth0; without
/// applyOnForward the same policy leaves forwarded traffic alone.
fn apply_on_forward(backend: &'static str) {
    let yaml = |aof: bool| {
        allow_tcp_in(
            "web-only",
            "role == 'edge'",
            &format!("  applyOnForward: {aof}\n"),
            "80",
        ) + &scenario_hep("edge-eth0", Some("eth0"), "{role: edge}")
    };
    let r = Router::new("aof", backend, &yaml(true));
    let _servers = [80, 8080].map(|p| tcp_server(&r.server, sock("::", p)));
    let probe = |v: &mut Verdicts, forward_policed: bool| {
        for server in [SERVER4, SERVER6] {
            v.check(format!("client -> server {server}:80"), true, || {
                tcp_ok(&r.client, None, sock(server, 80))
            });
            v.check(
                format!("client -> server {server}:8080"),
                !forward_policed,
                || tcp_ok(&r.client, None, sock(server, 8080)),
            );
        }
    };
    around_apply(
        &probe,
        || r.apply(),
        &format!("applyOnForward: true ({backend})"),
    );

    r.work.write_policies(&yaml(false));
    r.apply();
    let mut normal = Verdicts::default();
    probe(&mut normal, false);
    normal.assert(&format!("applyOnForward: false ({backend})"));
}
on_both_backends!(apply_on_forward);

// ------------------------------------------------------------------------------------------
// doNotTrack: an untracked allow needs its reverse rule; an untracked deny beats a normal allow.

fn do_not_track(backend: &'static str) {
    let yaml = format!(
        r#"apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: untracked-allow
spec:
  selector: "role == 'lb'"
  doNotTrack: true
  applyOnForward: true
  order: 10
  ingress:
  - action: Allow
    protocol: TCP
    destination:
      ports: [7070]
  egress:
  - action: Allow
    protocol: TCP
    source:
      ports: [7070]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: untracked-deny
spec:
  selector: "role == 'lb'"
  doNotTrack: true
  applyOnForward: true
  order: 20
  ingress:
  - action: Deny
    protocol: TCP
    destination:
      ports: [7171]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: normal-allow
spec:
  selector: "role == 'lb'"
  types: [Ingress]
  ingress:
  - action: Allow
    protocol: TCP
    destination:
      ports: [7171, 7272]
{}"#,
        scenario_hep("lb-eth0", Some("eth0"), "{role: lb}")
    );
    let s = Scenario::new("dnt", backend, &yaml);
    let (host, peer) = (&s.pair.host, &s.pair.peer);
    let _servers = [7070, 7171, 7272, 8080].map(|p| tcp_server(host, sock("::", p)));
    let probe = |v: &mut Verdicts, applied: bool| {
        for f in [V4, V6] {
            v.check(format!("{} untracked allow 7070", f.host), true, || {
                tcp_ok(peer, None, sock(f.host, 7070))
            });
            v.check(
                format!("{} untracked deny 7171 over normal allow", f.host),
                !applied,
                || tcp_ok(peer, None, sock(f.host, 7171)),
            );
            v.check(format!("{} normal allow 7272", f.host), true, || {
                tcp_ok(peer, None, sock(f.host, 7272))
            });
            v.check(format!("{} no policy 8080", f.host), !applied, || {
                tcp_ok(peer, None, sock(f.host, 8080))
            });
        }
    };
    around_apply(&probe, || s.apply(), &format!("after apply ({backend})"));
}
on_both_backends!(do_not_track);

// ------------------------------------------------------------------------------------------
// `*` covers every interface including lo; an expectedIPs-only endpoint covers only the
// interface holding those addresses.

const WEB_POLICIES: &str = r#"apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: web-in
spec:
  selector: "role == 'web'"
  types: [Ingress]
  ingress:
  - action: Allow
    protocol: TCP
    destination:
      ports: [8080]
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: all-out
spec:
  selector: "role == 'web'"
  types: [Egress]
  egress:
  - action: Allow
"#;

fn star_endpoint(backend: &'static str) {
    web_endpoint(backend, "star", "all-ifaces", Some("*"), true);
}
on_both_backends!(star_endpoint);

fn expected_ips_only(backend: &'static str) {
    web_endpoint(backend, "eips", "by-address", None, false);
}
on_both_backends!(expected_ips_only);

/// WEB_POLICIES on an endpoint named `hep_name` (on `interface`, or by expectedIPs alone): the
/// peer reaches 8080 but not 9090 on both families; over lo the same holds only when
/// `lo_governed`, otherwise lo (holding none of the expected IPs) stays open.
fn web_endpoint(
    backend: &'static str,
    tag: &str,
    hep_name: &str,
    interface: Option<&str>,
    lo_governed: bool,
) {
    let yaml = format!(
        "{WEB_POLICIES}{}",
        scenario_hep(hep_name, interface, "{role: web}")
    );
    let s = Scenario::new(tag, backend, &yaml);
    let (host, peer) = (&s.pair.host, &s.pair.peer);
    let _servers = [8080, 9090].map(|p| tcp_server(host, sock("::", p)));
    let probe = |v: &mut Verdicts, applied: bool| {
        for (f, lo) in [(V4, "127.0.0.1"), (V6, "::1")] {
            v.check(format!("peer -> {}:8080", f.host), true, || {
                tcp_ok(peer, None, sock(f.host, 8080))
            });
            v.check(format!("peer -> {}:9090", f.host), !applied, || {
                tcp_ok(peer, None, sock(f.host, 9090))
            });
            if lo_governed {
                v.check(format!("host -> {lo}:8080 over lo"), true, || {
                    tcp_ok(host, None, sock(lo, 8080))
                });
            }
            v.check(
                format!("host -> {lo}:9090 over lo"),
                !(applied && lo_governed),
                || tcp_ok(host, None, sock(lo, 9090)),
            );
        }
    };
    around_apply(&probe, || s.apply(), &format!("after apply ({backend})"));
}
