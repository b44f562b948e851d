//! `EXPLAIN` of a query of several operators ([`kappa_sql::graph`]): each operator from the
//! root down, with what feeds it and what bounds its state.

use kappa_sql::graph::{Graph, NodeOp, Port};
use kappa_sql::join::JoinSpec;
use kappa_sql::stream_plan::InputPipeline;
use kappa_sql::windowed_plan::{Grouping, WindowedPlan};

use super::{input, ops};
use crate::engine::Engine;
use crate::error::Result;

/// The lines of `p`, a graph's plan.
pub(super) fn explain(
    engine: &Engine,
    lines: &mut Vec<String>,
    what: &str,
    p: &WindowedPlan,
    ttl: Option<std::time::Duration>,
) -> Result<()> {
    let Grouping::Graph(g) = &p.grouping else { return Ok(()) };
    let output = if g.changelog { "a changelog (__op last)" } else { "append-only" };
    let n = g.nodes.len();
    let ops = if n == 1 { "operator" } else { "operators" };
    lines.push(format!("{what}: {n} {ops}, {output}"));
    if let Some(root) = g.nodes.len().checked_sub(1) {
        node(&Cx { engine, p, g, ttl }, lines, root, 1)?;
    }
    Ok(())
}

/// What every operator's lines need.
struct Cx<'a> {
    engine: &'a Engine,
    p: &'a WindowedPlan,
    g: &'a Graph,
    ttl: Option<std::time::Duration>,
}

/// Lines `from..` one operator deeper (a run's own lines start with its name, then two
/// spaces).
fn indent(lines: &mut [String], from: usize, depth: usize) {
    let pad = "  ".repeat(depth);
    for l in &mut lines[from..] {
        *l = format!("{pad}{l}");
    }
}

fn node(cx: &Cx<'_>, lines: &mut Vec<String>, k: usize, depth: usize) -> Result<()> {
    let (engine, g, ttl) = (cx.engine, cx.g, cx.ttl);
    let n = &g.nodes[k];
    let from = lines.len();
    match &n.op {
        NodeOp::Run(run) => {
            let what = format!("#{k}");
            if run.windows().is_some() {
                engine.windowed(lines, &what, run)?;
            } else {
                super::updating(engine, lines, &what, run, ttl);
            }
            indent(lines, from, depth);
        }
        NodeOp::Join(spec) => {
            join(cx, lines, k, spec, depth);
        }
    }
    // The nodes feeding it.
    for (c, child) in g.nodes.iter().enumerate() {
        if child.parent.is_some_and(|port| port.node == k) {
            node(cx, lines, c, depth + 1)?;
        }
    }
    Ok(())
}

fn join(cx: &Cx<'_>, lines: &mut Vec<String>, k: usize, spec: &JoinSpec, depth: usize) {
    let (engine, p, g, ttl) = (cx.engine, cx.p, cx.g, cx.ttl);
    let pad = "  ".repeat(depth);
    let keys: Vec<String> =
        spec.keys[0].iter().zip(&spec.keys[1]).map(|(l, r)| format!("{l} = {r}")).collect();
    let on = match &spec.filter {
        Some(f) => format!("{} AND {f}", keys.join(" AND ")),
        None => keys.join(" AND "),
    };
    let lookup = match (spec.lookup, &spec.temporal) {
        (Some(l), _) => format!(
            " (a lookup join: the {} side is a table FOR SYSTEM_TIME AS OF PROCTIME())",
            ["left", "right"][l.table]
        ),
        (None, Some(t)) => format!(
            " (a temporal join: the {} side's versions as of the {} side's event time{})",
            ["left", "right"][t.table],
            ["left", "right"][1 - t.table],
            match &t.view {
                Some(v) => format!(
                    "; they are the input of view {v}, which keeps the latest per key by time"
                ),
                None => String::new(),
            }
        ),
        (None, None) => String::new(),
    };
    lines.push(format!("{pad}#{k}: {} ON {}{lookup}", spec.kind.sql(), intervals(&on)));
    let names = ["left", "right"];
    for s in 0..2 {
        let o = 1 - s;
        let feeds: Vec<String> = g
            .sources
            .iter()
            .enumerate()
            .filter(|(_, src)| src.to == Port { node: k, input: s })
            .map(|(i, _)| i.to_string())
            .collect();
        lines.push(format!("{pad}  {}:", names[s]));
        for (i, src) in g.sources.iter().enumerate() {
            if src.to != (Port { node: k, input: s }) {
                continue;
            }
            if let Some(read) = p.inputs.get(i) {
                let pipe = InputPipeline { ops: src.ops.clone(), ..read.pipeline.clone() };
                let at = lines.len();
                input(engine, lines, &pipe);
                indent(lines, at, depth + 1);
            }
        }
        if feeds.is_empty()
            && let Some(c) =
                g.nodes.iter().position(|n| n.parent == Some(Port { node: k, input: s }))
        {
            lines.push(format!("{pad}    the output of operator #{c}"));
        }
        let state = if let Some(t) = &spec.temporal {
            if t.table == s {
                "per key the versions after the oldest time a row may still ask for, and the last one before it (bounded by the watermarks)".to_string()
            } else {
                "the rows waiting for the table's watermark to reach their time (bounded by the watermark)".into()
            }
        } else if let Some(l) = spec.lookup {
            if l.table == s {
                "the table's rows, as they come (a row of the table meets only the rows that come after it)".to_string()
            } else if l.whole {
                "none: each row looks the table up when it comes, after the table (sealed) is read whole".into()
            } else {
                "none: each row looks the table up as it is when it comes".into()
            }
        } else if spec.bounded(s) {
            format!(
                "bounded by the {} side's watermark: a row is let go once that watermark passes {}",
                names[o],
                spec.bound[s].as_ref().map_or_else(String::new, |b| intervals(&b.to_string()))
            )
        } else if let Some(t) = ttl {
            format!(
                "bounded by state_ttl: a row held for {} s is let go (its pairs stay in the output; a later row of the {} side no longer meets it)",
                t.as_secs_f64(),
                names[o]
            )
        } else if spec.changelog[s] || spec.changelog[o] {
            "UNBOUNDED: every row stays until its input takes it back (a changelog input: no time bounds)".into()
        } else {
            format!(
                "UNBOUNDED: every row stays (a condition bounding the {} side's event time by this side's, such as BETWEEN, would bound it)",
                names[o]
            )
        };
        lines.push(format!(
            "{pad}    state: {state} (at most {} rows)",
            kappa_sql::join::MAX_JOIN_ROWS
        ));
        if (spec.bounded(o) || spec.temporal.is_some()) && !feeds.is_empty() {
            lines.push(format!(
                "{pad}    late rows (behind this side's watermark, whose rows of the {} side may be gone): left out, counted in SHOW JOBS, a job appends them to its stream <job>__late",
                names[o]
            ));
        }
        if spec.changelog[s] {
            lines.push(format!("{pad}    a changelog: its -U and -D rows take their pairs back"));
        }
    }
    let out = if spec.changelog_output() {
        if spec.changelog[0] || spec.changelog[1] {
            "a changelog: +I for each new pair, -D for each pair taken back"
        } else {
            "a changelog: a kept row without a match comes out padded with NULLs at once, and is taken back (-D) at its first match"
        }
    } else if spec.temporal.is_some() {
        "append-only: each row once the table's watermark reaches its time, with its key's version then (a LEFT JOIN pads a row without one)"
    } else if spec.kind.keeps(0) || spec.kind.keeps(1) {
        "append-only: a kept row without a match comes out padded with NULLs when it is let go"
    } else {
        "append-only"
    };
    lines.push(format!("{pad}  output: {out}"));
    let n = &g.nodes[k];
    if !n.after.is_empty() {
        lines.push(format!("{pad}  then:"));
        ops(lines, &format!("{pad}    "), &n.after);
    }
}

/// An expression's text with its interval constants as `INTERVAL '...'` (an Arrow
/// `IntervalMonthDayNano { months: 0, days: 0, nanoseconds: 10000000000 }` reads `INTERVAL
/// '10 s'`).
fn intervals(text: &str) -> String {
    const HEAD: &str = "IntervalMonthDayNano { ";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(HEAD) {
        out.push_str(&rest[..i]);
        let after = &rest[i + HEAD.len()..];
        let Some(end) = after.find(" }") else {
            out.push_str(&rest[i..]);
            return out;
        };
        let mut parts = Vec::new();
        for field in after[..end].split(", ") {
            let (name, value) = field.split_once(": ").unwrap_or((field, "0"));
            let v: i128 = value.parse().unwrap_or(0);
            match name {
                "months" if v != 0 => parts.push(format!("{v} months")),
                "days" if v != 0 => parts.push(format!("{v} days")),
                "nanoseconds" if v != 0 => parts.push(if v % 1_000_000_000 == 0 {
                    format!("{} s", v / 1_000_000_000)
                } else {
                    format!("{} ms", v as f64 / 1e6)
                }),
                _ => {}
            }
        }
        if parts.is_empty() {
            parts.push("0 s".into());
        }
        out.push_str(&format!("INTERVAL '{}'", parts.join(" ")));
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn intervals_read_as_sql() {
        let t = "ts@5 >= ts@2 - IntervalMonthDayNano { months: 0, days: 0, nanoseconds: 10000000000 } AND x";
        assert_eq!(super::intervals(t), "ts@5 >= ts@2 - INTERVAL '10 s' AND x");
        let t = "IntervalMonthDayNano { months: 1, days: 2, nanoseconds: 1500000 }";
        assert_eq!(super::intervals(t), "INTERVAL '1 months 2 days 1.5 ms'");
    }
}
