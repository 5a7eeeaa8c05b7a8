//! The typed reading layer of validation: field paths, diagnostics for one resource, strict
//! mapping decoding (unknown fields, case-insensitive names, "did you mean"), and the YAML 1.1
//! scalar policy (which plain scalars count as booleans, integers, numbers or strings).
//! Pure; knows the node tree of `parse` but no resource kind.

use crate::diag::{Diagnostic, Severity};
use crate::model::selector::Selector;
use crate::policy::parse::{Node, Value};
use std::collections::HashMap;

/// One step of a field path.
#[derive(Debug, Clone, Copy)]
enum Seg<'a> {
    Field(&'a str),
    Index(usize),
    /// A key of a user map (labels, annotations): printed in brackets.
    Key(&'a str),
}

/// A dotted field path such as `spec.ingress[0].destination.ports[1]`, built as a chain of
/// borrowed steps so that reading a field costs nothing until a diagnostic is printed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FieldPath<'a> {
    parent: Option<&'a FieldPath<'a>>,
    seg: Option<Seg<'a>>,
}

impl<'a> FieldPath<'a> {
    pub(crate) const ROOT: FieldPath<'static> = FieldPath {
        parent: None,
        seg: None,
    };

    pub(crate) fn field(&'a self, name: &'a str) -> FieldPath<'a> {
        FieldPath {
            parent: Some(self),
            seg: Some(Seg::Field(name)),
        }
    }

    pub(crate) fn index(&'a self, i: usize) -> FieldPath<'a> {
        FieldPath {
            parent: Some(self),
            seg: Some(Seg::Index(i)),
        }
    }

    pub(crate) fn key(&'a self, key: &'a str) -> FieldPath<'a> {
        FieldPath {
            parent: Some(self),
            seg: Some(Seg::Key(key)),
        }
    }

    /// The printed path; None at the root.
    pub(crate) fn render(&self) -> Option<String> {
        let mut segs = Vec::new();
        let mut p = Some(self);
        while let Some(path) = p {
            if let Some(seg) = path.seg {
                segs.push(seg);
            }
            p = path.parent;
        }
        if segs.is_empty() {
            return None;
        }
        let mut out = String::new();
        for seg in segs.iter().rev() {
            match seg {
                Seg::Field(f) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(f);
                }
                Seg::Index(i) => out.push_str(&format!("[{i}]")),
                Seg::Key(k) => out.push_str(&format!("[{k}]")),
            }
        }
        Some(out)
    }
}

/// Collects the diagnostics of one resource, stamping file, kind and name on each.
pub(crate) struct Ctx<'a> {
    pub(crate) file: &'a str,
    pub(crate) kind: Option<&'a str>,
    pub(crate) name: Option<&'a str>,
    pub(crate) diags: &'a mut Vec<Diagnostic>,
    pub(crate) errors: usize,
    /// Selectors already parsed in this load, by text: real policy sets repeat the same few
    /// selectors in thousands of rules.
    pub(crate) selectors: &'a mut HashMap<String, Selector>,
}

impl<'a> Ctx<'a> {
    pub(crate) fn report(
        &mut self,
        severity: Severity,
        node: &Node,
        path: &FieldPath,
        msg: String,
    ) {
        self.report_at(severity, (node.line, node.column), path, msg);
    }

    /// Report at an explicit (line, column), e.g. inside a scalar.
    pub(crate) fn report_at(
        &mut self,
        severity: Severity,
        (line, column): (u32, u32),
        path: &FieldPath,
        msg: String,
    ) {
        if severity == Severity::Error {
            self.errors += 1;
        }
        self.diags.push(Diagnostic {
            file: self.file.to_string(),
            line,
            column,
            severity,
            kind: self.kind.map(str::to_string),
            name: self.name.map(str::to_string),
            field: path.render(),
            message: msg,
        });
    }

    pub(crate) fn error(&mut self, node: &Node, path: &FieldPath, msg: impl Into<String>) {
        self.report(Severity::Error, node, path, msg.into());
    }

    pub(crate) fn warn(&mut self, node: &Node, path: &FieldPath, msg: impl Into<String>) {
        self.report(Severity::Warning, node, path, msg.into());
    }

    /// The error for a node of the wrong shape: "expected `expected`, found a list" and so on.
    pub(crate) fn wrong_shape(&mut self, node: &Node, path: &FieldPath, expected: &str) {
        self.error(
            node,
            path,
            format!("expected {expected}, found {}", node.shape()),
        );
    }
}

/// Most fields one schema may declare (FelixConfiguration's handled subset is the largest).
pub(crate) const MAX_FIELDS: usize = 32;

/// How a mapping's fields are declared for `fields`.
pub(crate) struct Schema<'s> {
    /// Canonical field names: the one place a field of this kind is declared (`Fields::get`
    /// looks values up by these names).
    pub known: &'s [&'s str],
    /// Fields that must be spelled exactly (top-level `kind`, `apiVersion`).
    pub exact: &'s [&'s str],
    /// Fields Calico knows that hostfw ignores: accepted with a warning naming them.
    pub ignored: &'s [&'s str],
    /// Fields Calico knows that hostfw ignores without comment (e.g. `metadata.uid`).
    pub silent: &'s [&'s str],
}

impl<'s> Schema<'s> {
    pub(crate) const fn of(known: &'s [&'s str]) -> Schema<'s> {
        assert!(known.len() <= MAX_FIELDS, "schema larger than MAX_FIELDS");
        Schema {
            known,
            exact: &[],
            ignored: &[],
            silent: &[],
        }
    }
}

/// The values of a mapping's known fields, looked up by canonical name; null counts as absent.
pub(crate) struct Fields<'n> {
    /// The schema's canonical names: `values[i]` is the field `known[i]`.
    known: &'static [&'static str],
    /// A fixed array rather than a Vec: one is built for every mapping of every rule.
    values: [Option<&'n Node<'n>>; MAX_FIELDS],
    /// The ignored fields present (key node, canonical name, value), for callers that type-check
    /// them anyway.
    pub(crate) ignored: Vec<(&'n Node<'n>, &'static str, &'n Node<'n>)>,
}

impl<'n> Fields<'n> {
    /// The value of the known field `name` (its canonical spelling), if given and not null.
    /// Panics when `name` is not in the schema: that is a typo in hostfw, and answering "absent"
    /// would silently skip validating the field.
    pub(crate) fn get(&self, name: &str) -> Option<&'n Node<'n>> {
        match self.known.iter().position(|k| *k == name) {
            Some(i) => self.values[i],
            None => panic!("field `{name}` is not in the schema {:?}", self.known),
        }
    }
}

/// Decode a mapping strictly: every key must be a known field (any case below the top level, as
/// Calico's encoding/json decoding does, with a warning giving the canonical spelling), an
/// ignored one (warning) or it is an error with a "did you mean" hint. Returns None when the
/// node is not a mapping (after reporting it); null yields no fields.
pub(crate) fn fields<'n>(
    ctx: &mut Ctx,
    node: &'n Node<'n>,
    path: &FieldPath,
    schema: &Schema<'static>,
) -> Option<Fields<'n>> {
    let mut out = Fields {
        known: schema.known,
        values: [None; MAX_FIELDS],
        ignored: Vec::new(),
    };
    let entries = match &node.value {
        Value::Map(entries) => entries,
        Value::Scalar(s) if s.is_null() => return Some(out),
        _ => {
            ctx.wrong_shape(node, path, "a mapping of fields");
            return None;
        }
    };
    debug_assert!(schema.known.len() <= MAX_FIELDS);
    let mut first_key: [Option<&Node>; MAX_FIELDS] = [None; MAX_FIELDS];
    for (key, value) in entries {
        let Some(name) = key.as_scalar().map(|s| &*s.text) else {
            continue;
        };
        let found = schema.known.iter().position(|k| *k == name).or_else(|| {
            schema
                .known
                .iter()
                .position(|k| k.eq_ignore_ascii_case(name))
        });
        if let Some(i) = found {
            let canonical = schema.known[i];
            let field_path = path.field(canonical);
            if canonical != name {
                if schema.exact.contains(&canonical) {
                    ctx.error(
                        key,
                        path,
                        format!("unknown field `{name}`: this field name is case-sensitive; write `{canonical}`"),
                    );
                    continue;
                }
                ctx.warn(
                    key,
                    &field_path,
                    format!(
                        "field `{name}` accepted (Calico matches field names case-insensitively); \
                         the canonical spelling is `{canonical}`"
                    ),
                );
            }
            if let Some(prev) = first_key[i] {
                ctx.error(
                    key,
                    &field_path,
                    format!(
                        "`{name}` repeats field `{canonical}` (line {}, column {}); field names \
                         are case-insensitive",
                        prev.line, prev.column
                    ),
                );
                continue;
            }
            first_key[i] = Some(key);
            if !value.is_null() {
                out.values[i] = Some(value);
            }
            continue;
        }
        if let Some(canonical) = schema
            .ignored
            .iter()
            .find(|k| k.eq_ignore_ascii_case(name))
            .copied()
        {
            out.ignored.push((key, canonical, value));
            continue;
        }
        if schema.silent.iter().any(|k| k.eq_ignore_ascii_case(name)) {
            continue;
        }
        let mut msg = format!("unknown field `{name}`");
        if let Some(s) = suggest(name, schema.known.iter().chain(schema.ignored.iter())) {
            msg.push_str(&format!("; did you mean `{s}`?"));
        }
        ctx.error(key, path, msg);
    }
    Some(out)
}

/// The closest candidate to `name` within a small edit distance, compared without case.
pub(crate) fn suggest<'c>(
    name: &str,
    candidates: impl Iterator<Item = &'c &'c str>,
) -> Option<&'c str> {
    let lower = name.to_ascii_lowercase();
    let limit = match lower.chars().count() {
        0..=3 => 1,
        4..=8 => 2,
        _ => 3,
    };
    let candidates: Vec<&'c str> = candidates.copied().collect();
    let close = candidates
        .iter()
        .map(|c| (edit_distance(&lower, &c.to_ascii_lowercase()), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c);
    // Failing that, a field one name is the start of the other (`interface` for
    // `interfaceName`, `proto` for `protocol`, a `...Secs` config-file name).
    close.or_else(|| {
        candidates.iter().copied().find(|c| {
            let c = c.to_ascii_lowercase();
            let (short, long) = if c.len() < lower.len() {
                (&c, &lower)
            } else {
                (&lower, &c)
            };
            short.len() >= 4 && long.starts_with(short.as_str())
        })
    })
}

/// Levenshtein distance over characters.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// Why a plain scalar would not survive YAML 1.1 (Calico's go-yaml v2) as the same string, if
/// it would not: then hostfw asks for quotes instead of guessing what the user meant.
pub(crate) fn yaml11_string_hazard(text: &str) -> Option<&'static str> {
    match text {
        "y" | "Y" | "yes" | "Yes" | "YES" | "n" | "N" | "no" | "No" | "NO" | "on" | "On" | "ON"
        | "off" | "Off" | "OFF" | "True" | "TRUE" | "False" | "FALSE" => {
            return Some("YAML 1.1 (which Calico uses) reads it as a boolean")
        }
        ".inf" | ".Inf" | ".INF" | "-.inf" | "+.inf" | ".nan" | ".NaN" | ".NAN" => {
            return Some("YAML 1.1 reads it as a float")
        }
        _ => {}
    }
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    if body.is_empty() || !body.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return None;
    }
    let is_int = canonical_int(text) || yaml11_int(body);
    if is_int {
        if canonical_int(text) {
            return None;
        }
        return Some("YAML 1.1 reads it as a number and Calico would store it differently");
    }
    if yaml11_float(body) {
        let canonical = !text.starts_with('+')
            && !body.starts_with('.')
            && !body.contains(['e', 'E', '_'])
            && !body.ends_with('0')
            && !body.ends_with('.');
        if canonical {
            return None;
        }
        return Some("YAML 1.1 reads it as a number and Calico would store it differently");
    }
    None
}

/// `0` or `-?[1-9][0-9]*`: the only integer spelling that reads back unchanged.
fn canonical_int(text: &str) -> bool {
    let body = text.strip_prefix('-').unwrap_or(text);
    body == "0"
        || (body.starts_with(|c: char| ('1'..='9').contains(&c))
            && body.bytes().all(|b| b.is_ascii_digit()))
}

fn yaml11_int(body: &str) -> bool {
    if let Some(hex) = body.strip_prefix("0x") {
        return !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit() || b == b'_');
    }
    if let Some(bin) = body.strip_prefix("0b") {
        return !bin.is_empty() && bin.bytes().all(|b| matches!(b, b'0' | b'1' | b'_'));
    }
    !body.is_empty()
        && body.starts_with(|c: char| c.is_ascii_digit())
        && body.bytes().all(|b| b.is_ascii_digit() || b == b'_')
}

fn yaml11_float(body: &str) -> bool {
    let (mantissa, exp) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let (int, frac) = match mantissa.find('.') {
        Some(dot) => (&mantissa[..dot], &mantissa[dot + 1..]),
        // go-yaml v2 also reads `1e3` as a float.
        None if exp.is_some() && !mantissa.is_empty() => (mantissa, ""),
        None => return false,
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit() || b == b'_');
    let exp_ok = exp.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit())
    });
    digits(int) && frac.bytes().all(|b| b.is_ascii_digit()) && exp_ok
}

/// A string field. Plain scalars that YAML 1.1 would turn into something else are errors with a
/// hint to quote them.
pub(crate) fn string<'n>(ctx: &mut Ctx, node: &'n Node<'n>, path: &FieldPath) -> Option<&'n str> {
    let Some(s) = node.as_scalar() else {
        ctx.wrong_shape(node, path, "a string");
        return None;
    };
    if s.plain {
        if let Some(why) = yaml11_string_hazard(&s.text) {
            ctx.error(
                node,
                path,
                format!(
                    "`{}` is ambiguous: {why}; quote it (\"{}\")",
                    s.text, s.text
                ),
            );
            return None;
        }
    }
    Some(&s.text)
}

/// The text of a plain (unquoted) scalar, for the typed fields (boolean, integer, number):
/// a mapping, list or quoted string there is reported as not being `what`.
fn plain_scalar<'n>(
    ctx: &mut Ctx,
    node: &'n Node,
    path: &FieldPath,
    what: &str,
) -> Option<&'n str> {
    let Some(s) = node.as_scalar() else {
        ctx.wrong_shape(node, path, what);
        return None;
    };
    if !s.plain {
        ctx.error(
            node,
            path,
            format!(
                "expected {what}, found the quoted string \"{}\"; remove the quotes",
                s.text
            ),
        );
        return None;
    }
    Some(&s.text)
}

/// A boolean field: `true` or `false` (also `True`/`TRUE`/`False`/`FALSE`, as YAML 1.2 core).
/// YAML 1.1's `yes`/`no`/`on`/`off`/`y`/`n` are refused with a hint rather than guessed.
pub(crate) fn boolean(ctx: &mut Ctx, node: &Node, path: &FieldPath) -> Option<bool> {
    let s = plain_scalar(ctx, node, path, "true or false")?;
    match s {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        t if matches!(
            t.to_ascii_lowercase().as_str(),
            "yes" | "no" | "on" | "off" | "y" | "n"
        ) =>
        {
            let meant = matches!(t.to_ascii_lowercase().as_str(), "yes" | "on" | "y");
            ctx.error(
                node,
                path,
                format!(
                    "`{t}` is a YAML 1.1 boolean, which hostfw does not guess at; write `{meant}`"
                ),
            );
            None
        }
        t => {
            ctx.error(node, path, format!("expected true or false, found `{t}`"));
            None
        }
    }
}

/// Parse an integer as hostfw accepts it from a plain scalar: decimal without leading zeros, or
/// `0x` hexadecimal (common for mark masks). `010` (octal in YAML 1.1, ten in YAML 1.2), `0o`,
/// `0b` and `_` separators are refused as ambiguous.
pub(crate) fn parse_int(text: &str) -> Result<i128, String> {
    let (neg, body) = match text.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let value = if let Some(hex) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        if hex.is_empty() || hex.len() > 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("`{text}` is not a valid hexadecimal number"));
        }
        i128::from_str_radix(hex, 16).map_err(|e| e.to_string())?
    } else if body.len() > 1
        && body.starts_with('0')
        && body.bytes().all(|b| b.is_ascii_digit() || b == b'_')
    {
        return Err(format!(
            "`{text}` is ambiguous (octal in YAML 1.1, which Calico uses; decimal elsewhere); \
             write it without the leading zero"
        ));
    } else if body.contains('_') || body.starts_with("0o") || body.starts_with("0b") {
        return Err(format!(
            "`{text}` is ambiguous between YAML versions; write it in plain decimal"
        ));
    } else if !body.is_empty() && body.len() <= 30 && body.bytes().all(|b| b.is_ascii_digit()) {
        body.parse::<i128>().map_err(|e| e.to_string())?
    } else {
        return Err(format!("expected an integer, found `{text}`"));
    };
    Ok(if neg { -value } else { value })
}

/// An integer field within `min..=max`.
pub(crate) fn integer(
    ctx: &mut Ctx,
    node: &Node,
    path: &FieldPath,
    min: i128,
    max: i128,
) -> Option<i128> {
    let s = plain_scalar(ctx, node, path, "an integer")?;
    match parse_int(s) {
        Ok(v) if v < min || v > max => {
            ctx.error(node, path, format!("{v} is out of range ({min} to {max})"));
            None
        }
        Ok(v) => Some(v),
        Err(msg) => {
            ctx.error(node, path, msg);
            None
        }
    }
}

/// A number field (policy and tier `order`): an integer or a decimal fraction, finite.
pub(crate) fn number(ctx: &mut Ctx, node: &Node, path: &FieldPath) -> Option<f64> {
    let s = plain_scalar(ctx, node, path, "a number")?;
    let t = s;
    let looks_float = !t.starts_with("0x") && t.contains(['.', 'e', 'E']);
    if !looks_float {
        return match parse_int(t) {
            Ok(v) => Some(v as f64),
            Err(msg) if msg.starts_with("expected an integer") => {
                ctx.error(node, path, format!("expected a number, found `{t}`"));
                None
            }
            Err(msg) => {
                ctx.error(node, path, msg);
                None
            }
        };
    }
    let well_formed = t
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'))
        && t.bytes().any(|b| b.is_ascii_digit());
    match t.parse::<f64>() {
        Ok(v) if well_formed && v.is_finite() => Some(v),
        _ => {
            ctx.error(node, path, format!("expected a number, found `{t}`"));
            None
        }
    }
}

/// Calls `each` with every string item of an optional list field (the item's node, its path
/// and its text). A non-list or a non-string item is reported here and skipped, so `each` only
/// judges the text.
pub(crate) fn each_string<'n>(
    ctx: &mut Ctx,
    node: Option<&'n Node<'n>>,
    path: &FieldPath,
    mut each: impl FnMut(&mut Ctx, &'n Node<'n>, &FieldPath, &'n str),
) {
    let Some(items) = node.and_then(|n| list(ctx, n, path)) else {
        return;
    };
    for (i, item) in items.iter().enumerate() {
        let p = path.index(i);
        if let Some(s) = string(ctx, item, &p) {
            each(ctx, item, &p, s);
        }
    }
}

/// A list field; null is an empty list.
pub(crate) fn list<'n>(
    ctx: &mut Ctx,
    node: &'n Node<'n>,
    path: &FieldPath,
) -> Option<&'n [Node<'n>]> {
    match &node.value {
        Value::Seq(items) => Some(items),
        Value::Scalar(s) if s.is_null() => Some(&[]),
        _ => {
            ctx.wrong_shape(node, path, "a list");
            None
        }
    }
}

/// A string-to-string map (labels, annotations). Null values become empty strings, as Calico's
/// JSON decoding turns null into "".
pub(crate) fn string_map<'n>(
    ctx: &mut Ctx,
    node: &'n Node<'n>,
    path: &FieldPath,
) -> Option<Vec<(&'n Node<'n>, &'n str, &'n Node<'n>, &'n str)>> {
    let entries = match &node.value {
        Value::Map(entries) => entries,
        Value::Scalar(s) if s.is_null() => return Some(Vec::new()),
        _ => {
            ctx.wrong_shape(node, path, "a mapping of strings");
            return None;
        }
    };
    let mut out = Vec::with_capacity(entries.len());
    let mut ok = true;
    for (k, v) in entries {
        let Some(key) = string(ctx, k, path) else {
            ok = false;
            continue;
        };
        let kp = path.key(key);
        let value = if v.is_null() {
            ""
        } else {
            match string(ctx, v, &kp) {
                Some(s) => s,
                None => {
                    ok = false;
                    continue;
                }
            }
        };
        out.push((k, key, v, value));
    }
    ok.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_render_like_calico_field_paths() {
        let root = FieldPath::ROOT;
        let spec = root.field("spec");
        let ing = spec.field("ingress");
        let r0 = ing.index(0);
        let dst = r0.field("destination");
        let ports = dst.field("ports");
        let p1 = ports.index(1);
        assert_eq!(
            p1.render().as_deref(),
            Some("spec.ingress[0].destination.ports[1]")
        );
        assert_eq!(FieldPath::ROOT.render(), None);
        let meta = root.field("metadata");
        let labels = meta.field("labels");
        assert_eq!(
            labels.key("a/b").render().as_deref(),
            Some("metadata.labels[a/b]")
        );
    }

    #[test]
    #[should_panic(expected = "field `nmae` is not in the schema")]
    fn a_name_outside_the_schema_is_a_bug_not_an_absent_field() {
        let f = Fields {
            known: &["name", "labels"],
            values: [None; MAX_FIELDS],
            ignored: Vec::new(),
        };
        assert!(f.get("labels").is_none());
        f.get("nmae");
    }

    #[test]
    fn edit_distance_and_suggestions() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(
            suggest("interfacename", ["interfaceName", "node"].iter()),
            Some("interfaceName")
        );
        assert_eq!(
            suggest("egres", ["ingress", "egress"].iter()),
            Some("egress")
        );
        assert_eq!(suggest("zzzzzz", ["ingress", "egress"].iter()), None);
    }

    #[test]
    fn yaml11_hazards() {
        for bad in [
            "yes", "No", "ON", "010", "0x1F", "1_000", "1.10", "1e3", "+1", ".5", "True", ".inf",
            "0b101",
        ] {
            assert!(yaml11_string_hazard(bad).is_some(), "{bad}");
        }
        for ok in [
            "true",
            "false",
            "eth0",
            "1",
            "-7",
            "0",
            "1.5",
            "10.0.0.1",
            "198.51.100.50",
            "1.10.0",
            "1.2.3",
            "v1.10",
            "abc",
            "0.0.0.0/0",
        ] {
            assert!(yaml11_string_hazard(ok).is_none(), "{ok}");
        }
    }

    #[test]
    fn integers() {
        assert_eq!(parse_int("80"), Ok(80));
        assert_eq!(parse_int("0x50"), Ok(80));
        assert_eq!(parse_int("-3"), Ok(-3));
        assert_eq!(parse_int("0"), Ok(0));
        assert!(parse_int("010").is_err());
        assert!(parse_int("1_000").is_err());
        assert!(parse_int("0o7").is_err());
        assert!(parse_int("8.0").is_err());
        assert!(parse_int("").is_err());
    }
}
