//! `hostfw diff [--output json]`: what `apply` would change, without writing. Exit 0 when the
//! kernel is in sync, 1 when changes are pending (or the policy set is invalid), 2 on error.

use super::apply::open_dataplane;
use super::common::{self, Want};
use super::{CmdResult, Exit};
use crate::cli::{DiffArgs, OutputFormat};
use crate::dataplane::Dataplane;
use crate::desired::Families;
use crate::lock;
use crate::ruleset::plan::Plan;
use crate::settings::Settings;
use crate::sync;

pub fn run(settings: &Settings, args: &DiffArgs) -> CmdResult {
    let _lock = lock::acquire_logged(&settings.lock_path())?;
    let want = Want {
        families: Families::Enabled,
        guard: false,
        print_warnings: true,
    };
    let desired = match common::load_desired(settings, want) {
        Ok(d) => d,
        Err(done) => return done,
    };
    let dp = open_dataplane(settings, Some(desired.config().iptables_backend))?;
    let plan = sync::diff(&desired.rulesets, &dp)?;
    match args.output {
        OutputFormat::Text => {
            if plan.is_empty() {
                println!("in sync (backend {})", dp.backend());
            } else {
                print!("{plan}");
            }
        }
        OutputFormat::Json => {
            println!("{}", serde_json::to_string_pretty(&plan_json(&plan, &dp))?);
        }
    }
    Ok(if plan.is_empty() {
        Exit::Ok
    } else {
        Exit::Invalid
    })
}

/// `{"inSync", "backend", "tables": [{family, table, create, rewrite, delete, hooks}],
/// "ipsets": {create, update, replace, destroy}}`; only tables with changes are listed.
fn plan_json(plan: &Plan, dp: &dyn Dataplane) -> serde_json::Value {
    let tables: Vec<serde_json::Value> = plan
        .tables
        .iter()
        .filter(|t| !t.restore_input.is_empty())
        .map(|t| {
            serde_json::json!({
                "family": t.family.label().to_ascii_lowercase(),
                "table": t.table.as_str(),
                "create": t.create,
                "rewrite": t.rewrite,
                "delete": t.delete,
                "hooks": t.hooks,
            })
        })
        .collect();
    serde_json::json!({
        "inSync": plan.is_empty(),
        "backend": dp.backend().as_str(),
        "tables": tables,
        "ipsets": {
            "create": plan.ipsets.create,
            "update": plan.ipsets.update,
            "replace": plan.ipsets.replace,
            "destroy": plan.ipsets.destroy,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::fake::FakeDataplane;
    use crate::dataplane::Backend;
    use crate::ruleset::plan::TablePlan;
    use crate::ruleset::{Family, TableName};

    #[test]
    fn json_lists_only_tables_with_changes() {
        let fake = FakeDataplane::new(Backend::Nft);
        let table = |family, table, input: &str| TablePlan {
            family,
            table,
            create: vec!["cali-INPUT".into()],
            rewrite: Vec::new(),
            delete: Vec::new(),
            hooks: vec!["INPUT".into()],
            kept: Vec::new(),
            restore_input: crate::ruleset::restore::RestoreScript::from_text(input.into()),
        };
        let plan = Plan {
            ipsets: Default::default(),
            tables: vec![
                table(Family::V4, TableName::Raw, ""),
                table(Family::V6, TableName::Filter, "*filter\nCOMMIT\n"),
            ],
        };
        assert_eq!(
            plan_json(&plan, &fake),
            serde_json::json!({
                "inSync": false,
                "backend": "nft",
                "tables": [{
                    "family": "ipv6", "table": "filter", "create": ["cali-INPUT"],
                    "rewrite": [], "delete": [], "hooks": ["INPUT"],
                }],
                "ipsets": {"create": [], "update": [], "replace": [], "destroy": []},
            })
        );
        let in_sync = plan_json(&Plan::default(), &fake);
        assert_eq!(in_sync["inSync"], true);
        assert_eq!(in_sync["tables"], serde_json::json!([]));
    }
}
