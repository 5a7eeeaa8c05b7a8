//! Rule hashes remembered across plans: a long-lived planner (the daemon) hashes again only
//! the chains whose rules changed since its last plan. Hashing is SHA-224 over each rule's
//! Felix text (`hash::rule_hashes`), so formatting and hashing every rule of a 1,000-policy
//! set costs ~90 ms a plan; the keyed fingerprint of a chain's rules (`Rules::fingerprint`,
//! taken once per shared body) costs a fraction of that.

use super::hash::{each_rule_hash, HASH_LEN};
use super::{Chain, Family, PerFamily, TableName};
use crate::recall::Recall;
use std::sync::Arc;

/// The rule hashes of one chain, in order, 16 characters each in one string (one allocation a
/// chain instead of one a rule), shared with the cache's packed copy of the chain once it is
/// written (`ruleset::packed`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHashes(Arc<str>);

impl ChainHashes {
    /// The hashes of `chain`'s rules.
    pub fn of(chain: &Chain) -> ChainHashes {
        let mut all = String::with_capacity(chain.rules.len() * HASH_LEN);
        each_rule_hash(&chain.name, &chain.rules, |h| all.push_str(h));
        ChainHashes(all.into())
    }

    /// All the hashes in one text, as a packed chain keeps them.
    pub fn text(&self) -> &Arc<str> {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len() / HASH_LEN
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The hashes in rule order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        // Hash texts are base64url: every byte is a character boundary.
        (0..self.len()).map(|i| &self.0[i * HASH_LEN..(i + 1) * HASH_LEN])
    }
}

/// The hashes of the chains the last plan hashed, with a fingerprint of the rules they were
/// computed from. Each plan keeps exactly the chains it looked up, so the memo never holds more
/// than one desired state's chains. The fingerprint is keyed with a key drawn once per
/// process: nobody outside it can aim a changed chain at a colliding fingerprint (which would
/// keep the old chain's hashes, and so its rules, in the kernel); an accidental collision has
/// odds of 2^-64 a changed chain. One lock per family, so both families can plan at once.
#[derive(Default)]
pub struct HashMemo {
    families: PerFamily<FamilyMemo>,
}

/// One family's chains, by table and name, under their rules' fingerprint.
type FamilyMemo = Recall<(TableName, String), u64, Arc<ChainHashes>>;

impl std::fmt::Debug for HashMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashMemo").finish_non_exhaustive()
    }
}

impl HashMemo {
    /// The hashes of `chain` in `table` of `family`: remembered when its rules are the ones
    /// last hashed under that name, else computed (and remembered).
    pub fn hashes(&self, family: Family, table: TableName, chain: &Chain) -> Arc<ChainHashes> {
        self.families
            .lock(family)
            .get_or_make(
                (table, chain.name.clone()),
                chain.rules.fingerprint(),
                || Arc::new(ChainHashes::of(chain)),
            )
            .clone()
    }

    /// End `family`'s plan: what it looked up is what the next plan finds.
    pub fn finish(&self, family: Family) {
        self.families.lock(family).finish();
    }

    /// Chains remembered for `family`.
    #[cfg(test)]
    pub fn len(&self, family: Family) -> usize {
        self.families.lock(family).held()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ruleset::hash::rule_hashes;
    use crate::ruleset::{Rule, Rules};

    fn chain(name: &str, targets: &[&str]) -> Chain {
        Chain {
            name: name.into(),
            rules: targets.iter().map(|t| Rule::jump_to(t)).collect(),
        }
    }

    #[test]
    fn hashes_equal_the_unmemoized_ones_and_split_per_rule() {
        let c = chain("cali-x", &["cali-a", "cali-b", "cali-c"]);
        let hashes = ChainHashes::of(&c);
        let plain = rule_hashes(&c.name, &c.rules);
        assert_eq!(hashes.len(), 3);
        assert_eq!(hashes.iter().collect::<Vec<_>>(), plain);
        assert!(ChainHashes::of(&chain("cali-e", &[])).is_empty());
    }

    #[test]
    fn a_changed_chain_is_hashed_again_and_an_unchanged_one_is_not() {
        let memo = HashMemo::default();
        let a = chain("cali-a", &["cali-x"]);
        let first = memo.hashes(Family::V4, TableName::Filter, &a);
        memo.finish(Family::V4);
        let again = memo.hashes(Family::V4, TableName::Filter, &a);
        assert!(Arc::ptr_eq(&first, &again), "unchanged: remembered");
        memo.finish(Family::V4);
        let changed = chain("cali-a", &["cali-y"]);
        let new = memo.hashes(Family::V4, TableName::Filter, &changed);
        assert_eq!(*new, ChainHashes::of(&changed));
        assert_ne!(*new, *first);
        // The same name in another table or family is another chain.
        let other = memo.hashes(Family::V6, TableName::Filter, &a);
        assert!(!Arc::ptr_eq(&other, &first));
        let raw = memo.hashes(Family::V4, TableName::Raw, &a);
        assert!(!Arc::ptr_eq(&raw, &first));
    }

    #[test]
    fn chains_sharing_a_body_keep_their_own_hashes() {
        let memo = HashMemo::default();
        let body: Rules = [Rule::jump_to("cali-x"), Rule::jump_to("cali-y")].into();
        let named = |name: &str| Chain {
            name: name.into(),
            rules: body.clone(),
        };
        let (a, b) = (named("cali-th-a"), named("cali-th-b"));
        let ha = memo.hashes(Family::V4, TableName::Filter, &a);
        let hb = memo.hashes(Family::V4, TableName::Filter, &b);
        assert_eq!(*ha, ChainHashes::of(&a));
        assert_eq!(*hb, ChainHashes::of(&b));
        assert_ne!(*ha, *hb, "the hashes are seeded with the chain name");
        memo.finish(Family::V4);
        // Next plan: b's body changed; a's is the same rules in a new allocation.
        let a2 = Chain {
            name: a.name.clone(),
            rules: body.to_vec().into(),
        };
        let b2 = chain("cali-th-b", &["cali-z"]);
        assert!(Arc::ptr_eq(
            &ha,
            &memo.hashes(Family::V4, TableName::Filter, &a2)
        ));
        assert_eq!(
            *memo.hashes(Family::V4, TableName::Filter, &b2),
            ChainHashes::of(&b2)
        );
    }

    #[test]
    fn a_plan_keeps_only_the_chains_it_looked_up() {
        let memo = HashMemo::default();
        for name in ["cali-a", "cali-b", "cali-c"] {
            memo.hashes(Family::V4, TableName::Filter, &chain(name, &["cali-x"]));
        }
        memo.finish(Family::V4);
        assert_eq!(memo.len(Family::V4), 3);
        let b = chain("cali-b", &["cali-x"]);
        let kept = memo.hashes(Family::V4, TableName::Filter, &b);
        // Looked up twice in one plan: one entry, the same hashes.
        assert!(Arc::ptr_eq(
            &kept,
            &memo.hashes(Family::V4, TableName::Filter, &b)
        ));
        memo.finish(Family::V4);
        assert_eq!(memo.len(Family::V4), 1);
        assert_eq!(memo.len(Family::V6), 0);
    }
}
