//! `explain --live`: the kernel's tables as `iptables-save` prints them (every rule, ours and
//! foreign, and the kernel chains' policies) turned into a `Ruleset` the simulator can walk.
//! Pure text parsing. Understands the matches and targets hostfw writes plus the common
//! `-m tcp/udp` port options; a rule using anything else is kept in place as a rule that never
//! matches and is listed in `LiveRuleset::unknown`, so indexes stay right and nothing unknown
//! is silently given a meaning.

use super::Verdict;
use crate::ruleset::{
    Action, Family, HookPosition, HookRule, Ipset, IpsetType, LiveIpsets, Match, PortSpec, Rule,
    Ruleset, SetDirection, Table, TableName,
};
use std::collections::BTreeMap;

/// A kernel snapshot ready for the simulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveRuleset {
    pub ruleset: Ruleset,
    /// Policies of the kernel chains (`:INPUT ACCEPT`), by table and chain.
    pub policies: BTreeMap<(TableName, String), Verdict>,
    /// Rules that could not be understood (`table chain index: text`): they never match.
    pub unknown: Vec<String>,
}

/// A rule the simulator can never match: `(mark & 0) != 0` is false for every packet.
fn never() -> Vec<Match> {
    vec![Match::Mark {
        negated: true,
        value: 0,
        mask: 0,
    }]
}

/// Build the live ruleset of `family` from one `iptables-save -t T` text per table and our
/// ipsets (`ipset save`, already parsed).
pub fn parse(family: Family, saves: &[(TableName, String)], ipsets: &LiveIpsets) -> LiveRuleset {
    let mut policies = BTreeMap::new();
    let mut unknown = Vec::new();
    let mut tables = Vec::new();
    for name in TableName::ALL {
        let text = saves
            .iter()
            .find(|(t, _)| *t == name)
            .map_or("", |(_, s)| s.as_str());
        tables.push(parse_table(name, text, &mut policies, &mut unknown));
    }
    let sets = ipsets
        .sets
        .values()
        .filter(|s| s.family.is_none_or(|f| f == family))
        .map(|s| {
            (
                s.name.clone(),
                Ipset {
                    name: s.name.clone(),
                    set_type: s.set_type.unwrap_or(IpsetType::HashNet),
                    family,
                    max_elements: s.max_elements.unwrap_or(0),
                    members: s.members.clone(),
                },
            )
        })
        .collect();
    LiveRuleset {
        ruleset: Ruleset {
            family,
            tables,
            ipsets: sets,
        },
        policies,
        unknown,
    }
}

fn parse_table(
    name: TableName,
    text: &str,
    policies: &mut BTreeMap<(TableName, String), Verdict>,
    unknown: &mut Vec<String>,
) -> Table {
    let mut user: BTreeMap<String, Vec<Rule>> = BTreeMap::new();
    let mut builtin: Vec<String> = Vec::new();
    let mut hooks = Vec::new();
    let mut lines: Vec<(String, Vec<String>)> = Vec::new();
    for line in text.lines() {
        if let Some(decl) = line.strip_prefix(':') {
            let mut w = decl.split_whitespace();
            let (Some(chain), Some(policy)) = (w.next(), w.next()) else {
                continue;
            };
            if policy == "-" {
                user.entry(chain.to_string()).or_default();
            } else {
                builtin.push(chain.to_string());
                let verdict = if policy == "DROP" {
                    Verdict::Drop
                } else {
                    Verdict::Accept
                };
                policies.insert((name, chain.to_string()), verdict);
            }
        } else if line.starts_with("-A ") {
            let words = tokens(line);
            if let Some(chain) = words.get(1) {
                lines.push((chain.clone(), words));
            }
        }
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (chain, words) in lines {
        let index = counts.entry(chain.clone()).or_default();
        let rule = parse_rule(&words[2..], &user).unwrap_or_else(|| {
            unknown.push(format!(
                "{} {chain} {index}: {}",
                name.as_str(),
                words[2..].join(" ")
            ));
            Rule {
                matches: never().into(),
                action: Action::None,
                comments: Default::default(),
            }
        });
        *index += 1;
        if builtin.contains(&chain) {
            hooks.push(HookRule {
                kernel_chain: chain,
                position: HookPosition::Append,
                rule,
            });
        } else {
            user.entry(chain).or_default().push(rule);
        }
    }
    Table {
        name,
        chains: user
            .into_iter()
            .map(|(n, rules)| {
                (
                    n.clone(),
                    crate::ruleset::Chain {
                        name: n,
                        rules: rules.into(),
                    },
                )
            })
            .collect(),
        hooks,
    }
}

/// Split a save line into words; `"..."` is one word (backslash escapes the next character).
fn tokens(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    let mut quoted = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if in_quotes => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '"' => {
                in_quotes = !in_quotes;
                quoted = true;
            }
            c if c.is_whitespace() && !in_quotes => {
                if !cur.is_empty() || quoted {
                    out.push(std::mem::take(&mut cur));
                }
                quoted = false;
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() || quoted {
        out.push(cur);
    }
    out
}

fn ports(list: &str) -> Option<Vec<PortSpec>> {
    list.split(',')
        .map(|p| match p.split_once(':') {
            Some((a, b)) => Some(PortSpec::Range(a.parse().ok()?, b.parse().ok()?)),
            None => Some(PortSpec::Single(p.parse().ok()?)),
        })
        .collect()
}

fn mark(text: &str) -> Option<(u32, u32)> {
    let num = |s: &str| match s.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    };
    match text.split_once('/') {
        Some((v, m)) => Some((num(v)?, num(m)?)),
        None => Some((num(text)?, u32::MAX)),
    }
}

fn icmp_type(text: &str) -> Option<(u8, Option<u8>)> {
    match text.split_once('/') {
        Some((t, c)) => Some((t.parse().ok()?, Some(c.parse().ok()?))),
        None => Some((text.parse().ok()?, None)),
    }
}

fn net(text: &str) -> Option<ipnet::IpNet> {
    text.parse().ok().or_else(|| {
        text.parse::<std::net::IpAddr>()
            .ok()
            .map(ipnet::IpNet::from)
    })
}

/// One rule's words after `-A CHAIN`; `None` when something is not understood.
fn parse_rule(words: &[String], user: &BTreeMap<String, Vec<Rule>>) -> Option<Rule> {
    let mut matches = Vec::new();
    let mut comments = Vec::new();
    let mut action = Action::None;
    let mut negated = false;
    let mut i = 0;
    let next = |i: &mut usize| -> Option<&str> {
        *i += 1;
        words.get(*i).map(String::as_str)
    };
    while i < words.len() {
        let w = words[i].as_str();
        let neg = std::mem::take(&mut negated);
        match w {
            "!" => negated = true,
            "-s" | "--source" => matches.push(Match::Source {
                negated: neg,
                net: net(next(&mut i)?)?,
            }),
            "-d" | "--destination" => matches.push(Match::Destination {
                negated: neg,
                net: net(next(&mut i)?)?,
            }),
            "-i" | "--in-interface" => matches.push(Match::InInterface {
                negated: neg,
                name: next(&mut i)?.into(),
            }),
            "-o" | "--out-interface" => matches.push(Match::OutInterface {
                negated: neg,
                name: next(&mut i)?.into(),
            }),
            "-p" | "--protocol" => matches.push(Match::Protocol {
                negated: neg,
                name: next(&mut i)?.into(),
            }),
            // Modules carry no meaning of their own here; their options do.
            "-m" | "--match" => {
                let module = next(&mut i)?;
                // hostfw writes rpfilter only inverted (the raw RPF drop); anything else is
                // not a rule of ours.
                if module == "rpfilter" {
                    if !words[i..].iter().any(|w| w == "--invert") {
                        return None;
                    }
                    matches.push(Match::RpfCheckFailed);
                } else if !matches!(
                    module,
                    "comment"
                        | "multiport"
                        | "tcp"
                        | "udp"
                        | "set"
                        | "icmp"
                        | "icmp6"
                        | "conntrack"
                        | "mark"
                        | "limit"
                ) {
                    return None;
                }
            }
            "--validmark" | "--invert" => {}
            "--comment" => {
                let c = next(&mut i)?;
                if !c.starts_with(crate::ruleset::felix::HASH_COMMENT_PREFIX) {
                    comments.push(c.into());
                }
            }
            "--dports" | "--destination-ports" | "--dport" | "--destination-port" => {
                matches.push(Match::DestinationPorts {
                    negated: neg,
                    ports: ports(next(&mut i)?)?.into(),
                })
            }
            "--sports" | "--source-ports" | "--sport" | "--source-port" => {
                matches.push(Match::SourcePorts {
                    negated: neg,
                    ports: ports(next(&mut i)?)?.into(),
                })
            }
            "--match-set" => {
                let name = next(&mut i)?.to_string();
                let direction = match next(&mut i)? {
                    "src" => SetDirection::Src,
                    "dst" => SetDirection::Dst,
                    "src,src" => SetDirection::SrcSrc,
                    "dst,dst" => SetDirection::DstDst,
                    _ => return None,
                };
                matches.push(Match::Set {
                    negated: neg,
                    name: name.into(),
                    direction,
                });
            }
            "--icmp-type" => {
                let (t, code) = icmp_type(next(&mut i)?)?;
                matches.push(Match::Icmp {
                    negated: neg,
                    icmp_type: t,
                    code,
                });
            }
            "--icmpv6-type" => {
                let (t, code) = icmp_type(next(&mut i)?)?;
                matches.push(Match::Icmp6 {
                    negated: neg,
                    icmp_type: t,
                    code,
                });
            }
            "--ctstate" => matches.push(Match::ConntrackState {
                negated: neg,
                states: next(&mut i)?.into(),
            }),
            "--mark" => {
                let (value, mask) = mark(next(&mut i)?)?;
                matches.push(Match::Mark {
                    negated: neg,
                    value,
                    mask,
                });
            }
            "--limit" => matches.push(Match::Limit {
                rate: next(&mut i)?.into(),
                burst: None,
            }),
            "--limit-burst" => {
                let b: u32 = next(&mut i)?.parse().ok()?;
                if let Some(Match::Limit { burst, .. }) = matches.last_mut() {
                    *burst = Some(b);
                }
            }
            "-j" | "--jump" => {
                let target = next(&mut i)?;
                action = target_action(target, &words[i + 1..], user)?;
                // Target options were consumed by `target_action`.
                break;
            }
            "-g" | "--goto" => action = Action::Goto(next(&mut i)?.into()),
            _ => return None,
        }
        i += 1;
    }
    Some(Rule {
        matches: matches.into(),
        action,
        comments: comments.into(),
    })
}

/// The action of `-j TARGET [options]`.
fn target_action(
    target: &str,
    opts: &[String],
    user: &BTreeMap<String, Vec<Rule>>,
) -> Option<Action> {
    let opt = |name: &str| {
        opts.iter()
            .position(|w| w == name)
            .and_then(|p| opts.get(p + 1))
            .map(String::as_str)
    };
    Some(match target {
        "ACCEPT" => Action::Accept,
        "DROP" => Action::Drop,
        "REJECT" => Action::Reject,
        "RETURN" => Action::Return,
        "NOTRACK" => Action::NoTrack,
        "CT" if opts.iter().any(|w| w == "--notrack") => Action::NoTrack,
        "MARK" => {
            let (value, mask) = mark(opt("--set-xmark").or_else(|| opt("--set-mark"))?)?;
            Action::SetMark { value, mask }
        }
        "LOG" => Action::Log {
            prefix: opt("--log-prefix").unwrap_or("").into(),
            level: opt("--log-level").and_then(|l| l.parse().ok()).unwrap_or(4),
        },
        chain if user.contains_key(chain) => Action::Jump(chain.into()),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAVE: &str = "*filter\n\
        :INPUT DROP [0:0]\n\
        :FORWARD ACCEPT [0:0]\n\
        :cali-INPUT - [0:0]\n\
        :cali-pi-gnp/web - [0:0]\n\
        -A INPUT -m comment --comment \"cali:Cz_u1IQiXIMmKD4c\" -j cali-INPUT\n\
        -A INPUT -p tcp -m tcp --dport 2222 -j ACCEPT\n\
        -A INPUT -m recent --name x -j DROP\n\
        -A cali-INPUT -i eth+ -m comment --comment \"cali:a\" -g cali-pi-gnp/web\n\
        -A cali-pi-gnp/web -s 198.51.100.0/25 -p tcp -m comment --comment \"cali:c1\" -m comment --comment \"GlobalNetworkPolicy web ingress\" -m set --match-set cali40s:fixture src -m multiport --dports 22,80:90 -j MARK --set-xmark 0x10000/0x10000\n\
        -A cali-pi-gnp/web ! -d 203.0.113.0/24 -p udp -m comment --comment \"cali:c3\" -m set ! --match-set cali40s:fixture dst -m multiport ! --sports 53 -j MARK --set-xmark 0x0/0x180000\n\
        -A cali-pi-gnp/web -p icmp -m icmp --icmp-type 8/0 -m limit --limit 10/min --limit-burst 5 -j LOG --log-prefix \"calico-packet: \" --log-level 5\n\
        COMMIT\n";

    #[test]
    fn parses_our_rules_foreign_rules_and_policies() {
        let live = parse(
            Family::V4,
            &[(TableName::Filter, SAVE.to_string())],
            &LiveIpsets::default(),
        );
        let filter = &live.ruleset.tables[2];
        assert_eq!(filter.name, TableName::Filter);
        assert_eq!(
            live.policies.get(&(TableName::Filter, "INPUT".to_string())),
            Some(&Verdict::Drop)
        );
        assert_eq!(filter.hooks.len(), 3);
        assert_eq!(
            filter.hooks[1].rule.matches,
            vec![
                Match::Protocol {
                    negated: false,
                    name: "tcp".into()
                },
                Match::DestinationPorts {
                    negated: false,
                    ports: vec![PortSpec::Single(2222)].into()
                }
            ]
            .into()
        );
        // `-m recent` is unknown: kept as a never-matching placeholder and reported.
        assert_eq!(filter.hooks[2].rule.matches, never().into());
        assert_eq!(live.unknown.len(), 1, "{:?}", live.unknown);
        assert!(live.unknown[0].starts_with("filter INPUT 2:"));
        assert_eq!(
            filter.chains["cali-INPUT"].rules[0].action,
            Action::Goto("cali-pi-gnp/web".into())
        );
        let web = &filter.chains["cali-pi-gnp/web"].rules;
        assert_eq!(
            web[0].comments,
            vec!["GlobalNetworkPolicy web ingress".into()].into()
        );
        assert_eq!(
            web[0].action,
            Action::SetMark {
                value: 0x10000,
                mask: 0x10000
            }
        );
        assert!(web[0].matches.contains(&Match::DestinationPorts {
            negated: false,
            ports: vec![PortSpec::Single(22), PortSpec::Range(80, 90)].into()
        }));
        assert!(web[1].matches.contains(&Match::Destination {
            negated: true,
            net: "203.0.113.0/24".parse().unwrap()
        }));
        assert!(web[1].matches.contains(&Match::Set {
            negated: true,
            name: "cali40s:fixture".into(),
            direction: SetDirection::Dst
        }));
        assert!(web[1].matches.contains(&Match::SourcePorts {
            negated: true,
            ports: vec![PortSpec::Single(53)].into()
        }));
        assert_eq!(
            web[2].action,
            Action::Log {
                prefix: "calico-packet: ".into(),
                level: 5
            }
        );
        assert!(web[2].matches.contains(&Match::Limit {
            rate: "10/min".into(),
            burst: Some(5)
        }));
    }

    #[test]
    fn quoted_words() {
        assert_eq!(
            tokens(r#"-A X -m comment --comment "a \"b\" c" -j LOG --log-prefix """#),
            vec![
                "-A",
                "X",
                "-m",
                "comment",
                "--comment",
                "a \"b\" c",
                "-j",
                "LOG",
                "--log-prefix",
                ""
            ]
        );
    }
}
