//! Diagnostics: one finding about the input, located by file, line, column, resource and field.
//! Pure data; printing in the `FILE:LINE:COL: error: KIND/NAME: field.path: message` form lives here
//! so every command reports problems the same way.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;

/// How bad a finding is: errors reject the whole policy set, warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One finding. `line`/`column` are 1-based; 0 means "the file as a whole".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub severity: Severity,
    pub kind: Option<String>,
    pub name: Option<String>,
    pub field: Option<String>,
    pub message: String,
}

impl Diagnostic {
    /// An error about a whole file (unreadable, not YAML, ...).
    pub fn file_error(file: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.into(),
            line: 0,
            column: 0,
            severity: Severity::Error,
            kind: None,
            name: None,
            field: None,
            message: message.into(),
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", escape(&self.file))?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column.max(1))?;
        }
        write!(f, ": {}: ", self.severity)?;
        match (&self.kind, &self.name) {
            (Some(k), Some(n)) => write!(f, "{}/{}: ", escape(k), escape(n))?,
            (Some(k), None) => write!(f, "{}: ", escape(k))?,
            _ => {}
        }
        if let Some(field) = &self.field {
            write!(f, "{}: ", escape(field))?;
        }
        f.write_str(&escape(&self.message))
    }
}

/// `text` safe to print on a terminal or in a log line: control characters (newline, ESC, ...)
/// and the Unicode bidirectional overrides that can make a line read differently from what it
/// holds are written as Rust-style escapes. Every part of a diagnostic can carry input text (a
/// resource name, a file name, a quoted value), and one report line must stay one line.
pub fn escape(text: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| {
        c.is_control()
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if unsafe_char(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Sort diagnostics by file, then position, then text: the order every report uses.
pub fn sort(diags: &mut [Diagnostic]) {
    diags.sort_by(|a, b| {
        (a.file.as_str(), a.line, a.column, a.severity, &a.message).cmp(&(
            b.file.as_str(),
            b.line,
            b.column,
            b.severity,
            &b.message,
        ))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error at `file:line:column` about `kind`/`name`'s `field`.
    fn error_at(
        file: &str,
        at: (u32, u32),
        resource: (&str, &str),
        field: &str,
        message: &str,
    ) -> Diagnostic {
        Diagnostic {
            file: file.into(),
            line: at.0,
            column: at.1,
            severity: Severity::Error,
            kind: Some(resource.0.into()),
            name: Some(resource.1.into()),
            field: Some(field.into()),
            message: message.into(),
        }
    }

    #[test]
    fn display_has_every_part() {
        let d = error_at(
            "a.yaml",
            (3, 5),
            ("HostEndpoint", "h1"),
            "spec.node",
            "is required",
        );
        assert_eq!(
            d.to_string(),
            "a.yaml:3:5: error: HostEndpoint/h1: spec.node: is required"
        );
    }

    #[test]
    fn display_escapes_control_characters_from_input() {
        let d = error_at(
            "a\nb.yaml",
            (1, 1),
            ("GlobalNetworkPolicy", "x\u{1b}[2Jy"),
            "metadata.name",
            "\"\u{202e}evil\t\" is not valid",
        );
        let shown = d.to_string();
        assert_eq!(
            shown,
            "a\\nb.yaml:1:1: error: GlobalNetworkPolicy/x\\u{1b}[2Jy: metadata.name: \
             \"\\u{202e}evil\\t\" is not valid"
        );
        assert!(!shown.chars().any(char::is_control));
    }

    #[test]
    fn escape_leaves_ordinary_text_borrowed() {
        assert!(matches!(escape("web-1 ñ 中"), Cow::Borrowed(_)));
    }

    #[test]
    fn display_of_file_error_omits_missing_parts() {
        let d = Diagnostic::file_error("x.yaml", "cannot read");
        assert_eq!(d.to_string(), "x.yaml: error: cannot read");
    }
}
