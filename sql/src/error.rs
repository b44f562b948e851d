//! The error type of `kappa-sql`.

use std::fmt;

/// A position in the SQL text: 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord)]
pub struct Location {
    /// Line, from 1.
    pub line: u64,
    /// Column, from 1, in characters.
    pub column: u64,
}

impl Location {
    /// A known location.
    pub fn new(line: u64, column: u64) -> Location {
        Location { line, column }
    }

    pub(crate) fn from_sql(l: sqlparser::tokenizer::Location) -> Option<Location> {
        (l.line > 0).then_some(Location { line: l.line, column: l.column })
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// What went wrong with a statement.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The text is not valid SQL (or not valid kappa SQL).
    #[error("{message}")]
    Syntax {
        /// What was expected and found.
        message: String,
        /// Where, when known.
        location: Option<Location>,
    },
    /// Valid SQL that names something unknown, mixes types, or cannot be planned.
    #[error("{message}")]
    Plan {
        /// The problem.
        message: String,
        /// Where, when known.
        location: Option<Location>,
    },
    /// A statement or construct that kappa does not support (yet).
    #[error("{feature} is not supported yet")]
    NotSupported {
        /// The feature, named as a user would.
        feature: String,
        /// Where, when known.
        location: Option<Location>,
    },
}

impl Error {
    /// Where in the statement text the problem is, when known.
    pub fn location(&self) -> Option<Location> {
        match self {
            Error::Syntax { location, .. }
            | Error::Plan { location, .. }
            | Error::NotSupported { location, .. } => *location,
        }
    }

    /// The same error, located at `location` if it had no location yet.
    pub fn or_at(mut self, at: Option<Location>) -> Error {
        match &mut self {
            Error::Syntax { location, .. }
            | Error::Plan { location, .. }
            | Error::NotSupported { location, .. } => {
                if location.is_none() {
                    *location = at;
                }
            }
        }
        self
    }

    /// A syntax error at `location`.
    pub fn syntax(message: impl Into<String>, location: Option<Location>) -> Error {
        Error::Syntax { message: message.into(), location }
    }

    /// A planning error at `location`.
    pub fn plan(message: impl Into<String>, location: Option<Location>) -> Error {
        Error::Plan { message: message.into(), location }
    }

    /// A "not supported yet" error naming `feature`.
    pub fn not_supported(feature: impl Into<String>, location: Option<Location>) -> Error {
        Error::NotSupported { feature: feature.into(), location }
    }

    /// Convert a sqlparser error, taking the location out of its message.
    pub(crate) fn from_parser(e: sqlparser::parser::ParserError) -> Error {
        use sqlparser::parser::ParserError;
        let text = match e {
            ParserError::TokenizerError(s) | ParserError::ParserError(s) => s,
            ParserError::RecursionLimitExceeded => {
                return Error::syntax("the statement is nested too deeply", None);
            }
        };
        let (message, location) = split_location(&text);
        Error::Syntax { message, location }
    }
}

/// Split sqlparser's " at Line: L, Column: C" suffix from a message.
pub(crate) fn split_location(text: &str) -> (String, Option<Location>) {
    if let Some(i) = text.rfind(" at Line: ") {
        let rest = &text[i + " at Line: ".len()..];
        if let Some((l, c)) = rest.split_once(", Column: ")
            && let (Ok(line), Ok(column)) = (l.trim().parse(), c.trim().parse())
        {
            return (text[..i].to_string(), Some(Location { line, column }));
        }
    }
    (text.to_string(), None)
}

/// Result of `kappa-sql` operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_suffix_is_split() {
        let (m, l) = split_location("Expected: ), found: x at Line: 3, Column: 14");
        assert_eq!(m, "Expected: ), found: x");
        assert_eq!(l, Some(Location::new(3, 14)));
        assert_eq!(split_location("no location").1, None);
    }
}
