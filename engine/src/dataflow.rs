//! `SHOW DATAFLOW` and `EXPLAIN DATAFLOW x` (`[FORMAT TEXT | DOT]`): how streams, jobs,
//! views, sink tables, connector sources and push queries feed each other, with what each is
//! doing now: rows and rates (sampled every second, [`crate::meter`]), each job's lag per
//! input, watermark, late rows and state.
//!
//! The graph is built from the catalog and the running tasks: a job reads its inputs and
//! writes its output (and its late-row streams); a source writes its stream; a push query
//! reads its inputs. The text form is a tree from the nodes nothing feeds (a node fed by two
//! is printed once, then named "(above)"); the DOT form is a Graphviz digraph. `EXPLAIN
//! DATAFLOW x` keeps what feeds `x` and what `x` feeds.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use datafusion::arrow::array::StringArray;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use kappa_sql::Location;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::output::Output;

/// Schema metadata (key, value) that asks a client to print the rows (one text column) as
/// lines of text, whatever its format: `SHOW DATAFLOW`'s text and DOT.
pub const LINES: (&str, &str) = ("kappa.print", "lines");

/// A node: what it is, its name, and what it is doing.
#[derive(Debug, Clone)]
struct Node {
    /// `stream`, `view`, `table`, `job`, `source`, `push query`.
    kind: &'static str,
    name: String,
    /// More of what it is (`materialized view`, `late rows of job q`).
    what: Option<String>,
    facts: Vec<String>,
}

impl Node {
    fn title(&self) -> String {
        match &self.what {
            Some(w) => format!("{} {} ({w})", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }
}

#[derive(Debug, Default)]
struct Graph {
    /// By id (`data x` for streams, views and tables, `job x`, `source x`, `push x`).
    nodes: BTreeMap<String, Node>,
    /// (from, to, label).
    edges: Vec<(String, String, Option<String>)>,
}

fn rate(r: Option<f64>, what: &str) -> Option<String> {
    r.map(|r| if r >= 10.0 { format!("{r:.0} {what}/s") } else { format!("{r:.1} {what}/s") })
}

/// `n` and `word`, plural unless `n` is 1.
fn count(n: u64, word: &str) -> String {
    if n == 1 { format!("1 {word}") } else { format!("{n} {word}s") }
}

/// A time in milliseconds as `YYYY-MM-DD hh:mm:ss.mmm`.
pub(crate) fn time(ms: i64) -> String {
    datafusion::arrow::temporal_conversions::timestamp_ms_to_datetime(ms)
        .map_or_else(|| ms.to_string(), |t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
}

fn build(engine: &Engine) -> Graph {
    let inner = &engine.inner;
    let mut g = Graph::default();
    let (streams, sinks, views): (Vec<_>, Vec<_>, BTreeSet<String>) = {
        let c = inner.catalog();
        let views = c.streams.keys().filter(|n| c.is_view(n)).cloned().collect();
        let streams = c.streams.iter().map(|(n, e)| (n.clone(), e.clone())).collect();
        let sinks = c.sinks.iter().map(|(n, e)| (n.clone(), e.connector.clone())).collect();
        (streams, sinks, views)
    };
    for (name, entry) in &streams {
        let Ok(s) = inner.log(name) else { continue };
        let info = s.info();
        let mut facts = Vec::new();
        let changes = inner.meter.rate(&format!("stream {}", s.name()));
        let node = if views.contains(name) {
            let rows = inner.view(name).and_then(|v| v.current()).map(|p| p.rows.num_rows());
            facts.push(rows.map_or("no rows published yet".into(), |r| count(r as u64, "row")));
            facts.extend(rate(changes, "changes"));
            Node { kind: "view", name: name.clone(), what: None, facts }
        } else {
            facts.push(count(s.readable_end().saturating_sub(info.start), "row"));
            if info.start > 0 {
                facts.push(format!("retained from offset {}", info.start));
            }
            facts.extend(rate(changes, "rows"));
            if let Some(w) = &entry.watermark {
                facts.push(format!("event time {} (watermark {})", w.column, w.expr));
            }
            if info.sealed.is_some() {
                facts.push("sealed".into());
            }
            let what = match &entry.job {
                Some(j) if j != name => Some(format!("late rows of job {j}")),
                _ => None,
            };
            if let Some(j) = entry.job.as_ref().filter(|j| *j != name) {
                g.edges.push((format!("job {j}"), format!("data {name}"), Some("late".into())));
            }
            Node { kind: "stream", name: name.clone(), what, facts }
        };
        g.nodes.insert(format!("data {name}"), node);
    }
    for (name, connector) in sinks {
        let node = Node { kind: "table", name: name.clone(), what: Some(connector), facts: vec![] };
        g.nodes.insert(format!("data {name}"), node);
    }
    for row in crate::show::job_rows(engine) {
        let (prefix, kind) = match row.kind {
            "push query" => ("push", "push query"),
            "nexmark source" | "connector" => ("source", "source"),
            _ => ("job", "job"),
        };
        let id = format!("{prefix} {}", row.name);
        let mut facts = vec![row.state.to_string()];
        if prefix == "job" {
            facts.extend(rate(inner.meter.rate(&id), "rows read"));
        }
        if prefix != "source" {
            facts.push(format!("lag {}", count(row.lag, "row")));
        }
        if row.lag_ms > 0 {
            facts.push(format!("behind for {} ms", row.lag_ms));
        }
        if let Some(w) = row.watermark {
            facts.push(format!("watermark {}", time(w)));
        }
        if row.late > 0 {
            facts.push(count(row.late, "late row"));
        }
        if let Some(x) = &row.rebuilds {
            let read = row.progress.map(|p| format!(", {p:.0}% read")).unwrap_or_default();
            facts.push(format!("new version of {x}{read}"));
        }
        if let Some(e) = &row.error {
            facts.push(format!("error: {e}"));
        }
        for (i, input) in row.inputs.iter().enumerate() {
            let lag = row.input_lags.get(i).map(|l| format!("lag {l}"));
            g.edges.push((format!("data {input}"), id.clone(), lag));
        }
        if prefix != "push" && !row.output.is_empty() {
            g.edges.push((id.clone(), format!("data {}", row.output), None));
        }
        let what = Some(row.kind.to_string()).filter(|k| *k != kind);
        g.nodes.insert(id, Node { kind, name: row.name, what, facts });
    }
    g.edges.retain(|(a, b, _)| g.nodes.contains_key(a) && g.nodes.contains_key(b));
    g.edges.sort();
    g.edges.dedup();
    g
}

impl Graph {
    /// What feeds the nodes named `name` and what they feed (`None`: no such node).
    fn around(self, name: &str) -> Option<Graph> {
        let start: Vec<String> =
            self.nodes.iter().filter(|(_, n)| n.name == name).map(|(id, _)| id.clone()).collect();
        if start.is_empty() {
            return None;
        }
        let mut keep: BTreeSet<String> = start.iter().cloned().collect();
        for forward in [true, false] {
            let mut todo = start.clone();
            while let Some(id) = todo.pop() {
                for (a, b, _) in &self.edges {
                    let (from, to) = if forward { (a, b) } else { (b, a) };
                    if *from == id && keep.insert(to.clone()) {
                        todo.push(to.clone());
                    }
                }
            }
        }
        let mut g = self;
        g.nodes.retain(|id, _| keep.contains(id));
        g.edges.retain(|(a, b, _)| keep.contains(a) && keep.contains(b));
        Some(g)
    }

    fn summary(&self) -> String {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for n in self.nodes.values() {
            *counts.entry(n.kind).or_default() += 1;
        }
        let parts: Vec<String> = counts
            .iter()
            .map(|(k, n)| {
                let plural = match (*k, *n) {
                    (_, 1) => k.to_string(),
                    ("push query", _) => "push queries".into(),
                    _ => format!("{k}s"),
                };
                format!("{n} {plural}")
            })
            .collect();
        format!("dataflow: {}", if parts.is_empty() { "empty".into() } else { parts.join(", ") })
    }

    fn text(&self) -> Vec<String> {
        let mut lines = vec![self.summary()];
        let fed: BTreeSet<&String> = self.edges.iter().map(|e| &e.1).collect();
        let mut seen = BTreeSet::new();
        for id in self.nodes.keys().filter(|id| !fed.contains(id)) {
            self.tree(id, None, 0, &mut seen, &mut lines);
        }
        lines
    }

    fn tree(
        &self,
        id: &str,
        label: Option<&str>,
        depth: usize,
        seen: &mut BTreeSet<String>,
        lines: &mut Vec<String>,
    ) {
        let Some(n) = self.nodes.get(id) else { return };
        let pad = "  ".repeat(depth);
        let arrow = match (depth, label) {
            (0, _) => String::new(),
            (_, Some(l)) => format!("-> ({l}) "),
            (_, None) => "-> ".to_string(),
        };
        if !seen.insert(id.to_string()) {
            lines.push(format!("{pad}{arrow}{} (above)", n.title()));
            return;
        }
        let facts =
            if n.facts.is_empty() { String::new() } else { format!(": {}", n.facts.join(", ")) };
        lines.push(format!("{pad}{arrow}{}{facts}", n.title()));
        for (_, to, l) in self.edges.iter().filter(|e| e.0 == id) {
            self.tree(to, l.as_deref(), depth + 1, seen, lines);
        }
    }

    fn dot(&self) -> Vec<String> {
        let quote = |s: &str| {
            let s = s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
            format!("\"{s}\"")
        };
        let mut lines = vec![
            "digraph dataflow {".to_string(),
            "  rankdir=LR;".to_string(),
            "  node [fontname=\"Helvetica\", fontsize=10];".to_string(),
            "  edge [fontname=\"Helvetica\", fontsize=9];".to_string(),
        ];
        for (id, n) in &self.nodes {
            let shape = match n.kind {
                "stream" => "shape=cylinder",
                "view" => "shape=box3d",
                "table" => "shape=folder",
                "source" => "shape=invhouse",
                "push query" => "shape=oval, style=dashed",
                _ => "shape=box, style=rounded",
            };
            let mut label = vec![n.title()];
            label.extend(n.facts.iter().cloned());
            lines.push(format!("  {} [{shape}, label={}];", quote(id), quote(&label.join("\n"))));
        }
        for (a, b, l) in &self.edges {
            let label = l.as_ref().map(|l| format!(" [label={}]", quote(l))).unwrap_or_default();
            lines.push(format!("  {} -> {}{label};", quote(a), quote(b)));
        }
        lines.push("}".to_string());
        lines
    }
}

/// `SHOW DATAFLOW` (`name` `None`) or `EXPLAIN DATAFLOW name`, as text or DOT.
///
/// # Errors
/// When `name` is no stream, view, table, job or push query.
pub(crate) fn show(
    engine: &Engine,
    name: Option<&str>,
    dot: bool,
    at: Option<Location>,
) -> Result<Output> {
    let mut g = build(engine);
    if let Some(name) = name {
        g = g.around(name).ok_or_else(|| {
            Error::plan(format!("no stream, view, table or job is named '{name}'"), at)
        })?;
    }
    lines("dataflow", if dot { g.dot() } else { g.text() })
}

/// Lines of text in one column `column`, which clients print as they are ([`LINES`]).
///
/// # Errors
/// Never in practice (one string column).
pub(crate) fn lines(column: &str, lines: Vec<String>) -> Result<Output> {
    let metadata = [(LINES.0.to_string(), LINES.1.to_string())].into_iter().collect();
    let schema = Arc::new(Schema::new_with_metadata(
        vec![Field::new(column, DataType::Utf8, false)],
        metadata,
    ));
    let batch =
        RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(StringArray::from(lines))])?;
    Ok(Output::Rows { schema, batches: vec![batch] })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(kind: &'static str, name: &str, facts: &[&str]) -> Node {
        let facts = facts.iter().map(|f| f.to_string()).collect();
        Node { kind, name: name.to_string(), what: None, facts }
    }

    /// s -> job d -> d -> push 1; s -> job v -> v; t -> job v (a join).
    fn graph() -> Graph {
        let mut g = Graph::default();
        for (id, n) in [
            ("data s", node("stream", "s", &["10 rows"])),
            ("data t", node("stream", "t", &[])),
            ("job d", node("job", "d", &["running"])),
            ("data d", node("stream", "d", &["5 rows"])),
            ("push push-1", node("push query", "push-1", &["lag 0 rows"])),
            ("job v", node("job", "v", &["running"])),
            ("data v", node("view", "v", &["2 rows"])),
        ] {
            g.nodes.insert(id.to_string(), n);
        }
        for (a, b, l) in [
            ("data s", "job d", Some("lag 0")),
            ("job d", "data d", None),
            ("data d", "push push-1", None),
            ("data s", "job v", None),
            ("data t", "job v", None),
            ("job v", "data v", None),
        ] {
            g.edges.push((a.to_string(), b.to_string(), l.map(str::to_string)));
        }
        g.edges.sort();
        g
    }

    #[test]
    fn text_is_a_tree_from_what_nothing_feeds() {
        assert_eq!(
            graph().text(),
            [
                "dataflow: 2 jobs, 1 push query, 3 streams, 1 view",
                "stream s: 10 rows",
                "  -> (lag 0) job d: running",
                "    -> stream d: 5 rows",
                "      -> push query push-1: lag 0 rows",
                "  -> job v: running",
                "    -> view v: 2 rows",
                "stream t",
                "  -> job v (above)",
            ]
        );
    }

    #[test]
    fn explain_keeps_what_feeds_it_and_what_it_feeds() {
        let g = graph().around("v").unwrap();
        let ids: Vec<&String> = g.nodes.keys().collect();
        assert_eq!(ids, ["data s", "data t", "data v", "job v"]);
        let g = graph().around("d").unwrap();
        let ids: Vec<&String> = g.nodes.keys().collect();
        assert_eq!(ids, ["data d", "data s", "job d", "push push-1"]);
        assert!(graph().around("nothing").is_none());
    }

    #[test]
    fn dot_quotes_labels() {
        let mut g = graph();
        g.nodes.get_mut("data s").unwrap().facts.push("say \"hi\"".into());
        let dot = g.dot();
        assert_eq!(dot.first().map(String::as_str), Some("digraph dataflow {"));
        assert_eq!(dot.last().map(String::as_str), Some("}"));
        assert!(
            dot.contains(
                &r#"  "data s" [shape=cylinder, label="stream s\n10 rows\nsay \"hi\""];"#
                    .to_string()
            ),
            "{dot:?}"
        );
        assert!(dot.contains(&r#"  "data s" -> "job d" [label="lag 0"];"#.to_string()));
    }
}
