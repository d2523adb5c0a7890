//! The loaded programs (XDP, tcx ingress, tcx egress), their maps, and one record per interface
//! they serve: its counter slot, its mode and, while attached, the links that hold the
//! attachment.
//!
//! Attachments are BPF links owned by this process: when it exits, however it exits, the kernel
//! closes their file descriptors and detaches the programs, unless the probe is a standing
//! filter ([`Probe::load_standing`]) whose links and maps are pinned in bpffs (see
//! [`crate::pins`]).

use std::{
    collections::{BTreeMap, BTreeSet},
    io,
    os::fd::{AsFd as _, AsRawFd as _},
};

use aya::{
    Ebpf, EbpfLoader, VerifierLogLevel,
    maps::{
        Array, HashMap, IterableMap as _, Map, MapData, MapError, PerCpuArray, PerCpuValues,
        RingBuf,
    },
    programs::{ProgramError, SchedClassifier, Xdp},
    util::nr_cpus,
};
use probe_common::{
    CLASSES_PER_INTERFACE, IFINDEX_ARRAY_LEN, IfaceConfig, MAX_SLOTS, Mode, Sample, SampleCounts,
    SlotCounters,
};
use thiserror::Error;

pub use crate::link::{AttachedMode, Direction};
use crate::{
    PROBE_OBJECT,
    counter_map::CounterMap,
    link::{Kind, Link},
    map_batch,
    pins::{Found, PinDir, PinError, PinnedInterface},
};

#[derive(Debug, Error)]
pub enum ProbeError {
    #[error("loading the XDP object failed")]
    Load(#[source] aya::EbpfError),
    #[error("the kernel verifier rejected the XDP program: {io_error}")]
    Verifier {
        io_error: io::Error,
        verifier_log: String,
    },
    #[error("the embedded object has no {0}")]
    MissingPart(&'static str),
    #[error(transparent)]
    Program(#[from] ProgramError),
    #[error(transparent)]
    Map(#[from] MapError),
    #[error("cannot count the CPUs")]
    Cpus(#[source] io::Error),
    #[error("cannot read the counters")]
    ReadCounters(#[source] io::Error),
    #[error("cannot refill the sample budgets")]
    Refill(#[source] io::Error),
    #[error(
        "all {capacity} interface slots are in use: start with a larger --capacity (a standing \
         filter keeps the room it was first pinned with until `localnet-probe detach`)"
    )]
    Full { capacity: u32 },
    #[error("interface {ifindex} is not configured")]
    NotConfigured { ifindex: u32 },
    #[error(
        "no native XDP here ({}); use --xdp-mode generic or auto, which falls back to it",
        native_refusal(.0)
    )]
    NoNativeSupport(io::Error),
    #[error("another XDP program is attached (the kernel said: {0})")]
    Occupied(io::Error),
    #[error(
        "this kernel has no tcx hooks (Linux 6.6 and later have them), so the probe cannot run \
         beside another XDP program or count replies here: {0}"
    )]
    NoTcx(io::Error),
    #[error(
        "tcx {} of this interface already holds as many programs as the kernel allows ({error}); \
         remove one of them, or leave the interface out",
        direction.name()
    )]
    TcxFull {
        direction: Direction,
        error: io::Error,
    },
    #[error("the kernel refused the attachment: {0}")]
    Attach(io::Error),
    #[error(transparent)]
    Pin(#[from] PinError),
    #[error("cannot pin the link of interface {ifindex}: {error}")]
    PinLink { ifindex: u32, error: io::Error },
    #[error("cannot take over the pinned link of interface {ifindex}: {error}")]
    Adopt { ifindex: u32, error: io::Error },
}

/// Why a driver refused native XDP, in words: ERANGE means the device's MTU is above what its
/// driver can run XDP with (a page on veth), not that it has no XDP at all.
pub fn native_refusal(error: &io::Error) -> String {
    if error.raw_os_error() == Some(libc::ERANGE) {
        format!("the driver refused it for this MTU, too large for native XDP: {error}")
    } else {
        format!("the driver refused it: {error}")
    }
}

/// Which of the object's programs serves an interface, by what its frames start with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program {
    /// Ethernet frames (`localnet_probe`, `localnet_probe_tc`, `localnet_probe_out`).
    Ethernet,
    /// Packets that start at the IP header, on layer-3 devices such as tun (the `…_ip` ones).
    Ip,
}

impl Program {
    pub const ALL: [Self; 2] = [Self::Ethernet, Self::Ip];

    /// The function name in the object of the program for `stage`; the kernel shows its first
    /// 15 bytes.
    pub const fn name(self, stage: Stage) -> &'static str {
        match (stage, self) {
            (Stage::Xdp, Self::Ethernet) => "localnet_probe",
            (Stage::Xdp, Self::Ip) => "localnet_probe_ip",
            (Stage::TcxIngress, Self::Ethernet) => "localnet_probe_tc",
            (Stage::TcxIngress, Self::Ip) => "localnet_probe_tc_ip",
            (Stage::TcxEgress, Self::Ethernet) => "localnet_probe_out",
            (Stage::TcxEgress, Self::Ip) => "localnet_probe_out_ip",
        }
    }
}

/// Where in the kernel a program runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Arriving frames, in the driver or before the stack.
    Xdp,
    /// Arriving frames, at tcx ingress: beside another XDP program.
    TcxIngress,
    /// Leaving frames, at tcx egress.
    TcxEgress,
}

impl Stage {
    pub const ALL: [Self; 3] = [Self::Xdp, Self::TcxIngress, Self::TcxEgress];
}

/// Where an interface's arriving frames are counted and dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// XDP, the first choice.
    Xdp(AttachedMode),
    /// tcx ingress, where another XDP program holds the interface.
    Tcx,
}

impl Hook {
    /// `xdp` or `tcx`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Xdp(_) => "xdp",
            Self::Tcx => "tcx",
        }
    }

    pub const fn xdp_mode(self) -> Option<AttachedMode> {
        match self {
            Self::Xdp(mode) => Some(mode),
            Self::Tcx => None,
        }
    }

    /// As the live view shows it: the XDP mode, or `tcx`.
    pub const fn label(self) -> &'static str {
        match self {
            Self::Xdp(mode) => mode.name(),
            Self::Tcx => "tcx",
        }
    }

    const fn stage(self) -> Stage {
        match self {
            Self::Xdp(_) => Stage::Xdp,
            Self::Tcx => Stage::TcxIngress,
        }
    }

    const fn link_kind(self) -> Kind {
        match self {
            Self::Xdp(_) => Kind::Xdp,
            Self::Tcx => Kind::Tcx(Direction::Ingress),
        }
    }
}

/// How to attach to an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpModeChoice {
    /// Native, or generic when the driver has no native XDP.
    Auto,
    Native,
    Generic,
}

/// What [`Probe::attach`] did.
#[derive(Debug)]
pub struct Attached {
    pub hook: Hook,
    /// Why native mode was refused, when `Auto` fell back to generic.
    pub native_refused: Option<io::Error>,
}

/// One interface the probe serves.
#[derive(Debug)]
struct Record {
    slot: u32,
    mode: Mode,
    attachment: Option<Attachment>,
}

#[derive(Debug)]
struct Attachment {
    hook: Hook,
    program: Program,
    /// The kernel's id of the program the link runs.
    program_id: u32,
    /// Dropped to detach, unless pinned.
    link: Link,
    /// At tcx egress, counting replies.
    egress: Option<Link>,
    pinned: bool,
}

/// An interface of a standing filter, as a probe taking it over found it.
#[derive(Debug)]
pub struct Adopted {
    pub ifindex: u32,
    /// Its name when last seen by a probe.
    pub name: String,
    pub program: Program,
    pub mode: Mode,
    /// Where it is attached; `None` when the interface is gone, its pins cleared.
    pub hook: Option<Hook>,
    /// Replies are counted at its egress.
    pub egress: bool,
    /// For a gone interface, its final counts.
    pub counters: SlotCounters,
    slot: u32,
}

/// The pinned state of a standing filter.
#[derive(Debug)]
struct Standing {
    dir: PinDir,
    interfaces: HashMap<MapData, u32, PinnedInterface>,
}

/// How the probe is loaded.
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions {
    /// How many interfaces it can serve at once (at most [`MAX_SLOTS`]); the counter map takes
    /// `capacity × size_of::<SlotCounters>()` (432) bytes per CPU.
    pub capacity: u32,
    /// Keep the verifier's full log for a rejection.
    pub verifier_log: bool,
    /// Samples of matched frames each interface may send per second; 0 turns sampling off.
    pub sample_rate: u32,
}

/// The most samples per second and interface: beyond it a sample is no longer a sample.
pub const MAX_SAMPLE_RATE: u32 = 100_000;

/// `run --sample-rate` when not given: enough samples per second and interface to see who sends
/// loopback frames, few enough that a flood costs the reader nothing.
pub const DEFAULT_SAMPLE_RATE: u32 = 100;

/// The ring buffer's size: room for half a second of samples at the full rate on every
/// interface slot, within bounds (it is mapped into the loader, so it counts in its memory).
fn ring_size(sample_rate: u32, capacity: u32) -> u32 {
    const MIN: u64 = 64 << 10;
    // The reader drains it as samples arrive; a bigger ring only holds more for a reader that
    // is not running.
    const MAX: u64 = 1 << 20;
    let record = size_of::<Sample>() as u64 + 8;
    let wanted = u64::from(sample_rate) * u64::from(capacity) * record / 2;
    wanted.clamp(MIN, MAX).next_power_of_two() as u32
}

/// The XDP programs loaded into the kernel, with the interfaces they serve.
pub struct Probe {
    /// `None` for a standing filter only read ([`Probe::read_standing`]).
    ebpf: Option<Ebpf>,
    /// By [`Stage`], then [`Program`].
    program_ids: [[u32; 2]; 3],
    capacity: u32,
    config: Array<MapData, IfaceConfig>,
    config_high: HashMap<MapData, u32, IfaceConfig>,
    counters: CounterMap,
    sample_rate: u32,
    sample_counts: PerCpuArray<MapData, SampleCounts>,
    samples: Option<RingBuf<MapData>>,
    cpus: usize,
    records: BTreeMap<u32, Record>,
    free_slots: Vec<u32>,
    standing: Option<Standing>,
}

impl Probe {
    /// Loads the embedded programs, with maps sized for `options.capacity` interfaces.
    pub fn load(options: LoadOptions) -> Result<Self, ProbeError> {
        Self::load_over(options, None)
    }

    /// Loads the embedded programs as the standing filter in `dir`: over the maps pinned there
    /// when `found` is one, whose interfaces it takes over (their links switch to the new
    /// programs at once, counters and modes unchanged: see [`Adopted`]), or with new maps that
    /// it pins there. Links made by [`Probe::pin_link`] are pinned there too.
    pub fn load_standing(
        options: LoadOptions,
        dir: PinDir,
        found: Found,
    ) -> Result<(Self, Vec<Adopted>), ProbeError> {
        match found {
            Found::Standing(standing) => {
                let options = LoadOptions {
                    capacity: standing.capacity,
                    ..options
                };
                let mut probe = Self::load_over(options, Some(&dir))?;
                let interfaces = dir.interfaces()?;
                probe.standing = Some(Standing { dir, interfaces });
                let adopted = probe.adopt()?;
                Ok((probe, adopted))
            }
            Found::Nothing => {
                let mut probe = Self::load_over(options, None)?;
                let config_high = probe.config_high.map();
                let interfaces = dir.pin_new(
                    probe.capacity,
                    &[
                        ("IFACE_CONFIG", probe.config.map()),
                        ("IFACE_CONFIG_HIGH", config_high),
                        ("COUNTERS", probe.counters.map()),
                        ("SAMPLE_COUNTS", probe.sample_counts.map()),
                    ],
                )?;
                probe.standing = Some(Standing { dir, interfaces });
                Ok((probe, Vec::new()))
            }
        }
    }

    /// Loads the programs, over the maps pinned in `pinned` when given.
    fn load_over(options: LoadOptions, pinned: Option<&PinDir>) -> Result<Self, ProbeError> {
        let capacity = options.capacity.clamp(1, MAX_SLOTS);
        let level = if options.verifier_log {
            VerifierLogLevel::VERBOSE | VerifierLogLevel::STATS
        } else {
            VerifierLogLevel::default()
        };
        let sample_rate = options.sample_rate.min(MAX_SAMPLE_RATE);
        let sampling = u8::from(sample_rate > 0);
        let mut loader = EbpfLoader::new();
        let map_paths: Vec<(&str, std::path::PathBuf)> = pinned
            .into_iter()
            .flat_map(|dir| PinDir::program_maps().map(|name| (name, dir.map_path(name))))
            .collect();
        for (name, path) in &map_paths {
            loader.map_pin_path(name, path.as_path());
        }
        let mut ebpf = loader
            .verifier_log_level(level)
            .override_global("SAMPLING", &sampling, true)
            .map_max_entries("COUNTERS", capacity * CLASSES_PER_INTERFACE as u32)
            .map_max_entries("IFACE_CONFIG_HIGH", capacity)
            .map_max_entries("SAMPLE_COUNTS", capacity)
            .map_max_entries("SAMPLES", ring_size(sample_rate, capacity))
            .load(PROBE_OBJECT)
            .map_err(ProbeError::Load)?;
        let mut program_ids = [[0; 2]; 3];
        let rejected = |error| match error {
            ProgramError::LoadError {
                io_error,
                verifier_log,
            } => ProbeError::Verifier {
                io_error,
                verifier_log: verifier_log.to_string(),
            },
            other => ProbeError::Program(other),
        };
        for stage in Stage::ALL {
            for program in Program::ALL {
                let loaded = ebpf
                    .program_mut(program.name(stage))
                    .ok_or(ProbeError::MissingPart("program"))?;
                let info = if stage == Stage::Xdp {
                    let xdp: &mut Xdp = loaded.try_into()?;
                    xdp.load().map_err(rejected)?;
                    xdp.info()?
                } else {
                    let classifier: &mut SchedClassifier = loaded.try_into()?;
                    classifier.load().map_err(rejected)?;
                    classifier.info()?
                };
                program_ids[stage as usize][program as usize] = info.id();
            }
        }
        let mut take_map = |name: &'static str| {
            ebpf.take_map(name).ok_or(ProbeError::MissingPart(
                "map (see probe-ebpf for their names)",
            ))
        };
        let config = Array::try_from(take_map("IFACE_CONFIG")?)?;
        let config_high = HashMap::try_from(take_map("IFACE_CONFIG_HIGH")?)?;
        let cpus = nr_cpus().map_err(|(_, error)| ProbeError::Cpus(error))?;
        let counters = CounterMap::new(
            PerCpuArray::try_from(take_map("COUNTERS")?)?,
            capacity,
            cpus,
        );
        let sample_counts = PerCpuArray::try_from(take_map("SAMPLE_COUNTS")?)?;
        let samples = RingBuf::try_from(take_map("SAMPLES")?)?;
        Ok(Self {
            ebpf: Some(ebpf),
            program_ids,
            capacity,
            config,
            config_high,
            counters,
            sample_rate,
            sample_counts,
            samples: Some(samples),
            cpus,
            records: BTreeMap::new(),
            free_slots: (0..capacity).rev().collect(),
            standing: None,
        })
    }

    /// The standing filter pinned in `dir`, only read: its interfaces and counters, without
    /// programs; nothing is changed. `status` shows it this way.
    pub fn read_standing(dir: PinDir, capacity: u32) -> Result<(Self, Vec<Adopted>), ProbeError> {
        let pinned_map = |name: &'static str| {
            MapData::from_pin(dir.map_path(name)).map_err(|error| {
                ProbeError::Pin(PinError::Map {
                    name,
                    error: error.to_string(),
                })
            })
        };
        let config = Array::try_from(Map::Array(pinned_map("IFACE_CONFIG")?))?;
        let config_high = HashMap::try_from(Map::HashMap(pinned_map("IFACE_CONFIG_HIGH")?))?;
        let cpus = nr_cpus().map_err(|(_, error)| ProbeError::Cpus(error))?;
        let counters = CounterMap::new(
            PerCpuArray::try_from(Map::PerCpuArray(pinned_map("COUNTERS")?))?,
            capacity,
            cpus,
        );
        let sample_counts = PerCpuArray::try_from(Map::PerCpuArray(pinned_map("SAMPLE_COUNTS")?))?;
        let interfaces = dir.interfaces()?;
        let mut probe = Self {
            ebpf: None,
            program_ids: [[0; 2]; 3],
            capacity,
            config,
            config_high,
            counters,
            sample_rate: 0,
            sample_counts,
            samples: None,
            cpus,
            records: BTreeMap::new(),
            free_slots: Vec::new(),
            standing: Some(Standing { dir, interfaces }),
        };
        let mut gone = Vec::new();
        for (ifindex, pinned, config, link, egress) in probe.pinned_interfaces()? {
            match (config.action(), link) {
                (Some(action), PinnedLink::Attached(link, info)) => {
                    let record = pinned_record(
                        &pinned,
                        config.slot(),
                        mode_of(action),
                        (link, egress),
                        info.program_id,
                    );
                    probe.records.insert(ifindex, record);
                }
                // Not attached, nothing to show; the next `run --pin` clears it.
                (Some(_), PinnedLink::CutShort) | (None, _) => {}
                (Some(action), PinnedLink::Gone) => {
                    gone.push(probe.gone(ifindex, &pinned, mode_of(action), config.slot())?);
                }
            }
        }
        Ok((probe, gone))
    }

    /// The standing filter's interfaces: each with its pinned entry, its configuration, what
    /// became of its link, and its egress link if it has one.
    #[expect(clippy::type_complexity, reason = "one use, a tuple of named types")]
    fn pinned_interfaces(
        &self,
    ) -> Result<Vec<(u32, PinnedInterface, IfaceConfig, PinnedLink, Option<Link>)>, ProbeError>
    {
        let standing = self.standing.as_ref().expect("a standing filter");
        let mut found = Vec::new();
        for entry in standing.interfaces.iter() {
            let (ifindex, pinned) = entry?;
            let config = self.read_config(ifindex)?;
            standing
                .dir
                .check_interface(ifindex, &pinned, &config, self.capacity)?;
            let path = standing.dir.link_path(ifindex, Direction::Ingress);
            let link = match Link::from_pin(&path, pinned.hook().link_kind()) {
                Ok(Some(link)) => {
                    let info = link
                        .info()
                        .map_err(|error| ProbeError::Adopt { ifindex, error })?;
                    if info.ifindex == Some(ifindex) {
                        PinnedLink::Attached(link, info)
                    } else {
                        PinnedLink::Gone
                    }
                }
                Ok(None) => PinnedLink::Gone,
                Err(error) if error.kind() == io::ErrorKind::NotFound => {
                    if interface_exists(ifindex) {
                        PinnedLink::CutShort
                    } else {
                        PinnedLink::Gone
                    }
                }
                Err(error) => return Err(ProbeError::Adopt { ifindex, error }),
            };
            let egress_path = standing.dir.link_path(ifindex, Direction::Egress);
            let egress = match Link::from_pin(&egress_path, Kind::Tcx(Direction::Egress)) {
                Ok(egress) => egress,
                Err(error) if error.kind() == io::ErrorKind::NotFound => None,
                Err(error) => return Err(ProbeError::Adopt { ifindex, error }),
            };
            found.push((ifindex, pinned, config, link, egress));
        }
        Ok(found)
    }

    /// Takes over the interfaces of the standing filter this probe was loaded over: their
    /// links switch to this probe's programs; interfaces that are gone have their pins cleared
    /// and their final counts returned.
    fn adopt(&mut self) -> Result<Vec<Adopted>, ProbeError> {
        let mut adopted = Vec::new();
        let mut used = BTreeSet::new();
        let mut cleared = Vec::new();
        for (ifindex, pinned, config, link, egress) in self.pinned_interfaces()? {
            let Some(action) = config.action() else {
                // Pinned as far as its entry, not its configuration.
                cleared.push((ifindex, None));
                continue;
            };
            let mode = mode_of(action);
            used.insert(config.slot());
            let link = match link {
                PinnedLink::Attached(link, _) => link,
                // Not attached, not gone either: attached anew when selected.
                PinnedLink::CutShort => {
                    cleared.push((ifindex, Some(config.slot())));
                    continue;
                }
                PinnedLink::Gone => {
                    cleared.push((ifindex, Some(config.slot())));
                    adopted.push(self.gone(ifindex, &pinned, mode, config.slot())?);
                    continue;
                }
            };
            let program = pinned.program();
            let stage = pinned.hook().stage();
            link.update(self.program_fd(stage, program)?)
                .map_err(|error| ProbeError::Adopt { ifindex, error })?;
            if let Some(egress) = &egress {
                egress
                    .update(self.program_fd(Stage::TcxEgress, program)?)
                    .map_err(|error| ProbeError::Adopt { ifindex, error })?;
            }
            adopted.push(Adopted {
                ifindex,
                name: pinned.name(),
                program,
                mode,
                hook: Some(pinned.hook()),
                egress: egress.is_some(),
                counters: SlotCounters::default(),
                slot: config.slot(),
            });
            let record = pinned_record(
                &pinned,
                config.slot(),
                mode,
                (link, egress),
                self.program_id(stage, program),
            );
            self.records.insert(ifindex, record);
        }
        self.free_slots = (0..self.capacity)
            .rev()
            .filter(|slot| !used.contains(slot))
            .collect();
        for (ifindex, slot) in cleared {
            self.clear(ifindex, slot)?;
            if let Some(slot) = slot {
                self.free_slots.push(slot);
            }
        }
        // Links pinned without an entry: nothing can be counted there.
        let standing = self.standing.as_ref().expect("a standing filter");
        for direction in [Direction::Ingress, Direction::Egress] {
            for ifindex in standing
                .dir
                .pinned_links(direction)
                .map_err(|error| ProbeError::Adopt { ifindex: 0, error })?
            {
                if !self.records.contains_key(&ifindex) {
                    remove_pin(&standing.dir.link_path(ifindex, direction))
                        .map_err(|error| ProbeError::Adopt { ifindex, error })?;
                }
            }
        }
        Ok(adopted)
    }

    /// A pinned interface that is gone, with its final counts.
    fn gone(
        &mut self,
        ifindex: u32,
        pinned: &PinnedInterface,
        mode: Mode,
        slot: u32,
    ) -> Result<Adopted, ProbeError> {
        self.counters
            .read(slot + 1)
            .map_err(ProbeError::ReadCounters)?;
        let mut counters = self.counters.slot(slot);
        counters.samples = self.sample_counts(slot)?;
        Ok(Adopted {
            ifindex,
            name: pinned.name(),
            program: pinned.program(),
            mode,
            hook: None,
            egress: false,
            counters,
            slot,
        })
    }

    /// Clears the pins, configuration and counters of an interface of the standing filter that
    /// is gone (see [`Probe::read_standing`]).
    pub fn clear_gone(&mut self, gone: &Adopted) -> Result<(), ProbeError> {
        self.clear(gone.ifindex, Some(gone.slot))
    }

    fn clear(&mut self, ifindex: u32, slot: Option<u32>) -> Result<(), ProbeError> {
        self.clear_pinned(ifindex)?;
        self.write_config(ifindex, IfaceConfig::default())?;
        if let Some(slot) = slot {
            self.counters.zero(slot)?;
            self.zero_sample_counts(slot)?;
        }
        Ok(())
    }

    /// Removes `ifindex`'s link pins and entry from the standing filter, if any.
    fn clear_pinned(&mut self, ifindex: u32) -> Result<(), ProbeError> {
        let Some(standing) = &mut self.standing else {
            return Ok(());
        };
        for direction in [Direction::Egress, Direction::Ingress] {
            remove_pin(&standing.dir.link_path(ifindex, direction))
                .map_err(|error| ProbeError::Adopt { ifindex, error })?;
        }
        match standing.interfaces.remove(&ifindex) {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Pins `ifindex`'s links in the standing filter, with its name, so that they stay attached
    /// when this process ends; does nothing for a probe that is not one. An egress link
    /// attached later is pinned by [`Probe::attach_egress`].
    pub fn pin_link(&mut self, ifindex: u32, name: &str) -> Result<(), ProbeError> {
        let Some(standing) = &mut self.standing else {
            return Ok(());
        };
        let attachment = self
            .records
            .get_mut(&ifindex)
            .and_then(|record| record.attachment.as_mut())
            .ok_or(ProbeError::NotConfigured { ifindex })?;
        standing.interfaces.insert(
            ifindex,
            PinnedInterface::new(name, attachment.program, attachment.hook),
            0,
        )?;
        for (link, direction) in [
            (Some(&attachment.link), Direction::Ingress),
            (attachment.egress.as_ref(), Direction::Egress),
        ] {
            let path = standing.dir.link_path(ifindex, direction);
            // A pin of a device that had this ifindex before.
            remove_pin(&path).map_err(|error| ProbeError::PinLink { ifindex, error })?;
            if let Some(link) = link {
                crate::bpffs::pin(link, &path)
                    .map_err(|error| ProbeError::PinLink { ifindex, error })?;
            }
        }
        attachment.pinned = true;
        Ok(())
    }

    /// Records a pinned interface's new name.
    pub fn rename(&mut self, ifindex: u32, name: &str) -> Result<(), ProbeError> {
        let (Some(standing), Some(attachment)) = (
            &mut self.standing,
            self.records
                .get(&ifindex)
                .and_then(|record| record.attachment.as_ref()),
        ) else {
            return Ok(());
        };
        if attachment.pinned {
            standing.interfaces.insert(
                ifindex,
                PinnedInterface::new(name, attachment.program, attachment.hook),
                0,
            )?;
        }
        Ok(())
    }

    /// The interfaces attached, with their programs.
    pub fn served(&self) -> impl Iterator<Item = (u32, Program)> + '_ {
        self.records
            .iter()
            .filter_map(|(ifindex, record)| Some((*ifindex, record.attachment.as_ref()?.program)))
    }

    /// Interfaces the counter map has slots for.
    pub const fn capacity(&self) -> u32 {
        self.capacity
    }

    /// The name a pinned interface had when last seen by a probe.
    pub fn pinned_name(&self, ifindex: u32) -> Option<String> {
        let standing = self.standing.as_ref()?;
        standing
            .interfaces
            .get(&ifindex, 0)
            .ok()
            .map(|pinned| pinned.name())
    }

    /// The standing filter's directory, for a probe that is one.
    pub fn standing_dir(&self) -> Option<&PinDir> {
        self.standing.as_ref().map(|standing| &standing.dir)
    }

    fn read_config(&self, ifindex: u32) -> Result<IfaceConfig, ProbeError> {
        let found = if ifindex < IFINDEX_ARRAY_LEN {
            self.config.get(&ifindex, 0)
        } else {
            self.config_high.get(&ifindex, 0)
        };
        match found {
            Ok(config) => Ok(config),
            Err(MapError::KeyNotFound) => Ok(IfaceConfig::default()),
            Err(error) => Err(error.into()),
        }
    }

    /// A loaded XDP program, for `BPF_PROG_TEST_RUN`. A standing filter only read has none.
    pub fn program(&self, program: Program) -> &Xdp {
        self.loaded(Stage::Xdp, program)
            .try_into()
            .expect("checked at load")
    }

    /// A loaded tcx program, for `BPF_PROG_TEST_RUN`. A standing filter only read has none.
    pub fn classifier(&self, direction: Direction, program: Program) -> &SchedClassifier {
        let stage = match direction {
            Direction::Ingress => Stage::TcxIngress,
            Direction::Egress => Stage::TcxEgress,
        };
        self.loaded(stage, program)
            .try_into()
            .expect("checked at load")
    }

    fn loaded(&self, stage: Stage, program: Program) -> &aya::programs::Program {
        self.ebpf
            .as_ref()
            .expect("a probe that loaded its programs")
            .program(program.name(stage))
            .expect("checked at load")
    }

    fn program_fd(
        &self,
        stage: Stage,
        program: Program,
    ) -> Result<&aya::programs::ProgramFd, ProbeError> {
        Ok(self.loaded(stage, program).fd()?)
    }

    /// The kernel's id of a loaded program.
    pub const fn program_id(&self, stage: Stage, program: Program) -> u32 {
        self.program_ids[stage as usize][program as usize]
    }

    /// Gives `ifindex` a block of zeroed counters, or keeps the one it has, and sets its mode;
    /// the change is live on an attached interface. Frames on an interface a program is attached
    /// to but that is not configured pass uncounted, so configure first.
    pub fn configure(&mut self, ifindex: u32, mode: Mode) -> Result<(), ProbeError> {
        let slot = match self.records.get(&ifindex) {
            Some(record) => record.slot,
            None => {
                let slot = *self.free_slots.last().ok_or(ProbeError::Full {
                    capacity: self.capacity,
                })?;
                self.counters.zero(slot)?;
                self.zero_sample_counts(slot)?;
                slot
            }
        };
        self.write_config(
            ifindex,
            IfaceConfig::new(slot, mode, i64::from(self.sample_rate)),
        )?;
        match self.records.get_mut(&ifindex) {
            Some(record) => record.mode = mode,
            None => {
                self.free_slots.pop();
                self.records.insert(
                    ifindex,
                    Record {
                        slot,
                        mode,
                        attachment: None,
                    },
                );
            }
        }
        Ok(())
    }

    pub fn mode(&self, ifindex: u32) -> Option<Mode> {
        self.records.get(&ifindex).map(|record| record.mode)
    }

    /// Attaches `program` to a configured interface. The kernel refuses when another XDP
    /// program is there; this never replaces one.
    pub fn attach(
        &mut self,
        ifindex: u32,
        program: Program,
        choice: XdpModeChoice,
    ) -> Result<Attached, ProbeError> {
        if !self.records.contains_key(&ifindex) {
            return Err(ProbeError::NotConfigured { ifindex });
        }
        let (link, attached) = match choice {
            XdpModeChoice::Native | XdpModeChoice::Generic => {
                let mode = if choice == XdpModeChoice::Native {
                    AttachedMode::Native
                } else {
                    AttachedMode::Generic
                };
                let link = self.link(ifindex, program, mode)?;
                (
                    link,
                    Attached {
                        hook: Hook::Xdp(mode),
                        native_refused: None,
                    },
                )
            }
            XdpModeChoice::Auto => match self.link(ifindex, program, AttachedMode::Native) {
                Ok(link) => (
                    link,
                    Attached {
                        hook: Hook::Xdp(AttachedMode::Native),
                        native_refused: None,
                    },
                ),
                Err(ProbeError::NoNativeSupport(error)) => (
                    self.link(ifindex, program, AttachedMode::Generic)?,
                    Attached {
                        hook: Hook::Xdp(AttachedMode::Generic),
                        native_refused: Some(error),
                    },
                ),
                Err(other) => return Err(other),
            },
        };
        self.record_attachment(ifindex, program, attached.hook, link);
        Ok(attached)
    }

    /// Attaches `program` to a configured interface at tcx ingress, first in its chain and
    /// beside whatever XDP or tcx programs are there, none of which is displaced.
    pub fn attach_tcx(&mut self, ifindex: u32, program: Program) -> Result<Attached, ProbeError> {
        if !self.records.contains_key(&ifindex) {
            return Err(ProbeError::NotConfigured { ifindex });
        }
        let link = self.tcx_link(ifindex, program, Direction::Ingress)?;
        self.record_attachment(ifindex, program, Hook::Tcx, link);
        Ok(Attached {
            hook: Hook::Tcx,
            native_refused: None,
        })
    }

    fn record_attachment(&mut self, ifindex: u32, program: Program, hook: Hook, link: Link) {
        let program_id = self.program_id(hook.stage(), program);
        let record = self
            .records
            .get_mut(&ifindex)
            .expect("checked by the caller");
        record.attachment = Some(Attachment {
            hook,
            program,
            program_id,
            link,
            egress: None,
            pinned: false,
        });
    }

    /// Counts the replies leaving an attached interface: attaches the egress program at its
    /// tcx egress, first in the chain, and pins it with the rest when the interface is pinned.
    pub fn attach_egress(&mut self, ifindex: u32) -> Result<(), ProbeError> {
        let attachment = self
            .records
            .get(&ifindex)
            .and_then(|record| record.attachment.as_ref())
            .ok_or(ProbeError::NotConfigured { ifindex })?;
        if attachment.egress.is_some() {
            return Ok(());
        }
        let (program, pinned) = (attachment.program, attachment.pinned);
        let link = self.tcx_link(ifindex, program, Direction::Egress)?;
        if pinned && let Some(standing) = &self.standing {
            crate::bpffs::pin(&link, &standing.dir.link_path(ifindex, Direction::Egress))
                .map_err(|error| ProbeError::PinLink { ifindex, error })?;
        }
        let attachment = self
            .records
            .get_mut(&ifindex)
            .and_then(|record| record.attachment.as_mut());
        attachment.expect("checked above").egress = Some(link);
        Ok(())
    }

    /// Stops counting an interface's replies: detaches (and unpins) its egress program.
    pub fn detach_egress(&mut self, ifindex: u32) -> Result<(), ProbeError> {
        let Some(attachment) = self
            .records
            .get_mut(&ifindex)
            .and_then(|record| record.attachment.as_mut())
        else {
            return Ok(());
        };
        if let Some(standing) = &self.standing {
            remove_pin(&standing.dir.link_path(ifindex, Direction::Egress))
                .map_err(|error| ProbeError::PinLink { ifindex, error })?;
        }
        attachment.egress = None;
        Ok(())
    }

    fn tcx_link(
        &self,
        ifindex: u32,
        program: Program,
        direction: Direction,
    ) -> Result<Link, ProbeError> {
        let stage = match direction {
            Direction::Ingress => Stage::TcxIngress,
            Direction::Egress => Stage::TcxEgress,
        };
        let fd = self.program_fd(stage, program)?;
        Link::tcx(fd, ifindex, direction).map_err(|error| match error.raw_os_error() {
            // An attach type this kernel does not know.
            Some(libc::EINVAL) => ProbeError::NoTcx(error),
            Some(libc::ERANGE) => ProbeError::TcxFull { direction, error },
            _ => ProbeError::Attach(error),
        })
    }

    fn link(&self, ifindex: u32, program: Program, mode: AttachedMode) -> Result<Link, ProbeError> {
        let fd = self.program_fd(Stage::Xdp, program)?;
        Link::xdp(fd, ifindex, mode).map_err(|error| match error.raw_os_error() {
            Some(libc::EBUSY | libc::EEXIST) => ProbeError::Occupied(error),
            // EOPNOTSUPP: no driver support; EINVAL, ERANGE: not in this configuration (an MTU
            // above a page on veth, for one). Generic XDP works on every device.
            Some(libc::EOPNOTSUPP | libc::EINVAL | libc::ERANGE)
                if mode == AttachedMode::Native =>
            {
                ProbeError::NoNativeSupport(error)
            }
            _ => ProbeError::Attach(error),
        })
    }

    /// Where `ifindex` is attached, and whether its replies are counted.
    pub fn attached_hook(&self, ifindex: u32) -> Option<(Hook, bool)> {
        self.records
            .get(&ifindex)?
            .attachment
            .as_ref()
            .map(|attachment| (attachment.hook, attachment.egress.is_some()))
    }

    /// The programs that run before this probe's at `ifindex`'s tcx hooks, first to last: at
    /// ingress (when served there) and at egress (when replies are counted). Attached first,
    /// it stays first unless another program is attached before it later; those ahead can end
    /// the chain (pass to the stack, redirect) so that it never sees a frame.
    pub fn tcx_preceded_by(&self, ifindex: u32) -> io::Result<TcxPrecededBy> {
        let mut preceded = TcxPrecededBy::default();
        let Some(attachment) = self
            .records
            .get(&ifindex)
            .and_then(|record| record.attachment.as_ref())
        else {
            return Ok(preceded);
        };
        let hooks = [
            (
                (attachment.hook == Hook::Tcx).then_some(&attachment.link),
                Direction::Ingress,
            ),
            (attachment.egress.as_ref(), Direction::Egress),
        ];
        for (link, direction) in hooks {
            let Some(link) = link else { continue };
            let ours = link.info()?.program_id;
            let chain = crate::link::tcx_programs(ifindex, direction)?;
            let ahead: Vec<u32> = chain.into_iter().take_while(|id| *id != ours).collect();
            match direction {
                Direction::Ingress => preceded.ingress = ahead,
                Direction::Egress => preceded.egress = ahead,
            }
        }
        Ok(preceded)
    }

    /// Whether this probe's program is still attached to the device with `ifindex`, whose XDP
    /// program (anyone's) has the id `xdp_program_id`: false once the device is gone, or
    /// replaced by one that took its ifindex.
    pub fn holds(&self, ifindex: u32, xdp_program_id: Option<u32>) -> bool {
        let Some(attachment) = self
            .records
            .get(&ifindex)
            .and_then(|record| record.attachment.as_ref())
        else {
            return false;
        };
        match attachment.hook {
            Hook::Xdp(_) => xdp_program_id == Some(attachment.program_id),
            // A tcx link of a device that is gone is defunct, with no ifindex.
            Hook::Tcx => attachment
                .link
                .info()
                .is_ok_and(|info| info.ifindex == Some(ifindex)),
        }
    }

    /// Detaches from `ifindex`, keeping its configuration and counters.
    pub fn detach(&mut self, ifindex: u32) -> Result<(), ProbeError> {
        let record = self
            .records
            .get_mut(&ifindex)
            .ok_or(ProbeError::NotConfigured { ifindex })?;
        record.attachment = None;
        Ok(())
    }

    /// Detaches from `ifindex` and frees its slot, returning its final counters. The slot's
    /// counters are zeroed, now and again when the slot is given out.
    pub fn release(&mut self, ifindex: u32) -> Result<SlotCounters, ProbeError> {
        let record = self
            .records
            .remove(&ifindex)
            .ok_or(ProbeError::NotConfigured { ifindex })?;
        // Unpinned first: the link then detaches when dropped.
        self.clear_pinned(ifindex)?;
        drop(record.attachment);
        self.write_config(ifindex, IfaceConfig::default())?;
        let samples = self.sample_counts(record.slot)?;
        self.counters
            .read(record.slot + 1)
            .map_err(ProbeError::ReadCounters)?;
        let mut counters = self.counters.slot(record.slot);
        counters.samples = samples;
        self.counters.zero(record.slot)?;
        self.zero_sample_counts(record.slot)?;
        self.free_slots.push(record.slot);
        Ok(counters)
    }

    /// The ring buffer the programs send samples through, once: whoever reads it owns it.
    pub fn take_samples(&mut self) -> Option<RingBuf<MapData>> {
        self.samples.take()
    }

    pub const fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Gives every configured interface a full second's worth of samples again; call once a
    /// second for the rate to hold.
    pub fn refill_sample_tokens(&mut self) -> Result<(), ProbeError> {
        if self.sample_rate == 0 {
            return Ok(());
        }
        self.set_sample_tokens(i64::from(self.sample_rate))
    }

    /// Takes every interface's sample budget away: a standing filter whose reader is gone
    /// counts samples as suppressed rather than filling a ring nobody reads.
    pub fn stop_sampling(&mut self) -> Result<(), ProbeError> {
        self.set_sample_tokens(0)
    }

    fn set_sample_tokens(&mut self, tokens: i64) -> Result<(), ProbeError> {
        // The tokens are part of each interface's configuration, written whole: those in the
        // array in one call, the rare ones in the hash map one by one.
        let (mut keys, mut values) = (Vec::new(), Vec::new());
        let mut high = Vec::new();
        for (&ifindex, record) in &self.records {
            let config = IfaceConfig::new(record.slot, record.mode, tokens);
            if ifindex < IFINDEX_ARRAY_LEN {
                keys.push(ifindex);
                values.push(config);
            } else {
                high.push((ifindex, config));
            }
        }
        let fd = self.config.map().fd().as_fd().as_raw_fd() as u32;
        map_batch::update(fd, &keys, &values).map_err(ProbeError::Refill)?;
        for (ifindex, config) in high {
            self.write_config(ifindex, config)?;
        }
        Ok(())
    }

    fn sample_counts(&self, slot: u32) -> Result<SampleCounts, ProbeError> {
        let mut total = SampleCounts::default();
        if self.sample_rate == 0 {
            return Ok(total);
        }
        for counts in self.sample_counts.get(&slot, 0)?.iter() {
            total.add(*counts);
        }
        Ok(total)
    }

    fn zero_sample_counts(&mut self, slot: u32) -> Result<(), MapError> {
        let zeroes = PerCpuValues::try_from(vec![SampleCounts::default(); self.cpus])
            .expect("one value per CPU");
        self.sample_counts.set(slot, zeroes, 0)
    }

    /// The counters of every configured interface, summed over CPUs, from one read of the map.
    ///
    /// The sample counts are read first: a program counts a frame before it samples it, so
    /// read in this order no interface shows more samples than matched frames.
    pub fn counters(&mut self) -> Result<BTreeMap<u32, SlotCounters>, ProbeError> {
        let samples = self
            .records
            .iter()
            .map(|(ifindex, record)| Ok((*ifindex, self.sample_counts(record.slot)?)))
            .collect::<Result<BTreeMap<u32, SampleCounts>, ProbeError>>()?;
        let slots_in_use = self.records.values().map(|record| record.slot + 1).max();
        self.counters
            .read(slots_in_use.unwrap_or(0))
            .map_err(ProbeError::ReadCounters)?;
        Ok(self
            .records
            .iter()
            .map(|(ifindex, record)| {
                let mut counters = self.counters.slot(record.slot);
                counters.samples = samples[ifindex];
                (*ifindex, counters)
            })
            .collect())
    }

    fn write_config(&mut self, ifindex: u32, config: IfaceConfig) -> Result<(), ProbeError> {
        if ifindex < IFINDEX_ARRAY_LEN {
            self.config.set(ifindex, config, 0)?;
        } else if config == IfaceConfig::default() {
            match self.config_high.remove(&ifindex) {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                Err(error) => return Err(error.into()),
            }
        } else {
            self.config_high.insert(ifindex, config, 0)?;
        }
        Ok(())
    }
}

/// The ids of the programs before this probe's in an interface's tcx chains.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TcxPrecededBy {
    pub ingress: Vec<u32>,
    pub egress: Vec<u32>,
}

impl TcxPrecededBy {
    pub const fn is_empty(&self) -> bool {
        self.ingress.is_empty() && self.egress.is_empty()
    }
}

/// The link pinned for an interface of a standing filter.
enum PinnedLink {
    /// Attached to the interface, with what the kernel says about it.
    Attached(Link, crate::link::LinkInfo),
    /// The device is gone: its link is defunct (a device that took the ifindex since is
    /// another), or was never pinned and no device has the ifindex.
    Gone,
    /// Not pinned, the device still there: the process pinning it was killed before its link.
    CutShort,
}

/// The record of a pinned interface whose link is attached, with its egress link if any.
fn pinned_record(
    pinned: &PinnedInterface,
    slot: u32,
    mode: Mode,
    (link, egress): (Link, Option<Link>),
    program_id: u32,
) -> Record {
    Record {
        slot,
        mode,
        attachment: Some(Attachment {
            hook: pinned.hook(),
            program: pinned.program(),
            program_id,
            link,
            egress,
            pinned: true,
        }),
    }
}

const fn mode_of(action: probe_common::Action) -> Mode {
    match action {
        probe_common::Action::Passed | probe_common::Action::Replied => Mode::Monitor,
        probe_common::Action::Dropped => Mode::Drop,
    }
}

/// Removes a pin, if there is one.
fn remove_pin(path: &std::path::Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

/// Whether an interface has `ifindex` in this network namespace.
pub(crate) fn interface_exists(ifindex: u32) -> bool {
    let mut name = [0; libc::IF_NAMESIZE];
    // SAFETY: `name` has the IF_NAMESIZE bytes the call may write.
    !unsafe { libc::if_indextoname(ifindex, name.as_mut_ptr()) }.is_null()
}
