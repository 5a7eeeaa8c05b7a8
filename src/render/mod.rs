//! Render: NodeView to the desired Felix-compatible ruleset per family. Pure.

use crate::resolve::NodeView;
use crate::ruleset::{Family, Ruleset};

/// The complete desired state of `family` for this node.
pub fn render(view: &NodeView, family: Family) -> Ruleset {
    let _ = view;
    Ruleset {
        family,
        tables: Vec::new(),
        ipsets: Default::default(),
    }
}
