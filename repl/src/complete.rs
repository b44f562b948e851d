//! Completion (keywords, stream and column names, meta commands) and syntax highlighting,
//! both on the SQL tokenizer's view of the line.

use kappa::sql::sqlparser::dialect::GenericDialect;
use kappa::sql::sqlparser::tokenizer::{Token, Tokenizer, Whitespace};
use rustyline::completion::Pair;

use crate::meta::COMMANDS;

/// Keywords offered by completion and highlighted: SQL's common ones and kappa's.
pub const KEYWORDS: &[&str] = &[
    "ALL",
    "ALTER",
    "AND",
    "AS",
    "ASC",
    "BETWEEN",
    "BIGINT",
    "BOOLEAN",
    "BY",
    "CASE",
    "CAST",
    "CHANGES",
    "COPY",
    "COUNT",
    "CREATE",
    "CROSS",
    "DATAFLOW",
    "DATE",
    "DESC",
    "DESCRIBE",
    "DISTINCT",
    "DOT",
    "DOUBLE",
    "DROP",
    "ELSE",
    "EMIT",
    "END",
    "EXISTS",
    "EXPLAIN",
    "FALSE",
    "FINAL",
    "FOR",
    "FORMAT",
    "FROM",
    "FULL",
    "GROUP",
    "HAVING",
    "HEADER",
    "IN",
    "INNER",
    "INSERT",
    "INTEGER",
    "INTERVAL",
    "INTO",
    "IS",
    "JOB",
    "JOBS",
    "JOIN",
    "LEFT",
    "LIKE",
    "LIMIT",
    "MATERIALIZED",
    "NOT",
    "NULL",
    "OFFSET",
    "ON",
    "OR",
    "ORDER",
    "OUTER",
    "OVER",
    "PARTITION",
    "REBUILD",
    "REPLACE",
    "RIGHT",
    "SEAL",
    "SECOND",
    "SELECT",
    "SET",
    "SHOW",
    "STREAM",
    "STREAMS",
    "TABLE",
    "TABLES",
    "THEN",
    "TIMESTAMP",
    "TO",
    "TRUE",
    "UNION",
    "VALUES",
    "VARCHAR",
    "VIEW",
    "WINDOW",
    "VIEWS",
    "WATERMARK",
    "WHEN",
    "WHERE",
    "WITH",
];

/// Whether the end of `before` is inside a single-quoted string (a path, for completion).
pub fn in_string(before: &str) -> bool {
    before.chars().filter(|c| *c == '\'').count() % 2 == 1
}

/// Completion candidates for the word before `pos`: meta commands at the start of a line
/// that begins with `\` or `.`, else keywords (in the case typed), stream names and column
/// names.
pub fn candidates(line: &str, pos: usize, names: &[(String, Vec<String>)]) -> (usize, Vec<Pair>) {
    let before = &line[..pos];
    let start = before
        .char_indices()
        .rev()
        .find(|(_, c)| !(c.is_alphanumeric() || *c == '_' || *c == '\\' || *c == '.'))
        .map_or(0, |(i, c)| i + c.len_utf8());
    let word = &before[start..];
    let pair = |s: &str| Pair { display: s.to_string(), replacement: s.to_string() };
    if before.trim_start().starts_with(['\\', '.']) && !before.trim_start().contains(' ') {
        let list = COMMANDS.iter().flat_map(|(c, a, _)| [*c, *a]);
        let mut out: Vec<Pair> = list
            .filter_map(|c| c.split_whitespace().next())
            .filter(|c| c.starts_with(word))
            .map(pair)
            .collect();
        out.dedup_by(|a, b| a.replacement == b.replacement);
        return (start, out);
    }
    if word.is_empty() {
        return (start, Vec::new());
    }
    let lower = word.chars().all(|c| !c.is_uppercase());
    let mut out: Vec<Pair> = Vec::new();
    for (stream, columns) in names {
        for n in std::iter::once(stream).chain(columns) {
            if n.to_lowercase().starts_with(&word.to_lowercase())
                && !out.iter().any(|p| p.replacement == *n)
            {
                out.push(pair(n));
            }
        }
    }
    for k in KEYWORDS {
        if k.starts_with(&word.to_uppercase()) {
            out.push(pair(&if lower { k.to_lowercase() } else { k.to_string() }));
        }
    }
    (start, out)
}

/// The line with ANSI colours: keywords bold blue, strings green, numbers cyan, comments
/// grey. `None` when it does not tokenize (an open string): then it is shown as typed.
pub fn highlight(line: &str) -> Option<String> {
    let tokens = Tokenizer::new(&GenericDialect {}, line).tokenize().ok()?;
    let mut out = String::with_capacity(line.len() * 2);
    for t in tokens {
        let text = t.to_string();
        let color = match &t {
            Token::Word(w)
                if w.quote_style.is_none()
                    && KEYWORDS.contains(&w.value.to_uppercase().as_str()) =>
            {
                Some("1;34")
            }
            Token::SingleQuotedString(_) => Some("32"),
            Token::Number(..) => Some("36"),
            Token::Whitespace(
                Whitespace::SingleLineComment { .. } | Whitespace::MultiLineComment(_),
            ) => Some("90"),
            Token::EOF => continue,
            _ => None,
        };
        match color {
            Some(c) => out.push_str(&format!("\x1b[{c}m{text}\x1b[0m")),
            None => out.push_str(&text),
        }
    }
    // Only if nothing was lost in the round trip (the tokenizer may normalize some text).
    let plain = strip(&out);
    (plain == line).then_some(out)
}

/// `s` without ANSI colour codes.
fn strip(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for d in chars.by_ref() {
                if d == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(line: &str, names: &[(String, Vec<String>)]) -> Vec<String> {
        let (_, c) = candidates(line, line.len(), names);
        c.into_iter().map(|p| p.replacement).collect()
    }

    #[test]
    fn keywords_names_and_meta_commands_complete() {
        let names = vec![("bids".to_string(), vec!["auction".to_string(), "bidder".to_string()])];
        assert_eq!(texts("SEL", &names), vec!["SELECT"]);
        assert_eq!(texts("sel", &names), vec!["select"]);
        assert_eq!(texts("SELECT * FROM bi", &names), vec!["bids", "bidder", "bigint"]);
        assert_eq!(texts("SELECT auc", &names), vec!["auction"]);
        assert_eq!(texts("\\ti", &names), vec!["\\timing"]);
        assert_eq!(texts(".mo", &names), vec![".mode"]);
        assert!(in_string("COPY bids FROM 'data/bi"));
        assert!(!in_string("SELECT 'a' FROM b"));
    }

    #[test]
    fn highlighting_keeps_the_text() {
        let line = "SELECT 'a;b', 42 FROM s -- note";
        let colored = highlight(line).unwrap();
        assert!(colored.contains("\x1b[1;34mSELECT\x1b[0m"), "{colored:?}");
        assert!(colored.contains("\x1b[32m'a;b'\x1b[0m"), "{colored:?}");
        assert_eq!(strip(&colored), line);
        assert!(highlight("SELECT 'open").is_none());
    }
}
