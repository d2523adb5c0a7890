//! The manual pages: clap_mangen's sections from the clap definitions (long help included), and
//! the sections clap does not hold: the exit statuses, examples and the other pages.

use std::{
    fmt::Write as _,
    fs::{self, OpenOptions},
    io::{self, Write as _},
    os::unix::fs::{MetadataExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};
use clap::CommandFactory as _;
use clap_mangen::{
    Man,
    roff::{Roff, bold, italic, roman},
};

use crate::Cli;

/// System administration, like bpftool's and xdp-filter's pages.
const SECTION: &str = "8";

/// What a page says beyond the clap definitions.
struct Manual {
    /// Exit status and its meaning.
    exit_statuses: &'static [(&'static str, &'static str)],
    /// What an example does, and the command.
    examples: &'static [(&'static str, &'static str)],
}

const INVALID_ARGUMENTS: (&str, &str) = (
    "2",
    "Invalid arguments: an unknown option or a value out of range (nothing was changed).",
);

/// The page of the command `name` (`localnet-probe`, `run`, …).
fn manual(name: &str) -> Manual {
    match name {
        "run" => Manual {
            exit_statuses: &[
                (
                    "0",
                    "Stopped by Ctrl-C, SIGTERM, SIGHUP, --duration or its reader going away; \
                     everything it attached is detached, or pinned with --pin.",
                ),
                (
                    "1",
                    "An error: the programs could not be loaded or attached, a pin or the \
                     metrics address could not be taken, and the like; the message says which \
                     and what to try.",
                ),
                (
                    "2",
                    "Invalid arguments, interfaces named with --iface that cannot be served \
                     included. The systemd unit does not restart the probe on it.",
                ),
            ],
            examples: &[
                (
                    "Count on every interface that is up, in a live view, until Ctrl-C:",
                    "localnet-probe run",
                ),
                (
                    "Drop such frames on eth0 and count them, for a minute, as JSON objects:",
                    "localnet-probe run --drop --iface eth0 --duration 60 --json",
                ),
                (
                    "Be this host's standing filter on the interfaces named eth*, now and as they \
                     appear, dropping, with Prometheus metrics on the loopback address:",
                    "localnet-probe run --pin --drop --iface 'eth*' --metrics 127.0.0.1:9464",
                ),
                (
                    "Beside another XDP program, at tcx instead, with the replies counted and each \
                     sampled frame shown:",
                    "localnet-probe run --on-conflict tc --egress --events --iface eth1",
                ),
                (
                    "Hand the sampled frames to tcpdump:",
                    "localnet-probe run --iface eth0 --pcap - | tcpdump -n -r -",
                ),
            ],
        },
        "status" => Manual {
            exit_statuses: &[
                ("0", "Shown, also when nothing is pinned."),
                ("1", "An error: the pins could not be read."),
                INVALID_ARGUMENTS,
            ],
            examples: &[
                (
                    "The standing filter's counts, once:",
                    "localnet-probe status",
                ),
                (
                    "Follow them every 5 seconds:",
                    "localnet-probe status --watch --interval 5",
                ),
                ("As JSON, for a script:", "localnet-probe status --json"),
            ],
        },
        "detach" => Manual {
            exit_statuses: &[
                ("0", "Detached, or nothing was pinned."),
                (
                    "1",
                    "An error: some pins could not be removed (the message names them).",
                ),
                INVALID_ARGUMENTS,
            ],
            examples: &[
                ("Remove the whole standing filter:", "localnet-probe detach"),
                (
                    "Take it off the veth interfaces only:",
                    "localnet-probe detach --iface 'veth*'",
                ),
            ],
        },
        "audit" => Manual {
            exit_statuses: &[
                ("0", "No link reaches a service bound to loopback."),
                ("1", "An exposure was found: some link reaches one."),
                ("2", "An error, or invalid arguments."),
            ],
            examples: &[
                ("Audit every interface:", "localnet-probe audit"),
                (
                    "Audit eth0 and keep the report as JSON:",
                    "localnet-probe audit --json --iface eth0 > audit.json",
                ),
            ],
        },
        "scan" => Manual {
            exit_statuses: &[
                ("0", "No frame with a loopback address in the captures."),
                ("1", "Frames with a loopback address found."),
                (
                    "2",
                    "An error (a capture that cannot be read to its end: the message names the \
                     file and the byte offset), or invalid arguments.",
                ),
            ],
            examples: &[
                (
                    "Scan a compressed capture from a gateway:",
                    "localnet-probe scan gateway.pcapng.zst",
                ),
                (
                    "Keep the matched frames of two days for Wireshark:",
                    "localnet-probe scan --pcap matched.pcapng day1.pcap.gz day2.pcap.gz",
                ),
                (
                    "Scan what tcpdump sees on every interface for a minute:",
                    "timeout 60 tcpdump -i any -w - | localnet-probe scan --json -",
                ),
            ],
        },
        "generate" => Manual {
            exit_statuses: &[
                ("0", "Written."),
                (
                    "1",
                    "An error: the pages or the script could not be written.",
                ),
                INVALID_ARGUMENTS,
            ],
            examples: &[
                (
                    "Install the pages after building from source:",
                    "localnet-probe generate man /usr/local/share/man/man8",
                ),
                (
                    "Complete localnet-probe in bash for this user:",
                    "localnet-probe generate completions bash > \
                     ~/.local/share/bash-completion/completions/localnet-probe",
                ),
                (
                    "In fish:",
                    "localnet-probe generate completions fish > \
                     ~/.config/fish/completions/localnet-probe.fish",
                ),
            ],
        },
        _ => Manual {
            exit_statuses: &[
                ("0", "Success; for audit, no exposure; for scan, no match."),
                (
                    "1",
                    "An error; for audit, an exposure found; for scan, frames with a loopback \
                     address found.",
                ),
                (
                    "2",
                    "Invalid arguments, interfaces named that cannot be served included; for \
                     audit and scan, any error.",
                ),
            ],
            examples: &[
                (
                    "See which services bound to loopback each link can reach:",
                    "localnet-probe audit",
                ),
                (
                    "Count frames with loopback addresses on every interface that is up:",
                    "localnet-probe run",
                ),
                (
                    "Drop them on eth0 and eth1 after exit too, as a standing filter:",
                    "localnet-probe run --pin --drop --iface eth0 --iface eth1",
                ),
                (
                    "Show and remove the standing filter:",
                    "localnet-probe status",
                ),
                ("", "localnet-probe detach"),
                ("What to put in a bug report:", "localnet-probe --version"),
            ],
        },
    }
}

/// Writes localnet-probe.8 and a page per subcommand into `dir`; the paths written.
pub(super) fn write_pages(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let owner = fs::metadata(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .uid();
    // SAFETY: geteuid cannot fail and touches no memory.
    let user = unsafe { libc::geteuid() };
    if owner != user && owner != 0 {
        bail!(
            "{} belongs to uid {owner}, not to this user or root: its owner could put links there \
             that the pages would be written through, or replace them; choose a directory of \
             your own (mktemp -d)",
            dir.display()
        );
    }
    let mut cli = Cli::command().disable_help_subcommand(true);
    cli.build();
    let subcommands: Vec<&str> = cli.get_subcommands().map(|sub| sub.get_name()).collect();
    let mut pages = vec![page(&cli, manual(cli.get_name()), &subcommands)?];
    for subcommand in cli.get_subcommands() {
        pages.push(page(subcommand, manual(subcommand.get_name()), &[])?);
    }
    let mut written = Vec::new();
    for (name, text) in pages {
        let path = dir.join(&name);
        replace(dir, &name, &text).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// Replaces `dir/name` with `text` whole: written to a new file beside it, then renamed over it,
/// so a link found at `name` is replaced, never written through.
fn replace(dir: &Path, name: &str, text: &[u8]) -> io::Result<()> {
    let temporary = dir.join(format!(".{name}.{}", std::process::id()));
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o644)
        .open(&temporary)
        .and_then(|mut file| file.write_all(text))
        .and_then(|()| fs::rename(&temporary, dir.join(name)));
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written
}

/// The file name and roff text of `command`'s page; the top page lists `subcommands`' pages.
fn page(
    command: &clap::Command,
    manual: Manual,
    subcommands: &[&str],
) -> anyhow::Result<(String, Vec<u8>)> {
    let man = Man::new(command.clone())
        .section(SECTION)
        .date(env!("LOCALNET_PROBE_DATE"))
        .source(format!("localnet-probe {}", env!("CARGO_PKG_VERSION")))
        .manual("System Administration");
    let mut text = Vec::new();
    man.render_title(&mut text)?;
    // No hyphenation: names and paths broken at a line's end read as other names.
    Roff::new().control("nh", []).to_writer(&mut text)?;
    man.render_name_section(&mut text)?;
    man.render_synopsis_section(&mut text)?;
    man.render_description_section(&mut text)?;
    man.render_options_section(&mut text)?;
    let mut roff = Roff::new();
    if !subcommands.is_empty() {
        man.render_subcommands_section(&mut text)?;
    } else if command.has_subcommands() {
        // Nested subcommands (`generate man`) have no pages of their own: described here.
        nested_subcommands(&mut roff, command);
    }
    roff.control("SH", ["EXIT STATUS"]);
    for (status, meaning) in manual.exit_statuses {
        roff.control("TP", [])
            .text([bold(*status)])
            .text([roman(*meaning)]);
    }
    roff.control("SH", ["EXAMPLES"]);
    for (what, example) in manual.examples {
        if !what.is_empty() {
            roff.control("PP", []).text([roman(*what)]);
        }
        roff.control("RS", ["4"])
            .control("nf", [])
            .text([roman(*example)])
            .control("fi", [])
            .control("RE", []);
    }
    roff.control("SH", ["SEE ALSO"]);
    let mut see_also: Vec<String> = if subcommands.is_empty() {
        vec!["localnet-probe".to_owned()]
    } else {
        subcommands
            .iter()
            .map(|sub| format!("localnet-probe-{sub}"))
            .collect()
    };
    see_also.extend(["bpftool".to_owned(), "xdp-filter".to_owned()]);
    let last = see_also.len() - 1;
    for (index, page) in see_also.iter().enumerate() {
        let separator = if index == last { "" } else { "," };
        roff.text([
            bold(page.as_str()),
            roman(format!("({SECTION}){separator}")),
        ]);
    }
    roff.control("PP", []).text([
        roman("The guides installed with the package are in "),
        italic("/usr/share/doc/localnet-probe"),
        roman("."),
    ]);
    roff.to_writer(&mut text)?;
    let text = String::from_utf8(text).context("clap_mangen wrote UTF-8")?;
    Ok((man.get_filename(), ascii_only(&text).into_bytes()))
}

/// A SUBCOMMANDS section for `command`'s subcommands: each one's synopsis and long help.
fn nested_subcommands(roff: &mut Roff, command: &clap::Command) {
    roff.control("SH", ["SUBCOMMANDS"]);
    let bin_name = command.get_bin_name().unwrap_or(command.get_name());
    for sub in command.get_subcommands() {
        let mut synopsis = vec![bold(format!("{bin_name} {}", sub.get_name()))];
        for positional in sub.get_positionals() {
            let values: Vec<String> = positional
                .get_possible_values()
                .iter()
                .map(|value| value.get_name().to_owned())
                .collect();
            synopsis.push(roman(" "));
            synopsis.push(if values.is_empty() {
                italic(positional.get_id().as_str().to_uppercase())
            } else {
                roman(format!("{{{}}}", values.join("|")))
            });
        }
        roff.control("TP", []).text(synopsis);
        let help = sub
            .get_long_about()
            .or(sub.get_about())
            .map(ToString::to_string);
        for (index, paragraph) in help.iter().flat_map(|help| help.split("\n\n")).enumerate() {
            if index > 0 {
                roff.control("IP", []);
            }
            roff.text([roman(paragraph.replace('\n', " "))]);
        }
    }
}

/// `text` with every character beyond ASCII as a groff escape (`\[u2026]`): groff reads the
/// page as Latin-1 unless a preprocessor says otherwise, and warns of the bytes of UTF-8.
fn ascii_only(text: &str) -> String {
    let mut ascii = String::with_capacity(text.len());
    for character in text.chars() {
        if character.is_ascii() {
            ascii.push(character);
        } else {
            let _ = write!(ascii, "\\[u{:04X}]", u32::from(character));
        }
    }
    ascii
}
