//! Built-in scalar functions that Flink SQL has and DataFusion does not, so that Flink queries
//! (the Nexmark suite among them) run as written: `HOUR`, `DATE_FORMAT` (Java's date
//! patterns, as Flink takes them), `MOD`, `REGEXP_EXTRACT`, `SPLIT_INDEX`, and Nexmark's user
//! function `COUNT_CHAR`. Each follows Flink's semantics,
//! NULLs included (an index out of range or a failed match is NULL, not an error).
//!
//! Each is a [`Builtin`]: a name, a signature, a result type and a function over whole
//! arrays (constant arguments are expanded to arrays first).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array, Int64Builder, StringBuilder};
use datafusion::arrow::compute::kernels::numeric::rem;
use datafusion::arrow::datatypes::{
    DataType, Field, FieldRef, Int64Type, TimeUnit, TimestampMillisecondType,
};
use datafusion::common::{DataFusionError, Result as DfResult, plan_err};
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TypeSignature, Volatility,
};

/// Register every function of this module in `ctx`.
pub(crate) fn register(ctx: &SessionContext) {
    let builtins = [
        Builtin {
            name: "hour",
            signature: Signature::user_defined(Volatility::Immutable),
            returns: DataType::Int64,
            coerce: Some(coerce_hour),
            check: None,
            invoke: hour,
        },
        Builtin {
            name: "date_format",
            signature: Signature::user_defined(Volatility::Immutable),
            returns: DataType::Utf8,
            coerce: Some(coerce_date_format),
            check: Some(check_date_format),
            invoke: date_format,
        },
        Builtin {
            name: "mod",
            signature: Signature::uniform(2, vec![DataType::Int64], Volatility::Immutable),
            returns: DataType::Int64,
            coerce: None,
            check: None,
            invoke: modulo,
        },
        Builtin {
            name: "regexp_extract",
            signature: Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![DataType::Utf8, DataType::Utf8]),
                    TypeSignature::Exact(vec![DataType::Utf8, DataType::Utf8, DataType::Int64]),
                ],
                Volatility::Immutable,
            ),
            returns: DataType::Utf8,
            coerce: None,
            check: Some(check_pattern),
            invoke: regexp_extract,
        },
        Builtin {
            name: "split_index",
            signature: Signature::exact(
                vec![DataType::Utf8, DataType::Utf8, DataType::Int64],
                Volatility::Immutable,
            ),
            returns: DataType::Utf8,
            coerce: None,
            check: None,
            invoke: split_index,
        },
        Builtin {
            name: "count_char",
            signature: Signature::exact(
                vec![DataType::Utf8, DataType::Utf8],
                Volatility::Immutable,
            ),
            returns: DataType::Int64,
            coerce: None,
            check: None,
            invoke: count_char,
        },
    ];
    for b in builtins {
        ctx.register_udf(ScalarUDF::new_from_impl(b));
    }
}

/// The argument types a function casts its arguments to.
type Coerce = fn(&[DataType]) -> DfResult<Vec<DataType>>;

/// A built-in scalar function (equal to another when its name and signature are: the name
/// identifies a built-in).
#[derive(Debug)]
struct Builtin {
    name: &'static str,
    signature: Signature,
    returns: DataType,
    /// The argument types to cast to, for a `user_defined` signature.
    coerce: Option<Coerce>,
    /// Checks of constant arguments when the query is planned.
    check: Option<fn(&ReturnFieldArgs) -> DfResult<()>>,
    invoke: fn(&[ArrayRef]) -> DfResult<ArrayRef>,
}

impl PartialEq for Builtin {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.signature == other.signature
    }
}

impl Eq for Builtin {}

impl std::hash::Hash for Builtin {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        self.signature.hash(state);
    }
}

impl ScalarUDFImpl for Builtin {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        match self.coerce {
            Some(coerce) => coerce(arg_types),
            None => plan_err!("{} takes no arguments of types {arg_types:?}", self.name),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(self.returns.clone())
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        if let Some(check) = self.check {
            check(&args)?;
        }
        Ok(Arc::new(Field::new(self.name, self.returns.clone(), true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        Ok(ColumnarValue::Array((self.invoke)(&arrays)?))
    }
}

fn strings(a: &ArrayRef) -> DfResult<&datafusion::arrow::array::StringArray> {
    a.as_string_opt::<i32>().ok_or_else(|| {
        DataFusionError::Execution(format!("expected a string, got {}", a.data_type()))
    })
}

/// `HOUR` takes any timestamp (or a date, or text), as milliseconds without a zone.
fn coerce_hour(arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
    match arg_types {
        [DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64 | DataType::Utf8]
        | [DataType::Null] => Ok(vec![DataType::Timestamp(TimeUnit::Millisecond, None)]),
        _ => plan_err!("HOUR takes one timestamp, got {arg_types:?}"),
    }
}

/// `HOUR(timestamp)`: the hour of the day in UTC, 0 to 23, as a BIGINT.
fn hour(a: &[ArrayRef]) -> DfResult<ArrayRef> {
    let ts = a[0].as_primitive_opt::<TimestampMillisecondType>().ok_or_else(|| {
        DataFusionError::Execution(format!("HOUR: expected a timestamp, got {}", a[0].data_type()))
    })?;
    let out: Int64Array = ts.unary(|ms| ms.div_euclid(3_600_000).rem_euclid(24));
    Ok(Arc::new(out))
}

/// `DATE_FORMAT` takes a timestamp (as milliseconds without a zone) and a pattern.
fn coerce_date_format(arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
    match arg_types {
        [
            DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64 | DataType::Null,
            DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 | DataType::Null,
        ] => Ok(vec![DataType::Timestamp(TimeUnit::Millisecond, None), DataType::Utf8]),
        _ => plan_err!(
            "DATE_FORMAT takes a timestamp and a pattern like 'yyyy-MM-dd', got {arg_types:?}"
        ),
    }
}

/// A constant `DATE_FORMAT` pattern must be one it can follow.
fn check_date_format(args: &ReturnFieldArgs) -> DfResult<()> {
    if let Some(Some(pattern)) = args.scalar_arguments.get(1)
        && let Some(Some(p)) = pattern.try_as_str()
    {
        date_pattern(p)?;
    }
    Ok(())
}

/// One piece of a date pattern.
#[derive(Debug, Clone, PartialEq)]
enum DatePart {
    Text(String),
    Year4,
    Year2,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    Millis,
}

/// A Java (`SimpleDateFormat`) pattern as Flink's `DATE_FORMAT` takes it: `yyyy`, `yy`, `MM`,
/// `dd`, `HH`, `mm`, `ss`, `SSS`, text in single quotes (`''` for a quote), and any character
/// that is not a letter. Other letters (names of days and months, time zones, ...) are refused.
fn date_pattern(p: &str) -> DfResult<Vec<DatePart>> {
    let chars: Vec<char> = p.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let text = |out: &mut Vec<DatePart>, c: char| match out.last_mut() {
        Some(DatePart::Text(t)) => t.push(c),
        _ => out.push(DatePart::Text(c.to_string())),
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            let mut j = i + 1;
            if chars.get(j) == Some(&'\'') {
                text(&mut out, '\'');
                i += 2;
                continue;
            }
            // Quoted text ends at a lone quote; two quotes inside are one.
            loop {
                match (chars.get(j), chars.get(j + 1)) {
                    (Some('\''), Some('\'')) => {
                        text(&mut out, '\'');
                        j += 2;
                    }
                    (Some('\''), _) | (None, _) => break,
                    (Some(c), _) => {
                        text(&mut out, *c);
                        j += 1;
                    }
                }
            }
            i = j + 1;
            continue;
        }
        if !c.is_ascii_alphabetic() {
            text(&mut out, c);
            i += 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|d| **d == c).count();
        let part = match (c, run) {
            ('y', 4) => DatePart::Year4,
            ('y', 2) => DatePart::Year2,
            ('M', 2) => DatePart::Month,
            ('d', 2) => DatePart::Day,
            ('H', 2) => DatePart::Hour,
            ('m', 2) => DatePart::Minute,
            ('s', 2) => DatePart::Second,
            ('S', 3) => DatePart::Millis,
            _ => {
                let letters: String = std::iter::repeat_n(c, run).collect();
                return plan_err!(
                    "DATE_FORMAT: '{letters}' in the pattern '{p}' is not supported yet (yyyy, yy, MM, dd, HH, mm, ss, SSS and quoted text are)"
                );
            }
        };
        out.push(part);
        i += run;
    }
    Ok(out)
}

/// The civil date (year, month, day) of a day number since 1970-01-01.
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `DATE_FORMAT(timestamp, pattern)`: the timestamp (UTC) as text by a Java date pattern.
fn date_format(a: &[ArrayRef]) -> DfResult<ArrayRef> {
    use std::fmt::Write;
    let ts = a[0].as_primitive_opt::<TimestampMillisecondType>().ok_or_else(|| {
        DataFusionError::Execution(format!(
            "DATE_FORMAT: expected a timestamp, got {}",
            a[0].data_type()
        ))
    })?;
    let pattern = strings(&a[1])?;
    let mut out = StringBuilder::with_capacity(ts.len(), ts.len() * 10);
    let mut parsed: Option<(&str, Vec<DatePart>)> = None;
    let mut text = String::new();
    for i in 0..ts.len() {
        if ts.is_null(i) || pattern.is_null(i) {
            out.append_null();
            continue;
        }
        let p = pattern.value(i);
        if parsed.as_ref().is_none_or(|(q, _)| *q != p) {
            parsed = Some((p, date_pattern(p)?));
        }
        let Some((_, parts)) = &parsed else { continue };
        let ms = ts.value(i);
        let (days, in_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
        let (y, m, d) = civil(days);
        text.clear();
        for part in parts {
            let _ = match part {
                DatePart::Text(t) => write!(text, "{t}"),
                DatePart::Year4 => write!(text, "{y:04}"),
                DatePart::Year2 => write!(text, "{:02}", y.rem_euclid(100)),
                DatePart::Month => write!(text, "{m:02}"),
                DatePart::Day => write!(text, "{d:02}"),
                DatePart::Hour => write!(text, "{:02}", in_day / 3_600_000),
                DatePart::Minute => write!(text, "{:02}", in_day / 60_000 % 60),
                DatePart::Second => write!(text, "{:02}", in_day / 1000 % 60),
                DatePart::Millis => write!(text, "{:03}", in_day % 1000),
            };
        }
        out.append_value(&text);
    }
    Ok(Arc::new(out.finish()))
}

/// `MOD(a, b)`: the remainder of integer division, with the sign of `a` (Flink's `MOD`).
fn modulo(a: &[ArrayRef]) -> DfResult<ArrayRef> {
    Ok(rem(&a[0], &a[1])?)
}

/// A constant `REGEXP_EXTRACT` pattern must compile.
fn check_pattern(args: &ReturnFieldArgs) -> DfResult<()> {
    if let Some(Some(pattern)) = args.scalar_arguments.get(1)
        && let Some(Some(p)) = pattern.try_as_str()
        && let Err(e) = regex::Regex::new(p)
    {
        return plan_err!(
            "REGEXP_EXTRACT: the pattern '{p}' is not a valid regular expression: {e}"
        );
    }
    Ok(())
}

/// `REGEXP_EXTRACT(s, pattern [, group])`: the text of capture group `group` (0, the default,
/// is the whole match) of the first match of `pattern` in `s`; NULL when there is no match or
/// no such group. Patterns are Rust `regex` syntax (no look-around, no back-references); a
/// constant pattern that does not compile is an error when the query is planned, a pattern
/// from a column that does not compile gives NULL (as Flink does).
fn regexp_extract(a: &[ArrayRef]) -> DfResult<ArrayRef> {
    let (text, pattern) = (strings(&a[0])?, strings(&a[1])?);
    let group = a.get(2).map(|g| g.as_primitive::<Int64Type>());
    let mut out = StringBuilder::with_capacity(text.len(), text.len() * 8);
    // The pattern is nearly always a constant: compile it again only when it changes.
    let mut compiled: Option<(&str, Option<(regex::Regex, regex::CaptureLocations)>)> = None;
    for i in 0..text.len() {
        let g = match group {
            Some(g) if g.is_null(i) => None,
            Some(g) => usize::try_from(g.value(i)).ok(),
            None => Some(0),
        };
        if text.is_null(i) || pattern.is_null(i) || g.is_none() {
            out.append_null();
            continue;
        }
        let p = pattern.value(i);
        if compiled.as_ref().is_none_or(|(q, _)| *q != p) {
            let re = regex::Regex::new(p).ok().map(|re| {
                let locations = re.capture_locations();
                (re, locations)
            });
            compiled = Some((p, re));
        }
        let t = text.value(i);
        // Capture locations are reused from row to row: no allocation per row.
        let found = match (g, compiled.as_mut().and_then(|(_, re)| re.as_mut())) {
            (Some(g), Some((re, locations))) => {
                re.captures_read(locations, t).and_then(|_| locations.get(g))
            }
            _ => None,
        };
        match found {
            Some((start, end)) => out.append_value(&t[start..end]),
            None => out.append_null(),
        }
    }
    Ok(Arc::new(out.finish()))
}

/// `SPLIT_INDEX(s, separator, index)`: the `index`-th (from 0) piece of `s` split at
/// `separator` (at whitespace when it is empty); NULL when the index is negative or past the
/// last piece, or `s` is empty (Flink's rules).
fn split_index(a: &[ArrayRef]) -> DfResult<ArrayRef> {
    let (text, sep) = (strings(&a[0])?, strings(&a[1])?);
    let index = a[2].as_primitive::<Int64Type>();
    let mut out = StringBuilder::with_capacity(text.len(), text.len() * 8);
    for i in 0..text.len() {
        if text.is_null(i) || sep.is_null(i) || index.is_null(i) {
            out.append_null();
            continue;
        }
        let (t, s) = (text.value(i), sep.value(i));
        let piece = usize::try_from(index.value(i)).ok().filter(|_| !t.is_empty()).and_then(|k| {
            let mut chars = s.chars();
            match (chars.next(), chars.next()) {
                (None, _) => t.split(char::is_whitespace).nth(k),
                (Some(c), None) => t.split(c).nth(k),
                _ => t.split(s).nth(k),
            }
        });
        match piece {
            Some(p) => out.append_value(p),
            None => out.append_null(),
        }
    }
    Ok(Arc::new(out.finish()))
}

/// `COUNT_CHAR(s, c)`: how many times the first character of `c` occurs in `s` (Nexmark q14's
/// user function, with its rules: 0 when `s` is NULL; NULL when `c` is NULL or empty).
fn count_char(a: &[ArrayRef]) -> DfResult<ArrayRef> {
    let (text, chars) = (strings(&a[0])?, strings(&a[1])?);
    let mut out = Int64Builder::with_capacity(text.len());
    for i in 0..text.len() {
        let Some(c) = (!chars.is_null(i)).then(|| chars.value(i).chars().next()).flatten() else {
            out.append_null();
            continue;
        };
        if text.is_null(i) {
            out.append_value(0);
            continue;
        }
        let t = text.value(i);
        let n = if c.is_ascii() {
            let b = c as u8;
            t.bytes().filter(|x| *x == b).count()
        } else {
            t.chars().filter(|x| *x == c).count()
        };
        out.append_value(n as i64);
    }
    Ok(Arc::new(out.finish()))
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;

    async fn one(sql: &str) -> String {
        let ctx = SessionContext::new();
        super::register(&ctx);
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string()
            .lines()
            .nth(3)
            .unwrap()
            .to_string()
    }

    #[tokio::test]
    async fn flink_functions_as_flink_defines_them() {
        assert!(one("SELECT hour(TIMESTAMP '2015-07-15 13:59:59')").await.contains("| 13 "));
        assert!(one("SELECT mod(-7, 3), mod(7, 3)").await.contains("| -1 "));
        let url = "'https://www.nexmark.com/abc/def/ghi/item.htm?query=1&channel_id=1234'";
        assert!(
            one(&format!("SELECT regexp_extract({url}, '(&|^)channel_id=([^&]*)', 2)"))
                .await
                .contains("| 1234 ")
        );
        assert!(one("SELECT regexp_extract('abc', 'x(y)', 1) IS NULL").await.contains("true"));
        assert!(one("SELECT regexp_extract('abc', 'b')").await.contains("| b "));
        assert!(one("SELECT regexp_extract('abc', 'b', 3) IS NULL").await.contains("true"));
        assert!(
            one(
                "SELECT date_format(TIMESTAMP '2015-07-15 13:04:05.678', 'yyyy-MM-dd HH:mm:ss.SSS')"
            )
            .await
            .contains("| 2015-07-15 13:04:05.678 ")
        );
        assert!(
            one("SELECT date_format(TIMESTAMP '1969-12-31 23:59:59', 'yy''x''MM/dd ''at'' HH')")
                .await
                .contains("| 69x12/31 at 23 ")
        );
        assert!(
            one("SELECT date_format(TIMESTAMP '2000-02-29 13:00:00', 'HH ''o''''clock''')")
                .await
                .contains("| 13 o'clock ")
        );
        assert!(
            one("SELECT date_format(TIMESTAMP '2000-02-29 00:00:00', 'dd.MM.yyyy')")
                .await
                .contains("| 29.02.2000 ")
        );
        assert!(
            one("SELECT date_format(CAST(NULL AS TIMESTAMP), 'yyyy') IS NULL")
                .await
                .contains("true")
        );
        let ctx = SessionContext::new();
        super::register(&ctx);
        let e = ctx.sql("SELECT date_format(TIMESTAMP '2020-01-01 00:00:00', 'EEE')").await;
        assert!(e.is_err_and(|e| e.to_string().contains("'EEE'")));
        assert!(one(&format!("SELECT split_index({url}, '/', 3)")).await.contains("| abc "));
        assert!(one(&format!("SELECT split_index({url}, '/', 9) IS NULL")).await.contains("true"));
        assert!(one("SELECT split_index('a/b', '/', -1) IS NULL").await.contains("true"));
        assert!(one("SELECT count_char('cacbc', 'c')").await.contains("| 3 "));
        assert!(one("SELECT count_char(NULL, 'c')").await.contains("| 0 "));
        assert!(one("SELECT count_char('cc', 'cat')").await.contains("| 2 "));
        assert!(one("SELECT count_char('cc', '') IS NULL").await.contains("true"));
        assert!(one("SELECT split_index('', '/', 0) IS NULL").await.contains("true"));
        assert!(one("SELECT split_index('a b', '', 1)").await.contains("| b "));
        let ctx = SessionContext::new();
        super::register(&ctx);
        let bad = ctx.sql("SELECT regexp_extract('a', '(')").await.unwrap_err().to_string();
        assert!(bad.contains("the pattern '(' is not a valid regular expression"), "{bad}");
    }
}
