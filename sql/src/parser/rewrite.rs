//! Token rewrites before sqlparser parses a statement: approximate numbers, Flink's window
//! table functions in the short form DataFusion plans, and `t FOR SYSTEM_TIME AS OF e` as the
//! engine's table function `__as_of`.

use sqlparser::tokenizer::{Token, TokenWithSpan};

use super::{emit_follows, loc};
use crate::error::{Error, Result};

/// Numbers with an exponent (`1e3`, `2.5E-7`) are approximate: `CAST('1e3' AS DOUBLE)`, as in
/// Flink and PostgreSQL. (The session parses the other decimal literals as exact DECIMALs, and
/// would refuse `1e300`, whose scale no DECIMAL has.)
pub(super) fn approximate_numbers(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let mut out = Vec::with_capacity(tokens.len());
    for t in tokens {
        match &t.token {
            Token::Number(n, _) if n.contains(['e', 'E']) => {
                let span = t.span;
                let at = |token: Token| TokenWithSpan { token, span };
                out.push(at(Token::make_keyword("CAST")));
                out.push(at(Token::LParen));
                out.push(at(Token::SingleQuotedString(n.clone())));
                out.push(at(Token::make_keyword("AS")));
                out.push(at(Token::make_keyword("DOUBLE")));
                out.push(at(Token::RParen));
            }
            _ => out.push(t),
        }
    }
    out
}

/// Flink's window table functions, `TABLE(TUMBLE(TABLE bid, DESCRIPTOR(ts), size))`, in the
/// short form DataFusion plans as a table function: `TUMBLE(bid, ts, size)`; a session's
/// `TABLE bid PARTITION BY k` becomes keys after the gap: `SESSION(bid, ts, gap, k)`.
pub(super) fn short_window_functions(mut tokens: Vec<TokenWithSpan>) -> Result<Vec<TokenWithSpan>> {
    let word = |t: &TokenWithSpan, w: &str| matches!(&t.token, Token::Word(x) if x.quote_style.is_none() && x.value.eq_ignore_ascii_case(w));
    let solid = |tokens: &[TokenWithSpan], from: usize| {
        (from..tokens.len()).find(|i| !matches!(tokens[*i].token, Token::Whitespace(_)))
    };
    // The index of the parenthesis that closes the one at `open`.
    let closing = |tokens: &[TokenWithSpan], open: usize| {
        let mut depth = 0usize;
        for (i, t) in tokens.iter().enumerate().skip(open) {
            match t.token {
                Token::LParen => depth += 1,
                Token::RParen => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(i);
                    }
                }
                _ => {}
            }
        }
        None
    };
    let mut i = 0;
    while i < tokens.len() {
        let outer = solid(&tokens, i + 1).filter(|o| tokens[*o].token == Token::LParen);
        let function = outer.and_then(|o| solid(&tokens, o + 1));
        let is_window =
            |f: usize| ["TUMBLE", "HOP", "CUMULATE", "SESSION"].iter().any(|w| word(&tokens[f], w));
        let (Some(outer), Some(function)) = (outer, function) else {
            i += 1;
            continue;
        };
        if !word(&tokens[i], "TABLE") || !is_window(function) {
            i += 1;
            continue;
        }
        let Some(end) = closing(&tokens, outer) else { break };
        // The call's own closing parenthesis: a session's partition keys go before it.
        let call_end = solid(&tokens, function + 1)
            .filter(|o| tokens[*o].token == Token::LParen)
            .and_then(|o| closing(&tokens, o));
        // Inside the call: `TABLE name` is the name, `DESCRIPTOR(col)` the column,
        // `PARTITION BY k, ...` (or `(k, ...)`) the keys, moved after the other arguments.
        let mut inner: Vec<TokenWithSpan> = Vec::new();
        let mut keys: Vec<TokenWithSpan> = Vec::new();
        let mut j = function;
        let mut drop_at: Vec<usize> = Vec::new();
        while j < end {
            if word(&tokens[j], "TABLE") && j > function {
                j += 1;
                continue;
            }
            if word(&tokens[j], "PARTITION")
                && let Some(by) = solid(&tokens, j + 1).filter(|b| word(&tokens[*b], "BY"))
            {
                let Some(descriptor) = (by..end).find(|d| word(&tokens[*d], "DESCRIPTOR")) else {
                    return Err(Error::plan(
                        "PARTITION BY in a window function comes before DESCRIPTOR(time_column)",
                        loc(&tokens[j]),
                    ));
                };
                let mut list: Vec<TokenWithSpan> = tokens[by + 1..descriptor]
                    .iter()
                    .filter(|t| !matches!(t.token, Token::Whitespace(_)))
                    .cloned()
                    .collect();
                // The comma before DESCRIPTOR ends the list; parentheses may wrap it.
                if list.last().is_some_and(|t| t.token == Token::Comma) {
                    list.pop();
                }
                if list.first().is_some_and(|t| t.token == Token::LParen)
                    && list.last().is_some_and(|t| t.token == Token::RParen)
                {
                    list.remove(0);
                    list.pop();
                }
                if list.is_empty() {
                    return Err(Error::plan("PARTITION BY names no column", loc(&tokens[j])));
                }
                keys = list;
                inner.push(TokenWithSpan { token: Token::Comma, span: tokens[j].span });
                j = descriptor;
                continue;
            }
            if word(&tokens[j], "DESCRIPTOR")
                && let Some(open) =
                    solid(&tokens, j + 1).filter(|o| tokens[*o].token == Token::LParen)
                && let Some(close) = closing(&tokens, open)
            {
                drop_at.push(close);
                j = open + 1;
                continue;
            }
            if Some(j) == call_end && !keys.is_empty() {
                inner.push(TokenWithSpan { token: Token::Comma, span: tokens[j].span });
                inner.append(&mut keys);
            }
            if !drop_at.contains(&j) {
                inner.push(tokens[j].clone());
            }
            j += 1;
        }
        tokens.splice(i..=end, inner);
        i += 1;
    }
    // DataFusion looks table functions up by their name as written: lower case it.
    for t in &mut tokens {
        if let Token::Word(w) = &mut t.token
            && w.quote_style.is_none()
            && ["TUMBLE", "HOP", "CUMULATE", "SESSION"]
                .iter()
                .any(|f| w.value.eq_ignore_ascii_case(f))
        {
            w.value = w.value.to_ascii_lowercase();
        }
    }
    Ok(tokens)
}

/// `t FOR SYSTEM_TIME AS OF e` (which sqlparser's generic dialect does not parse) as a call of
/// the engine's table function `__as_of(t, 'e')`: `e` is a column (`o.ts`) or a call without
/// arguments (`PROCTIME()`).
pub(super) fn as_of_tables(mut tokens: Vec<TokenWithSpan>) -> Result<Vec<TokenWithSpan>> {
    let word = |t: &TokenWithSpan, w: &str| matches!(&t.token, Token::Word(x) if x.quote_style.is_none() && x.value.eq_ignore_ascii_case(w));
    let solid = |tokens: &[TokenWithSpan], from: usize| {
        (from..tokens.len()).find(|i| !matches!(tokens[*i].token, Token::Whitespace(_)))
    };
    let before = |tokens: &[TokenWithSpan], at: usize| {
        (0..at).rev().find(|i| !matches!(tokens[*i].token, Token::Whitespace(_)))
    };
    let mut i = 0;
    while i < tokens.len() {
        if !word(&tokens[i], "FOR") {
            i += 1;
            continue;
        }
        let Some(st) = solid(&tokens, i + 1).filter(|j| word(&tokens[*j], "SYSTEM_TIME")) else {
            i += 1;
            continue;
        };
        let at = loc(&tokens[i]);
        let Some(of) = solid(&tokens, st + 1)
            .filter(|j| word(&tokens[*j], "AS"))
            .and_then(|j| solid(&tokens, j + 1))
            .filter(|j| word(&tokens[*j], "OF"))
        else {
            return Err(Error::syntax("FOR SYSTEM_TIME AS OF expects AS OF", at));
        };
        // The table's name before FOR: `t` or `s.t`.
        let Some(mut start) =
            before(&tokens, i).filter(|j| matches!(tokens[*j].token, Token::Word(_)))
        else {
            return Err(Error::syntax("FOR SYSTEM_TIME AS OF follows a table's name", at));
        };
        while let Some(dot) = before(&tokens, start).filter(|j| tokens[*j].token == Token::Period) {
            match before(&tokens, dot).filter(|j| matches!(tokens[*j].token, Token::Word(_))) {
                Some(j) => start = j,
                None => break,
            }
        }
        // The time: `a.b.c` or `f()`.
        let Some(first) =
            solid(&tokens, of + 1).filter(|j| matches!(tokens[*j].token, Token::Word(_)))
        else {
            return Err(Error::syntax(
                "FOR SYSTEM_TIME AS OF takes a column (o.ts) or PROCTIME()",
                at,
            ));
        };
        let mut end = first;
        loop {
            let next = solid(&tokens, end + 1);
            match next.map(|n| &tokens[n].token) {
                Some(Token::Period) => match solid(&tokens, next.unwrap_or(end) + 1) {
                    Some(w) if matches!(tokens[w].token, Token::Word(_)) => end = w,
                    _ => break,
                },
                Some(Token::LParen) => {
                    let close = next.and_then(|n| solid(&tokens, n + 1));
                    match close {
                        Some(c) if tokens[c].token == Token::RParen => {
                            end = c;
                            break;
                        }
                        _ => {
                            return Err(Error::syntax(
                                "FOR SYSTEM_TIME AS OF takes a column (o.ts) or a call without arguments (PROCTIME())",
                                at,
                            ));
                        }
                    }
                }
                _ => break,
            }
        }
        let time: String = tokens[first..=end].iter().map(|t| t.token.to_string()).collect();
        let span = tokens[i].span;
        let token = |t: Token| TokenWithSpan { token: t, span };
        let mut call = vec![token(Token::make_word("__as_of", None)), token(Token::LParen)];
        call.extend(tokens[start..i].iter().cloned());
        call.push(token(Token::Comma));
        call.push(token(Token::SingleQuotedString(time)));
        call.push(token(Token::RParen));
        // Without an alias, the table keeps its name (`t.col`), as without FOR SYSTEM_TIME.
        let after = solid(&tokens, end + 1);
        let aliased = match after.map(|n| &tokens[n].token) {
            // (`EMIT CHANGES` is kappa's clause, not an alias.)
            Some(Token::Word(w))
                if w.quote_style.is_none()
                    && w.value.eq_ignore_ascii_case("EMIT")
                    && emit_follows(&tokens[after.map_or(end, |n| n + 1)..]) =>
            {
                false
            }
            Some(Token::Word(w)) => {
                w.quote_style.is_some()
                    || w.keyword == sqlparser::keywords::Keyword::AS
                    || !sqlparser::keywords::RESERVED_FOR_TABLE_ALIAS.contains(&w.keyword)
            }
            Some(Token::SingleQuotedString(_)) => true,
            _ => false,
        };
        if let Some(name) = before(&tokens, i).map(|n| tokens[n].clone()).filter(|_| !aliased) {
            call.push(token(Token::Whitespace(sqlparser::tokenizer::Whitespace::Space)));
            call.push(token(Token::make_keyword("AS")));
            call.push(token(Token::Whitespace(sqlparser::tokenizer::Whitespace::Space)));
            call.push(name);
        }
        let n = call.len();
        tokens.splice(start..=end, call);
        i = start + n;
    }
    Ok(tokens)
}
