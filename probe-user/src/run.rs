//! `localnet-probe run`: attach, report every interval, detach on exit.

use std::{
    collections::HashMap,
    io::{self, IsTerminal as _, Write as _},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use probe_common::Mode;
use probe_user::{
    interfaces::{self, Interface},
    privileges,
    probe::{InterfaceCounters, Probe, ProbeError, XdpModeChoice},
    report::{InterfaceReading, InterfaceReport, Report, render_table},
    route_localnet::RouteLocalnet,
};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Attach to this interface (repeatable). Default: every non-loopback interface that is up.
    #[arg(long = "iface", value_name = "IF")]
    ifaces: Vec<String>,
    /// Leave this interface out (repeatable).
    #[arg(long, value_name = "IF")]
    exclude: Vec<String>,
    /// Drop matched frames on every selected interface instead of only counting them.
    #[arg(long, conflicts_with = "drop_on")]
    drop: bool,
    /// Drop matched frames on this interface (repeatable); the others are only monitored.
    #[arg(long, value_name = "IF")]
    drop_on: Vec<String>,
    /// How to attach: native (in the driver), generic (in the stack, slower, works everywhere),
    /// or auto (native, falling back to generic with a notice).
    #[arg(long, value_enum, default_value_t = XdpModeArg::Auto)]
    xdp_mode: XdpModeArg,
    /// Seconds between refreshes of the table or JSON objects.
    #[arg(long, value_name = "SECS", default_value_t = 1.0, value_parser = positive_seconds)]
    interval: f64,
    /// Detach and exit after this many seconds.
    #[arg(long, value_name = "SECS", value_parser = positive_seconds)]
    duration: Option<f64>,
    /// Write one JSON object per interval on stdout even on a terminal (the default when stdout
    /// is not a terminal).
    #[arg(long)]
    json: bool,
    /// Print the kernel verifier's full log if it rejects the program.
    #[arg(long)]
    verifier_log: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum XdpModeArg {
    Auto,
    Native,
    Generic,
}

impl From<XdpModeArg> for XdpModeChoice {
    fn from(arg: XdpModeArg) -> Self {
        match arg {
            XdpModeArg::Auto => Self::Auto,
            XdpModeArg::Native => Self::Native,
            XdpModeArg::Generic => Self::Generic,
        }
    }
}

fn positive_seconds(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds >= 0.01 => Ok(seconds),
        Ok(_) => Err("must be at least 0.01 seconds".to_owned()),
        Err(error) => Err(error.to_string()),
    }
}

/// An interface chosen by the arguments, with the mode asked for it.
#[derive(Debug, PartialEq, Eq)]
struct Selected {
    interface: Interface,
    mode: Mode,
}

fn select(all: &[Interface], args: &RunArgs) -> anyhow::Result<Vec<Selected>> {
    let known = |name: &str| all.iter().find(|interface| interface.name == name);
    let unknown = |name: &str, flag: &str| {
        let names: Vec<&str> = all
            .iter()
            .map(|interface| interface.name.as_str())
            .collect();
        anyhow::anyhow!(
            "unknown interface {name:?} given to {flag}; interfaces here: {}",
            names.join(", ")
        )
    };
    for (names, flag) in [
        (&args.ifaces, "--iface"),
        (&args.exclude, "--exclude"),
        (&args.drop_on, "--drop-on"),
    ] {
        if let Some(name) = names.iter().find(|name| known(name).is_none()) {
            return Err(unknown(name, flag));
        }
    }

    let chosen: Vec<&Interface> = if args.ifaces.is_empty() {
        all.iter()
            .filter(|interface| interface.up && !interface.loopback)
            .collect()
    } else {
        let mut chosen: Vec<&Interface> = Vec::new();
        for name in &args.ifaces {
            let interface = known(name).expect("checked above");
            if interface.loopback {
                bail!(
                    "{name} is the loopback interface, where loopback addresses belong; pick real \
                     interfaces"
                );
            }
            if !chosen.contains(&interface) {
                chosen.push(interface);
            }
        }
        chosen
    };
    let selected: Vec<Selected> = chosen
        .into_iter()
        .filter(|interface| !args.exclude.contains(&interface.name))
        .map(|interface| Selected {
            interface: interface.clone(),
            mode: if args.drop || args.drop_on.contains(&interface.name) {
                Mode::Drop
            } else {
                Mode::Monitor
            },
        })
        .collect();
    if let Some(name) = args
        .drop_on
        .iter()
        .find(|name| !selected.iter().any(|s| &s.interface.name == *name))
    {
        bail!(
            "--drop-on {name}: {name} is not among the selected interfaces (see --iface, --exclude)"
        );
    }
    if selected.is_empty() {
        bail!(
            "no interface selected: none is up besides loopback, or --exclude left none; name one with --iface"
        );
    }
    Ok(selected)
}

/// Refuses interfaces that already carry an XDP program, naming it.
fn refuse_occupied(selected: &[Selected]) -> anyhow::Result<()> {
    for Selected { interface, .. } in selected {
        let Some(id) = interface.xdp_program_id else {
            continue;
        };
        let name = aya::programs::loaded_programs()
            .filter_map(Result::ok)
            .find(|program| program.id() == id)
            .and_then(|program| program.name_as_str().map(str::to_owned))
            .unwrap_or_else(|| "?".to_owned());
        let hint = if name == "localnet_probe" {
            " (another localnet-probe is running there)"
        } else {
            ""
        };
        bail!(
            "{iface} already has an XDP program attached: id {id}, name {name:?}{hint}. \
             localnet-probe never replaces another program; detach it first (for example \
             `ip link set dev {iface} xdp off`) or leave the interface out with --exclude {iface}",
            iface = interface.name
        );
    }
    Ok(())
}

pub(crate) async fn run(args: RunArgs) -> anyhow::Result<()> {
    if let Some(missing) = privileges::missing() {
        bail!(missing);
    }
    let all = interfaces::list()
        .await
        .context("cannot list network interfaces")?;
    let selected = select(&all, &args)?;
    refuse_occupied(&selected)?;

    let mut probe = Probe::load(args.verifier_log).map_err(|error| match error {
        ProbeError::Verifier {
            io_error,
            verifier_log,
        } if args.verifier_log => {
            anyhow::anyhow!(
                "the kernel verifier rejected the XDP program: {io_error}\n{verifier_log}"
            )
        }
        ProbeError::Verifier { io_error, .. } => anyhow::anyhow!(
            "the kernel verifier rejected the XDP program: {io_error}; rerun with --verifier-log \
             to see why"
        ),
        other => anyhow::Error::new(other).context("cannot load the XDP program"),
    })?;
    // If any attachment fails, returning drops `probe` and with it every link made so far.
    for Selected { interface, mode } in &selected {
        probe
            .configure(interface.ifindex, *mode)
            .with_context(|| format!("cannot configure {}", interface.name))?;
        let attached = probe
            .attach(interface.ifindex, args.xdp_mode.into())
            .with_context(|| {
                format!(
                    "cannot attach to {}; nothing stays attached",
                    interface.name
                )
            })?;
        if let Some(reason) = attached.native_refused {
            tracing::info!(
                "{}: no native XDP support ({reason}); using generic XDP",
                interface.name
            );
        }
        tracing::info!(
            "attached to {} ({} XDP, {} mode)",
            interface.name,
            attached.mode.name(),
            mode.name()
        );
    }

    let json = args.json || !io::stdout().is_terminal();
    let mut view = View {
        probe: &probe,
        selected: &selected,
        json,
        interval: args.interval,
        started: Instant::now(),
        previous: HashMap::new(),
    };
    for Selected { interface, mode } in &selected {
        if *mode == Mode::Monitor && RouteLocalnet::read(&interface.name).is_ok_and(|r| r.effective)
        {
            tracing::warn!(
                "{}: route_localnet=1 and monitor mode: services bound to 127.0.0.1 here are \
                 reachable from this link; --drop-on {} blocks such frames",
                interface.name,
                interface.name
            );
        }
    }

    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(args.interval));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let deadline = async {
        match args.duration {
            Some(seconds) => tokio::time::sleep(Duration::from_secs_f64(seconds)).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                if !view.show(false)? {
                    return Ok(());
                }
            }
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            () = &mut deadline => break,
        }
    }
    view.show(true)?;
    Ok(())
}

struct View<'a> {
    probe: &'a Probe,
    selected: &'a [Selected],
    json: bool,
    interval: f64,
    started: Instant,
    previous: HashMap<u32, (InterfaceCounters, Instant)>,
}

impl View<'_> {
    /// Writes one report; `false` when stdout is gone (a closed pipe), which ends the run.
    fn show(&mut self, is_final: bool) -> anyhow::Result<bool> {
        let report = self.report(is_final)?;
        let mut stdout = io::stdout().lock();
        let written = if self.json {
            serde_json::to_writer(&mut stdout, &report)
                .map_err(io::Error::from)
                .and_then(|()| stdout.write_all(b"\n"))
        } else {
            let clear = if is_final { "" } else { "\x1b[H\x1b[2J" };
            write!(stdout, "{clear}{}", render_table(&report, self.interval))
        }
        .and_then(|()| stdout.flush());
        match written {
            Ok(()) => Ok(true),
            Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(false),
            Err(error) => Err(error).context("cannot write to stdout"),
        }
    }

    fn report(&mut self, is_final: bool) -> anyhow::Result<Report> {
        let now = Instant::now();
        let mut interfaces = Vec::with_capacity(self.selected.len());
        for Selected { interface, .. } in self.selected {
            let counters = self
                .probe
                .counters(interface.ifindex)
                .with_context(|| format!("cannot read the counters of {}", interface.name))?;
            let previous = self.previous.get(&interface.ifindex);
            interfaces.push(InterfaceReport::new(InterfaceReading {
                name: &interface.name,
                ifindex: interface.ifindex,
                mode: self.probe.mode(interface.ifindex).expect("configured"),
                xdp_mode: self
                    .probe
                    .attached_mode(interface.ifindex)
                    .expect("attached")
                    .name(),
                route_localnet: RouteLocalnet::read(&interface.name).ok(),
                counters: &counters,
                previous: previous.map(|(counters, _)| counters),
                seconds_since_previous: previous
                    .map_or(0.0, |(_, at)| now.duration_since(*at).as_secs_f64()),
            }));
            self.previous.insert(interface.ifindex, (counters, now));
        }
        Ok(Report {
            timestamp: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |since| since.as_secs_f64()),
            elapsed_secs: now.duration_since(self.started).as_secs_f64(),
            is_final,
            interfaces,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[derive(Debug, clap::Parser)]
    struct TestCli {
        #[command(flatten)]
        args: RunArgs,
    }

    fn args(line: &[&str]) -> RunArgs {
        TestCli::try_parse_from(std::iter::once("run").chain(line.iter().copied()))
            .expect("valid arguments")
            .args
    }

    fn interface(name: &str, ifindex: u32, up: bool, loopback: bool) -> Interface {
        Interface {
            name: name.to_owned(),
            ifindex,
            up,
            loopback,
            xdp_program_id: None,
        }
    }

    fn host() -> Vec<Interface> {
        vec![
            interface("lo", 1, true, true),
            interface("eth0", 2, true, false),
            interface("eth1", 3, true, false),
            interface("eth2", 4, false, false),
        ]
    }

    fn names_and_modes(selected: &[Selected]) -> Vec<(&str, Mode)> {
        selected
            .iter()
            .map(|s| (s.interface.name.as_str(), s.mode))
            .collect()
    }

    #[test]
    fn default_selection_is_every_up_non_loopback_interface() {
        let selected = select(&host(), &args(&[])).unwrap();
        assert_eq!(
            names_and_modes(&selected),
            [("eth0", Mode::Monitor), ("eth1", Mode::Monitor)]
        );
    }

    #[test]
    fn drop_on_and_exclude_shape_the_selection() {
        let selected = select(&host(), &args(&["--drop-on", "eth1", "--exclude", "eth0"])).unwrap();
        assert_eq!(names_and_modes(&selected), [("eth1", Mode::Drop)]);
        let selected = select(&host(), &args(&["--drop", "--iface", "eth2"])).unwrap();
        assert_eq!(names_and_modes(&selected), [("eth2", Mode::Drop)]);
    }

    #[test]
    fn unknown_and_unfit_interfaces_are_errors() {
        for (line, expected) in [
            (
                &["--iface", "nope0"][..],
                "unknown interface \"nope0\" given to --iface",
            ),
            (
                &["--exclude", "nope0"][..],
                "unknown interface \"nope0\" given to --exclude",
            ),
            (&["--iface", "lo"][..], "lo is the loopback interface"),
            (
                &["--iface", "eth0", "--drop-on", "eth1"][..],
                "--drop-on eth1",
            ),
            (
                &["--exclude", "eth0", "--exclude", "eth1"][..],
                "no interface selected",
            ),
        ] {
            let error = select(&host(), &args(line)).unwrap_err().to_string();
            assert!(error.contains(expected), "{line:?}: {error}");
        }
    }

    #[test]
    fn drop_and_drop_on_conflict() {
        assert!(TestCli::try_parse_from(["run", "--drop", "--drop-on", "eth0"]).is_err());
    }
}
