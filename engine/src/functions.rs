//! Built-in scalar functions that Flink SQL has and DataFusion does not, so that Flink queries
//! (the Nexmark suite among them) run as written: `HOUR`, `MOD`, `REGEXP_EXTRACT`,
//! `SPLIT_INDEX`, and Nexmark's user function `COUNT_CHAR`. Each follows Flink's semantics,
//! NULLs included (an index out of range or a failed match is NULL, not an error).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array, Int64Builder, StringBuilder};
use datafusion::arrow::compute::kernels::numeric::rem;
use datafusion::arrow::datatypes::{DataType, Int64Type, TimeUnit, TimestampMillisecondType};
use datafusion::common::{DataFusionError, Result as DfResult, plan_err};
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};

/// Register every function of this module in `ctx`.
pub(crate) fn register(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::new_from_impl(Hour::default()));
    ctx.register_udf(ScalarUDF::new_from_impl(Mod::default()));
    ctx.register_udf(ScalarUDF::new_from_impl(RegexpExtract::default()));
    ctx.register_udf(ScalarUDF::new_from_impl(SplitIndex::default()));
    ctx.register_udf(ScalarUDF::new_from_impl(CountChar::default()));
}

fn arrays(args: &ScalarFunctionArgs) -> DfResult<Vec<ArrayRef>> {
    ColumnarValue::values_to_arrays(&args.args)
}

fn strings(a: &ArrayRef) -> DfResult<&datafusion::arrow::array::StringArray> {
    a.as_string_opt::<i32>().ok_or_else(|| {
        DataFusionError::Execution(format!("expected a string, got {}", a.data_type()))
    })
}

/// `HOUR(timestamp)`: the hour of the day in UTC, 0 to 23, as a BIGINT.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Hour {
    signature: Signature,
}

impl Default for Hour {
    fn default() -> Self {
        Hour { signature: Signature::user_defined(Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for Hour {
    fn name(&self) -> &str {
        "hour"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        match arg_types {
            [DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64 | DataType::Utf8] => {
                Ok(vec![DataType::Timestamp(TimeUnit::Millisecond, None)])
            }
            [DataType::Null] => Ok(vec![DataType::Timestamp(TimeUnit::Millisecond, None)]),
            _ => plan_err!("HOUR takes one timestamp, got {arg_types:?}"),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let a = arrays(&args)?;
        let ts = a[0].as_primitive_opt::<TimestampMillisecondType>().ok_or_else(|| {
            DataFusionError::Execution(format!(
                "HOUR: expected a timestamp, got {}",
                a[0].data_type()
            ))
        })?;
        let out: Int64Array = ts.unary(|ms| ms.div_euclid(3_600_000).rem_euclid(24));
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// `MOD(a, b)`: the remainder of integer division, with the sign of `a` (Flink's `MOD`).
#[derive(Debug, PartialEq, Eq, Hash)]
struct Mod {
    signature: Signature,
}

impl Default for Mod {
    fn default() -> Self {
        Mod { signature: Signature::uniform(2, vec![DataType::Int64], Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for Mod {
    fn name(&self) -> &str {
        "mod"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let a = arrays(&args)?;
        Ok(ColumnarValue::Array(rem(&a[0], &a[1])?))
    }
}

/// `REGEXP_EXTRACT(s, pattern [, group])`: the text of capture group `group` (0, the default,
/// is the whole match) of the first match of `pattern` in `s`; NULL when there is no match or
/// no such group. Patterns are Rust `regex` syntax (no look-around, no back-references); a
/// constant pattern that does not compile is an error when the query is planned, a pattern
/// from a column that does not compile gives NULL (as Flink does).
#[derive(Debug, PartialEq, Eq, Hash)]
struct RegexpExtract {
    signature: Signature,
}

impl Default for RegexpExtract {
    fn default() -> Self {
        RegexpExtract {
            signature: Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![DataType::Utf8, DataType::Utf8]),
                    TypeSignature::Exact(vec![DataType::Utf8, DataType::Utf8, DataType::Int64]),
                ],
                Volatility::Immutable,
            ),
        }
    }
}

impl ScalarUDFImpl for RegexpExtract {
    fn name(&self) -> &str {
        "regexp_extract"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn return_field_from_args(
        &self,
        args: datafusion::logical_expr::ReturnFieldArgs,
    ) -> DfResult<datafusion::arrow::datatypes::FieldRef> {
        if let Some(Some(pattern)) = args.scalar_arguments.get(1)
            && let Some(Some(p)) = pattern.try_as_str()
            && let Err(e) = regex::Regex::new(p)
        {
            return plan_err!(
                "REGEXP_EXTRACT: the pattern '{p}' is not a valid regular expression: {e}"
            );
        }
        Ok(Arc::new(datafusion::arrow::datatypes::Field::new(self.name(), DataType::Utf8, true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let a = arrays(&args)?;
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
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// `SPLIT_INDEX(s, separator, index)`: the `index`-th (from 0) piece of `s` split at
/// `separator` (at whitespace when it is empty); NULL when the index is negative or past the
/// last piece, or `s` is empty (Flink's rules).
#[derive(Debug, PartialEq, Eq, Hash)]
struct SplitIndex {
    signature: Signature,
}

impl Default for SplitIndex {
    fn default() -> Self {
        SplitIndex {
            signature: Signature::exact(
                vec![DataType::Utf8, DataType::Utf8, DataType::Int64],
                Volatility::Immutable,
            ),
        }
    }
}

impl ScalarUDFImpl for SplitIndex {
    fn name(&self) -> &str {
        "split_index"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let a = arrays(&args)?;
        let (text, sep) = (strings(&a[0])?, strings(&a[1])?);
        let index = a[2].as_primitive::<Int64Type>();
        let mut out = StringBuilder::with_capacity(text.len(), text.len() * 8);
        for i in 0..text.len() {
            if text.is_null(i) || sep.is_null(i) || index.is_null(i) {
                out.append_null();
                continue;
            }
            let (t, s) = (text.value(i), sep.value(i));
            let piece =
                usize::try_from(index.value(i)).ok().filter(|_| !t.is_empty()).and_then(|k| {
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
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// `COUNT_CHAR(s, c)`: how many times the first character of `c` occurs in `s` (Nexmark q14's
/// user function, with its rules: 0 when `s` is NULL; NULL when `c` is NULL or empty).
#[derive(Debug, PartialEq, Eq, Hash)]
struct CountChar {
    signature: Signature,
}

impl Default for CountChar {
    fn default() -> Self {
        CountChar {
            signature: Signature::exact(
                vec![DataType::Utf8, DataType::Utf8],
                Volatility::Immutable,
            ),
        }
    }
}

impl ScalarUDFImpl for CountChar {
    fn name(&self) -> &str {
        "count_char"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let a = arrays(&args)?;
        let (text, chars) = (strings(&a[0])?, strings(&a[1])?);
        let mut out = Int64Builder::with_capacity(text.len());
        for i in 0..text.len() {
            let Some(c) = (!chars.is_null(i)).then(|| chars.value(i).chars().next()).flatten()
            else {
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
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
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
