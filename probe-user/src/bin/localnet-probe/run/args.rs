//! `run`'s flags and the parsers of their values.

use clap::{Args, ValueEnum};
use clap_complete::ArgValueCandidates;

use std::{net::SocketAddr, path::PathBuf};

use super::*;
use crate::args::{duration_seconds, interface_candidates, interval_seconds};

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Attach to this interface (repeatable), whatever it is. A shell-style pattern (`*`, `?`,
    /// `[…]`; quote it) serves the interfaces it matches, now or when they appear, up or not,
    /// except loopback, ifb devices and devices stacked on a served one. Default: every
    /// interface that is up, now or when it comes up, except those.
    #[arg(long = "iface", value_name = "IF", value_parser = name_pattern(),
          add = ArgValueCandidates::new(interface_candidates))]
    pub(super) ifaces: Vec<NamePattern>,
    /// Leave this interface out, or those a pattern matches (repeatable).
    #[arg(long, value_name = "IF", value_parser = name_pattern(),
          add = ArgValueCandidates::new(interface_candidates))]
    pub(super) exclude: Vec<NamePattern>,
    /// Drop matched frames on every selected interface instead of only counting them.
    #[arg(long, conflicts_with = "drop_on")]
    pub(super) drop: bool,
    /// Drop matched frames on this interface, or on the selected ones a pattern matches
    /// (repeatable); the others are only monitored.
    #[arg(long, value_name = "IF", value_parser = name_pattern(),
          add = ArgValueCandidates::new(interface_candidates))]
    pub(super) drop_on: Vec<NamePattern>,
    /// How to attach: native (in the driver), generic (in the stack, slower, works everywhere),
    /// or auto (native, falling back to generic with a notice).
    #[arg(long, value_enum, default_value_t = XdpModeArg::Auto)]
    pub(super) xdp_mode: XdpModeArg,
    /// What to do with a selected interface where another XDP program is attached (Cilium, a
    /// load balancer, xdp-filter): fail (refuse it: at start, an error), skip (leave it out,
    /// with a warning), or tc (count and drop there at tcx ingress, beside that program;
    /// Linux 6.6 or later).
    #[arg(long, value_enum, default_value_t = OnConflictArg::Fail)]
    pub(super) on_conflict: OnConflictArg,
    /// Also count the frames with a loopback source that leave each served interface (at tcx
    /// egress; Linux 6.6 or later): replies of a loopback-bound service to someone on the
    /// link, the proof that an exposure was used. They are counted, never dropped.
    #[arg(long)]
    pub(super) egress: bool,
    /// Seconds between refreshes of the table or JSON objects (0.01 to 3600).
    #[arg(long, value_name = "SECS", default_value_t = 1.0, value_parser = interval_seconds,
          allow_negative_numbers = true)]
    pub(super) interval: f64,
    /// Be this network namespace's standing filter: pin the links and maps under
    /// /sys/fs/bpf/localnet-probe/ so the interfaces stay filtered and counted after exit,
    /// taking over (with no gap) the one a previous `run --pin` left there.
    #[arg(long)]
    pub(super) pin: bool,
    /// The most interfaces served at once, 1 to 65536 (default 65536): the counters start with
    /// room for those here and a quarter more (at least 256 more) and grow as interfaces come,
    /// up to this (432 bytes of kernel memory per interface and CPU, and 1 MiB per growth). A
    /// standing filter has exactly this room (default: the start's), kept until `detach`.
    #[arg(long, value_name = "N", value_parser = capacity, allow_negative_numbers = true)]
    pub(super) capacity: Option<u32>,
    /// Detach and exit after this many seconds (0.01 to one year).
    #[arg(long, value_name = "SECS", value_parser = duration_seconds, allow_negative_numbers = true)]
    pub(super) duration: Option<f64>,
    /// Write one JSON object per interval on stdout even on a terminal: `--json` or
    /// `--json=full` lists every interface in every object; `--json=compact` only those whose
    /// counts or state changed since the previous object, with a full object every
    /// --full-every seconds. Without it, compact objects when stdout is not a terminal.
    #[arg(long, value_enum, value_name = "OBJECTS", num_args = 0..=1, require_equals = true,
          default_missing_value = "full", conflicts_with = "plain")]
    pub(super) json: Option<JsonObjects>,
    /// In compact JSON, an object that lists every interface at least this often, in seconds
    /// (1 to 86400; the first and the last objects always do).
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_FULL_EVERY,
          value_parser = clap::value_parser!(u32).range(1..=86_400))]
    pub(super) full_every: u32,
    /// On a terminal, redraw a plain table every interval instead of the full-screen view.
    #[arg(long)]
    pub(super) plain: bool,
    /// Print the kernel verifier's full log if it rejects the program.
    #[arg(long)]
    pub(super) verifier_log: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics, read from the counters at each scrape.
    /// ADDR is an IP address and port; without it, 127.0.0.1:9464.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, value_parser = metrics_address,
          default_missing_value = metrics_server::DEFAULT_ADDRESS)]
    pub(super) metrics: Option<SocketAddr>,
    /// Give every served interface its own metrics, counts by family and loopback address too,
    /// and route_localnet by scope; by default only interfaces that counted a frame or are
    /// exposed have series of their own, the rest are in the node's totals.
    #[arg(long, requires = "metrics")]
    pub(super) metrics_detail: bool,
    /// Serve the metrics as the Prometheus exporter-toolkit's web configuration FILE says:
    /// HTTPS (tls_server_config, client certificates included), basic_auth_users (bcrypt),
    /// response headers. Read again when it, or a certificate, key or CA it names, changes.
    #[arg(long, value_name = "FILE", requires = "metrics", value_hint = clap::ValueHint::FilePath)]
    pub(super) web_config: Option<PathBuf>,
    /// Matched frames sampled per second and interface, for --events, --pcap and the top
    /// senders (0 to 100000; 0 turns sampling off).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_SAMPLE_RATE,
          value_parser = sample_rate, allow_negative_numbers = true)]
    pub(super) sample_rate: u32,
    /// Show each sampled frame: in the live view's event pane, as `"type": "event"` objects
    /// with --json, otherwise as lines on stderr.
    #[arg(long)]
    pub(super) events: bool,
    /// Write the sampled frames as pcapng to FILE, or to stdout with `-` (then no table or
    /// JSON goes to stdout): `--pcap - | tcpdump -r -`.
    #[arg(long, value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
    pub(super) pcap: Option<String>,
    /// Top senders (from the samples of the last minute) shown per interface, 1 to 1000
    /// [default: 5].
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = top_senders)]
    pub(super) top: Option<u16>,
    #[command(flatten)]
    pub(super) cri: crate::args::CriArgs,
}

/// The interfaces a JSON object lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(super) enum JsonObjects {
    /// Every served interface, in every object.
    Full,
    /// Those that changed since the previous object, and all of them every --full-every.
    Compact,
}

/// Seconds between compact JSON's full objects: at 2,000 interfaces and `--interval 1`, a full
/// object (about 1 MB) every 5 minutes costs about a tenth of the compact ones under pod churn.
const DEFAULT_FULL_EVERY: u32 = 300;

/// The objects from one full one to the next: `--full-every` in `--interval`s, at least 1.
pub(super) fn full_every_objects(full_every_secs: u32, interval_secs: f64) -> u32 {
    // At most 86400 / 0.01: well within u32.
    (f64::from(full_every_secs) / interval_secs).ceil().max(1.0) as u32
}

/// Arguments that clap cannot check alone; exit status 2, as clap's own.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct InvalidArguments(pub(super) String);

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(super) enum OnConflictArg {
    Fail,
    Skip,
    Tc,
}

impl From<OnConflictArg> for OnConflict {
    fn from(arg: OnConflictArg) -> Self {
        match arg {
            OnConflictArg::Fail => Self::Fail,
            OnConflictArg::Skip => Self::Skip,
            OnConflictArg::Tc => Self::Tcx,
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(super) enum XdpModeArg {
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

fn sample_rate(value: &str) -> Result<u32, String> {
    match value.parse::<u32>() {
        Ok(rate) if rate <= MAX_SAMPLE_RATE => Ok(rate),
        _ => Err(format!(
            "must be a whole number of samples per second from 0 (off) to {MAX_SAMPLE_RATE}"
        )),
    }
}

fn metrics_address(value: &str) -> Result<SocketAddr, String> {
    value.parse().map_err(|_| {
        "give an IP address and a port, such as 127.0.0.1:9464, 0.0.0.0:9464 or [::1]:9464"
            .to_owned()
    })
}

fn capacity(value: &str) -> Result<u32, String> {
    match value.parse::<u32>() {
        Ok(n) if (1..=probe_common::MAX_SLOTS).contains(&n) => Ok(n),
        _ => Err(format!(
            "must be a whole number of interfaces from 1 to {}",
            probe_common::MAX_SLOTS
        )),
    }
}

/// The number of top senders shown when `--top` is not given.
pub(super) const DEFAULT_TOP: u16 = 5;

fn top_senders(value: &str) -> Result<u16, String> {
    match value.parse::<u16>() {
        Ok(n @ 1..=1000) => Ok(n),
        _ => Err("must be a whole number of senders from 1 to 1000".to_owned()),
    }
}

/// An interface name or pattern, which may hold any byte (iproute2 accepts names that are not
/// UTF-8, and the audit's remedies give them as they are).
fn name_pattern() -> impl clap::builder::TypedValueParser<Value = NamePattern> {
    use clap::builder::TypedValueParser as _;
    clap::builder::OsStringValueParser::new().try_map(|value| NamePattern::from_os(&value))
}
