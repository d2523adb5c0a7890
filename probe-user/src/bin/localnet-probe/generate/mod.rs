//! `localnet-probe generate`: the manual pages and the shell completion scripts, made from the
//! clap definitions, so that they describe this binary's options and no other's.

mod completions;
mod man;

use std::{io::Write as _, path::PathBuf};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use probe_user::net::names::printable;

use self::completions::Shell;
pub(crate) use self::completions::complete_if_asked;

#[derive(Debug, Args)]
pub(crate) struct GenerateArgs {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, Subcommand)]
enum What {
    /// Write localnet-probe.8 and one page per subcommand (localnet-probe-run.8, …) into DIR.
    Man {
        /// The directory to write the pages into, created if missing; pages there of the same
        /// names are replaced.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Print the completion script for SHELL on stdout.
    ///
    /// Install it where the shell reads completions: for bash
    /// /usr/share/bash-completion/completions/localnet-probe, for zsh a directory of $fpath as
    /// _localnet-probe, for fish ~/.config/fish/completions/localnet-probe.fish. The script runs
    /// `localnet-probe` from PATH at each Tab, so it offers this version's options and the
    /// interfaces present.
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
}

pub(crate) fn generate(args: &GenerateArgs) -> anyhow::Result<()> {
    match &args.what {
        What::Man { dir } => {
            for page in man::write_pages(dir)? {
                tracing::info!("wrote {}", printable(&page.display().to_string()));
            }
            Ok(())
        }
        What::Completions { shell } => {
            let script = completions::script(*shell)?;
            std::io::stdout()
                .write_all(&script)
                .context("cannot write the script on stdout")
        }
    }
}
