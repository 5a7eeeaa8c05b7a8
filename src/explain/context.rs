//! Who owns each chain of a rendered ruleset (policy, profile, host endpoint) and, for policy and
//! profile chains, which API rule produced each iptables rule. Pure: derived from the NodeView
//! by rendering it a second time with every API rule tagged (an extra comment per rule changes
//! no match, action or rule count), so the numbering is exactly render's and stays so.

use crate::model::InterfaceName;
use crate::render::{self, marks::Marks, names, RenderError};
use crate::resolve::NodeView;
use crate::ruleset::{Family, Ruleset, TableName};
use serde::Serialize;
use std::collections::BTreeMap;

/// The annotation key that carries an API rule's index through render as a comment.
const INDEX_TAG: &str = "hostfw-explain-rule";

/// What kind of thing owns a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum OwnerKind {
    Policy {
        tier: String,
    },
    Profile,
    /// A host endpoint's chain: `hep` is the HostEndpoint name, `interface` its interface (`*`).
    Endpoint {
        interface: String,
    },
}

/// The owner of one chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainOwner {
    pub kind: OwnerKind,
    /// Policy, profile or HostEndpoint name.
    pub name: String,
    /// `ingress` or `egress` (endpoint chains: the direction of the chain).
    pub direction: String,
}

/// Everything explain needs besides the ruleset: the mark bits and the chain owners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    pub marks: Marks,
    pub owners: BTreeMap<String, ChainOwner>,
    /// Per (table, policy/profile chain): the API rule index of each iptables rule.
    pub rule_index: BTreeMap<(TableName, String), Vec<Option<usize>>>,
    /// Policies of kernel chains that are not ACCEPT (live mode); missing means ACCEPT, which
    /// is what hostfw's rendered hooks assume.
    pub kernel_policies: BTreeMap<(TableName, String), super::Verdict>,
}

impl Context {
    /// A context that knows only the mark bits (hand-built rulesets in tests).
    pub fn bare(marks: Marks) -> Context {
        Context {
            marks,
            owners: BTreeMap::new(),
            rule_index: BTreeMap::new(),
            kernel_policies: BTreeMap::new(),
        }
    }

    /// Owners and rule numbering for `view` rendered in `family`; `rendered` is the real render
    /// (the one explain evaluates), used to check the tagged render lines up with it.
    pub fn build(
        view: &NodeView,
        family: Family,
        rendered: &Ruleset,
    ) -> Result<Context, RenderError> {
        let marks = Marks::allocate(view.config.iptables_mark_mask)?;
        let mut owners = BTreeMap::new();
        for (name, policy) in &view.policies {
            for (prefix, direction) in [
                (names::POLICY_INBOUND_PFX, "ingress"),
                (names::POLICY_OUTBOUND_PFX, "egress"),
            ] {
                owners.insert(
                    names::policy_chain(prefix, name),
                    ChainOwner {
                        kind: OwnerKind::Policy {
                            tier: policy.tier.clone(),
                        },
                        name: name.clone(),
                        direction: direction.into(),
                    },
                );
            }
        }
        let mut profile_names: Vec<&String> = view.profiles.keys().collect();
        let default_allow = crate::model::DEFAULT_ALLOW_PROFILE.to_string();
        profile_names.push(&default_allow);
        for name in profile_names {
            for (prefix, direction) in [
                (names::PROFILE_INBOUND_PFX, "ingress"),
                (names::PROFILE_OUTBOUND_PFX, "egress"),
            ] {
                owners.insert(
                    names::profile_chain(prefix, name),
                    ChainOwner {
                        kind: OwnerKind::Profile,
                        name: name.clone(),
                        direction: direction.into(),
                    },
                );
            }
        }
        for ep in &view.endpoints {
            let (iface, shown) = match &ep.interface {
                InterfaceName::Named(n) => (n.as_str(), n.clone()),
                InterfaceName::Any => (names::ANY_INTERFACE, "*".to_string()),
            };
            for (prefix, direction) in [
                (names::FROM_HOST_ENDPOINT_PFX, "ingress"),
                (names::TO_HOST_ENDPOINT_PFX, "egress"),
                (names::FROM_HOST_ENDPOINT_FORWARD_PFX, "ingress"),
                (names::TO_HOST_ENDPOINT_FORWARD_PFX, "egress"),
            ] {
                owners.insert(
                    names::endpoint_chain(prefix, iface),
                    ChainOwner {
                        kind: OwnerKind::Endpoint {
                            interface: shown.clone(),
                        },
                        name: ep.hep.clone(),
                        direction: direction.into(),
                    },
                );
            }
        }
        let tagged = render::render(&tagged_view(view), family)?;
        let mut rule_index = BTreeMap::new();
        for (real, tag) in rendered.tables.iter().zip(&tagged.tables) {
            for (name, chain) in &real.chains {
                let owned = owners
                    .get(name)
                    .is_some_and(|o| !matches!(o.kind, OwnerKind::Endpoint { .. }));
                let Some(tagged_chain) = tag.chains.get(name) else {
                    continue;
                };
                if !owned || tagged_chain.rules.len() != chain.rules.len() {
                    continue;
                }
                let indexes = tagged_chain
                    .rules
                    .iter()
                    .map(|r| {
                        r.comments.iter().find_map(|c| {
                            c.strip_prefix(INDEX_TAG)
                                .and_then(|rest| rest.strip_prefix('='))
                                .and_then(|n| n.parse().ok())
                        })
                    })
                    .collect();
                rule_index.insert((real.name, name.clone()), indexes);
            }
        }
        Ok(Context {
            marks,
            owners,
            rule_index,
            kernel_policies: BTreeMap::new(),
        })
    }

    /// The API rule index behind rule `index` of `chain` in `table`.
    pub fn api_rule(&self, table: TableName, chain: &str, index: usize) -> Option<usize> {
        self.rule_index
            .get(&(table, chain.to_string()))
            .and_then(|v| v.get(index).copied().flatten())
    }
}

/// `view` with every policy and profile rule annotated with its own index.
fn tagged_view(view: &NodeView) -> NodeView {
    let mut tagged = view.clone();
    let tag = |rules: &mut Vec<crate::model::Rule>| {
        for (i, r) in rules.iter_mut().enumerate() {
            r.annotations.insert(INDEX_TAG.into(), i.to_string());
        }
    };
    for p in tagged.policies.values_mut() {
        tag(&mut p.ingress);
        tag(&mut p.egress);
    }
    for p in tagged.profiles.values_mut() {
        tag(&mut p.ingress);
        tag(&mut p.egress);
    }
    tagged
}
