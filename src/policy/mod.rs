//! Loading policy: read the directory (source), parse YAML into raw resources (parse), validate
//! into the typed model (validate; selectors live in `model::selector`). All-or-nothing: a
//! `PolicySet` exists only when no error was found.

pub mod parse;
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
    let mut diagnostics = Vec::new();
    let mut validator = validate::Validator::default();
    // One file's YAML tree at a time: memory stays near one file's tree plus the typed set.
    for s in sources {
        let (resources, mut d) = parse::parse(&s.path, &s.text);
        diagnostics.append(&mut d);
        for r in &resources {
            validator.add(r);
        }
    }
    let (set, mut d) = validator.finish();
    diagnostics.append(&mut d);
    finish(set, diagnostics)
}

/// Sort the diagnostics and keep the set only when none is an error (all-or-nothing).
fn finish(set: PolicySet, mut diagnostics: Vec<Diagnostic>) -> Loaded {
    crate::diag::sort(&mut diagnostics);
    let valid = !diagnostics.iter().any(Diagnostic::is_error);
    Loaded {
        set: valid.then_some(set),
        diagnostics,
    }
}

/// Read the given files/directories (see `source`) and load them.
pub fn load_paths(paths: &[PathBuf]) -> Loaded {
    load_checked(paths).loaded
}

/// `load_paths` plus whether a given path could not be read at all (`check` exits 2 then).
#[derive(Debug, Clone)]
pub struct Checked {
    pub loaded: Loaded,
    pub unreadable: bool,
}

/// Read and load, keeping the "unreadable path" flag of `source::read_outcome`.
pub fn load_checked(paths: &[PathBuf]) -> Checked {
    let read = source::read_outcome(paths);
    let loaded = load_sources(&read.sources);
    let mut diagnostics = read.diagnostics;
    diagnostics.extend(loaded.diagnostics);
    let set = loaded.set.unwrap_or_default();
    // Errors from either stage are in `diagnostics`, so `finish` drops the set when needed.
    let loaded = finish(set, diagnostics);
    Checked {
        loaded,
        unreadable: read.unreadable,
    }
}
