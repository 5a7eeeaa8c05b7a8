//! Who owns each chain of a rendered ruleset (policy, profile, host endpoint) and where each of
//! its rules came from: render's provenance, plus the mark bits and (live mode) the kernel chain
//! policies. Pure.

use crate::render::marks::Marks;
use crate::render::provenance::{ChainOwner, Origin, Provenance};
use crate::ruleset::{Ruleset, TableName};
use std::collections::BTreeMap;

/// Everything explain needs besides the ruleset: the mark bits and the provenance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    pub marks: Marks,
    pub provenance: Provenance,
    /// Policies of kernel chains that are not ACCEPT (live mode); missing means ACCEPT, which
    /// is what hostfw's rendered hooks assume.
    pub kernel_policies: BTreeMap<(TableName, String), super::Verdict>,
}

impl Context {
    /// A context that knows only the mark bits (hand-built rulesets in tests).
    pub fn bare(marks: Marks) -> Context {
        Context::from_provenance(marks, Provenance::default())
    }

    /// A context over a render's own provenance (the ruleset explain evaluates is that render).
    pub fn from_provenance(marks: Marks, provenance: Provenance) -> Context {
        Context {
            marks,
            provenance,
            kernel_policies: BTreeMap::new(),
        }
    }

    /// This context (of the render `own`) for evaluating `evaluated`, the ruleset read back
    /// from the kernel (live mode): rule origins are kept only for chains whose rule count in
    /// `evaluated` is the render's, so a chain changed in the kernel is explained by its rules
    /// alone.
    pub fn for_evaluating(&self, own: &Ruleset, evaluated: &Ruleset) -> Context {
        let mut provenance = self.provenance.clone();
        provenance.retain_chains(|table, chain| {
            rule_count(own, table, chain) == rule_count(evaluated, table, chain)
        });
        Context::from_provenance(self.marks, provenance)
    }

    /// Who owns `chain`.
    pub fn owner(&self, chain: &str) -> Option<&ChainOwner> {
        self.provenance.owner(chain)
    }

    /// Where rule `index` of `chain` in `table` came from.
    pub fn origin(&self, table: TableName, chain: &str, index: usize) -> Option<Origin> {
        self.provenance.origin(table, chain, index)
    }

    /// The API rule index behind rule `index` of `chain` in `table`.
    pub fn api_rule(&self, table: TableName, chain: &str, index: usize) -> Option<usize> {
        match self.origin(table, chain, index)? {
            Origin::ApiRule(i) => usize::try_from(i).ok(),
            _ => None,
        }
    }
}

/// Rules of `chain` in `table` of `ruleset`, `None` when the chain is missing.
fn rule_count(ruleset: &Ruleset, table: TableName, chain: &str) -> Option<usize> {
    ruleset
        .tables
        .iter()
        .find(|t| t.name == table)
        .and_then(|t| t.chains.get(chain))
        .map(|c| c.rules.len())
}
