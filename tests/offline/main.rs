//! Tests of the pure core and the CLI: loader, validator, selector, render and show goldens,
//! explain, purity guards, the built binary's exit codes. None needs root, except that each
//! render golden is also loaded into a throw-away namespace (`render_golden`, gated as the
//! kernel tests are). One binary, one module per area.

mod cli_check;
mod daemon_status_cli;
mod daemon_unit;
mod datastore_cli;
mod explain;
mod explain_cli;
mod felix_vectors;
mod golden_compare;
mod hostile_input;
mod load_bad_input;
mod load_docs_mirror;
mod load_layouts;
mod load_proptest;
mod metrics_exposition;
mod purity;
mod render_golden;
mod ruleset_save;
mod run;
mod run_privilege;
mod selector;
mod show_cli;
mod show_examples;
mod show_golden;
mod toolchain_msrv;
mod validate_cases;
