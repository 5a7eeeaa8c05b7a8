//! `iptables-restore` input: the full desired state of a table (what `hostfw render` prints and
//! golden files hold) and the line-level builder the plan uses for incremental transactions.
//! Pure text; never runs `iptables-restore` (that is `dataplane`).
//!
//! Full-table form (decided here, relied on by golden files):
//! * `*<table>`, then `:<chain> - [0:0]` for every chain we own, sorted by name;
//! * NO policy lines for built-in chains: this text is meant for `iptables-restore --noflush`
//!   (and `--test`), and a `:INPUT ACCEPT [0:0]` line would silently reset a policy the host
//!   admin chose;
//! * hook rules, kernel chains in netfilter order (PREROUTING, INPUT, FORWARD, OUTPUT,
//!   POSTROUTING): insert-mode hooks as `-I <CHAIN> <n>` with n = 1, 2, ... so they end up at the
//!   top in order, append-mode hooks as `-A`, then the always-appended ones as `-A`;
//! * our chains' rules as `-A`, chains sorted by name, rules in order;
//! * `COMMIT`.
//!
//! Output is a deterministic function of the input. Every line is appended to one `String`, so
//! building is linear in the output size. A plan's input is kept as a `RestoreScript` instead:
//! the plan's own lines as text, and each chain it fills as that chain's shared rules, written
//! out only as the input is fed to the tool.

use super::felix::write_rule_line;
use super::hash::{hook_hashes, rule_hashes};
use super::memo::ChainHashes;
use super::{Rule, Rules, Ruleset, Table, TableName};
use std::fmt::{self, Write as _};
use std::sync::Arc;

/// Rank of a kernel chain in packet-path order, so hook lines come out in a stable,
/// readable order. Unknown names sort after the built-ins (by name, via the caller's tie-break).
pub fn kernel_chain_rank(name: &str) -> u8 {
    match name {
        "PREROUTING" => 0,
        "INPUT" => 1,
        "FORWARD" => 2,
        "OUTPUT" => 3,
        "POSTROUTING" => 4,
        _ => 5,
    }
}

/// Incremental builder for one or more `iptables-restore` transactions. Each method appends one
/// line; nothing is validated beyond what the types guarantee.
#[derive(Debug, Default, Clone)]
pub struct RestoreBuilder {
    /// Text since the last chain filled by `fill`.
    buf: String,
    /// Everything before `buf`.
    pieces: Vec<Piece>,
    /// Whether anything besides the `*table` line was written since `start`.
    dirty: bool,
    /// Where the current transaction's `*table` line starts, to drop empty transactions.
    txn_start: usize,
}

impl RestoreBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty builder with room for `bytes` of text.
    pub fn with_capacity(bytes: usize) -> Self {
        RestoreBuilder {
            buf: String::with_capacity(bytes),
            ..Self::default()
        }
    }

    /// Opens a transaction: `*<table>`.
    pub fn start(&mut self, table: TableName) {
        self.txn_start = self.buf.len();
        self.dirty = false;
        self.buf.push('*');
        self.buf.push_str(table.as_str());
        self.buf.push('\n');
    }

    /// Closes the transaction with `COMMIT`, or erases it when nothing was written (Felix
    /// skips empty transactions too).
    pub fn commit(&mut self) {
        if self.dirty {
            self.buf.push_str("COMMIT\n");
        } else {
            self.buf.truncate(self.txn_start);
        }
        self.dirty = false;
    }

    /// `:<chain> - [0:0]`: with `--noflush` this creates the chain, or flushes it if it exists.
    pub fn chain_line(&mut self, chain: &str) {
        self.dirty = true;
        self.buf.push(':');
        self.buf.push_str(chain);
        self.buf.push_str(" - [0:0]\n");
    }

    /// `-A <chain> <rule>` in Felix form with our hash comment.
    pub fn append(&mut self, chain: &str, hash: &str, rule: &Rule) {
        self.dirty = true;
        write_rule_line(&mut self.buf, "-A", chain, hash, rule);
        self.buf.push('\n');
    }

    /// `-A <chain> <rule>` for every rule of `rules`, with its hash from `hashes`, kept as
    /// the shared rules and written out only when the script is (`RestoreScript::write_out`).
    pub fn fill(&mut self, chain: &str, rules: &Rules, hashes: &Arc<ChainHashes>) {
        if rules.is_empty() {
            return;
        }
        self.dirty = true;
        if !self.buf.is_empty() {
            self.pieces.push(Piece::Text(std::mem::take(&mut self.buf)));
        }
        self.pieces.push(Piece::Chain {
            chain: chain.to_string(),
            rules: rules.clone(),
            hashes: Arc::clone(hashes),
        });
    }

    /// `-I <chain> <position> <rule>` (1-based position).
    pub fn insert(&mut self, chain: &str, position: usize, hash: &str, rule: &Rule) {
        self.dirty = true;
        let mut target = String::with_capacity(chain.len() + 4);
        target.push_str(chain);
        // Writing into a String cannot fail.
        let _ = write!(target, " {position}");
        write_rule_line(&mut self.buf, "-I", &target, hash, rule);
        self.buf.push('\n');
    }

    /// `-D <chain> <save text>`: deletes a rule by value, with the text `iptables-save` printed
    /// after `-A <chain> ` (delete-by-value is immune to concurrent renumbering).
    pub fn delete_by_value(&mut self, chain: &str, save_text: &str) {
        self.dirty = true;
        self.buf.push_str("-D ");
        self.buf.push_str(chain);
        if !save_text.is_empty() {
            self.buf.push(' ');
            self.buf.push_str(save_text);
        }
        self.buf.push('\n');
    }

    /// `-X <chain>`: deletes an (empty, unreferenced) chain.
    pub fn delete_chain(&mut self, chain: &str) {
        self.dirty = true;
        self.buf.push_str("-X ");
        self.buf.push_str(chain);
        self.buf.push('\n');
    }

    /// True when no complete transaction has been written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty() && self.pieces.is_empty()
    }

    /// The text written so far.
    pub fn finish(self) -> String {
        self.into_script().text()
    }

    /// What was written so far, as a script.
    pub fn into_script(mut self) -> RestoreScript {
        if !self.buf.is_empty() {
            self.pieces.push(Piece::Text(self.buf));
        }
        RestoreScript {
            pieces: self.pieces.into(),
        }
    }
}

/// An `iptables-restore` input in the pieces a plan made it of: its own lines as text, and
/// each chain it fills as that chain's shared rules and hashes, formatted only while the input
/// is fed to the tool (and again for the replay), a chunk at a time. At 1,000 policies the
/// first apply's input is ~17 MB of text that would otherwise be alive through the write and
/// the replay, beside the rules it is made of. A clone shares the pieces.
#[derive(Clone, Default)]
pub struct RestoreScript {
    pieces: Arc<[Piece]>,
}

#[derive(Debug, Clone)]
enum Piece {
    Text(String),
    Chain {
        chain: String,
        rules: Rules,
        hashes: Arc<ChainHashes>,
    },
}

/// `RestoreScript::write_out` hands over text in pieces of about this size.
const CHUNK: usize = 64 * 1024;

impl RestoreScript {
    /// A script of ready text (a test's input, a rollback's).
    pub fn from_text(text: String) -> RestoreScript {
        let pieces = if text.is_empty() {
            Vec::new()
        } else {
            vec![Piece::Text(text)]
        };
        RestoreScript {
            pieces: pieces.into(),
        }
    }

    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// Each chain the script fills whole, with the hashes of its rules.
    pub fn filled(&self) -> impl Iterator<Item = (&str, &Arc<ChainHashes>)> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Chain { chain, hashes, .. } => Some((chain.as_str(), hashes)),
            Piece::Text(_) => None,
        })
    }

    /// The number of lines.
    pub fn lines(&self) -> usize {
        self.pieces
            .iter()
            .map(|p| match p {
                Piece::Text(text) => text.bytes().filter(|&b| b == b'\n').count(),
                Piece::Chain { rules, .. } => rules.len(),
            })
            .sum()
    }

    /// About how many bytes the text is (rules counted at a typical 160 bytes each), for a
    /// timeout that grows with the input.
    pub fn approx_len(&self) -> usize {
        self.pieces
            .iter()
            .map(|p| match p {
                Piece::Text(text) => text.len(),
                Piece::Chain { rules, .. } => rules.len() * 160,
            })
            .sum()
    }

    /// Hands `out` the whole text in order, in runs of whole lines of about `CHUNK` bytes
    /// (a piece of text longer than that as it is); stops early once `out` returns false.
    pub fn write_out(&self, out: &mut dyn FnMut(&str) -> bool) {
        let mut buf = String::new();
        for piece in self.pieces.iter() {
            match piece {
                Piece::Text(text) => {
                    if buf.len() + text.len() > CHUNK {
                        if !buf.is_empty() && !out(&buf) {
                            return;
                        }
                        buf.clear();
                        if text.len() >= CHUNK {
                            if !out(text) {
                                return;
                            }
                            continue;
                        }
                    }
                    buf.push_str(text);
                }
                Piece::Chain {
                    chain,
                    rules,
                    hashes,
                } => {
                    for (rule, hash) in rules.iter().zip(hashes.iter()) {
                        write_rule_line(&mut buf, "-A", chain, hash, rule);
                        buf.push('\n');
                        if buf.len() >= CHUNK {
                            if !out(&buf) {
                                return;
                            }
                            buf.clear();
                        }
                    }
                }
            }
        }
        if !buf.is_empty() {
            out(&buf);
        }
    }

    /// The whole text at once.
    pub fn text(&self) -> String {
        let mut all = String::with_capacity(self.approx_len());
        self.write_out(&mut |text| {
            all.push_str(text);
            true
        });
        all
    }
}

impl fmt::Display for RestoreScript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut written = Ok(());
        self.write_out(&mut |text| {
            written = f.write_str(text);
            written.is_ok()
        });
        written
    }
}

impl fmt::Debug for RestoreScript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl PartialEq for RestoreScript {
    fn eq(&self, other: &RestoreScript) -> bool {
        self.text() == other.text()
    }
}

impl Eq for RestoreScript {}

/// Writes the full desired state of `table` as one transaction (see the module doc for the
/// form). Always emits `*table` and `COMMIT`, even for a table with nothing in it, so the
/// output of `hostfw render` shows every table.
pub fn write_table(out: &mut RestoreBuilder, table: &Table) {
    out.start(table.name);
    // Force the transaction to be kept even when empty.
    out.dirty = true;
    for name in table.chains.keys() {
        out.chain_line(name);
    }
    let mut hooks: Vec<_> = hook_hashes(&table.hooks).into_iter().collect();
    hooks.sort_by(|a, b| (kernel_chain_rank(a.0), a.0).cmp(&(kernel_chain_rank(b.0), b.0)));
    for (kernel_chain, h) in &hooks {
        for (i, (rule, hash)) in h.top.iter().enumerate() {
            out.insert(kernel_chain, i + 1, hash, rule);
        }
        for (rule, hash) in h.bottom.iter().chain(&h.always_appended) {
            out.append(kernel_chain, hash, rule);
        }
    }
    for chain in table.chains.values() {
        let hashes = rule_hashes(&chain.name, &chain.rules);
        for (rule, hash) in chain.rules.iter().zip(&hashes) {
            out.append(&chain.name, hash, rule);
        }
    }
    out.commit();
}

/// The full restore input of one table.
pub fn table_restore(table: &Table) -> String {
    let mut b = RestoreBuilder::with_capacity(estimate(table));
    write_table(&mut b, table);
    b.finish()
}

/// The full restore input of every table of a ruleset, in the ruleset's table order (raw,
/// mangle, filter), one transaction each.
pub fn ruleset_restore(ruleset: &Ruleset) -> String {
    let size = ruleset.tables.iter().map(estimate).sum();
    let mut b = RestoreBuilder::with_capacity(size);
    for t in &ruleset.tables {
        write_table(&mut b, t);
    }
    b.finish()
}

/// A rough size guess so the output buffer is allocated once for large rulesets.
fn estimate(table: &Table) -> usize {
    let rules: usize = table.chains.values().map(|c| c.rules.len()).sum();
    64 + (rules + table.hooks.len()) * 160 + table.chains.len() * 40
}

/// Test helper shared by the restore, replay and exec tests: chain `cali-po-big` of `rules`
/// jumps (to `cali-pi-00000` …), and a builder that opened `*filter`, declared it and filled
/// it, the transaction still open.
#[cfg(test)]
pub(crate) fn filled_chain(rules: usize) -> (super::Chain, RestoreBuilder) {
    let rules: Vec<Rule> = (0..rules)
        .map(|i| Rule::jump_to(&format!("cali-pi-{i:05}")))
        .collect();
    let chain = super::Chain {
        name: "cali-po-big".into(),
        rules: rules.into(),
    };
    let mut b = RestoreBuilder::new();
    b.start(TableName::Filter);
    b.chain_line(&chain.name);
    b.fill(
        &chain.name,
        &chain.rules,
        &Arc::new(ChainHashes::of(&chain)),
    );
    (chain, b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ruleset::{Action, Chain, HookPosition, HookRule, Match};
    use std::collections::BTreeMap;

    fn filter_table() -> Table {
        let mut chains = BTreeMap::new();
        chains.insert(
            "cali-INPUT".to_string(),
            Chain {
                name: "cali-INPUT".into(),
                rules: [Rule::jump_to("cali-from-host-endpoint")].into(),
            },
        );
        chains.insert(
            "cali-from-host-endpoint".to_string(),
            Chain {
                name: "cali-from-host-endpoint".into(),
                rules: Vec::new().into(),
            },
        );
        Table {
            name: TableName::Filter,
            chains,
            hooks: vec![
                HookRule {
                    kernel_chain: "FORWARD".into(),
                    position: HookPosition::AlwaysAppend,
                    rule: Rule {
                        matches: Default::default(),
                        action: Action::SetMark {
                            value: 0x10000,
                            mask: 0x10000,
                        },
                        comments: Default::default(),
                    },
                },
                HookRule {
                    kernel_chain: "INPUT".into(),
                    position: HookPosition::Insert,
                    rule: Rule::jump_to("cali-INPUT"),
                },
                HookRule {
                    kernel_chain: "OUTPUT".into(),
                    position: HookPosition::Append,
                    rule: Rule::jump_to("cali-OUTPUT"),
                },
                HookRule {
                    kernel_chain: "FORWARD".into(),
                    position: HookPosition::Insert,
                    rule: Rule::jump_to("cali-FORWARD"),
                },
            ],
        }
    }

    #[test]
    fn full_table_form() {
        let text = table_restore(&filter_table());
        let cali_input_hash =
            &rule_hashes("cali-INPUT", [&Rule::jump_to("cali-from-host-endpoint")])[0];
        let set_hash = &rule_hashes(
            "FORWARD*appends*",
            [&Rule {
                matches: Default::default(),
                action: Action::SetMark {
                    value: 0x10000,
                    mask: 0x10000,
                },
                comments: Default::default(),
            }],
        )[0];
        let out_hash = &rule_hashes("OUTPUT", [&Rule::jump_to("cali-OUTPUT")])[0];
        let expected = format!(
            "*filter\n\
             :cali-INPUT - [0:0]\n\
             :cali-from-host-endpoint - [0:0]\n\
             -I INPUT 1 -m comment --comment \"cali:Cz_u1IQiXIMmKD4c\" --jump cali-INPUT\n\
             -I FORWARD 1 -m comment --comment \"cali:wUHhoiAYhphO9Mso\" --jump cali-FORWARD\n\
             -A FORWARD -m comment --comment \"cali:{set_hash}\" --jump MARK --set-mark 0x10000/0x10000\n\
             -A OUTPUT -m comment --comment \"cali:{out_hash}\" --jump cali-OUTPUT\n\
             -A cali-INPUT -m comment --comment \"cali:{cali_input_hash}\" --jump cali-from-host-endpoint\n\
             COMMIT\n"
        );
        assert_eq!(text, expected);
    }

    #[test]
    fn empty_table_still_has_header_and_commit() {
        let t = Table {
            name: TableName::Raw,
            chains: BTreeMap::new(),
            hooks: vec![],
        };
        assert_eq!(table_restore(&t), "*raw\nCOMMIT\n");
    }

    #[test]
    fn builder_drops_empty_transactions() {
        let mut b = RestoreBuilder::new();
        b.start(TableName::Mangle);
        b.commit();
        assert!(b.is_empty());
        b.start(TableName::Filter);
        b.delete_by_value("INPUT", "-m comment --comment \"cali:x\" -j cali-INPUT");
        b.delete_chain("cali-old");
        b.insert(
            "INPUT",
            1,
            "h",
            &Rule {
                matches: vec![Match::InInterface {
                    negated: false,
                    name: "eth0".into(),
                }]
                .into(),
                action: Action::Accept,
                comments: Default::default(),
            },
        );
        b.commit();
        assert_eq!(
            b.finish(),
            "*filter\n-D INPUT -m comment --comment \"cali:x\" -j cali-INPUT\n-X cali-old\n\
             -I INPUT 1 -m comment --comment \"cali:h\" --in-interface eth0 --jump ACCEPT\n\
             COMMIT\n"
        );
    }

    #[test]
    fn a_filled_chain_writes_what_appending_each_rule_does() {
        let (chain, mut filled) = filled_chain(3);
        let hashes = ChainHashes::of(&chain);
        let mut appended = RestoreBuilder::new();
        appended.start(TableName::Filter);
        appended.chain_line(&chain.name);
        for (rule, hash) in chain.rules.iter().zip(hashes.iter()) {
            appended.append(&chain.name, hash, rule);
        }
        for b in [&mut filled, &mut appended] {
            b.delete_chain("cali-old");
            b.commit();
            // A transaction with nothing in it after a filled one is still dropped.
            b.start(TableName::Raw);
            b.commit();
        }
        let script = filled.clone().into_script();
        assert_eq!(script.lines(), 7);
        assert_eq!(filled.finish(), appended.finish());
        assert!(script
            .text()
            .starts_with("*filter\n:cali-po-big - [0:0]\n-A cali-po-big "));
        assert!(script
            .text()
            .ends_with(" --jump cali-pi-00002\n-X cali-old\nCOMMIT\n"));
    }

    #[test]
    fn a_script_is_written_out_in_whole_lines_and_stops_when_told() {
        let (_, mut b) = filled_chain(3000);
        b.commit();
        let script = b.into_script();
        let mut chunks = Vec::new();
        script.write_out(&mut |text| {
            chunks.push(text.to_string());
            true
        });
        assert!(chunks.len() > 3, "{} chunks", chunks.len());
        for chunk in &chunks {
            assert!(chunk.ends_with('\n'));
            assert!(chunk.len() < CHUNK + 200, "{}", chunk.len());
        }
        assert_eq!(chunks.concat(), script.text());
        assert_eq!(script.text().lines().count(), 3003);
        let mut handed = 0;
        script.write_out(&mut |_| {
            handed += 1;
            handed < 2
        });
        assert_eq!(handed, 2);
        assert!(RestoreScript::from_text(String::new()).is_empty());
        assert_eq!(RestoreScript::from_text("*raw\nCOMMIT\n".into()).lines(), 2);
    }
}
