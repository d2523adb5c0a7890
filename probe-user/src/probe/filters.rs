//! The probe's clsact filters, on kernels without tcx: a filter belongs to no process, so each
//! carries its owner in its handle, and whoever owns it deletes it: the process that made it
//! (when its [`Filter`] is dropped: on every way out but SIGKILL), the standing filter (through
//! `detach`), or, after a SIGKILL, the next start, which finds the filters whose owner is gone.
//!
//! A filter is the probe's when it is a cls_bpf filter at [`PRIORITY`], with a handle of
//! [`HANDLE_MAJOR`], running a program it named with one of the probe's program names. Its
//! handle's minor number says who owns it: 0 the standing filter (whose pins record it), any
//! other the process that holds the abstract socket of that number in this network namespace
//! (which goes away with the process however it ends, and is seen whatever the process's user
//! or PID namespace). Its top bit says the probe added the clsact qdisc, which is then deleted
//! with the probe's last filter on it, unless another's filter is on it.

use std::{
    io,
    os::{
        fd::BorrowedFd,
        linux::net::SocketAddrExt as _,
        unix::net::{SocketAddr, UnixListener},
    },
};

use probe_common::Framing;

use crate::{
    kernel::tc::{self, FilterInfo, FilterPlace},
    probe::attachment::{Direction, Stage, XdpPrograms, program_name},
};

/// The priority of the probe's filters: the first to run (lower runs first), before filters
/// that end the chain (`tc` gives 49152 and below when none is asked for).
pub const PRIORITY: u16 = 1;
/// The major number of the probe's filter handles, "LP".
const HANDLE_MAJOR: u32 = 0x4c50 << 16;
/// In a handle: the probe added the clsact qdisc the filter is on.
const CLSACT_ADDED: u32 = 1 << 15;
/// The owner's part of a handle: 0 for the standing filter, a process's token otherwise.
const OWNER_MASK: u32 = CLSACT_ADDED - 1;
const STANDING_OWNER: u32 = 0;

/// Who owns the filters a probe makes: the standing filter, or this process, which holds its
/// token while it lives.
#[derive(Debug)]
pub struct FilterOwner {
    token: u32,
    _held: Option<UnixListener>,
}

impl FilterOwner {
    /// The standing filter of this namespace.
    pub const fn standing() -> Self {
        Self {
            token: STANDING_OWNER,
            _held: None,
        }
    }

    /// This process: a token no other living process of this namespace holds.
    pub fn process() -> io::Result<Self> {
        let start = std::process::id() % OWNER_MASK;
        for step in 0..OWNER_MASK {
            let token = (start + step) % OWNER_MASK + 1;
            match hold(token) {
                Ok(listener) => {
                    return Ok(Self {
                        token,
                        _held: Some(listener),
                    });
                }
                Err(error) if error.kind() == io::ErrorKind::AddrInUse => {}
                Err(error) => return Err(error),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "every token of a filter's owner is held",
        ))
    }

    fn handle(&self, clsact_added: bool) -> u32 {
        HANDLE_MAJOR | if clsact_added { CLSACT_ADDED } else { 0 } | self.token
    }
}

/// Binds the abstract socket of owner `token`.
fn hold(token: u32) -> io::Result<UnixListener> {
    let name = format!("localnet-probe/tc-filter-owner/{token}");
    UnixListener::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes())?)
}

/// A filter of the probe's on an interface's clsact qdisc; deleted when dropped, unless kept
/// (pinned by the standing filter).
#[derive(Debug)]
pub struct Filter {
    place: FilterPlace,
    kept: bool,
}

impl Filter {
    /// Adds the clsact qdisc to `ifindex` if it has none (or counts it as added when
    /// `clsact_added`: another filter of this probe's there added it) and puts `program_fd`'s
    /// program there in `direction`, first.
    pub fn attach(
        owner: &FilterOwner,
        (program_fd, program): (BorrowedFd<'_>, Framing),
        ifindex: u32,
        direction: Direction,
        clsact_added: bool,
    ) -> io::Result<Self> {
        let added = tc::add_clsact(ifindex)? || clsact_added;
        let place = FilterPlace {
            ifindex,
            direction,
            priority: PRIORITY,
            handle: owner.handle(added),
        };
        let name = program_name(program, Stage::Tc(direction), XdpPrograms::MultiBuffer);
        match tc::attach(place, program_fd, name, false) {
            Ok(()) => Ok(Self { place, kept: false }),
            Err(error) => {
                if added {
                    let _ = delete_clsact_if_unused(ifindex);
                }
                Err(error)
            }
        }
    }

    /// The standing filter's filter at `ifindex` in `direction`, as its pins record it, with
    /// its program's id, if it is there: kept, not deleted when dropped.
    pub fn pinned(
        ifindex: u32,
        direction: Direction,
        clsact_added: bool,
    ) -> io::Result<Option<(Self, u32)>> {
        let handle = FilterOwner::standing().handle(clsact_added);
        let found = tc::filters(ifindex, direction)?
            .into_iter()
            .find(|filter| is_probes(filter, direction) && filter.handle == handle);
        let place = FilterPlace {
            ifindex,
            direction,
            priority: PRIORITY,
            handle,
        };
        Ok(found.map(|filter| {
            (
                Self { place, kept: true },
                filter.program_id.unwrap_or_default(),
            )
        }))
    }

    /// Runs `program_fd`'s program from the next frame on, in place of the one there.
    pub fn replace(&self, program_fd: BorrowedFd<'_>, program: Framing) -> io::Result<()> {
        let name = program_name(
            program,
            Stage::Tc(self.place.direction),
            XdpPrograms::MultiBuffer,
        );
        tc::attach(self.place, program_fd, name, true)
    }

    /// Whether the probe added the clsact qdisc this filter is on.
    pub const fn clsact_added(&self) -> bool {
        self.place.handle & CLSACT_ADDED != 0
    }

    /// Whether it is the standing filter's.
    pub const fn is_standing(&self) -> bool {
        self.place.handle & OWNER_MASK == STANDING_OWNER
    }

    /// Leaves it in place when dropped, or deletes it then again.
    pub const fn keep(&mut self, kept: bool) {
        self.kept = kept;
    }

    /// Whether it is still on its interface: false once the interface is gone.
    pub fn is_attached(&self) -> bool {
        tc::filters(self.place.ifindex, self.place.direction).is_ok_and(|filters| {
            filters.iter().any(|filter| {
                filter.handle == self.place.handle && is_probes(filter, self.place.direction)
            })
        })
    }

    /// The filters that run before it, first to last, by program id (0 for a filter without
    /// one, of another kind).
    pub fn preceded_by(&self) -> io::Result<Vec<u32>> {
        let filters = tc::filters(self.place.ifindex, self.place.direction)?;
        Ok(ahead_of(&filters, |filter| {
            filter.handle == self.place.handle && filter.priority == PRIORITY
        }))
    }
}

impl Drop for Filter {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        if tc::delete(self.place).is_ok() && self.clsact_added() {
            let _ = delete_clsact_if_unused(self.place.ifindex);
        }
    }
}

/// Deletes `ifindex`'s clsact qdisc if no filter is left on it, in either direction.
fn delete_clsact_if_unused(ifindex: u32) -> io::Result<()> {
    for direction in [Direction::Ingress, Direction::Egress] {
        if !tc::filters(ifindex, direction)?.is_empty() {
            return Ok(());
        }
    }
    tc::delete_clsact(ifindex)
}

/// Whether `filter` is one of the probe's, at a hook in `direction`.
fn is_probes(filter: &FilterInfo, direction: Direction) -> bool {
    filter.kind == "bpf"
        && filter.priority == PRIORITY
        && filter.handle & !(CLSACT_ADDED | OWNER_MASK) == HANDLE_MAJOR
        && filter.bpf_name.as_deref().is_some_and(|name| {
            Framing::ALL.into_iter().any(|program| {
                program_name(program, Stage::Tc(direction), XdpPrograms::MultiBuffer) == name
            })
        })
}

/// The probe's filter at `ifindex`'s clsact qdisc in `direction`, whoever's it is: its
/// program's id, and whether it is the standing filter's.
pub fn probes_at(ifindex: u32, direction: Direction) -> io::Result<Option<(u32, bool)>> {
    Ok(tc::filters(ifindex, direction)?
        .into_iter()
        .find(|filter| is_probes(filter, direction))
        .map(|filter| {
            (
                filter.program_id.unwrap_or_default(),
                filter.handle & OWNER_MASK == STANDING_OWNER,
            )
        }))
}

/// The filters before the probe's (running `program_id`) at `ifindex`'s clsact ingress, by
/// program id (0 for a filter of another kind).
pub fn preceding(ifindex: u32, program_id: u32) -> io::Result<Vec<u32>> {
    let filters = tc::filters(ifindex, Direction::Ingress)?;
    Ok(ahead_of(&filters, |filter| {
        is_probes(filter, Direction::Ingress) && filter.program_id == Some(program_id)
    }))
}

/// The program ids of `filters` before the first that is `ours`.
fn ahead_of(filters: &[FilterInfo], ours: impl Fn(&FilterInfo) -> bool) -> Vec<u32> {
    filters
        .iter()
        .take_while(|filter| !ours(filter))
        .map(|filter| filter.program_id.unwrap_or(0))
        .collect()
}

/// A filter of a run that is gone, deleted by [`remove_leftovers`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leftover {
    pub ifindex: u32,
    pub direction: Direction,
    /// Its program's id.
    pub program_id: Option<u32>,
}

impl Leftover {
    /// What was done, for the interface named `name`, as start-up and `detach` say it.
    pub fn sentence(&self, name: &str) -> String {
        format!(
            "{name}: removed the clsact filter at tc {} (program id {}) that a localnet-probe \
             killed before it could remove it left",
            self.direction.name(),
            self.program_id
                .map_or_else(|| "?".to_owned(), |id| id.to_string())
        )
    }
}

/// Deletes the probe's filters on `ifindexes` whose owner is gone: those of processes that no
/// longer live (killed with SIGKILL), and, with `standing` (given only while holding the
/// standing filter's lock), the standing filter's that it says its pins do not record. Others'
/// filters are never touched, nor a clsact qdisc another's filter is on.
pub fn remove_leftovers(
    ifindexes: impl IntoIterator<Item = u32>,
    standing: Option<&dyn Fn(u32, Direction) -> bool>,
) -> io::Result<Vec<Leftover>> {
    let mut removed = Vec::new();
    for ifindex in ifindexes {
        let mut clsact_added = false;
        for direction in [Direction::Ingress, Direction::Egress] {
            for filter in tc::filters(ifindex, direction)? {
                if !is_probes(&filter, direction) {
                    continue;
                }
                let owner = filter.handle & OWNER_MASK;
                // Bound while the filter is deleted: no new process takes its token meanwhile.
                let held;
                let gone = if owner == STANDING_OWNER {
                    held = None;
                    standing.is_some_and(|recorded| !recorded(ifindex, direction))
                } else {
                    held = hold(owner).ok();
                    held.is_some()
                };
                if !gone {
                    continue;
                }
                tc::delete(FilterPlace {
                    ifindex,
                    direction,
                    priority: filter.priority,
                    handle: filter.handle,
                })?;
                drop(held);
                clsact_added |= filter.handle & CLSACT_ADDED != 0;
                removed.push(Leftover {
                    ifindex,
                    direction,
                    program_id: filter.program_id,
                });
            }
        }
        if clsact_added {
            delete_clsact_if_unused(ifindex)?;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(handle: u32, name: &str) -> FilterInfo {
        FilterInfo {
            priority: PRIORITY,
            handle,
            kind: "bpf".to_owned(),
            bpf_name: Some(name.to_owned()),
            program_id: Some(7),
        }
    }

    #[test]
    fn only_the_probes_filters_are_its_own() {
        let ours = filter(0x4c50_8003, "localnet_probe_tc");
        assert!(is_probes(&ours, Direction::Ingress));
        // The egress program's name at ingress, and the other way round.
        assert!(!is_probes(&ours, Direction::Egress));
        assert!(is_probes(
            &filter(0x4c50_0000, "localnet_probe_out_ip"),
            Direction::Egress
        ));
        // Another tool's: another handle, another name, another priority or kind.
        assert!(!is_probes(
            &filter(1, "localnet_probe_tc"),
            Direction::Ingress
        ));
        assert!(!is_probes(
            &filter(0x4c50_0001, "cil_from_netdev"),
            Direction::Ingress
        ));
        let mut elsewhere = ours.clone();
        elsewhere.priority = 2;
        assert!(!is_probes(&elsewhere, Direction::Ingress));
        let mut matchall = ours;
        matchall.kind = "matchall".to_owned();
        assert!(!is_probes(&matchall, Direction::Ingress));
    }

    #[test]
    fn a_handle_carries_its_owner_and_the_qdisc() {
        let owner = FilterOwner {
            token: 5,
            _held: None,
        };
        assert_eq!(owner.handle(false), 0x4c50_0005);
        assert_eq!(owner.handle(true), 0x4c50_8005);
        assert_eq!(FilterOwner::standing().handle(true), 0x4c50_8000);
    }
}
