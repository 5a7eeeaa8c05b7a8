//! The table the kernel holds after it accepted one of our `iptables-restore --noflush` inputs,
//! computed from the table as last read and that input, instead of read back. Pure.
//!
//! Why this is sound: `iptables-restore` commits each `*table … COMMIT` transaction whole or
//! not at all, and a chain we write is declared (`:chain`, which creates or flushes it) and then
//! filled with every rule, so after an accepted restore it holds exactly those rules. Hook rules
//! are inserted at fixed positions and deleted by value, so their outcome does not depend on
//! what another writer did to the rest of the chain. What the kernel holds then differs from the
//! replay only by what someone else changed meanwhile, which is drift like any later change and
//! is found by the next read.
//!
//! Only the verbs our plan writes are replayed (`:`, `-A`, `-I N`, `-D <rule>`, `-X`, `COMMIT`);
//! anything else is an error and the caller reads the table instead. Replayed rules carry the
//! text we wrote, not the kernel's spelling of it: every chain the replay touches is marked
//! `unverified`, so nobody mistakes that text for what the kernel prints.

use super::restore::RestoreScript;
use super::save::{find_hash, LiveChain, LiveRule, LiveTable};

/// The kernel's own chains, which exist as soon as their table does.
const BUILT_IN: [&str; 5] = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"];

/// Why an input could not be replayed (the caller then reads the table from the kernel).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: cannot replay `{text}`: {why}")]
pub struct ReplayError {
    pub line: usize,
    pub text: String,
    pub why: &'static str,
}

/// Apply `input` (one table's restore input, any number of transactions) to `table`.
pub fn replay(table: &mut LiveTable, input: &str) -> Result<(), ReplayError> {
    let mut ignore = |_: &mut LiveChain| {};
    let mut replaying = Replaying::new(table, &mut ignore);
    input.lines().try_for_each(|line| replaying.line(line))?;
    replaying.finish();
    Ok(())
}

/// `replay` of a plan's script, handing each chain to `done` once the input has no more lines
/// for it (the input fills a chain with all its rules together): a caller that packs it there
/// never holds every replayed rule's text at once, nor the script's. A chain the input comes
/// back to is unpacked for it and handed over again.
pub fn replay_with(
    table: &mut LiveTable,
    input: &RestoreScript,
    done: &mut dyn FnMut(&mut LiveChain),
) -> Result<(), ReplayError> {
    let mut replaying = Replaying::new(table, done);
    let mut failed = None;
    // The script hands over whole lines.
    input.write_out(
        &mut |text| match text.lines().try_for_each(|l| replaying.line(l)) {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        },
    );
    if let Some(e) = failed {
        return Err(e);
    }
    replaying.finish();
    Ok(())
}

/// A replay under way: the input a line at a time.
struct Replaying<'a> {
    table: &'a mut LiveTable,
    done: &'a mut dyn FnMut(&mut LiveChain),
    /// The chain the last rule line was for.
    filling: Option<String>,
    /// Lines so far.
    lines: usize,
}

impl<'a> Replaying<'a> {
    fn new(table: &'a mut LiveTable, done: &'a mut dyn FnMut(&mut LiveChain)) -> Self {
        Replaying {
            table,
            done,
            filling: None,
            lines: 0,
        }
    }

    /// Hands the chain being filled to `done`.
    fn complete(&mut self) {
        if let Some(chain) = self
            .filling
            .take()
            .and_then(|name| self.table.chains.get_mut(&name))
        {
            (self.done)(chain);
        }
    }

    fn finish(mut self) {
        self.complete();
    }

    fn line(&mut self, line: &str) -> Result<(), ReplayError> {
        self.lines += 1;
        let number = self.lines;
        let fail = |why| ReplayError {
            line: number,
            text: line.chars().take(120).collect(),
            why,
        };
        if line == "COMMIT" {
            self.complete();
            return Ok(());
        }
        if line.is_empty() || line.starts_with('*') {
            return Ok(());
        }
        let table = &mut *self.table;
        if let Some(decl) = line.strip_prefix(':') {
            let name = decl
                .split_whitespace()
                .next()
                .ok_or_else(|| fail("a chain line without a name"))?;
            let chain = table
                .chains
                .entry(name.to_string())
                .or_insert_with(|| LiveChain {
                    name: name.to_string(),
                    ..LiveChain::default()
                });
            // Declaring a built-in chain only sets its policy, which we never write.
            if chain.policy.is_none() {
                chain.rules.clear();
                chain.packed = None;
            }
            chain.unverified = true;
            return Ok(());
        }
        let mut words = line.splitn(3, ' ');
        let verb = words.next().unwrap_or_default();
        let name = words.next().ok_or_else(|| fail("no chain"))?;
        let rest = words.next().unwrap_or_default();
        if verb == "-X" {
            if self.filling.as_deref() == Some(name) {
                self.filling = None;
            }
            self.table.chains.remove(name);
            return Ok(());
        }
        if self.filling.as_deref() != Some(name) {
            self.complete();
            self.filling = Some(name.to_string());
        }
        let table = &mut *self.table;
        if !table.chains.contains_key(name) && BUILT_IN.contains(&name) {
            // A table nothing was loaded into yet (nft creates it on first write) reads as
            // empty; the kernel's chains appear with it, with the default policy.
            table.chains.insert(
                name.to_string(),
                LiveChain {
                    name: name.to_string(),
                    policy: Some("ACCEPT".to_string()),
                    ..LiveChain::default()
                },
            );
        }
        let chain = table
            .chains
            .get_mut(name)
            .ok_or_else(|| fail("a chain the table does not hold"))?;
        chain.unverified = true;
        // A plan declares every chain of ours it fills; a packed chain edited in place is
        // unpacked for it.
        chain.unpack();
        match verb {
            "-A" => chain.rules.push(rule(rest)),
            "-I" => {
                let (position, text) = rest.split_once(' ').ok_or_else(|| fail("no position"))?;
                let at: usize = position.parse().map_err(|_| fail("a bad position"))?;
                if at == 0 || at > chain.rules.len() + 1 {
                    return Err(fail("a position past the chain's end"));
                }
                chain.rules.insert(at - 1, rule(text));
            }
            "-D" => {
                let at = chain
                    .rules
                    .iter()
                    .position(|r| r.text == rest)
                    .ok_or_else(|| fail("a rule the chain does not hold"))?;
                chain.rules.remove(at);
            }
            _ => return Err(fail("a verb the plan never writes")),
        }
        Ok(())
    }
}

fn rule(text: &str) -> LiveRule {
    LiveRule {
        hash: find_hash(text).map(str::to_string),
        text: text.to_string(),
        ..LiveRule::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ruleset::packed::Targets;
    use crate::ruleset::save::parse_save;

    fn table(save: &str) -> LiveTable {
        parse_save(save).expect("test save parses")
    }

    fn texts(t: &LiveTable, chain: &str) -> Vec<String> {
        t.chains[chain]
            .rules
            .iter()
            .map(|r| r.text.clone())
            .collect()
    }

    const HOOK: &str = r#"-m comment --comment "cali:Cz_u1IQiXIMmKD4c" -j cali-INPUT"#;

    #[test]
    fn new_chains_are_created_and_filled_and_hooks_go_above_foreign_rules() {
        let mut t = table(
            "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j f2b-sshd\n:f2b-sshd - [0:0]\nCOMMIT\n",
        );
        let input = format!(
            "*filter\n:cali-INPUT - [0:0]\n-A cali-INPUT -m comment --comment \"cali:aaaa\" -j ACCEPT\n-I INPUT 1 {HOOK}\nCOMMIT\n"
        );
        replay(&mut t, &input).unwrap();
        assert_eq!(texts(&t, "INPUT"), [HOOK, "-j f2b-sshd"]);
        assert_eq!(
            t.chains["INPUT"].rules[0].hash.as_deref(),
            Some("Cz_u1IQiXIMmKD4c")
        );
        assert_eq!(t.chains["INPUT"].policy.as_deref(), Some("ACCEPT"));
        let ours = &t.chains["cali-INPUT"];
        assert!(ours.unverified && t.chains["INPUT"].unverified);
        assert!(
            !t.chains["f2b-sshd"].unverified,
            "untouched chains stay as read"
        );
        assert_eq!(ours.rules[0].hash.as_deref(), Some("aaaa"));
    }

    /// Each filled chain is handed over once the input has moved on; one packed there and
    /// filled again later is unpacked first, so nothing is lost.
    #[test]
    fn filled_chains_are_handed_over_and_may_be_packed_there() {
        let mut t = table("*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n");
        let rule = |h: &str, target: &str| format!("-m comment --comment \"cali:{h}\" -j {target}");
        let (a1, a2, b1) = (
            rule("aaaaaaaaaaaaaaaa", "ACCEPT"),
            rule("bbbbbbbbbbbbbbbb", "DROP"),
            rule("cccccccccccccccc", "RETURN"),
        );
        let input = format!(
            "*filter\n:cali-a - [0:0]\n:cali-b - [0:0]\n-A cali-a {a1}\n-A cali-b {b1}\n\
             -A cali-a {a2}\n-I INPUT 1 {HOOK}\nCOMMIT\n"
        );
        let mut handed = Vec::new();
        let mut targets = Targets::default();
        replay_with(&mut t, &RestoreScript::from_text(input), &mut |chain| {
            handed.push((chain.name.clone(), chain.len()));
            chain.pack(&mut targets);
        })
        .unwrap();
        let names: Vec<(&str, usize)> = handed.iter().map(|(n, l)| (n.as_str(), *l)).collect();
        assert_eq!(
            names,
            [("cali-a", 1), ("cali-b", 1), ("cali-a", 2), ("INPUT", 1)]
        );
        let a = &t.chains["cali-a"];
        assert!(a.packed.is_some() && a.unverified);
        let a_texts: Vec<String> = a.full_rules().iter().map(|r| r.text.clone()).collect();
        assert_eq!(a_texts, [a1, a2]);
    }

    #[test]
    fn a_declared_chain_is_flushed_a_deleted_rule_and_chain_are_gone() {
        let mut t = table(
            "*filter\n:INPUT ACCEPT [0:0]\n:cali-old - [0:0]\n:cali-x - [0:0]\n\
             -A INPUT -m comment --comment \"cali:h1\" -j cali-old\n-A INPUT -j DROP\n\
             -A cali-old -j ACCEPT\n-A cali-x -j DROP\nCOMMIT\n",
        );
        let input = "*filter\n:cali-x - [0:0]\n:cali-old - [0:0]\n\
                     -A cali-x -j RETURN\n\
                     -D INPUT -m comment --comment \"cali:h1\" -j cali-old\nCOMMIT\n\
                     *filter\n:cali-old - [0:0]\n-X cali-old\nCOMMIT\n";
        replay(&mut t, input).unwrap();
        assert_eq!(texts(&t, "INPUT"), ["-j DROP"]);
        assert_eq!(texts(&t, "cali-x"), ["-j RETURN"]);
        assert!(!t.chains.contains_key("cali-old"));
    }

    /// The daemon replays onto a state whose chains of ours are packed: a declared chain is
    /// refilled, one edited in place is unpacked first, one not written stays packed.
    #[test]
    fn packed_chains_are_refilled_edited_or_left_packed() {
        const A: &str = r#"-m comment --comment "cali:aaaaaaaaaaaaaaaa" -j ACCEPT"#;
        const B: &str = r#"-m comment --comment "cali:bbbbbbbbbbbbbbbb" -j DROP"#;
        let mut t = table(&format!(
            "*filter\n:cali-a - [0:0]\n:cali-b - [0:0]\n:cali-c - [0:0]\n\
             -A cali-a {A}\n-A cali-b {A}\n-A cali-c {A}\n-A cali-c {B}\nCOMMIT\n"
        ));
        for chain in t.chains.values_mut() {
            chain.pack(&mut Targets::default());
            assert!(chain.packed.is_some() && chain.rules.is_empty());
        }
        let input = format!("*filter\n:cali-a - [0:0]\n-A cali-a {B}\n-D cali-c {A}\nCOMMIT\n");
        replay(&mut t, &input).unwrap();
        assert!(t.chains["cali-a"].packed.is_none());
        assert_eq!(texts(&t, "cali-a"), [B]);
        assert!(t.chains["cali-c"].packed.is_none());
        assert_eq!(texts(&t, "cali-c"), [B]);
        let b = &t.chains["cali-b"];
        assert!(b.packed.is_some() && !b.unverified);
        assert_eq!(b.full_rules()[0].text, A);
    }

    #[test]
    fn a_table_never_loaded_gets_the_kernel_chain_it_is_hooked_into() {
        let mut t = LiveTable::default();
        replay(
            &mut t,
            &format!("*filter\n:cali-INPUT - [0:0]\n-I INPUT 1 {HOOK}\nCOMMIT\n"),
        )
        .unwrap();
        assert_eq!(texts(&t, "INPUT"), [HOOK]);
        assert_eq!(t.chains["INPUT"].policy.as_deref(), Some("ACCEPT"));
    }

    #[test]
    fn what_the_plan_never_writes_is_refused_not_guessed() {
        for (input, why) in [
            (
                "*filter\n-A cali-nope -j ACCEPT\nCOMMIT\n",
                "a chain the table does not hold",
            ),
            (
                "*filter\n-D INPUT -j ACCEPT\nCOMMIT\n",
                "a rule the chain does not hold",
            ),
            (
                "*filter\n-I INPUT 9 -j ACCEPT\nCOMMIT\n",
                "a position past the chain's end",
            ),
            (
                "*filter\n-R INPUT 1 -j ACCEPT\nCOMMIT\n",
                "a verb the plan never writes",
            ),
        ] {
            let mut t = table("*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n");
            let err = replay(&mut t, input).unwrap_err();
            assert_eq!((err.line, err.why), (2, why), "{input}");
        }
    }

    #[test]
    fn a_plans_script_replays_as_its_text_does_across_chunks() {
        use crate::ruleset::restore::filled_chain;
        use crate::ruleset::Rule;
        let (_, mut b) = filled_chain(3000);
        b.insert(
            "INPUT",
            1,
            "hhhhhhhhhhhhhhhh",
            &Rule::jump_to("cali-po-big"),
        );
        b.commit();
        let script = b.into_script();
        let before = table("*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n");
        let (mut from_script, mut from_text) = (before.clone(), before);
        let mut handed = Vec::new();
        replay_with(&mut from_script, &script, &mut |chain| {
            handed.push((chain.name.clone(), chain.len()))
        })
        .unwrap();
        replay(&mut from_text, &script.text()).unwrap();
        assert_eq!(from_script, from_text);
        assert_eq!(from_script.chains["cali-po-big"].len(), 3000);
        assert_eq!(
            handed,
            [("cali-po-big".to_string(), 3000), ("INPUT".to_string(), 1)]
        );
    }
}
