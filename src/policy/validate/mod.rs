//! Raw resources to the typed model with Calico v3.32.1 validation; every diagnostic collected.
//! Pure. This file dispatches on `kind`, checks metadata and cross-resource rules (duplicate
//! names, tiers that must exist) and the HostEndpoint, GlobalNetworkPolicy, GlobalNetworkSet,
//! Profile and Tier specs; rules live in `rule`, the
//! FelixConfiguration subset in `felix`, the field reader and YAML 1.1 policy in `reader`.

mod felix;
mod names;
mod reader;
mod rule;

use crate::diag::Diagnostic;
use crate::model::selector::Selector;
use crate::model::{
    EndpointPort, GlobalNetworkPolicy, GlobalNetworkSet, HostEndpoint, InterfaceName, Labels, Meta,
    Origin, PolicySet, PolicyTypes, Profile, Protocol, Tier, TierAction, BUILT_IN_PASS_TIERS,
    DEFAULT_ALLOW_PROFILE, DEFAULT_TIER, DEFAULT_TIER_ORDER,
};
use crate::policy::parse::{Node, RawResource, API_VERSION};
use ipnet::IpNet;
use names::{is_dns_label, label_key_problem, label_value_problem, name_problem};
use reader::{
    boolean, each_string, fields, integer, list, number, string, string_map, Ctx, FieldPath, Schema,
};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The kinds hostfw enforces.
const SUPPORTED_KINDS: [&str; 6] = [
    "HostEndpoint",
    "GlobalNetworkPolicy",
    "GlobalNetworkSet",
    "Profile",
    "Tier",
    "FelixConfiguration",
];
/// Namespaced Calico kinds: they only make sense inside a Kubernetes cluster. Errors, never
/// silently ignored (an ignored deny would open traffic).
const NAMESPACED_KINDS: [&str; 6] = [
    "NetworkPolicy",
    "NetworkSet",
    "StagedNetworkPolicy",
    "StagedKubernetesNetworkPolicy",
    "WorkloadEndpoint",
    "KubernetesNetworkPolicy",
];
/// Cluster plumbing kinds with no meaning on a standalone host: warned about and ignored.
const IGNORED_KINDS: [&str; 12] = [
    "IPPool",
    "IPReservation",
    "BGPConfiguration",
    "BGPPeer",
    "BGPFilter",
    "ClusterInformation",
    "Node",
    "KubeControllersConfiguration",
    "CalicoNodeStatus",
    "IPAMConfiguration",
    "BlockAffinity",
    "StagedGlobalNetworkPolicy",
];

const TOP: Schema<'static> = Schema {
    known: &["apiVersion", "kind", "metadata", "spec"],
    exact: &["apiVersion", "kind"],
    ignored: &[],
    silent: &[],
};
const METADATA: Schema<'static> = Schema {
    known: &["name", "namespace", "labels", "annotations"],
    exact: &[],
    ignored: &[],
    // Kept by calicoctl only as far as decoding goes: valid ObjectMeta fields, then dropped.
    silent: &[
        "generateName",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "ownerReferences",
        "finalizers",
        "managedFields",
    ],
};

/// Validate every resource. The set is complete only when no error diagnostic was produced;
/// the caller (`policy::load_sources`) enforces all-or-nothing.
pub fn validate(resources: &[RawResource]) -> (PolicySet, Vec<Diagnostic>) {
    let mut v = Validator::default();
    for r in resources {
        v.add(r);
    }
    v.finish()
}

/// What one file's resources contribute, validated on their own: each resource depends only
/// on itself, so a file whose text did not change validates to the same part, which a loader
/// may keep and merge again instead of validating the file again. The checks across files
/// (duplicate names, tiers that must exist) are the merge's (`Validator::merge`) and `finish`'s.
#[derive(Debug, Clone, Default)]
pub struct FilePart {
    set: PolicySet,
    diags: Vec<Diagnostic>,
    /// Every resource with valid metadata, in file order, for the duplicate-name check.
    defined: Vec<Definition>,
    /// Tier references to check once every Tier is known: (tier, diagnostic if missing).
    tier_refs: Vec<(String, Diagnostic)>,
}

/// A resource's (kind, name), where it is defined, and where a second definition's error
/// points (its `metadata.name`).
#[derive(Debug, Clone)]
struct Definition {
    kind: &'static str,
    meta_name: String,
    origin: Origin,
    /// The file and the metadata.name text as the resource spelled it (the error's context).
    file: String,
    name_text: Option<String>,
    at: (u32, u32),
}

impl FilePart {
    /// Validate the resources of one file (`selectors`: see `Ctx::selectors`).
    pub fn validate(
        resources: &[RawResource],
        selectors: &mut std::collections::HashMap<String, Selector>,
    ) -> FilePart {
        let mut part = FilePart::default();
        for r in resources {
            part.add(r, selectors);
        }
        part
    }

    /// Validate one resource into this part.
    fn add(
        &mut self,
        r: &RawResource,
        selectors: &mut std::collections::HashMap<String, Selector>,
    ) {
        let node = &r.node;
        let kind_text = node.get_text("kind");
        let name_text = node.get("metadata").and_then(|m| m.get_text("name"));
        let kind = kind_text.and_then(|k| SUPPORTED_KINDS.iter().find(|s| **s == k).copied());
        let mut ctx = Ctx {
            file: &r.file,
            kind: kind_text,
            name: name_text,
            diags: &mut self.diags,
            errors: 0,
            selectors,
        };
        let root = FieldPath::ROOT;
        let Some(top) = fields(&mut ctx, node, &root, &TOP) else {
            return;
        };
        // apiVersion and kind first: without a known type nothing else can be judged.
        let api = top
            .get("apiVersion")
            .and_then(|n| n.as_scalar())
            .map(|s| &*s.text);
        match (kind_text, top.get("kind")) {
            (None, _) | (_, None) => {
                ctx.kind = None;
                ctx.error(
                    node,
                    &root.field("kind"),
                    "`kind` is required (e.g. GlobalNetworkPolicy)",
                );
                return;
            }
            (Some(k), Some(kn)) => {
                if api != Some(API_VERSION) {
                    let at = top.get("apiVersion").unwrap_or(node);
                    let found = api.map(|a| format!(", found `{a}`")).unwrap_or_default();
                    let hint = match api {
                        Some("v1") => " (Calico v1/v2 resources must be converted to v3)",
                        Some("crd.projectcalico.org/v1") => {
                            " (the CRD group is for the Kubernetes API server, not for files)"
                        }
                        _ => "",
                    };
                    ctx.error(
                        at,
                        &root.field("apiVersion"),
                        format!("apiVersion must be `{API_VERSION}`{found}{hint}"),
                    );
                    return;
                }
                if kind.is_none() {
                    Validator::other_kind(&mut ctx, k, kn);
                    return;
                }
            }
        }
        let Some(kind) = kind else { return };
        let origin = Origin {
            file: r.file.clone(),
            line: node.line,
            column: node.column,
        };
        let mpath = root.field("metadata");
        let meta = match top.get("metadata") {
            Some(m) => metadata(&mut ctx, m, &mpath, kind, origin),
            None => {
                ctx.error(node, &mpath.field("name"), "metadata.name is required");
                None
            }
        };
        if let Some(meta) = &meta {
            let at = node
                .get("metadata")
                .and_then(|m| m.get("name"))
                .unwrap_or(node);
            self.defined.push(Definition {
                kind,
                meta_name: meta.name.clone(),
                origin: meta.origin.clone(),
                file: r.file.clone(),
                name_text: name_text.map(str::to_string),
                at: (at.line, at.column),
            });
        }
        let spec = top.get("spec");
        let spath = root.field("spec");
        // Each kind's spec is read (and its errors reported) even when the metadata was
        // invalid; the resource joins the set only when both are valid. The kind functions
        // build their value with a placeholder Meta that is replaced here.
        let set = &mut self.set;
        match kind {
            "HostEndpoint" => {
                if let (Some(hep), Some(meta)) = (host_endpoint(&mut ctx, node, spec, &spath), meta)
                {
                    set.host_endpoints.push(HostEndpoint { meta, ..hep });
                }
            }
            "GlobalNetworkPolicy" => {
                let gnp = policy(&mut ctx, node, spec, &spath, &mut self.tier_refs);
                if let (Some(gnp), Some(meta)) = (gnp, meta) {
                    set.policies
                        .push(Arc::new(GlobalNetworkPolicy { meta, ..gnp }));
                }
            }
            "GlobalNetworkSet" => {
                if let (Some(nets), Some(meta)) = (network_set(&mut ctx, spec, &spath), meta) {
                    set.network_sets
                        .push(Arc::new(GlobalNetworkSet { meta, nets }));
                }
            }
            "Profile" => {
                if let (Some(p), Some(meta)) = (profile(&mut ctx, spec, &spath), meta) {
                    set.profiles.push(Profile { meta, ..p });
                }
            }
            "Tier" => {
                let fixed_order = meta.as_ref().and_then(|m| fixed_tier_order(&m.name));
                let t = tier(&mut ctx, node, spec, &spath, fixed_order);
                if let (Some(t), Some(meta)) = (t, meta) {
                    set.tiers.push(Tier { meta, ..t });
                }
            }
            _ => {
                if let (Some(spec), Some(meta)) = (felix::felix_spec(&mut ctx, spec, &spath), meta)
                {
                    set.felix_configs
                        .push(crate::model::FelixConfiguration { meta, spec });
                }
            }
        }
    }
}

/// Whole-set validation: file parts merged in load order, then `finish` for the checks that
/// need every resource. Resources can also be fed one at a time (`add`).
#[derive(Default)]
pub struct Validator {
    set: PolicySet,
    diags: Vec<Diagnostic>,
    /// First definition of each (kind, name), for the duplicate-name error.
    seen: BTreeMap<(&'static str, String), Origin>,
    /// Tier references to check once every Tier is known: (tier, diagnostic if missing).
    tier_refs: Vec<(String, Diagnostic)>,
    /// Parsed selectors by text (see `Ctx::selectors`).
    selectors: std::collections::HashMap<String, Selector>,
}

impl Validator {
    /// Validate one resource into the set under construction.
    pub fn add(&mut self, r: &RawResource) {
        let part = FilePart::validate(std::slice::from_ref(r), &mut self.selectors);
        self.merge(part);
    }

    /// Validate the resources of one file on their own, sharing this validator's selector
    /// cache; `merge` adds the result to the set.
    pub fn validate_file(&mut self, resources: &[RawResource]) -> FilePart {
        FilePart::validate(resources, &mut self.selectors)
    }

    /// Add one file's part: its resources and diagnostics, and a duplicate-name error for each
    /// resource already defined by an earlier part (or earlier in the same one).
    pub fn merge(&mut self, part: FilePart) {
        let FilePart {
            set,
            mut diags,
            defined,
            mut tier_refs,
        } = part;
        self.diags.append(&mut diags);
        for d in defined {
            check_duplicate(&mut self.seen, &mut self.diags, d);
        }
        self.tier_refs.append(&mut tier_refs);
        let PolicySet {
            mut host_endpoints,
            mut policies,
            mut network_sets,
            mut profiles,
            mut tiers,
            mut felix_configs,
        } = set;
        let s = &mut self.set;
        s.host_endpoints.append(&mut host_endpoints);
        s.policies.append(&mut policies);
        s.network_sets.append(&mut network_sets);
        s.profiles.append(&mut profiles);
        s.tiers.append(&mut tiers);
        s.felix_configs.append(&mut felix_configs);
    }

    /// A kind that is not one of the six: namespaced kinds are errors, cluster plumbing is
    /// ignored with a warning, anything else is unknown.
    fn other_kind(ctx: &mut Ctx, kind: &str, at: &Node) {
        let path = FieldPath::ROOT.field("kind");
        if NAMESPACED_KINDS.contains(&kind) {
            ctx.error(
                at,
                &path,
                format!(
                    "{kind} is a namespaced (Kubernetes-only) kind and cannot be enforced on a \
                     standalone host; use GlobalNetworkPolicy/GlobalNetworkSet instead"
                ),
            );
        } else if IGNORED_KINDS.contains(&kind) {
            ctx.warn(
                at,
                &path,
                format!("{kind} has no meaning for a standalone host firewall; ignored"),
            );
        } else {
            let all = SUPPORTED_KINDS
                .iter()
                .chain(NAMESPACED_KINDS.iter())
                .chain(IGNORED_KINDS.iter());
            let case_match = SUPPORTED_KINDS
                .iter()
                .chain(NAMESPACED_KINDS.iter())
                .chain(IGNORED_KINDS.iter())
                .find(|k| k.eq_ignore_ascii_case(kind));
            let hint = match case_match {
                Some(k) => format!("; kinds are case-sensitive: write `{k}`"),
                None => reader::suggest(kind, all)
                    .map(|k| format!("; did you mean `{k}`?"))
                    .unwrap_or_default(),
            };
            ctx.error(at, &path, format!("unknown kind `{kind}`{hint}"));
        }
    }

    /// Cross-resource checks (tiers that must exist), the implicit default tier, and the set
    /// with every Vec sorted by name.
    pub fn finish(mut self) -> (PolicySet, Vec<Diagnostic>) {
        let built_in = [(DEFAULT_TIER, DEFAULT_TIER_ORDER, TierAction::Deny)]
            .into_iter()
            .chain(
                BUILT_IN_PASS_TIERS
                    .iter()
                    .map(|&(name, order)| (name, order, TierAction::Pass)),
            );
        for (name, order, default_action) in built_in {
            if !self.set.tiers.iter().any(|t| t.meta.name == name) {
                self.set.tiers.push(Tier {
                    meta: Meta {
                        name: name.to_string(),
                        ..empty_meta()
                    },
                    order: Some(order),
                    default_action,
                });
            }
        }
        for (tier, diag) in self.tier_refs {
            if !self.set.tiers.iter().any(|t| t.meta.name == tier) {
                self.diags.push(diag);
            }
        }
        let s = &mut self.set;
        s.host_endpoints
            .sort_by(|a, b| a.meta.name.cmp(&b.meta.name));
        s.policies.sort_by(|a, b| a.meta.name.cmp(&b.meta.name));
        s.network_sets.sort_by(|a, b| a.meta.name.cmp(&b.meta.name));
        s.profiles.sort_by(|a, b| a.meta.name.cmp(&b.meta.name));
        s.tiers.sort_by(|a, b| a.meta.name.cmp(&b.meta.name));
        s.felix_configs
            .sort_by(|a, b| a.meta.name.cmp(&b.meta.name));
        (self.set, self.diags)
    }
}

/// A second definition of a (kind, name) is an error at the second, naming the first.
fn check_duplicate(
    seen: &mut BTreeMap<(&'static str, String), Origin>,
    diags: &mut Vec<Diagnostic>,
    d: Definition,
) {
    let key = (d.kind, d.meta_name);
    match seen.get(&key) {
        Some(first) => {
            let (line, column) = d.at;
            diags.push(Diagnostic {
                file: d.file,
                line,
                column,
                severity: crate::diag::Severity::Error,
                kind: Some(d.kind.to_string()),
                name: d.name_text,
                field: FieldPath::ROOT.field("metadata").field("name").render(),
                message: format!(
                    "duplicate {} `{}`: also defined at {}:{}:{}",
                    d.kind, key.1, first.file, first.line, first.column
                ),
            });
        }
        None => {
            seen.insert(key, d.origin);
        }
    }
}

/// `metadata`: name (per-kind rules), labels, annotations; `namespace` is refused.
fn metadata(
    ctx: &mut Ctx,
    node: &Node,
    path: &FieldPath,
    kind: &str,
    origin: Origin,
) -> Option<Meta> {
    let f = fields(ctx, node, path, &METADATA)?;
    let before = ctx.errors;
    let npath = path.field("name");
    let name = match f.get("name") {
        None => {
            ctx.error(node, &npath, "metadata.name is required");
            None
        }
        Some(n) => string(ctx, n, &npath).and_then(|name| match name_rule(kind, name) {
            Some(problem) => {
                ctx.error(n, &npath, problem);
                None
            }
            None => Some(name.to_string()),
        }),
    };
    if let Some(n) = f.get("namespace") {
        ctx.error(
            n,
            &path.field("namespace"),
            format!("{kind} is cluster-scoped: namespace should not be specified"),
        );
    }
    let labels = f
        .get("labels")
        .map(|n| labels(ctx, n, &path.field("labels")))
        .unwrap_or_default();
    if kind == "GlobalNetworkSet" && labels.contains_key("projectcalico.org/namespace") {
        if let Some(n) = f.get("labels") {
            ctx.error(
                n,
                &path.field("labels").key("projectcalico.org/namespace"),
                "the label projectcalico.org/namespace is reserved and not allowed on a GlobalNetworkSet",
            );
        }
    }
    let annotations = f
        .get("annotations")
        .map(|n| rule::annotations(ctx, n, &path.field("annotations")))
        .unwrap_or_default();
    if ctx.errors > before {
        return None;
    }
    Some(Meta {
        name: name?,
        labels,
        annotations,
        origin,
    })
}

/// Kind-specific name rules on top of the DNS-subdomain rule.
fn name_rule(kind: &str, name: &str) -> Option<String> {
    if let Some(p) = name_problem(name) {
        return Some(p);
    }
    match kind {
        "GlobalNetworkPolicy" => {
            let parts: Vec<&str> = name.split('.').collect();
            if parts.len() > 2 || !parts.iter().all(|p| is_dns_label(p)) {
                return Some(format!(
                    "`{name}` is not a valid GlobalNetworkPolicy name: one DNS label, optionally \
                     preceded by one label and a dot (e.g. `allow-ssh` or `default.allow-ssh`)"
                ));
            }
        }
        "Tier" if !is_dns_label(name) => {
            return Some(format!(
                "`{name}` is not a valid Tier name: one DNS label (lowercase letters, digits \
                 and `-`, at most 63 characters, no dots)"
            ));
        }
        "Profile" if name == DEFAULT_ALLOW_PROFILE => {
            return Some(format!(
                "the profile `{DEFAULT_ALLOW_PROFILE}` is built in (it allows everything) and \
                 cannot be defined"
            ));
        }
        "FelixConfiguration" => {
            let ok = name == "default"
                || name
                    .strip_prefix("node.")
                    .is_some_and(|n| name_problem(n).is_none());
            if !ok {
                return Some(format!(
                    "FelixConfiguration `{name}`: the name must be `default` or `node.<nodename>`"
                ));
            }
        }
        _ => {}
    }
    None
}

/// A label map (metadata.labels, labelsToApply): qualified keys, valid values.
fn labels(ctx: &mut Ctx, node: &Node, path: &FieldPath) -> Labels {
    let Some(entries) = string_map(ctx, node, path) else {
        return Labels::new();
    };
    let mut out = Labels::new();
    for (k, key, v, value) in entries {
        let kp = path.key(key);
        if let Some(p) = label_key_problem(key) {
            ctx.error(k, &kp, p);
            continue;
        }
        if let Some(p) = label_value_problem(value) {
            ctx.error(v, &kp, p);
            continue;
        }
        out.insert(key.to_string(), value.to_string());
    }
    out
}

/// A required `spec`; reported at the resource when missing.
fn require_spec<'n>(
    ctx: &mut Ctx,
    node: &Node,
    spec: Option<&'n Node<'n>>,
    path: &FieldPath,
) -> Option<&'n Node<'n>> {
    if spec.is_none() {
        ctx.error(node, path, "spec is required");
    }
    spec
}

const HEP: Schema<'static> =
    Schema::of(&["node", "interfaceName", "expectedIPs", "profiles", "ports"]);
const ENDPOINT_PORT: Schema<'static> = Schema::of(&["name", "protocol", "port"]);

/// The placeholder `Meta` of a value built before its metadata is attached (see `add`).
fn empty_meta() -> Meta {
    Meta {
        name: String::new(),
        labels: Labels::new(),
        annotations: Labels::new(),
        origin: Origin {
            file: String::new(),
            line: 0,
            column: 0,
        },
    }
}

fn host_endpoint(
    ctx: &mut Ctx,
    res: &Node,
    spec: Option<&Node>,
    path: &FieldPath,
) -> Option<HostEndpoint> {
    let spec = require_spec(ctx, res, spec, path)?;
    let f = fields(ctx, spec, path, &HEP)?;
    let before = ctx.errors;
    let npath = path.field("node");
    let node_name = match f.get("node") {
        None => {
            ctx.error(
                spec,
                &npath,
                "node is required (the name of the host this endpoint belongs to)",
            );
            None
        }
        Some(n) => string(ctx, n, &npath).and_then(|s| {
            if let Some(p) = name_problem(s) {
                ctx.error(n, &npath, format!("invalid node name: {p}"));
                None
            } else {
                Some(s.to_string())
            }
        }),
    };
    let ipath = path.field("interfaceName");
    let interface = f.get("interfaceName").and_then(|n| {
        let s = string(ctx, n, &ipath)?;
        if s.is_empty() {
            None
        } else if s == "*" {
            Some(InterfaceName::Any)
        } else if s.len() <= 15
            && s.bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
        {
            Some(InterfaceName::Named(s.to_string()))
        } else {
            ctx.error(
                n,
                &ipath,
                format!(
                    "interfaceName `{s}` is invalid: `*` or 1-15 characters of letters, digits, \
                     `_`, `.` and `-`"
                ),
            );
            None
        }
    });
    let epath = path.field("expectedIPs");
    let mut expected_ips = Vec::new();
    each_string(
        ctx,
        f.get("expectedIPs"),
        &epath,
        |ctx, item, p, s| match names::parse_ip(s) {
            Some(ip) => expected_ips.push(ip),
            None => {
                let hint = if s.contains('/') {
                    " (expectedIPs are single addresses, not CIDRs)"
                } else {
                    ""
                };
                ctx.error(item, p, format!("`{s}` is not an IP address{hint}"));
            }
        },
    );
    let ppath = path.field("profiles");
    let mut profiles = Vec::new();
    each_string(
        ctx,
        f.get("profiles"),
        &ppath,
        |ctx, item, p, s| match name_problem(s) {
            Some(problem) => ctx.error(item, p, format!("invalid profile name: {problem}")),
            None => profiles.push(s.to_string()),
        },
    );
    let portpath = path.field("ports");
    let mut ports = Vec::new();
    if let Some(n) = f.get("ports") {
        if let Some(items) = list(ctx, n, &portpath) {
            for (i, item) in items.iter().enumerate() {
                if let Some(p) = endpoint_port(ctx, item, &portpath.index(i)) {
                    ports.push(p);
                }
            }
        }
    }
    // Judged on what was written, so an invalid value elsewhere does not hide this error.
    let iface_written = f
        .get("interfaceName")
        .and_then(|n| n.as_scalar())
        .is_some_and(|s| !s.text.is_empty());
    let ips_written = f.get("expectedIPs").is_some_and(has_items);
    if !iface_written && !ips_written {
        ctx.error(
            spec,
            path,
            "a HostEndpoint needs interfaceName or expectedIPs (or both)",
        );
    }
    if ctx.errors > before {
        return None;
    }
    Some(HostEndpoint {
        meta: empty_meta(),
        node: node_name?,
        interface,
        expected_ips,
        profiles,
        ports,
    })
}

fn endpoint_port(ctx: &mut Ctx, node: &Node, path: &FieldPath) -> Option<EndpointPort> {
    let f = fields(ctx, node, path, &ENDPOINT_PORT)?;
    let npath = path.field("name");
    let name = match f.get("name") {
        None => {
            ctx.error(node, &npath, "port name is required");
            None
        }
        Some(n) => string(ctx, n, &npath).and_then(|s| match names::iana_problem(s) {
            Some(p) => {
                ctx.error(n, &npath, p);
                None
            }
            None => Some(s.to_string()),
        }),
    };
    let prpath = path.field("protocol");
    let protocol = match f.get("protocol") {
        None => {
            ctx.error(node, &prpath, "protocol is required (TCP, UDP or SCTP)");
            None
        }
        Some(n) => rule::protocol_value(ctx, n, &prpath).and_then(|p: Protocol| {
            if p.supports_ports() {
                Some(p)
            } else {
                ctx.error(
                    n,
                    &prpath,
                    "a named port's protocol must be TCP, UDP or SCTP",
                );
                None
            }
        }),
    };
    let pp = path.field("port");
    let port = match f.get("port") {
        None => {
            ctx.error(node, &pp, "port is required (1-65535)");
            None
        }
        Some(n) => integer(ctx, n, &pp, 0, 65535).and_then(|v| {
            if v == 0 {
                ctx.error(n, &pp, "port 0 is not allowed (1-65535)");
                None
            } else {
                Some(v as u16)
            }
        }),
    };
    Some(EndpointPort {
        name: name?,
        protocol: protocol?,
        port: port?,
    })
}

const GNP: Schema<'static> = Schema::of(&[
    "order",
    "tier",
    "selector",
    "types",
    "ingress",
    "egress",
    "doNotTrack",
    "preDNAT",
    "applyOnForward",
    "namespaceSelector",
    "serviceAccountSelector",
    "performanceHints",
]);

fn policy(
    ctx: &mut Ctx,
    res: &Node,
    spec: Option<&Node>,
    path: &FieldPath,
    tier_refs: &mut Vec<(String, Diagnostic)>,
) -> Option<GlobalNetworkPolicy> {
    // An absent spec is a policy with no rules: valid in Calico (selects all(), Ingress).
    let null = Node::null(res.line, res.column);
    let spec = spec.unwrap_or(&null);
    let f = fields(ctx, spec, path, &GNP)?;
    let before = ctx.errors;
    let order = f
        .get("order")
        .and_then(|n| number(ctx, n, &path.field("order")));
    let tpath = path.field("tier");
    let tier = match f.get("tier") {
        None => DEFAULT_TIER.to_string(),
        Some(n) => match string(ctx, n, &tpath) {
            Some("") => DEFAULT_TIER.to_string(),
            Some(t) if is_dns_label(t) => {
                if t != DEFAULT_TIER {
                    let mut d = Diagnostic::file_error(
                        ctx.file,
                        format!("tier `{t}` does not exist: define it with a Tier resource"),
                    );
                    d.line = n.line;
                    d.column = n.column;
                    d.kind = ctx.kind.map(str::to_string);
                    d.name = ctx.name.map(str::to_string);
                    d.field = tpath.render();
                    tier_refs.push((t.to_string(), d));
                }
                t.to_string()
            }
            Some(t) => {
                ctx.error(n, &tpath, format!("`{t}` is not a valid tier name"));
                String::new()
            }
            None => String::new(),
        },
    };
    let selector = match f.get("selector") {
        None => Selector::all(),
        Some(n) => rule::selector(ctx, n, &path.field("selector"))
            .flatten()
            .unwrap_or_else(Selector::all),
    };
    let typath = path.field("types");
    let mut types_given: Option<(bool, bool)> = None;
    if let Some(n) = f.get("types") {
        if let Some(items) = list(ctx, n, &typath) {
            let (mut ing, mut eg) = (false, false);
            for (i, item) in items.iter().enumerate() {
                let p = typath.index(i);
                let Some(t) = string(ctx, item, &p) else {
                    continue;
                };
                let slot = match t {
                    "Ingress" => &mut ing,
                    "Egress" => &mut eg,
                    other => {
                        ctx.error(item, &p, format!("policy type `{other}` is invalid: use Ingress or Egress (case-sensitive)"));
                        continue;
                    }
                };
                if *slot {
                    ctx.error(item, &p, format!("policy type `{t}` is listed twice"));
                }
                *slot = true;
            }
            if !items.is_empty() {
                types_given = Some((ing, eg));
            }
        }
    }
    let ingress = rule::rules(ctx, f.get("ingress"), &path.field("ingress"));
    let egress = rule::rules(ctx, f.get("egress"), &path.field("egress"));
    let has_ingress = f.get("ingress").is_some_and(has_items);
    let has_egress = f.get("egress").is_some_and(has_items);
    let types = match types_given {
        Some((ingress, egress)) => PolicyTypes { ingress, egress },
        None => PolicyTypes {
            ingress: has_ingress || !has_egress,
            egress: has_egress,
        },
    };
    let flag = |ctx: &mut Ctx, name: &str| {
        f.get(name)
            .and_then(|n| boolean(ctx, n, &path.field(name)))
            .unwrap_or(false)
    };
    let do_not_track = flag(ctx, "doNotTrack");
    let pre_dnat = flag(ctx, "preDNAT");
    let apply_on_forward = flag(ctx, "applyOnForward");
    if pre_dnat && do_not_track {
        ctx.error(
            f.get("preDNAT").unwrap_or(spec),
            &path.field("preDNAT"),
            "preDNAT and doNotTrack cannot both be true",
        );
    }
    if pre_dnat && has_egress {
        ctx.error(
            f.get("egress").unwrap_or(spec),
            &path.field("egress"),
            "a preDNAT policy cannot have egress rules (preDNAT applies to incoming traffic only)",
        );
    }
    if pre_dnat && types_given.is_some_and(|(_, e)| e) {
        ctx.error(
            f.get("types").unwrap_or(spec),
            &typath,
            "a preDNAT policy cannot have type Egress",
        );
    }
    for (on, name) in [(pre_dnat, "preDNAT"), (do_not_track, "doNotTrack")] {
        if on && !apply_on_forward {
            ctx.error(
                f.get(name).unwrap_or(spec),
                &path.field(name),
                format!("{name} requires applyOnForward: true"),
            );
        }
    }
    for name in ["namespaceSelector", "serviceAccountSelector"] {
        if let Some(n) = f.get(name) {
            let p = path.field(name);
            if string(ctx, n, &p).is_some_and(|s| !s.trim().is_empty()) {
                ctx.error(
                    n,
                    &p,
                    format!(
                        "{name} selects Kubernetes namespaces or service accounts, which host \
                         endpoints do not have; hostfw rejects it rather than guess"
                    ),
                );
            }
        }
    }
    let mut assume_needed_on_every_node = false;
    if let Some(n) = f.get("performanceHints") {
        let p = path.field("performanceHints");
        if let Some(items) = list(ctx, n, &p) {
            let seen = &mut assume_needed_on_every_node;
            for (i, item) in items.iter().enumerate() {
                let ip = p.index(i);
                match string(ctx, item, &ip) {
                    Some("AssumeNeededOnEveryNode") if *seen => {
                        ctx.error(item, &ip, "AssumeNeededOnEveryNode is listed twice")
                    }
                    Some("AssumeNeededOnEveryNode") => *seen = true,
                    Some(other) => ctx.error(
                        item,
                        &ip,
                        format!("performance hint `{other}` is invalid: the only hint is AssumeNeededOnEveryNode"),
                    ),
                    None => {}
                }
            }
        }
    }
    if ctx.errors > before {
        return None;
    }
    Some(GlobalNetworkPolicy {
        meta: empty_meta(),
        tier,
        order,
        selector,
        types,
        ingress,
        egress,
        do_not_track,
        pre_dnat,
        apply_on_forward,
        assume_needed_on_every_node,
    })
}

fn has_items(n: &Node) -> bool {
    matches!(&n.value, crate::policy::parse::Value::Seq(items) if !items.is_empty())
}

const GNS: Schema<'static> = Schema::of(&["nets"]);

/// GlobalNetworkSet nets: CIDRs or bare IPs, not strict (host bits are dropped, as Felix does),
/// families may mix.
fn network_set(ctx: &mut Ctx, spec: Option<&Node>, path: &FieldPath) -> Option<Vec<IpNet>> {
    let Some(spec) = spec else {
        return Some(Vec::new());
    };
    let f = fields(ctx, spec, path, &GNS)?;
    let before = ctx.errors;
    let mut nets = Vec::new();
    let npath = path.field("nets");
    each_string(ctx, f.get("nets"), &npath, |ctx, item, p, s| {
        let net = if s.contains('/') {
            names::parse_cidr(s).map(|n| n.trunc())
        } else {
            names::parse_ip(s).map(IpNet::from)
        };
        match net {
            Some(net) => nets.push(net),
            None => ctx.error(
                item,
                p,
                format!("`{s}` is neither a CIDR nor an IP address"),
            ),
        }
    });
    (ctx.errors == before).then_some(nets)
}

const PROFILE: Schema<'static> = Schema::of(&["ingress", "egress", "labelsToApply"]);

fn profile(ctx: &mut Ctx, spec: Option<&Node>, path: &FieldPath) -> Option<Profile> {
    let before = ctx.errors;
    let (ingress, egress, labels_to_apply) = match spec {
        None => (Vec::new(), Vec::new(), Labels::new()),
        Some(spec) => {
            let f = fields(ctx, spec, path, &PROFILE)?;
            (
                rule::rules(ctx, f.get("ingress"), &path.field("ingress")),
                rule::rules(ctx, f.get("egress"), &path.field("egress")),
                f.get("labelsToApply")
                    .map(|n| labels(ctx, n, &path.field("labelsToApply")))
                    .unwrap_or_default(),
            )
        }
    };
    (ctx.errors == before).then(|| Profile {
        meta: empty_meta(),
        ingress,
        egress,
        labels_to_apply,
    })
}

const TIER: Schema<'static> = Schema::of(&["order", "defaultAction"]);

/// The order calicoctl v3.32.1 requires of a built-in tier's resource, None for other tiers.
fn fixed_tier_order(name: &str) -> Option<f64> {
    if name == DEFAULT_TIER {
        return Some(DEFAULT_TIER_ORDER);
    }
    BUILT_IN_PASS_TIERS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, order)| order)
}

/// A Tier's spec. An omitted order is 1,000,000, as calicoctl v3.32.1 stores it
/// (`DefaultTierFields` in libcalico-go/lib/resources/tier.go) before validating, so a built-in
/// tier other than `default` must give its order (`fixed_order`) explicitly.
fn tier(
    ctx: &mut Ctx,
    resource: &Node,
    spec: Option<&Node>,
    path: &FieldPath,
    fixed_order: Option<f64>,
) -> Option<Tier> {
    let before = ctx.errors;
    let mut order = None;
    let mut default_action = TierAction::Deny;
    let mut order_at = spec.unwrap_or(resource);
    if let Some(spec) = spec {
        let f = fields(ctx, spec, path, &TIER)?;
        if let Some(n) = f.get("order") {
            order = number(ctx, n, &path.field("order"));
            order_at = n;
        }
        if let Some(n) = f.get("defaultAction") {
            let p = path.field("defaultAction");
            match string(ctx, n, &p) {
                Some("Deny") => default_action = TierAction::Deny,
                Some("Pass") => default_action = TierAction::Pass,
                Some(other) => ctx.error(
                    n,
                    &p,
                    format!(
                        "defaultAction `{other}` is invalid: use Deny or Pass (case-sensitive)"
                    ),
                ),
                None => {}
            }
        }
    }
    let order = order.unwrap_or(DEFAULT_TIER_ORDER);
    if let Some(fixed) = fixed_order.filter(|&f| f != order) {
        ctx.error(
            order_at,
            &path.field("order"),
            format!("this built-in tier's order is fixed at {fixed}"),
        );
    }
    (ctx.errors == before).then(|| Tier {
        meta: empty_meta(),
        order: Some(order),
        default_action,
    })
}
