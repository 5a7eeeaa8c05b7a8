//! What a node's desired state has to tell the admin besides its rules: resolution warnings and
//! the lockout guard's verdicts, one type with a kind, so every command reports them alike.
//! Decides nothing: `check` and `show` print findings, `apply` refuses on guard findings, the
//! daemon logs them (and refuses when asked to).

use crate::explain::Decision;
use serde::Serialize;

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FindingKind {
    /// Something resolution noticed (an endpoint with no ingress policy, no endpoint at all).
    Warning,
    /// Lockout guard: an existing SSH session, or a new login from the same client, would be
    /// dropped.
    Lockout,
    /// Lockout guard: no inbound SSH would be accepted on any host endpoint interface.
    Unreachable,
}

impl FindingKind {
    /// A lockout-guard verdict rather than a resolution warning.
    pub fn is_guard(self) -> bool {
        self != FindingKind::Warning
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub kind: FindingKind,
    pub message: String,
    /// Guard findings: what would drop the packet.
    pub decision: Option<Decision>,
}

impl Finding {
    /// A resolution warning.
    pub fn warning(message: impl Into<String>) -> Finding {
        Finding {
            kind: FindingKind::Warning,
            message: message.into(),
            decision: None,
        }
    }
}
