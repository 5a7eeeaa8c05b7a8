//! `hostfw render [--family 4|6] [--ipsets]`: this node's complete desired state for one family
//! as `iptables-restore` input (or, with `--ipsets`, `ipset restore` input) on stdout. Touches
//! no kernel state; same input, same bytes.

use super::common::{self, Want};
use super::{CmdResult, Exit};
use crate::cli::{FamilyArg, RenderArgs};
use crate::desired::Families;
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
    // The family asked for, whether or not the configuration enables it.
    let want = Want {
        families: Families::Only(family),
        guard: false,
        print_warnings: true,
    };
    let desired = match common::load_desired(settings, want) {
        Ok(d) => d,
        Err(done) => return done,
    };
    let Some(ruleset) = desired.ruleset(family) else {
        return Err(format!("no {family:?} ruleset was rendered").into());
    };
    let text = if args.ipsets {
        sets_restore(desired.ipsets())
    } else {
        ruleset_restore(ruleset)
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(Exit::Ok)
}
