//! Name, label and annotation rules shared by every kind (Kubernetes DNS names, qualified label
//! keys, label values, IANA service names). Pure predicates returning the reason on failure.

/// Longest DNS subdomain (resource names, node names).
pub(crate) const MAX_SUBDOMAIN: usize = 253;
/// Longest DNS label, label name part and label value.
pub(crate) const MAX_LABEL: usize = 63;
/// Most bytes all annotations of one object (or rule) may hold together.
pub(crate) const MAX_ANNOTATION_BYTES: usize = 256 * 1024;

/// One DNS-1123 label: lowercase alphanumerics and `-`, alphanumeric at both ends.
pub(crate) fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_LABEL
        && b[0].is_ascii_alphanumeric()
        && !b[0].is_ascii_uppercase()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && !b[b.len() - 1].is_ascii_uppercase()
        && b.iter()
            .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase() || *c == b'-')
}

/// A DNS-1123 subdomain: dot-separated labels, at most 253 characters.
pub(crate) fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_SUBDOMAIN && s.split('.').all(is_dns_label_unbounded)
}

/// A subdomain part: like a label, but Kubernetes' subdomain rule has no per-part length limit.
fn is_dns_label_unbounded(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && is_lower_alnum(b[0])
        && is_lower_alnum(b[b.len() - 1])
        && b.iter().all(|c| is_lower_alnum(*c) || *c == b'-')
}

fn is_lower_alnum(c: u8) -> bool {
    c.is_ascii_digit() || c.is_ascii_lowercase()
}

/// Why `s` is not a valid resource name (DNS subdomain), if it is not.
pub(crate) fn name_problem(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some("name must not be empty".into());
    }
    if s.len() > MAX_SUBDOMAIN {
        return Some(format!("name is longer than {MAX_SUBDOMAIN} characters"));
    }
    if !is_dns_subdomain(s) {
        return Some(format!(
            "`{s}` is not a valid name: use lowercase letters, digits, `-` and `.`, starting and \
             ending each dot-separated part with a letter or digit"
        ));
    }
    None
}

/// The name part of a label key or a non-empty label value: 1-63 of `[A-Za-z0-9._-]`,
/// alphanumeric at both ends.
fn is_label_token(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_LABEL
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// Why `key` is not a Kubernetes qualified name (`[prefix/]name`), if it is not.
pub(crate) fn label_key_problem(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        if !is_dns_subdomain(p) {
            return Some(format!(
                "label key `{key}`: the prefix before `/` must be a lowercase DNS subdomain"
            ));
        }
    }
    if !is_label_token(name) {
        return Some(format!(
            "label key `{key}` is invalid: the name part must be 1-63 characters of letters, \
             digits, `-`, `_` and `.`, starting and ending with a letter or digit (at most one `/`)"
        ));
    }
    None
}

/// Why `value` is not a valid label value, if it is not.
pub(crate) fn label_value_problem(value: &str) -> Option<String> {
    if value.is_empty() || is_label_token(value) {
        return None;
    }
    Some(format!(
        "label value `{value}` is invalid: at most 63 characters of letters, digits, `-`, `_` and \
         `.`, starting and ending with a letter or digit (or empty)"
    ))
}

/// Why `key` is not a valid annotation key (a qualified name once lowercased), if it is not.
pub(crate) fn annotation_key_problem(key: &str) -> Option<String> {
    label_key_problem(&key.to_ascii_lowercase())
        .map(|_| format!("annotation key `{key}` is not a qualified name ([prefix/]name)"))
}

/// Why `s` is not an IANA service name (named ports), if it is not: 1-15 of `[a-z0-9-]`, at
/// least one letter, no `--`, no `-` at either end.
pub(crate) fn iana_problem(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 15
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.iter().any(|c| c.is_ascii_lowercase())
        && !s.contains("--")
        && b[0] != b'-'
        && b[b.len() - 1] != b'-';
    (!ok).then(|| {
        format!(
            "`{s}` is not a valid port name: 1-15 lowercase letters, digits and `-`, with at \
             least one letter, no `--` and no `-` at either end"
        )
    })
}

/// Parse an IP address as Go's `net.ParseIP` does: IPv4 octets with leading zeros are refused
/// (they would be octal to some tools and decimal to others).
pub(crate) fn parse_ip(s: &str) -> Option<std::net::IpAddr> {
    if has_octal_octet(s) {
        return None;
    }
    s.parse().ok()
}

/// Parse `addr/len` as Go's `net.ParseCIDR` does (no leading-zero octets); not normalised.
pub(crate) fn parse_cidr(s: &str) -> Option<ipnet::IpNet> {
    let (addr, len) = s.split_once('/')?;
    if has_octal_octet(addr) || len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn has_octal_octet(addr: &str) -> bool {
    let v4 = addr.rsplit(':').next().unwrap_or(addr);
    v4.contains('.') && v4.split('.').any(|o| o.len() > 1 && o.starts_with('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdomains() {
        for ok in ["a", "a.b", "a-b.c0", "0", &"a".repeat(253)] {
            assert!(is_dns_subdomain(ok), "{ok}");
        }
        for bad in [
            "",
            "A",
            "a_b",
            "-a",
            "a-",
            ".a",
            "a.",
            "a..b",
            &"a".repeat(254),
        ] {
            assert!(!is_dns_subdomain(bad), "{bad}");
        }
    }

    #[test]
    fn label_keys_and_values() {
        assert!(label_key_problem("app").is_none());
        assert!(label_key_problem("example.com/App_1").is_none());
        assert!(label_key_problem("Example.com/app").is_some());
        assert!(label_key_problem("a/b/c").is_some());
        assert!(label_key_problem("").is_some());
        assert!(label_key_problem(&"a".repeat(64)).is_some());
        assert!(label_value_problem("").is_none());
        assert!(label_value_problem("A.b-c_d").is_none());
        assert!(label_value_problem("a b").is_some());
        assert!(label_value_problem("-a").is_some());
        assert!(annotation_key_problem("Example.COM/x").is_none());
    }

    #[test]
    fn addresses_like_go() {
        assert!(parse_ip("198.51.100.1").is_some());
        assert!(parse_ip("2001:db8::1").is_some());
        assert!(parse_ip("198.051.100.1").is_none());
        assert!(parse_ip("::ffff:010.0.0.1").is_none());
        assert!(parse_cidr("10.0.0.0/8").is_some());
        assert!(parse_cidr("010.0.0.0/8").is_none());
        assert!(parse_cidr("10.0.0.0/+8").is_none());
        assert!(parse_cidr("10.0.0.0").is_none());
    }

    #[test]
    fn iana_names() {
        for ok in ["http", "a1", "my-port", "abcdefghijklmno"] {
            assert!(iana_problem(ok).is_none(), "{ok}");
        }
        for bad in [
            "",
            "HTTP",
            "http_alt",
            "80",
            "80-90",
            "-a",
            "a-",
            "a--b",
            "abcdefghijklmnop",
        ] {
            assert!(iana_problem(bad).is_some(), "{bad}");
        }
    }
}
