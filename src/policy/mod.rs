//! Loading policy: the texts a `source::Source` read are parsed into raw resources (parse) and
//! validated into the typed model (validate; selectors live in `model::selector`).
//! All-or-nothing: a `PolicySet` exists only when no error was found. Reads nothing itself
//! (`source::load_paths` reads the directory and loads it).

pub mod parse;
pub mod validate;

use crate::diag::Diagnostic;
use crate::model::PolicySet;
use crate::recall::Recall;
use sha2::{Digest, Sha256};

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
        let file = load_file(&mut validator, t);
        diagnostics.extend(file.diagnostics);
        count += file.resources;
        validator.merge(file.part);
    }
    let (set, mut d) = validator.finish();
    diagnostics.append(&mut d);
    finish(set, diagnostics, count)
}

/// What one file yields on its own: its parse diagnostics, its validated part, and how many
/// resources it held.
#[derive(Debug, Clone)]
struct FileLoad {
    diagnostics: Vec<Diagnostic>,
    part: validate::FilePart,
    resources: usize,
}

fn load_file(validator: &mut validate::Validator, t: &NamedText) -> FileLoad {
    let (resources, diagnostics) = parse::parse(&t.name, &t.text);
    FileLoad {
        diagnostics,
        part: validator.validate_file(&resources),
        resources: resources.len(),
    }
}

/// What earlier loads found in each file, for a loader that reads the same source again and
/// again (the daemon): a file whose name and text are unchanged is neither parsed nor
/// validated again; its part is merged as it was, and only the checks across files run anew.
/// Only the files of the latest load are kept, so it never holds more than one load's worth.
#[derive(Default)]
pub struct LoadCache {
    /// By file name, under the SHA-256 of the text: what it yielded.
    files: Recall<String, [u8; 32], FileLoad>,
}

impl LoadCache {
    /// `load_snapshot`, reusing the entries of unchanged files.
    pub fn load_snapshot(&mut self, snapshot: &Snapshot) -> Checked {
        let mut diagnostics = Vec::new();
        let mut validator = validate::Validator::default();
        let mut count = 0;
        for t in &snapshot.texts {
            let digest: [u8; 32] = Sha256::digest(t.text.as_bytes()).into();
            let file = self
                .files
                .get_or_make(t.name.clone(), digest, || load_file(&mut validator, t));
            diagnostics.extend(file.diagnostics.iter().cloned());
            count += file.resources;
            validator.merge(file.part.clone());
        }
        // Entries of files that are gone are dropped here.
        self.files.finish();
        let (set, mut d) = validator.finish();
        diagnostics.append(&mut d);
        judge_snapshot(snapshot, finish(set, diagnostics, count))
    }
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
    judge_snapshot(snapshot, load_sources(&snapshot.texts))
}

/// The verdict on `loaded`, the load of `snapshot`'s texts, with the read's own problems.
fn judge_snapshot(snapshot: &Snapshot, loaded: Loaded) -> Checked {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(name: &str, port: u16) -> String {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: {name}}}\n\
             spec:\n  selector: has(role)\n  ingress:\n  - {{action: Allow, protocol: TCP, \
             destination: {{ports: [{port}]}}}}\n"
        )
    }

    fn snapshot(files: &[(&str, &str)]) -> Snapshot {
        Snapshot {
            texts: files
                .iter()
                .map(|(name, text)| NamedText {
                    name: name.to_string(),
                    text: text.to_string(),
                })
                .collect(),
            ..Snapshot::default()
        }
    }

    /// The same verdict, set and diagnostics as a load from scratch, load after load: edits,
    /// an invalid file, a duplicate between an unchanged and a changed file, a removed file,
    /// the same text under another name.
    #[test]
    fn a_cached_load_equals_a_fresh_one_after_each_change() {
        let a = policy("a", 80);
        let b = policy("b", 81);
        let b2 = policy("b", 82);
        let dup = format!("{}---\n{}", policy("c", 83), policy("a", 84));
        let bad = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\n\
                   metadata: {name: b}\nspec: {selector: 'has(', order: x}\n";
        let yaml_error = "kind: [\n";
        let steps: [&[(&str, &str)]; 9] = [
            &[("a.yaml", &a), ("b.yaml", &b)],
            &[("a.yaml", &a), ("b.yaml", &b2)],
            &[("a.yaml", &a), ("b.yaml", bad)],
            &[("a.yaml", &a), ("b.yaml", &b2)],
            &[("a.yaml", &a), ("b.yaml", &b2), ("c.yaml", &dup)],
            &[("a.yaml", &a), ("b.yaml", yaml_error), ("c.yaml", &dup)],
            &[("b.yaml", &b2), ("c.yaml", &dup)],
            &[("b.yaml", &b2), ("d.yaml", &dup)],
            &[],
        ];
        let mut cache = LoadCache::default();
        for (i, files) in steps.iter().enumerate() {
            let s = snapshot(files);
            let cached = cache.load_snapshot(&s);
            let fresh = load_snapshot(&s);
            assert_eq!(cached.loaded.set, fresh.loaded.set, "step {i}");
            assert_eq!(
                cached.loaded.diagnostics, fresh.loaded.diagnostics,
                "step {i}"
            );
            assert_eq!(cached.loaded.resources, fresh.loaded.resources, "step {i}");
        }
        assert!(steps[4..6].iter().all(|files| {
            let fresh = load_snapshot(&snapshot(files));
            fresh
                .loaded
                .diagnostics
                .iter()
                .any(|d| d.message.contains("duplicate"))
        }));
    }

    /// An unchanged file is taken from the cache (here an entry altered on purpose shows it
    /// was used); a changed one is loaded again.
    #[test]
    fn only_changed_files_are_loaded_again() {
        let (a, b) = (policy("a", 80), policy("b", 81));
        let mut cache = LoadCache::default();
        cache.load_snapshot(&snapshot(&[("a.yaml", &a), ("b.yaml", &b)]));
        for file in cache.files.values_mut() {
            file.resources += 10;
        }
        let b2 = policy("b", 82);
        let again = cache.load_snapshot(&snapshot(&[("a.yaml", &a), ("b.yaml", &b2)]));
        assert_eq!(again.loaded.resources, 1 + 10 + 1);
    }

    /// The cache holds the files of the latest load only.
    #[test]
    fn entries_of_files_that_are_gone_are_dropped() {
        let (a, b) = (policy("a", 80), policy("b", 81));
        let mut cache = LoadCache::default();
        cache.load_snapshot(&snapshot(&[("a.yaml", &a), ("b.yaml", &b)]));
        assert_eq!(cache.files.held(), 2);
        cache.load_snapshot(&snapshot(&[("b.yaml", &b)]));
        let names: Vec<&String> = cache.files.keys().collect();
        assert_eq!(names, ["b.yaml"]);
    }
}
