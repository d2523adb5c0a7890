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
    if let Shell::Bash = shell {
        script = quoted_for_bash(&script);
    }
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

/// clap_complete's bash script takes the candidates into `COMPREPLY` unquoted, as
/// `COMPREPLY=( $(…) )`: bash globs each one, and inserts it as it is, so completing a file named
/// `$(touch x)` put a command substitution on the command line (zsh and fish quote theirs). The
/// candidates are read as words instead, never globbed, each quoted with `printf %q`.
fn quoted_for_bash(script: &[u8]) -> Vec<u8> {
    const TAKEN: &str = "    COMPREPLY=( $( \\\n";
    const TAKEN_END: &str = "    ) )\n    if [[ $? != 0 ]]; then\n        unset COMPREPLY\n";
    const READ: &str = "    local candidates\n    candidates=$( \\\n";
    const READ_END: &str = "    )\n    local status=$?\n    if [[ $status == 0 ]]; then\n        \
        IFS=$'\\013' read -r -d '' -a COMPREPLY < <(printf '%s' \"$candidates\")\n        \
        local i\n        \
        for i in \"${!COMPREPLY[@]}\"; do printf -v 'COMPREPLY[i]' '%q' \"${COMPREPLY[i]}\"; done\n    \
        fi\n    if [[ $status != 0 ]]; then\n        unset COMPREPLY\n";
    let script = String::from_utf8(script.to_vec()).expect("clap_complete writes UTF-8");
    assert!(
        script.contains(TAKEN) && script.contains(TAKEN_END),
        "clap_complete's bash script changed: quote its candidates anew"
    );
    script
        .replacen(TAKEN, READ, 1)
        .replacen(TAKEN_END, READ_END, 1)
        .into_bytes()
}
