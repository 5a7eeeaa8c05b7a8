//! Typed iptables/ipset state: tables, chains, rules with typed matches and actions, ipsets.
//! Pure and independent of everything above it. Only `felix` (rule text) and `restore`
//! (transactions) in this module tree turn rules into iptables text; only `save` reads the
//! kernel's text back.

pub mod felix;
pub mod hash;
pub mod ipset;
pub mod memo;
pub mod packed;
pub mod plan;
pub mod replay;
pub mod restore;
pub mod save;

pub use ipset::{parse_ipset_save, LiveIpset, LiveIpsets};
pub use plan::{flush_plan, plan, IpsetPlan, LiveState, Plan, PlanOptions, TablePlan};
pub use save::{parse_save, LiveChain, LiveRule, LiveTable, SaveError};

use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, OnceLock, PoisonError};
use triomphe::ThinArc;

/// IPv4 (iptables, `inet` ipsets) or IPv6 (ip6tables, `inet6` ipsets). Owns every spelling of
/// the family: labels, tool names, ipset family names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// Both families, IPv4 first (the order they are written in).
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];

    /// The IP version number: `4` or `6` (`ipVersion`, the digit in `cali40…` set names).
    pub fn ip_version(self) -> u8 {
        match self {
            Family::V4 => 4,
            Family::V6 => 6,
        }
    }

    /// `0` / `1`: the family's place in `PerFamily` (IPv4 first, as in `ALL`).
    fn slot(self) -> usize {
        match self {
            Family::V4 => 0,
            Family::V6 => 1,
        }
    }

    /// `IPv4` / `IPv6`, as plans and messages print it.
    pub fn label(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }

    /// The tool-name prefix: `iptables` / `ip6tables` (`-save`, `-restore`, `-legacy-save`, ...).
    pub fn iptables(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }

    /// The ipset `family` option: `inet` / `inet6`.
    pub fn ipset_family(self) -> &'static str {
        match self {
            Family::V4 => "inet",
            Family::V6 => "inet6",
        }
    }

    /// The family of an ipset `family` option.
    pub fn from_ipset_family(name: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.ipset_family() == name)
    }

    /// The `/proc/net` file that lists the family's legacy (x_tables) tables while its kernel
    /// module is loaded: `ip_tables_names` / `ip6_tables_names`.
    pub fn legacy_tables_proc_file(self) -> &'static str {
        match self {
            Family::V4 => "ip_tables_names",
            Family::V6 => "ip6_tables_names",
        }
    }
}

/// The tables hostfw owns, in the order they are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TableName {
    Raw,
    Mangle,
    Filter,
    /// Rendered empty: hostfw writes no NAT, but Felix leaves `cali-` chains and hooks here
    /// that name `cali40…` sets, so a takeover must remove them (docs/felix-layout.md, Taking
    /// over a Felix host).
    Nat,
}

impl TableName {
    /// The tables hostfw renders rules into, in write order.
    pub const ALL: [TableName; 3] = [TableName::Raw, TableName::Mangle, TableName::Filter];

    /// Every table whose `cali-` chains and `cali:` rules hostfw owns: the rendered ones, then
    /// nat, written last (it decides no verdict, so removing Felix's leftovers there after the
    /// filter tables are in place opens nothing).
    pub const OWNED: [TableName; 4] = [
        TableName::Raw,
        TableName::Mangle,
        TableName::Filter,
        TableName::Nat,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TableName::Raw => "raw",
            TableName::Mangle => "mangle",
            TableName::Filter => "filter",
            TableName::Nat => "nat",
        }
    }
}

/// A port or an inclusive range inside one multiport match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PortSpec {
    Single(u16),
    Range(u16, u16),
}

/// Direction flags of an ipset match (`src`, `dst`, `src,src`, `dst,dst`): which packet
/// addresses (and ports) are looked up in the set. Not a traffic direction (`model::Direction`):
/// an ingress rule's source net and an egress rule's destination net both use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SetDirection {
    Src,
    Dst,
    SrcSrc,
    DstDst,
}

/// One match fragment. Rendered in vector order; `negated` puts `!` where iptables wants it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Match {
    /// `-p tcp` / `-p 47`.
    Protocol {
        negated: bool,
        name: Name,
    },
    Source {
        negated: bool,
        net: IpNet,
    },
    Destination {
        negated: bool,
        net: IpNet,
    },
    /// `--in-interface eth0` (a trailing `+` is a prefix wildcard).
    InInterface {
        negated: bool,
        name: Name,
    },
    OutInterface {
        negated: bool,
        name: Name,
    },
    /// `-m set --match-set NAME dir`.
    Set {
        negated: bool,
        name: Name,
        direction: SetDirection,
    },
    /// `-m multiport --source-ports a,b:c`.
    SourcePorts {
        negated: bool,
        ports: Box<[PortSpec]>,
    },
    /// `-m multiport --destination-ports a,b:c`.
    DestinationPorts {
        negated: bool,
        ports: Box<[PortSpec]>,
    },
    /// `-m icmp --icmp-type T[/C]`.
    Icmp {
        negated: bool,
        icmp_type: u8,
        code: Option<u8>,
    },
    /// `-m icmp6 --icmpv6-type T[/C]`.
    Icmp6 {
        negated: bool,
        icmp_type: u8,
        code: Option<u8>,
    },
    /// `-m conntrack --ctstate S1,S2`.
    ConntrackState {
        negated: bool,
        states: Name,
    },
    /// `-m mark --mark V/M` (`negated`: `-m mark ! --mark V/M`).
    Mark {
        negated: bool,
        value: u32,
        mask: u32,
    },
    /// `-m limit --limit R [--limit-burst B]`.
    Limit {
        rate: Name,
        burst: Option<u32>,
    },
    /// `-m rpfilter --invert --validmark`: the reverse-path check fails (no route back to the
    /// source through the interface the packet came in on, the mark taken into account).
    RpfCheckFailed,
}

/// What a rule does when it matches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    Accept,
    Drop,
    Reject,
    Return,
    /// The target is shared, not copied: every endpoint chain jumps to every policy chain
    /// that applies to it, so one name is the target of many rules.
    Jump(Name),
    Goto(Name),
    /// `MARK --set-mark V/M`: sets the bits of `value` under `mask`, clears the rest of `mask`.
    /// A zero `value` is written `0/M` (Felix's `ClearMark`), others `%#x/%#x`.
    SetMark {
        value: u32,
        mask: u32,
    },
    /// Felix's `SetMaskedMark`: like `SetMark` but the value is always `%#x`, so zero is
    /// written `0x0/M`. Felix uses it for the first rule of a match-block sequence; the text
    /// (and so the hash) differs from `SetMark { value: 0, .. }`.
    SetMaskedMark {
        value: u32,
        mask: u32,
    },
    /// `LOG --log-prefix "<prefix>" --log-level L`; `prefix` is written verbatim (Felix's
    /// renderer adds the `: ` suffix itself, so the caller includes it).
    Log {
        prefix: Name,
        level: u8,
    },
    NoTrack,
    /// No action: a placeholder rule that only carries comments (empty policy chains).
    None,
}

/// A name or text in a rule (a jump target, a set or interface name, a comment), one
/// pointer wide: with it and `Shared`, a rule is 32 bytes instead of 64 and a match 24 instead
/// of 40, and at 10,000 policies the render keeps nearly two million rules. A clone is a
/// reference count; equal texts are equal, shared or not.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(Arc<Box<str>>);

impl std::ops::Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Name {
    fn from(text: &str) -> Name {
        Name(Arc::new(text.into()))
    }
}

impl From<String> for Name {
    fn from(text: String) -> Name {
        Name(Arc::new(text.into_boxed_str()))
    }
}

/// As a key, a name is its text (its hash and order are the text's).
impl std::borrow::Borrow<str> for Name {
    fn borrow(&self) -> &str {
        self
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// One rule: matches ANDed, then an action; `comments` go right after the hash comment
/// (shared like jump targets: the same few comments recur on thousands of endpoint rules).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    pub matches: Shared<Match>,
    pub action: Action,
    pub comments: Shared<Name>,
}

/// A rule's matches or comments, shared between the rules that have the same ones: an endpoint
/// chain's jump to each of its policies and the return after it carry the same mark match, so
/// at 10,000 policies one copy serves a million rules instead of one allocation each. None
/// at all costs no allocation. A clone is a reference count; the pointer is thin (the length
/// lives in the allocation), so a rule holds two of them in 16 bytes.
#[derive(Clone)]
pub struct Shared<T>(Option<ThinArc<(), T>>);

impl<T: PartialEq> PartialEq for Shared<T> {
    fn eq(&self, other: &Shared<T>) -> bool {
        **self == **other
    }
}

impl<T: Eq> Eq for Shared<T> {}

impl<T: std::hash::Hash> std::hash::Hash for Shared<T> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (**self).hash(state);
    }
}

impl<T> Default for Shared<T> {
    fn default() -> Self {
        Shared(None)
    }
}

impl<T> From<Vec<T>> for Shared<T> {
    fn from(items: Vec<T>) -> Self {
        Shared((!items.is_empty()).then(|| ThinArc::from_header_and_iter((), items.into_iter())))
    }
}

impl<T> std::ops::Deref for Shared<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.0.as_ref().map_or(&[], |items| &items.slice)
    }
}

impl<T: Clone> Shared<T> {
    /// These followed by `more` (a clone of these when `more` is empty).
    pub fn and(&self, more: impl IntoIterator<Item = T>) -> Shared<T> {
        let mut more = more.into_iter().peekable();
        if more.peek().is_none() {
            return self.clone();
        }
        let mut all = self.to_vec();
        all.extend(more);
        all.into()
    }
}

impl<T> FromIterator<T> for Shared<T> {
    fn from_iter<I: IntoIterator<Item = T>>(items: I) -> Self {
        items.into_iter().collect::<Vec<T>>().into()
    }
}

impl<'a, T> IntoIterator for &'a Shared<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<T: fmt::Debug> fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

#[cfg(test)]
impl Rule {
    /// Test shorthand shared by the ruleset unit tests: no matches, no comments, a jump.
    pub(crate) fn jump_to(target: &str) -> Rule {
        Rule {
            matches: Default::default(),
            action: Action::Jump(target.into()),
            comments: Default::default(),
        }
    }
}

/// A chain hostfw owns (`cali-` prefix), in full.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Chain {
    pub name: String,
    pub rules: Rules,
}

/// The rules of a chain, shared: endpoint chains with the same policies have the same rules
/// under different names (render builds them once), and a clone is a reference count. Their
/// fingerprint is taken once per body, whoever asks first (the daemon's digest of what it
/// enforces, the plan's hash memo): at 10,000 policies hashing every rule costs ~0.2 s a pass.
#[derive(Clone, Default)]
pub struct Rules(Arc<Body>);

/// One `T` per family, each behind its own lock: the render and plan memos, which both
/// families use side by side.
#[derive(Default)]
pub struct PerFamily<T>([Mutex<T>; 2]);

impl<T> PerFamily<T> {
    /// `family`'s `T`; a panic elsewhere while it was held leaves it as it was.
    pub fn lock(&self, family: Family) -> MutexGuard<'_, T> {
        self.0[family.slot()]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Default)]
struct Body {
    rules: Vec<Rule>,
    fingerprint: OnceLock<u64>,
}

/// The key of every fingerprint, drawn once per process: nobody outside the process can aim a
/// changed body at a colliding fingerprint (an accidental collision has odds of 2^-64).
static FINGERPRINT_KEY: LazyLock<RandomState> = LazyLock::new(RandomState::new);

impl Rules {
    /// A keyed 64-bit fingerprint of the rules (equal rules, equal fingerprints).
    pub fn fingerprint(&self) -> u64 {
        *self
            .0
            .fingerprint
            .get_or_init(|| FINGERPRINT_KEY.hash_one(&self.0.rules))
    }

    /// Whether both are the same shared body.
    pub fn ptr_eq(a: &Rules, b: &Rules) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }
}

impl std::ops::Deref for Rules {
    type Target = [Rule];

    fn deref(&self) -> &[Rule] {
        &self.0.rules
    }
}

impl From<Vec<Rule>> for Rules {
    /// Keeps exactly the rules: a body lives as long as the memo holds it, and the spare
    /// capacity of a grown or over-reserved vector would be a third of its size.
    fn from(mut rules: Vec<Rule>) -> Rules {
        rules.shrink_to_fit();
        Rules(Arc::new(Body {
            rules,
            fingerprint: OnceLock::new(),
        }))
    }
}

impl FromIterator<Rule> for Rules {
    fn from_iter<I: IntoIterator<Item = Rule>>(rules: I) -> Rules {
        Rules::from(rules.into_iter().collect::<Vec<_>>())
    }
}

impl<'a> IntoIterator for &'a Rules {
    type Item = &'a Rule;
    type IntoIter = std::slice::Iter<'a, Rule>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.rules.iter()
    }
}

impl<const N: usize> From<[Rule; N]> for Rules {
    fn from(rules: [Rule; N]) -> Rules {
        Rules::from(Vec::from(rules))
    }
}

impl std::fmt::Debug for Rules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl PartialEq for Rules {
    fn eq(&self, other: &Rules) -> bool {
        Rules::ptr_eq(self, other) || self.0.rules == other.0.rules
    }
}

impl Eq for Rules {}

/// By fingerprint: equal rules hash equally, and a digest of a whole ruleset reads each body's
/// rules at most once.
impl std::hash::Hash for Rules {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.fingerprint().hash(state);
    }
}

/// How a hook rule is placed in a kernel chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HookPosition {
    /// At the top (chainInsertMode insert).
    Insert,
    /// At the end (chainInsertMode append).
    Append,
    /// Always at the very end regardless of mode (FORWARD's accept-bit rules); hashed as
    /// `<CHAIN>*appends*`.
    AlwaysAppend,
}

/// A rule hostfw places in a kernel chain (INPUT, FORWARD, ...).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HookRule {
    pub kernel_chain: String,
    pub position: HookPosition,
    pub rule: Rule,
}

/// The desired content of one table of one family.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Table {
    pub name: TableName,
    /// Our chains by name. Only chains reachable from a hook belong here.
    pub chains: BTreeMap<String, Chain>,
    /// Hook rules in the order they must appear within each kernel chain.
    pub hooks: Vec<HookRule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpsetType {
    /// `hash:net`: selector sets.
    HashNet,
    /// `hash:ip,port`: named-port sets.
    HashIpPort,
    /// `hash:ip`: single addresses (Felix's `cali40this-host`).
    HashIp,
}

/// One ipset and its full membership (members in ipset's text form, e.g. `10.0.0.0/24`,
/// `10.0.0.1,tcp:80`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ipset {
    pub name: String,
    pub set_type: IpsetType,
    pub family: Family,
    pub max_elements: u32,
    pub members: BTreeSet<String>,
}

/// The complete desired state of one family: three tables and the ipsets they reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ruleset {
    pub family: Family,
    /// Raw, mangle, filter, in that order.
    pub tables: Vec<Table>,
    pub ipsets: BTreeMap<String, Ipset>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_items_are_one_copy_and_none_is_no_allocation() {
        let none: Shared<u32> = Vec::new().into();
        assert!(none.0.is_none() && none == Shared::default() && none.is_empty());
        let some: Shared<u32> = vec![1, 2].into();
        let copy = some.clone();
        assert!(matches!((&some.0, &copy.0), (Some(a), Some(b)) if a.ptr() == b.ptr()));
        assert_eq!(*some, [1, 2]);
        // Equal items are equal (and hash alike) whether or not they are the same copy.
        let other: Shared<u32> = [1, 2].into_iter().collect();
        assert_eq!(other, some);
        let key = RandomState::new();
        assert_eq!(key.hash_one(&other), key.hash_one(&some));
        let longer = some.and([3]);
        assert_eq!(*longer, [1, 2, 3]);
        assert_eq!(*some, [1, 2]);
        let same = some.and([]);
        assert!(matches!((&some.0, &same.0), (Some(a), Some(b)) if a.ptr() == b.ptr()));
        assert_eq!(format!("{some:?}"), "[1, 2]");
    }

    #[test]
    fn a_rule_is_four_words() {
        // The render keeps every rule of the desired state (two million at 10,000 policies):
        // each word more is 15 MB more there.
        assert_eq!(std::mem::size_of::<Rule>(), 32);
        assert_eq!(std::mem::size_of::<Action>(), 16);
        assert_eq!(std::mem::size_of::<Match>(), 24);
        let name: Name = "cali-pi-a".into();
        assert_eq!(name, Name::from(String::from("cali-pi-a")));
        assert_eq!(
            (&*name, format!("{name} {name:?}")),
            ("cali-pi-a", "cali-pi-a \"cali-pi-a\"".into())
        );
    }
}
