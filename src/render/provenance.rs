//! Provenance: where each rendered rule came from (policy or profile, tier, direction, API rule
//! index, or a structural kind such as a tier end or a failsafe entry), as data beside the
//! `Ruleset`, keyed by table, chain and rule index. Never written to the kernel: the restore
//! writer and the `cali:` hashes read only the `Ruleset`, so the text is the same with or
//! without it. Pure.
//!
//! Memory: at 1.5 million rules per family most rules are endpoint-chain jumps with nothing to
//! attribute, and the rules of one API rule share their origin, so origins are stored as runs
//! (12 bytes each) over the attributed rules only; tier names are interned and referred to by
//! index. Each owner is stored once per chain name, not per table.

use crate::model::Direction;
use crate::ruleset::{Rule, TableName};
use std::collections::{BTreeMap, HashMap};

/// What kind of thing owns a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerKind {
    Policy {
        tier: String,
    },
    Profile,
    /// A host endpoint's chain; `interface` is its interface, `*` for the all-interfaces one.
    Endpoint {
        interface: String,
    },
}

/// The owner of one chain (the same in every table that has the chain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainOwner {
    pub kind: OwnerKind,
    /// Policy, profile or HostEndpoint name.
    pub name: String,
    /// The rule list the chain renders (policy, profile) or the chain's direction (endpoint).
    pub direction: Direction,
}

/// Where one rendered rule came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Rule `n` (0-based) of the chain owner's API rule list for the chain's direction.
    ApiRule(u32),
    /// A failsafe entry (`failsafeInboundHostPorts` / `failsafeOutboundHostPorts`).
    Failsafe(Direction),
    /// The deny at the end of a tier: no policy of the tier allowed or passed the packet.
    TierEnd(TierId),
    /// A forward endpoint chain with no forward policy: forwarded traffic is allowed.
    ForwardDefaultAllow,
    /// The deny after an endpoint's policies and profiles: none of them allowed the packet.
    ProfileFallThrough,
    /// The deny of an endpoint chain with no policy and no profile: the endpoint default.
    DefaultAction,
}

/// Index of an interned tier name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierId(u32);

/// The provenance of one rendered `Ruleset`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provenance {
    tiers: Vec<String>,
    /// By chain name: the owner and the rule origins.
    chains: BTreeMap<String, ChainTrace>,
}

/// What is recorded of one chain name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ChainTrace {
    owner: Option<ChainOwner>,
    /// Per table holding the chain with attributed rules: its rule origins as runs.
    tables: Vec<(TableName, Vec<Run>)>,
}

/// Rules from `start` up to the next run's start share `origin` (`None`: nothing to
/// attribute). Runs, not one entry per rule: the iptables rules of one API rule, and all the
/// rules of a failsafe chain, share their origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    start: u32,
    origin: Option<Origin>,
}

impl Provenance {
    /// Who owns `chain`, if a policy, profile or host endpoint does.
    pub fn owner(&self, chain: &str) -> Option<&ChainOwner> {
        self.chains.get(chain)?.owner.as_ref()
    }

    /// Where rule `index` of `chain` in `table` came from, if it came from anything.
    pub fn origin(&self, table: TableName, chain: &str, index: usize) -> Option<Origin> {
        let runs = self.runs(table, chain)?;
        let index = u32::try_from(index).ok()?;
        let after = runs.partition_point(|r| r.start <= index);
        runs.get(after.checked_sub(1)?)?.origin
    }

    /// Every recorded rule origin: table, chain, rule index, origin.
    pub fn entries(&self) -> impl Iterator<Item = (TableName, &str, usize, Origin)> {
        self.chains.iter().flat_map(|(chain, trace)| {
            trace.tables.iter().flat_map(move |(table, runs)| {
                // Every run with an origin is followed by one that ends it.
                runs.windows(2).flat_map(move |w| {
                    let origin = w[0].origin;
                    (w[0].start..w[1].start).filter_map(move |i| {
                        origin.map(|o| (*table, chain.as_str(), i as usize, o))
                    })
                })
            })
        })
    }

    /// The name of an interned tier.
    pub fn tier(&self, id: TierId) -> &str {
        &self.tiers[id.0 as usize]
    }

    /// Keep only the rule origins of the chains of `table` for which `keep` holds, as render's
    /// reachability pruning does. Owners stay: they are per chain name, not per table.
    pub(crate) fn retain(&mut self, table: TableName, keep: impl Fn(&str) -> bool) {
        for (chain, trace) in &mut self.chains {
            if !keep(chain) {
                trace.tables.retain(|(t, _)| *t != table);
            }
        }
    }

    /// Keep only the rule origins of chains `keep` approves (used by explain to drop chains
    /// whose live copy differs from the render).
    pub fn retain_chains(&mut self, keep: impl Fn(TableName, &str) -> bool) {
        for (chain, trace) in &mut self.chains {
            trace.tables.retain(|(t, _)| keep(*t, chain));
        }
    }

    fn runs(&self, table: TableName, chain: &str) -> Option<&[Run]> {
        let trace = self.chains.get(chain)?;
        trace
            .tables
            .iter()
            .find(|(t, _)| *t == table)
            .map(|(_, runs)| runs.as_slice())
    }

    /// Called once per chain and table while rendering, never per rule.
    fn trace_mut(&mut self, chain: &str) -> &mut ChainTrace {
        self.chains.entry(chain.to_string()).or_default()
    }
}

/// Collects the provenance while render builds chains.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    out: Provenance,
    tier_ids: HashMap<String, TierId>,
}

impl Recorder {
    /// Record that `owner` owns `chain`.
    pub fn own(&mut self, chain: &str, owner: ChainOwner) {
        self.out.trace_mut(chain).owner.get_or_insert(owner);
    }

    /// Intern a tier name.
    pub fn tier(&mut self, tier: &str) -> TierId {
        if let Some(id) = self.tier_ids.get(tier) {
            return *id;
        }
        let id = TierId(index_u32(self.out.tiers.len()));
        self.out.tiers.push(tier.to_string());
        self.tier_ids.insert(tier.to_string(), id);
        id
    }

    /// Record the origins of `chain`'s rules in `table` (`origins`: rule index and origin, for
    /// the rules that have one, ascending); nothing is stored for a chain none of whose rules
    /// has an origin.
    pub fn rules(
        &mut self,
        table: TableName,
        chain: &str,
        origins: impl IntoIterator<Item = (u32, Origin)>,
    ) {
        let mut origins = origins.into_iter().peekable();
        if origins.peek().is_none() {
            return;
        }
        let mut runs: Vec<Run> = Vec::new();
        let mut next = 0;
        for (i, origin) in origins {
            let continues = next == i && runs.last().is_some_and(|r| r.origin == Some(origin));
            if !continues {
                if i > next && !runs.is_empty() {
                    runs.push(Run {
                        start: next,
                        origin: None,
                    });
                }
                runs.push(Run {
                    start: i,
                    origin: Some(origin),
                });
            }
            next = i + 1;
        }
        runs.push(Run {
            start: next,
            origin: None,
        });
        runs.shrink_to_fit();
        self.out.trace_mut(chain).tables.push((table, runs));
    }

    pub fn finish(self) -> Provenance {
        self.out
    }

    /// The provenance recorded so far (render prunes it table by table).
    pub fn provenance_mut(&mut self) -> &mut Provenance {
        &mut self.out
    }
}

/// A chain's rules and their origins, built together so the indexes cannot drift apart.
#[derive(Debug, Default)]
pub(crate) struct Traced {
    pub rules: Vec<Rule>,
    pub origins: Vec<(u32, Origin)>,
}

impl Traced {
    pub fn with_capacity(n: usize) -> Self {
        Traced {
            rules: Vec::with_capacity(n),
            origins: Vec::new(),
        }
    }

    /// A rule with nothing to attribute (conntrack, mark bookkeeping, jumps, returns).
    pub fn push(&mut self, rule: Rule) {
        self.rules.push(rule);
    }

    /// A rule that came from `origin`.
    pub fn push_from(&mut self, rule: Rule, origin: Origin) {
        self.origins.push((index_u32(self.rules.len()), origin));
        self.rules.push(rule);
    }
}

/// A rule, owner or tier index as stored (`u32` keeps origins small; a chain of four billion
/// rules could not be loaded anyway).
pub(crate) fn index_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
