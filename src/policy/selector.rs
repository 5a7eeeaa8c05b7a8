//! The Calico selector language: parse once, evaluate against label maps, print canonically.
//! Pure. (Placeholder: to be replaced by the complete implementation.)

use crate::model::Labels;
use serde::{Serialize, Serializer};

/// A parsed selector. Compares and serialises by its source text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Selector {
    source: String,
}

/// Why a selector failed to parse; `offset` is a byte offset into the selector text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at character {offset})")]
pub struct SelectorError {
    pub message: String,
    pub offset: usize,
}

impl Selector {
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        Ok(Selector {
            source: text.to_string(),
        })
    }

    /// `all()`: what an empty selector means.
    pub fn all() -> Selector {
        Selector {
            source: "all()".into(),
        }
    }

    pub fn matches(&self, _labels: &Labels) -> bool {
        true
    }

    /// Felix's canonical rendering, the input of ipset IDs.
    pub fn canonical(&self) -> String {
        self.source.clone()
    }

    /// The text as the user wrote it.
    pub fn source(&self) -> &str {
        &self.source
    }
}

impl Serialize for Selector {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}
