//! This node's desired state, computed in one place: a validated policy set, the node's name,
//! the host's interfaces and a few choices the caller passes in as data (which families to
//! render, the SSH sessions the lockout guard protects) give the node view, the effective
//! configuration, one ruleset per family with its explain context (render's provenance: who
//! owns each chain, where each rule came from), the ipsets and the findings. Each family is
//! rendered once; the guard and `explain` evaluate packets against that render. Every command
//! and the daemon's engine call `compute`; nothing else resolves and renders. Pure: no files,
//! processes, clock or environment (the caller reads the host).

use crate::explain::Context;
use crate::finding::Finding;
use crate::guard::{self, Observed};
use crate::model::PolicySet;
use crate::render::marks::Marks;
use crate::render::{RenderError, RenderMemo};
use crate::resolve::{self, EffectiveConfig, HostInterfaces, NodeView};
use crate::ruleset::{Family, Ipset, Ruleset};

/// Which families to render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Families {
    /// What the configuration enables (`families`): what `apply`, `diff`, `check` and the
    /// daemon enforce.
    Enabled,
    /// One family whatever the configuration says (`render --family`, `explain`).
    Only(Family),
    /// None (`show` reports the view only).
    Nothing,
}

/// The caller's choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options<'a> {
    pub families: Families,
    /// The sessions and SSH ports the lockout guard protects; `None` runs no guard.
    pub guard: Option<&'a Observed>,
}

/// The outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub view: NodeView,
    /// In the order of `families`: IPv4 first.
    pub rulesets: Vec<Ruleset>,
    /// The explain context of each ruleset, in the same order.
    pub contexts: Vec<Context>,
    /// Resolution warnings first, then the guard's verdicts.
    pub findings: Vec<Finding>,
}

impl Desired {
    /// The effective FelixConfiguration for this node.
    pub fn config(&self) -> &EffectiveConfig {
        &self.view.config
    }

    /// The rendered ruleset of `family`, if it was rendered.
    pub fn ruleset(&self, family: Family) -> Option<&Ruleset> {
        self.rulesets.iter().find(|r| r.family == family)
    }

    /// The explain context of `family`'s ruleset, if it was rendered.
    pub fn context(&self, family: Family) -> Option<&Context> {
        self.rulesets
            .iter()
            .position(|r| r.family == family)
            .and_then(|i| self.contexts.get(i))
    }

    /// Every ipset the rulesets use, family by family.
    pub fn ipsets(&self) -> impl Iterator<Item = &Ipset> {
        self.rulesets.iter().flat_map(|r| r.ipsets.values())
    }

    /// The lockout guard's verdicts.
    pub fn guard_findings(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.kind.is_guard())
    }
}

/// The configuration asks for something the dataplane cannot express (e.g. a too-small mark
/// mask); the resolution warnings found before render refused are kept for the report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{cause}")]
pub struct Unrenderable {
    pub warnings: Vec<Finding>,
    pub cause: RenderError,
}

/// The families a configuration enforces: IPv4 always, IPv6 when `ipv6Support` is on.
pub fn families(config: &EffectiveConfig) -> Vec<Family> {
    if config.ipv6_support {
        vec![Family::V4, Family::V6]
    } else {
        vec![Family::V4]
    }
}

/// The desired state of `set` for `node` on a host with `interfaces`.
pub fn compute(
    set: &PolicySet,
    node: &str,
    interfaces: &HostInterfaces,
    options: Options,
) -> Result<Desired, Unrenderable> {
    compute_remembering(set, node, interfaces, options, &RenderMemo::default())
}

/// As `compute`, rendering with `memo` (`render::render_remembering`): a long-lived caller
/// keeps it across loads so an edit rebuilds only the endpoint chains it changed.
pub fn compute_remembering(
    set: &PolicySet,
    node: &str,
    interfaces: &HostInterfaces,
    options: Options,
    memo: &RenderMemo,
) -> Result<Desired, Unrenderable> {
    from_view(
        resolve::resolve(set, node, interfaces),
        interfaces,
        options,
        memo,
    )
}

/// As `compute`, dropping `set` before rendering: what this node does not use (other nodes'
/// endpoints, unreferenced policies and sets) is freed first.
pub fn compute_owned(
    set: PolicySet,
    node: &str,
    interfaces: &HostInterfaces,
    options: Options,
) -> Result<Desired, Unrenderable> {
    let view = resolve::resolve(&set, node, interfaces);
    drop(set);
    from_view(view, interfaces, options, &RenderMemo::default())
}

fn from_view(
    view: NodeView,
    interfaces: &HostInterfaces,
    options: Options,
    memo: &RenderMemo,
) -> Result<Desired, Unrenderable> {
    let wanted = match options.families {
        Families::Enabled => families(&view.config),
        Families::Only(family) => vec![family],
        Families::Nothing => Vec::new(),
    };
    let mut findings: Vec<Finding> = view.warnings.iter().map(Finding::warning).collect();
    let (rulesets, contexts) =
        render_families(&view, &wanted, memo).map_err(|cause| Unrenderable {
            warnings: findings.clone(),
            cause,
        })?;
    if let Some(observed) = options.guard {
        findings.extend(guard::check(
            &view, &rulesets, &contexts, interfaces, observed,
        ));
    }
    Ok(Desired {
        view,
        rulesets,
        contexts,
        findings,
    })
}

/// Each of `families` rendered once, with the explain context its provenance gives. The
/// families are independent, so each renders on its own thread: at 1,000 policies a family
/// takes ~75 ms, the largest part of what the daemon's reaction to an edit spends in hostfw.
fn render_families(
    view: &NodeView,
    families: &[Family],
    memo: &RenderMemo,
) -> Result<(Vec<Ruleset>, Vec<Context>), RenderError> {
    let marks = Marks::allocate(view.config.iptables_mark_mask)?;
    let rendered = crate::parallel::map(families, |&family| {
        crate::render::render_remembering(view, family, memo)
    });
    let mut rulesets = Vec::with_capacity(families.len());
    let mut contexts = Vec::with_capacity(families.len());
    for result in rendered {
        let (ruleset, provenance) = result?;
        rulesets.push(ruleset);
        contexts.push(Context::from_provenance(marks, provenance));
    }
    Ok((rulesets, contexts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finding::FindingKind;
    use crate::guard::SshSession;
    use crate::source::NamedText;

    const NODE: &str = "n1";

    const HEP: &str = "apiVersion: projectcalico.org/v3\nkind: HostEndpoint\n\
        metadata: {name: h-eth0}\nspec: {node: n1, interfaceName: eth0}\n---\n";

    const NO_IPV6: &str = "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\n\
        metadata: {name: default}\nspec: {ipv6Support: false}\n---\n";

    const NO_FAILSAFE: &str = "apiVersion: projectcalico.org/v3\nkind: FelixConfiguration\n\
        metadata: {name: default}\nspec: {failsafeInboundHostPorts: []}\n---\n";

    /// SSH from 198.51.100.0/24 denied, from anywhere else allowed.
    const DENY_SSH: &str = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\n\
        metadata: {name: deny-ssh}\nspec:\n  selector: all()\n  ingress:\n  \
        - {action: Deny, protocol: TCP, source: {nets: [198.51.100.0/24]}, destination: {ports: [22]}}\n  \
        - {action: Allow, protocol: TCP, destination: {ports: [22]}}\n---\n";

    /// Everything allowed both ways.
    const ALLOW_ALL: &str = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\n\
        metadata: {name: allow-all}\nspec:\n  selector: all()\n  ingress: [{action: Allow}]\n  \
        egress: [{action: Allow}]\n---\n";

    /// Nothing but the kubelet port: no inbound SSH from anywhere.
    const KUBELET_ONLY: &str = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\n\
        metadata: {name: kubelet-only}\nspec:\n  selector: all()\n  ingress:\n  \
        - {action: Allow, protocol: TCP, destination: {ports: [10250]}}\n---\n";

    fn set(yaml: &str) -> PolicySet {
        let loaded = crate::policy::load_sources(&[NamedText {
            name: "t.yaml".into(),
            text: yaml.into(),
        }]);
        loaded
            .set
            .unwrap_or_else(|| panic!("invalid: {:?}", loaded.diagnostics))
    }

    fn interfaces() -> HostInterfaces {
        let mut i = HostInterfaces::new();
        i.insert(
            "eth0".into(),
            vec![
                "198.51.100.1".parse().unwrap(),
                "2001:db8::1".parse().unwrap(),
            ],
        );
        i
    }

    fn admin() -> SshSession {
        guard::parse_ssh_connection("198.51.100.2 50022 198.51.100.1 22").expect("session")
    }

    /// One case: what, policies, the guard's sessions, the finding kinds expected.
    type Case<'a> = (&'a str, String, Option<&'a [SshSession]>, &'a [FindingKind]);

    fn compute_with(yaml: &str, families: Families, guard: Option<&[SshSession]>) -> Desired {
        let observed = guard.map(|s| Observed::from_sessions(s.to_vec()));
        let options = Options {
            families,
            guard: observed.as_ref(),
        };
        compute(&set(yaml), NODE, &interfaces(), options).expect("renders")
    }

    #[test]
    fn families_rendered() {
        use Family::{V4, V6};
        let cases: [(&str, &str, Families, &[Family]); 6] = [
            ("ipv6 on by default", HEP, Families::Enabled, &[V4, V6]),
            ("ipv6Support false", NO_IPV6, Families::Enabled, &[V4]),
            (
                "asked for v6 though disabled",
                NO_IPV6,
                Families::Only(V6),
                &[V6],
            ),
            ("asked for v4", HEP, Families::Only(V4), &[V4]),
            ("view only", HEP, Families::Nothing, &[]),
            (
                "no endpoint still renders",
                KUBELET_ONLY,
                Families::Enabled,
                &[V4, V6],
            ),
        ];
        for (what, yaml, families, want) in cases {
            let d = compute_with(yaml, families, None);
            let got: Vec<Family> = d.rulesets.iter().map(|r| r.family).collect();
            assert_eq!(got, want, "{what}");
            for family in want {
                assert!(d.ruleset(*family).is_some(), "{what}: {family:?}");
            }
        }
        assert_eq!(
            families(&compute_with(NO_IPV6, Families::Nothing, None).view.config),
            [V4]
        );
    }

    #[test]
    fn each_ruleset_comes_with_its_own_context() {
        use crate::render::provenance::OwnerKind;
        let d = compute_with(&format!("{HEP}{ALLOW_ALL}"), Families::Enabled, None);
        assert_eq!(d.contexts.len(), d.rulesets.len());
        for family in [Family::V4, Family::V6] {
            let ctx = d.context(family).expect("context");
            let owner = ctx
                .owner("cali-pi-gnp/allow-all")
                .expect("policy chain owned");
            assert_eq!(owner.name, "allow-all", "{family:?}");
            assert!(matches!(owner.kind, OwnerKind::Policy { .. }), "{family:?}");
            let rs = d.ruleset(family).expect("ruleset");
            let filter = rs
                .tables
                .iter()
                .find(|t| t.name == crate::ruleset::TableName::Filter)
                .expect("filter");
            assert!(filter.chains.contains_key("cali-pi-gnp/allow-all"));
        }
        let view_only = compute_with(HEP, Families::Nothing, None);
        assert!(view_only.context(Family::V4).is_none());
    }

    #[test]
    fn guard_verdicts() {
        let session = [admin()];
        let cases: [Case; 6] = [
            (
                "failsafe ports keep SSH open",
                format!("{DENY_SSH}{HEP}"),
                Some(&session),
                &[],
            ),
            (
                "the admin's net is denied",
                format!("{NO_FAILSAFE}{DENY_SSH}{HEP}"),
                Some(&session),
                &[FindingKind::Lockout],
            ),
            (
                "others may still log in",
                format!("{NO_FAILSAFE}{DENY_SSH}{HEP}"),
                Some(&[]),
                &[],
            ),
            (
                "no SSH from anywhere",
                format!("{NO_FAILSAFE}{KUBELET_ONLY}{HEP}"),
                Some(&[]),
                &[FindingKind::Unreachable],
            ),
            (
                "no SSH, and the admin is cut off",
                format!("{NO_FAILSAFE}{KUBELET_ONLY}{HEP}"),
                Some(&session),
                &[FindingKind::Lockout, FindingKind::Unreachable],
            ),
            (
                "guard not asked for",
                format!("{NO_FAILSAFE}{KUBELET_ONLY}{HEP}"),
                None,
                &[],
            ),
        ];
        for (what, yaml, guard, want) in cases {
            let d = compute_with(&yaml, Families::Enabled, guard);
            let got: Vec<FindingKind> = d.guard_findings().map(|f| f.kind).collect();
            assert_eq!(got, want, "{what}: {:?}", d.findings);
        }
    }

    #[test]
    fn resolution_warnings_come_first_as_findings() {
        let none_here = "apiVersion: projectcalico.org/v3\nkind: HostEndpoint\n\
            metadata: {name: h-other}\nspec: {node: other, interfaceName: eth0}\n";
        let cases: [Case; 3] = [
            (
                "an endpoint here, policy both ways",
                format!("{ALLOW_ALL}{HEP}"),
                Some(&[]),
                &[],
            ),
            (
                "no endpoint on this node",
                none_here.to_string(),
                Some(&[]),
                &[FindingKind::Warning],
            ),
            (
                // No egress policy; resolve's static SSH warning; the guard's verdict.
                "warnings, then the guard",
                format!("{NO_FAILSAFE}{KUBELET_ONLY}{HEP}"),
                Some(&[]),
                &[
                    FindingKind::Warning,
                    FindingKind::Warning,
                    FindingKind::Unreachable,
                ],
            ),
        ];
        for (what, yaml, guard, want) in cases {
            let d = compute_with(&yaml, Families::Enabled, guard);
            let kinds: Vec<FindingKind> = d.findings.iter().map(|f| f.kind).collect();
            assert_eq!(kinds, want, "{what}: {:?}", d.findings);
            let warnings: Vec<&str> = d
                .findings
                .iter()
                .filter(|f| f.kind == FindingKind::Warning)
                .map(|f| f.message.as_str())
                .collect();
            assert_eq!(warnings, d.view.warnings, "{what}");
        }
    }

    #[test]
    fn ipsets_are_the_rulesets_sets() {
        let yaml = format!(
            "{HEP}apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\n\
             metadata: {{name: admins, labels: {{role: admin}}}}\nspec: {{nets: [203.0.113.0/24]}}\n---\n\
             apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: from-admins}}\n\
             spec:\n  selector: all()\n  ingress:\n  - {{action: Allow, source: {{selector: role == 'admin'}}}}\n"
        );
        let d = compute_with(&yaml, Families::Only(Family::V4), None);
        let names: Vec<&String> = d.ruleset(Family::V4).expect("v4").ipsets.keys().collect();
        assert!(!names.is_empty());
        assert_eq!(d.ipsets().count(), names.len());
    }
}
