//! What the last render built, remembered across renders: endpoint chain bodies and policy
//! chains. An endpoint chain jumps to every policy that applies to the endpoint (at 10,000
//! policies and 20 endpoints, two thirds of all rendered rules), and an edit of one policy's
//! rules changes none of them; the policy chains make up the rest, and an edit changes one
//! policy's. A render given the last render's memo takes each chain whose inputs are unchanged
//! instead of building it, and with it the chain's fingerprint (`Rules::fingerprint`), so
//! neither the daemon's digest nor its plan reads those rules again (at 10,000 policies an
//! edit's resolve and render fell from 0.7-1.05 s to 0.38-0.47 s; docs/performance.md, "An
//! edit renders what it changed"). Within one render, endpoints with the same inputs share one
//! body.
//!
//! A body is found by a keyed 64-bit hash of everything it is built from (`endpoint::Spec`'s
//! inputs); the key is drawn once per memo, so nobody outside the process can aim a changed
//! endpoint at a colliding hash (an accidental collision has odds of 2^-64 a body). A policy
//! chain is found by the policy itself: the loader hands an unchanged policy over as the same
//! shared value (`policy::LoadCache` keeps each unchanged file's), and the memo holds on to
//! it, so no other policy can take its place at that address; and by what else a policy chain
//! is built from (the family's configuration and marks), which forgets every chain when it
//! changes.

use super::ipsets::SetRequest;
use super::marks::Marks;
use super::provenance::Origin;
use super::RenderError;
use crate::model::GlobalNetworkPolicy;
use crate::recall::Recall;
use crate::resolve::EffectiveConfig;
use crate::ruleset::{Family, Name, PerFamily, Rules, TableName};
use std::hash::{BuildHasher, DefaultHasher, Hasher, RandomState};
use std::sync::Arc;

/// What the last render built of each family's endpoint and policy chains. One lock per
/// family and kind: the families render side by side.
#[derive(Default)]
pub struct RenderMemo {
    key: RandomState,
    bodies: PerFamily<FamilyBodies>,
    policies: PerFamily<FamilyPolicies>,
}

/// One family's bodies, by table and input hash.
type FamilyBodies = Recall<(TableName, u64), (), Arc<Body>>;

/// One family's policy chains, by table and chain name (which names the policy and the
/// direction; shared with the jumps to it), under the policy they were built from; and the
/// rest of what they were built from.
#[derive(Default)]
struct FamilyPolicies {
    context: Option<(EffectiveConfig, Marks)>,
    chains: Recall<(TableName, Name), SamePolicy, Arc<PolicyChain>>,
}

/// A policy, equal only to itself: the same shared value, not an equal one. Comparing the
/// address is exact because the memo holds the value, so it is not freed and reused.
struct SamePolicy(Arc<GlobalNetworkPolicy>);

impl PartialEq for SamePolicy {
    fn eq(&self, other: &SamePolicy) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// One policy chain: its rules, the API rule each came from, and the ipsets its rules asked
/// for, asked for again whenever the chain is taken (their members follow this render's
/// endpoints and network sets, which the chain's rules do not depend on).
#[derive(Debug)]
pub(crate) struct PolicyChain {
    pub rules: Rules,
    /// Exactly as long as the chain (held as long as it is; a grown vector's spare capacity
    /// would be up to as much again).
    pub origins: Box<[(u32, Origin)]>,
    pub sets: Box<[SetRequest]>,
}

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
        self.bodies
            .lock(family)
            .get_or_make((table, key), (), || Arc::new(build()))
            .clone()
    }

    /// Start `family`'s render with `cfg` and `marks`: when they differ from the last render's,
    /// no policy chain it built is taken again.
    pub(crate) fn begin(&self, family: Family, cfg: &EffectiveConfig, marks: Marks) {
        let mut policies = self.policies.lock(family);
        if policies
            .context
            .as_ref()
            .is_none_or(|(c, m)| c != cfg || *m != marks)
        {
            *policies = FamilyPolicies {
                context: Some((cfg.clone(), marks)),
                chains: Recall::default(),
            };
        }
    }

    /// `policy`'s chain `chain` in `table` of `family`: the last render's when built from the
    /// same policy, else `build`'s.
    pub(crate) fn policy_chain(
        &self,
        family: Family,
        table: TableName,
        chain: &Name,
        policy: &Arc<GlobalNetworkPolicy>,
        build: impl FnOnce() -> Result<PolicyChain, RenderError>,
    ) -> Result<Arc<PolicyChain>, RenderError> {
        let mut policies = self.policies.lock(family);
        let chain = policies.chains.get_or_try_make(
            (table, chain.clone()),
            SamePolicy(policy.clone()),
            || build().map(Arc::new),
        )?;
        Ok(chain.clone())
    }

    /// End `family`'s render: the chains it used are what the next render finds.
    pub(crate) fn finish(&self, family: Family) {
        self.bodies.lock(family).finish();
        self.policies.lock(family).chains.finish();
    }

    /// Bodies held for `family` (this render's and the last one's).
    #[cfg(test)]
    pub(crate) fn held(&self, family: Family) -> usize {
        self.bodies.lock(family).held()
    }

    /// Policy chains held for `family` (this render's and the last one's).
    #[cfg(test)]
    pub(crate) fn policy_chains_held(&self, family: Family) -> usize {
        self.policies.lock(family).chains.held()
    }
}
