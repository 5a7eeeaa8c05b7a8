//! `hostfw render [--family 4|6] [--ipsets]`: this node's complete desired state for one family
//! as `iptables-restore` input (or, with `--ipsets`, `ipset restore` input) on stdout. Touches
//! no kernel state; same input, same bytes.

use super::common::load_view;
use super::{CmdResult, Exit};
use crate::cli::{FamilyArg, RenderArgs};
use crate::render::render;
use crate::ruleset::ipset::sets_restore;
use crate::ruleset::restore::ruleset_restore;
use crate::ruleset::Family;
use crate::settings::Settings;
use std::io::Write;

pub fn run(settings: &Settings, args: &RenderArgs) -> CmdResult {
    let view = match load_view(settings) {
        Ok(v) => v,
        Err(e) => return e.into_cmd_result(),
    };
    let family = match args.family {
        FamilyArg::V4 => Family::V4,
        FamilyArg::V6 => Family::V6,
    };
    let ruleset = match render(&view, family) {
        Ok(r) => r,
        Err(e) => {
            // A configuration the dataplane cannot express (e.g. a too-small mark mask) is an
            // input problem: exit 1 like any other invalid input.
            eprintln!("error: {e}");
            return Ok(Exit::Invalid);
        }
    };
    let text = if args.ipsets {
        sets_restore(ruleset.ipsets.values())
    } else {
        ruleset_restore(&ruleset)
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(Exit::Ok)
}
