//! One config file for all three tools, and an `AZW_` variable for every
//! flag, with no code per flag: both are derived from clap's definitions,
//! so a flag added later is a config key and a variable at once.
//!
//! - **Where.** `--config FILE`, else `$AZW_CONFIG` (empty: no file), else
//!   `/etc/autozeekwatch/azw.toml` when it exists.
//! - **Keys.** A key is a flag's long name (`model-dir`; `model_dir` is
//!   read the same). Top-level keys are shared: each tool takes those that
//!   are its flags. `[azw-train]`, `[azw-infer]` and `[azw-eval]` hold
//!   keys for one tool and win over the shared ones. A key that is no
//!   tool's flag, or not this table's tool's, is refused with its file and
//!   line, so a typo never passes silently.
//! - **Values.** Strings, numbers, dates, `true`/`false` for switches,
//!   arrays for flags that take several values.
//! - **Precedence.** flag > `AZW_` variable > file > default. A file's
//!   value for a flag that conflicts with one given on the command line or
//!   in the environment (`log-dir` in the file, `--replay` given) is left
//!   out.
//! - `--print-config` prints the effective settings as a config file, each
//!   with where it came from; `--generate man|bash|zsh|fish|...`
//!   prints the man page or a shell's completions.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command, CommandFactory};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// The system-wide config file, read when present.
pub const DEFAULT_PATH: &str = "/etc/autozeekwatch/azw.toml";

/// The tools that read the file, each with its own table.
pub const TOOLS: [&str; 3] = ["azw-train", "azw-infer", "azw-eval"];

/// The arguments every tool has beyond its own flags; none is a config key.
const OWN: [&str; 3] = ["config", "print_config", "generate"];

/// What `--generate` makes.
const GENERATE: [&str; 6] = ["man", "bash", "zsh", "fish", "elvish", "powershell"];

/// A tool's full command line: its flags, each with its `AZW_` twin, and
/// `--config`, `--print-config` and `--generate`.
pub fn command<T: CommandFactory>(tool: &'static str) -> Command {
    let cmd = T::command()
        .name(tool)
        .bin_name(tool)
        .arg(
            Arg::new("config")
                .long("config")
                .value_name("FILE")
                .env("AZW_CONFIG")
                .help(format!(
                    "The config file (TOML; every flag is a key, shared at the top or in an [{tool}] table). Default: {DEFAULT_PATH} when it exists; AZW_CONFIG=\"\" reads none"
                )),
        )
        .arg(
            Arg::new("print_config")
                .long("print-config")
                .action(ArgAction::SetTrue)
                .help("Print the effective settings (flag > AZW_ variable > config file > default), each with where it came from, as a config file, and stop"),
        )
        .arg(
            Arg::new("generate")
                .long("generate")
                .value_name("WHAT")
                .value_parser(GENERATE)
                .help("Print the man page or a shell's completions and stop"),
        );
    cmd.mut_args(|arg| {
        let Some(long) = arg.get_long() else {
            return arg;
        };
        if arg.get_env().is_some() || OWN.contains(&arg.get_id().as_str()) {
            return arg;
        }
        let name = env_name(long);
        arg.env(&*Box::leak(name.into_boxed_str()))
    })
}

/// The variable of a flag: `--poll-ms` is `AZW_POLL_MS`.
pub fn env_name(long: &str) -> String {
    format!("AZW_{}", long.to_ascii_uppercase().replace('-', "_"))
}

/// Parses the command line of `tool`, with the environment and the config
/// file; prints an error (naming the file and line where it is the file's)
/// and exits on a bad one. `--print-config` and `--generate` print and
/// exit.
pub fn parse<T: clap::Parser>(tool: &'static str) -> T {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let cmd = command::<T>(tool);
    if let Some(what) = scan(&argv, "--generate") {
        let what = what.to_string_lossy().into_owned();
        match generate(cmd, tool, &what) {
            Ok(()) => std::process::exit(0),
            Err(e) => die(&e),
        }
    }
    let file = match locate(&argv) {
        Ok(Some(path)) => match ConfigFile::read(&path) {
            Ok(file) => Some(file),
            Err(e) => die(&e),
        },
        Ok(None) => None,
        Err(e) => die(&e),
    };
    if let Some(file) = &file {
        if let Err(e) = file.check(&super::args::all()) {
            die(&e);
        }
    }
    let (argv, from_file) = match &file {
        Some(file) => with_file(&cmd, tool, argv, file),
        None => (argv, BTreeMap::new()),
    };
    let matches = match cmd.clone().try_get_matches_from(&argv) {
        Ok(m) => m,
        Err(e) => {
            let e = e.with_cmd(&cmd);
            if !matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                if let (Some(file), Some(line)) = (&file, failing_line(&e, &cmd, &from_file)) {
                    let _ = e.print();
                    super::errln!(
                        "note: the value comes from {} line {line}",
                        file.path.display()
                    );
                    std::process::exit(EXIT_USAGE);
                }
            }
            exit_on(e)
        }
    };
    if matches.get_flag("print_config") {
        let text = print_config(&cmd, tool, &matches, &from_file, file.as_ref());
        let _ = std::io::stdout().lock().write_all(text.as_bytes());
        std::process::exit(0);
    }
    T::from_arg_matches(&matches).unwrap_or_else(|e| exit_on(e.with_cmd(&cmd)))
}

/// The exit code of a bad command line or config file: a failure, as the
/// README's codes say, not clap's 2, which is ours for "done, but some
/// inputs could not be read" (the systemd unit's training step accepts
/// it, so a typo in the config file passed it and trained nothing).
const EXIT_USAGE: i32 = 1;

/// Prints clap's message and exits: 0 for `--help` and `--version`,
/// [`EXIT_USAGE`] for an error.
fn exit_on(e: clap::Error) -> ! {
    let _ = e.print();
    std::process::exit(if e.use_stderr() { EXIT_USAGE } else { 0 })
}

fn die(message: &str) -> ! {
    super::errln!("error: {}", autozeekwatch::escape::terminal(message));
    std::process::exit(EXIT_USAGE)
}

/// The value of `--flag VALUE` or `--flag=VALUE` on the command line
/// (before a `--`).
fn scan(argv: &[OsString], flag: &str) -> Option<OsString> {
    let mut args = argv.iter().skip(1);
    while let Some(a) = args.next() {
        if a == "--" {
            return None;
        }
        if a == flag {
            return args.next().cloned();
        }
        if let Some(value) = a
            .to_str()
            .and_then(|s| s.strip_prefix(flag))
            .and_then(|s| s.strip_prefix('='))
        {
            return Some(value.into());
        }
    }
    None
}

/// Which config file to read, if any.
fn locate(argv: &[OsString]) -> Result<Option<PathBuf>, String> {
    if let Some(path) = scan(argv, "--config") {
        return Ok((!path.is_empty()).then(|| path.into()));
    }
    if let Some(path) = std::env::var_os("AZW_CONFIG") {
        return Ok((!path.is_empty()).then(|| path.into()));
    }
    let default = Path::new(DEFAULT_PATH);
    Ok(default.exists().then(|| default.to_owned()))
}

/// One setting of the file.
#[derive(Debug, Clone)]
struct Entry {
    /// The tool's table it is in; `None` at the top (shared).
    table: Option<String>,
    /// The flag's long name.
    key: String,
    line: usize,
    value: Value,
}

#[derive(Debug, Clone)]
enum Value {
    Switch(bool),
    /// Values as the command line would give them.
    Text(Vec<String>),
}

/// The largest config file read: a page of settings is a few kilobytes.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// A parsed config file.
#[derive(Debug)]
pub struct ConfigFile {
    path: PathBuf,
    entries: Vec<Entry>,
}

impl ConfigFile {
    /// Read as every file given to us is ([`autozeekwatch::safe_fs`]): a
    /// FIFO given as `--config` blocked all three programs for good (not
    /// even SIGTERM ended it), `/dev/zero` was read until the memory ran
    /// out, and a 4 GiB file aborted the process.
    fn read(path: &Path) -> Result<ConfigFile, String> {
        let bytes = autozeekwatch::safe_fs::read_capped(path, MAX_CONFIG_BYTES)
            .map_err(|e| format!("config file {}: {e}", path.display()))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            format!(
                "config file {}: not UTF-8 text (at byte {})",
                path.display(),
                e.utf8_error().valid_up_to()
            )
        })?;
        ConfigFile::parse(path, &text)
    }

    fn parse(path: &Path, text: &str) -> Result<ConfigFile, String> {
        let at = |span: std::ops::Range<usize>| {
            format!(
                "{} line {}",
                path.display(),
                text[..span.start.min(text.len())].matches('\n').count() + 1
            )
        };
        let table = DeTable::parse(text).map_err(|e| {
            let place = e.span().map_or(path.display().to_string(), at);
            format!("{place}: not valid TOML: {}", e.message())
        })?;
        let mut entries = Vec::new();
        for (key, value) in table.get_ref() {
            let name = normalise(key.get_ref());
            match value.get_ref() {
                DeValue::Table(inner) => {
                    if !TOOLS.contains(&name.as_str()) {
                        return Err(format!(
                            "{}: unknown table [{}]; the tables are [azw-train], [azw-infer] and [azw-eval] (shared keys go at the top)",
                            at(key.span()),
                            key.get_ref()
                        ));
                    }
                    for (k, v) in inner {
                        entries.push(entry(Some(name.clone()), k, v, &at)?);
                    }
                }
                _ => entries.push(entry(None, key, value, &at)?),
            }
        }
        Ok(ConfigFile {
            path: path.to_owned(),
            entries,
        })
    }

    /// Refuses keys that are no tool's flag (at the top) or not the
    /// table's tool's, and switches given other than true/false.
    fn check(&self, tools: &[(&str, Command)]) -> Result<(), String> {
        for e in &self.entries {
            let place = format!("{} line {}", self.path.display(), e.line);
            let arg = match &e.table {
                Some(table) => {
                    let (_, cmd) = tools
                        .iter()
                        .find(|(t, _)| t == table)
                        .expect("tables are checked on reading");
                    let arg = flag(cmd, &e.key);
                    if arg.is_none() {
                        return Err(format!(
                            "{place}: unknown key `{}` in [{table}]: not a flag of {table} (its flags: {table} --help)",
                            e.key
                        ));
                    }
                    arg
                }
                None => {
                    let arg = tools.iter().find_map(|(_, cmd)| flag(cmd, &e.key));
                    if arg.is_none() {
                        return Err(format!(
                            "{place}: unknown key `{}`: not a flag of azw-train, azw-infer or azw-eval (their flags: --help)",
                            e.key
                        ));
                    }
                    arg
                }
            };
            let arg = arg.expect("checked above");
            if is_switch(arg) && !matches!(e.value, Value::Switch(_)) {
                return Err(format!(
                    "{place}: `{}` is a switch: write `{} = true` or `false`",
                    e.key, e.key
                ));
            }
        }
        Ok(())
    }
}

fn entry(
    table: Option<String>,
    key: &Spanned<toml::de::DeString<'_>>,
    value: &Spanned<DeValue<'_>>,
    at: &dyn Fn(std::ops::Range<usize>) -> String,
) -> Result<Entry, String> {
    let place = at(key.span());
    let name = normalise(key.get_ref());
    let line = place
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let value = match value.get_ref() {
        DeValue::Boolean(b) => Value::Switch(*b),
        DeValue::Array(items) => Value::Text(
            items
                .iter()
                .map(|v| scalar(v.get_ref()))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    format!("{place}: `{name}`: an array holds strings, numbers or dates only")
                })?,
        ),
        other => Value::Text(vec![scalar(other).ok_or_else(|| {
            format!("{place}: `{name}`: a table is no flag's value (the tables are [azw-train], [azw-infer] and [azw-eval], at the top level)")
        })?]),
    };
    Ok(Entry {
        table,
        key: name,
        line,
        value,
    })
}

/// A key as a flag's long name.
fn normalise(key: &str) -> String {
    key.replace('_', "-")
}

/// A scalar as the command line would write it.
fn scalar(value: &DeValue<'_>) -> Option<String> {
    Some(match value {
        DeValue::String(s) => s.to_string(),
        DeValue::Integer(i) => i128::from_str_radix(i.as_str(), i.radix())
            .map_or_else(|_| i.to_string(), |n| n.to_string()),
        DeValue::Float(f) => f.as_str().to_owned(),
        DeValue::Boolean(b) => b.to_string(),
        DeValue::Datetime(d) => d.to_string(),
        DeValue::Array(_) | DeValue::Table(_) => return None,
    })
}

/// The flag of `cmd` with this long name (not one of [`OWN`]).
fn flag<'a>(cmd: &'a Command, long: &str) -> Option<&'a Arg> {
    cmd.get_arguments().find(|a| {
        a.get_long() == Some(long) && !OWN.contains(&a.get_id().as_str()) && !a.is_hide_set()
    })
}

fn is_switch(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse)
}

/// The command line with the file's settings added for the flags neither
/// the command line nor the environment set; and the line each came from.
fn with_file(
    cmd: &Command,
    tool: &str,
    argv: Vec<OsString>,
    file: &ConfigFile,
) -> (Vec<OsString>, BTreeMap<String, usize>) {
    // Which flags the command line and the environment set. (Errors such
    // as a missing required flag are ignored here: the file may supply it.)
    let Ok(given) = cmd.clone().ignore_errors(true).try_get_matches_from(&argv) else {
        return (argv, BTreeMap::new());
    };
    let mut built = cmd.clone();
    built.build();
    let explicit: Vec<&Arg> = built
        .get_arguments()
        .filter(|a| {
            matches!(
                given.value_source(a.get_id().as_str()),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            )
        })
        .collect();
    // The tool's table wins over the shared keys.
    let mut chosen: BTreeMap<String, &Entry> = BTreeMap::new();
    for e in file.entries.iter().filter(|e| e.table.is_none()) {
        chosen.insert(e.key.clone(), e);
    }
    for e in file
        .entries
        .iter()
        .filter(|e| e.table.as_deref() == Some(tool))
    {
        chosen.insert(e.key.clone(), e);
    }
    let mut added = Vec::new();
    let mut from_file = BTreeMap::new();
    for (key, e) in chosen {
        let Some(arg) = flag(&built, &key) else {
            continue; // another tool's shared key
        };
        let conflicts = |a: &Arg, b: &Arg| {
            built
                .get_arg_conflicts_with(a)
                .iter()
                .any(|c| c.get_id() == b.get_id())
        };
        if explicit
            .iter()
            .any(|x| x.get_id() == arg.get_id() || conflicts(x, arg) || conflicts(arg, x))
        {
            continue;
        }
        match (&e.value, arg.get_action()) {
            (Value::Switch(on), ArgAction::SetTrue) if *on => added.push(format!("--{key}")),
            (Value::Switch(on), ArgAction::SetFalse) if !*on => added.push(format!("--{key}")),
            (Value::Switch(_), _) => {}
            (Value::Text(values), _) => {
                // `--key=value`: each value complete in itself, whatever
                // follows it.
                added.extend(values.iter().map(|v| format!("--{key}={v}")));
            }
        }
        from_file.insert(arg.get_id().to_string(), e.line);
    }
    let mut out = Vec::with_capacity(argv.len() + added.len());
    let mut argv = argv.into_iter();
    out.extend(argv.next());
    out.extend(added.into_iter().map(OsString::from));
    out.extend(argv);
    (out, from_file)
}

/// The config line of the value clap refused, if it came from the file.
fn failing_line(
    e: &clap::Error,
    cmd: &Command,
    from_file: &BTreeMap<String, usize>,
) -> Option<usize> {
    let Some(ContextValue::String(shown)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    let long = shown.strip_prefix("--")?.split([' ', '=']).next()?;
    let arg = cmd.get_arguments().find(|a| a.get_long() == Some(long))?;
    from_file.get(arg.get_id().as_str()).copied()
}

/// The effective settings as a config file.
fn print_config(
    cmd: &Command,
    tool: &str,
    matches: &ArgMatches,
    from_file: &BTreeMap<String, usize>,
    file: Option<&ConfigFile>,
) -> String {
    let mut out = format!(
        "# {tool}'s effective settings (flag > AZW_ variable > config file > default)\n# config file: {}\n[{tool}]\n",
        file.map_or("none".to_owned(), |f| f.path.display().to_string())
    );
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        let Some(long) = arg.get_long() else { continue };
        if OWN.contains(&id) || arg.is_hide_set() {
            continue;
        }
        let source = match (from_file.get(id), matches.value_source(id)) {
            (Some(line), _) => format!("config file line {line}"),
            (None, Some(ValueSource::CommandLine)) => "command line".into(),
            (None, Some(ValueSource::EnvVariable)) => {
                format!("{}", arg.get_env().unwrap_or(OsStr::new("env")).display())
            }
            (None, Some(ValueSource::DefaultValue)) => "default".into(),
            _ => "unset".into(),
        };
        let value = if is_switch(arg) {
            Some(toml::Value::Boolean(matches.get_flag(id)))
        } else {
            matches.get_raw(id).map(|raw| {
                let values: Vec<toml::Value> = raw.map(|v| typed(&v.to_string_lossy())).collect();
                if matches!(arg.get_action(), ArgAction::Append) {
                    toml::Value::Array(values)
                } else {
                    values
                        .into_iter()
                        .next()
                        .unwrap_or(toml::Value::String(String::new()))
                }
            })
        };
        match value {
            Some(v) => out.push_str(&format!("{long} = {v}  # {source}\n")),
            None => out.push_str(&format!("# {long} = (not set)\n")),
        }
    }
    out
}

/// A value as TOML: a number as a number, anything else as a string.
fn typed(text: &str) -> toml::Value {
    if let Ok(n) = text.parse::<i64>() {
        return toml::Value::Integer(n);
    }
    match text.parse::<f64>() {
        Ok(f) if f.is_finite() && text.contains('.') => toml::Value::Float(f),
        _ => toml::Value::String(text.to_owned()),
    }
}

/// Prints the man page or a shell's completions. They are made in memory
/// first, then written: a reader that goes away (`| head`) ends the run
/// quietly instead of failing the writer mid-way.
fn generate(mut cmd: Command, tool: &str, what: &str) -> Result<(), String> {
    use clap_complete::Shell;
    use std::io::Write as _;
    let mut text = Vec::new();
    let shell = match what {
        "man" => None,
        "bash" => Some(Shell::Bash),
        "zsh" => Some(Shell::Zsh),
        "fish" => Some(Shell::Fish),
        "elvish" => Some(Shell::Elvish),
        "powershell" => Some(Shell::PowerShell),
        other => {
            return Err(format!(
                "--generate {other}: choose one of {}",
                GENERATE.join(", ")
            ))
        }
    };
    match shell {
        None => clap_mangen::Man::new(cmd)
            .render(&mut text)
            .map_err(|e| format!("cannot make the man page: {e}"))?,
        Some(shell) => clap_complete::generate(shell, &mut cmd, tool, &mut text),
    }
    match std::io::stdout().lock().write_all(&text) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(format!("cannot write the {what} output: {e}"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_read_with_their_lines() {
        let text = "modules = [\"CONN\", \"DNS\"]\n\n[azw-infer]\npoll_ms = 100\nquiet = true\nstart-date = 2024-04-20\n";
        let mut f = ConfigFile::parse(Path::new("azw.toml"), text).unwrap();
        f.entries.sort_by_key(|e| e.line);
        let shown: Vec<String> = f
            .entries
            .iter()
            .map(|e| format!("{:?} {} {} {:?}", e.table, e.key, e.line, e.value))
            .collect();
        assert_eq!(
            shown,
            [
                "None modules 1 Text([\"CONN\", \"DNS\"])",
                "Some(\"azw-infer\") poll-ms 4 Text([\"100\"])",
                "Some(\"azw-infer\") quiet 5 Switch(true)",
                "Some(\"azw-infer\") start-date 6 Text([\"2024-04-20\"])",
            ]
        );
    }

    #[test]
    fn an_unknown_table_is_refused_with_its_line() {
        let e = ConfigFile::parse(Path::new("x.toml"), "a = 1\n[azw-infr]\nb = 2\n").unwrap_err();
        assert!(
            e.contains("x.toml line 2") && e.contains("[azw-infr]"),
            "{e}"
        );
    }

    #[test]
    fn env_names_follow_the_long_names() {
        assert_eq!(env_name("poll-ms"), "AZW_POLL_MS");
        assert_eq!(env_name("only-anomalies"), "AZW_ONLY_ANOMALIES");
    }
}
