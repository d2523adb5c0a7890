//! The standing filter without serving it: `detach` removes it, of all or of some interfaces;
//! `status` reads it through [`crate::session::Session::observe`].

use std::{collections::BTreeMap, path::PathBuf};

use crate::{
    net::interfaces::Interfaces,
    net::names::{NamePatterns, printable},
    net::privileges,
    probe::filters,
    probe::pins::{PinDir, PinError, PinLock, Removed},
    probe::{Probe, ProbeError},
    session::SessionError,
    session::select::SelectError,
    session::totals::Totals,
};

/// An interface `detach` took the standing filter off, or whose pins it cleared because the
/// interface is gone.
#[derive(Debug)]
pub struct DetachedInterface {
    pub name: String,
    pub ifindex: u32,
    pub totals: Totals,
}

/// What `detach` did.
#[derive(Debug)]
pub struct Detached {
    pub dir: PathBuf,
    pub detached: Vec<DetachedInterface>,
    /// Interfaces that no longer exist, whose pins were cleared.
    pub gone: Vec<DetachedInterface>,
    /// Interfaces the standing filter still serves.
    pub remaining: Vec<String>,
    /// Whether the whole directory went: nothing was left in it, or it was from an
    /// incompatible version, and nothing of another's was in it.
    pub removed_dir: bool,
    /// Why the directory was removed whole without reading it: its pins are from an
    /// incompatible version, or were changed by something else.
    pub unreadable: Option<PinError>,
    /// Entries in it that localnet-probe did not put there, left alone (as `entry` or
    /// `links/entry`).
    pub foreign: Vec<String>,
    /// What of its own stayed, each with why: `detach` failed.
    pub stayed: Vec<String>,
}

/// Takes the standing filter off the interfaces `patterns` name (literal names or shell-style
/// patterns; all of them when empty) and clears the pins of interfaces that are gone. `None`
/// when nothing is pinned in this namespace.
pub fn detach(patterns: &[impl AsRef<std::ffi::OsStr>]) -> Result<Option<Detached>, SessionError> {
    if let Some(missing) = privileges::missing_to_read() {
        return Err(SessionError::Privileges(missing));
    }
    let _lock = PinLock::take()?;
    let dir = PinDir::of_this_namespace().map_err(SessionError::Namespace)?;
    dir.require_visible()?;
    // Entries of others do not keep it from removing its own.
    let (standing, foreign) = match dir.standing_among_foreign() {
        Ok((Some(standing), foreign)) => (standing, foreign),
        Ok((None, _)) => {
            // Nothing complete: whatever is there cannot filter anything.
            let existed = dir.path.exists();
            let removed = dir.remove().map_err(|error| access(&dir, error))?;
            return Ok(existed.then(|| Detached {
                dir: dir.path.clone(),
                detached: Vec::new(),
                gone: Vec::new(),
                remaining: Vec::new(),
                removed_dir: removed.all(),
                unreadable: None,
                foreign: removed.foreign,
                stayed: stayed_pins(&dir, removed.stayed),
            }));
        }
        Err(error @ (PinError::Incompatible { .. } | PinError::Corrupt { .. }))
            if patterns.is_empty() =>
        {
            return remove_unreadable(&dir, error).map(Some);
        }
        Err(error) => return Err(error.into()),
    };
    let path = dir.path.clone();
    let (mut probe, gone) = match Probe::read_standing(dir.clone(), standing.capacity) {
        Ok(read) => read,
        Err(ProbeError::Pin(error @ PinError::Corrupt { .. })) if patterns.is_empty() => {
            return remove_unreadable(&dir, error).map(Some);
        }
        Err(error) => return Err(read_error(error)),
    };
    let names: BTreeMap<u32, String> = Interfaces::connect()?
        .list()?
        .into_iter()
        .map(|interface| (interface.ifindex, interface.name))
        .collect();
    let served: Vec<(u32, String)> = probe
        .served()
        .map(|(ifindex, _)| {
            let name = names
                .get(&ifindex)
                .cloned()
                .unwrap_or_else(|| format!("ifindex {ifindex}"));
            (ifindex, name)
        })
        .collect();
    let chosen: Vec<&(u32, String)> = if patterns.is_empty() {
        served.iter().collect()
    } else {
        let patterns = NamePatterns::new(patterns, "--iface").map_err(SelectError::from)?;
        let names = served.iter().map(|(_, name)| name.as_str());
        // The name of an interface that is gone is known too: its pins are cleared below.
        let known = names
            .clone()
            .chain(gone.iter().map(|gone| gone.name.as_str()));
        if let Some(unknown) = patterns.unknown_literal(known) {
            return Err(SelectError::NotPinned {
                name: unknown.to_owned(),
                served: names.collect::<Vec<_>>().join(", "),
            }
            .into());
        }
        served
            .iter()
            .filter(|(_, name)| patterns.matches(name))
            .collect()
    };
    // One that cannot be detached keeps none of the others attached.
    let mut stayed = Vec::new();
    let mut detached = Vec::new();
    let mut failed = Vec::new();
    for (ifindex, name) in &chosen {
        match probe.release(*ifindex) {
            Ok(counters) => detached.push(DetachedInterface {
                name: name.clone(),
                ifindex: *ifindex,
                totals: Totals::of(&counters),
            }),
            Err(error) => {
                stayed.push(format!("{} ({})", printable(name), with_sources(&error)));
                failed.push(*ifindex);
            }
        }
    }
    let mut cleared = Vec::new();
    for gone in gone {
        match probe.clear_gone(&gone) {
            Ok(()) => cleared.push(DetachedInterface {
                name: gone.name.clone(),
                ifindex: gone.ifindex,
                totals: Totals::of(&gone.counters),
            }),
            Err(error) => stayed.push(format!(
                "the pins of {}, which is gone ({})",
                printable(&gone.name),
                with_sources(&error)
            )),
        }
    }
    let remaining: Vec<String> = served
        .iter()
        .filter(|served| !chosen.contains(served) || failed.contains(&served.0))
        .map(|(_, name)| name.clone())
        .collect();
    // Filters of the standing filter its pins do not record, and of runs killed by SIGKILL.
    if let Err(error) = probe.remove_leftover_filters(names.keys().copied(), true) {
        stayed.push(format!("clsact filters ({})", with_sources(&error)));
    }
    drop(probe);
    let removed = if remaining.is_empty() && stayed.is_empty() {
        dir.remove().map_err(|error| access(&dir, error))?
    } else {
        Removed {
            foreign,
            stayed: Vec::new(),
        }
    };
    stayed.extend(stayed_pins(&dir, removed.stayed));
    Ok(Some(Detached {
        dir: path,
        detached,
        gone: cleared,
        removed_dir: remaining.is_empty() && removed.foreign.is_empty() && stayed.is_empty(),
        remaining,
        unreadable: None,
        foreign: removed.foreign,
        stayed,
    }))
}

/// Removes, on every interface here, the clsact filters of runs killed by SIGKILL (their owner
/// gone), whether or not a standing filter is pinned; what was removed, said as sentences.
pub fn remove_killed_runs_filters() -> Result<Vec<String>, SessionError> {
    if let Some(missing) = privileges::missing_to_read() {
        return Err(SessionError::Privileges(missing));
    }
    let all = Interfaces::connect()?.list()?;
    let removed = filters::remove_leftovers(all.iter().map(|interface| interface.ifindex), None)
        .map_err(|error| SessionError::Load(Box::new(ProbeError::Attach(error))))?;
    Ok(removed
        .iter()
        .map(|leftover| leftover.sentence(&super::serve::name_of(&all, leftover.ifindex)))
        .collect())
}

/// Removes the standing filter in `dir` whole, for `error`, which keeps it from being read: its
/// links detach with their pins, no process holding them while the lock is taken.
fn remove_unreadable(dir: &PinDir, error: PinError) -> Result<Detached, SessionError> {
    let removed = dir.remove().map_err(|removing| access(dir, removing))?;
    Ok(Detached {
        dir: dir.path.clone(),
        detached: Vec::new(),
        gone: Vec::new(),
        remaining: Vec::new(),
        removed_dir: removed.all(),
        unreadable: Some(error),
        foreign: removed.foreign,
        stayed: stayed_pins(dir, removed.stayed),
    })
}

/// The pins of `dir` that [`PinDir::remove`] could not remove, each with why.
fn stayed_pins(dir: &PinDir, stayed: Vec<(String, std::io::Error)>) -> Vec<String> {
    stayed
        .into_iter()
        .map(|(entry, error)| format!("{} ({error})", dir.path.join(entry).display()))
        .collect()
}

/// `error` and its sources, as one line.
fn with_sources(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(error) = source {
        text.push_str(&format!(": {error}"));
        source = error.source();
    }
    text
}

fn access(dir: &PinDir, error: std::io::Error) -> SessionError {
    SessionError::Pin(PinError::Access {
        what: "remove",
        path: dir.path.clone(),
        error,
    })
}

/// An error reading a standing filter, which `status` and `detach` do not take over: a pin's
/// own error as it is, others as an error reading its counters.
pub(super) fn read_error(error: ProbeError) -> SessionError {
    match error {
        ProbeError::Pin(error) => SessionError::Pin(error),
        error => SessionError::Counters(Box::new(error)),
    }
}
