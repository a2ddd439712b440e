//! Diagnostics that point into a program file.
//!
//! A [`Diagnostic`] renders as `FILE:LINE:COL: message` (warnings as
//! `FILE:LINE:COL: warning: message`), then the source
//! line and a caret line under the offending token, the way compilers do,
//! so editors and terminals can jump to it. Lines and columns count from 1;
//! columns count characters, not bytes, and tabs in the source line are
//! repeated in the caret line so the carets stay aligned.

use std::fmt;

/// How bad a [`Diagnostic`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Severity {
    /// The file cannot be read (strict mode).
    Error,
    /// Something was ignored, dropped or changed (lenient mode).
    Warning,
}

/// A message about one place in a program file.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The file name as given by the caller.
    pub file: String,
    /// Line, from 1.
    pub line: usize,
    /// Column of the first character marked, from 1.
    pub col: usize,
    /// Characters marked (at least 1 when rendered).
    pub len: usize,
    /// What is wrong.
    pub message: String,
    /// The text of the line (empty past the end of the file).
    pub source_line: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Error => "",
            Severity::Warning => "warning: ",
        };
        writeln!(
            f,
            "{}:{}:{}: {severity}{}",
            self.file, self.line, self.col, self.message
        )?;
        writeln!(f, "    {}", self.source_line)?;
        let pad: String = self
            .source_line
            .chars()
            .take(self.col.saturating_sub(1))
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        write!(f, "    {pad}{}", "^".repeat(self.len.max(1)))
    }
}

/// A program file that cannot be read in strict mode: the first problem.
#[derive(Clone, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub Diagnostic);

impl ParseError {
    /// The diagnostic.
    pub fn diagnostic(&self) -> &Diagnostic {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_position_source_and_carets_aligned_through_tabs() {
        let mut d = Diagnostic {
            severity: Severity::Error,
            file: "a.ops".into(),
            line: 3,
            col: 5,
            len: 2,
            message: "bad".into(),
            source_line: "\tab p0 x".into(),
        };
        assert_eq!(d.to_string(), "a.ops:3:5: bad\n    \tab p0 x\n    \t   ^^");
        d.severity = Severity::Warning;
        assert!(d.to_string().starts_with("a.ops:3:5: warning: bad\n"));
    }
}
