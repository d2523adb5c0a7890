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
//! ```
//!
//! A clsact filter cannot be pinned: it stays until deleted. Its `INTERFACES` entry records it
//! (at ingress by its hook, at egress by a flag), and it has the standing filter's handle (see
//! [`crate::probe::filters`]), by which the next `run --pin` finds it and `detach` deletes it.
//!
//! An interface is pinned in this order: its `INTERFACES` entry, its configuration, its link;
//! a process killed at any point leaves it attached and configured, or with an entry and no
//! link, which the next `run --pin` clears.

use std::{
    fs, io,
    os::{
        fd::{AsFd as _, AsRawFd as _, FromRawFd as _},
        linux::net::SocketAddrExt as _,
        unix::net::{SocketAddr, UnixListener, UnixStream},
    },
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use aya::maps::{Array, HashMap, IterableMap as _, Map, MapData};
use probe_common::{
    Action, CLASSES_PER_INTERFACE, Counter, Framing, IfaceConfig, MAX_SLOTS, Mode, SampleCounts,
    map_names,
};
use thiserror::Error;

use crate::{
    kernel::bpffs::{self, MapKind},
    net::names::{bytes_of_name, name_of_bytes},
    probe::attachment::{AttachedMode, Direction, Hook, TcHook},
};

/// Where the BPF file system is mounted.
pub const BPFFS: &str = "/sys/fs/bpf";
/// localnet-probe's directory in it.
pub const BASE: &str = "/sys/fs/bpf/localnet-probe";

/// The version of the layout below; a change in any pinned map's keys or values, or in what the
/// programs read from them, takes a new one. A change of size is caught at compile time by
/// `LAYOUT_SIZES`; a change of meaning at the same size is up to the one who makes it.
pub const LAYOUT: u32 = 3;

/// The sizes of every pinned record, in this order: the programs' map values (`IfaceConfig`,
/// `Counter`, `SampleCounts`), then `STANDING` and `INTERFACES` values.
const PINNED_SIZES: [usize; 5] = [
    size_of::<IfaceConfig>(),
    size_of::<Counter>(),
    size_of::<SampleCounts>(),
    size_of::<Standing>(),
    size_of::<PinnedInterface>(),
];

/// The layout version and the [`PINNED_SIZES`] it was cut for: a record that changes size does
/// not compile until [`LAYOUT`] is bumped and its sizes written here.
const LAYOUT_SIZES: (u32, [usize; 5]) = (3, [16, 16, 16, 32, 20]);

const _: () = {
    assert!(
        LAYOUT == LAYOUT_SIZES.0,
        "LAYOUT changed: write the sizes it is cut for in LAYOUT_SIZES"
    );
    let mut record = 0;
    while record < PINNED_SIZES.len() {
        assert!(
            PINNED_SIZES[record] == LAYOUT_SIZES.1[record],
            "a pinned record changed size: bump LAYOUT and write the new sizes in LAYOUT_SIZES"
        );
        record += 1;
    }
};
const MAGIC: u64 = u64::from_le_bytes(*b"lnprobe\0");

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

/// Who may take the standing filter of a namespace: an abstract socket, which belongs to the
/// network namespace and goes away with its process however it ends.
const LOCK_NAME: &[u8] = b"localnet-probe/standing-filter";

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
         it (`rm -r {path}`), then start again"
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
         exec`), so a standing filter's pins cannot be seen from here: run `nsenter \
         --net=/run/netns/NAME localnet-probe …` instead"
    )]
    Invisible,
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

/// What made a standing filter.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct Standing {
    magic: u64,
    layout: u32,
    /// Interfaces its counter map has slots for.
    pub capacity: u32,
    /// The network namespace's cookie, never reused, unlike its inode.
    netns_cookie: u64,
    /// When it was first pinned, in seconds since the epoch.
    pub pinned_at: u64,
}

// SAFETY: plain integers, no padding.
unsafe impl aya::Pod for Standing {}

const _: () = assert!(size_of::<Standing>() == 32);

/// The latest `pinned_at` taken as a date: the end of year 9999.
const LAST_PINNED_AT: u64 = 253_402_300_799;

/// What the programs' maps do not say about a pinned interface.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct PinnedInterface {
    /// Its name when last seen, NUL-padded.
    name: [u8; 16],
    /// `Framing as u8`.
    program: u8,
    /// 0 XDP native, 1 XDP generic, 2 tcx, 3 a clsact filter.
    hook: u8,
    /// 1: its replies are counted by a clsact filter at egress (a tcx link there is pinned in
    /// `links-egress`).
    egress_filter: u8,
    /// 1: the probe added the clsact qdisc its filters are on, which goes with the last of them.
    clsact_added: u8,
}

// SAFETY: bytes only, no implicit padding.
unsafe impl aya::Pod for PinnedInterface {}

const _: () = assert!(size_of::<PinnedInterface>() == 20);

impl PinnedInterface {
    /// The entry of the interface `name` (held as its bytes, see [`bytes_of_name`]) served at
    /// `hook`, with a clsact filter at egress when `egress_filter`, and `clsact_added` when the
    /// probe added the qdisc of its filters.
    pub fn new(
        name: &str,
        program: Framing,
        hook: Hook,
        egress_filter: bool,
        clsact_added: bool,
    ) -> Self {
        let name = bytes_of_name(name);
        let mut bytes = [0; 16];
        let len = name.len().min(15);
        bytes[..len].copy_from_slice(&name[..len]);
        Self {
            name: bytes,
            program: program as u8,
            hook: match hook {
                Hook::Xdp(AttachedMode::Native) => 0,
                Hook::Xdp(AttachedMode::Generic) => 1,
                Hook::Tc(TcHook::Tcx) => 2,
                Hook::Tc(TcHook::Clsact) => 3,
            },
            egress_filter: u8::from(egress_filter),
            clsact_added: u8::from(clsact_added),
        }
    }

    /// Records a clsact filter at egress (`Some`, with whether the probe added the qdisc), or
    /// none.
    pub fn set_egress_filter(&mut self, clsact_added: Option<bool>) {
        self.egress_filter = u8::from(clsact_added.is_some());
        if let Some(added) = clsact_added {
            self.clsact_added = u8::from(added);
        }
    }

    /// Whether a clsact filter counts its replies at egress.
    pub const fn egress_filter(&self) -> bool {
        self.egress_filter == 1
    }

    /// Whether the probe added the clsact qdisc of its filters.
    pub const fn clsact_added(&self) -> bool {
        self.clsact_added == 1
    }

    /// What is wrong with the entry, if anything: a name the kernel would not give an
    /// interface, or a program or hook byte this version did not write.
    fn problem(&self) -> Option<String> {
        let Some(len) = self.name.iter().position(|b| *b == 0) else {
            return Some("a name without its terminating NUL".to_owned());
        };
        let name = &self.name[..len];
        // The kernel's dev_valid_name.
        let valid_name = !name.is_empty()
            && name != b"."
            && name != b".."
            && !name
                .iter()
                .any(|b| *b == b'/' || *b == b':' || b.is_ascii_whitespace());
        if !valid_name {
            return Some(format!(
                "the name {:?}, which no interface can have",
                name_of_bytes(name)
            ));
        }
        if self.program != Framing::Ip as u8 && self.program != Framing::Ethernet as u8 {
            return Some(format!(
                "program byte {}, not one of a program",
                self.program
            ));
        }
        if self.hook > 3 {
            return Some(format!("hook byte {}, not one of a hook", self.hook));
        }
        if self.egress_filter > 1 || self.clsact_added > 1 {
            return Some(format!(
                "clsact bytes {} and {}, not flags",
                self.egress_filter, self.clsact_added
            ));
        }
        let filters = self.hook == 3 || self.egress_filter == 1;
        if self.clsact_added == 1 && !filters {
            return Some("a clsact qdisc added, without a filter on it".to_owned());
        }
        None
    }

    pub fn name(&self) -> String {
        let len = self.name.iter().position(|b| *b == 0).unwrap_or(16);
        name_of_bytes(&self.name[..len])
    }

    pub const fn program(&self) -> Framing {
        if self.program == Framing::Ip as u8 {
            Framing::Ip
        } else {
            Framing::Ethernet
        }
    }

    pub const fn hook(&self) -> Hook {
        match self.hook {
            1 => Hook::Xdp(AttachedMode::Generic),
            2 => Hook::Tc(TcHook::Tcx),
            3 => Hook::Tc(TcHook::Clsact),
            _ => Hook::Xdp(AttachedMode::Native),
        }
    }
}

/// What [`PinDir::prepare`] had to do.
#[derive(Debug, Default)]
pub struct Prepared {
    /// Said when it mounted a BPF file system.
    pub warning: Option<String>,
    /// Whether the pins go away with this command: the BPF file system it mounted is in a
    /// mount namespace of the command's own.
    pub vanishing: bool,
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
    /// (saying so, and whether the mount outlives this process). The directory itself is made
    /// by [`PinDir::pin_new`], so that a start that fails before leaves none.
    pub fn prepare(&self) -> Result<Prepared, PinError> {
        let mut prepared = Prepared::default();
        let root = Path::new(BPFFS);
        if !bpffs::is_mounted(root).unwrap_or(false) {
            bpffs::mount(root).map_err(PinError::NotMountable)?;
            let private = in_private_mount_namespace();
            prepared.vanishing = private == Some(true);
            prepared.warning = Some(mount_warning(private));
        }
        Ok(prepared)
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
            self.remove().map_err(|error| PinError::Access {
                what: "clear",
                path: self.path.clone(),
                error,
            })?;
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

    fn look(&self) -> Result<Looked, PinError> {
        let entries = match fs::read_dir(&self.path) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Looked::Nothing),
            Err(error) => {
                return Err(PinError::Access {
                    what: "read",
                    path: self.path.clone(),
                    error,
                });
            }
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|error| PinError::Access {
                what: "read",
                path: self.path.clone(),
                error,
            })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let ours = name == STANDING
                || name == INTERFACES
                || name == LINKS
                || name == EGRESS_LINKS
                || PROGRAM_MAPS.iter().any(|(map, ..)| *map == name);
            if !ours {
                return Err(PinError::Foreign {
                    path: self.path.clone(),
                    entry: name,
                });
            }
            names.push(name);
        }
        // Links are pinned under their ifindex, nothing else.
        for links in [LINKS, EGRESS_LINKS] {
            let Ok(entries) = fs::read_dir(self.path.join(links)) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let is_file = entry.file_type().is_ok_and(|kind| kind.is_file());
                if name.parse::<u32>().is_err() || !is_file {
                    return Err(PinError::Foreign {
                        path: self.path.clone(),
                        entry: format!("{links}/{name}"),
                    });
                }
            }
        }
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

    fn read_standing(&self) -> Result<Standing, PinError> {
        let incompatible = |reason: String| PinError::Incompatible {
            path: self.path.clone(),
            reason,
        };
        let map = MapData::from_pin(self.path.join(STANDING))
            .map_err(|error| incompatible(format!("{STANDING}: {error}")))?;
        let info = map
            .info()
            .map_err(|error| incompatible(format!("{STANDING}: {error}")))?;
        if info.value_size() as usize != size_of::<Standing>() {
            return Err(incompatible(format!(
                "{STANDING} holds {} bytes, this version reads {}",
                info.value_size(),
                size_of::<Standing>()
            )));
        }
        let array: Array<MapData, Standing> = Array::try_from(Map::Array(map))
            .map_err(|error| incompatible(format!("{STANDING}: {error}")))?;
        let standing = array
            .get(&0, 0)
            .map_err(|error| incompatible(format!("{STANDING}: {error}")))?;
        if standing.magic != MAGIC {
            return Err(self.corrupt(
                STANDING,
                format!(
                    "starts with {:#x}, not localnet-probe's mark",
                    standing.magic
                ),
            ));
        }
        if standing.layout != LAYOUT {
            return Err(incompatible(format!(
                "layout {}, this version reads layout {LAYOUT}",
                standing.layout
            )));
        }
        if standing.capacity == 0 || standing.capacity > MAX_SLOTS {
            return Err(self.corrupt(
                STANDING,
                format!(
                    "capacity {}, where 1 to {MAX_SLOTS} interfaces can be",
                    standing.capacity
                ),
            ));
        }
        if standing.pinned_at > LAST_PINNED_AT {
            return Err(self.corrupt(
                STANDING,
                format!("pinned at {} s since 1970, not a date", standing.pinned_at),
            ));
        }
        Ok(standing)
    }

    fn check_program_maps(&self, standing: &Standing) -> Result<(), PinError> {
        for (name, map_type, key_size, value_size) in PROGRAM_MAPS {
            let info = MapData::from_pin(self.path.join(name))
                .and_then(|map| map.info())
                .map_err(|error| PinError::Incompatible {
                    path: self.path.clone(),
                    reason: format!("{name}: {error}"),
                })?;
            let fits = info.map_type().is_ok_and(|found| found == map_type)
                && info.key_size() as usize == key_size
                && info.value_size() as usize == value_size;
            if !fits {
                return Err(PinError::Incompatible {
                    path: self.path.clone(),
                    reason: format!(
                        "{name} is a map of {} byte keys and {} byte values, this version uses \
                         {key_size} and {value_size}",
                        info.key_size(),
                        info.value_size()
                    ),
                });
            }
        }
        let counters = MapData::from_pin(self.path.join("COUNTERS"))
            .and_then(|map| map.info())
            .map_err(|error| PinError::Incompatible {
                path: self.path.clone(),
                reason: format!("COUNTERS: {error}"),
            })?;
        let slots = counters.max_entries() / CLASSES_PER_INTERFACE as u32;
        if slots != standing.capacity {
            return Err(self.corrupt(
                STANDING,
                format!(
                    "capacity {}, where COUNTERS has room for {slots} interfaces",
                    standing.capacity
                ),
            ));
        }
        Ok(())
    }

    fn corrupt(&self, pin: &'static str, problem: String) -> PinError {
        PinError::Corrupt {
            path: self.path.clone(),
            pin,
            problem,
        }
    }

    /// An error unless `ifindex`'s pinned entry and configuration are ones a probe with
    /// `capacity` slots wrote: anything else may index past its counters.
    pub fn check_interface(
        &self,
        ifindex: u32,
        pinned: &PinnedInterface,
        config: &IfaceConfig,
        capacity: u32,
    ) -> Result<(), PinError> {
        if let Some(problem) = pinned.problem() {
            return Err(self.corrupt(INTERFACES, format!("ifindex {ifindex} has {problem}")));
        }
        let config_map = if ifindex < probe_common::IFINDEX_ARRAY_LEN {
            "IFACE_CONFIG"
        } else {
            "IFACE_CONFIG_HIGH"
        };
        let expected = match config.action() {
            None => {
                let mut blank = IfaceConfig::default();
                blank.sample_tokens = config.sample_tokens;
                blank
            }
            Some(_) if config.slot() >= capacity => {
                return Err(self.corrupt(
                    config_map,
                    format!(
                        "ifindex {ifindex} has slot {}, beyond the {capacity} of the counters",
                        config.slot()
                    ),
                ));
            }
            Some(Action::Dropped) => {
                IfaceConfig::new(config.slot(), Mode::Drop, config.sample_tokens)
            }
            Some(_) => IfaceConfig::new(config.slot(), Mode::Monitor, config.sample_tokens),
        };
        if *config != expected {
            return Err(self.corrupt(
                config_map,
                format!(
                    "ifindex {ifindex} has {config:?}, which is no configuration of slot {} \
                     (its action, its configured flag or its first key is wrong)",
                    config.slot()
                ),
            ));
        }
        Ok(())
    }

    /// An error unless a BPF file system is mounted where pins are looked for: a mount
    /// namespace without one (as `ip netns exec` makes) cannot see a standing filter.
    pub fn require_visible(&self) -> Result<(), PinError> {
        if bpffs::is_mounted(Path::new(BPFFS)).unwrap_or(false) {
            Ok(())
        } else {
            Err(PinError::Invisible)
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
            // Others are refused by `look`.
            if let Some(ifindex) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse().ok())
            {
                ifindexes.push(ifindex);
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
        let pin = |name: &'static str, fd: std::os::fd::BorrowedFd<'_>| {
            bpffs::pin(fd, &self.path.join(name)).map_err(|error| PinError::Access {
                what: "pin in",
                path: self.path.clone(),
                error,
            })
        };
        for (name, map) in program_maps {
            pin(name, map.fd().as_fd())?;
        }
        let map_error = |name: &'static str| {
            move |error: io::Error| PinError::Map {
                name,
                error: error.to_string(),
            }
        };
        let interfaces =
            bpffs::create_map::<u32, PinnedInterface>(MapKind::Hash, "lnp_interfaces", capacity)
                .map_err(map_error(INTERFACES))?;
        pin(INTERFACES, interfaces.as_fd())?;
        let standing_map = bpffs::create_map::<u32, Standing>(MapKind::Array, "lnp_standing", 1)
            .map_err(map_error(STANDING))?;
        let standing = Standing {
            magic: MAGIC,
            layout: LAYOUT,
            capacity,
            netns_cookie: self.netns_cookie,
            pinned_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| since.as_secs()),
        };
        let mut array: Array<MapData, Standing> = Array::try_from(Map::Array(
            MapData::from_fd(standing_map).map_err(map_error_aya(STANDING))?,
        ))
        .map_err(map_error_aya(STANDING))?;
        array.set(0, standing, 0).map_err(map_error_aya(STANDING))?;
        pin(STANDING, array.map().fd().as_fd())?;
        HashMap::try_from(Map::HashMap(
            MapData::from_fd(interfaces).map_err(map_error_aya(INTERFACES))?,
        ))
        .map_err(map_error_aya(INTERFACES))
    }

    /// The pinned INTERFACES map.
    pub fn interfaces(&self) -> Result<HashMap<MapData, u32, PinnedInterface>, PinError> {
        MapData::from_pin(self.path.join(INTERFACES))
            .and_then(|map| HashMap::try_from(Map::HashMap(map)))
            .map_err(map_error_aya(INTERFACES))
    }

    /// Removes the directory and everything pinned in it (links no process holds detach), and
    /// localnet-probe's directory when no other namespace has one there.
    pub fn remove(&self) -> io::Result<()> {
        match fs::remove_dir_all(&self.path) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
        // Fails while another namespace's directory is there.
        let _ = fs::remove_dir(BASE);
        Ok(())
    }
}

fn map_error_aya(name: &'static str) -> impl Fn(aya::maps::MapError) -> PinError {
    move |error| PinError::Map {
        name,
        error: error.to_string(),
    }
}

/// This network namespace's cookie (`SO_NETNS_COOKIE`, Linux 5.14): unlike the inode, never
/// reused for another namespace. Asked of a socket that is never bound, so it needs no address
/// (a namespace's `lo` may be down, without 127.0.0.1), and of a Unix socket, which needs no
/// IP stack.
fn netns_cookie() -> io::Result<u64> {
    const SO_NETNS_COOKIE: libc::c_int = 71;
    // SAFETY: plain syscall; the descriptor it returns is owned below.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor nothing else owns.
    let socket = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    let mut cookie = 0u64;
    let mut len = size_of::<u64>() as libc::socklen_t;
    // SAFETY: `cookie` and `len` are valid for writes of their sizes during the call.
    let result = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&raw mut cookie).cast(),
            &raw mut len,
        )
    };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cookie)
}

/// Whether this process's mount namespace is not the host's (init's): one `ip netns exec`,
/// `unshare --mount` or a unit's private mounts made, which a mount in it does not outlive for
/// long. Where init's cannot be read (in a container without CAP_SYS_PTRACE over it), a parent
/// in another one says this one was made for this command; otherwise `None`: nobody knows, and
/// the pins may well stay.
fn in_private_mount_namespace() -> Option<bool> {
    let own = fs::read_link("/proc/self/ns/mnt").ok()?;
    if let Ok(init) = fs::read_link("/proc/1/ns/mnt") {
        return Some(own != init);
    }
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() };
    fs::read_link(format!("/proc/{parent}/ns/mnt"))
        .ok()
        .filter(|parent| *parent != own)
        .map(|_| true)
}

/// Said after mounting the BPF file system: the mount lives as long as the mount namespace,
/// which is said only when known to be one of this command's own.
fn mount_warning(private: Option<bool>) -> String {
    if private == Some(true) {
        format!(
            "mounted a BPF file system at {BPFFS}, in a mount namespace of this command's own \
             (as `ip netns exec` makes): the pins go away with it, and the filter with them. To \
             keep them, run in the host's mount namespace: `{} localnet-probe run --pin …`",
            crate::net::netns::nsenter_here()
        )
    } else {
        format!("mounted a BPF file system at {BPFFS}: none was mounted")
    }
}

/// Held while a `run --pin` or a `detach` works on this namespace's standing filter.
#[derive(Debug)]
pub struct PinLock {
    _listener: UnixListener,
}

impl PinLock {
    /// Takes the lock, or says who holds it.
    pub fn take() -> Result<Self, PinError> {
        let address = SocketAddr::from_abstract_name(LOCK_NAME).map_err(PinError::Lock)?;
        match UnixListener::bind_addr(&address) {
            Ok(listener) => Ok(Self {
                _listener: listener,
            }),
            Err(error) if error.kind() == io::ErrorKind::AddrInUse => Err(PinError::Busy {
                holder: UnixStream::connect_addr(&address).map_or_else(
                    |_| "a process this one cannot see".to_owned(),
                    |stream| holder(&stream),
                ),
            }),
            Err(error) => Err(PinError::Lock(error)),
        }
    }
}

/// The `run --pin` serving this namespace's standing filter now, if any, as "pid N: command".
pub fn serving_process() -> Option<String> {
    let address = SocketAddr::from_abstract_name(LOCK_NAME).ok()?;
    let stream = UnixStream::connect_addr(&address).ok()?;
    Some(holder(&stream))
}

/// The process listening on the lock `stream` is connected to, as "pid N: command".
fn holder(stream: &UnixStream) -> String {
    let mut credentials = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `credentials` and `len` are valid for writes of their sizes during the call.
    let result = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut credentials).cast(),
            &raw mut len,
        )
    };
    if result < 0 || credentials.pid == 0 {
        return "a process this one cannot see".to_owned();
    }
    let pid = credentials.pid;
    match fs::read_to_string(format!("/proc/{pid}/cmdline")) {
        Ok(cmdline) if !cmdline.is_empty() => {
            format!(
                "pid {pid}: {}",
                cmdline.trim_end_matches('\0').replace('\0', " ")
            )
        }
        _ => format!("pid {pid}"),
    }
}

const fn links_dir(direction: Direction) -> &'static str {
    match direction {
        Direction::Ingress => LINKS,
        Direction::Egress => EGRESS_LINKS,
    }
}

#[cfg(test)]
mod mount_tests {
    use super::*;

    #[test]
    fn pins_are_said_to_vanish_only_where_known() {
        assert!(mount_warning(Some(true)).contains("the pins go away"));
        // /proc/1/ns/mnt unreadable: the pins may well stay, so nothing is claimed.
        assert!(!mount_warning(None).contains("go away"));
        assert!(!mount_warning(Some(false)).contains("go away"));
    }
}

#[cfg(test)]
mod name_tests {
    use super::*;

    #[test]
    fn a_pinned_name_is_the_interfaces_bytes() {
        // 15 bytes, 4 of them not UTF-8: its held text is longer than a pinned name can be.
        let name = name_of_bytes(b"w\xfe\xfe\xfe\xfe0123456789");
        let pinned = PinnedInterface::new(
            &name,
            Framing::Ethernet,
            Hook::Tc(TcHook::Tcx),
            false,
            false,
        );
        assert_eq!(pinned.name(), name);
        assert_eq!(pinned.problem(), None);
    }
}
