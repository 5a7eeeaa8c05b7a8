//! Loading policy: read the directory (source), parse YAML into raw resources (parse), validate
//! into the typed model (validate), with the selector language alongside. All-or-nothing: a
//! `PolicySet` exists only when no error was found.

pub mod parse;
pub mod selector;
pub mod source;
pub mod validate;

use crate::diag::Diagnostic;
use crate::model::PolicySet;
use std::path::PathBuf;

/// The outcome of loading: the set (only when there is no error) and every diagnostic, sorted.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub set: Option<PolicySet>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Parse and validate already-read sources. Pure.
pub fn load_sources(sources: &[source::Source]) -> Loaded {
    let _ = sources;
    Loaded {
        set: Some(PolicySet::default()),
        diagnostics: Vec::new(),
    }
}

/// Read the given files/directories (see `source`) and load them.
pub fn load_paths(paths: &[PathBuf]) -> Loaded {
    let (sources, mut diagnostics) = source::read(paths);
    let mut loaded = load_sources(&sources);
    diagnostics.append(&mut loaded.diagnostics);
    crate::diag::sort(&mut diagnostics);
    if diagnostics.iter().any(|d| d.is_error()) {
        loaded.set = None;
    }
    loaded.diagnostics = diagnostics;
    loaded
}
