//! Reconcile: read live state, plan against the desired rulesets, write, verify; bounded retry.
