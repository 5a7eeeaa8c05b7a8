//! Times the pure ruleset path at 100,000 rules (10,000 policy chains of 10 rules): hashing,
//! full restore text, save parsing, and planning from empty and from in-sync. Run with
//! `cargo bench --bench ruleset`; prints one line per step.

use hostfw::ruleset::felix::rule_line;
use hostfw::ruleset::hash::{rule_hashes, table_hashes};
use hostfw::ruleset::restore::table_restore;
use hostfw::ruleset::{
    parse_save, plan, Action, Chain, Family, HookPosition, HookRule, LiveIpsets, LiveState, Match,
    PlanOptions, PortSpec, Rule, Ruleset, SetDirection, Table, TableName,
};
use std::collections::BTreeMap;
use std::time::Instant;

const CHAINS: usize = 10_000;
const RULES_PER_CHAIN: usize = 10;

fn big_table() -> Table {
    let mut chains = BTreeMap::new();
    let mut dispatch = Vec::with_capacity(CHAINS);
    for c in 0..CHAINS {
        let name = format!("cali-pi-gnp/policy-{c:05}");
        let rules = (0..RULES_PER_CHAIN)
            .map(|r| Rule {
                matches: vec![
                    Match::Protocol {
                        negated: false,
                        name: "tcp".into(),
                    },
                    Match::Source {
                        negated: false,
                        net: format!("198.51.100.{}/32", r % 250).parse().unwrap(),
                    },
                    Match::Set {
                        negated: false,
                        name: format!("cali40s:set-{c}").into(),
                        direction: SetDirection::Src,
                    },
                    Match::DestinationPorts {
                        negated: false,
                        ports: vec![PortSpec::Single(22), PortSpec::Range(8000, 8000 + r as u16)]
                            .into(),
                    },
                ]
                .into(),
                action: Action::SetMark {
                    value: 0x10000,
                    mask: 0x10000,
                },
                comments: if r == 0 {
                    vec![format!("GlobalNetworkPolicy policy-{c:05} ingress").into()].into()
                } else {
                    vec![].into()
                },
            })
            .collect();
        dispatch.push(Rule {
            matches: vec![Match::Mark {
                negated: false,
                value: 0,
                mask: 0x20000,
            }]
            .into(),
            action: Action::Jump(name.as_str().into()),
            comments: vec![].into(),
        });
        chains.insert(name.clone(), Chain { name, rules });
    }
    chains.insert(
        "cali-INPUT".into(),
        Chain {
            name: "cali-INPUT".into(),
            rules: dispatch.into(),
        },
    );
    Table {
        name: TableName::Filter,
        chains,
        hooks: vec![HookRule {
            kernel_chain: "INPUT".into(),
            position: HookPosition::Insert,
            rule: Rule {
                matches: vec![].into(),
                action: Action::Jump("cali-INPUT".into()),
                comments: vec![].into(),
            },
        }],
    }
}

/// Save-like text of the table as the kernel would list it (Felix form stands in for the save
/// form: the parser only looks at chain names and hashes).
fn save_text(t: &Table) -> String {
    let mut out = String::from("*filter\n:INPUT ACCEPT [0:0]\n");
    for name in t.chains.keys() {
        out.push_str(&format!(":{name} - [0:0]\n"));
    }
    let hook = &t.hooks[0].rule;
    let h = &rule_hashes("INPUT", [hook])[0];
    out.push_str(&rule_line("INPUT", h, hook));
    out.push('\n');
    for c in t.chains.values() {
        for (r, h) in c.rules.iter().zip(rule_hashes(&c.name, &c.rules)) {
            out.push_str(&rule_line(&c.name, &h, r));
            out.push('\n');
        }
    }
    out.push_str("COMMIT\n");
    out
}

fn time<T>(label: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let v = f();
    println!(
        "{label:<40} {:>8.1} ms",
        start.elapsed().as_secs_f64() * 1000.0
    );
    v
}

fn main() {
    let table = time("build 100k-rule table", big_table);
    let rules: usize = table.chains.values().map(|c| c.rules.len()).sum();
    println!("rules: {rules}");
    let hashes = time("hash all chains", || table_hashes(&table));
    assert_eq!(hashes.len(), CHAINS + 1);
    let text = time("full restore text", || table_restore(&table));
    println!("restore text: {} bytes", text.len());
    let save = save_text(&table);
    let live_table = time("parse save (100k rules)", || parse_save(&save).unwrap());
    let desired = vec![Ruleset {
        family: Family::V4,
        tables: vec![table],
        ipsets: BTreeMap::new(),
    }];
    let empty_live = vec![LiveState {
        family: Family::V4,
        tables: BTreeMap::new(),
    }];
    let plan_against = |live: &[LiveState]| {
        plan(
            &desired,
            live,
            &LiveIpsets::default(),
            PlanOptions::default(),
        )
    };
    let first = time("plan from empty", || plan_against(&empty_live));
    assert!(!first.is_empty());
    let live = vec![LiveState {
        family: Family::V4,
        tables: [(TableName::Filter, live_table)].into_iter().collect(),
    }];
    let in_sync = time("plan in sync", || plan_against(&live));
    assert!(in_sync.is_empty());
}
