//! Felix form: the exact text Felix generates for a rule (long options, `%#x` marks, escaped
//! comments). Rule hashes are computed over this text and `iptables-restore` input is written in
//! it. Pure string building; must not read the kernel's save form (that is `save.rs`).
//!
//! Spellings follow Felix's `iptables/match_builder.go`, `iptables/actions.go` and
//! `iptables/renderer.go`: fragments are joined by single spaces, the hash comment comes first,
//! then the free-text comments, then the matches in vector order, then the action.

use super::{Action, Match, PortSpec, Rule, SetDirection};
use std::fmt::Write as _;

/// iptables' comment match holds at most 256 bytes; Felix truncates to that.
pub const MAX_COMMENT_LEN: usize = 256;

/// The literal Felix puts where the hash comment goes when hashing a rule.
pub const HASH_PLACEHOLDER: &str = "HASH";

/// The prefix of our hash comments (`cali:<hash>`).
pub const HASH_COMMENT_PREFIX: &str = "cali:";

/// Replaces every character outside `[A-Za-z0-9_ @%+=:,./-]` with `_` (one `_` per character,
/// as Felix's regexp does per rune) and truncates to [`MAX_COMMENT_LEN`] bytes. The result
/// needs no quoting inside `"..."` for `iptables-restore`.
pub fn escape_comment(comment: &str) -> String {
    let mut out = String::with_capacity(comment.len().min(MAX_COMMENT_LEN));
    for c in comment.chars() {
        if out.len() >= MAX_COMMENT_LEN {
            break;
        }
        let safe = c.is_ascii_alphanumeric()
            || matches!(
                c,
                '_' | ' ' | '@' | '%' | '+' | '=' | ':' | ',' | '.' | '/' | '-'
            );
        out.push(if safe { c } else { '_' });
    }
    out
}

/// Go's `%#x`: `0x0` for zero, lower-case hex otherwise.
struct HexMark(u32);

impl std::fmt::Display for HexMark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// A mark value in a match or `--set-mark`: Felix's clear/test-clear helpers write a bare `0`
/// (`MarkClear`, `MarkNotClear`, `ClearMark`), everything else goes through `%#x`.
struct MarkValue(u32);

impl std::fmt::Display for MarkValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0 == 0 {
            f.write_str("0")
        } else {
            write!(f, "{:#x}", self.0)
        }
    }
}

fn bang(negated: bool) -> &'static str {
    if negated {
        "! "
    } else {
        ""
    }
}

fn write_ports(out: &mut String, ports: &[PortSpec]) {
    for (i, p) in ports.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        // Writing into a String cannot fail.
        let _ = match p {
            PortSpec::Single(n) => write!(out, "{n}"),
            PortSpec::Range(a, b) if a == b => write!(out, "{a}"),
            PortSpec::Range(a, b) => write!(out, "{a}:{b}"),
        };
    }
}

/// The `src`/`dst`/`src,src`/`dst,dst` flag word of a set match.
pub fn set_direction_str(d: SetDirection) -> &'static str {
    match d {
        SetDirection::Src => "src",
        SetDirection::Dst => "dst",
        SetDirection::SrcSrc => "src,src",
        SetDirection::DstDst => "dst,dst",
    }
}

/// Appends the Felix form of one match fragment (no leading or trailing space).
pub fn write_match(out: &mut String, m: &Match) {
    // Writing into a String cannot fail, so the fmt::Result is dropped.
    let _ = match m {
        Match::Protocol { negated, name } => write!(out, "{}-p {name}", bang(*negated)),
        Match::Source { negated, net } => write!(out, "{}--source {net}", bang(*negated)),
        Match::Destination { negated, net } => {
            write!(out, "{}--destination {net}", bang(*negated))
        }
        Match::InInterface { negated, name } => {
            write!(out, "{}--in-interface {name}", bang(*negated))
        }
        Match::OutInterface { negated, name } => {
            write!(out, "{}--out-interface {name}", bang(*negated))
        }
        Match::Set {
            negated,
            name,
            direction,
        } => write!(
            out,
            "-m set {}--match-set {name} {}",
            bang(*negated),
            set_direction_str(*direction)
        ),
        Match::SourcePorts { negated, ports } => {
            let _ = write!(out, "-m multiport {}--source-ports ", bang(*negated));
            write_ports(out, ports);
            Ok(())
        }
        Match::DestinationPorts { negated, ports } => {
            let _ = write!(out, "-m multiport {}--destination-ports ", bang(*negated));
            write_ports(out, ports);
            Ok(())
        }
        Match::Icmp {
            negated,
            icmp_type,
            code,
        } => match code {
            Some(c) => write!(out, "-m icmp {}--icmp-type {icmp_type}/{c}", bang(*negated)),
            None => write!(out, "-m icmp {}--icmp-type {icmp_type}", bang(*negated)),
        },
        Match::Icmp6 {
            negated,
            icmp_type,
            code,
        } => match code {
            Some(c) => write!(
                out,
                "-m icmp6 {}--icmpv6-type {icmp_type}/{c}",
                bang(*negated)
            ),
            None => write!(out, "-m icmp6 {}--icmpv6-type {icmp_type}", bang(*negated)),
        },
        Match::ConntrackState { negated, states } => {
            write!(out, "-m conntrack {}--ctstate {states}", bang(*negated))
        }
        Match::Mark {
            negated,
            value,
            mask,
        } => write!(
            out,
            "-m mark {}--mark {}/{}",
            bang(*negated),
            MarkValue(*value),
            HexMark(*mask)
        ),
        Match::Limit { rate, burst } => match burst {
            Some(b) => write!(out, "-m limit --limit {rate} --limit-burst {b}"),
            None => write!(out, "-m limit --limit {rate}"),
        },
        Match::RpfCheckFailed => {
            out.push_str("-m rpfilter --invert --validmark");
            Ok(())
        }
    };
}

/// Appends the Felix form of an action; returns false (and writes nothing) for
/// [`Action::None`].
pub fn write_action(out: &mut String, a: &Action) -> bool {
    // Writing into a String cannot fail, so the fmt::Result is dropped.
    let _ = match a {
        Action::Accept => write!(out, "--jump ACCEPT"),
        Action::Drop => write!(out, "--jump DROP"),
        Action::Reject => write!(out, "--jump REJECT"),
        Action::Return => write!(out, "--jump RETURN"),
        Action::Jump(t) => write!(out, "--jump {t}"),
        Action::Goto(t) => write!(out, "--goto {t}"),
        Action::SetMark { value, mask } => write!(
            out,
            "--jump MARK --set-mark {}/{}",
            MarkValue(*value),
            HexMark(*mask)
        ),
        Action::SetMaskedMark { value, mask } => write!(
            out,
            "--jump MARK --set-mark {}/{}",
            HexMark(*value),
            HexMark(*mask)
        ),
        Action::Log { prefix, level } => write!(
            out,
            "--jump LOG --log-prefix \"{}\" --log-level {level}",
            escape_log_prefix(prefix)
        ),
        Action::NoTrack => write!(out, "--jump NOTRACK"),
        Action::None => return false,
    };
    true
}

/// The LOG prefix goes inside `"..."` in restore input; a `"` or `\` there would end or escape
/// the quoted word, so they are replaced (Felix does not guard this; validation upstream should
/// reject such prefixes, this is the last line of defence against a broken transaction).
fn escape_log_prefix(prefix: &str) -> std::borrow::Cow<'_, str> {
    if prefix.contains(['"', '\\', '\n']) {
        std::borrow::Cow::Owned(prefix.replace(['"', '\\', '\n'], "_"))
    } else {
        std::borrow::Cow::Borrowed(prefix)
    }
}

/// Appends ` -m comment --comment "<escaped>"` for each free-text comment, then each match,
/// then the action, each preceded by one space. This is everything after the hash fragment.
pub fn write_rule_body(out: &mut String, rule: &Rule) {
    for c in &rule.comments {
        out.push_str(" -m comment --comment \"");
        out.push_str(&escape_comment(c));
        out.push('"');
    }
    for m in &rule.matches {
        out.push(' ');
        write_match(out, m);
    }
    let mark = out.len();
    out.push(' ');
    if !write_action(out, &rule.action) {
        out.truncate(mark);
    }
}

/// Appends the full Felix-form line `<op> <chain> -m comment --comment "cali:<hash>" ...`
/// (without a newline). `op` is `-A`, `-I`, `-D`, or `-I` with a position, e.g. `-I INPUT 1`
/// is `op = "-I"`, `chain = "INPUT 1"`.
pub fn write_rule_line(out: &mut String, op: &str, chain: &str, hash: &str, rule: &Rule) {
    out.push_str(op);
    out.push(' ');
    out.push_str(chain);
    out.push_str(" -m comment --comment \"");
    out.push_str(HASH_COMMENT_PREFIX);
    out.push_str(hash);
    out.push('"');
    write_rule_body(out, rule);
}

/// The Felix-form `-A <chain> -m comment --comment "cali:<hash>" ...` line for one rule.
pub fn rule_line(chain: &str, hash: &str, rule: &Rule) -> String {
    let mut out = String::with_capacity(128);
    write_rule_line(&mut out, "-A", chain, hash, rule);
    out
}

/// The text hashed for a rule: `-A <chain> HASH[ <comments>][ <matches>][ <action>]`.
pub fn write_hash_input(out: &mut String, chain: &str, rule: &Rule) {
    out.push_str("-A ");
    out.push_str(chain);
    out.push(' ');
    out.push_str(HASH_PLACEHOLDER);
    write_rule_body(out, rule);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(matches: Vec<Match>, action: Action, comments: &[&str]) -> Rule {
        Rule {
            matches: matches.into(),
            action,
            comments: comments.iter().map(|&s| s.into()).collect(),
        }
    }

    fn line(r: &Rule) -> String {
        rule_line("cali-x", "H", r)
    }

    #[test]
    fn policy_rule_from_reference_section_10() {
        // The exact Felix form of the first cali-pi rule of the seed sample (Felix
        // felix/rules/policy.go renders it so).
        let r = rule(
            vec![
                Match::Protocol {
                    negated: false,
                    name: "tcp".into(),
                },
                Match::Source {
                    negated: false,
                    net: "192.168.100.0/24".parse().unwrap(),
                },
                Match::DestinationPorts {
                    negated: false,
                    ports: vec![PortSpec::Single(22)].into(),
                },
            ],
            Action::SetMark {
                value: 0x10000,
                mask: 0x10000,
            },
            &["GlobalNetworkPolicy k8s-worker-host ingress"],
        );
        assert_eq!(
            rule_line("cali-pi-gnp/k8s-worker-host", "abc", &r),
            "-A cali-pi-gnp/k8s-worker-host -m comment --comment \"cali:abc\" -m comment \
             --comment \"GlobalNetworkPolicy k8s-worker-host ingress\" -p tcp --source \
             192.168.100.0/24 -m multiport --destination-ports 22 --jump MARK --set-mark \
             0x10000/0x10000"
        );
    }

    #[test]
    fn marks_follow_felix_helpers() {
        let clear = rule(
            vec![],
            Action::SetMark {
                value: 0,
                mask: 0x1b0000,
            },
            &[],
        );
        assert_eq!(
            line(&clear),
            "-A cali-x -m comment --comment \"cali:H\" --jump MARK --set-mark 0/0x1b0000"
        );
        let masked = rule(
            vec![],
            Action::SetMaskedMark {
                value: 0,
                mask: 0x180000,
            },
            &[],
        );
        assert!(line(&masked).ends_with("--jump MARK --set-mark 0x0/0x180000"));
        let test_clear = rule(
            vec![Match::Mark {
                negated: false,
                value: 0,
                mask: 0x20000,
            }],
            Action::Jump("cali-pi-a".into()),
            &[],
        );
        assert!(line(&test_clear).ends_with("-m mark --mark 0/0x20000 --jump cali-pi-a"));
        let any_set = rule(
            vec![Match::Mark {
                negated: true,
                value: 0,
                mask: 0x30000,
            }],
            Action::Return,
            &[],
        );
        assert!(line(&any_set).ends_with("-m mark ! --mark 0/0x30000 --jump RETURN"));
        let set = rule(
            vec![Match::Mark {
                negated: false,
                value: 0x10000,
                mask: 0x10000,
            }],
            Action::Accept,
            &[],
        );
        assert!(line(&set).ends_with("-m mark --mark 0x10000/0x10000 --jump ACCEPT"));
    }

    #[test]
    fn negations_and_all_matches() {
        let r = rule(
            vec![
                Match::Protocol {
                    negated: true,
                    name: "udp".into(),
                },
                Match::Source {
                    negated: true,
                    net: "2001:db8::/32".parse().unwrap(),
                },
                Match::Destination {
                    negated: true,
                    net: "203.0.113.7/32".parse().unwrap(),
                },
                Match::InInterface {
                    negated: false,
                    name: "eth+".into(),
                },
                Match::OutInterface {
                    negated: true,
                    name: "lo".into(),
                },
                Match::Set {
                    negated: true,
                    name: "cali40s:abc".into(),
                    direction: SetDirection::Dst,
                },
                Match::Set {
                    negated: false,
                    name: "cali40n:def".into(),
                    direction: SetDirection::SrcSrc,
                },
                Match::SourcePorts {
                    negated: true,
                    ports: vec![PortSpec::Single(1), PortSpec::Range(80, 90)].into(),
                },
                Match::Icmp {
                    negated: true,
                    icmp_type: 8,
                    code: Some(0),
                },
                Match::Icmp6 {
                    negated: false,
                    icmp_type: 128,
                    code: None,
                },
                Match::ConntrackState {
                    negated: true,
                    states: "DNAT".into(),
                },
                Match::Limit {
                    rate: "10/min".into(),
                    burst: Some(5),
                },
            ],
            Action::Goto("cali-fh-eth0".into()),
            &[],
        );
        assert_eq!(
            line(&r),
            "-A cali-x -m comment --comment \"cali:H\" ! -p udp ! --source 2001:db8::/32 \
             ! --destination 203.0.113.7/32 --in-interface eth+ ! --out-interface lo \
             -m set ! --match-set cali40s:abc dst -m set --match-set cali40n:def src,src \
             -m multiport ! --source-ports 1,80:90 -m icmp ! --icmp-type 8/0 \
             -m icmp6 --icmpv6-type 128 -m conntrack ! --ctstate DNAT \
             -m limit --limit 10/min --limit-burst 5 --goto cali-fh-eth0"
        );
    }

    #[test]
    fn log_action_and_placeholder_rule() {
        let r = rule(
            vec![],
            Action::Log {
                prefix: "calico-packet".into(),
                level: 5,
            },
            &[],
        );
        assert!(line(&r).ends_with("--jump LOG --log-prefix \"calico-packet\" --log-level 5"));
        let empty = rule(vec![], Action::None, &["GlobalNetworkPolicy x ingress"]);
        assert_eq!(
            line(&empty),
            "-A cali-x -m comment --comment \"cali:H\" -m comment --comment \
             \"GlobalNetworkPolicy x ingress\""
        );
    }

    #[test]
    fn comment_escaping_and_truncation() {
        assert_eq!(
            escape_comment("a\"b'c;d(e)é ok_@%+=:,./-"),
            "a_b_c_d_e__ ok_@%+=:,./-"
        );
        let long = "x".repeat(300);
        assert_eq!(escape_comment(&long).len(), 256);
    }

    #[test]
    fn hash_input_uses_placeholder() {
        let r = rule(vec![], Action::Jump("cali-INPUT".into()), &[]);
        let mut s = String::new();
        write_hash_input(&mut s, "INPUT", &r);
        assert_eq!(s, "-A INPUT HASH --jump cali-INPUT");
    }
}
