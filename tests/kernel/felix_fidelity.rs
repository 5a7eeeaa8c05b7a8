//! Real packets for the places where hostfw's verdicts now follow Felix v3.32.1
//! (docs/felix-layout.md): the default failsafe port tcp 5473, forwarded traffic left to the
//! FORWARD chain by an ingress-only forward policy, the v3.32 policy-order tie-break, named
//! ports in a rule without protocol, and `interfacePrefix` lists. Each flow is also probed
//! before `apply`, so a denial is hostfw's doing; both backends, IPv4 and IPv6.

use crate::kernel_scenarios::{around_apply, Router, Verdicts, CLIENT4, CLIENT6, SERVER4, SERVER6};
use crate::netns::*;

/// v4 and v6 addresses of the host and the peer of a `Pair`.
const FAMILIES: [(&str, &str, &str); 2] = [("v4", HOST4, PEER4), ("v6", HOST6, PEER6)];

fn gnp(name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: {name}\n\
         spec:\n{spec}"
    )
}

/// Node `node`'s eth0 endpoint with label `role`, then `documents`.
fn eth0_and(node: &str, role: &str, documents: &[String]) -> String {
    scenario_hep(node, Some("eth0"), &format!("{{role: {role}}}")) + &documents.concat()
}

/// felix/config/config_params.go: tcp 5473 (Typha) is a default failsafe port both ways, so a
/// policy that allows nothing still lets it through; its neighbour 5474 is denied.
fn failsafe_5473(backend: &'static str) {
    let documents = [gnp(
        "nothing",
        "  selector: \"role == 'web'\"\n  types: [Ingress, Egress]\n",
    )];
    let yaml = eth0_and("h", "web", &documents);
    let s = Scenario::new("fs5473", backend, &yaml);
    let (host, peer) = (&s.pair.host, &s.pair.peer);
    let _servers = [5473, 5474]
        .map(|p| {
            [
                tcp_server(host, sock("::", p)),
                tcp_server(peer, sock("::", p)),
            ]
        })
        .into_iter()
        .flatten()
        .collect::<Vec<_>>();
    let probe = |v: &mut Verdicts, applied: bool| {
        for (fam, h, p) in FAMILIES {
            v.check(format!("{fam} peer -> host:5473"), true, || {
                tcp_ok(peer, None, sock(h, 5473))
            });
            v.check(format!("{fam} peer -> host:5474"), !applied, || {
                tcp_ok(peer, None, sock(h, 5474))
            });
            v.check(format!("{fam} host -> peer:5473"), true, || {
                tcp_ok(host, None, sock(p, 5473))
            });
            v.check(format!("{fam} host -> peer:5474"), !applied, || {
                tcp_ok(host, None, sock(p, 5474))
            });
        }
    };
    around_apply(&probe, || s.apply(), "failsafe tcp 5473");
}
on_both_backends!(failsafe_5473);

/// felix/calc/event_sequencer.go, felix/rules/endpoints.go: an ingress-only applyOnForward
/// policy makes the endpoint's forward tier exist, so `cali-thfw-eth0` has no default allow and
/// a new connection forwarded out of eth0 is left to the FORWARD chain (here policy DROP, as
/// Docker sets it), while what the policy allows in through eth0 (and its replies) passes.
fn forward_ingress_only(backend: &'static str) {
    let documents = [gnp(
            "fwd-in",
            "  selector: \"role == 'router'\"\n  applyOnForward: true\n  types: [Ingress]\n  \
             ingress:\n  - action: Allow\n    protocol: TCP\n    destination:\n      ports: [8080]\n",
        )];
    let yaml = eth0_and("r", "router", &documents);
    let r = Router::new("fwdin", backend, &yaml);
    for tool in ["iptables", "ip6tables"] {
        r.router
            .must(&[&format!("{tool}-{backend}"), "-P", "FORWARD", "DROP"]);
    }
    let _servers = [
        tcp_server(&r.server, sock("::", 8080)),
        tcp_server(&r.server, sock("::", 8081)),
        tcp_server(&r.client, sock("::", 9090)),
    ];
    let mut before = Verdicts::default();
    for (fam, client, server) in [("v4", CLIENT4, SERVER4), ("v6", CLIENT6, SERVER6)] {
        // The FORWARD policy drops everything before hostfw accepts some of it.
        before.check(format!("{fam} client -> server:8080"), false, || {
            tcp_ok(&r.client, None, sock(server, 8080))
        });
        before.check(format!("{fam} server -> client:9090"), false, || {
            tcp_ok(&r.server, None, sock(client, 9090))
        });
    }
    before.assert("before apply (FORWARD policy DROP)");
    r.apply();
    let mut after = Verdicts::default();
    for (fam, client, server) in [("v4", CLIENT4, SERVER4), ("v6", CLIENT6, SERVER6)] {
        after.check(
            format!("{fam} client -> server:8080 (allowed in)"),
            true,
            || tcp_ok(&r.client, None, sock(server, 8080)),
        );
        after.check(
            format!("{fam} client -> server:8081 (end of tier)"),
            false,
            || tcp_ok(&r.client, None, sock(server, 8081)),
        );
        after.check(
            format!("{fam} server -> client:9090 (no default allow out of eth0)"),
            false,
            || tcp_ok(&r.server, None, sock(client, 9090)),
        );
    }
    after.assert("ingress-only forward policy");
}
on_both_backends!(forward_ingress_only);

/// felix/calc/policy_sorter.go `PolKVLess` (v3.32): with equal orders `web-2` runs before
/// `web`, so web-2's Allow decides before web's Deny.
fn order_tie_break(backend: &'static str) {
    let rule = |action: &str| {
        format!(
            "  order: 10\n  selector: \"role == 'web'\"\n  types: [Ingress]\n  ingress:\n  - action: \
             {action}\n    protocol: TCP\n    destination:\n      ports: [8080]\n"
        )
    };
    let documents = [gnp("web", &rule("Deny")), gnp("web-2", &rule("Allow"))];
    let yaml = eth0_and("h", "web", &documents);
    let s = Scenario::new("tiebrk", backend, &yaml);
    let (host, peer) = (&s.pair.host, &s.pair.peer);
    let _servers = [8080, 8081].map(|p| tcp_server(host, sock("::", p)));
    let probe = |v: &mut Verdicts, applied: bool| {
        for (fam, h, _) in FAMILIES {
            v.check(
                format!("{fam} peer -> host:8080 (web-2 allows first)"),
                true,
                || tcp_ok(peer, None, sock(h, 8080)),
            );
            v.check(format!("{fam} peer -> host:8081"), !applied, || {
                tcp_ok(peer, None, sock(h, 8081))
            });
        }
    };
    around_apply(&probe, || s.apply(), "order tie-break");
}
on_both_backends!(order_tie_break);

/// felix/calc/rule_scanner.go: a named port in a rule without `protocol` matches the name on
/// every protocol: the endpoint's UDP and TCP ports named `svc` pass, the same numbers on the
/// other protocol do not.
fn named_port_any_protocol(backend: &'static str) {
    let hep = scenario_hep("h", Some("eth0"), "{role: svc}").replace(
        "  expectedIPs:",
        "  ports:\n  - {name: svc, protocol: UDP, port: 5353}\n  - {name: svc, protocol: TCP, port: 8080}\n  expectedIPs:",
    );
    let yaml = format!(
        "{hep}{}",
        gnp(
            "svc",
            "  selector: \"role == 'svc'\"\n  types: [Ingress]\n  ingress:\n  - action: Allow\n    \
             destination:\n      ports: [svc]\n"
        )
    );
    let s = Scenario::new("npany", backend, &yaml);
    let (host, peer) = (&s.pair.host, &s.pair.peer);
    let mut servers = vec![
        tcp_server(host, sock("::", 8080)),
        tcp_server(host, sock("::", 5353)),
    ];
    for (_, h, _) in FAMILIES {
        servers.push(udp_server(host, sock(h, 5353)));
        servers.push(udp_server(host, sock(h, 8080)));
    }
    let probe = |v: &mut Verdicts, applied: bool| {
        for (fam, h, _) in FAMILIES {
            v.check(format!("{fam} peer -> host udp:5353 (svc)"), true, || {
                udp_ok(peer, sock(h, 5353))
            });
            v.check(format!("{fam} peer -> host tcp:8080 (svc)"), true, || {
                tcp_ok(peer, None, sock(h, 8080))
            });
            v.check(format!("{fam} peer -> host tcp:5353"), !applied, || {
                tcp_ok(peer, None, sock(h, 5353))
            });
            v.check(format!("{fam} peer -> host udp:8080"), !applied, || {
                udp_ok(peer, sock(h, 8080))
            });
        }
    };
    around_apply(&probe, || s.apply(), "named port without protocol");
}
on_both_backends!(named_port_any_protocol);

/// felix/config/config_params.go `InterfacePrefixes`: `interfacePrefix: "cali,tap"` makes
/// `tap0` a workload interface, so traffic from it meets `defaultEndpointToHostAction`
/// (Drop) instead of passing as from an interface nobody configured.
fn interface_prefix_list(backend: &'static str) {
    let documents = [
        allow_ports_policy("web", "8080"),
        felix_configuration(
            "  interfacePrefix: \"cali,tap\"\n  defaultEndpointToHostAction: Drop\n",
        ),
    ];
    let yaml = eth0_and("h", "web", &documents);
    let s = Scenario::new("ifpfx", backend, &yaml);
    let (host, peer) = (&s.pair.host, &s.pair.peer);
    let workload = Netns::new(&format!("ifpfx-{backend}-w"));
    veth(host, "tap0", &workload, "eth0");
    host.addr("tap0", "203.0.113.1/24");
    host.addr("tap0", "2001:db8:2::1/64");
    workload.addr("eth0", "203.0.113.2/24");
    workload.addr("eth0", "2001:db8:2::2/64");
    neighbours(
        host,
        "tap0",
        &workload,
        "eth0",
        &["203.0.113.2", "2001:db8:2::2"],
    );
    neighbours(
        &workload,
        "eth0",
        host,
        "tap0",
        &["203.0.113.1", "2001:db8:2::1"],
    );
    let _server = tcp_server(host, sock("::", 8080));
    let probe = |v: &mut Verdicts, applied: bool| {
        for (fam, h, _) in FAMILIES {
            v.check(format!("{fam} peer -> host:8080 via eth0"), true, || {
                tcp_ok(peer, None, sock(h, 8080))
            });
        }
        for (fam, h) in [("v4", "203.0.113.1"), ("v6", "2001:db8:2::1")] {
            v.check(
                format!("{fam} workload -> host:8080 via tap0 (a workload interface)"),
                !applied,
                || tcp_ok(&workload, None, sock(h, 8080)),
            );
        }
    };
    around_apply(&probe, || s.apply(), "interfacePrefix list");
}
on_both_backends!(interface_prefix_list);
