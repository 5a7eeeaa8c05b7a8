//! Calico's etcd v3 key layout and value encoding for the kinds hostfw manages. Pure: keys and
//! values in, named texts (for `policy::load_sources`) and JSON values out; no I/O, no clock, no
//! randomness (the caller passes uid and creation time in).
//!
//! Facts from Calico (libcalico-go/lib/backend/model/resource.go, keys.go and
//! libcalico-go/lib/backend/etcdv3/etcdv3.go): a cluster-scoped v3 resource lives at
//! `/calico/resources/v3/projectcalico.org/<plural>/<name>`; the value is the JSON of the v3
//! object with `uid` and `creationTimestamp` in its metadata (the resource version is the key's
//! mod revision, never stored). Policies are stored under their tiered backend name (`default.`
//! prepended to a default-tier name without a dot, libcalico-go/lib/names/policy.go
//! `TieredPolicyName`); since v3.30 the name the user gave is kept in the
//! `projectcalico.org/metadata` annotation, and on read (`determinePolicyName`) that name wins and
//! the annotation is dropped; values written by v3.29 or earlier have no annotation and lose a
//! `default.` prefix when the policy is in the default tier.

use crate::diag::Diagnostic;
use crate::policy::parse::{Node, Value, API_VERSION};
use crate::source::NamedText;
use serde_json::{Map, Value as Json};
use std::fmt::Write as _;

/// Every key hostfw reads or writes starts with this.
pub const PREFIX: &str = "/calico/resources/v3/projectcalico.org/";

/// The annotation in which Calico v3.30+ keeps a policy's v3 name.
pub const METADATA_ANNOTATION: &str = "projectcalico.org/metadata";

/// The label calicoctl puts on every policy naming its tier.
pub const TIER_LABEL: &str = "projectcalico.org/tier";

/// Tiers Calico creates itself; `push --prune` never deletes them.
pub const STATIC_TIERS: [&str; 3] = ["default", "kube-admin", "kube-baseline"];

/// The kinds hostfw manages in etcd and their key segment, in the order a push writes them
/// (what others refer to first: a policy naming a tier lands after the tier).
pub const KINDS: [(&str, &str); 8] = [
    ("Tier", "tiers"),
    ("GlobalNetworkSet", "globalnetworksets"),
    ("Profile", "profiles"),
    ("HostEndpoint", "hostendpoints"),
    ("FelixConfiguration", "felixconfigurations"),
    ("GlobalNetworkPolicy", "globalnetworkpolicies"),
    ("StagedGlobalNetworkPolicy", "stagedglobalnetworkpolicies"),
    ("ClusterInformation", "clusterinformations"),
];

/// The kind Calico keeps its `datastoreReady` flag in; read by the source, never fed to the
/// policy loader.
pub const CLUSTER_INFORMATION: &str = "ClusterInformation";

/// A key's kind and name, when it belongs to a kind hostfw manages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRef<'k> {
    pub kind: &'static str,
    pub plural: &'static str,
    /// The key's last segment (for policies: the tiered backend name).
    pub name: &'k str,
}

fn is_policy(kind: &str) -> bool {
    matches!(kind, "GlobalNetworkPolicy" | "StagedGlobalNetworkPolicy")
}

/// The key segment of a kind, if hostfw manages it.
pub fn plural(kind: &str) -> Option<&'static str> {
    KINDS.iter().find(|(k, _)| *k == kind).map(|(_, p)| *p)
}

/// Parse a key: None for any key outside the managed kinds (namespaced kinds, IP pools, nodes),
/// which a Calico cluster stores beside ours and hostfw ignores.
pub fn parse_key(key: &str) -> Option<KeyRef<'_>> {
    let rest = key.strip_prefix(PREFIX)?;
    let (segment, name) = rest.split_once('/')?;
    if name.is_empty() || name.contains('/') {
        return None;
    }
    let (kind, plural) = KINDS.iter().find(|(_, p)| *p == segment)?;
    Some(KeyRef { kind, plural, name })
}

/// The backend name of a policy (libcalico-go/lib/names/policy.go `TieredPolicyName`): a
/// name without a dot is in the default tier and gains `default.`; other names already carry
/// their tier.
pub fn backend_policy_name(name: &str) -> String {
    if name.contains('.') {
        name.to_string()
    } else {
        format!("default.{name}")
    }
}

/// The key a resource of `kind` named `name` (its v3 name) is stored under.
pub fn key(kind: &str, name: &str) -> Option<String> {
    let plural = plural(kind)?;
    let stored = if is_policy(kind) {
        backend_policy_name(name)
    } else {
        name.to_string()
    };
    Some(format!("{PREFIX}{plural}/{stored}"))
}

/// What one etcd value decodes to.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// A resource for the policy loader: pretty JSON (valid YAML) named by its key, with the
    /// name Calico would report and without the metadata annotation.
    Resource(NamedText),
    /// ClusterInformation `default`: whether the datastore is ready (`spec.datastoreReady`,
    /// true when absent, as Calico reads it).
    Ready(bool),
    /// A ClusterInformation other than `default`: nothing to do.
    Ignored,
}

fn error_at(key: &str, line: u32, column: u32, message: impl Into<String>) -> Diagnostic {
    Diagnostic {
        line,
        column,
        ..Diagnostic::file_error(key, message)
    }
}

/// Decode the value stored at `key` (a key `parse_key` accepts). Errors are diagnostics naming
/// the key, so the all-or-nothing load reports them like a bad file.
pub fn decode(key: &str, value: &[u8]) -> Result<Decoded, Box<Diagnostic>> {
    let Some(at) = parse_key(key) else {
        return Err(Box::new(Diagnostic::file_error(
            key,
            "not a key of a kind hostfw manages",
        )));
    };
    let text = std::str::from_utf8(value)
        .map_err(|_| Box::new(Diagnostic::file_error(key, "value is not UTF-8 text")))?;
    let mut object: Json = serde_json::from_str(text).map_err(|e| {
        Box::new(error_at(
            key,
            e.line() as u32,
            e.column() as u32,
            format!("value is not valid JSON: {e}"),
        ))
    })?;
    let Some(map) = object.as_object_mut() else {
        return Err(Box::new(Diagnostic::file_error(
            key,
            "value is not a JSON object",
        )));
    };
    let kind = map
        .get("kind")
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_string();
    if kind != at.kind {
        let mut d = Diagnostic::file_error(
            key,
            format!(
                "the key is under `{}` but the value's kind is `{kind}`",
                at.plural
            ),
        );
        d.kind = Some(kind).filter(|k| !k.is_empty());
        return Err(Box::new(d));
    }
    if kind == CLUSTER_INFORMATION {
        return cluster_information(key, map, at.name);
    }
    if is_policy(&kind) {
        apply_policy_name_rule(key, map)?;
    }
    let name = map
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Json::as_str)
        .map(str::to_string);
    if let Some(name) = &name {
        let stored = if is_policy(&kind) {
            backend_policy_name(name)
        } else {
            name.clone()
        };
        if stored != at.name && name != at.name {
            let mut d = Diagnostic::file_error(
                key,
                format!(
                    "the key names `{}` but the value's metadata.name is `{name}`",
                    at.name
                ),
            );
            d.kind = Some(kind);
            d.name = Some(name.clone());
            return Err(Box::new(d));
        }
    }
    // Pretty-printed so a diagnostic's line points at one field of the value.
    let text = serde_json::to_string_pretty(&object).map_err(|e| {
        Box::new(Diagnostic::file_error(
            key,
            format!("cannot re-encode value: {e}"),
        ))
    })?;
    Ok(Decoded::Resource(NamedText {
        name: key.to_string(),
        text,
    }))
}

/// Every managed value of a listing, decoded for the loader.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Texts {
    /// In key order, named by key.
    pub sources: Vec<NamedText>,
    /// Values that could not be decoded, each naming its key (errors: the set is invalid).
    pub diagnostics: Vec<Diagnostic>,
    /// ClusterInformation `default`'s `datastoreReady` (true when absent).
    pub ready: bool,
}

/// Decode every (key, value) pair; keys of kinds hostfw does not manage are skipped.
pub fn texts<'a>(kvs: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Texts {
    texts_with(kvs, decode)
}

/// `texts`, decoding each managed pair with `decode_one` (`decode`, or a memo of it).
pub fn texts_with<'a>(
    kvs: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    mut decode_one: impl FnMut(&str, &[u8]) -> Result<Decoded, Box<Diagnostic>>,
) -> Texts {
    let mut out = Texts {
        ready: true,
        ..Texts::default()
    };
    for (key, value) in kvs {
        if parse_key(key).is_none() {
            continue;
        }
        match decode_one(key, value) {
            Ok(Decoded::Resource(s)) => out.sources.push(s),
            Ok(Decoded::Ready(ready)) => out.ready = ready,
            Ok(Decoded::Ignored) => {}
            Err(d) => out.diagnostics.push(*d),
        }
    }
    out
}

fn cluster_information(
    key: &str,
    map: &Map<String, Json>,
    name: &str,
) -> Result<Decoded, Box<Diagnostic>> {
    if name != "default" {
        return Ok(Decoded::Ignored);
    }
    match map.get("spec").and_then(|s| s.get("datastoreReady")) {
        None | Some(Json::Null) => Ok(Decoded::Ready(true)),
        Some(Json::Bool(b)) => Ok(Decoded::Ready(*b)),
        Some(other) => Err(Box::new(Diagnostic {
            kind: Some(CLUSTER_INFORMATION.to_string()),
            name: Some(name.to_string()),
            field: Some("spec.datastoreReady".to_string()),
            ..Diagnostic::file_error(key, format!("expected true or false, found {other}"))
        })),
    }
}

/// Calico's `determinePolicyName`: the annotation's name when present (and the annotation
/// dropped), else a default-tier policy loses its `default.` prefix.
fn apply_policy_name_rule(key: &str, map: &mut Map<String, Json>) -> Result<(), Box<Diagnostic>> {
    let tier = map
        .get("spec")
        .and_then(|s| s.get("tier"))
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_string();
    let Some(meta) = map.get_mut("metadata").and_then(Json::as_object_mut) else {
        return Ok(());
    };
    let stashed = meta
        .get("annotations")
        .and_then(|a| a.get(METADATA_ANNOTATION))
        .and_then(Json::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    if let Some(stashed) = stashed {
        let parsed: Json = serde_json::from_str(&stashed).map_err(|e| {
            Box::new(Diagnostic {
                field: Some(format!("metadata.annotations[{METADATA_ANNOTATION}]")),
                ..Diagnostic::file_error(key, format!("annotation is not valid JSON: {e}"))
            })
        })?;
        let name = parsed
            .get("name")
            .and_then(Json::as_str)
            .unwrap_or_default();
        meta.insert("name".to_string(), Json::String(name.to_string()));
        if let Some(annotations) = meta.get_mut("annotations").and_then(Json::as_object_mut) {
            annotations.remove(METADATA_ANNOTATION);
            if annotations.is_empty() {
                meta.remove("annotations");
            }
        }
    } else if tier.is_empty() || tier == "default" {
        if let Some(Json::String(name)) = meta.get_mut("name") {
            if let Some(short) = name.strip_prefix("default.") {
                *name = short.to_string();
            }
        }
    }
    Ok(())
}

/// What `encode` adds that the file does not say: kept from the stored value on update so a
/// push of an unchanged file changes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub uid: String,
    /// RFC 3339, seconds, UTC (`2026-01-02T03:04:05Z`).
    pub creation_timestamp: String,
}

impl Stamp {
    /// The stamp of a stored value, if it has one.
    pub fn of_value(value: &[u8]) -> Option<Stamp> {
        let v: Json = serde_json::from_slice(value).ok()?;
        let meta = v.get("metadata")?;
        Some(Stamp {
            uid: meta.get("uid")?.as_str()?.to_string(),
            creation_timestamp: meta.get("creationTimestamp")?.as_str()?.to_string(),
        })
    }
}

/// A resource ready to be written: its key and JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub kind: &'static str,
    /// The v3 name (as in the file).
    pub name: String,
    pub key: String,
    pub value: String,
}

/// Metadata fields the datastore owns: a file's values for them are not written.
const SERVER_FIELDS: [&str; 4] = ["uid", "creationTimestamp", "resourceVersion", "generation"];

/// Encode one validated resource (a mapping node from `policy::parse`) as calicoctl writes it:
/// `kind`, `apiVersion`, `metadata` (backend name, uid, creationTimestamp, labels with the tier
/// label on policies, annotations with the v3 name on policies), then `spec` in file order with
/// a policy's `types` defaulted as calicoctl does. None for a kind hostfw does not manage.
pub fn encode(node: &Node, stamp: &Stamp) -> Option<Encoded> {
    let kind_text = node.get_text("kind")?;
    let (kind, _) = KINDS.iter().find(|(k, _)| *k == kind_text)?;
    let meta = node.get("metadata");
    let name = meta.and_then(|m| m.get_text("name"))?.to_string();
    let key = key(kind, &name)?;
    let policy = is_policy(kind);
    let spec = node.get("spec");
    let tier = spec
        .and_then(|s| s.get_text("tier"))
        .filter(|t| !t.is_empty())
        .unwrap_or("default");

    let mut out = String::with_capacity(256);
    out.push('{');
    write_pair(&mut out, "kind", &json_str(kind));
    out.push(',');
    write_pair(&mut out, "apiVersion", &json_str(API_VERSION));
    out.push_str(",\"metadata\":{");
    let stored_name = if policy {
        backend_policy_name(&name)
    } else {
        name.clone()
    };
    write_pair(&mut out, "name", &json_str(&stored_name));
    out.push(',');
    write_pair(&mut out, "uid", &json_str(&stamp.uid));
    out.push(',');
    write_pair(
        &mut out,
        "creationTimestamp",
        &json_str(&stamp.creation_timestamp),
    );
    let mut labels = string_entries(meta.and_then(|m| m.get("labels")));
    let mut annotations = string_entries(meta.and_then(|m| m.get("annotations")));
    if policy {
        labels.retain(|(k, _)| k != TIER_LABEL);
        labels.push((TIER_LABEL.to_string(), tier.to_string()));
        annotations.retain(|(k, _)| k != METADATA_ANNOTATION);
        let stash = format!("{{\"name\":{}}}", json_str(&name));
        annotations.push((METADATA_ANNOTATION.to_string(), stash));
    }
    for (field, entries) in [("labels", &labels), ("annotations", &annotations)] {
        if entries.is_empty() {
            continue;
        }
        out.push(',');
        out.push_str(&json_str(field));
        out.push_str(":{");
        for (i, (k, v)) in entries.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_pair(&mut out, k, &json_str(v));
        }
        out.push('}');
    }
    if let Some(Value::Map(entries)) = meta.map(|m| &m.value) {
        for (k, v) in entries {
            let Some(k) = k.as_scalar() else { continue };
            let skip = ["name", "labels", "annotations", "namespace"].contains(&&*k.text)
                || SERVER_FIELDS.contains(&&*k.text);
            if !skip {
                out.push(',');
                write_pair(&mut out, &k.text, &to_json(v));
            }
        }
    }
    out.push('}');
    if let Some(spec) = spec {
        out.push(',');
        out.push_str("\"spec\":");
        if policy {
            out.push_str(&policy_spec(spec));
        } else {
            out.push_str(&to_json(spec));
        }
    }
    out.push('}');
    Some(Encoded {
        kind,
        name,
        key,
        value: out,
    })
}

/// A policy spec with `types` defaulted when absent (libcalico-go/lib/clientv3/
/// globalnetworkpolicy.go `defaultPolicyTypesField`): ingress only unless it has egress rules
/// and no ingress rules (egress), or both kinds of rules (both).
fn policy_spec(spec: &Node) -> String {
    let Value::Map(entries) = &spec.value else {
        return to_json(spec);
    };
    let rules =
        |k: &str| matches!(spec.get(k).map(|n| &n.value), Some(Value::Seq(s)) if !s.is_empty());
    let mut out = String::from("{");
    for (i, (k, v)) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_pair(&mut out, &scalar_text(k), &to_json(v));
    }
    let has_types = spec.get("types").is_some_and(|t| !t.is_null());
    if !has_types {
        let types = match (rules("ingress"), rules("egress")) {
            (_, false) => "[\"Ingress\"]",
            (false, true) => "[\"Egress\"]",
            (true, true) => "[\"Ingress\",\"Egress\"]",
        };
        if !entries.is_empty() {
            out.push(',');
        }
        write_pair(&mut out, "types", types);
    }
    out.push('}');
    out
}

fn scalar_text(n: &Node) -> String {
    n.as_scalar()
        .map(|s| s.text.to_string())
        .unwrap_or_default()
}

/// A string map (labels, annotations) in file order; every value a string, as Calico's
/// `map[string]string` decodes it.
fn string_entries(node: Option<&Node>) -> Vec<(String, String)> {
    let Some(Value::Map(entries)) = node.map(|n| &n.value) else {
        return Vec::new();
    };
    entries
        .iter()
        .map(|(k, v)| {
            let value = match v.as_scalar() {
                Some(s) if s.is_null() => String::new(),
                Some(s) => s.text.to_string(),
                None => String::new(),
            };
            (scalar_text(k), value)
        })
        .collect()
}

fn write_pair(out: &mut String, key: &str, json_value: &str) {
    out.push_str(&json_str(key));
    out.push(':');
    out.push_str(json_value);
}

fn json_str(s: &str) -> String {
    Json::String(s.to_string()).to_string()
}

/// A YAML node as JSON, keeping mapping order. Quoted scalars are strings; a plain scalar is
/// null, a boolean (`true`/`false` in the three spellings the validator accepts), a number
/// (decimal, JSON's number syntax, or `0x` hexadecimal written in decimal), else a string. The
/// pushed values are loaded again before anything is written, so a scalar this typed
/// differently from the validator is refused, never written.
pub fn to_json(node: &Node) -> String {
    let mut out = String::new();
    write_json(node, &mut out);
    out
}

fn write_json(node: &Node, out: &mut String) {
    match &node.value {
        Value::Scalar(s) if !s.plain => out.push_str(&json_str(&s.text)),
        Value::Scalar(s) if s.is_null() => out.push_str("null"),
        Value::Scalar(s) => out.push_str(&plain_json(&s.text)),
        Value::Seq(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(item, out);
            }
            out.push(']');
        }
        Value::Map(entries) => {
            out.push('{');
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&json_str(&scalar_text(k)));
                out.push(':');
                write_json(v, out);
            }
            out.push('}');
        }
    }
}

fn plain_json(text: &str) -> String {
    match text {
        "true" | "True" | "TRUE" => return "true".to_string(),
        "false" | "False" | "FALSE" => return "false".to_string(),
        _ => {}
    }
    if let Some(hex) = text.strip_prefix("0x") {
        if let Ok(n) = u64::from_str_radix(hex, 16) {
            return n.to_string();
        }
    }
    if is_json_number(text) {
        return text.to_string();
    }
    json_str(text)
}

/// JSON's number grammar: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
fn is_json_number(t: &str) -> bool {
    let b = t.as_bytes();
    let mut i = 0;
    if b.first() == Some(&b'-') {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    let int_start = i;
    let n = digits(&mut i);
    if n == 0 || (n > 1 && b[int_start] == b'0') {
        return false;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// One file of a pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// `<kind lowercased>-<name>.yaml` (names are DNS subdomains: safe, and unique per kind).
    pub file_name: String,
    pub yaml: String,
}

/// The YAML `pull` writes for a stored value: the resource as `decode` presents it, without
/// what the datastore adds (uid, creationTimestamp, resource version, a policy's tier label), in
/// key order, so two pulls of the same content are byte-identical whichever tool wrote it.
/// None for ClusterInformation, which Calico owns.
pub fn export(key: &str, value: &[u8]) -> Result<Option<Export>, Box<Diagnostic>> {
    let Decoded::Resource(source) = decode(key, value)? else {
        return Ok(None);
    };
    let mut object: Json = serde_json::from_str(&source.text).map_err(|e| {
        Box::new(Diagnostic::file_error(
            key,
            format!("cannot re-read value: {e}"),
        ))
    })?;
    let kind = object
        .get("kind")
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_string();
    if let Some(meta) = object.get_mut("metadata").and_then(Json::as_object_mut) {
        for f in SERVER_FIELDS {
            meta.remove(f);
        }
        if is_policy(&kind) {
            if let Some(labels) = meta.get_mut("labels").and_then(Json::as_object_mut) {
                labels.remove(TIER_LABEL);
                if labels.is_empty() {
                    meta.remove("labels");
                }
            }
        }
    }
    let name = object
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Json::as_str)
        .unwrap_or_default();
    let file_name = format!("{}-{name}.yaml", kind.to_ascii_lowercase());
    let mut yaml = String::new();
    write_yaml(&object, 0, &mut yaml);
    Ok(Some(Export { file_name, yaml }))
}

/// Block YAML from JSON: mappings in key order (serde_json's map is sorted), scalars plain when
/// they read back as the same string and double-quoted (JSON escapes are YAML escapes)
/// otherwise.
fn write_yaml(v: &Json, indent: usize, out: &mut String) {
    match v {
        Json::Object(map) if !map.is_empty() => {
            for (k, val) in map {
                let _ = write!(out, "{:indent$}{}:", "", yaml_scalar(k));
                write_yaml_value(val, indent, out);
            }
        }
        Json::Array(items) if !items.is_empty() => {
            for item in items {
                let _ = write!(out, "{:indent$}-", "");
                match item {
                    Json::Object(m) if !m.is_empty() => {
                        // The first entry on the dash line, the rest aligned under it.
                        let mut nested = String::new();
                        write_yaml(item, indent + 2, &mut nested);
                        out.push(' ');
                        out.push_str(nested.trim_start());
                    }
                    _ => write_yaml_value(item, indent, out),
                }
            }
        }
        other => {
            let _ = writeln!(out, "{:indent$}{}", "", inline(other));
        }
    }
}

fn write_yaml_value(val: &Json, indent: usize, out: &mut String) {
    match val {
        Json::Object(m) if !m.is_empty() => {
            out.push('\n');
            write_yaml(val, indent + 2, out);
        }
        Json::Array(a) if !a.is_empty() => {
            out.push('\n');
            write_yaml(val, indent + 2, out);
        }
        other => {
            let _ = writeln!(out, " {}", inline(other));
        }
    }
}

fn inline(v: &Json) -> String {
    match v {
        Json::String(s) => yaml_scalar(s),
        Json::Object(_) => "{}".to_string(),
        Json::Array(_) => "[]".to_string(),
        other => other.to_string(),
    }
}

/// A string as a YAML scalar: plain when it is unambiguous (it starts with a letter, `/` or
/// `_`, holds only letters, digits and `-_./`, and is not a word YAML 1.1 reads as a boolean or
/// null), double-quoted otherwise.
fn yaml_scalar(s: &str) -> String {
    let first_ok = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '/' || c == '_');
    let chars_ok = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    let reserved = matches!(
        s.to_ascii_lowercase().as_str(),
        "y" | "n" | "yes" | "no" | "on" | "off" | "true" | "false" | "null"
    );
    if first_ok && chars_ok && !reserved {
        s.to_string()
    } else {
        json_str(s)
    }
}

/// Whether two stored values mean the same object (key order and spacing aside).
pub fn same_value(a: &[u8], b: &[u8]) -> bool {
    match (
        serde_json::from_slice::<Json>(a),
        serde_json::from_slice::<Json>(b),
    ) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests;
