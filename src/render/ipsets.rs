//! Selector and named-port ipsets (`docs/felix-layout.md` "Ipsets"; Felix
//! `felix/calc/rule_scanner.go`): IDs from the selector's canonical text, members from every
//! node's HostEndpoint `expectedIPs` and from GlobalNetworkSets, per family.

use super::names;
use super::static_chains::same_family;
use crate::model::selector::Selector;
use crate::model::IpVersion;
use crate::resolve::NodeView;
use crate::ruleset::{Family, Ipset, IpsetType, Name};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

/// The protocol word of a named-port set for a rule without `protocol` (Felix's
/// `ipsetmember.ProtocolAny`): it matches the port name on every protocol.
pub(crate) const NAMED_PORT_ANY_PROTOCOL: &str = "any";

/// Cache key of a named-port set: selector source text, protocol, port name.
type PortSetKey = (String, &'static str, String);

/// A set a rule asked the collector for: asked again when the rule is taken from the last
/// render (`memo::PolicyChain`), so the set is there with this render's members.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SetRequest {
    Selector(Selector),
    NamedPort(Selector, &'static str, String),
}

/// Collects the ipsets rules ask for; `finish` keeps those the final tables reference.
pub struct SetCollector<'a> {
    view: &'a NodeView,
    family: Family,
    sets: BTreeMap<String, Ipset>,
    /// What was asked for since `noting` began, while it runs.
    noted: Option<Vec<SetRequest>>,
    /// Set name by selector source text, so a selector used by many rules is hashed and
    /// evaluated once, and its rules share one copy of the name.
    selector_names: HashMap<String, Name>,
    port_names: HashMap<PortSetKey, Name>,
}

impl<'a> SetCollector<'a> {
    pub fn new(view: &'a NodeView, family: Family) -> Self {
        SetCollector {
            view,
            family,
            sets: BTreeMap::new(),
            selector_names: HashMap::new(),
            port_names: HashMap::new(),
            noted: None,
        }
    }

    /// `f`'s result and the sets it asked for.
    pub(crate) fn noting<R>(&mut self, f: impl FnOnce(&mut Self) -> R) -> (R, Vec<SetRequest>) {
        let outer = self.noted.replace(Vec::new());
        let result = f(self);
        let noted = std::mem::replace(&mut self.noted, outer).unwrap_or_default();
        (result, noted)
    }

    /// Ask again for what an earlier render's rules asked for.
    pub(crate) fn ask_again(&mut self, requests: &[SetRequest]) {
        for request in requests {
            match request {
                SetRequest::Selector(selector) => {
                    self.selector_set(selector);
                }
                SetRequest::NamedPort(selector, proto, port) => {
                    self.named_port_set(selector, proto, port);
                }
            }
        }
    }

    /// Note `request` once: a chain's rules ask for the same few sets again and again.
    fn note(&mut self, request: SetRequest) {
        if let Some(noted) = &mut self.noted {
            if !noted.contains(&request) {
                noted.push(request);
            }
        }
    }

    fn addr_in_family(&self, ip: &IpAddr) -> bool {
        matches!(
            (self.family, IpVersion::of_addr(ip)),
            (Family::V4, IpVersion::V4) | (Family::V6, IpVersion::V6)
        )
    }

    /// The `hash:net` set of everything `selector` selects; returns its dataplane name.
    pub fn selector_set(&mut self, selector: &Selector) -> Name {
        self.note(SetRequest::Selector(selector.clone()));
        if let Some(name) = self.selector_names.get(selector.source()) {
            return name.clone();
        }
        let id = selector.unique_id();
        let name = names::ipset_name(self.family, &id);
        if !self.sets.contains_key(&name) {
            let mut members = BTreeSet::new();
            for ep in &self.view.selector_sources.endpoints {
                if selector.matches(&ep.labels) {
                    for ip in ep.expected_ips.iter().filter(|ip| self.addr_in_family(ip)) {
                        members.insert(IpNet::from(*ip).to_string());
                    }
                }
            }
            for set in &self.view.selector_sources.network_sets {
                if selector.matches(&set.labels) {
                    for net in set.nets.iter().filter(|n| same_family(self.family, n)) {
                        for part in split_zero_prefix(net) {
                            members.insert(part.to_string());
                        }
                    }
                }
            }
            self.insert(name.clone(), IpsetType::HashNet, members);
        }
        let name = Name::from(name);
        self.selector_names
            .insert(selector.source().to_string(), name.clone());
        name
    }

    /// The `hash:ip,port` set of the named port `port` (protocol `proto`: tcp, udp, sctp, or
    /// [`NAMED_PORT_ANY_PROTOCOL`] for every protocol) on the endpoints `selector` selects.
    pub fn named_port_set(&mut self, selector: &Selector, proto: &'static str, port: &str) -> Name {
        self.note(SetRequest::NamedPort(
            selector.clone(),
            proto,
            port.to_string(),
        ));
        let key = (selector.source().to_string(), proto, port.to_string());
        if let Some(name) = self.port_names.get(&key) {
            return name.clone();
        }
        let sel_id = selector.unique_id();
        let id = names::named_port_set_id(&sel_id, proto, port);
        let name = names::ipset_name(self.family, &id);
        if !self.sets.contains_key(&name) {
            let mut members = BTreeSet::new();
            for ep in &self.view.selector_sources.endpoints {
                if !selector.matches(&ep.labels) {
                    continue;
                }
                for p in ep.ports.iter().filter(|p| p.name == port) {
                    let Some(p_proto) = named_port_protocol(p.protocol) else {
                        continue;
                    };
                    if proto != NAMED_PORT_ANY_PROTOCOL && p_proto != proto {
                        continue;
                    }
                    for ip in ep.expected_ips.iter().filter(|ip| self.addr_in_family(ip)) {
                        members.insert(format!("{ip},{p_proto}:{}", p.port));
                    }
                }
            }
            self.insert(name.clone(), IpsetType::HashIpPort, members);
        }
        let name = Name::from(name);
        self.port_names.insert(key, name.clone());
        name
    }

    /// An empty set named after `id` (the static chains' sets, which hostfw never fills).
    pub fn empty_set(&mut self, id: &str, set_type: IpsetType) {
        let name = names::ipset_name(self.family, id);
        self.insert(name, set_type, BTreeSet::new());
    }

    fn insert(&mut self, name: String, set_type: IpsetType, members: BTreeSet<String>) {
        self.sets.insert(
            name.clone(),
            Ipset {
                name,
                set_type,
                family: self.family,
                max_elements: self.view.config.max_ipset_size,
                members,
            },
        );
    }

    /// The sets whose names appear in `referenced`.
    pub fn finish(self, referenced: &BTreeSet<&str>) -> BTreeMap<String, Ipset> {
        self.sets
            .into_iter()
            .filter(|(name, _)| referenced.contains(name.as_str()))
            .collect()
    }
}

/// How a named port's protocol is spelled in ipset IDs and members; None for protocols named
/// ports cannot use.
pub(crate) fn named_port_protocol(p: crate::model::Protocol) -> Option<&'static str> {
    use crate::model::Protocol;
    match p {
        Protocol::Tcp | Protocol::Number(6) => Some("tcp"),
        Protocol::Udp | Protocol::Number(17) => Some("udp"),
        Protocol::Sctp | Protocol::Number(132) => Some("sctp"),
        _ => None,
    }
}

/// ipset rejects a /0, so it becomes its two /1 halves.
fn split_zero_prefix(net: &IpNet) -> Vec<IpNet> {
    if net.prefix_len() != 0 {
        return vec![*net];
    }
    match net {
        IpNet::V4(_) => vec![
            IpNet::V4(Ipv4Net::new([0, 0, 0, 0].into(), 1).unwrap_or_default()),
            IpNet::V4(Ipv4Net::new([128, 0, 0, 0].into(), 1).unwrap_or_default()),
        ],
        IpNet::V6(_) => vec![
            IpNet::V6(Ipv6Net::new(0u128.into(), 1).unwrap_or_default()),
            IpNet::V6(Ipv6Net::new((1u128 << 127).into(), 1).unwrap_or_default()),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_prefix_splits_in_two() {
        let v4: IpNet = "0.0.0.0/0".parse().unwrap();
        let parts: Vec<String> = split_zero_prefix(&v4)
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(parts, vec!["0.0.0.0/1", "128.0.0.0/1"]);
        let v6: IpNet = "::/0".parse().unwrap();
        let parts: Vec<String> = split_zero_prefix(&v6)
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(parts, vec!["::/1", "8000::/1"]);
        let other: IpNet = "10.0.0.0/8".parse().unwrap();
        assert_eq!(split_zero_prefix(&other), vec![other]);
    }
}
