//! The Calico selector language (libcalico-go/lib/selector): parse once, evaluate against label maps,
//! print Felix's canonical form and its unique ID (the input of ipset names). Pure: no I/O, no
//! clock; bounded work on any input (linear lexing, nesting limit, allocation-free matching).

mod ast;
mod lex;
mod parse;

use crate::model::Labels;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Serialize, Serializer};
use sha2::{Digest, Sha224};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

pub use lex::MAX_LABEL_LEN;
pub use parse::MAX_NESTING;

/// A parsed selector. Equality and hashing follow the source text as written (two spellings of
/// the same selector differ); compare `canonical()` for semantic identity as Felix does.
/// Serialises as its source text.
///
/// Shared, not copied, on clone: the loader hands the same parsed selector to every rule that
/// spells it the same way, and a policy set holds tens of thousands of rule selectors.
#[derive(Clone)]
pub struct Selector(Arc<Parsed>);

struct Parsed {
    source: String,
    canonical: String,
    root: ast::Node,
}

/// Why a selector failed to parse; `offset` is a byte offset into the selector text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at character {offset})")]
pub struct SelectorError {
    /// What was wrong, phrased for the user (no position in it).
    pub message: String,
    /// Byte offset into the selector text where the problem starts (`len` for end of input).
    pub offset: usize,
}

impl Selector {
    /// Parse selector text. Empty or blank text is `all()`.
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        let tokens = lex::tokenize(text)?;
        let root = parse::parse(&tokens)?;
        Ok(Selector::from_root(text.to_string(), root))
    }

    fn from_root(source: String, root: ast::Node) -> Selector {
        let mut canonical = String::with_capacity(source.len() + 8);
        root.write_canonical(&mut canonical);
        Selector(Arc::new(Parsed {
            source,
            canonical,
            root,
        }))
    }

    /// `all()`: what an empty selector means.
    pub fn all() -> Selector {
        Selector::from_root("all()".to_string(), ast::Node::All)
    }

    /// Whether the label map satisfies the selector. Allocation-free.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.0.root.matches(labels)
    }

    /// Felix's canonical rendering (its selector `String()`), the input of ipset IDs.
    pub fn canonical(&self) -> &str {
        &self.0.canonical
    }

    /// Felix's `UniqueID()`: `"s:" + base64url_nopad(SHA-224("s:" + canonical))`.
    pub fn unique_id(&self) -> String {
        let digest = Sha224::digest(format!("s:{}", self.0.canonical).as_bytes());
        format!("s:{}", URL_SAFE_NO_PAD.encode(digest))
    }

    /// The text as the user wrote it.
    pub fn source(&self) -> &str {
        &self.0.source
    }

    /// Felix's folding of a rule's positive and negated selector into one ipset: the same as
    /// parsing `(pos) && (!(neg))` built from both source texts (Felix only folds when both
    /// are non-empty; that choice stays with the caller).
    pub fn and_not(&self, negated: &Selector) -> Selector {
        let root = ast::Node::And(vec![
            self.0.root.clone(),
            ast::Node::Not(Box::new(negated.0.root.clone())),
        ]);
        Selector::from_root(
            format!("({}) && (!({}))", self.0.source, negated.0.source),
            root,
        )
    }

    /// True when the whole selector is `all()` (including an empty selector).
    pub fn is_all(&self) -> bool {
        self.0.root == ast::Node::All
    }

    /// True when the whole selector is `global()`, the only form allowed to use it.
    pub fn is_global(&self) -> bool {
        self.0.root == ast::Node::Global
    }
}

impl PartialEq for Selector {
    fn eq(&self, other: &Selector) -> bool {
        self.0.source == other.0.source
    }
}

impl Eq for Selector {}

impl Hash for Selector {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.source.hash(state);
    }
}

impl fmt::Debug for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Selector")
            .field("source", &self.0.source)
            .field("canonical", &self.0.canonical)
            .finish()
    }
}

impl Serialize for Selector {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.source)
    }
}
