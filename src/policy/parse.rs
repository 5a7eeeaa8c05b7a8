//! YAML text to raw resources with positions. The only module that knows the YAML crate
//! (saphyr-parser: yaml-rust2's successor, which parses `&str` input without copying).
//! Pure: it builds its own spanned node tree (so validation can point at line and column),
//! rejects what calicoctl's strict YAML decoding rejects (syntax errors, duplicate keys), bounds
//! alias expansion and nesting, and expands the document layouts (single, `---` multi-document,
//! bare top-level list, typed `XxxList`). It knows nothing about fields below `kind`/`items`.

use crate::diag::Diagnostic;
use saphyr_parser::{Event, Marker, Parser, ScalarStyle};
use std::borrow::Cow;
use std::collections::HashMap;

/// The only apiVersion calicoctl accepts for the kinds hostfw reads.
pub const API_VERSION: &str = "projectcalico.org/v3";

/// Most nodes one file may produce, aliases expanded. A 10 MiB file of ordinary YAML stays far
/// below this; a "billion laughs" file hits it after bounded work and memory.
pub const MAX_NODES_PER_FILE: usize = 2_000_000;
/// Most nodes alias expansion may add to one file. Anchors are rare in policy files; this is
/// generous for reuse and still stops a YAML bomb early.
pub const MAX_ALIAS_NODES_PER_FILE: usize = 100_000;
/// Most scalar bytes alias expansion may add to one file. Counting nodes alone lets one alias of
/// a large quoted scalar repeat megabytes per reference; this bounds the memory aliases can make.
pub const MAX_ALIAS_BYTES_PER_FILE: usize = 16 << 20;
/// Empty documents reported one by one in a file before the rest are summarised.
pub const MAX_EMPTY_DOC_REPORTS: usize = 20;
/// Deepest nesting accepted. Calico resources nest about eight levels; the bound keeps every
/// recursive walk over the tree (validation, drop) far from the stack limit.
pub const MAX_DEPTH: usize = 64;

/// A scalar as written, and whether it was plain (unquoted). YAML 1.1 typing (booleans,
/// numbers, null) is decided by validation, which knows the target field's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scalar<'t> {
    /// Borrowed from the source text whenever the parser could (no escapes or folding).
    pub text: Cow<'t, str>,
    /// True for an unquoted, non-block scalar: only those can be YAML booleans, numbers or null.
    pub plain: bool,
    /// The source column of the text's first character when the text is a verbatim copy of
    /// one source line (no escapes, no folding), so a position inside the value (a selector
    /// error) can be pointed at exactly; None otherwise.
    pub text_column: Option<u32>,
}

impl Scalar<'_> {
    /// YAML null: an empty plain scalar, `~`, or `null` in its three spellings.
    pub fn is_null(&self) -> bool {
        self.plain && matches!(&*self.text, "" | "~" | "null" | "Null" | "NULL")
    }
}

/// The shape of a node.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'t> {
    Scalar(Scalar<'t>),
    Seq(Vec<Node<'t>>),
    /// Entries in document order; keys are scalars and unique (checked while parsing).
    Map(Vec<(Node<'t>, Node<'t>)>),
}

/// A YAML node with the 1-based line and column where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node<'t> {
    pub line: u32,
    pub column: u32,
    pub value: Value<'t>,
}

impl<'t> Node<'t> {
    /// A null node at a position (what an omitted value reads as).
    pub fn null(line: u32, column: u32) -> Node<'t> {
        Node {
            line,
            column,
            value: Value::Scalar(Scalar {
                text: Cow::Borrowed(""),
                plain: true,
                text_column: None,
            }),
        }
    }

    pub fn as_scalar(&self) -> Option<&Scalar<'t>> {
        match &self.value {
            Value::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// Whether this node is YAML null (see `Scalar::is_null`).
    pub fn is_null(&self) -> bool {
        self.as_scalar().is_some_and(Scalar::is_null)
    }

    /// The value of key `key` (exact case) in a mapping node.
    pub fn get(&self, key: &str) -> Option<&Node<'t>> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_scalar().is_some_and(|s| s.text == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The text of a scalar value under `key`, if any.
    pub fn get_text(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Node::as_scalar).map(|s| &*s.text)
    }

    /// A short name for the node's shape, for messages.
    pub fn shape(&self) -> &'static str {
        match &self.value {
            Value::Scalar(s) if s.is_null() => "null",
            Value::Scalar(_) => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// One resource as found in a file: a mapping node (not yet checked beyond its layout).
#[derive(Debug, Clone, PartialEq)]
pub struct RawResource<'t> {
    pub file: String,
    pub node: Node<'t>,
}

/// Parse one file. Any YAML error rejects the whole file: its resources are not returned.
pub fn parse<'t>(file: &str, text: &'t str) -> (Vec<RawResource<'t>>, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let docs = match build_documents(text) {
        Ok(docs) => docs,
        Err(e) => {
            diags.push(at(file, e.line, e.column, e.message));
            return (Vec::new(), diags);
        }
    };
    let mut resources = Vec::new();
    let count = docs.len();
    let mut empty = 0usize;
    for (i, doc) in docs.into_iter().enumerate() {
        match doc.root {
            Some(root) if !root.is_null() => expand(file, root, &mut resources, &mut diags),
            _ => {
                if i + 1 == count && trailing_separator_only(text, doc.line) {
                    continue;
                }
                empty += 1;
                // A file of nothing but separators must not turn into millions of diagnostics.
                if empty > MAX_EMPTY_DOC_REPORTS {
                    continue;
                }
                diags.push(at(
                    file,
                    doc.line,
                    doc.column,
                    "empty document (nothing, or only comments, between `---` separators); \
                     calicoctl rejects it as a resource of unknown type; remove the extra `---`",
                ));
            }
        }
    }
    if empty > MAX_EMPTY_DOC_REPORTS {
        diags.push(Diagnostic::file_error(
            file,
            format!(
                "{} more empty documents not reported",
                empty - MAX_EMPTY_DOC_REPORTS
            ),
        ));
    }
    if resources.is_empty() && diags.is_empty() {
        diags.push(Diagnostic::file_error(
            file,
            "no resources in file (empty or only comments); calicoctl rejects such a file",
        ));
    }
    (resources, diags)
}

/// Whether the document starting at `line` is just a final `---` line followed by blank lines.
/// calicoctl ignores a final `---` (with at most one newline); we also allow trailing blank
/// lines, which editors add, but not a trailing comment, which calicoctl rejects.
fn trailing_separator_only(text: &str, line: u32) -> bool {
    let mut lines = text.lines().skip(line.saturating_sub(1) as usize);
    let Some(first) = lines.next() else {
        return true;
    };
    // calicoctl drops the rest of a separator line, so `--- # end` is a separator too.
    let first = first.trim_end();
    let separator = first.strip_prefix("---").is_some_and(|rest| {
        rest.is_empty() || (rest.starts_with([' ', '\t']) && rest.trim_start().starts_with('#'))
    });
    (separator || first.is_empty()) && lines.all(|l| l.trim().is_empty())
}

fn at(file: &str, line: u32, column: u32, message: impl Into<String>) -> Diagnostic {
    let mut d = Diagnostic::file_error(file, message);
    d.line = line;
    d.column = column;
    d
}

fn at_node(file: &str, node: &Node, message: impl Into<String>) -> Diagnostic {
    at(file, node.line, node.column, message)
}

/// Split one document into resources according to its layout.
fn expand<'t>(
    file: &str,
    root: Node<'t>,
    out: &mut Vec<RawResource<'t>>,
    diags: &mut Vec<Diagnostic>,
) {
    match root.value {
        Value::Seq(items) => {
            for item in items {
                if matches!(item.value, Value::Map(_)) {
                    out.push(RawResource {
                        file: file.to_string(),
                        node: item,
                    });
                } else {
                    diags.push(at_node(
                        file,
                        &item,
                        format!(
                            "a top-level list must hold resources (mappings), found {}",
                            item.shape()
                        ),
                    ));
                }
            }
        }
        Value::Map(_) => expand_mapping(file, root, out, diags),
        Value::Scalar(_) => diags.push(at_node(
            file,
            &root,
            "expected a resource (a mapping with apiVersion, kind, metadata and spec), found a scalar",
        )),
    }
}

fn expand_mapping<'t>(
    file: &str,
    root: Node<'t>,
    out: &mut Vec<RawResource<'t>>,
    diags: &mut Vec<Diagnostic>,
) {
    let kind = root.get_text("kind").map(str::to_string);
    let Some(kind) = kind else {
        out.push(RawResource {
            file: file.to_string(),
            node: root,
        });
        return;
    };
    if kind == "List" {
        let node = root.get("kind").unwrap_or(&root);
        diags.push(at_node(
            file,
            node,
            "`kind: List` (a Kubernetes list) is not supported, as in calicoctl; use a bare YAML \
             list of resources or a typed list such as GlobalNetworkPolicyList",
        ));
        return;
    }
    let Some(element_kind) = kind.strip_suffix("List").filter(|k| !k.is_empty()) else {
        out.push(RawResource {
            file: file.to_string(),
            node: root,
        });
        return;
    };
    let element_kind = element_kind.to_string();
    let Value::Map(entries) = root.value else {
        return;
    };
    let mut items_node = None;
    let mut saw_api = false;
    for (key, value) in entries {
        let name = key.as_scalar().map(|s| &*s.text).unwrap_or("");
        match name {
            "kind" | "metadata" => {}
            "apiVersion" => {
                saw_api = true;
                let v = value.as_scalar().map(|s| &*s.text).unwrap_or("");
                if v != API_VERSION {
                    diags.push(at_node(
                        file,
                        &value,
                        format!("{kind}: apiVersion must be `{API_VERSION}`, found `{v}`"),
                    ));
                }
            }
            "items" => items_node = Some(value),
            other => diags.push(at_node(
                file,
                &key,
                format!("{kind}: unknown field `{other}` (a list has apiVersion, kind, metadata and items)"),
            )),
        }
    }
    if !saw_api {
        diags.push(at(
            file,
            root.line,
            root.column,
            format!("{kind}: `apiVersion: {API_VERSION}` is required"),
        ));
    }
    let Some(items) = items_node else {
        diags.push(at(
            file,
            root.line,
            root.column,
            format!("{kind}: `items` is required"),
        ));
        return;
    };
    let items = match items.value {
        Value::Seq(items) => items,
        Value::Scalar(ref s) if s.is_null() => Vec::new(),
        _ => {
            diags.push(at_node(
                file,
                &items,
                format!("{kind}: `items` must be a list, found {}", items.shape()),
            ));
            return;
        }
    };
    for item in items {
        if !matches!(item.value, Value::Map(_)) {
            diags.push(at_node(
                file,
                &item,
                format!(
                    "{kind}: each item must be a resource (a mapping), found {}",
                    item.shape()
                ),
            ));
            continue;
        }
        let item_kind = item.get_text("kind");
        let item_api = item.get_text("apiVersion");
        if item_kind != Some(element_kind.as_str()) || item_api != Some(API_VERSION) {
            diags.push(at_node(
                file,
                &item,
                format!(
                    "{kind}: each item must carry `apiVersion: {API_VERSION}` and \
                     `kind: {element_kind}` (found apiVersion `{}`, kind `{}`)",
                    item_api.unwrap_or(""),
                    item_kind.unwrap_or("")
                ),
            ));
            continue;
        }
        out.push(RawResource {
            file: file.to_string(),
            node: item,
        });
    }
}

/// A parse failure with its position (1-based).
struct YamlError {
    line: u32,
    column: u32,
    message: String,
}

struct Document<'t> {
    line: u32,
    column: u32,
    root: Option<Node<'t>>,
}

enum Frame<'t> {
    Seq {
        line: u32,
        column: u32,
        anchor: usize,
        items: Vec<Node<'t>>,
    },
    Map {
        line: u32,
        column: u32,
        anchor: usize,
        entries: Vec<(Node<'t>, Node<'t>)>,
        key: Option<Node<'t>>,
        /// Built once a mapping is large enough that a linear duplicate scan would cost.
        index: Option<HashMap<String, usize>>,
    },
}

struct Builder<'t> {
    stack: Vec<Frame<'t>>,
    /// Each anchored node with its size: (nodes, scalar bytes).
    anchors: HashMap<usize, (Node<'t>, Size)>,
    nodes: usize,
    alias_nodes: usize,
    alias_bytes: usize,
}

/// How much a node expands to: nodes, and bytes of scalar text (keys included).
#[derive(Clone, Copy)]
struct Size {
    nodes: usize,
    bytes: usize,
}

fn pos(mark: &Marker) -> (u32, u32) {
    (mark.line() as u32, mark.col() as u32 + 1)
}

fn size_of(node: &Node<'_>) -> Size {
    let mut size = Size { nodes: 1, bytes: 0 };
    let mut add = |n: &Node<'_>| {
        let s = size_of(n);
        size.nodes += s.nodes;
        size.bytes += s.bytes;
    };
    match &node.value {
        Value::Scalar(s) => {
            return Size {
                nodes: 1,
                bytes: s.text.len(),
            }
        }
        Value::Seq(items) => items.iter().for_each(&mut add),
        Value::Map(entries) => entries.iter().for_each(|(k, v)| {
            add(k);
            add(v);
        }),
    }
    size
}

fn build_documents(text: &str) -> Result<Vec<Document<'_>>, YamlError> {
    let mut parser = Parser::new_from_str(text);
    let mut docs = Vec::new();
    let mut b = Builder {
        stack: Vec::new(),
        anchors: HashMap::new(),
        nodes: 0,
        alias_nodes: 0,
        alias_bytes: 0,
    };
    let mut current: Option<Document> = None;
    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|e| {
            let (line, column) = pos(e.marker());
            YamlError {
                line,
                column,
                message: syntax_message(e.info()),
            }
        })?;
        let (line, column) = pos(&span.start);
        let err = |message: String| YamlError {
            line,
            column,
            message,
        };
        let node = match event {
            Event::StreamStart | Event::Nothing => continue,
            Event::StreamEnd => break,
            Event::DocumentStart(_) => {
                b.anchors.clear();
                current = Some(Document {
                    line,
                    column,
                    root: None,
                });
                continue;
            }
            Event::DocumentEnd => {
                if let Some(doc) = current.take() {
                    docs.push(doc);
                }
                continue;
            }
            Event::Scalar(text, style, anchor, tag) => {
                if let Some(tag) = tag {
                    return Err(err(tag_message(&tag.handle, &tag.suffix, &text)));
                }
                let quotes = match style {
                    ScalarStyle::Plain => Some(0),
                    ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => Some(2),
                    _ => None,
                };
                let width = span.end.index().saturating_sub(span.start.index());
                let verbatim = span.start.line() == span.end.line()
                    && quotes.is_some_and(|q| width == text.chars().count() + q);
                let node = Node {
                    line,
                    column,
                    value: Value::Scalar(Scalar {
                        text,
                        plain: style == ScalarStyle::Plain,
                        text_column: verbatim
                            .then(|| column + u32::from(style != ScalarStyle::Plain)),
                    }),
                };
                if anchor > 0 {
                    b.anchors.insert(anchor, (node.clone(), size_of(&node)));
                }
                node
            }
            Event::SequenceStart(_, Some(tag)) | Event::MappingStart(_, Some(tag)) => {
                return Err(err(tag_message(&tag.handle, &tag.suffix, "")));
            }
            Event::SequenceStart(anchor, None) => {
                b.open(Frame::Seq {
                    line,
                    column,
                    anchor,
                    items: Vec::new(),
                })
                .map_err(err)?;
                continue;
            }
            Event::MappingStart(anchor, None) => {
                b.open(Frame::Map {
                    line,
                    column,
                    anchor,
                    entries: Vec::new(),
                    key: None,
                    index: None,
                })
                .map_err(err)?;
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => match b.close() {
                Some(node) => node,
                None => continue,
            },
            Event::Alias(id) => {
                let Some((node, size)) = b.anchors.get(&id) else {
                    return Err(err("alias to an unknown anchor".to_string()));
                };
                b.alias_nodes += size.nodes;
                b.alias_bytes += size.bytes;
                b.nodes += size.nodes;
                if b.alias_nodes > MAX_ALIAS_NODES_PER_FILE {
                    return Err(err(format!(
                        "YAML aliases expand to more than {MAX_ALIAS_NODES_PER_FILE} nodes \
                         (a \"billion laughs\" document?); refusing to expand further"
                    )));
                }
                if b.alias_bytes > MAX_ALIAS_BYTES_PER_FILE {
                    return Err(err(format!(
                        "YAML aliases expand to more than {} MiB of text (a \"billion \
                         laughs\" document?); refusing to expand further",
                        MAX_ALIAS_BYTES_PER_FILE >> 20
                    )));
                }
                let mut copy = node.clone();
                copy.line = line;
                copy.column = column;
                copy
            }
        };
        b.nodes += 1;
        if b.nodes > MAX_NODES_PER_FILE {
            return Err(err(format!(
                "file has more than {MAX_NODES_PER_FILE} YAML nodes; split it into several files"
            )));
        }
        if let Some(root) = b.push(node).map_err(|(l, c, m)| YamlError {
            line: l,
            column: c,
            message: m,
        })? {
            if let Some(doc) = current.as_mut() {
                doc.root = Some(root);
            }
        }
    }
    Ok(docs)
}

impl<'t> Builder<'t> {
    fn open(&mut self, frame: Frame<'t>) -> Result<(), String> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(format!(
                "YAML nesting deeper than {MAX_DEPTH} levels; no resource needs that"
            ));
        }
        self.stack.push(frame);
        Ok(())
    }

    /// Close the innermost collection and return it as a node.
    fn close(&mut self) -> Option<Node<'t>> {
        let frame = self.stack.pop()?;
        let (node, anchor) = match frame {
            Frame::Seq {
                line,
                column,
                anchor,
                items,
            } => (
                Node {
                    line,
                    column,
                    value: Value::Seq(items),
                },
                anchor,
            ),
            Frame::Map {
                line,
                column,
                anchor,
                entries,
                ..
            } => {
                // A block mapping's start event is marked after its first key; the key is
                // where a reader looks for the mapping.
                let (line, column) = match entries.first() {
                    Some((k, _)) if (k.line, k.column) < (line, column) => (k.line, k.column),
                    _ => (line, column),
                };
                (
                    Node {
                        line,
                        column,
                        value: Value::Map(entries),
                    },
                    anchor,
                )
            }
        };
        if anchor > 0 {
            self.anchors.insert(anchor, (node.clone(), size_of(&node)));
        }
        Some(node)
    }

    /// Add a finished node to the enclosing collection; returns it when it is a document root.
    #[allow(clippy::type_complexity)]
    fn push(&mut self, node: Node<'t>) -> Result<Option<Node<'t>>, (u32, u32, String)> {
        match self.stack.last_mut() {
            None => Ok(Some(node)),
            Some(Frame::Seq { items, .. }) => {
                items.push(node);
                Ok(None)
            }
            Some(Frame::Map {
                entries,
                key,
                index,
                ..
            }) => match key.take() {
                None => {
                    let Some(text) = node.as_scalar().map(|s| s.text.to_string()) else {
                        return Err((
                            node.line,
                            node.column,
                            "a mapping key must be a plain string, not a list or mapping"
                                .to_string(),
                        ));
                    };
                    let previous = match index {
                        Some(ix) => ix.get(&text).copied(),
                        None => entries
                            .iter()
                            .position(|(k, _)| k.as_scalar().is_some_and(|s| s.text == text)),
                    };
                    if let Some(i) = previous {
                        let first = &entries[i].0;
                        return Err((
                            node.line,
                            node.column,
                            format!(
                                "duplicate key `{text}` (first at line {}, column {})",
                                first.line, first.column
                            ),
                        ));
                    }
                    if let Some(ix) = index {
                        ix.insert(text, entries.len());
                    } else if entries.len() >= 16 {
                        let mut ix: HashMap<String, usize> = entries
                            .iter()
                            .enumerate()
                            .filter_map(|(i, (k, _))| {
                                k.as_scalar().map(|s| (s.text.to_string(), i))
                            })
                            .collect();
                        ix.insert(text, entries.len());
                        *index = Some(ix);
                    }
                    *key = Some(node);
                    Ok(None)
                }
                Some(k) => {
                    entries.push((k, node));
                    Ok(None)
                }
            },
        }
    }
}

fn tag_message(handle: &str, suffix: &str, text: &str) -> String {
    let tag = format!("{handle}{suffix}");
    let whole = if text.is_empty() {
        tag.clone()
    } else {
        format!("{tag} {text}")
    };
    format!(
        "YAML tag `{tag}` is not supported: a value starting with `!` is read as a tag; \
         quote it (e.g. selector: \"{whole}\")"
    )
}

/// The parser's message plus a hint for the mistakes Calico users make most.
fn syntax_message(info: &str) -> String {
    let mut msg = format!("YAML syntax error: {info}");
    if info.contains("alias") || info.contains("anchor") {
        msg.push_str(
            "; an unquoted `*` or `&` starts a YAML alias or anchor: quote the value \
             (e.g. interfaceName: \"*\")",
        );
    } else if info.contains("recursion limit") {
        msg.push_str("; the document nests too deeply");
    } else if info.contains("tab") {
        msg.push_str("; YAML indentation must use spaces, not tabs");
    } else if info.contains("tag") {
        msg.push_str("; a value starting with `!` is read as a YAML tag: quote it");
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> (Vec<String>, Vec<String>) {
        let (res, diags) = parse("f.yaml", text);
        (
            res.iter()
                .map(|r| r.node.get_text("kind").unwrap_or("").to_string())
                .collect(),
            diags.iter().map(|d| d.to_string()).collect(),
        )
    }

    #[test]
    fn positions_are_one_based() {
        let (res, d) = parse("f.yaml", "kind: A\nspec:\n  x: 1\n");
        assert!(d.is_empty(), "{d:?}");
        let x = res[0]
            .node
            .get("spec")
            .and_then(|s| s.get("x"))
            .map(|n| (n.line, n.column));
        assert_eq!(x, Some((3, 6)));
    }

    #[test]
    fn verbatim_scalars_know_their_text_column() {
        let text = "a: \"x y\"\nb: 'p''q'\nc: plain text\nd: \"e\\tf\"\ne: |\n  block\n";
        let (res, d) = parse("f.yaml", text);
        assert!(d.is_empty(), "{d:?}");
        let col = |k: &str| {
            res[0]
                .node
                .get(k)
                .and_then(Node::as_scalar)
                .and_then(|s| s.text_column)
        };
        assert_eq!(col("a"), Some(5));
        assert_eq!(col("b"), None);
        assert_eq!(col("c"), Some(4));
        assert_eq!(col("d"), None);
        assert_eq!(col("e"), None);
    }

    #[test]
    fn layouts() {
        assert_eq!(kinds("kind: A\n").0, vec!["A"]);
        assert_eq!(kinds("kind: A\n---\nkind: B\n").0, vec!["A", "B"]);
        assert_eq!(kinds("- kind: A\n- kind: B\n").0, vec!["A", "B"]);
        assert_eq!(kinds("--- \nkind: A\n---\n").0, vec!["A"]);
        let list = "apiVersion: projectcalico.org/v3\nkind: AList\nitems:\n- apiVersion: projectcalico.org/v3\n  kind: A\n";
        assert_eq!(kinds(list), (vec!["A".to_string()], vec![]));
    }

    #[test]
    fn duplicate_key_is_an_error_with_both_positions() {
        let (_, d) = kinds("a: 1\nb: 2\na: 3\n");
        assert_eq!(
            d,
            vec!["f.yaml:3:1: error: duplicate key `a` (first at line 1, column 1)"]
        );
    }

    #[test]
    fn billion_laughs_is_bounded() {
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        let names = ["b", "c", "d", "e", "f", "g", "h", "i"];
        let mut prev = "a";
        for n in names {
            text.push_str(&format!(
                "{n}: &{n} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
            prev = n;
        }
        let (_, d) = kinds(&text);
        assert_eq!(d.len(), 1);
        assert!(d[0].contains("billion laughs"), "{d:?}");
    }
}
