//! The loaded programs (XDP, tc ingress, tc egress), their maps, and one record per interface
//! they serve: its counter slot, its mode and, while attached, the links (or, without tcx, the
//! clsact filters) that hold the attachment.
//!
//! The programs and maps come in generations (see [`generation`]): instances of the object loaded
//! as interfaces come, each serving those given a slot in it.
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
mod error;
pub mod filters;
mod generation;
mod lifecycle;
pub(crate) mod occupant;
pub mod pins;
mod sampling;
mod takeover;

pub(crate) use self::lifecycle::interface_exists;
pub use self::{
    error::{ProbeError, native_refusal},
    lifecycle::TcxPrecededBy,
};

use self::{
    attachment::{AttachedMode, Direction, Hook, Stage, TcHook, XdpPrograms, program_name},
    filters::{Filter, FilterOwner},
    generation::Generation,
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
    /// The generation whose programs and maps serve it.
    generation: usize,
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
    generation: usize,
    slot: u32,
}

/// The pinned state of a standing filter; each generation has its own INTERFACES.
#[derive(Debug)]
struct Standing {
    dir: PinDir,
    /// Interfaces it lists whose link is gone while a device with their ifindex is here (the
    /// pin removed, the link detached, the device replaced): neither counted nor filtered until
    /// a `run --pin` attaches them again.
    detached: Vec<u32>,
}

/// How the probe is loaded.
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions {
    /// How many interfaces the first generation has room for (at most `bound`); its counter
    /// map takes `capacity × size_of::<SlotCounters>()` (576) bytes per CPU.
    pub capacity: u32,
    /// The most interfaces it may serve at once, loading generations as they come (at most
    /// [`MAX_SLOTS`]); each generation's `IFACE_CONFIG` takes 1 MiB besides its counters.
    pub bound: u32,
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
    /// The instances of the object loaded, in the order they were; the first is never empty
    /// of programs but for a standing filter only read. See [`generation`].
    generations: Vec<Generation>,
    /// How it was loaded, for the generations loaded later.
    options: LoadOptions,
    /// The build of the programs loaded: [`PROBE_OBJECT`] but in the benchmark.
    object: &'static [u8],
    /// The most slots all generations together may have (`--capacity`).
    bound: u32,
    sample_rate: u32,
    cpus: usize,
    records: BTreeMap<u32, Record>,
    standing: Option<Standing>,
    /// How the tc hooks are attached on this kernel.
    tc_hook: TcHook,
    /// Who owns the clsact filters this probe makes: taken when it makes its first.
    filter_owner: Option<FilterOwner>,
}

impl Probe {
    /// Loads the embedded programs, with maps sized for `options.capacity` interfaces, that
    /// grow as interfaces come up to `options.bound`.
    pub fn load(options: LoadOptions) -> Result<Self, ProbeError> {
        Self::load_over(PROBE_OBJECT, options, None)
    }

    /// Loads another build of the programs than the embedded one: the benchmark measures builds
    /// that stop after one step of a matched frame's path, to say what each step costs.
    pub fn load_object(object: &'static [u8], options: LoadOptions) -> Result<Self, ProbeError> {
        Self::load_over(object, options, None)
    }

    /// Loads the programs of `object`, over the maps pinned in `pinned` when given.
    fn load_over(
        object: &'static [u8],
        options: LoadOptions,
        pinned: Option<&PinDir>,
    ) -> Result<Self, ProbeError> {
        let bound = options.bound.clamp(1, MAX_SLOTS);
        // Not clamped to the bound: a standing filter's is what it was pinned with.
        let capacity = options.capacity.clamp(1, MAX_SLOTS);
        let cpus = nr_cpus().map_err(|(_, error)| ProbeError::Cpus(error))?;
        let first = Generation::load(object, options, capacity, pinned, cpus)?;
        let tc_hook = TcHook::for_kernel(KernelFeatures::probe()?.tcx);
        Ok(Self {
            generations: vec![first],
            options,
            object,
            bound,
            sample_rate: options.sample_rate.min(MAX_SAMPLE_RATE),
            cpus,
            records: BTreeMap::new(),
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

    /// Interfaces the generations loaded have slots for.
    pub fn capacity(&self) -> u32 {
        self.generations
            .iter()
            .map(|generation| generation.capacity)
            .sum()
    }

    /// The most interfaces it may serve, growing to it as they come.
    pub const fn bound(&self) -> u32 {
        self.bound
    }

    /// How many instances of the object are loaded.
    pub fn generations(&self) -> usize {
        self.generations.len()
    }

    /// Which XDP programs are loaded.
    pub const fn xdp_programs(&self) -> XdpPrograms {
        self.options.xdp
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

    /// A program of the first generation.
    fn loaded(&self, stage: Stage, program: Framing) -> &aya::programs::Program {
        self.generations[0].loaded(stage, program, self.options.xdp)
    }

    fn program_fd(
        &self,
        generation: usize,
        stage: Stage,
        program: Framing,
    ) -> Result<&aya::programs::ProgramFd, ProbeError> {
        Ok(self.generations[generation]
            .loaded(stage, program, self.options.xdp)
            .fd()?)
    }
}
