//! Selector syntax tree: evaluation against a label map (libcalico-go/lib/selector/parser) and Felix's
//! canonical printing (libcalico-go selector `String()`). Evaluation never allocates; tree
//! depth is bounded by the parser, so the recursive walks here cannot exhaust the stack.

use crate::model::Labels;

/// One node of a parsed selector, shaped as Felix's parser shapes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Node {
    All,
    Global,
    Has(String),
    Eq(String, String),
    Ne(String, String),
    Contains(String, String),
    StartsWith(String, String),
    EndsWith(String, String),
    /// Values sorted byte-wise and de-duplicated.
    In(String, Vec<String>),
    /// Values sorted byte-wise and de-duplicated.
    NotIn(String, Vec<String>),
    Not(Box<Node>),
    /// At least two operands.
    And(Vec<Node>),
    /// At least two operands.
    Or(Vec<Node>),
}

fn in_set(set: &[String], value: &str) -> bool {
    set.binary_search_by(|item| item.as_str().cmp(value))
        .is_ok()
}

impl Node {
    pub(crate) fn matches(&self, labels: &Labels) -> bool {
        let get = |key: &str| labels.get(key).map(String::as_str);
        match self {
            Node::All | Node::Global => true,
            Node::Has(k) => labels.contains_key(k.as_str()),
            Node::Eq(k, v) => get(k) == Some(v.as_str()),
            Node::Ne(k, v) => get(k) != Some(v.as_str()),
            Node::Contains(k, v) => get(k).is_some_and(|x| x.contains(v.as_str())),
            Node::StartsWith(k, v) => get(k).is_some_and(|x| x.starts_with(v.as_str())),
            Node::EndsWith(k, v) => get(k).is_some_and(|x| x.ends_with(v.as_str())),
            Node::In(k, set) => get(k).is_some_and(|x| in_set(set, x)),
            Node::NotIn(k, set) => !get(k).is_some_and(|x| in_set(set, x)),
            Node::Not(inner) => !inner.matches(labels),
            Node::And(operands) => operands.iter().all(|n| n.matches(labels)),
            Node::Or(operands) => operands.iter().any(|n| n.matches(labels)),
        }
    }

    /// Append Felix's canonical text: `k == "v"` (single quotes only when the value holds a
    /// double quote), `k in {"a", "b"}`, `has(k)`, `!` glued to its operand, and every `&&`/`||`
    /// group wrapped in one pair of parentheses.
    pub(crate) fn write_canonical(&self, out: &mut String) {
        match self {
            Node::All => out.push_str("all()"),
            Node::Global => out.push_str("global()"),
            Node::Has(k) => {
                out.push_str("has(");
                out.push_str(k);
                out.push(')');
            }
            Node::Eq(k, v) => write_op(out, k, " == ", v),
            Node::Ne(k, v) => write_op(out, k, " != ", v),
            Node::Contains(k, v) => write_op(out, k, " contains ", v),
            Node::StartsWith(k, v) => write_op(out, k, " starts with ", v),
            Node::EndsWith(k, v) => write_op(out, k, " ends with ", v),
            Node::In(k, set) => write_set(out, k, " in {", set),
            Node::NotIn(k, set) => write_set(out, k, " not in {", set),
            Node::Not(inner) => {
                out.push('!');
                inner.write_canonical(out);
            }
            Node::And(operands) => write_group(out, operands, " && "),
            Node::Or(operands) => write_group(out, operands, " || "),
        }
    }
}

fn write_quoted(out: &mut String, value: &str) {
    // No escapes exist, so a value holds at most one kind of quote; Felix prefers `"`.
    let quote = if value.contains('"') { '\'' } else { '"' };
    out.push(quote);
    out.push_str(value);
    out.push(quote);
}

fn write_op(out: &mut String, key: &str, op: &str, value: &str) {
    out.push_str(key);
    out.push_str(op);
    write_quoted(out, value);
}

fn write_set(out: &mut String, key: &str, op: &str, set: &[String]) {
    out.push_str(key);
    out.push_str(op);
    for (i, value) in set.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_quoted(out, value);
    }
    out.push('}');
}

fn write_group(out: &mut String, operands: &[Node], joiner: &str) {
    out.push('(');
    for (i, operand) in operands.iter().enumerate() {
        if i > 0 {
            out.push_str(joiner);
        }
        operand.write_canonical(out);
    }
    out.push(')');
}
