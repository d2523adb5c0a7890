//! The loaded programs (XDP, tc ingress, tc egress), their maps, and one record per interface
//! they serve: its counter slot, its mode and, while attached, the links (or, without tcx, the
//! clsact filters) that hold the attachment.
//!
//! Loading and the per-interface lifecycle (configure, attach, detach, release) are here; the
//! standing filter's takeover is in `takeover`, the samples in `sampling`, the attachment
//! vocabulary in [`attachment`], the pinned layout in [`pins`].
//!
//! Attachments are BPF links owned by this process: when it exits, however it exits, the kernel
//! closes their file descriptors and detaches the programs, unless the probe is a standing
//! filter ([`Probe::load_standing`]) whose links and maps are pinned in bpffs (see
//! [`crate::probe::pins`]). On a kernel without tcx, the tc hooks are clsact filters, which no
//! process holds: see [`filters`] for how each is deleted by its owner.

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
    CLASSES_PER_INTERFACE, ConfigMap, Framing, IfaceConfig, MAX_SLOTS, Mode, Sample, SampleCounts,
    SlotCounters, map_names,
};
use thiserror::Error;

pub mod attachment;
pub mod filters;
pub(crate) mod occupant;
pub mod pins;
mod sampling;
mod takeover;

use self::{
    attachment::{AttachedMode, Direction, Hook, Stage, TcHook, XdpPrograms, program_name},
    filters::{Filter, FilterOwner},
    sampling::ring_size,
    takeover::remove_pin,
};
use crate::{
    PROBE_OBJECT,
    kernel::counter_map::CounterMap,
    kernel::features::{Feature, FeatureProbeError, KernelFeatures},
    kernel::link::Link,
    kernel::map_batch,
    probe::pins::{Found, PinDir, PinError, PinnedInterface},
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
    #[error(
        "{map} holds counts for interface slot {slot} that no kernel could have counted: \
         something other than the probe wrote them, and they cannot be trusted; \
         `localnet-probe detach` removes the standing filter"
    )]
    ImplausibleCounts { map: &'static str, slot: u32 },
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
    #[error(
        "the driver takes this MTU in native XDP only with {feature}, which this kernel lacks \
         ({0}); lower the MTU, use --xdp-mode generic or auto, or leave the interface out",
        feature = Feature::XDP_FRAGS
    )]
    NativeNeedsMultiBuffer(io::Error),
    #[error(
        "the kernel refused the XDP link as invalid ({0}): kernels before Linux {minimum} have no \
         XDP BPF links, which localnet-probe attaches with",
        minimum = crate::kernel::features::MINIMUM_KERNEL
    )]
    NoXdpLinks(io::Error),
    #[error("another XDP program is attached (the kernel said: {0})")]
    Occupied(io::Error),
    #[error(transparent)]
    Features(#[from] FeatureProbeError),
    #[error(
        "the kernel refused a clsact filter at tc {} (this kernel has no tcx, Linux 6.6, so the \
         probe falls back to one): {error}",
        direction.name()
    )]
    Clsact {
        direction: Direction,
        error: io::Error,
    },
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
    #[error(
        "cannot take over the pinned link of interface {ifindex}: its driver takes its MTU in \
         native XDP only with {}, which this kernel lacks ({error}); lower its MTU, or remove it \
         from the standing filter with `localnet-probe detach`",
        Feature::XDP_FRAGS
    )]
    AdoptNeedsMultiBuffer { ifindex: u32, error: io::Error },
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
    program: Framing,
    /// The kernel's id of the program the link runs.
    program_id: u32,
    /// Dropped to detach, unless pinned. Dropped before `egress`: the last filter of the probe
    /// on a clsact qdisc it added deletes the qdisc.
    held: Held,
    /// At tc egress, counting replies.
    egress: Option<Held>,
    pinned: bool,
}

/// What keeps a program attached: a BPF link, or a clsact filter where there is no tcx.
#[derive(Debug)]
enum Held {
    Link(Link),
    Filter(Filter),
}

impl Held {
    const fn tc_hook(&self) -> TcHook {
        match self {
            Self::Link(_) => TcHook::Tcx,
            Self::Filter(_) => TcHook::Clsact,
        }
    }

    const fn filter(&self) -> Option<&Filter> {
        match self {
            Self::Link(_) => None,
            Self::Filter(filter) => Some(filter),
        }
    }
}

/// An interface of a standing filter, as a probe taking it over found it.
#[derive(Debug)]
pub struct Adopted {
    pub ifindex: u32,
    /// Its name when last seen by a probe.
    pub name: String,
    pub program: Framing,
    pub mode: Mode,
    /// Where it is attached; `None` when the interface is gone, its pins cleared.
    pub hook: Option<Hook>,
    /// Replies are counted at its egress, through this.
    pub egress: Option<TcHook>,
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
    /// The XDP programs to load: those without multi-buffer where the kernel lacks it.
    pub xdp: XdpPrograms,
}

/// The most samples per second and interface: beyond it a sample is no longer a sample.
pub const MAX_SAMPLE_RATE: u32 = 100_000;

/// `run --sample-rate` when not given: enough samples per second and interface to see who sends
/// loopback frames, few enough that a flood costs the reader nothing.
pub const DEFAULT_SAMPLE_RATE: u32 = 100;

/// The XDP programs loaded into the kernel, with the interfaces they serve.
pub struct Probe {
    /// `None` for a standing filter only read ([`Probe::read_standing`]).
    ebpf: Option<Ebpf>,
    /// By [`Stage`], then [`Framing`].
    program_ids: [[u32; 2]; 3],
    /// Which XDP programs are loaded.
    xdp: XdpPrograms,
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
    /// How the tc hooks are attached on this kernel.
    tc_hook: TcHook,
    /// Who owns the clsact filters this probe makes: taken when it makes its first.
    filter_owner: Option<FilterOwner>,
}

impl Probe {
    /// Loads the embedded programs, with maps sized for `options.capacity` interfaces.
    pub fn load(options: LoadOptions) -> Result<Self, ProbeError> {
        Self::load_over(options, None)
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
            .override_global(map_names::SAMPLING, &sampling, true)
            .map_max_entries(map_names::COUNTERS, capacity * CLASSES_PER_INTERFACE as u32)
            .map_max_entries(map_names::IFACE_CONFIG_HIGH, capacity)
            .map_max_entries(map_names::SAMPLE_COUNTS, capacity)
            .map_max_entries(map_names::SAMPLES, ring_size(sample_rate, capacity))
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
            for program in Framing::ALL {
                let loaded = ebpf
                    .program_mut(program_name(program, stage, options.xdp))
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
                program_ids[stage.index()][program as usize] = info.id();
            }
        }
        let mut take_map = |name: &'static str| {
            ebpf.take_map(name).ok_or(ProbeError::MissingPart(
                "map (see probe-ebpf for their names)",
            ))
        };
        let config = Array::try_from(take_map(map_names::IFACE_CONFIG)?)?;
        let config_high = HashMap::try_from(take_map(map_names::IFACE_CONFIG_HIGH)?)?;
        let cpus = nr_cpus().map_err(|(_, error)| ProbeError::Cpus(error))?;
        let counters = CounterMap::new(
            PerCpuArray::try_from(take_map(map_names::COUNTERS)?)?,
            capacity,
            cpus,
        );
        let sample_counts = PerCpuArray::try_from(take_map(map_names::SAMPLE_COUNTS)?)?;
        let samples = RingBuf::try_from(take_map(map_names::SAMPLES)?)?;
        let tc_hook = TcHook::for_kernel(KernelFeatures::probe()?.tcx);
        Ok(Self {
            ebpf: Some(ebpf),
            program_ids,
            xdp: options.xdp,
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
            tc_hook,
            filter_owner: None,
        })
    }

    /// How this probe attaches at tc hooks: through tcx links, or clsact filters where the
    /// kernel has no tcx.
    pub const fn tc_hook(&self) -> TcHook {
        self.tc_hook
    }

    /// The interfaces attached, with their programs.
    pub fn served(&self) -> impl Iterator<Item = (u32, Framing)> + '_ {
        self.records
            .iter()
            .filter_map(|(ifindex, record)| Some((*ifindex, record.attachment.as_ref()?.program)))
    }

    /// Interfaces the counter map has slots for.
    pub const fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Which XDP programs are loaded.
    pub const fn xdp_programs(&self) -> XdpPrograms {
        self.xdp
    }

    fn read_config(&self, ifindex: u32) -> Result<IfaceConfig, ProbeError> {
        let found = match ConfigMap::of(ifindex) {
            ConfigMap::Array => self.config.get(&ifindex, 0),
            ConfigMap::High => self.config_high.get(&ifindex, 0),
        };
        match found {
            Ok(config) => Ok(config),
            Err(MapError::KeyNotFound) => Ok(IfaceConfig::default()),
            Err(error) => Err(error.into()),
        }
    }

    /// A loaded XDP program, for `BPF_PROG_TEST_RUN`. A standing filter only read has none.
    pub fn program(&self, program: Framing) -> &Xdp {
        self.loaded(Stage::Xdp, program)
            .try_into()
            .expect("checked at load")
    }

    /// A loaded tc program, for `BPF_PROG_TEST_RUN`. A standing filter only read has none.
    pub fn classifier(&self, direction: Direction, program: Framing) -> &SchedClassifier {
        let stage = Stage::Tc(direction);
        self.loaded(stage, program)
            .try_into()
            .expect("checked at load")
    }

    fn loaded(&self, stage: Stage, program: Framing) -> &aya::programs::Program {
        self.ebpf
            .as_ref()
            .expect("a probe that loaded its programs")
            .program(program_name(program, stage, self.xdp))
            .expect("checked at load")
    }

    fn program_fd(
        &self,
        stage: Stage,
        program: Framing,
    ) -> Result<&aya::programs::ProgramFd, ProbeError> {
        Ok(self.loaded(stage, program).fd()?)
    }

    /// The kernel's id of a loaded program.
    pub const fn program_id(&self, stage: Stage, program: Framing) -> u32 {
        self.program_ids[stage.index()][program as usize]
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
        program: Framing,
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
                Err(
                    ProbeError::NoNativeSupport(error) | ProbeError::NativeNeedsMultiBuffer(error),
                ) => (
                    self.link(ifindex, program, AttachedMode::Generic)?,
                    Attached {
                        hook: Hook::Xdp(AttachedMode::Generic),
                        native_refused: Some(error),
                    },
                ),
                Err(other) => return Err(other),
            },
        };
        self.record_attachment(ifindex, program, attached.hook, Held::Link(link));
        Ok(attached)
    }

    /// Attaches `program` to a configured interface at tc ingress, first there and beside
    /// whatever XDP programs, tcx programs or clsact filters are there, none of which is
    /// displaced: through a tcx link, or a clsact filter where the kernel has no tcx.
    pub fn attach_tc(&mut self, ifindex: u32, program: Framing) -> Result<Attached, ProbeError> {
        if !self.records.contains_key(&ifindex) {
            return Err(ProbeError::NotConfigured { ifindex });
        }
        let held = self.tc_attachment(ifindex, program, Direction::Ingress, false)?;
        let hook = Hook::Tc(held.tc_hook());
        self.record_attachment(ifindex, program, hook, held);
        Ok(Attached {
            hook,
            native_refused: None,
        })
    }

    fn record_attachment(&mut self, ifindex: u32, program: Framing, hook: Hook, held: Held) {
        let program_id = self.program_id(hook.stage(), program);
        let record = self
            .records
            .get_mut(&ifindex)
            .expect("checked by the caller");
        record.attachment = Some(Attachment {
            hook,
            program,
            program_id,
            held,
            egress: None,
            pinned: false,
        });
    }

    /// Counts the replies leaving an attached interface: attaches the egress program at its
    /// tc egress, first there, and pins it with the rest when the interface is pinned.
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
        // A clsact qdisc the ingress filter added goes with the last of the two.
        let clsact_added = attachment.held.filter().is_some_and(Filter::clsact_added);
        let mut held = self.tc_attachment(ifindex, program, Direction::Egress, clsact_added)?;
        if pinned && let Some(standing) = &mut self.standing {
            match &mut held {
                Held::Link(link) => crate::kernel::bpffs::pin(
                    &*link,
                    &standing.dir.link_path(ifindex, Direction::Egress),
                )
                .map_err(|error| ProbeError::PinLink { ifindex, error })?,
                Held::Filter(filter) => {
                    let mut entry = standing.interfaces.get(&ifindex, 0)?;
                    entry.set_egress_filter(Some(filter.clsact_added()));
                    standing.interfaces.insert(ifindex, entry, 0)?;
                    filter.keep(true);
                }
            }
        }
        let attachment = self
            .records
            .get_mut(&ifindex)
            .and_then(|record| record.attachment.as_mut());
        attachment.expect("checked above").egress = Some(held);
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
        if let Some(standing) = &mut self.standing {
            remove_pin(&standing.dir.link_path(ifindex, Direction::Egress))
                .map_err(|error| ProbeError::PinLink { ifindex, error })?;
            if attachment.pinned
                && let Ok(mut entry) = standing.interfaces.get(&ifindex, 0)
            {
                entry.set_egress_filter(None);
                standing.interfaces.insert(ifindex, entry, 0)?;
            }
        }
        if let Some(Held::Filter(filter)) = &mut attachment.egress {
            filter.keep(false);
        }
        attachment.egress = None;
        Ok(())
    }

    /// Attaches `program` at `ifindex`'s tc hook in `direction`, as this kernel allows: a tcx
    /// link, or a clsact filter (`clsact_added`: another filter of this probe's there added
    /// the qdisc).
    fn tc_attachment(
        &mut self,
        ifindex: u32,
        program: Framing,
        direction: Direction,
        clsact_added: bool,
    ) -> Result<Held, ProbeError> {
        let stage = Stage::Tc(direction);
        if self.tc_hook == TcHook::Clsact {
            if self.filter_owner.is_none() {
                let owner = if self.standing.is_some() {
                    FilterOwner::standing()
                } else {
                    FilterOwner::process().map_err(ProbeError::Attach)?
                };
                self.filter_owner = Some(owner);
            }
            let owner = self.filter_owner.as_ref().expect("set above");
            let fd = self.program_fd(stage, program)?.as_fd();
            return Filter::attach(owner, (fd, program), ifindex, direction, clsact_added)
                .map(Held::Filter)
                .map_err(|error| ProbeError::Clsact { direction, error });
        }
        let fd = self.program_fd(stage, program)?;
        Link::tcx(fd, ifindex, direction)
            .map(Held::Link)
            .map_err(|error| match error.raw_os_error() {
                Some(libc::ERANGE) => ProbeError::TcxFull { direction, error },
                _ => ProbeError::Attach(error),
            })
    }

    fn link(&self, ifindex: u32, program: Framing, mode: AttachedMode) -> Result<Link, ProbeError> {
        let fd = self.program_fd(Stage::Xdp, program)?;
        Link::xdp(fd, ifindex, mode).map_err(|error| match error.raw_os_error() {
            Some(libc::EBUSY | libc::EEXIST) => ProbeError::Occupied(error),
            // A driver that takes this MTU with multi-buffer (veth: above about 3,500 bytes).
            Some(libc::ERANGE)
                if mode == AttachedMode::Native && self.xdp == XdpPrograms::Linear =>
            {
                ProbeError::NativeNeedsMultiBuffer(error)
            }
            // EOPNOTSUPP: no driver support; EINVAL, ERANGE: not in this configuration (an MTU
            // above a page on veth, for one). Generic XDP works on every device.
            Some(libc::EOPNOTSUPP | libc::EINVAL | libc::ERANGE)
                if mode == AttachedMode::Native =>
            {
                ProbeError::NoNativeSupport(error)
            }
            // Generic XDP takes every device and program: the link itself is what is refused.
            Some(libc::EINVAL) => ProbeError::NoXdpLinks(error),
            _ => ProbeError::Attach(error),
        })
    }

    /// Where `ifindex` is attached, and where its replies are counted, if they are.
    pub fn attached_hook(&self, ifindex: u32) -> Option<(Hook, Option<TcHook>)> {
        self.records
            .get(&ifindex)?
            .attachment
            .as_ref()
            .map(|attachment| {
                (
                    attachment.hook,
                    attachment.egress.as_ref().map(Held::tc_hook),
                )
            })
    }

    /// The programs that run before this probe's at `ifindex`'s tc hooks, first to last: at
    /// ingress (when served there) and at egress (when replies are counted); for clsact
    /// filters, the program ids of the filters before it (0 for a filter without a program).
    /// Attached first, it stays first unless another program is attached before it later;
    /// those ahead can end the chain (pass to the stack, redirect) so that it never sees a
    /// frame.
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
                matches!(attachment.hook, Hook::Tc(_)).then_some(&attachment.held),
                Direction::Ingress,
            ),
            (attachment.egress.as_ref(), Direction::Egress),
        ];
        for (held, direction) in hooks {
            let ahead = match held {
                None => continue,
                Some(Held::Link(link)) => {
                    let ours = link.info()?.program_id;
                    let chain = crate::kernel::link::tcx_programs(ifindex, direction)?;
                    chain.into_iter().take_while(|id| *id != ours).collect()
                }
                Some(Held::Filter(filter)) => filter.preceded_by()?,
            };
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
        match (&attachment.hook, &attachment.held) {
            (Hook::Xdp(_), _) => xdp_program_id == Some(attachment.program_id),
            // A tcx link of a device that is gone is defunct, with no ifindex.
            (Hook::Tc(_), Held::Link(link)) => {
                link.info().is_ok_and(|info| info.ifindex == Some(ifindex))
            }
            (Hook::Tc(_), Held::Filter(filter)) => filter.is_attached(),
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
        let mut attachment = record.attachment;
        if let Some(attachment) = &mut attachment {
            attachment.release_filters();
        }
        drop(attachment);
        self.write_config(ifindex, IfaceConfig::default())?;
        let samples = self.sample_counts(record.slot)?;
        self.counters
            .read(record.slot + 1)
            .map_err(ProbeError::ReadCounters)?;
        let mut counters = self.counters.slot_saturating(record.slot);
        counters.samples = samples;
        self.counters.zero(record.slot)?;
        self.zero_sample_counts(record.slot)?;
        self.free_slots.push(record.slot);
        Ok(counters)
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
        self.records
            .iter()
            .map(|(ifindex, record)| {
                let implausible = |map| ProbeError::ImplausibleCounts {
                    map,
                    slot: record.slot,
                };
                let mut counters = self
                    .counters
                    .slot(record.slot)
                    .ok_or_else(|| implausible(map_names::COUNTERS))?;
                counters.samples = samples[ifindex];
                // A program counts a frame before it samples it, and the samples were read
                // first: more samples than matched frames were written by someone else.
                let matched = counters
                    .classes
                    .iter()
                    .fold(0_u64, |sum, class| sum.saturating_add(class.packets));
                if counters
                    .samples
                    .emitted
                    .saturating_add(counters.samples.lost)
                    > matched
                {
                    return Err(implausible(map_names::SAMPLE_COUNTS));
                }
                Ok((*ifindex, counters))
            })
            .collect()
    }

    fn write_config(&mut self, ifindex: u32, config: IfaceConfig) -> Result<(), ProbeError> {
        if ConfigMap::of(ifindex) == ConfigMap::Array {
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

/// Whether an interface has `ifindex` in this network namespace.
pub(crate) fn interface_exists(ifindex: u32) -> bool {
    let mut name = [0; libc::IF_NAMESIZE];
    // SAFETY: `name` has the IF_NAMESIZE bytes the call may write.
    !unsafe { libc::if_indextoname(ifindex, name.as_mut_ptr()) }.is_null()
}
