//! The examples at the end of every command's `--help`.
//!
//! Kept in one table and added to the clap definitions when the command is built (rather than
//! in each subcommand's `after_help`, which holds its exit codes) so that one test can see
//! that no command lacks examples and that every example parses. Completions and man pages
//! are generated from the same [`command`].

use clap::{Command, CommandFactory};

use crate::cli::Cli;

/// `(command path, [(what it does, the command)])`: one `pgsteady ...` line per example, no
/// line continuations or shell syntax other than a trailing `> FILE` or `| CMD` (the tests
/// parse every example).
type Examples = &'static [(&'static str, &'static str)];

const EXAMPLES: &[(&str, Examples)] = &[
    (
        "",
        &[
            (
                "Wait until the database accepts this application, then exec the server",
                "pgsteady wait postgresql://app@db:5432/app --timeout 60s -- ./start.sh",
            ),
            (
                "Name the first broken layer between this process and the database",
                "pgsteady doctor",
            ),
            (
                "Start a throwaway cluster, break it on purpose, show what a client saw",
                "pgsteady drill",
            ),
        ],
    ),
    (
        "wait",
        &[
            (
                "Wait up to 60 s (the default), then exec the command after --",
                "pgsteady wait postgresql://app@db:5432/app -- ./start.sh",
            ),
            (
                "Target from DATABASE_URL / PG* variables; keep waiting through a wrong password",
                "pgsteady wait --timeout 5m --retry-on auth,missing-db",
            ),
            (
                "In a script: one JSON object per event, then the exit code",
                "pgsteady wait \"host=db user=app dbname=app\" --timeout 30s --json",
            ),
        ],
    ),
    (
        "check",
        &[
            (
                "One bounded probe, for a health check or a script",
                "pgsteady check postgresql://app@db:5432/app --timeout 5s",
            ),
            (
                "Ready means this query returns a row that is not false",
                "pgsteady check --query \"SELECT NOT pg_is_in_recovery()\" --quiet",
            ),
        ],
    ),
    (
        "doctor",
        &[
            (
                "Walk config, DNS, TCP, TLS, authentication, ... and name the first broken layer",
                "pgsteady doctor postgresql://app@localhost:5432/app",
            ),
            (
                "The same, as JSON, with a longer bound per layer",
                "pgsteady doctor --json --timeout 10s",
            ),
        ],
    ),
    (
        "migrate",
        &[
            (
                "Wait for the database, then apply what is pending in ./migrations",
                "pgsteady migrate postgresql://app@db:5432/app --dir migrations",
            ),
            (
                "List what would run and apply nothing",
                "pgsteady migrate --dir migrations --dry-run",
            ),
        ],
    ),
    (
        "migrate status",
        &[(
            "Applied / pending / modified / missing, compared with the files",
            "pgsteady migrate status --dir migrations",
        )],
    ),
    (
        "migrate repair",
        &[(
            "Show what an explicit repair would record, without changing anything",
            "pgsteady migrate repair --dir migrations --dry-run",
        )],
    ),
    (
        "serve",
        &[
            (
                "A readiness sidecar: /livez, /readyz and /metrics on port 8080",
                "pgsteady serve postgresql://app@db:5432/app --listen 0.0.0.0:8080",
            ),
            (
                "Keep /readyz at 200 through restarts shorter than 5 s",
                "pgsteady serve --listen 0.0.0.0:8080 --grace 5s",
            ),
        ],
    ),
    (
        "run",
        &[
            (
                "Wait, migrate, then run the server with signals forwarded",
                "pgsteady run postgresql://app@db:5432/app --migrate migrations -- ./my-server --port 3000",
            ),
            (
                "The same, serving /livez /readyz /metrics meanwhile",
                "pgsteady run --health-listen 0.0.0.0:8080 -- ./my-server",
            ),
        ],
    ),
    (
        "slot",
        &[
            (
                "Can the CDC consumer resume from its stored offset on slot debezium?",
                "pgsteady slot debezium postgresql://app@db:5432/app --offset 16/B374D848",
            ),
            (
                "Every slot, a table; warnings (inactive, ...) exit 8 with --strict",
                "pgsteady slot --all --strict",
            ),
        ],
    ),
    (
        "drill",
        &[
            ("Every fault, ~30 s, the table", "pgsteady drill"),
            (
                "Two faults and a timeline chart",
                "pgsteady drill --faults crash,silent-drop --report drill.html",
            ),
            (
                "200 pools reconnecting after one restart",
                "pgsteady drill --herd 200",
            ),
        ],
    ),
    (
        "completions",
        &[
            (
                "Bash, for the current user",
                "pgsteady completions bash > ~/.local/share/bash-completion/completions/pgsteady",
            ),
            (
                "Zsh: a directory on $fpath",
                "pgsteady completions zsh > ~/.zfunc/_pgsteady",
            ),
            (
                "Fish",
                "pgsteady completions fish > ~/.config/fish/completions/pgsteady.fish",
            ),
        ],
    ),
    (
        "man",
        &[
            (
                "Read the main page without installing it",
                "pgsteady man | man -l -",
            ),
            (
                "Write pgsteady.1 and one page per command",
                "pgsteady man --out ~/.local/share/man/man1",
            ),
        ],
    ),
];

/// The whole command line definition, with the examples added.
pub(crate) fn command() -> Command {
    with_examples(Cli::command(), "")
}

fn with_examples(mut cmd: Command, path: &str) -> Command {
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|sub| sub.get_name().to_owned())
        .collect();
    for name in names {
        let sub_path = if path.is_empty() {
            name.clone()
        } else {
            format!("{path} {name}")
        };
        cmd = cmd.mut_subcommand(&name, |sub| with_examples(sub, &sub_path));
    }
    let Some(examples) = examples(path) else {
        return cmd;
    };
    let after = match cmd.get_after_help() {
        Some(existing) => format!("{existing}\n\nExamples:\n{examples}"),
        None => format!("Examples:\n{examples}"),
    };
    cmd.after_help(after)
}

/// The examples of `path` as help text: a `# comment` line, then the command, indented.
fn examples(path: &str) -> Option<String> {
    let (_, examples) = EXAMPLES.iter().find(|(p, _)| *p == path)?;
    let lines: Vec<String> = examples
        .iter()
        .map(|(what, example)| format!("  # {what}\n  {example}"))
        .collect();
    Some(lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use clap::FromArgMatches;

    use super::*;

    /// Every command path, "" for the top level.
    fn paths(cmd: &Command, path: &str, out: &mut Vec<String>) {
        out.push(path.to_owned());
        for sub in cmd.get_subcommands() {
            let sub_path = if path.is_empty() {
                sub.get_name().to_owned()
            } else {
                format!("{path} {}", sub.get_name())
            };
            paths(sub, &sub_path, out);
        }
    }

    fn find<'a>(cmd: &'a Command, path: &str) -> &'a Command {
        path.split_whitespace().fold(cmd, |cmd, name| {
            cmd.find_subcommand(name)
                .unwrap_or_else(|| panic!("no command {path:?}"))
        })
    }

    /// `--help` of every command has an example.
    #[test]
    fn every_command_has_examples_at_the_end_of_its_help() {
        let cmd = command();
        let mut all = Vec::new();
        paths(&cmd, "", &mut all);
        assert!(all.len() >= 12, "the walk found too few commands: {all:?}");
        for path in &all {
            let mut sub = find(&cmd, path).clone();
            let help = sub.render_long_help().to_string();
            let examples = help
                .split_once("\nExamples:\n")
                .unwrap_or_else(|| panic!("`pgsteady {path} --help` has no examples:\n{help}"))
                .1;
            assert!(
                examples.contains(&format!("pgsteady {path}")),
                "`pgsteady {path} --help` has no example of itself:\n{examples}"
            );
        }
        // The exit codes already at the end of a command's help are kept, before the examples.
        let wait = find(&cmd, "wait").clone().render_long_help().to_string();
        let (before, _) = wait.split_once("Examples:").unwrap();
        assert!(before.contains("Exit codes:"), "{wait}");
    }

    /// Every example line parses into the command it illustrates.
    #[test]
    fn every_example_parses() {
        let mut parsed = 0;
        for (path, examples) in EXAMPLES {
            for (_, line) in examples.iter() {
                assert!(line.starts_with("pgsteady "), "{path:?}: {line:?}");
                // Shell redirections and pipes are not arguments.
                let line = line.split(['>', '|']).next().unwrap();
                let args = shlex::split(line).unwrap_or_else(|| panic!("bad quoting: {line}"));
                let matches = command()
                    .try_get_matches_from(&args)
                    .unwrap_or_else(|e| panic!("`{line}` does not parse: {e}"));
                Cli::from_arg_matches(&matches).unwrap();
                let mut names = Vec::new();
                let mut m = &matches;
                while let Some((name, sub)) = m.subcommand() {
                    names.push(name);
                    m = sub;
                }
                let expected: Vec<&str> = path.split_whitespace().collect();
                assert!(
                    names.starts_with(&expected),
                    "`{line}` is an example of `{path}` but runs `{}`",
                    names.join(" ")
                );
                parsed += 1;
            }
        }
        assert!(parsed >= 25, "only {parsed} examples parsed");
    }

    /// Negative control: a path without an entry gets no examples, so the test above would
    /// notice a command added without them.
    #[test]
    fn a_command_missing_from_the_table_gets_no_examples() {
        let cmd = with_examples(Command::new("pgsteady").subcommand(Command::new("new")), "");
        let mut new = find(&cmd, "new").clone();
        assert!(!new.render_long_help().to_string().contains("Examples:"));
    }
}
