//! Render: NodeView to the desired Felix-compatible ruleset per family, and the provenance of
//! its rules (`provenance`). Pure: no files, no processes, no clock. Produces typed `ruleset`
//! values only; never iptables text.
//!
//! Layout follows Felix (`docs/felix-layout.md`; Felix `felix/rules/`): static chains
//! (`static_chains`), per-endpoint chains (`endpoint`), policy and profile chains (`policy`),
//! interface dispatch (`dispatch`), selector and named-port ipsets (`ipsets`). Every table holds
//! only the chains reachable from its hook rules, as Felix's reference counting does.

mod dispatch;
mod endpoint;
mod groups;
mod ipsets;
pub mod marks;
mod memo;
pub mod names;
mod policy;
pub mod provenance;
mod static_chains;

use crate::model::{AllowAction, DenyAction, Direction};
use crate::resolve::{EffectiveConfig, NodeView};
use crate::ruleset::{
    Action, Chain, Family, HookRule, Match, Name, Rule, Rules, Ruleset, Shared, Table, TableName,
};
use marks::{MarkError, Marks};
pub use memo::RenderMemo;
use provenance::{Provenance, Recorder};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// Why a NodeView cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Marks(#[from] MarkError),
}

/// The complete desired state of `family` for this node: raw, mangle and filter tables and the
/// ipsets their rules reference.
pub fn render(view: &NodeView, family: Family) -> Result<Ruleset, RenderError> {
    render_with_provenance(view, family).map(|(ruleset, _)| ruleset)
}

/// `render`, and where each rule came from (what `explain` attributes verdicts with). The
/// provenance never reaches the kernel: the ruleset is the same as `render`'s.
pub fn render_with_provenance(
    view: &NodeView,
    family: Family,
) -> Result<(Ruleset, Provenance), RenderError> {
    render_remembering(view, family, &RenderMemo::default())
}

/// `render_with_provenance`, taking from `memo` what the last render with it built from the
/// same inputs, and leaving there what this one built (a long-lived renderer: the daemon).
pub fn render_remembering(
    view: &NodeView,
    family: Family,
    memo: &RenderMemo,
) -> Result<(Ruleset, Provenance), RenderError> {
    let ctx = Ctx {
        view,
        memo,
        cfg: &view.config,
        family,
        marks: Marks::allocate(view.config.iptables_mark_mask)?,
        policies: view
            .policies
            .iter()
            .map(|(name, p)| {
                let known = KnownPolicy {
                    chains: Direction::ALL.map(|d| names::policy_chain_for(d, name).into()),
                    selector: p.selector.canonical(),
                };
                (name.as_str(), known)
            })
            .collect(),
    };
    memo.begin(family, ctx.cfg, ctx.marks);
    let mut sets = ipsets::SetCollector::new(view, family);
    for (id, set_type) in static_chains::DSCP_SETS {
        sets.empty_set(id, set_type);
    }
    let mut rec = Recorder::default();
    let mut tables = Vec::with_capacity(3);
    for name in TableName::ALL {
        let mut chains = BTreeMap::new();
        let hooks = static_chains::hooks(&ctx, name);
        static_chains::add(&ctx, name, &mut chains, &mut rec);
        dispatch::add(&ctx, name, &mut chains);
        endpoint::add(&ctx, name, &mut chains, &mut rec);
        policy::add(&ctx, name, &mut sets, &mut chains, &mut rec)?;
        let forced: Vec<Name> = match name {
            TableName::Filter => policy::forced_policies(view)
                .flat_map(|p| Direction::ALL.map(|d| ctx.policy_chain(p, d)))
                .collect(),
            _ => Vec::new(),
        };
        let table = prune(name, chains, hooks, &forced);
        rec.provenance_mut()
            .retain(name, |c| table.chains.contains_key(c));
        tables.push(table);
    }
    let referenced: BTreeSet<&str> = tables
        .iter()
        .flat_map(|t| t.chains.values())
        .flat_map(|c| c.rules.iter())
        .flat_map(|r| r.matches.iter())
        .filter_map(|m| match m {
            Match::Set { name, .. } => Some(&**name),
            _ => None,
        })
        .collect();
    let ipsets = sets.finish(&referenced);
    memo.finish(family);
    let ruleset = Ruleset {
        family,
        tables,
        ipsets,
    };
    Ok((ruleset, rec.finish()))
}

/// Keep only the chains reachable from the hook rules or from `forced` (Felix programs a chain
/// only while something references it, unless it is force-programmed).
fn prune(
    name: TableName,
    all: BTreeMap<String, Chain>,
    hooks: Vec<HookRule>,
    forced: &[Name],
) -> Table {
    let mut reachable: FastSet<&str> = FastSet::default();
    let mut todo: Vec<&str> = hooks
        .iter()
        .filter_map(|h| target(&h.rule.action))
        .chain(forced.iter().map(|f| &**f))
        .collect();
    // Endpoint chains jump to the same policy chains many times: check the cheap hash set
    // before the ordered map.
    while let Some(next) = todo.pop() {
        if reachable.contains(next) {
            continue;
        }
        if let Some(chain) = all.get(next) {
            reachable.insert(chain.name.as_str());
            todo.extend(chain.rules.iter().filter_map(|r| target(&r.action)));
        }
    }
    let keep: HashSet<String> = reachable.into_iter().map(str::to_string).collect();
    let chains = all.into_iter().filter(|(n, _)| keep.contains(n)).collect();
    Table {
        name,
        chains,
        hooks,
    }
}

/// FNV-1a. `prune` and `policy::add` look up every jump target and policy reference (over a
/// million for large inputs); the keys are short names from the admin's own configuration, so
/// a fast unkeyed hash is enough.
pub(crate) struct Fnv(u64);

/// A hash set with the FNV hasher.
pub(crate) type FastSet<T> = HashSet<T, BuildHasherDefault<Fnv>>;

/// A hash map with the FNV hasher.
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

fn target(action: &Action) -> Option<&str> {
    match action {
        Action::Jump(t) | Action::Goto(t) => Some(&**t),
        _ => None,
    }
}

/// Everything the per-module builders share for one family.
pub(crate) struct Ctx<'a> {
    pub view: &'a NodeView,
    pub cfg: &'a EffectiveConfig,
    pub family: Family,
    pub marks: Marks,
    /// Endpoint chain bodies built before from the same inputs.
    pub memo: &'a RenderMemo,
    /// What endpoint chains need of each policy, by name, looked up once per endpoint,
    /// direction and table (ten million times at 10,000 policies and 20 endpoints).
    policies: FastMap<&'a str, KnownPolicy<'a>>,
}

/// A policy as endpoint chains refer to it.
pub(crate) struct KnownPolicy<'a> {
    /// Inbound and outbound chain names, computed once and shared by every rule that jumps to
    /// them.
    chains: [Name; 2],
    /// The normalised selector that decides the policy's group (`groups::group`).
    selector: &'a str,
}

impl<'a> Ctx<'a> {
    /// `iptablesFilterAllowAction` (filter verdicts).
    pub fn filter_allow(&self) -> Action {
        allow(self.cfg.iptables_filter_allow_action)
    }

    /// `iptablesMangleAllowAction` (mangle PREROUTING verdicts).
    pub fn mangle_allow(&self) -> Action {
        allow(self.cfg.iptables_mangle_allow_action)
    }

    /// The deny verdict in `table`: the configured one in filter, DROP elsewhere because REJECT
    /// is only valid in filter (projectcalico/calico#7914).
    pub fn deny(&self, table: TableName) -> Action {
        match (table, self.cfg.iptables_filter_deny_action) {
            (TableName::Filter, DenyAction::Reject) => Action::Reject,
            _ => Action::Drop,
        }
    }

    /// The word Felix puts in deny comments (`Drop if no profiles matched`).
    pub fn deny_word(&self, table: TableName) -> &'static str {
        match self.deny(table) {
            Action::Reject => "Reject",
            _ => "Drop",
        }
    }

    /// `cali-pi-…` (ingress) or `cali-po-…` (egress) chain of `policy`.
    pub fn policy_chain(&self, policy: &str, direction: Direction) -> Name {
        match (self.policies.get(policy).map(|p| &p.chains), direction) {
            (Some([i, _]), Direction::Ingress) => i.clone(),
            (Some([_, o]), Direction::Egress) => o.clone(),
            (None, _) => names::policy_chain_for(direction, policy).into(),
        }
    }

    /// The normalised selector of `policy` (empty for a policy not in the view).
    pub fn policy_selector(&self, policy: &str) -> &'a str {
        self.policies.get(policy).map_or("", |p| p.selector)
    }

    pub fn is_v6(&self) -> bool {
        self.family == Family::V6
    }

    /// `-m mark --mark B/B`.
    pub fn mark_set(&self, bit: u32) -> Match {
        Match::Mark {
            negated: false,
            value: bit,
            mask: bit,
        }
    }

    /// `-m mark --mark 0/M`.
    pub fn mark_clear(&self, mask: u32) -> Match {
        Match::Mark {
            negated: false,
            value: 0,
            mask,
        }
    }
}

fn allow(a: AllowAction) -> Action {
    match a {
        AllowAction::Accept => Action::Accept,
        AllowAction::Return => Action::Return,
    }
}

/// `MARK --set-mark B/B`.
pub(crate) fn set_mark(bit: u32) -> Action {
    Action::SetMark {
        value: bit,
        mask: bit,
    }
}

/// `MARK --set-mark 0/M`.
pub(crate) fn clear_mark(mask: u32) -> Action {
    Action::SetMark { value: 0, mask }
}

/// A rule without comments.
pub(crate) fn rule(matches: impl Into<Shared<Match>>, action: Action) -> Rule {
    Rule {
        matches: matches.into(),
        action,
        comments: Shared::default(),
    }
}

/// A rule with one comment.
pub(crate) fn commented(matches: impl Into<Shared<Match>>, action: Action, comment: &str) -> Rule {
    with_comments(matches, action, vec![comment.into()].into())
}

/// A rule with comments shared with other rules.
pub(crate) fn with_comments(
    matches: impl Into<Shared<Match>>,
    action: Action,
    comments: Shared<Name>,
) -> Rule {
    Rule {
        matches: matches.into(),
        action,
        comments,
    }
}

/// Insert a chain built by a sub-module.
pub(crate) fn put(chains: &mut BTreeMap<String, Chain>, name: String, rules: Vec<Rule>) {
    put_shared(chains, name, rules.into());
}

/// Insert a chain whose rules another chain (or the last render) shares.
pub(crate) fn put_shared(chains: &mut BTreeMap<String, Chain>, name: String, rules: Rules) {
    chains.insert(name.clone(), Chain { name, rules });
}

#[cfg(test)]
mod tests;
