//! Shell completion through the binary itself: the script a shell loads asks `localnet-probe`
//! (with [`COMPLETE_VARIABLE`] set) for the candidates of the word at the cursor, so values
//! that depend on the machine, such as interface names, complete too.

use clap::{CommandFactory as _, ValueEnum};
use clap_complete::env::{CompleteEnv, Shells};

use crate::Cli;

/// Set by the completion scripts to the shell's name when they run `localnet-probe`.
const COMPLETE_VARIABLE: &str = "LOCALNET_PROBE_COMPLETE";

/// The command the scripts run, looked up on PATH at each Tab: the binary that answers is the
/// one the user runs, wherever it was installed (a path fixed at generation time would point
/// into a build directory).
const COMPLETER: &str = "localnet-probe";

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(super) enum Shell {
    Bash,
    Zsh,
    Fish,
    Elvish,
    Powershell,
}

/// Answers a completion request and exits, when the process was started for one.
pub(crate) fn complete_if_asked() {
    CompleteEnv::with_factory(Cli::command)
        .var(COMPLETE_VARIABLE)
        .completer(COMPLETER)
        .complete();
}

/// The script that registers localnet-probe's completions with `shell`.
pub(super) fn script(shell: Shell) -> anyhow::Result<Vec<u8>> {
    let name = shell
        .to_possible_value()
        .expect("no shell is skipped")
        .get_name()
        .to_owned();
    let shells = Shells::builtins();
    let completer = shells
        .completer(&name)
        .expect("clap_complete registers every shell of `Shell`");
    let command = Cli::command();
    let mut script = Vec::new();
    completer.write_registration(
        COMPLETE_VARIABLE,
        command.get_name(),
        command.get_name(),
        COMPLETER,
        &mut script,
    )?;
    if let Shell::Zsh = shell {
        // Autoloaded from $fpath, the file is the body of `_localnet-probe`: the first Tab only
        // defines the completer and binds it, so complete this Tab too (as clap's static zsh
        // scripts do); sourced, the file only binds it.
        script.extend_from_slice(
            b"if [ \"$funcstack[1]\" = \"_localnet-probe\" ]; then\n    \
              _clap_dynamic_completer_localnet_probe \"$@\"\nfi\n",
        );
    }
    Ok(script)
}
