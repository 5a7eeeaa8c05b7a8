//! Loading policy: the texts a `source::Source` read are parsed into raw resources (parse) and
//! validated into the typed model (validate; selectors live in `model::selector`).
//! All-or-nothing: a `PolicySet` exists only when no error was found. Reads nothing itself
//! (`source::load_paths` reads the directory and loads it).

pub mod parse;
pub mod validate;

use crate::diag::Diagnostic;
use crate::model::PolicySet;

/// One unit of policy text and the name diagnostics cite it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedText {
    pub name: String,
    pub text: String,
}

/// What one read of a source produced.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The texts, in the order the loader must see them (name order for the directory).
    pub texts: Vec<NamedText>,
    /// Identity of exactly these texts: equal revisions mean the same policy set. The daemon
    /// publishes it (`status.json` `source_hash`) and skips re-applying an unchanged set.
    pub revision: String,
    /// Problems reading (a file too large, not UTF-8, unlistable): errors make the set invalid.
    pub diagnostics: Vec<Diagnostic>,
    /// The source could not be read at all (missing, permission, loop): there is no input to
    /// judge, which `check` reports as exit status 2.
    pub unreadable: bool,
}

/// The outcome of loading: the set (only when there is no error) and every diagnostic, sorted.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub set: Option<PolicySet>,
    pub diagnostics: Vec<Diagnostic>,
    /// How many resources the texts held (0: nothing to apply at all).
    pub resources: usize,
}

/// Parse and validate already-read texts. Pure.
pub fn load_sources(texts: &[NamedText]) -> Loaded {
    let mut diagnostics = Vec::new();
    let mut validator = validate::Validator::default();
    let mut count = 0;
    // One file's YAML tree at a time: memory stays near one file's tree plus the typed set.
    for t in texts {
        let (resources, mut d) = parse::parse(&t.name, &t.text);
        diagnostics.append(&mut d);
        count += resources.len();
        for r in &resources {
            validator.add(r);
        }
    }
    let (set, mut d) = validator.finish();
    diagnostics.append(&mut d);
    finish(set, diagnostics, count)
}

/// Sort the diagnostics and keep the set only when none is an error (all-or-nothing).
fn finish(set: PolicySet, mut diagnostics: Vec<Diagnostic>, resources: usize) -> Loaded {
    crate::diag::sort(&mut diagnostics);
    let valid = !diagnostics.iter().any(Diagnostic::is_error);
    Loaded {
        set: valid.then_some(set),
        diagnostics,
        resources,
    }
}

/// A load plus whether the source could not be read at all (`check` exits 2 then).
#[derive(Debug, Clone)]
pub struct Checked {
    pub loaded: Loaded,
    pub unreadable: bool,
}

/// What a set without a single resource is called in its diagnostic.
pub const EMPTY_SET_MESSAGE: &str = "the policy set holds no resources at all (an empty \
    directory, only non-policy files, or a file removed before its successor arrived): applying \
    it would remove all of hostfw's protection, so it is refused and the rules in force stay; \
    run `hostfw flush` to remove hostfw's rules on purpose";

/// Load what a source read: its read diagnostics and the loader's together, one verdict. A
/// source that yields no resource at all is an error (docs/design.md, "Failure model": the
/// empty set is never applied as "remove everything").
pub fn load_snapshot(snapshot: &Snapshot) -> Checked {
    let loaded = load_sources(&snapshot.texts);
    let mut diagnostics = snapshot.diagnostics.clone();
    diagnostics.extend(loaded.diagnostics);
    if loaded.resources == 0
        && !snapshot.unreadable
        && !diagnostics.iter().any(Diagnostic::is_error)
    {
        let name = snapshot
            .texts
            .first()
            .map_or("policy source", |t| t.name.as_str());
        diagnostics.push(Diagnostic::file_error(name, EMPTY_SET_MESSAGE));
    }
    let set = loaded.set.unwrap_or_default();
    // Errors from either stage are in `diagnostics`, so `finish` drops the set when needed.
    let loaded = finish(set, diagnostics, loaded.resources);
    Checked {
        loaded,
        unreadable: snapshot.unreadable,
    }
}
