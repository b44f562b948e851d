//! Parsing kappa's SQL: sqlparser's tokenizer and parser (`GenericDialect`), with kappa's own
//! statements parsed by hand on top of it.
//!
//! The text is tokenized once, with locations, and split into statements at top-level
//! semicolons. A top-level `EMIT` clause is cut out of the tokens before the query is parsed
//! (sqlparser would read `EMIT` as a table alias). Statements sqlparser knows (`SELECT`,
//! `INSERT`, `COPY`) are parsed by it; kappa's (`CREATE STREAM`, `SEAL STREAM`, `SHOW STREAMS`,
//! ...) are parsed here with its token helpers, so that its sub-parsers (`parse_column_def`,
//! `parse_expr`, `parse_query`) do the detailed work and every error has a line and column.

use sqlparser::ast::{self, Ident, ObjectName};
use sqlparser::dialect::GenericDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use crate::ast::*;
use crate::error::{Error, Location, Result};

mod rewrite;
use rewrite::{approximate_numbers, as_of_tables, short_window_functions};

/// Parse every statement of `sql` (separated by semicolons).
///
/// # Errors
/// [`Error::Syntax`] with the line and column of the first problem; [`Error::NotSupported`] for
/// SQL statements kappa does not run (e.g. `UPDATE`).
pub fn parse(sql: &str) -> Result<Vec<ParsedStatement>> {
    let index = LineIndex::new(sql);
    chunks(sql)?
        .into_iter()
        .map(|c| {
            // An error at the end of the statement ("found: EOF") has no token to point at:
            // point just after the statement's last token.
            let statement = parse_tokens(c.tokens, sql, &index).map_err(|e| e.or_at(c.end))?;
            Ok(ParsedStatement { statement, location: c.piece.location, text: c.piece.text })
        })
        .collect()
}

/// One statement of a script as the tokenizer splits it, not parsed yet (for a shell that runs
/// statements one at a time, and for its line editor, which must know whether the input is
/// complete).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// The statement, from its first token to its last (without the `;`).
    pub text: String,
    /// Where its first token is in the script.
    pub location: Location,
    /// A `;` ends it (the last piece of an unfinished script has none).
    pub terminated: bool,
    /// The byte offset in the script where what follows the piece begins: just after its `;`,
    /// or after its last token when it has none.
    pub next: usize,
}

/// Split a script into statements at the semicolons outside strings, quoted names, comments
/// and parentheses. Pieces with only comments and blanks are left out.
///
/// # Errors
/// [`Error::Syntax`] when the script cannot be tokenized (an unterminated string or comment),
/// at the place of the problem.
pub fn split(sql: &str) -> Result<Vec<Piece>> {
    Ok(chunks(sql)?.into_iter().map(|c| c.piece).collect())
}

/// A statement of a script: its tokens, its [`Piece`], and where its last token ends.
struct Chunk {
    tokens: Vec<TokenWithSpan>,
    piece: Piece,
    end: Option<Location>,
}

/// Tokenize a script and cut it into statements (blank ones left out).
fn chunks(sql: &str) -> Result<Vec<Chunk>> {
    let dialect = GenericDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .with_unescape(true)
        .tokenize_with_location()
        .map_err(|e| Error::syntax(e.message.clone(), Location::from_sql(e.location)))?;
    let index = LineIndex::new(sql);
    let mut out = Vec::new();
    for (tokens, semicolon_end) in split_statements(tokens) {
        let Some(first) = tokens.iter().find(|t| !is_blank(&t.token)) else { continue };
        let Some(last) = tokens.iter().rev().find(|t| !is_blank(&t.token)) else { continue };
        let piece = Piece {
            text: index.slice(sql, first.span.start, last.span.end).to_string(),
            location: Location::from_sql(first.span.start).unwrap_or_default(),
            terminated: semicolon_end.is_some(),
            next: index.offset(sql, semicolon_end.unwrap_or(last.span.end)),
        };
        let end = Location::from_sql(last.span.end);
        out.push(Chunk { tokens, piece, end });
    }
    Ok(out)
}

/// Parse exactly one statement.
///
/// # Errors
/// As [`parse`], and [`Error::Syntax`] when `sql` holds no statement or more than one.
pub fn parse_one(sql: &str) -> Result<ParsedStatement> {
    let mut all = parse(sql)?;
    match all.len() {
        1 => Ok(all.remove(0)),
        0 => Err(Error::syntax("no SQL statement", None)),
        n => {
            Err(Error::syntax(format!("expected one statement, found {n}"), Some(all[1].location)))
        }
    }
}

fn is_blank(t: &Token) -> bool {
    matches!(t, Token::Whitespace(_))
}

/// Split at semicolons outside parentheses (semicolons inside strings are inside their token);
/// each piece comes with where the semicolon that ended it ends, if one did.
fn split_statements(
    tokens: Vec<TokenWithSpan>,
) -> Vec<(Vec<TokenWithSpan>, Option<sqlparser::tokenizer::Location>)> {
    let mut out = vec![(Vec::new(), None)];
    let mut depth = 0i64;
    for t in tokens {
        match &t.token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::SemiColon if depth <= 0 => {
                if let Some(cur) = out.last_mut() {
                    cur.1 = Some(t.span.end);
                }
                out.push((Vec::new(), None));
                continue;
            }
            Token::EOF => continue,
            _ => {}
        }
        if let Some(cur) = out.last_mut() {
            cur.0.push(t);
        }
    }
    out
}

/// Maps sqlparser locations (line, character column) to byte offsets.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(sql: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(sql.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    fn offset(&self, sql: &str, l: sqlparser::tokenizer::Location) -> usize {
        let Some(&start) = self.starts.get(l.line.saturating_sub(1) as usize) else {
            return sql.len();
        };
        let line = &sql[start..];
        let col = l.column.saturating_sub(1) as usize;
        start + line.char_indices().nth(col).map(|(i, _)| i).unwrap_or(line.len())
    }

    fn slice<'a>(
        &self,
        sql: &'a str,
        from: sqlparser::tokenizer::Location,
        to: sqlparser::tokenizer::Location,
    ) -> &'a str {
        let (a, b) = (self.offset(sql, from), self.offset(sql, to));
        sql.get(a..b.max(a)).unwrap_or("").trim()
    }
}

/// The `EMIT` clause cut out of a statement's tokens, with the location of its `EMIT`.
type EmitClause = Option<(Emit, Option<Location>)>;

/// Remove a top-level `EMIT ...` clause from the tokens and parse it.
fn extract_emit(tokens: Vec<TokenWithSpan>) -> Result<(Vec<TokenWithSpan>, EmitClause)> {
    let mut depth = 0i64;
    let mut at = None;
    for (i, t) in tokens.iter().enumerate() {
        match &t.token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::Word(w)
                if depth == 0
                    && w.quote_style.is_none()
                    && w.value.eq_ignore_ascii_case("EMIT")
                    && emit_follows(&tokens[i + 1..]) =>
            {
                at = Some(i);
                break;
            }
            _ => {}
        }
    }
    let Some(i) = at else { return Ok((tokens, None)) };
    let location = Location::from_sql(tokens[i].span.start);
    let mut head = tokens;
    let tail = head.split_off(i + 1);
    head.pop();
    let dialect = GenericDialect {};
    let mut p = Parser::new(&dialect).with_tokens_with_locations(tail.clone());
    let emit = if p.parse_keyword(Keyword::FINAL) {
        Emit::Final
    } else if p.parse_keyword(Keyword::CHANGES) {
        let every = if p.parse_keyword(Keyword::EVERY) {
            Some(Box::new(p.parse_expr().map_err(Error::from_parser)?))
        } else {
            None
        };
        Emit::Changes { every }
    } else {
        return Err(expected("FINAL or CHANGES after EMIT", p.peek_token_ref()));
    };
    let consumed = p.index().min(tail.len());
    head.extend(tail.into_iter().skip(consumed));
    Ok((head, Some((emit, location))))
}

/// Whether the next word is FINAL or CHANGES: only then is `EMIT` the clause (a column or
/// stream may be called `emit`).
pub(crate) fn emit_follows(rest: &[TokenWithSpan]) -> bool {
    match rest.iter().find(|t| !is_blank(&t.token)).map(|t| &t.token) {
        Some(Token::Word(w)) => {
            w.value.eq_ignore_ascii_case("FINAL") || w.value.eq_ignore_ascii_case("CHANGES")
        }
        _ => false,
    }
}

fn expected(what: &str, found: &TokenWithSpan) -> Error {
    let shown = match &found.token {
        Token::EOF => "end of statement".to_string(),
        t => t.to_string(),
    };
    Error::syntax(format!("expected {what}, found {shown}"), Location::from_sql(found.span.start))
}

pub(crate) fn loc(t: &TokenWithSpan) -> Option<Location> {
    Location::from_sql(t.span.start)
}

/// The parser over one statement's tokens.
struct P<'a> {
    p: Parser<'a>,
    sql: &'a str,
    index: &'a LineIndex,
}

impl<'a> P<'a> {
    fn peek(&self) -> &TokenWithSpan {
        self.p.peek_token_ref()
    }

    fn here(&self) -> Option<Location> {
        loc(self.peek())
    }

    /// Whether the next token is the (unquoted) word `w`.
    fn peek_word(&self, w: &str) -> bool {
        matches!(&self.peek().token, Token::Word(x) if x.quote_style.is_none() && x.value.eq_ignore_ascii_case(w))
    }

    fn eat_word(&mut self, w: &str) -> bool {
        if self.peek_word(w) {
            self.p.next_token();
            true
        } else {
            false
        }
    }

    fn expect_word(&mut self, w: &str) -> Result<()> {
        if self.eat_word(w) { Ok(()) } else { Err(expected(w, self.peek())) }
    }

    fn expect_end(&mut self) -> Result<()> {
        if self.peek().token == Token::EOF {
            Ok(())
        } else {
            Err(expected("end of statement", self.peek()))
        }
    }

    fn name(&mut self) -> Result<String> {
        let at = self.here();
        let name = self.p.parse_object_name(false).map_err(Error::from_parser)?;
        object_name(&name, at)
    }

    fn parse_query(&mut self) -> Result<Box<ast::Query>> {
        let at = self.here();
        let mut query = self.p.parse_query().map_err(Error::from_parser)?;
        crate::group_window::rewrite(&mut query, at)?;
        Ok(query)
    }

    /// `( key = value, ... )`.
    fn options(&mut self) -> Result<Vec<(String, String)>> {
        self.p.expect_token(&Token::LParen).map_err(Error::from_parser)?;
        let mut out = Vec::new();
        if self.p.consume_token(&Token::RParen) {
            return Ok(out);
        }
        loop {
            let key = match self.p.next_token() {
                TokenWithSpan { token: Token::SingleQuotedString(s), .. }
                | TokenWithSpan { token: Token::DoubleQuotedString(s), .. } => s,
                TokenWithSpan { token: Token::Word(w), .. } => {
                    let mut k = w.value;
                    while self.p.consume_token(&Token::Period) {
                        match self.p.next_token().token {
                            Token::Word(w) => {
                                k.push('.');
                                k.push_str(&w.value);
                            }
                            _ => {
                                return Err(expected("an option name", self.p.get_current_token()));
                            }
                        }
                    }
                    k
                }
                t => return Err(expected("an option name", &t)),
            };
            self.p.expect_token(&Token::Eq).map_err(Error::from_parser)?;
            let value = match self.p.next_token() {
                TokenWithSpan { token: Token::SingleQuotedString(s), .. } => s,
                TokenWithSpan { token: Token::Number(n, _), .. } => n,
                TokenWithSpan { token: Token::Word(w), .. } => w.value,
                t => return Err(expected("an option value", &t)),
            };
            out.push((key.to_ascii_lowercase(), value));
            if self.p.consume_token(&Token::RParen) {
                return Ok(out);
            }
            self.p.expect_token(&Token::Comma).map_err(Error::from_parser)?;
        }
    }

    /// The text of the tokens from `from` up to the next unconsumed token.
    fn text_since(&self, from: sqlparser::tokenizer::Location) -> String {
        self.index.slice(self.sql, from, self.peek().span.start).to_string()
    }
}

/// A single-part name, normalized as DataFusion does (unquoted: lower case).
fn object_name(name: &ObjectName, at: Option<Location>) -> Result<String> {
    match name.0.as_slice() {
        [part] => match part.as_ident() {
            Some(id) => Ok(ident_name(id)),
            None => Err(Error::syntax(format!("expected a name, found {name}"), at)),
        },
        _ => Err(Error::not_supported(format!("the qualified name {name}"), at)),
    }
}

/// An identifier, normalized as DataFusion does (unquoted: lower case).
pub fn ident_name(id: &Ident) -> String {
    if id.quote_style.is_none() { id.value.to_lowercase() } else { id.value.clone() }
}

fn parse_tokens(tokens: Vec<TokenWithSpan>, sql: &str, index: &LineIndex) -> Result<Statement> {
    let tokens = as_of_tables(short_window_functions(approximate_numbers(tokens))?)?;
    // EXPLAIN's statement keeps its EMIT clause: it is parsed again below.
    let explain = tokens.iter().find(|t| !matches!(t.token, Token::Whitespace(_))).is_some_and(
        |t| matches!(&t.token, Token::Word(w) if w.value.eq_ignore_ascii_case("EXPLAIN")),
    );
    let (tokens, emit) = if explain { (tokens, None) } else { extract_emit(tokens)? };
    let dialect = GenericDialect {};
    let mut s = P { p: Parser::new(&dialect).with_tokens_with_locations(tokens), sql, index };
    let first = s.peek().clone();
    let word = match &first.token {
        Token::Word(w) if w.quote_style.is_none() => w.value.to_ascii_uppercase(),
        Token::LParen => "(".to_string(),
        _ => String::new(),
    };
    let emit_not_allowed = |emit: &EmitClause| -> Result<()> {
        match emit {
            Some((_, at)) => Err(Error::syntax(
                "EMIT belongs to a query, CREATE STREAM ... AS or CREATE MATERIALIZED VIEW ... AS",
                *at,
            )),
            None => Ok(()),
        }
    };
    let statement = match word.as_str() {
        "SELECT" | "WITH" | "VALUES" | "(" => {
            let query = s.parse_query()?;
            Statement::Query { query, emit: emit.map(|(e, _)| e) }
        }
        "CREATE" => return parse_create(s, emit),
        _ => {
            emit_not_allowed(&emit)?;
            match word.as_str() {
                "SEAL" => {
                    s.p.next_token();
                    s.expect_word("STREAM")?;
                    Statement::Seal { stream: s.name()? }
                }
                "RESUME" => {
                    s.p.next_token();
                    s.expect_word("JOB")?;
                    Statement::Resume { job: s.name()? }
                }
                "SHOW" => parse_show(&mut s)?,
                "DESCRIBE" | "DESC" => {
                    s.p.next_token();
                    let _ = s.eat_word("STREAM")
                        || s.eat_word("TABLE")
                        || s.eat_word("VIEW")
                        || (s.eat_word("MATERIALIZED") && s.eat_word("VIEW"));
                    Statement::Describe { name: s.name()? }
                }
                "DROP" => parse_drop(&mut s)?,
                "ALTER" => parse_alter(&mut s)?,
                "SET" => parse_set(&mut s)?,
                "EXPLAIN" => {
                    s.p.next_token();
                    if s.eat_word("WINDOW") {
                        Statement::Explain { target: ExplainTarget::Window(s.name()?) }
                    } else if s.eat_word("DATAFLOW") {
                        let name = s.name()?;
                        let dot = dataflow_format(&mut s)?;
                        Statement::Explain { target: ExplainTarget::Dataflow { name, dot } }
                    } else {
                        // The explained statement is parsed like any other.
                        let from = s.peek().span.start;
                        if s.peek_word("EXPLAIN") {
                            return Err(Error::syntax("EXPLAIN EXPLAIN is not valid", s.here()));
                        }
                        let mut rest = Vec::new();
                        while s.peek().token != Token::EOF {
                            rest.push(s.p.next_token());
                        }
                        let location = Location::from_sql(from).unwrap_or_default();
                        let end = rest.last().map(|t| t.span.end).unwrap_or(from);
                        let text = index.slice(sql, from, end).to_string();
                        let inner = parse_tokens(rest, sql, index)?;
                        let target = ParsedStatement { statement: inner, location, text };
                        Statement::Explain { target: ExplainTarget::Statement(Box::new(target)) }
                    }
                }
                "COPY" => {
                    let stmt = s.p.parse_statement().map_err(Error::from_parser)?;
                    copy_statement(stmt, loc(&first))?
                }
                "INSERT" => {
                    let stmt = s.p.parse_statement().map_err(Error::from_parser)?;
                    insert_statement(stmt, loc(&first))?
                }
                _ => {
                    // Let sqlparser say what it is; kappa runs none of the others.
                    let stmt = s.p.parse_statement().map_err(Error::from_parser)?;
                    return Err(unsupported_statement(&stmt, loc(&first)));
                }
            }
        }
    };
    s.expect_end()?;
    Ok(statement)
}

fn unsupported_statement(stmt: &ast::Statement, at: Option<Location>) -> Error {
    let text = stmt.to_string();
    let head: Vec<&str> = text.split_whitespace().take(2).collect();
    let what = match stmt {
        ast::Statement::Update(_) | ast::Statement::Delete(_) => {
            return Error::not_supported(
                format!("{} (streams are append-only logs)", head[0].to_ascii_uppercase()),
                at,
            );
        }
        _ => head.join(" ").to_ascii_uppercase(),
    };
    Error::not_supported(format!("the statement {what}"), at)
}

fn parse_create(mut s: P<'_>, emit: EmitClause) -> Result<Statement> {
    let start = s.here();
    s.p.next_token(); // CREATE
    let or_replace = s.p.parse_keywords(&[Keyword::OR, Keyword::REPLACE]);
    let kind_at = s.here();
    if s.eat_word("STREAM") || s.peek_word("TABLE") {
        let is_table = s.eat_word("TABLE");
        let mut c = CreateStream { or_replace, ..CreateStream::default() };
        c.if_not_exists = s.p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
        c.name = s.name()?;
        if s.p.consume_token(&Token::LParen) {
            parse_elements(&mut s, &mut c)?;
        }
        if s.p.parse_keyword(Keyword::WITH) {
            c.options = s.options()?;
        }
        if s.p.parse_keyword(Keyword::AS) {
            let query = s.parse_query()?;
            c.query = Some((query, emit.map(|(e, _)| e)));
        } else if let Some((_, at)) = emit {
            return Err(Error::syntax("EMIT needs AS SELECT ...", at));
        }
        s.expect_end()?;
        let connector = c.options.iter().any(|(k, _)| k == "connector");
        if c.columns.is_empty() && c.query.is_none() && !connector {
            return Err(Error::syntax(
                "a stream needs columns, (col type, ...), a query, AS SELECT ..., or a connector, WITH ('connector' = ...)",
                start,
            ));
        }
        return Ok(if is_table { Statement::CreateTable(c) } else { Statement::CreateStream(c) });
    }
    if s.eat_word("MATERIALIZED") {
        s.expect_word("VIEW")?;
        let if_not_exists = s.p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
        let name = s.name()?;
        let options = if s.p.parse_keyword(Keyword::WITH) { s.options()? } else { Vec::new() };
        s.p.expect_keyword(Keyword::AS).map_err(Error::from_parser)?;
        let query = s.parse_query()?;
        s.expect_end()?;
        return Ok(Statement::CreateMaterializedView {
            name,
            or_replace,
            if_not_exists,
            options,
            query,
            emit: emit.map(|(e, _)| e),
        });
    }
    if s.peek_word("VIEW") {
        return Err(Error::not_supported(
            "CREATE VIEW (use CREATE STREAM ... AS SELECT or CREATE MATERIALIZED VIEW)",
            kind_at,
        ));
    }
    let what = match &s.peek().token {
        Token::Word(w) => w.value.to_ascii_uppercase(),
        _ => String::new(),
    };
    Err(Error::not_supported(format!("CREATE {what}").trim_end().to_string(), kind_at))
}

/// Columns and `WATERMARK FOR`, after the opening parenthesis.
fn parse_elements(s: &mut P<'_>, c: &mut CreateStream) -> Result<()> {
    loop {
        if s.peek_word("WATERMARK") {
            let at = s.here();
            s.p.next_token();
            s.p.expect_keyword(Keyword::FOR).map_err(Error::from_parser)?;
            let location = s.here();
            let column = ident_name(&s.p.parse_identifier().map_err(Error::from_parser)?);
            s.p.expect_keyword(Keyword::AS).map_err(Error::from_parser)?;
            let from = s.peek().span.start;
            let expr = s.p.parse_expr().map_err(Error::from_parser)?;
            let expr_text = s.text_since(from);
            if c.watermark.is_some() {
                return Err(Error::syntax("a stream has at most one WATERMARK", at));
            }
            c.watermark = Some(Watermark { column, expr, expr_text, location });
        } else if s.peek_word("PRIMARY") || s.peek_word("CONSTRAINT") {
            return Err(Error::not_supported("PRIMARY KEY on a stream", s.here()));
        } else {
            c.column_locations.push(s.here());
            let col = s.p.parse_column_def().map_err(Error::from_parser)?;
            c.columns.push(col);
        }
        if s.p.consume_token(&Token::RParen) {
            return Ok(());
        }
        s.p.expect_token(&Token::Comma).map_err(Error::from_parser)?;
    }
}

fn parse_show(s: &mut P<'_>) -> Result<Statement> {
    s.p.next_token();
    let what = if s.eat_word("STREAMS") {
        ShowObject::Streams
    } else if s.eat_word("TABLES") {
        ShowObject::Tables
    } else if s.eat_word("VIEWS") || (s.eat_word("MATERIALIZED") && s.eat_word("VIEWS")) {
        ShowObject::Views
    } else if s.eat_word("JOBS") {
        ShowObject::Jobs
    } else if s.eat_word("DATAFLOW") {
        ShowObject::Dataflow { dot: dataflow_format(s)? }
    } else {
        return Err(expected("STREAMS, TABLES, VIEWS, JOBS or DATAFLOW", s.peek()));
    };
    Ok(Statement::Show(what))
}

/// `[FORMAT TEXT | DOT]` after `DATAFLOW`: whether it is `DOT`.
fn dataflow_format(s: &mut P<'_>) -> Result<bool> {
    if !s.eat_word("FORMAT") {
        return Ok(false);
    }
    if s.eat_word("DOT") {
        Ok(true)
    } else if s.eat_word("TEXT") {
        Ok(false)
    } else {
        Err(expected("TEXT or DOT", s.peek()))
    }
}

fn object_kind(s: &mut P<'_>) -> Result<ObjectKind> {
    if s.eat_word("STREAM") {
        Ok(ObjectKind::Stream)
    } else if s.eat_word("TABLE") {
        Ok(ObjectKind::Table)
    } else if s.eat_word("MATERIALIZED") {
        s.expect_word("VIEW")?;
        Ok(ObjectKind::MaterializedView)
    } else if s.eat_word("VIEW") {
        Ok(ObjectKind::View)
    } else if s.eat_word("JOB") {
        Ok(ObjectKind::Job)
    } else {
        Err(expected("STREAM, TABLE, MATERIALIZED VIEW, VIEW or JOB", s.peek()))
    }
}

fn parse_drop(s: &mut P<'_>) -> Result<Statement> {
    s.p.next_token();
    let kind = object_kind(s)?;
    let if_exists = s.p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
    let name = s.name()?;
    Ok(Statement::Drop { kind, name, if_exists })
}

fn parse_alter(s: &mut P<'_>) -> Result<Statement> {
    let at = s.here();
    s.p.next_token();
    let kind = object_kind(s)?;
    let name = s.name()?;
    if !s.eat_word("REBUILD") {
        return Err(Error::not_supported(format!("ALTER {} other than REBUILD", kind.sql()), at));
    }
    let from = if s.p.parse_keyword(Keyword::FROM) {
        if s.p.parse_keyword(Keyword::OFFSET) {
            Some(RebuildFrom::Offset(s.p.parse_literal_uint().map_err(Error::from_parser)?))
        } else if s.p.parse_keyword(Keyword::TIMESTAMP) {
            Some(RebuildFrom::Timestamp(s.p.parse_literal_string().map_err(Error::from_parser)?))
        } else {
            return Err(expected("OFFSET or TIMESTAMP", s.peek()));
        }
    } else {
        None
    };
    Ok(Statement::Rebuild { kind, name, from })
}

fn parse_set(s: &mut P<'_>) -> Result<Statement> {
    s.p.next_token();
    let name = match s.p.next_token() {
        TokenWithSpan { token: Token::SingleQuotedString(k), .. } => k,
        TokenWithSpan { token: Token::Word(w), .. } => {
            let mut k = w.value.to_ascii_lowercase();
            while s.p.consume_token(&Token::Period) {
                match s.p.next_token().token {
                    Token::Word(w) => {
                        k.push('.');
                        k.push_str(&w.value.to_ascii_lowercase());
                    }
                    _ => return Err(expected("a setting name", s.p.get_current_token())),
                }
            }
            k
        }
        t => return Err(expected("a setting name", &t)),
    };
    if !s.p.consume_token(&Token::Eq) && !s.p.parse_keyword(Keyword::TO) {
        return Err(expected("= or TO", s.peek()));
    }
    let value = match s.p.next_token() {
        TokenWithSpan { token: Token::SingleQuotedString(v), .. } => v,
        TokenWithSpan { token: Token::Number(n, _), .. } => n,
        TokenWithSpan { token: Token::Word(w), .. } => w.value,
        t => return Err(expected("a value", &t)),
    };
    Ok(Statement::Set { name, value })
}

fn copy_statement(stmt: ast::Statement, at: Option<Location>) -> Result<Statement> {
    let ast::Statement::Copy { source, to, target, options, legacy_options, values } = stmt else {
        return Err(Error::syntax("expected COPY", at));
    };
    let path = match target {
        ast::CopyTarget::File { filename } => filename,
        other => return Err(Error::not_supported(format!("COPY ... {other}"), at)),
    };
    if !legacy_options.is_empty() || !values.is_empty() {
        return Err(Error::not_supported(
            "COPY options outside parentheses (write them as (FORMAT csv, HEADER true))",
            at,
        ));
    }
    let mut o = CopyOptions::default();
    for opt in options {
        match opt {
            ast::CopyOption::Format(f) => {
                o.format = Some(FileFormat::from_name(&f.value).ok_or_else(|| {
                    Error::plan(
                        format!("unknown COPY format '{}': expected csv, json or parquet", f.value),
                        at,
                    )
                })?);
            }
            ast::CopyOption::Header(h) => o.header = Some(h),
            ast::CopyOption::Delimiter(c) => {
                let b = u8::try_from(u32::from(c)).map_err(|_| {
                    Error::plan(
                        format!("the CSV delimiter must be one ASCII character, not '{c}'"),
                        at,
                    )
                })?;
                o.delimiter = Some(b);
            }
            other => return Err(Error::not_supported(format!("the COPY option {other}"), at)),
        }
    }
    match (source, to) {
        (ast::CopySource::Table { table_name, columns }, false) => {
            if !columns.is_empty() {
                return Err(Error::not_supported("COPY with a column list", at));
            }
            Ok(Statement::CopyFrom { stream: object_name(&table_name, at)?, path, options: o })
        }
        (ast::CopySource::Table { table_name, columns }, true) => {
            if !columns.is_empty() {
                return Err(Error::not_supported("COPY with a column list", at));
            }
            let source = CopySource::Stream(object_name(&table_name, at)?);
            Ok(Statement::CopyTo { source, path, options: o })
        }
        (ast::CopySource::Query(q), true) => {
            Ok(Statement::CopyTo { source: CopySource::Query(q), path, options: o })
        }
        (ast::CopySource::Query(_), false) => Err(Error::syntax(
            "COPY (query) FROM is not valid: a query can only be copied TO a file",
            at,
        )),
    }
}

fn insert_statement(mut stmt: ast::Statement, at: Option<Location>) -> Result<Statement> {
    if let ast::Statement::Insert(ins) = &mut stmt
        && let Some(source) = &mut ins.source
    {
        crate::group_window::rewrite(source, at)?;
    }
    let raw = Box::new(stmt.clone());
    let ast::Statement::Insert(ins) = stmt else {
        return Err(Error::syntax("expected INSERT", at));
    };
    if ins.overwrite || ins.on.is_some() || ins.returning.is_some() || ins.or.is_some() {
        return Err(Error::not_supported(
            "INSERT OVERWRITE, ON CONFLICT, OR ... and RETURNING (streams are append-only)",
            at,
        ));
    }
    let ast::TableObject::TableName(name) = &ins.table else {
        return Err(Error::not_supported("INSERT INTO a table function", at));
    };
    let stream = object_name(name, at)?;
    let stream_location = name
        .0
        .first()
        .and_then(|p| p.as_ident())
        .and_then(|i| Location::from_sql(i.span.start))
        .or(at);
    let columns = ins.columns.iter().map(|c| object_name(c, at)).collect::<Result<Vec<_>>>()?;
    let Some(source) = ins.source else {
        return Err(Error::not_supported("INSERT without VALUES or SELECT", at));
    };
    Ok(Statement::Insert { stream, stream_location, columns, source, statement: raw })
}

#[cfg(test)]
#[path = "parser_tests.rs"]
mod tests;
