//! `hostfw check`: parse and validate, print every diagnostic; exit 0 valid (warnings allowed),
//! 1 invalid, 2 when a given path (or the datastore) cannot be read at all (missing,
//! permission, symlink loop, etcd unreachable). Without paths it checks the configured source.

use super::{CmdResult, Exit};
use crate::cli::{CheckArgs, OutputFormat};
use crate::desired::{self, Families, Options};
use crate::finding::Finding;
use crate::model::PolicySet;
use crate::settings::Settings;

pub fn run(settings: &Settings, args: &CheckArgs) -> CmdResult {
    let checked = if args.paths.is_empty() {
        crate::policy::load_snapshot(&settings.policy_source()?.read())
    } else {
        crate::source::load_checked(&args.paths)
    };
    let loaded = &checked.loaded;
    // The lockout guard only means something for the set this node would apply.
    if let (Some(set), true) = (&loaded.set, args.paths.is_empty()) {
        for f in guard_findings(set, &settings.node) {
            eprintln!("warning: lockout guard: {}", f.message);
        }
    }
    match args.output {
        OutputFormat::Text => {
            for d in &loaded.diagnostics {
                eprintln!("{d}");
            }
        }
        OutputFormat::Json => {
            let report = serde_json::json!({
                "valid": loaded.set.is_some(),
                "diagnostics": loaded.diagnostics,
            });
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
    }
    Ok(if checked.unreadable {
        Exit::Error
    } else if loaded.set.is_some() {
        Exit::Ok
    } else {
        Exit::Invalid
    })
}

/// The lockout guard's findings for `set` on this host, for the admin's sessions as this
/// process sees them. None when the host's interfaces cannot be read or the set cannot be
/// rendered: `check` judges the input, and `apply` reports those.
fn guard_findings(set: &PolicySet, node: &str) -> Vec<Finding> {
    let Ok(interfaces) = crate::host::interfaces() else {
        return Vec::new();
    };
    let observed = crate::guard::observe(&interfaces);
    let options = Options {
        families: Families::Enabled,
        guard: Some(&observed),
    };
    match desired::compute(set, node, &interfaces, options) {
        Ok(d) => d.guard_findings().cloned().collect(),
        Err(_) => Vec::new(),
    }
}
