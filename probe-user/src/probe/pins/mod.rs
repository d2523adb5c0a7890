//! The standing filter: what `run --pin` leaves in the BPF file system so that its interfaces
//! stay filtered and counted after it exits, and what a later `run --pin`, `status` and
//! `detach` find there. One directory per network namespace:
//!
//! ```text
//! /sys/fs/bpf/localnet-probe/net-<namespace inode>/
//!   STANDING                   what made it: layout version, the namespace's cookie, capacity
//!   INTERFACES                 each served ifindex's name, program and hook (XDP mode, tcx,
//!                              or a clsact filter where the kernel has no tcx)
//!   IFACE_CONFIG IFACE_CONFIG_HIGH COUNTERS SAMPLE_COUNTS   the programs' maps
//!   links/<ifindex>            the XDP or tcx ingress links that keep the programs attached
//!   links-egress/<ifindex>     the tcx egress links of interfaces whose replies are counted
//!   gen-<n>/                   from 1 on, each generation loaded as it grew (see
//!     INTERFACES IFACE_CONFIG  `probe::generation`): the interfaces it serves and its maps,
//!     IFACE_CONFIG_HIGH        its room that of its COUNTERS
//!     COUNTERS SAMPLE_COUNTS
//! ```
//!
//! `STANDING`, `INTERFACES` and the maps at the top are generation 0's. An interface's entry
//! is in the `INTERFACES` of the generation that serves it; its links are in `links/` whatever
//! the generation. A generation's `INTERFACES` is pinned last: one without it is left by a
//! process stopped while pinning it, and serves nothing.
//!
//! A clsact filter cannot be pinned: it stays until deleted. Its `INTERFACES` entry records it
//! (at ingress by its hook, at egress by a flag), and it has the standing filter's handle (see
//! [`crate::probe::filters`]), by which the next `run --pin` finds it and `detach` deletes it.
//!
//! An interface is pinned in this order: its `INTERFACES` entry, its configuration, its link;
//! a process killed at any point leaves it attached and configured, or with an entry and no
//! link, which the next `run --pin` clears.

mod generations;
mod lock;
mod namespace;
mod records;

use std::{
    fs, io,
    os::fd::AsFd as _,
    path::{Path, PathBuf},
};

use aya::maps::{Array, HashMap, IterableMap as _, Map, MapData};
use probe_common::{Counter, IfaceConfig, SampleCounts, map_names};
use thiserror::Error;

pub use self::namespace::pins_vanish;
use self::namespace::{mount_warning, netns_cookie};
pub use self::{
    lock::{PinLock, serving_process},
    records::{LAYOUT, PinnedInterface, Standing},
};
use crate::{
    kernel::bpffs::{self, MapKind},
    probe::attachment::Direction,
};

/// Where the BPF file system is mounted.
pub const BPFFS: &str = "/sys/fs/bpf";
/// localnet-probe's directory in it.
pub const BASE: &str = "/sys/fs/bpf/localnet-probe";

/// The programs' maps a later probe takes over, with their types and key and value sizes.
const PROGRAM_MAPS: [(&str, aya::maps::MapType, usize, usize); 4] = [
    (
        map_names::IFACE_CONFIG,
        aya::maps::MapType::Array,
        size_of::<u32>(),
        size_of::<IfaceConfig>(),
    ),
    (
        map_names::IFACE_CONFIG_HIGH,
        aya::maps::MapType::Hash,
        size_of::<u32>(),
        size_of::<IfaceConfig>(),
    ),
    (
        map_names::COUNTERS,
        aya::maps::MapType::PerCpuArray,
        size_of::<u32>(),
        size_of::<Counter>(),
    ),
    (
        map_names::SAMPLE_COUNTS,
        aya::maps::MapType::PerCpuArray,
        size_of::<u32>(),
        size_of::<SampleCounts>(),
    ),
];
const STANDING: &str = "STANDING";
const INTERFACES: &str = "INTERFACES";
const LINKS: &str = "links";
const EGRESS_LINKS: &str = "links-egress";
/// The directories of the generations after the first: `gen-1`, `gen-2`, …
const GENERATION_PREFIX: &str = "gen-";

#[derive(Debug, Error)]
pub enum PinError {
    #[error(
        "no BPF file system is mounted at {BPFFS} and mounting one failed ({0}; it takes \
         CAP_SYS_ADMIN); mount it as root (`mount -t bpf bpf {BPFFS}`) or leave out --pin"
    )]
    NotMountable(io::Error),
    #[error(
        "cannot {what} {path}: {error}; the BPF file system belongs to root: run as root, or \
         add CAP_DAC_OVERRIDE (to CAP_BPF and CAP_NET_ADMIN for `run --pin`, to CAP_BPF alone \
         for `status` and `detach`)"
    )]
    Access {
        what: &'static str,
        path: PathBuf,
        error: io::Error,
    },
    #[error(
        "{path} holds {entry:?}, which localnet-probe did not put there; move it away or remove \
         it, then start again (`localnet-probe detach` removes the standing filter and leaves \
         it)"
    )]
    Foreign { path: PathBuf, entry: String },
    #[error(
        "the standing filter in {path} was pinned by an incompatible version of localnet-probe \
         ({reason}); remove it with `localnet-probe detach` (its interfaces are unfiltered until \
         the next `localnet-probe run --pin`)"
    )]
    Incompatible { path: PathBuf, reason: String },
    #[error(
        "another `localnet-probe run --pin` ({holder}) serves this network namespace's standing \
         filter; stop it first (its filter stays pinned), or see it with `localnet-probe status`"
    )]
    Busy { holder: String },
    #[error(
        "no BPF file system is mounted at {BPFFS} in this mount namespace (as under `ip netns \
         exec`), so a standing filter's pins cannot be seen from here: run `{nsenter} \
         localnet-probe …` instead"
    )]
    Invisible {
        /// `nsenter --net=…` into this network namespace, by its name when it has one.
        nsenter: String,
    },
    #[error(
        "{}: {problem}; the standing filter's pins were changed by something other than \
         localnet-probe and cannot be trusted: remove it with `localnet-probe detach` (its \
         interfaces are unfiltered until the next `localnet-probe run --pin`)",
        path.join(pin).display()
    )]
    Corrupt {
        path: PathBuf,
        pin: &'static str,
        problem: String,
    },
    #[error("cannot take the standing filter's lock: {0}")]
    Lock(io::Error),
    #[error("cannot read or write the pinned {name}: {error}")]
    Map { name: &'static str, error: String },
}

/// What [`PinDir::prepare`] had to do.
#[derive(Debug, Default)]
pub struct Prepared {
    /// Said when it mounted a BPF file system, or when the one mounted is this mount
    /// namespace's own.
    pub warning: Option<String>,
    /// Whether the pins go away with this mount namespace, `None` when that cannot
    /// be told (see [`pins_vanish`]).
    pub vanishing: Option<bool>,
}

/// What [`PinDir::look`] found.
enum Looked {
    Nothing,
    Standing(Standing),
    /// Pins of a standing filter this program stopped making.
    Leftover,
    /// A standing filter of a network namespace that had the same inode and is gone.
    OtherNamespace,
}

/// This network namespace's directory of the standing filter.
#[derive(Clone, Debug)]
pub struct PinDir {
    pub path: PathBuf,
    netns_cookie: u64,
}

/// What a directory holds.
#[derive(Debug)]
pub enum Found {
    Nothing,
    /// A standing filter this version can take over.
    Standing(Standing),
}

impl PinDir {
    /// This namespace's directory, whether or not it exists.
    pub fn of_this_namespace() -> io::Result<Self> {
        let inode = fs::metadata("/proc/self/ns/net")?;
        Ok(Self {
            path: Path::new(BASE).join(format!(
                "net-{}",
                std::os::unix::fs::MetadataExt::ino(&inode)
            )),
            netns_cookie: netns_cookie()?,
        })
    }

    /// Makes sure the directory can take pins: mounts the BPF file system when it is not
    /// (saying so), and says whether the mount outlives this process. The directory itself is made
    /// by [`PinDir::pin_new`], so that a start that fails before leaves none.
    pub fn prepare(&self) -> Result<Prepared, PinError> {
        let root = Path::new(BPFFS);
        let mounted_here = !bpffs::is_mounted(root).unwrap_or(false);
        if mounted_here {
            bpffs::mount(root).map_err(PinError::NotMountable)?;
        }
        let vanishing = pins_vanish(mounted_here);
        Ok(Prepared {
            warning: mount_warning(mounted_here, vanishing),
            vanishing,
        })
    }

    /// What the directory holds; an unusable one is an error, an incomplete one that this
    /// program left, or one of a namespace that is gone, is cleared (the returned note says
    /// so).
    pub fn inspect(&self) -> Result<(Found, Option<String>), PinError> {
        let found = self.look()?;
        let note = match found {
            Looked::Standing(standing) => return Ok((Found::Standing(standing), None)),
            Looked::Nothing => None,
            Looked::Leftover => Some(format!(
                "cleared {}: an incomplete standing filter that a localnet-probe stopped while \
                 pinning left",
                self.path.display()
            )),
            Looked::OtherNamespace => Some(format!(
                "cleared {}: it was left by a network namespace that no longer exists",
                self.path.display()
            )),
        };
        if note.is_some() {
            let access = |path, error| PinError::Access {
                what: "clear",
                path,
                error,
            };
            let removed = self
                .remove()
                .map_err(|error| access(self.path.clone(), error))?;
            if let Some((entry, error)) = removed.stayed.into_iter().next() {
                return Err(access(self.path.join(entry), error));
            }
        }
        Ok((Found::Nothing, note))
    }

    /// The standing filter in the directory, if it holds a complete one of this namespace;
    /// nothing is changed.
    pub fn standing(&self) -> Result<Option<Standing>, PinError> {
        Ok(match self.look()? {
            Looked::Standing(standing) => Some(standing),
            _ => None,
        })
    }

    /// As [`PinDir::standing`], past entries localnet-probe did not put there, which are
    /// returned (as `entry` or `links/entry`): `detach` removes what is its own and leaves them.
    pub fn standing_among_foreign(&self) -> Result<(Option<Standing>, Vec<String>), PinError> {
        let Some(entries) = self.entries()? else {
            return Ok((None, Vec::new()));
        };
        let standing = match self.look_at(&entries.ours)? {
            Looked::Standing(standing) => Some(standing),
            _ => None,
        };
        Ok((standing, entries.foreign))
    }

    fn look(&self) -> Result<Looked, PinError> {
        let Some(entries) = self.entries()? else {
            return Ok(Looked::Nothing);
        };
        if let Some(entry) = entries.foreign.into_iter().next() {
            return Err(PinError::Foreign {
                path: self.path.clone(),
                entry,
            });
        }
        self.look_at(&entries.ours)
    }

    /// The directory's entries, `None` when there is no directory.
    fn entries(&self) -> Result<Option<Entries>, PinError> {
        let read = |error| PinError::Access {
            what: "read",
            path: self.path.clone(),
            error,
        };
        let entries = match fs::read_dir(&self.path) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(read(error)),
        };
        let mut found = Entries::default();
        for entry in entries {
            let entry = entry.map_err(read)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
            let ours = if name == LINKS || name == EGRESS_LINKS || generation_of(&name).is_some() {
                is_dir
            } else {
                !is_dir && (name == STANDING || name == INTERFACES || is_program_map(&name))
            };
            if !ours {
                found.foreign.push(name);
                continue;
            }
            if is_dir {
                // Links are pinned under their ifindex, a generation's maps under their names,
                // nothing else.
                for inside in fs::read_dir(entry.path()).map_err(read)? {
                    let inside = inside.map_err(read)?;
                    let inside_name = inside.file_name().to_string_lossy().into_owned();
                    if !is_ours_inside(&name, &inside_name, &inside) {
                        found.foreign.push(format!("{name}/{inside_name}"));
                    }
                }
            }
            found.ours.push(name);
        }
        Ok(Some(found))
    }

    fn look_at(&self, names: &[String]) -> Result<Looked, PinError> {
        if !names.iter().any(|name| name == STANDING) {
            // Pinned before STANDING, the last map pinned: no link can be there yet.
            return Ok(
                if names
                    .iter()
                    .any(|name| name != LINKS && name != EGRESS_LINKS)
                {
                    Looked::Leftover
                } else {
                    Looked::Nothing
                },
            );
        }
        let standing = self.read_standing()?;
        if standing.netns_cookie != self.netns_cookie {
            // A namespace that is gone had this inode: its links went with its devices.
            return Ok(Looked::OtherNamespace);
        }
        self.check_program_maps(&standing)?;
        Ok(Looked::Standing(standing))
    }

    /// An error unless a BPF file system is mounted where pins are looked for: a mount
    /// namespace without one (as `ip netns exec` makes) cannot see a standing filter.
    pub fn require_visible(&self) -> Result<(), PinError> {
        if bpffs::is_mounted(Path::new(BPFFS)).unwrap_or(false) {
            Ok(())
        } else {
            Err(PinError::Invisible {
                nsenter: crate::net::netns::nsenter_here(),
            })
        }
    }

    /// The path a program map is pinned at.
    pub fn map_path(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The names of the programs' maps pinned here.
    pub fn program_maps() -> impl Iterator<Item = &'static str> {
        PROGRAM_MAPS.iter().map(|(name, ..)| *name)
    }

    /// The path of `ifindex`'s link in `direction`.
    pub fn link_path(&self, ifindex: u32, direction: Direction) -> PathBuf {
        self.path
            .join(links_dir(direction))
            .join(ifindex.to_string())
    }

    /// The ifindexes of the links pinned here in `direction`.
    pub fn pinned_links(&self, direction: Direction) -> io::Result<Vec<u32>> {
        let mut ifindexes = Vec::new();
        for entry in fs::read_dir(self.path.join(links_dir(direction)))? {
            let entry = entry?;
            // Others are refused by `look`, and left by `detach`.
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_link_pin(&name, &entry) {
                ifindexes.extend(name.parse::<u32>().ok());
            }
        }
        ifindexes.sort_unstable();
        Ok(ifindexes)
    }

    /// Creates the directory and the maps only userspace reads, and pins them and the
    /// programs' `maps`, STANDING last: a directory with STANDING is complete. On an error
    /// nothing is left.
    pub fn pin_new(
        &self,
        capacity: u32,
        program_maps: &[(&'static str, &MapData)],
    ) -> Result<HashMap<MapData, u32, PinnedInterface>, PinError> {
        let pinned = self.try_pin_new(capacity, program_maps);
        if pinned.is_err() {
            let _ = self.remove();
        }
        pinned
    }

    fn try_pin_new(
        &self,
        capacity: u32,
        program_maps: &[(&'static str, &MapData)],
    ) -> Result<HashMap<MapData, u32, PinnedInterface>, PinError> {
        for links in [LINKS, EGRESS_LINKS] {
            fs::create_dir_all(self.path.join(links)).map_err(|error| PinError::Access {
                what: "create",
                path: self.path.clone(),
                error,
            })?;
        }
        let interfaces = self.pin_maps(capacity, program_maps)?;
        let standing_map = bpffs::create_map::<u32, Standing>(MapKind::Array, "lnp_standing", 1)
            .map_err(|error| PinError::Map {
                name: STANDING,
                error: error.to_string(),
            })?;
        let standing = Standing::new(capacity, self.netns_cookie);
        let mut array: Array<MapData, Standing> = Array::try_from(Map::Array(
            MapData::from_fd(standing_map).map_err(map_error_aya(STANDING))?,
        ))
        .map_err(map_error_aya(STANDING))?;
        array.set(0, standing, 0).map_err(map_error_aya(STANDING))?;
        self.pin(STANDING, array.map().fd().as_fd())?;
        Ok(interfaces)
    }

    /// Pins the programs' `maps` in the directory, then a new INTERFACES for `capacity`
    /// interfaces, which it returns.
    pub(super) fn pin_maps(
        &self,
        capacity: u32,
        program_maps: &[(&'static str, &MapData)],
    ) -> Result<HashMap<MapData, u32, PinnedInterface>, PinError> {
        for (name, map) in program_maps {
            self.pin(name, map.fd().as_fd())?;
        }
        let interfaces =
            bpffs::create_map::<u32, PinnedInterface>(MapKind::Hash, "lnp_interfaces", capacity)
                .map_err(|error| PinError::Map {
                    name: INTERFACES,
                    error: error.to_string(),
                })?;
        self.pin(INTERFACES, interfaces.as_fd())?;
        HashMap::try_from(Map::HashMap(
            MapData::from_fd(interfaces).map_err(map_error_aya(INTERFACES))?,
        ))
        .map_err(map_error_aya(INTERFACES))
    }

    fn pin(&self, name: &'static str, fd: std::os::fd::BorrowedFd<'_>) -> Result<(), PinError> {
        bpffs::pin(fd, &self.path.join(name)).map_err(|error| PinError::Access {
            what: "pin in",
            path: self.path.clone(),
            error,
        })
    }

    /// The pinned INTERFACES map.
    pub fn interfaces(&self) -> Result<HashMap<MapData, u32, PinnedInterface>, PinError> {
        MapData::from_pin(self.path.join(INTERFACES))
            .and_then(|map| HashMap::try_from(Map::HashMap(map)))
            .map_err(map_error_aya(INTERFACES))
    }

    /// Removes localnet-probe's pins from the directory (links no process holds detach), then
    /// the directory, and localnet-probe's directory, when nothing else is left in them. An
    /// entry it did not put there is left alone, and one of its own it cannot remove does not
    /// keep it from removing the others: both are in what it returns.
    pub fn remove(&self) -> io::Result<Removed> {
        let entries = match fs::read_dir(&self.path) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                let _ = fs::remove_dir(BASE);
                return Ok(Removed::default());
            }
            Err(error) => return Err(error),
        };
        let mut removed = Removed::default();
        let mut remove = |path: &Path, entry: String, removing: fn(&Path) -> io::Result<()>| {
            if let Err(error) = removing(path) {
                removed.stayed.push((entry, error));
            }
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
            if is_dir && (name == LINKS || name == EGRESS_LINKS || generation_of(&name).is_some()) {
                let mut foreign_inside = false;
                for link in fs::read_dir(entry.path())? {
                    let link = link?;
                    let link_name = link.file_name().to_string_lossy().into_owned();
                    if is_ours_inside(&name, &link_name, &link) {
                        remove(&link.path(), format!("{name}/{link_name}"), |path| {
                            fs::remove_file(path)
                        });
                    } else {
                        foreign_inside = true;
                        removed.foreign.push(format!("{name}/{link_name}"));
                    }
                }
                if !foreign_inside {
                    remove(&entry.path(), name, |path| fs::remove_dir(path));
                }
            } else if !is_dir && (name == STANDING || name == INTERFACES || is_program_map(&name)) {
                remove(&entry.path(), name, |path| fs::remove_file(path));
            } else {
                removed.foreign.push(name);
            }
        }
        if removed.foreign.is_empty() && removed.stayed.is_empty() {
            fs::remove_dir(&self.path)?;
            // Fails while another namespace's directory is there.
            let _ = fs::remove_dir(BASE);
        }
        Ok(removed)
    }
}

/// What [`PinDir::remove`] did not remove.
#[derive(Debug, Default)]
pub struct Removed {
    /// Entries localnet-probe did not put there, as `entry` or `links/entry`: left alone.
    pub foreign: Vec<String>,
    /// Its own that stayed, with why.
    pub stayed: Vec<(String, io::Error)>,
}

impl Removed {
    /// Whether the directory went with everything in it.
    pub const fn all(&self) -> bool {
        self.foreign.is_empty() && self.stayed.is_empty()
    }
}

/// A directory's entries, by name.
#[derive(Debug, Default)]
struct Entries {
    /// localnet-probe's: its maps and its links' directories.
    ours: Vec<String>,
    /// Anything else, as `entry` or `links/entry`.
    foreign: Vec<String>,
}

fn is_program_map(name: &str) -> bool {
    PROGRAM_MAPS.iter().any(|(map, ..)| *map == name)
}

/// Whether `entry` of a links directory is a link localnet-probe pinned: a file named by an
/// ifindex.
fn is_link_pin(name: &str, entry: &fs::DirEntry) -> bool {
    name.parse::<u32>().is_ok() && entry.file_type().is_ok_and(|kind| kind.is_file())
}

/// Whether `entry`, named `name` in the directory `dir` of the standing filter's, is one
/// localnet-probe pinned: a link in a links directory, a map in a generation's.
fn is_ours_inside(dir: &str, name: &str, entry: &fs::DirEntry) -> bool {
    if generation_of(dir).is_some() {
        (name == INTERFACES || is_program_map(name))
            && entry.file_type().is_ok_and(|kind| kind.is_file())
    } else {
        is_link_pin(name, entry)
    }
}

/// The generation whose directory is named `name`: `gen-<n>`, n from 1.
fn generation_of(name: &str) -> Option<usize> {
    let number = name.strip_prefix(GENERATION_PREFIX)?;
    // One spelling per number: no sign, no leading zero.
    if number.starts_with(['0', '+']) {
        return None;
    }
    number.parse().ok().filter(|n| *n >= 1)
}

fn map_error_aya(name: &'static str) -> impl Fn(aya::maps::MapError) -> PinError {
    move |error| PinError::Map {
        name,
        error: error.to_string(),
    }
}
const fn links_dir(direction: Direction) -> &'static str {
    match direction {
        Direction::Ingress => LINKS,
        Direction::Egress => EGRESS_LINKS,
    }
}
