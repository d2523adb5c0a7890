//! `localnet-probe detach`: takes the standing filter off interfaces.

use clap::Args;
use clap_complete::ArgValueCandidates;
use probe_user::{net::names::printable, session::standing};

#[derive(Debug, Args)]
pub(crate) struct DetachArgs {
    /// Detach from this interface only (repeatable; a name or a shell-style pattern such as
    /// 'veth*'). Default: from every interface, removing the whole standing filter.
    #[arg(long = "iface", value_name = "IF|PATTERN",
          add = ArgValueCandidates::new(crate::args::interface_candidates))]
    ifaces: Vec<std::ffi::OsString>,
}

pub(crate) fn detach(args: &DetachArgs) -> anyhow::Result<()> {
    let detached = standing::detach(&args.ifaces)?;
    // A run killed by SIGKILL leaves its clsact filters (a netlink filter outlives its process):
    // gone with the standing filter's, or alone when none is pinned.
    for removed in standing::remove_killed_runs_filters()? {
        tracing::info!("{}", printable(&removed));
    }
    let Some(detached) = detached else {
        tracing::info!("no standing filter is pinned in this network namespace: nothing to detach");
        return Ok(());
    };
    if let Some(error) = &detached.unreadable {
        tracing::warn!(
            "removed the standing filter without reading its interfaces and counts: {error}"
        );
    }
    for interface in &detached.detached {
        tracing::info!(
            "detached from {} (its counts: {})",
            printable(&interface.name),
            interface.totals
        );
    }
    for interface in &detached.gone {
        tracing::info!(
            "cleared the pins of {} (ifindex {}), which no longer exists (its last counts: {})",
            printable(&interface.name),
            interface.ifindex,
            interface.totals
        );
    }
    for entry in &detached.foreign {
        tracing::warn!(
            "left {}: localnet-probe did not put it there",
            printable(&detached.dir.join(entry).to_string_lossy())
        );
    }
    if !detached.stayed.is_empty() {
        anyhow::bail!(
            "could not remove all of the standing filter in {}: {}; what stayed still filters",
            detached.dir.display(),
            printable(&detached.stayed.join(", "))
        );
    }
    if detached.removed_dir {
        tracing::info!("removed {}", detached.dir.display());
    } else if detached.remaining.is_empty() {
        tracing::info!(
            "removed the standing filter from {}, which keeps what localnet-probe did not put \
             there",
            detached.dir.display()
        );
    } else {
        tracing::info!(
            "the standing filter in {} still serves {}",
            detached.dir.display(),
            printable(&detached.remaining.join(", "))
        );
    }
    Ok(())
}
