//! Load-time problems with a rule or test file, pointing at the YAML value to fix.
//!
//! Every check (YAML shape, CEL, templates, durations, duplicate ids) reports a
//! [`Diagnostic`]; the loader collects all of them instead of stopping at the first, so
//! `followthrough check` shows everything wrong in a folder in one pass.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem, printed as `file:line:column: message` (lines and columns from 1).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: u64,
    pub column: u64,
    pub message: String,
}

impl Diagnostic {
    pub fn new(file: &Path, pos: Pos, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            line: pos.line,
            column: pos.column,
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

/// A position in a YAML file (1-based). Unknown positions are 1:1, the file's start, so a
/// diagnostic always names a place an editor can jump to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
}

impl Pos {
    pub const START: Pos = Pos { line: 1, column: 1 };

    pub fn of(location: &serde_saphyr::Location) -> Pos {
        if location.line() == 0 {
            Pos::START
        } else {
            Pos {
                line: location.line(),
                column: location.column().max(1),
            }
        }
    }

    /// The position `offset` characters into a single-line value starting at `self`.
    /// Used to point inside a CEL expression or template when the value is a plain
    /// one-line scalar; block scalars keep the value's start.
    pub fn shifted(self, line_offset: u64, column_offset: u64) -> Pos {
        if line_offset == 0 {
            Pos {
                line: self.line,
                column: self.column + column_offset,
            }
        } else {
            Pos {
                line: self.line + line_offset,
                column: column_offset + 1,
            }
        }
    }
}

/// Collects diagnostics for one file.
#[derive(Debug, Default)]
pub(crate) struct Sink {
    pub file: PathBuf,
    pub diagnostics: Vec<Diagnostic>,
}

impl Sink {
    pub fn new(file: &Path) -> Self {
        Self {
            file: file.to_owned(),
            diagnostics: Vec::new(),
        }
    }

    pub fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.diagnostics
            .push(Diagnostic::new(&self.file, pos, message));
    }
}

/// Turns a serde-saphyr error into a diagnostic at the position it names. The error's
/// own text repeats the position and a source snippet; we keep only the message so the
/// output stays one line per problem.
pub(crate) fn from_yaml_error(file: &Path, error: &serde_saphyr::Error) -> Diagnostic {
    let pos = error.location().map(|l| Pos::of(&l)).unwrap_or(Pos::START);
    let text = error.without_snippet().to_string();
    // serde-saphyr appends " at line L column C"; the position is already in front.
    let message = match text.find(" at line ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    };
    Diagnostic::new(file, pos, message.trim().to_owned())
}

/// Prints diagnostics one per line to `out` (the CLI passes stderr), then a count.
pub fn print_diagnostics(
    diagnostics: &[Diagnostic],
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    for diagnostic in diagnostics {
        writeln!(out, "{diagnostic}")?;
    }
    match diagnostics.len() {
        0 => Ok(()),
        1 => writeln!(out, "1 problem"),
        n => writeln!(out, "{n} problems"),
    }
}
