//! `hostfw check`: parse and validate, print every diagnostic; exit 0 valid (warnings allowed),
//! 1 invalid, 2 when a given path cannot be read at all (missing, permission, symlink loop).

use super::{CmdResult, Exit};
use crate::cli::{CheckArgs, OutputFormat};
use crate::settings::Settings;

pub fn run(settings: &Settings, args: &CheckArgs) -> CmdResult {
    let paths = if args.paths.is_empty() {
        vec![settings.policy_dir.clone()]
    } else {
        args.paths.clone()
    };
    let checked = crate::policy::load_checked(&paths);
    let loaded = &checked.loaded;
    // The lockout guard only means something for the directory this node would apply.
    if let (Some(set), true) = (&loaded.set, args.paths.is_empty()) {
        for w in crate::guard::check_warnings(set, &settings.node) {
            eprintln!("{w}");
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
