//! YAML text to raw resources with positions. The only module that knows the YAML crate.
