//! Parser for `iptables-save [-c] -t TABLE` output: chain names, and for every rule its `cali:`
//! hash (if any), its text after `-A <chain> ` (needed to delete our hook rules by value) and
//! its counters. Rule text is kept verbatim and never interpreted beyond the hash: the kernel
//! prints rules back differently from how they were written. Pure; never runs the binary.

use super::packed::{Packed, Targets};
use super::TableName;
use std::collections::BTreeMap;

/// Every chain of one table as `iptables-save` printed it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveTable {
    pub chains: BTreeMap<String, LiveChain>,
}

/// One chain and its rules in kernel order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveChain {
    pub name: String,
    /// `ACCEPT`/`DROP` for built-in chains, `None` for user chains (`-`).
    pub policy: Option<String>,
    pub rules: Vec<LiveRule>,
    /// Rules of ours here are the text hostfw wrote (`replay`), not the kernel's printing of it:
    /// the next read shows how the kernel spells them.
    pub unverified: bool,
    /// A chain of ours kept packed (`ruleset::packed`): its rules are here, and `rules` is
    /// empty. Only a long-lived reconciler's cached state holds packed chains.
    pub packed: Option<Box<Packed>>,
}

/// What a plan reads of one rule: its hash, and its printed text, or for a rule of a packed
/// chain only the part from its target on (`packed::target_part`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleView<'a> {
    pub hash: Option<&'a str>,
    pub text: &'a str,
}

impl LiveChain {
    /// The number of rules, packed or not.
    pub fn len(&self) -> usize {
        self.packed.as_ref().map_or(self.rules.len(), |p| p.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every rule's hash and (target) text, in chain order, packed or not.
    pub fn views(&self) -> Box<dyn Iterator<Item = RuleView<'_>> + '_> {
        match &self.packed {
            Some(p) => Box::new(p.views()),
            None => Box::new(self.rules.iter().map(|r| RuleView {
                hash: r.hash.as_deref(),
                text: &r.text,
            })),
        }
    }

    /// The rules with their full texts (unpacked when packed).
    pub fn full_rules(&self) -> std::borrow::Cow<'_, [LiveRule]> {
        match &self.packed {
            Some(p) => std::borrow::Cow::Owned(p.unpack()),
            None => std::borrow::Cow::Borrowed(&self.rules),
        }
    }

    /// Pack the rules when every one carries a hash of the usual length (an empty chain stays
    /// as it is), sharing target parts through `targets`.
    pub fn pack(&mut self, targets: &mut Targets) {
        if self.packed.is_some() || self.rules.is_empty() {
            return;
        }
        let rules = self
            .rules
            .iter()
            .map(|r| (r.hash.as_deref(), r.text.as_str()));
        if let Some(p) = Packed::of(rules, targets) {
            self.packed = Some(Box::new(p));
            self.rules = Vec::new();
        }
    }

    /// Keep `hashes` for the rules' hashes when the chain is packed with the same ones
    /// (`Packed::share_hashes`).
    pub fn share_hashes(&mut self, hashes: &std::sync::Arc<str>) {
        if let Some(p) = &mut self.packed {
            p.share_hashes(hashes);
        }
    }

    /// Give the rules their full texts back, for an edit of the chain in place.
    pub fn unpack(&mut self) {
        if let Some(p) = self.packed.take() {
            self.rules = p.unpack();
        }
    }
}

/// One rule: our hash if it carries one, its save-form text after `-A <chain> `, counters
/// (zero unless saved with `-c`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveRule {
    pub hash: Option<String>,
    pub text: String,
    pub packets: u64,
    pub bytes: u64,
}

/// Why a save (or `ipset save`) output could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaveError {
    /// iptables-nft found rules it cannot represent (written by `nft` directly).
    #[error(
        "line {line}: table is incompatible with iptables-nft (it holds native nft rules): {text}"
    )]
    Incompatible { line: usize, text: String },
    /// A line that is not part of the save format.
    #[error("line {line}: unexpected line in save output: {text}")]
    Malformed { line: usize, text: String },
    /// More than one `*table` section where one was asked for.
    #[error("line {line}: more than one table in save output (expected one `-t TABLE`)")]
    MultipleTables { line: usize },
}

impl LiveTable {
    /// True when the table holds no chains at all (not loaded, or empty output).
    pub fn is_empty(&self) -> bool {
        self.chains.is_empty()
    }
}

/// The hash of a rule: the first `--comment` whose value is `cali:([A-Za-z0-9_-]+)` (the
/// pattern Felix uses, so rules Felix wrote are recognised too). Words are split as the shell
/// would split the saved line, so text inside another quoted string (a foreign comment holding
/// `--comment cali:…`) never counts.
pub fn find_hash(text: &str) -> Option<&str> {
    let words = words(text);
    words.windows(2).find_map(|w| {
        if w[0] != "--comment" {
            return None;
        }
        let value = w[1].strip_prefix('"').unwrap_or(w[1]);
        let h = value.strip_prefix("cali:")?;
        let end = h
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .unwrap_or(h.len());
        (end > 0).then(|| &h[..end])
    })
}

/// `text` split at blanks outside `"…"` (quotes stay on the words; `\\` escapes inside them).
fn words(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = None;
    let (mut quoted, mut escaped) = (false, false);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if let Some(s) = start.take() {
                    out.push(&text[s..i]);
                }
                continue;
            }
            _ => {}
        }
        start.get_or_insert(i);
    }
    if let Some(s) = start {
        out.push(&text[s..]);
    }
    out
}

/// Splits `[p:b] rest` into counters and rest; `None` if the line has no counter prefix.
fn split_counters(line: &str) -> Option<(u64, u64, &str)> {
    let inner = line.strip_prefix('[')?;
    let close = inner.find(']')?;
    let (p, b) = inner[..close].split_once(':')?;
    let packets = p.parse().ok()?;
    let bytes = b.parse().ok()?;
    Some((packets, bytes, inner[close + 1..].trim_start()))
}

/// True when `line` ends inside a `"…"` string (iptables escapes `"` and `\\` in saved
/// strings with a backslash).
fn ends_inside_quotes(line: &str, mut open: bool) -> bool {
    let mut escaped = false;
    for c in line.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if open => escaped = true,
            '"' => open = !open,
            _ => {}
        }
    }
    open
}

/// Parses one table's `iptables-save` output. Empty output (the table is not loaded) gives an
/// empty table. `# ...` comment lines are skipped, except iptables-nft's "incompatible" notice,
/// which is an error because the rules it hides could be anything.
pub fn parse_save(text: &str) -> Result<LiveTable, SaveError> {
    let mut reader = TableReader::default();
    for line in text.lines() {
        reader.line(line, &mut |_| {});
    }
    reader.finish(&mut |_| {})
}

/// Reads one table's save output a line at a time, as the save tool prints it (`parse_save`
/// reads a whole text through it). A save prints each chain's rules together, so once a rule
/// of another chain, `COMMIT` or the end comes, the chain before is complete and `done` is
/// handed it: a caller that packs it there never holds every rule's text of a large table at
/// once (nor the save's whole text). Line numbers in errors count from the reader's first line.
#[derive(Debug, Default)]
pub struct TableReader {
    table: LiveTable,
    /// Lines seen so far.
    lines: usize,
    /// A line that ended inside a quoted string: its number and its text so far (a rule whose
    /// comment holds a line break is one rule).
    pending: Option<(usize, String)>,
    seen_table: bool,
    /// The chain the last rule went to.
    filling: Option<String>,
    /// The first error; later lines are not looked at.
    error: Option<SaveError>,
}

impl TableReader {
    /// Take the next line (without its line break).
    pub fn line(&mut self, line: &str, done: &mut dyn FnMut(&mut LiveChain)) {
        self.lines += 1;
        if self.error.is_some() {
            return;
        }
        let line = line.strip_suffix('\r').unwrap_or(line);
        let taken = match self.pending.take() {
            Some((first, mut joined)) => {
                joined.push('\n');
                joined.push_str(line);
                if ends_inside_quotes(line, true) {
                    self.pending = Some((first, joined));
                    return;
                }
                self.take(first, &joined, done)
            }
            None if ends_inside_quotes(line, false) => {
                self.pending = Some((self.lines, line.to_string()));
                return;
            }
            None => self.take(self.lines, line, done),
        };
        if let Err(e) = taken {
            self.error = Some(e);
        }
    }

    /// The table read; the last chain goes to `done` first.
    pub fn finish(mut self, done: &mut dyn FnMut(&mut LiveChain)) -> Result<LiveTable, SaveError> {
        if let Some((first, joined)) = self.pending.take() {
            if self.error.is_none() {
                if let Err(e) = self.take(first, &joined, done) {
                    self.error = Some(e);
                }
            }
        }
        if let Some(e) = self.error {
            return Err(e);
        }
        self.complete(done);
        Ok(self.table)
    }

    /// Hand the chain being filled to `done`.
    fn complete(&mut self, done: &mut dyn FnMut(&mut LiveChain)) {
        if let Some(chain) = self
            .filling
            .take()
            .and_then(|name| self.table.chains.get_mut(&name))
        {
            done(chain);
        }
    }

    /// One whole (logical) line, numbered `line_no`.
    fn take(
        &mut self,
        line_no: usize,
        line: &str,
        done: &mut dyn FnMut(&mut LiveChain),
    ) -> Result<(), SaveError> {
        let line = line.trim_end();
        let malformed = || SaveError::Malformed {
            line: line_no,
            text: line.to_string(),
        };
        if line.is_empty() {
            return Ok(());
        }
        if let Some(comment) = line.strip_prefix('#') {
            if comment.trim_start().starts_with("Table") && comment.contains("is incompatible") {
                return Err(SaveError::Incompatible {
                    line: line_no,
                    text: line.to_string(),
                });
            }
            return Ok(());
        }
        if line.starts_with('*') {
            if self.seen_table {
                return Err(SaveError::MultipleTables { line: line_no });
            }
            self.seen_table = true;
            return Ok(());
        }
        if line == "COMMIT" {
            self.complete(done);
            return Ok(());
        }
        if let Some(decl) = line.strip_prefix(':') {
            let mut words = decl.split_whitespace();
            let name = words.next().ok_or_else(malformed)?;
            let policy = match words.next() {
                Some("-") | None => None,
                Some(p) => Some(p.to_string()),
            };
            let chain = self.table.chains.entry(name.to_string()).or_default();
            chain.name = name.to_string();
            chain.policy = policy;
            return Ok(());
        }
        let (packets, bytes, body) = split_counters(line).unwrap_or((0, 0, line));
        let after_a = body.strip_prefix("-A ").ok_or_else(malformed)?;
        let (chain_name, rule_text) = match after_a.split_once(' ') {
            Some((c, r)) => (c, r.trim_start()),
            None => (after_a, ""),
        };
        if chain_name.is_empty() {
            return Err(malformed());
        }
        if self.filling.as_deref() != Some(chain_name) {
            self.complete(done);
            self.filling = Some(chain_name.to_string());
        }
        let chain = self.table.chains.entry(chain_name.to_string()).or_default();
        if chain.name.is_empty() {
            chain.name = chain_name.to_string();
        }
        // A save prints a chain's rules together; should one come back to a chain already
        // complete (and packed), its rules are unpacked, and `done` sees it again.
        chain.unpack();
        chain.rules.push(LiveRule {
            hash: find_hash(rule_text).map(str::to_string),
            text: rule_text.to_string(),
            packets,
            bytes,
        });
        Ok(())
    }
}

/// Reads the save output of every table at once (the save tool run without `-t`), keeping the
/// tables hostfw owns (`TableName::OWNED`): each gets its own `TableReader`, which sees the
/// table's lines from its `*table` line to its `COMMIT`, and iptables-nft's notice that the
/// table is incompatible (so that reading it fails). Lines of other tables are dropped.
#[derive(Debug, Default)]
pub struct SavedTables {
    tables: BTreeMap<TableName, TableReader>,
    current: Option<TableName>,
}

impl SavedTables {
    /// Take the next line (without its line break); `done` as for `TableReader`.
    pub fn line(&mut self, line: &str, done: &mut dyn FnMut(TableName, &mut LiveChain)) {
        let owned = |name: &str| TableName::OWNED.into_iter().find(|t| t.as_str() == name);
        if let Some(name) = line.strip_prefix('*') {
            self.current = owned(name.trim());
        } else if line.starts_with('#') && line.contains("is incompatible") {
            let name = line.split('`').nth(1).and_then(|r| r.split('\'').next());
            if let Some(table) = name.and_then(owned) {
                self.feed(table, line, done);
            }
            return;
        }
        if let Some(table) = self.current {
            self.feed(table, line, done);
        }
        if line == "COMMIT" {
            self.current = None;
        }
    }

    fn feed(
        &mut self,
        table: TableName,
        line: &str,
        done: &mut dyn FnMut(TableName, &mut LiveChain),
    ) {
        self.tables
            .entry(table)
            .or_default()
            .line(line, &mut |chain| done(table, chain));
    }

    /// Every table read, or the first (in table order) that could not be, and why.
    pub fn finish(
        self,
        done: &mut dyn FnMut(TableName, &mut LiveChain),
    ) -> Result<BTreeMap<TableName, LiveTable>, (TableName, SaveError)> {
        self.tables
            .into_iter()
            .map(|(table, reader)| {
                let read = reader.finish(&mut |chain| done(table, chain));
                read.map(|t| (table, t)).map_err(|e| (table, e))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_pattern_matches_felix_regex() {
        assert_eq!(
            find_hash("-m comment --comment \"cali:Cz_u1IQiXIMmKD4c\" -j cali-INPUT"),
            Some("Cz_u1IQiXIMmKD4c")
        );
        assert_eq!(
            find_hash("-m comment --comment cali:ab-_9 -j X"),
            Some("ab-_9")
        );
        // The first matching comment wins; a non-hash comment before it is skipped.
        assert_eq!(
            find_hash("-m comment --comment \"hello\" -m comment --comment \"cali:x1\""),
            Some("x1")
        );
        assert_eq!(find_hash("-m comment --comment \"calico\" -j ACCEPT"), None);
        assert_eq!(find_hash("-m comment --comment \"cali:\" -j ACCEPT"), None);
        assert_eq!(find_hash("-j ACCEPT"), None);
        // A `--comment cali:` inside another comment is that comment's text.
        assert_eq!(
            find_hash("-m comment --comment \"x\n--comment cali:FAKEFAKE -j ACCEPT\" -j DROP"),
            None
        );
        assert_eq!(
            find_hash("-m comment --comment \"a \\\" --comment cali:FAKE\" -j DROP"),
            None
        );
    }

    #[test]
    fn parses_chains_rules_counters() {
        let text = "# Generated by iptables-save v1.8.9 on today\n\
                    *filter\n\
                    :INPUT ACCEPT [10:600]\n\
                    :FORWARD DROP [0:0]\n\
                    :cali-INPUT - [0:0]\n\
                    [5:300] -A INPUT -m comment --comment \"cali:Cz_u1IQiXIMmKD4c\" -j cali-INPUT\n\
                    [1:60] -A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n\
                    -A cali-INPUT -j RETURN\n\
                    COMMIT\n\
                    # Completed on today\n";
        let t = parse_save(text).unwrap();
        assert_eq!(t.chains.len(), 3);
        assert_eq!(t.chains["INPUT"].policy.as_deref(), Some("ACCEPT"));
        assert_eq!(t.chains["FORWARD"].policy.as_deref(), Some("DROP"));
        assert_eq!(t.chains["cali-INPUT"].policy, None);
        let input = &t.chains["INPUT"].rules;
        assert_eq!(input.len(), 2);
        assert_eq!(input[0].hash.as_deref(), Some("Cz_u1IQiXIMmKD4c"));
        assert_eq!(
            input[0].text,
            "-m comment --comment \"cali:Cz_u1IQiXIMmKD4c\" -j cali-INPUT"
        );
        assert_eq!((input[0].packets, input[0].bytes), (5, 300));
        assert_eq!(input[1].hash, None);
        assert_eq!((input[1].packets, input[1].bytes), (1, 60));
        assert_eq!(t.chains["cali-INPUT"].rules[0].text, "-j RETURN");
    }

    #[test]
    fn empty_output_is_an_unloaded_table() {
        assert!(parse_save("").unwrap().is_empty());
        assert!(parse_save(
            "# Warning: iptables-legacy tables present, use iptables-legacy-save to see them\n"
        )
        .unwrap()
        .is_empty());
    }

    #[test]
    fn incompatible_table_is_an_error() {
        let text = "# Table `filter' is incompatible, use 'nft' tool.\n";
        assert!(matches!(
            parse_save(text),
            Err(SaveError::Incompatible { line: 1, .. })
        ));
    }

    /// A foreign rule whose comment holds newlines (one posing as a rule of ours) is one foreign
    /// rule; the rules after it parse as usual.
    #[test]
    fn a_newline_in_a_foreign_comment_is_one_rule() {
        let text = "*filter\n:INPUT ACCEPT [0:0]\n\
                    -A INPUT -s 203.0.113.9/32 -m comment --comment \"line1\n\
                    -A INPUT -m comment --comment \\\"cali:FAKEFAKEFAKEFAKE\\\" -j ACCEPT\n\
                    end\" -j DROP\n\
                    -A INPUT -m comment --comment \"cali:Cz_u1IQiXIMmKD4c\" -j cali-INPUT\n\
                    COMMIT\n";
        let t = parse_save(text).unwrap();
        let input = &t.chains["INPUT"].rules;
        assert_eq!(input.len(), 2, "{input:?}");
        assert_eq!(input[0].hash, None);
        assert!(
            input[0].text.ends_with("end\" -j DROP"),
            "{}",
            input[0].text
        );
        assert_eq!(input[1].hash.as_deref(), Some("Cz_u1IQiXIMmKD4c"));
    }

    /// Each chain is handed over once its rules are all in, in save order, the last one at
    /// `COMMIT`; a chain its rules come back to (a save never does this) is unpacked, filled
    /// and handed over again, so packing in `done` loses nothing.
    #[test]
    fn chains_are_handed_over_complete_and_may_be_packed_there() {
        let h = |n: u8| format!("cali:{}", char::from(b'a' + n).to_string().repeat(16));
        let text = format!(
            "*filter\n:cali-a - [0:0]\n:cali-b - [0:0]\n\
             -A cali-a -m comment --comment \"{}\" -j ACCEPT\n\
             -A cali-a -m comment --comment \"{}\" -j DROP\n\
             -A cali-b -m comment --comment \"{}\" -j RETURN\n\
             -A cali-a -m comment --comment \"{}\" -j MARK --set-xmark 0x1/0x1\n\
             COMMIT\n",
            h(0),
            h(1),
            h(2),
            h(3)
        );
        let mut handed = Vec::new();
        let mut targets = Targets::default();
        let mut done = |chain: &mut LiveChain| {
            handed.push((chain.name.clone(), chain.len()));
            chain.pack(&mut targets);
        };
        let mut reader = TableReader::default();
        for line in text.lines() {
            reader.line(line, &mut done);
        }
        let table = reader.finish(&mut done).expect("reads");
        assert_eq!(
            handed,
            [
                ("cali-a".to_string(), 2),
                ("cali-b".to_string(), 1),
                ("cali-a".to_string(), 3)
            ]
        );
        let a = &table.chains["cali-a"];
        assert!(a.packed.is_some());
        let texts: Vec<String> = a.full_rules().iter().map(|r| r.text.clone()).collect();
        assert_eq!(
            texts,
            [
                format!("-m comment --comment \"{}\" -j ACCEPT", h(0)),
                format!("-m comment --comment \"{}\" -j DROP", h(1)),
                format!(
                    "-m comment --comment \"{}\" -j MARK --set-xmark 0x1/0x1",
                    h(3)
                ),
            ]
        );
    }

    /// A whole save (no `-t`): the tables hostfw owns, each read on its own (line numbers from
    /// its `*table` line); other tables dropped; iptables-nft's notice makes its table fail.
    #[test]
    fn a_whole_save_reads_our_tables_and_refuses_an_incompatible_one() {
        let text = "# Generated by iptables-nft-save v1.8.9\n\
                    *security\n:INPUT ACCEPT [0:0]\n-A INPUT -j DROP\nCOMMIT\n\
                    *nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n\
                    *mangle\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j cali-PREROUTING\nCOMMIT\n\
                    # Completed on Sun Nov 22 00:12:08 2026\n";
        let read = |text: &str| {
            let mut saved = SavedTables::default();
            for line in text.lines() {
                saved.line(line, &mut |_, _| {});
            }
            saved.finish(&mut |_, _| {})
        };
        let tables = read(text).expect("reads");
        assert_eq!(
            tables.keys().copied().collect::<Vec<_>>(),
            [TableName::Mangle, TableName::Nat]
        );
        assert_eq!(
            tables[&TableName::Mangle].chains["PREROUTING"].rules[0].text,
            "-j cali-PREROUTING"
        );
        let notice = "# Table `filter' is incompatible, use 'nft' tool.\n";
        let refused = read(&format!("{text}{notice}")).expect_err("filter is incompatible");
        assert!(
            matches!(
                refused,
                (TableName::Filter, SaveError::Incompatible { line: 1, .. })
            ),
            "{refused:?}"
        );
        let garbage = "*mangle\n:PREROUTING ACCEPT [0:0]\n-I PREROUTING -j ACCEPT\nCOMMIT\n";
        assert!(matches!(
            read(garbage),
            Err((TableName::Mangle, SaveError::Malformed { line: 3, .. }))
        ));
    }

    #[test]
    fn garbage_and_multiple_tables_are_errors() {
        assert!(matches!(
            parse_save("*filter\n-I INPUT -j ACCEPT\nCOMMIT\n"),
            Err(SaveError::Malformed { line: 2, .. })
        ));
        assert!(matches!(
            parse_save("*filter\nCOMMIT\n*nat\nCOMMIT\n"),
            Err(SaveError::MultipleTables { line: 3 })
        ));
    }
}
