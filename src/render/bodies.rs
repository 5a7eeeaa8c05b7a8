//! Endpoint chain bodies remembered across renders. An endpoint chain jumps to every policy
//! that applies to the endpoint (at 10,000 policies and 20 endpoints, two thirds of all
//! rendered rules), and an edit of one policy's rules changes none of them: a render given the
//! last render's memo takes each body whose inputs are unchanged instead of building it, and
//! with it the body's fingerprint (`Rules::fingerprint`), so neither the daemon's digest nor
//! its plan reads those rules again. Within one render, endpoints with the same inputs share
//! one body.
//!
//! A body is found by a keyed 64-bit hash of everything it is built from (`endpoint::Spec`'s
//! inputs); the key is drawn once per memo, so nobody outside the process can aim a changed
//! endpoint at a colliding hash (an accidental collision has odds of 2^-64 a body).

use super::provenance::Origin;
use crate::recall::Recall;
use crate::ruleset::{Family, PerFamily, Rules, TableName};
use std::hash::{BuildHasher, DefaultHasher, Hasher, RandomState};
use std::sync::Arc;

/// What the last render built of each family's endpoint chains. One lock per family: the
/// families render side by side.
#[derive(Default)]
pub struct RenderMemo {
    key: RandomState,
    families: PerFamily<FamilyBodies>,
}

/// One family's bodies, by table and input hash.
type FamilyBodies = Recall<(TableName, u64), (), Arc<Body>>;

/// One endpoint chain body: its rules, the origins of those rules (tier ends by tier name: a
/// tier's index is the recorder's of each render) and the policy-group chains it jumps to.
#[derive(Debug)]
pub(crate) struct Body {
    pub rules: Rules,
    pub origins: Vec<(u32, Origin)>,
    /// The tier of each `Origin::TierEnd` in `origins`, in order.
    pub tier_ends: Vec<String>,
    pub groups: Vec<(String, Rules)>,
}

impl std::fmt::Debug for RenderMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenderMemo").finish_non_exhaustive()
    }
}

impl RenderMemo {
    /// The keyed hash of what `feed` writes.
    pub(crate) fn key_of(&self, feed: impl FnOnce(&mut DefaultHasher)) -> u64 {
        let mut h = self.key.build_hasher();
        feed(&mut h);
        h.finish()
    }

    /// The body of `table` in `family` built from inputs hashing to `key`: this render's or the
    /// last render's, else `build`'s.
    pub(crate) fn body(
        &self,
        family: Family,
        table: TableName,
        key: u64,
        build: impl FnOnce() -> Body,
    ) -> Arc<Body> {
        self.families
            .lock(family)
            .get_or_make((table, key), (), || Arc::new(build()))
            .clone()
    }

    /// End `family`'s render: the bodies it used are what the next render finds.
    pub(crate) fn finish(&self, family: Family) {
        self.families.lock(family).finish();
    }

    /// Bodies held for `family` (this render's and the last one's).
    #[cfg(test)]
    pub(crate) fn held(&self, family: Family) -> usize {
        self.families.lock(family).held()
    }
}
