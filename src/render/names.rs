//! Every chain name, chain-name prefix and ipset name hostfw writes, spelled in one place, and
//! Felix's length limit (`GetLengthLimitedID`). Pure; knows nothing about rules.

use crate::model::Direction;
use crate::ruleset::Family;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha224, Sha256};

/// iptables chain names are limited to 28 characters (Felix's `MaxChainNameLength`).
pub const MAX_CHAIN_NAME_LEN: usize = 28;

/// ipset names are limited to 31 characters by the kernel.
pub const MAX_IPSET_NAME_LEN: usize = 31;

/// Placeholder interface name under which the `*` endpoint's chains are named.
pub const ANY_INTERFACE: &str = "any-interface-at-all";

// Top-level chains reached from the kernel hooks.
pub const PREROUTING: &str = "cali-PREROUTING";
pub const POSTROUTING: &str = "cali-POSTROUTING";
pub const INPUT: &str = "cali-INPUT";
pub const FORWARD: &str = "cali-FORWARD";
pub const OUTPUT: &str = "cali-OUTPUT";

// Failsafe chains (filter, mangle, raw).
pub const FAILSAFE_IN: &str = "cali-failsafe-in";
pub const FAILSAFE_OUT: &str = "cali-failsafe-out";

// Static chains that stay empty without workloads, QoS endpoints or service CIDRs
// (felix/rules/rule_defs.go).
pub const RPF_SKIP: &str = "cali-rpf-skip";
pub const EGRESS_DSCP: &str = "cali-egress-dscp";
pub const CIDR_BLOCK: &str = "cali-cidr-block";

// IDs of the sets mangle `cali-POSTROUTING`'s DSCP rule names: spelled once, with the ipset
// ownership rule that must recognise them.
pub use crate::ruleset::ipset::{IPSET_ID_ALL_POOLS, IPSET_ID_DSCP_SOURCES, IPSET_ID_THIS_HOST};

// Workload-interface chains kept for the workload-to-host feature.
pub const WL_TO_HOST: &str = "cali-wl-to-host";
pub const FROM_WL_DISPATCH: &str = "cali-from-wl-dispatch";
pub const TO_WL_DISPATCH: &str = "cali-to-wl-dispatch";

// Host endpoint dispatch chains.
pub const FROM_HOST_DISPATCH: &str = "cali-from-host-endpoint";
pub const TO_HOST_DISPATCH: &str = "cali-to-host-endpoint";
pub const FROM_HEP_FORWARD_DISPATCH: &str = "cali-from-hep-forward";
pub const TO_HEP_FORWARD_DISPATCH: &str = "cali-to-hep-forward";

// Per-endpoint chain prefixes.
pub const FROM_HOST_ENDPOINT_PFX: &str = "cali-fh-";
pub const TO_HOST_ENDPOINT_PFX: &str = "cali-th-";
pub const FROM_HOST_ENDPOINT_FORWARD_PFX: &str = "cali-fhfw-";
pub const TO_HOST_ENDPOINT_FORWARD_PFX: &str = "cali-thfw-";

// Policy and profile chain prefixes.
pub const POLICY_INBOUND_PFX: &str = "cali-pi-";
pub const POLICY_OUTBOUND_PFX: &str = "cali-po-";
pub const PROFILE_INBOUND_PFX: &str = "cali-pri-";
pub const PROFILE_OUTBOUND_PFX: &str = "cali-pro-";

/// Kind short name used in v3.32+ policy IDs (`gnp/<name>`).
pub const GNP_KIND_SHORT: &str = "gnp";
/// Kind name in policy chain comments and LOG prefixes.
pub const GNP_KIND: &str = "GlobalNetworkPolicy";

/// Kernel chains our hook rules live in.
pub mod kernel {
    pub const PREROUTING: &str = "PREROUTING";
    pub const POSTROUTING: &str = "POSTROUTING";
    pub const INPUT: &str = "INPUT";
    pub const FORWARD: &str = "FORWARD";
    pub const OUTPUT: &str = "OUTPUT";
}

/// Felix's `GetLengthLimitedID`: `prefix + suffix`, or `prefix + "_" + hash(suffix)` truncated to
/// `max` when too long (or exactly `max` long with a suffix starting with `_`, which would be
/// mistaken for a shortened name).
pub fn length_limited_id(prefix: &str, suffix: &str, max: usize) -> String {
    let suffix = if suffix.is_empty() { "_" } else { suffix };
    let total = prefix.len() + suffix.len();
    if total > max || (total == max && suffix.starts_with('_')) {
        let hash = URL_SAFE_NO_PAD.encode(Sha256::digest(suffix.as_bytes()));
        // A prefix that leaves no room for a hash is a programming error: every prefix here is
        // a constant far shorter than the limit.
        let room = max.saturating_sub(1 + prefix.len()).max(1);
        format!("{prefix}_{}", &hash[..room.min(hash.len())])
    } else {
        format!("{prefix}{suffix}")
    }
}

/// Name of a per-endpoint chain (`cali-fh-eth0`); `iface` is the placeholder for `*`.
pub fn endpoint_chain(prefix: &str, iface: &str) -> String {
    length_limited_id(prefix, iface, MAX_CHAIN_NAME_LEN)
}

/// Name of a GlobalNetworkPolicy chain (v3.32+ ID `gnp/<name>`).
pub fn policy_chain(prefix: &str, policy: &str) -> String {
    if policy_chain_is_verbatim(policy) {
        // The common case, without the intermediate ID string.
        let mut name = String::with_capacity(MAX_CHAIN_NAME_LEN);
        name.push_str(prefix);
        name.push_str(GNP_KIND_SHORT);
        name.push('/');
        name.push_str(policy);
        return name;
    }
    length_limited_id(
        prefix,
        &format!("{GNP_KIND_SHORT}/{policy}"),
        MAX_CHAIN_NAME_LEN,
    )
}

/// Name of `policy`'s chain for `direction` (`cali-pi-…` ingress, `cali-po-…` egress).
pub fn policy_chain_for(direction: Direction, policy: &str) -> String {
    policy_chain(policy_prefix(direction), policy)
}

/// `cali-pi-` (ingress) or `cali-po-` (egress).
pub fn policy_prefix(direction: Direction) -> &'static str {
    match direction {
        Direction::Ingress => POLICY_INBOUND_PFX,
        Direction::Egress => POLICY_OUTBOUND_PFX,
    }
}

/// `cali-pri-` (ingress) or `cali-pro-` (egress).
pub fn profile_prefix(direction: Direction) -> &'static str {
    match direction {
        Direction::Ingress => PROFILE_INBOUND_PFX,
        Direction::Egress => PROFILE_OUTBOUND_PFX,
    }
}

/// Whether `cali-pi-gnp/<policy>` (and `cali-po-…`, same length) fits unshortened. The ID
/// starts with `gnp/`, never `_`, so only the length decides.
pub fn policy_chain_is_verbatim(policy: &str) -> bool {
    POLICY_INBOUND_PFX.len() + GNP_KIND_SHORT.len() + 1 + policy.len() <= MAX_CHAIN_NAME_LEN
}

/// Name of a profile chain (`cali-pri-<name>`).
pub fn profile_chain(prefix: &str, profile: &str) -> String {
    length_limited_id(prefix, profile, MAX_CHAIN_NAME_LEN)
}

/// Child chain of a dispatch chain for interfaces sharing the next character after the common
/// prefix (`cali-from-host-endpoint-1`).
pub fn dispatch_child_chain(root: &str, next: &str) -> String {
    format!("{root}-{next}")
}

/// Felix's `MakeUniqueID` (selector IDs come from `Selector::unique_id`, the same formula): `prefix:` + base64url(SHA-224(`prefix:content`)).
pub fn unique_id(prefix: &str, content: &str) -> String {
    let text = format!("{prefix}:{content}");
    format!(
        "{prefix}:{}",
        URL_SAFE_NO_PAD.encode(Sha224::digest(text.as_bytes()))
    )
}

/// ID of a named-port ipset: selector ID, protocol (`tcp`/`udp`/`sctp`) and port name.
pub fn named_port_set_id(selector_id: &str, protocol: &str, port: &str) -> String {
    unique_id("n", &format!("{selector_id},{protocol},{port}"))
}

/// Dataplane name of an ipset: `cali40<id>` / `cali60<id>`, cut to 31 characters.
pub fn ipset_name(family: Family, id: &str) -> String {
    let mut name = format!("cali{}0{id}", family.ip_version());
    name.truncate(MAX_IPSET_NAME_LEN);
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Felix's own vectors from `libcalico-go/lib/hash/unique_id_test.go`.
    #[test]
    fn length_limited_id_matches_felix_vectors() {
        assert_eq!(length_limited_id("felix", "1234", 10), "felix1234");
        assert_eq!(length_limited_id("felix", "123456", 11), "felix123456");
        assert_eq!(length_limited_id("felix", "_2345", 10), "felix_kMQI");
        assert_eq!(
            length_limited_id("felix", "12345678910", 13),
            "felix_Y2QCZIS"
        );
    }

    /// Felix's `policy_test.go` vector for a shortened profile chain name.
    #[test]
    fn profile_chain_matches_felix_vector() {
        assert_eq!(
            profile_chain(PROFILE_INBOUND_PFX, "long-policy-name-that-gets-hashed"),
            "cali-pri-_ffOMcf6pikpiZ6hgKc"
        );
    }

    #[test]
    fn empty_suffix_becomes_underscore() {
        assert_eq!(length_limited_id("cali-fh-", "", 28), "cali-fh-_");
    }

    #[test]
    fn chain_names_stay_within_limit() {
        // 27 characters: kept as is.
        assert_eq!(
            policy_chain(POLICY_INBOUND_PFX, "k8s-worker-host"),
            "cali-pi-gnp/k8s-worker-host"
        );
        // 28 exactly, not starting with `_`: kept.
        let p = policy_chain(POLICY_INBOUND_PFX, "k8s-worker-host1");
        assert_eq!(p, "cali-pi-gnp/k8s-worker-host1");
        // Over the limit: shortened to exactly 28 with the `_` marker.
        let long = policy_chain(POLICY_INBOUND_PFX, "allow-k8s-worker-host");
        assert_eq!(long.len(), 28);
        assert!(long.starts_with("cali-pi-_"));
        // The fast path agrees with the general algorithm on both sides of the limit.
        for name in ["k8s-worker-host1", "k8s-worker-host12"] {
            assert_eq!(
                policy_chain(POLICY_OUTBOUND_PFX, name),
                length_limited_id(
                    POLICY_OUTBOUND_PFX,
                    &format!("gnp/{name}"),
                    MAX_CHAIN_NAME_LEN
                )
            );
        }
        assert!(policy_chain_is_verbatim("k8s-worker-host1"));
        assert!(!policy_chain_is_verbatim("k8s-worker-host12"));
        // Same suffix hash for fhfw and thfw of the `*` endpoint.
        let fw_in = endpoint_chain(FROM_HOST_ENDPOINT_FORWARD_PFX, ANY_INTERFACE);
        let fw_out = endpoint_chain(TO_HOST_ENDPOINT_FORWARD_PFX, ANY_INTERFACE);
        assert_eq!(fw_in.len(), 28);
        assert_eq!(fw_in["cali-fhfw-_".len()..], fw_out["cali-thfw-_".len()..]);
        // Interface names never shorten.
        assert_eq!(
            endpoint_chain(FROM_HOST_ENDPOINT_PFX, ANY_INTERFACE),
            "cali-fh-any-interface-at-all"
        );
    }

    #[test]
    fn selector_ids_use_the_unique_id_formula() {
        let sel = crate::model::selector::Selector::parse("role == 'etcd'").unwrap();
        assert_eq!(sel.unique_id(), unique_id("s", sel.canonical()));
        let np = named_port_set_id(&sel.unique_id(), "tcp", "http");
        assert!(np.starts_with("n:"));
        assert_ne!(np, named_port_set_id(&sel.unique_id(), "udp", "http"));
    }

    #[test]
    fn ipset_names_are_truncated_to_31() {
        let id = unique_id("s", "role == \"etcd\"");
        assert!(id.starts_with("s:"));
        assert_eq!(id.len(), 2 + 38);
        let name = ipset_name(Family::V4, &id);
        assert_eq!(name.len(), 31);
        assert!(name.starts_with("cali40s:"));
        assert!(ipset_name(Family::V6, &id).starts_with("cali60s:"));
    }
}
