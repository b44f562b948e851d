//! Errors on stderr: `ERROR [CATEGORY]`, the place (file, line, column), the message, and the
//! line of the statement with a caret under the spot.

/// The line `line` (from 1) of `script`, if it exists.
fn source_line(script: &str, line: u64) -> Option<&str> {
    script.lines().nth(line.checked_sub(1)? as usize)
}

/// The text of an error report (without colour).
pub fn render(
    e: &kappa::Error,
    at: Option<(u64, u64)>,
    source: Option<&str>,
    script: &str,
) -> String {
    let category = e.category().to_ascii_uppercase();
    let place = match (source, at) {
        (Some(s), Some((l, c))) => format!("{s}:{l}:{c}: "),
        (Some(s), None) => format!("{s}: "),
        (None, Some((l, c))) => format!("line {l}, column {c}: "),
        (None, None) => String::new(),
    };
    let mut out = format!("ERROR [{category}] {place}{e}");
    if let Some((l, c)) = at
        && let Some(text) = source_line(script, l)
    {
        let number = l.to_string();
        let pad = " ".repeat(number.len());
        // The caret goes under character `c` (tabs kept, so that it lines up).
        let before: String = text
            .chars()
            .take(c.saturating_sub(1) as usize)
            .map(|ch| if ch == '\t' { '\t' } else { ' ' })
            .collect();
        out.push_str(&format!("\n {number} | {text}\n {pad} | {before}^"));
    }
    out
}

/// Print an error on stderr.
pub fn error(
    e: &kappa::Error,
    at: Option<(u64, u64)>,
    source: Option<&str>,
    script: &str,
    color: bool,
) {
    let text = render(e, at, source, script);
    if color {
        // The first word red and bold.
        let (head, tail) = text.split_at(text.find(' ').unwrap_or(text.len()));
        crate::session::say!("\x1b[1;31m{head}\x1b[0m{tail}");
    } else {
        crate::session::say!("{text}");
    }
}

/// Print an error that is not the engine's (a meta command's, the shell's).
pub fn message(category: &str, text: &str, color: bool) {
    if color {
        crate::session::say!("\x1b[1;31mERROR\x1b[0m [{category}] {text}");
    } else {
        crate::session::say!("ERROR [{category}] {text}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_located_error_shows_its_line_and_a_caret() {
        let e = kappa::Error::Sql(kappa::sql::Error::plan("stream 'bidz' does not exist", None));
        let script = "CREATE STREAM s (x BIGINT);\nSELECT *\n  FROM bidz;";
        let text = render(&e, Some((3, 8)), Some("q.sql"), script);
        assert_eq!(
            text,
            "ERROR [PLAN] q.sql:3:8: stream 'bidz' does not exist\n 3 |   FROM bidz;\n   |        ^"
        );
        let text = render(&e, None, None, "");
        assert_eq!(text, "ERROR [PLAN] stream 'bidz' does not exist");
    }
}
