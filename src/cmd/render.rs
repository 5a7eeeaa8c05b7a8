//! `hostfw render [--family 4|6] [--ipsets]`: this node's complete desired state for one family
//! as `iptables-restore` input (or, with `--ipsets`, `ipset restore` input) on stdout. Touches
//! no kernel state; same input, same bytes.

use super::common;
use super::{CmdResult, Exit};
use crate::cli::{FamilyArg, RenderArgs};
use crate::ruleset::ipset::sets_restore;
use crate::ruleset::restore::ruleset_restore;
use crate::ruleset::Family;
use crate::settings::Settings;
use std::io::Write;

pub fn run(settings: &Settings, args: &RenderArgs) -> CmdResult {
    let family = match args.family {
        FamilyArg::V4 => Family::V4,
        FamilyArg::V6 => Family::V6,
    };
    let (_, ruleset, _) = match common::load_family(settings, family) {
        Ok(loaded) => loaded,
        Err(done) => return done,
    };
    let text = if args.ipsets {
        sets_restore(ruleset.ipsets.values())
    } else {
        ruleset_restore(&ruleset)
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(Exit::Ok)
}
