//! Options more than one subcommand takes, and parsers of the seconds they take (`--interval`,
//! `--duration`).

use probe_user::net::workload::cri;

/// Where the names of pods behind interfaces are read.
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct CriArgs {
    /// The container runtime's CRI socket to read pod and container names from (repeatable:
    /// those that exist are asked at once, the first in order that answers is used; `unix://`
    /// may lead, as crictl writes it). Only listed, never changed; a listing has a deadline of
    /// two seconds. Default: containerd's /run/containerd/containerd.sock, then CRI-O's
    /// /run/crio/crio.sock.
    #[arg(long = "cri-endpoint", value_name = "SOCKET", value_parser = cri_endpoint,
          value_hint = clap::ValueHint::FilePath)]
    endpoints: Vec<String>,
}

/// `--cri-endpoint`: a Unix socket's path, bare or as `unix://PATH`.
fn cri_endpoint(value: &str) -> Result<String, String> {
    let path = value.strip_prefix("unix://").unwrap_or(value);
    if path.is_empty() {
        return Err("give the path of the runtime's Unix socket".to_owned());
    }
    if let Some((scheme, _)) = path.split_once("://") {
        return Err(format!(
            "only Unix sockets are read, given as a path or unix://PATH, not {scheme}://"
        ));
    }
    Ok(value.to_owned())
}

impl CriArgs {
    pub(crate) fn client(&self) -> cri::Client {
        cri::Client::new(cri::Endpoints::given(&self.endpoints))
    }
}

/// The longest `--interval`: a refresh less often than hourly is no live view.
const MAX_INTERVAL_SECS: f64 = 3600.0;
/// The longest `--duration`, a year; without `--duration` the probe runs until stopped.
const MAX_DURATION_SECS: f64 = 365.0 * 86400.0;

fn seconds_in(value: &str, max: f64, range: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(seconds) if (0.01..=max).contains(&seconds) => Ok(seconds),
        Ok(_) => Err(format!("must be {range}")),
        Err(error) => Err(format!("{error}; give a number of seconds such as 0.5")),
    }
}

/// `--interval`: how often the views refresh.
pub(crate) fn interval_seconds(value: &str) -> Result<f64, String> {
    seconds_in(value, MAX_INTERVAL_SECS, "from 0.01 to 3600 seconds")
}

/// `--duration` of `run`.
pub(crate) fn duration_seconds(value: &str) -> Result<f64, String> {
    seconds_in(
        value,
        MAX_DURATION_SECS,
        "from 0.01 to 31536000 seconds (a year); leave --duration out to run until stopped",
    )
}

/// The interfaces present, as completion candidates for the arguments that name one: read from
/// /sys/class/net (this network namespace's, as mounted), sorted. A name is offered as it is, as
/// the user types it, and only if every shell the scripts serve takes it unquoted as itself;
/// the others (any byte but a space or `/` is allowed in a name) are typed by hand, quoted.
pub(crate) fn interface_candidates() -> Vec<clap_complete::CompletionCandidate> {
    let Ok(entries) = std::fs::read_dir("/sys/class/net") else {
        return Vec::new();
    };
    let mut names: Vec<std::ffi::OsString> = entries
        .filter_map(|entry| Some(entry.ok()?.file_name()))
        .filter(|name| typed_as_is(name.as_encoded_bytes()))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(clap_complete::CompletionCandidate::new)
        .collect()
}

/// Whether `name` means itself unquoted to bash, zsh, fish, elvish and PowerShell: ASCII letters,
/// digits, `_`, and after the first character also `.`, `-` and `+` (no option look-alike, no
/// glob, no expansion, no word break of bash's completion).
fn typed_as_is(name: &[u8]) -> bool {
    let Some((first, rest)) = name.split_first() else {
        return false;
    };
    (first.is_ascii_alphanumeric() || *first == b'_')
        && rest
            .iter()
            .all(|byte| byte.is_ascii_alphanumeric() || b"_.-+".contains(byte))
}

#[cfg(test)]
mod tests {
    use super::typed_as_is;

    #[test]
    fn interface_names_a_shell_would_change_are_not_offered() {
        for name in ["eth0", "enp0s31f6", "br-3f2a", "eth0.100", "veth_a+b", "_x"] {
            assert!(typed_as_is(name.as_bytes()), "{name}");
        }
        for name in [
            "",
            "-x",
            ".x",
            "a$b",
            "a*",
            "a'b",
            "a\"b",
            "a b",
            "a;b",
            "a\\b",
            "a~",
            "a@b",
            "a=b",
            "{a}",
            "a\u{1b}[31m",
            "é",
        ] {
            assert!(!typed_as_is(name.as_bytes()), "{name:?}");
        }
        assert!(!typed_as_is(b"a\xffb"));
    }
}
