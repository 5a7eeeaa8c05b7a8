//! ipset text: `ipset restore` input for desired sets, and a parser for `ipset save` /
//! `ipset list -o save` output restricted to our sets (Felix's exact name shapes, see
//! [`is_owned_set`]). Pure; never runs `ipset`.

use super::save::SaveError;
use super::{Family, Ipset, IpsetType};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// Length of every set name hostfw renders: Felix cuts `cali40` + `s:`/`n:` + base64url of a
/// SHA-224 to the kernel's 31-character limit (`render::names::ipset_name`).
const RENDERED_SET_NAME_LEN: usize = 31;

/// IDs of the fixed sets Felix's static chains name (mangle `cali-POSTROUTING`'s DSCP rule;
/// felix/rules/rule_defs.go at v3.32.1): `cali40<id>`/`cali60<id>`, always empty on a host
/// without QoS endpoints or IP pools.
pub const IPSET_ID_DSCP_SOURCES: &str = "dscp-src-net";
pub const IPSET_ID_ALL_POOLS: &str = "network-ip-pools";
pub const IPSET_ID_THIS_HOST: &str = "this-host";
/// Every fixed set ID Felix v3.32.1 defines (felix/rules/rule_defs.go): the three above, which
/// hostfw renders, and the ones only a cluster fills (NAT outgoing, tunnels, Istio), which a host
/// taken over from Felix still holds and hostfw removes once nothing uses them.
const FELIX_FIXED_SET_IDS: [&str; 7] = [
    IPSET_ID_DSCP_SOURCES,
    IPSET_ID_ALL_POOLS,
    IPSET_ID_THIS_HOST,
    "masq-ipam-pools",
    "all-hosts-net",
    "all-vxlan-net",
    "all-istio-weps",
];

/// True for a set name we own, and only for those: the exact shapes hostfw creates.
/// * `cali40s:…`/`cali60s:…` (selector sets) and `cali40n:…`/`cali60n:…` (named-port sets):
///   31 characters, the part after the colon base64url;
/// * `cali40<id>`/`cali60<id>` for Felix's fixed sets (`FELIX_FIXED_SET_IDS`);
/// * `cali4t<N>`/`cali6t<N>`: the temporary sets a type or size change builds aside.
///
/// A set that merely starts with `cali4`/`cali6` (an admin's `cali40-office`) is not ours: it is
/// never read, changed or destroyed (docs/design.md, "Ownership").
pub fn is_owned_set(name: &str) -> bool {
    let Some(rest) = name
        .strip_prefix("cali4")
        .or_else(|| name.strip_prefix("cali6"))
    else {
        return false;
    };
    if let Some(counter) = rest.strip_prefix('t') {
        return !counter.is_empty() && counter.bytes().all(|b| b.is_ascii_digit());
    }
    if rest
        .strip_prefix('0')
        .is_some_and(|id| FELIX_FIXED_SET_IDS.contains(&id))
    {
        return true;
    }
    let Some(id) = rest
        .strip_prefix("0s:")
        .or_else(|| rest.strip_prefix("0n:"))
    else {
        return false;
    };
    name.len() == RENDERED_SET_NAME_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Our sets as the kernel holds them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveIpsets {
    pub sets: BTreeMap<String, LiveIpset>,
}

/// One live set. Type, family and maxelem are `None` when `ipset save` printed something we do
/// not create (such a set never matches a desired one and gets replaced).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveIpset {
    pub name: String,
    pub set_type: Option<IpsetType>,
    pub family: Option<Family>,
    pub max_elements: Option<u32>,
    /// Members normalised with [`normalize_member`].
    pub members: BTreeSet<String>,
}

/// `hash:net` / `hash:ip,port` / `hash:ip`.
pub fn type_str(t: IpsetType) -> &'static str {
    match t {
        IpsetType::HashNet => "hash:net",
        IpsetType::HashIpPort => "hash:ip,port",
        IpsetType::HashIp => "hash:ip",
    }
}

/// Canonical member text, so desired and saved members compare equal: `ipset save` prints a
/// full-length prefix of a `hash:net` set as a bare address (`10.0.0.1`, not `10.0.0.1/32`),
/// so a `/32` (v4) or `/128` (v6) suffix is dropped; everything else is kept verbatim.
pub fn normalize_member(member: &str) -> String {
    let m = member.trim();
    if let Some(addr) = m.strip_suffix("/32") {
        if !addr.contains(':') && !addr.contains(',') {
            return addr.to_string();
        }
    }
    if let Some(addr) = m.strip_suffix("/128") {
        if addr.contains(':') && !addr.contains(',') {
            return addr.to_string();
        }
    }
    m.to_string()
}

/// Appends `create NAME TYPE family F maxelem N`.
pub fn write_create(out: &mut String, name: &str, set: &Ipset) {
    // Writing into a String cannot fail.
    let _ = writeln!(
        out,
        "create {name} {} family {} maxelem {}",
        type_str(set.set_type),
        set.family.ipset_family(),
        set.max_elements
    );
}

/// Appends `add NAME MEMBER`.
pub fn write_add(out: &mut String, name: &str, member: &str) {
    out.push_str("add ");
    out.push_str(name);
    out.push(' ');
    out.push_str(member);
    out.push('\n');
}

/// Appends `del NAME MEMBER`.
pub fn write_del(out: &mut String, name: &str, member: &str) {
    out.push_str("del ");
    out.push_str(name);
    out.push(' ');
    out.push_str(member);
    out.push('\n');
}

/// `ipset restore` input creating and filling every given set (sets in name order, members
/// sorted): what `hostfw render` prints for ipsets.
pub fn sets_restore<'a, I>(sets: I) -> String
where
    I: IntoIterator<Item = &'a Ipset>,
{
    let mut sorted: Vec<&Ipset> = sets.into_iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = String::new();
    for s in sorted {
        write_create(&mut out, &s.name, s);
        for m in &s.members {
            write_add(&mut out, &s.name, m);
        }
    }
    out
}

/// Parses `ipset save` (or `ipset list -o save`) output, keeping only our sets. Lines of other
/// sets are skipped unread, so foreign set types never cause an error.
pub fn parse_ipset_save(text: &str) -> Result<LiveIpsets, SaveError> {
    let mut out = LiveIpsets::default();
    for (idx, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let verb = words.next().unwrap_or_default();
        let malformed = || SaveError::Malformed {
            line: idx + 1,
            text: line.to_string(),
        };
        match verb {
            "create" | "add" | "-N" | "-A" => {}
            _ => return Err(malformed()),
        }
        let name = words.next().ok_or_else(malformed)?;
        if !is_owned_set(name) {
            continue;
        }
        if verb == "create" || verb == "-N" {
            let type_word = words.next().ok_or_else(malformed)?;
            let set_type = match type_word {
                "hash:net" => Some(IpsetType::HashNet),
                "hash:ip,port" => Some(IpsetType::HashIpPort),
                "hash:ip" => Some(IpsetType::HashIp),
                _ => None,
            };
            let mut family = None;
            let mut max_elements = None;
            // The remaining words are `key value` pairs or lone flags; only two matter.
            let rest: Vec<&str> = words.collect();
            for pair in rest.windows(2) {
                match pair[0] {
                    "family" => {
                        family = Family::from_ipset_family(pair[1]);
                    }
                    "maxelem" => max_elements = pair[1].parse().ok(),
                    _ => {}
                }
            }
            let set = out.sets.entry(name.to_string()).or_default();
            set.name = name.to_string();
            set.set_type = set_type;
            set.family = family;
            set.max_elements = max_elements;
        } else {
            let member = words.next().ok_or_else(malformed)?;
            let set = out.sets.entry(name.to_string()).or_default();
            if set.name.is_empty() {
                set.name = name.to_string();
            }
            set.members.insert(normalize_member(member));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(name: &str, family: Family, members: &[&str]) -> Ipset {
        Ipset {
            name: name.into(),
            set_type: IpsetType::HashNet,
            family,
            max_elements: 1048576,
            members: members.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// A rendered-shape name: `prefix` padded with base64url characters to 31.
    fn shaped(prefix: &str) -> String {
        format!(
            "{prefix}{}",
            "A".repeat(RENDERED_SET_NAME_LEN - prefix.len())
        )
    }

    #[test]
    fn owns_exactly_the_rendered_shapes() {
        for ours in [
            shaped("cali40s:"),
            shaped("cali60s:"),
            shaped("cali40n:"),
            shaped("cali60n:"),
            "cali4t0".to_string(),
            "cali6t12".to_string(),
        ] {
            assert!(is_owned_set(&ours), "{ours}");
        }
        for theirs in [
            "cali40-office".to_string(),
            "cali40s:short".to_string(),
            "cali60mine".to_string(),
            format!("{}x", shaped("cali40s:")),
            shaped("cali40s:").replacen('A', ".", 1),
            "cali4t".to_string(),
            "cali4tx".to_string(),
            "f2b-sshd".to_string(),
            "calico-hosts".to_string(),
        ] {
            assert!(!is_owned_set(&theirs), "{theirs}");
        }
    }

    #[test]
    fn restore_text_is_sorted() {
        let a = set(
            "cali40s:b",
            Family::V4,
            &["198.51.100.0/24", "203.0.113.1/32"],
        );
        let b = set("cali60s:a", Family::V6, &["2001:db8::/64"]);
        assert_eq!(
            sets_restore([&a, &b]),
            "create cali40s:b hash:net family inet maxelem 1048576\n\
             add cali40s:b 198.51.100.0/24\n\
             add cali40s:b 203.0.113.1/32\n\
             create cali60s:a hash:net family inet6 maxelem 1048576\n\
             add cali60s:a 2001:db8::/64\n"
        );
    }

    #[test]
    fn parses_only_our_sets() {
        let (abc, def) = (shaped("cali40s:"), shaped("cali60n:"));
        // Shape of `ipset save` from ipset 7.x (hashsize/bucketsize/initval vary by version).
        let text = format!(
            "create f2b-sshd hash:ip family inet hashsize 1024 maxelem 65536\n\
             add f2b-sshd 192.0.2.9\n\
             create {abc} hash:net family inet hashsize 1024 maxelem 1048576 bucketsize 12 initval 0x5d2b8b2e\n\
             add {abc} 198.51.100.0/24\n\
             add {abc} 203.0.113.7\n\
             create {def} hash:ip,port family inet6 hashsize 1024 maxelem 500\n\
             add {def} 2001:db8::1,tcp:80\n\
             create cali4t3 hash:ip family inet hashsize 1024 maxelem 10\n\
             create cali40-office hash:net family inet hashsize 1024 maxelem 10\n\
             add cali40-office 192.0.2.0/24\n\
             create cali40this-host hash:ip family inet hashsize 1024 maxelem 1048576\n"
        );
        let live = parse_ipset_save(&text).unwrap();
        assert_eq!(
            live.sets.keys().collect::<Vec<_>>(),
            [
                &abc,
                &"cali40this-host".to_string(),
                &"cali4t3".to_string(),
                &def
            ]
        );
        let abc = &live.sets[&abc];
        assert_eq!(abc.set_type, Some(IpsetType::HashNet));
        assert_eq!(abc.family, Some(Family::V4));
        assert_eq!(abc.max_elements, Some(1048576));
        assert!(abc.members.contains("203.0.113.7"));
        let def = &live.sets[&def];
        assert_eq!(def.set_type, Some(IpsetType::HashIpPort));
        assert_eq!(def.family, Some(Family::V6));
        assert_eq!(def.max_elements, Some(500));
        assert_eq!(live.sets["cali4t3"].set_type, Some(IpsetType::HashIp));
        assert_eq!(
            live.sets["cali40this-host"].set_type,
            Some(IpsetType::HashIp)
        );
    }

    #[test]
    fn members_normalise() {
        assert_eq!(normalize_member("203.0.113.7/32"), "203.0.113.7");
        assert_eq!(normalize_member("2001:db8::1/128"), "2001:db8::1");
        assert_eq!(normalize_member("2001:db8::/32"), "2001:db8::/32");
        assert_eq!(normalize_member("198.51.100.0/24"), "198.51.100.0/24");
        assert_eq!(normalize_member("10.0.0.1,tcp:80"), "10.0.0.1,tcp:80");
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_ipset_save("flush everything\n").is_err());
        assert!(parse_ipset_save("").unwrap().sets.is_empty());
    }
}
