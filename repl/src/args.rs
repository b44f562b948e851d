//! Command-line arguments (parsed by hand: `-f` and `-c` run in the order they are given).

use std::path::PathBuf;

use crate::print::Format;

/// A source of statements named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// `-f FILE`.
    File(PathBuf),
    /// `-c SQL`.
    Command(String),
}

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub data_dir: PathBuf,
    /// `-f` and `-c`, in order; empty: the shell, or stdin when it is not a terminal.
    pub inputs: Vec<Input>,
    pub format: Option<Format>,
    pub quiet: bool,
    pub bail: bool,
}

/// The outcome of parsing.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Run(Args),
    Help,
    Version,
}

pub const USAGE: &str = "\
kappa: a streaming SQL engine on a durable log

Usage: kappa [OPTIONS]
       kappa bench nexmark [--queries q0,q1,...] [--events N] [--rate R] [--baseline]

With no -f or -c, kappa opens the interactive shell (or reads SQL from stdin when it is not a
terminal). Statements given with -f and -c run in order; then kappa waits until every job has
caught up with its input, and exits.

Options:
  -d, --data-dir DIR     the data directory [env: KAPPA_DATA_DIR] [default: ./kappa-data]
  -f, --file FILE        run the statements of FILE (repeatable)
  -c, --command SQL      run SQL (repeatable)
      --format FORMAT    table, csv, tsv, json or ndjson
                         [default: table on a terminal; csv, and ndjson for push queries, otherwise]
  -q, --quiet            print only results (no command tags, timings or notices)
      --bail             stop at the first failing statement (exit code 3)
  -h, --help             print this help
  -V, --version          print the version

Exit codes: 0 every statement succeeded; 1 at least one failed; 2 usage or I/O error;
3 stopped by --bail; 130 interrupted.
";

/// Parse the arguments (without the program name). `env_data_dir` is `KAPPA_DATA_DIR`.
///
/// # Errors
/// A message naming the bad argument.
pub fn parse(
    args: impl IntoIterator<Item = String>,
    env_data_dir: Option<String>,
) -> Result<Parsed, String> {
    let mut out = Args {
        data_dir: env_data_dir.map_or_else(|| PathBuf::from("kappa-data"), PathBuf::from),
        inputs: Vec::new(),
        format: None,
        quiet: false,
        bail: false,
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        // `--name=value` and `--name value` alike.
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |what: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs {what} (see kappa --help)"))
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "-V" | "--version" => return Ok(Parsed::Version),
            "-q" | "--quiet" => out.quiet = true,
            "--bail" => out.bail = true,
            "-d" | "--data-dir" => out.data_dir = PathBuf::from(value("a directory")?),
            "-f" | "--file" => out.inputs.push(Input::File(PathBuf::from(value("a file")?))),
            "-c" | "--command" => out.inputs.push(Input::Command(value("SQL")?)),
            "--format" => {
                let v = value("a format")?;
                out.format = Some(v.parse().map_err(|e| format!("--format: {e}"))?);
            }
            other => {
                return Err(format!("unknown argument '{other}' (see kappa --help)"));
            }
        }
    }
    Ok(Parsed::Run(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Parsed, String> {
        parse(args.iter().map(|s| s.to_string()), None)
    }

    #[test]
    fn files_and_commands_keep_their_order() {
        let Ok(Parsed::Run(a)) =
            run(&["-c", "SELECT 1", "--file=a.sql", "-f", "b.sql", "--command", "SELECT 2"])
        else {
            panic!()
        };
        assert_eq!(
            a.inputs,
            vec![
                Input::Command("SELECT 1".into()),
                Input::File("a.sql".into()),
                Input::File("b.sql".into()),
                Input::Command("SELECT 2".into()),
            ]
        );
    }

    #[test]
    fn options_and_errors() {
        let Ok(Parsed::Run(a)) = run(&["--format", "json", "-q", "--bail", "-d", "/tmp/x"]) else {
            panic!()
        };
        assert_eq!((a.format, a.quiet, a.bail), (Some(Format::Json), true, true));
        assert_eq!(a.data_dir, PathBuf::from("/tmp/x"));
        assert!(run(&["--format", "xml"]).unwrap_err().contains("xml"));
        assert!(run(&["-f"]).unwrap_err().contains("-f needs a file"));
        assert!(run(&["--frobnicate"]).unwrap_err().contains("--frobnicate"));
        assert_eq!(run(&["-V"]), Ok(Parsed::Version));
        let Ok(Parsed::Run(a)) = parse(Vec::new(), Some("/data".into())) else { panic!() };
        assert_eq!(a.data_dir, PathBuf::from("/data"));
    }
}
