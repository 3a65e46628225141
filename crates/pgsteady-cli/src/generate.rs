//! `pgsteady completions SHELL` and `pgsteady man`: shell completions (clap_complete) and
//! man pages (clap_mangen), generated from the same clap definitions as `--help`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap_complete::Shell;

use crate::exit;

/// The output could not be written (EX_IOERR, as `main`'s 70 is EX_SOFTWARE).
pub(crate) const WRITE_FAILED: u8 = 74;

const COMPLETIONS_HELP: &str = "\
Exit codes:
  0   written to stdout
  2   usage error (unknown shell)
  74  stdout could not be written";

const MAN_HELP: &str = "\
Exit codes:
  0   written (--out: the files written are listed on stderr)
  2   usage error
  74  a page could not be written (the path is named)";

/// Arguments of `pgsteady completions`.
#[derive(Debug, clap::Args)]
#[command(after_help = COMPLETIONS_HELP)]
pub(crate) struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: Shell,
}

/// Arguments of `pgsteady man`.
#[derive(Debug, clap::Args)]
#[command(after_help = MAN_HELP)]
pub(crate) struct ManArgs {
    /// Write pgsteady.1 and one page per command (pgsteady-wait.1, ...) into DIR (created if
    /// missing) instead of printing pgsteady.1 to stdout.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

pub(crate) fn completions(args: CompletionsArgs, mut cmd: clap::Command) -> ExitCode {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "pgsteady", &mut script);
    write_stdout(&script, "completions")
}

pub(crate) fn man(args: ManArgs, cmd: clap::Command) -> ExitCode {
    // No `help` subcommand: it has no page of its own to point to.
    let cmd = cmd.disable_help_subcommand(true);
    match args.out {
        None => {
            let mut page = Vec::new();
            match page_of(cmd).render(&mut page) {
                Ok(()) => write_stdout(&page, "man"),
                Err(e) => {
                    eprintln!("pgsteady man: cannot render the page: {e}");
                    exit::code(WRITE_FAILED)
                }
            }
        }
        Some(dir) => match write_pages(cmd, &dir) {
            Ok(written) => {
                for path in written {
                    eprintln!("{}", path.display());
                }
                exit::code(exit::READY)
            }
            Err((path, e)) => {
                eprintln!("pgsteady man: cannot write {}: {e}", path.display());
                exit::code(WRITE_FAILED)
            }
        },
    }
}

/// Writes one page per command into `dir`, as `clap_mangen::generate_to` does, but names the
/// path that failed and returns the paths written.
fn write_pages(cmd: clap::Command, dir: &Path) -> Result<Vec<PathBuf>, (PathBuf, std::io::Error)> {
    fn walk(
        cmd: clap::Command,
        dir: &Path,
        written: &mut Vec<PathBuf>,
    ) -> Result<(), (PathBuf, std::io::Error)> {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned() {
            walk(sub, dir, written)?;
        }
        let man = page_of(cmd);
        let path = dir.join(man.get_filename());
        let mut page = Vec::new();
        man.render(&mut page)
            .and_then(|()| std::fs::write(&path, &page))
            .map_err(|e| (path.clone(), e))?;
        written.push(path);
        Ok(())
    }
    std::fs::create_dir_all(dir).map_err(|e| (dir.to_owned(), e))?;
    let mut cmd = cmd;
    // Gives the subcommands their display names (pgsteady-wait), hence their file names.
    cmd.build();
    let mut written = Vec::new();
    walk(cmd, dir, &mut written)?;
    written.reverse();
    Ok(written)
}

/// The page of one command. Its footer names the release only: the full version string (with
/// the commit) does not fit there.
fn page_of(cmd: clap::Command) -> clap_mangen::Man {
    clap_mangen::Man::new(cmd).source(concat!("pgsteady ", env!("CARGO_PKG_VERSION")))
}

fn write_stdout(bytes: &[u8], what: &str) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => exit::code(exit::READY),
        Err(e) => {
            eprintln!("pgsteady {what}: cannot write to stdout: {e}");
            exit::code(WRITE_FAILED)
        }
    }
}
