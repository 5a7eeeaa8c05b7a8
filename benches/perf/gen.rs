//! Deterministic policy-directory generator for the performance harness (docs/performance.md): scales S, M
//! and L written as YAML files a user could have written. Same seed, same bytes. Writes only the
//! directory it is given; knows nothing about timing or the kernel.
//!
//! Layout of a generated directory (file names matter to `scripts/bench.sh`, which edits them):
//! - `00-felix.yaml`: FelixConfiguration `default` (defaults; both families).
//! - `01-tiers.yaml`: tiers `security` (order 100) and `platform` (order 200).
//! - `02-endpoints.yaml`: HostEndpoints on `bench0`..`benchN-1` of node `bench`.
//! - `03-small-sets.yaml`: small GlobalNetworkSets that rule selectors refer to.
//! - `04-bignet.yaml`: the large GlobalNetworkSet (`netset: big`); its `nets` list is the last
//!   thing in the file, so appending `  - <net>` adds one member.
//! - `40-bignet-policy.yaml`: the policy that puts the large set into the ruleset (a Deny).
//! - `41-probe.yaml`: lets the per-packet probe (TCP 9999, ICMP from 198.51.100.2) in.
//! - `50-edit.yaml`: one small policy whose single rule's port the harness edits
//!   (`ports: [40000]`).
//! - `p-NNNN.yaml`: the bulk policies, 100 per file.
//!
//! Addresses: documentation ranges (198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32) and the
//! benchmarking range 198.18.0.0/15 (RFC 2544); 192.0.2.0/24 is never generated, so the harness
//! can add a member from it. 198.51.100.1-9 are never set members: the namespaces use them.

use std::fmt::Write as _;
use std::io;
use std::path::Path;

/// One scale of the issue: policy count, rules per policy, endpoints, large set size.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    pub name: &'static str,
    pub policies: usize,
    pub rules_per_policy: usize,
    pub endpoints: usize,
    pub bignet: usize,
}

/// S, M and L as docs/performance.md defines them.
pub const SCALES: [Scale; 3] = [
    Scale {
        name: "S",
        policies: 10,
        rules_per_policy: 10,
        endpoints: 2,
        bignet: 100,
    },
    Scale {
        name: "M",
        policies: 1_000,
        rules_per_policy: 10,
        endpoints: 10,
        bignet: 10_000,
    },
    Scale {
        name: "L",
        policies: 10_000,
        rules_per_policy: 10,
        endpoints: 20,
        bignet: 100_000,
    },
];

/// The scale called `name` (S, M or L, any case).
pub fn scale(name: &str) -> Option<Scale> {
    SCALES
        .iter()
        .copied()
        .find(|s| s.name.eq_ignore_ascii_case(name))
}

/// The node name the generated endpoints belong to.
pub const NODE: &str = "bench";
/// Number of small network sets (`idx: k`).
const SMALL_SETS: usize = 16;
const ROLES: usize = 5;
const ZONES: usize = 3;

/// splitmix64: tiny, well-distributed, and stable across platforms and releases (the output must
/// not change when a dependency does).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Every file of the directory, as (file name, contents), in name order.
pub fn files(scale: Scale, seed: u64) -> Vec<(String, String)> {
    let mut rng = Rng(seed);
    let mut out = vec![
        (
            "00-felix.yaml".to_string(),
            "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\nmetadata:\n  name: default\nspec:\n  \
             logPrefix: hostfw\n"
                .to_string(),
        ),
        ("01-tiers.yaml".to_string(), tiers()),
        ("02-endpoints.yaml".to_string(), endpoints(scale.endpoints)),
        ("03-small-sets.yaml".to_string(), small_sets()),
        ("04-bignet.yaml".to_string(), bignet(scale.bignet)),
        ("40-bignet-policy.yaml".to_string(), bignet_policy()),
        ("41-probe.yaml".to_string(), probe_policy()),
        ("50-edit.yaml".to_string(), edit_policy(40000)),
    ];
    let per_file = 100;
    for first in (0..scale.policies).step_by(per_file) {
        let mut text = String::with_capacity(per_file * 1500);
        for i in first..(first + per_file).min(scale.policies) {
            policy(i, scale.rules_per_policy, &mut rng, &mut text);
        }
        out.push((format!("p-{:04}.yaml", first / per_file), text));
    }
    out
}

/// Write `files(scale, seed)` into `dir` (created if missing; existing files are replaced).
pub fn write(scale: Scale, seed: u64, dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, text) in files(scale, seed) {
        std::fs::write(dir.join(name), text)?;
    }
    Ok(())
}

fn tiers() -> String {
    let mut s = String::new();
    for (name, order) in [("security", 100), ("platform", 200)] {
        let _ = write!(
            s,
            "---\napiVersion: projectcalico.org/v3\nkind: Tier\nmetadata:\n  name: {name}\nspec:\n  order: {order}\n"
        );
    }
    s
}

fn endpoints(n: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        let _ = write!(
            s,
            "---\napiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata:\n  name: bench-hep{i}\n  \
             labels:\n    role: r{}\n    zone: z{}\nspec:\n  node: {NODE}\n  interfaceName: bench{i}\n  \
             expectedIPs: [\"203.0.113.{}\", \"2001:db8:e::{:x}\"]\n  ports:\n  - {{name: web, protocol: TCP, port: 8080}}\n",
            i % ROLES,
            i % ZONES,
            200 + i,
            i + 1
        );
    }
    s
}

fn small_sets() -> String {
    let mut s = String::new();
    for k in 0..SMALL_SETS {
        let _ = write!(
            s,
            "---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata:\n  name: small-{k}\n  \
             labels:\n    idx: s{k}\nspec:\n  nets:\n  - 198.51.100.{}/32\n  - 203.0.113.{}/31\n  - 2001:db8:5:{k:x}::/64\n  - 198.18.{}.0/24\n",
            10 + k,
            2 * k,
            200 + k
        );
    }
    s
}

/// `n` distinct members: half IPv4 /32s from 198.18.0.0/15 (skipping .0 and .255), half IPv6
/// /128s from 2001:db8:ff00::/40, then a few documentation host routes.
fn bignet(n: usize) -> String {
    let mut s = String::with_capacity(n * 24 + 256);
    s.push_str(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata:\n  name: bignet\n  labels:\n    \
         netset: big\nspec:\n  nets:\n",
    );
    let doc = n.min(100);
    for i in 0..doc {
        // 198.51.100.100-149 and 203.0.113.100-149: clear of the namespaces' .1-.9.
        let _ = writeln!(
            s,
            "  - {}.{}/32",
            if i % 2 == 0 {
                "198.51.100"
            } else {
                "203.0.113"
            },
            100 + i / 2
        );
    }
    let rest = n - doc;
    let v4 = rest / 2;
    for i in 0..v4 {
        let host = i % 254 + 1;
        let net = i / 254;
        let _ = writeln!(s, "  - 198.{}.{}.{host}/32", 18 + net / 256, net % 256);
    }
    for i in 0..rest - v4 {
        let _ = writeln!(
            s,
            "  - 2001:db8:ff{:02x}::{:x}/128",
            (i >> 16) & 0xff,
            i & 0xffff
        );
    }
    s
}

fn bignet_policy() -> String {
    "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: security.deny-bignet\nspec:\n  \
     tier: security\n  order: 1\n  selector: all()\n  types: [Ingress]\n  ingress:\n  - action: Deny\n    source:\n      \
     selector: netset == 'big'\n"
        .to_string()
}

/// What the per-packet probe needs (TCP 9999 and ICMP from the peer namespace), evaluated right
/// after `deny-bignet`, so a probe packet pays for exactly one large-set lookup.
fn probe_policy() -> String {
    "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: security.allow-probe\nspec:\n  \
     tier: security\n  order: 2\n  selector: all()\n  types: [Ingress]\n  ingress:\n  - action: Allow\n    protocol: TCP\n    \
     source:\n      nets: [198.51.100.2/32]\n    destination:\n      ports: [9999]\n  - action: Allow\n    protocol: ICMP\n    \
     source:\n      nets: [198.51.100.2/32]\n"
        .to_string()
}

/// The policy the harness edits: one rule, one port.
pub fn edit_policy(port: u16) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: bench-edit\nspec:\n  \
         order: 5\n  selector: has(role)\n  types: [Ingress]\n  ingress:\n  - action: Allow\n    protocol: TCP\n    \
         destination:\n      ports: [{port}]\n"
    )
}

fn selector(rng: &mut Rng) -> String {
    match rng.below(5) {
        0 => "all()".to_string(),
        1 => format!("role == 'r{}'", rng.below(ROLES)),
        2 => format!(
            "zone in {{'z{}', 'z{}'}}",
            rng.below(ZONES),
            rng.below(ZONES)
        ),
        3 => format!("has(role) && role != 'r{}'", rng.below(ROLES)),
        _ => format!(
            "zone == 'z{}' || role == 'r{}'",
            rng.below(ZONES),
            rng.below(ROLES)
        ),
    }
}

/// One GlobalNetworkPolicy with `rules` rules split over ingress and egress.
fn policy(i: usize, rules: usize, rng: &mut Rng, out: &mut String) {
    let (tier, name) = match rng.below(10) {
        0 | 1 => ("security", format!("security.p{i:05}")),
        2 | 3 => ("platform", format!("platform.p{i:05}")),
        _ => ("default", format!("p{i:05}")),
    };
    let _ = write!(
        out,
        "---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: {name}\n  \
         labels: {{team: t{}}}\nspec:\n  tier: {tier}\n  order: {}\n  selector: \"{}\"\n  types: [Ingress, Egress]\n",
        i % 40,
        10 + rng.below(1000),
        selector(rng)
    );
    let ingress = rules - rules / 3;
    out.push_str("  ingress:\n");
    for r in 0..ingress {
        rule(i, r, tier != "default", rng, out);
    }
    out.push_str("  egress:\n");
    for r in ingress..rules {
        rule(i, r, tier != "default", rng, out);
    }
}

fn rule(i: usize, r: usize, tiered: bool, rng: &mut Rng, out: &mut String) {
    let port = 1024 + rng.below(30000);
    let action = match rng.below(20) {
        0 => "Log",
        1 if tiered => "Pass",
        2..=5 => "Deny",
        _ => "Allow",
    };
    let b = (i + r) % 256;
    match rng.below(8) {
        0 => {
            let _ = write!(
                out,
                "  - action: {action}\n    protocol: TCP\n    source:\n      nets: [\"198.51.100.{}/32\", \"198.18.{b}.0/24\"]\n    \
                 destination:\n      ports: [{port}, \"{}:{}\"]\n",
                10 + b % 200,
                port + 1,
                port + 20
            );
        }
        1 => {
            let _ = write!(
                out,
                "  - action: {action}\n    protocol: UDP\n    ipVersion: 6\n    source:\n      nets: [\"2001:db8:{b:x}::/48\"]\n    \
                 destination:\n      ports: [{port}]\n"
            );
        }
        2 => {
            let _ = write!(
                out,
                "  - action: {action}\n    protocol: TCP\n    source:\n      selector: idx == 's{}'\n    destination:\n      ports: [{port}]\n",
                rng.below(SMALL_SETS)
            );
        }
        3 => {
            let _ = write!(
                out,
                "  - action: {action}\n    protocol: ICMP\n    icmp: {{type: 8, code: 0}}\n    source:\n      notNets: [\"203.0.113.{}/32\"]\n",
                b
            );
        }
        4 => {
            let _ = write!(
                out,
                "  - action: {action}\n    protocol: ICMPv6\n    icmp: {{type: 128}}\n"
            );
        }
        5 => {
            let _ = write!(
                out,
                "  - action: {action}\n    protocol: TCP\n    destination:\n      nets: [\"203.0.113.{b}/32\"]\n      ports: [web, {port}]\n"
            );
        }
        6 => {
            let _ = write!(
                out,
                "  - action: {action}\n    protocol: UDP\n    destination:\n      notPorts: [\"{port}:{}\"]\n",
                port + 100
            );
        }
        _ => {
            let _ = write!(
                out,
                "  - action: {action}\n    protocol: TCP\n    source:\n      selector: role == 'r{}'\n      notNets: [\"198.18.{b}.0/28\"]\n    \
                 destination:\n      ports: [22, 443]\n",
                rng.below(ROLES)
            );
        }
    }
}
