//! Why a policy set was refused, with Cedar's diagnostics made readable.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// One problem found in a policy source: where it is and what is wrong.
///
/// Displays as `FILE:LINE:COLUMN: policy `ID`: MESSAGE`, then Cedar's help
/// and the offending source line, e.g.
///
/// ```text
/// ops.cedar:3:21: policy `no-friday`: for policy `no-friday`, attribute `enviroment` on entity type `Leash::Resource` not found
///     help: did you mean `environment`?
///     |   when { resource.enviroment == "prod" };
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// The source (file name, or the name given to text loaded through the API).
    pub source: String,
    /// The policy, when the problem is in one policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_id: Option<String>,
    /// 1-based line of the problem, when Cedar points at one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// 1-based column (in characters) of the problem.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when Cedar or Leash knows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    /// The source line the problem is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snippet: Option<String>,
}

impl Diagnostic {
    /// A problem with a whole source, not at a position.
    pub(crate) fn in_source(source: &str, message: impl Into<String>) -> Self {
        Self {
            source: source.to_owned(),
            policy_id: None,
            line: None,
            column: None,
            message: message.into(),
            help: None,
            snippet: None,
        }
    }

    /// Attach a position from a byte offset into `text`.
    pub(crate) fn at_offset(mut self, text: &str, offset: usize) -> Self {
        if offset > text.len() || !text.is_char_boundary(offset) {
            return self;
        }
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        self.line = Some(before.matches('\n').count() + 1);
        self.column = Some(before[line_start..].chars().count() + 1);
        let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
        self.snippet = Some(text[line_start..line_end].trim_end().to_owned());
        self
    }

    pub(crate) fn with_policy(mut self, id: impl Into<String>) -> Self {
        self.policy_id = Some(id.into());
        self
    }

    pub(crate) fn with_help(mut self, help: Option<String>) -> Self {
        self.help = help;
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        f.write_str(": ")?;
        if let Some(id) = &self.policy_id {
            write!(f, "policy `{id}`: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(help) = &self.help {
            write!(f, "\n    help: {help}")?;
        }
        if let Some(snippet) = &self.snippet {
            write!(f, "\n    | {snippet}")?;
        }
        Ok(())
    }
}

/// Why policies could not be loaded or activated. When an engine refuses a
/// new set for any of these reasons, the set it had stays active.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A policy directory or file could not be read.
    #[error(
        "cannot read policies from `{}`: {source}; check that the path exists and is readable",
        path.display()
    )]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The policies do not parse, do not validate against the Leash schema,
    /// or break a Leash rule (duplicate ids, templates, unknown `@reason`
    /// placeholders).
    #[error("{}", render_invalid(diagnostics))]
    Invalid { diagnostics: Vec<Diagnostic> },
    /// The schema built into this crate does not parse: a bug in Leash.
    #[error(
        "the Leash Cedar schema built into leash-policy is invalid: {0}; this is a bug, please report it"
    )]
    Schema(String),
}

impl PolicyError {
    /// The individual problems, for an API response or a CLI listing.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            PolicyError::Invalid { diagnostics } => diagnostics,
            _ => &[],
        }
    }
}

fn render_invalid(diagnostics: &[Diagnostic]) -> String {
    let mut out = format!(
        "policies refused ({} problem{}); fix them and load again, nothing was activated:",
        diagnostics.len(),
        if diagnostics.len() == 1 { "" } else { "s" }
    );
    for d in diagnostics {
        out.push_str("\n  ");
        out.push_str(&d.to_string().replace('\n', "\n  "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_lines_and_character_columns() {
        let text = "permit(principal, action, resource)\nwhen { résumé.x };\n";
        let offset = text.find(".x").unwrap();
        let d = Diagnostic::in_source("a.cedar", "bad").at_offset(text, offset);
        assert_eq!((d.line, d.column), (Some(2), Some(14)));
        assert_eq!(d.snippet.as_deref(), Some("when { résumé.x };"));
        assert!(d.to_string().starts_with("a.cedar:2:14: bad"));
    }

    #[test]
    fn offsets_out_of_range_are_ignored() {
        let d = Diagnostic::in_source("a.cedar", "bad").at_offset("abc", 99);
        assert_eq!(d.line, None);
        assert_eq!(d.to_string(), "a.cedar: bad");
    }
}
