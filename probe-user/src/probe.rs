//! The loaded XDP program, its maps, and its attachments.
//!
//! Attachments are BPF links owned by this process: when it exits, however it exits, the kernel
//! closes their file descriptors and detaches the program. Nothing is pinned.

use std::{collections::BTreeMap, io};

use aya::{
    Ebpf, EbpfLoader, VerifierLogLevel,
    maps::{Array, HashMap, MapData, MapError, PerCpuArray},
    programs::{
        ProgramError, Xdp, XdpMode,
        links::{LinkError, LinkType},
        loaded_links,
    },
    sys::SyscallError,
};
use probe_common::{
    Action, CLASSES_PER_INTERFACE, Counter, IFINDEX_ARRAY_LEN, IfaceConfig, LoopbackMatch,
    MAX_INTERFACES, Mode, counter_index,
};
use thiserror::Error;

use crate::PROBE_OBJECT;

const PROGRAM_NAME: &str = "localnet_probe";

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
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("more than {MAX_INTERFACES} interfaces")]
    TooManyInterfaces,
    #[error("interface {ifindex} is not configured")]
    NotConfigured { ifindex: u32 },
    #[error("no native XDP support (the driver refused it: {0}); try --xdp-mode generic")]
    NoNativeSupport(io::Error),
    #[error("another XDP program is attached (the kernel said: {0})")]
    Occupied(io::Error),
    #[error(
        "the kernel attached the program without a BPF link, so it would outlive this process; \
         detached it again (Linux 5.9 or newer is needed)"
    )]
    NoBpfLink,
}

/// How to attach to an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpModeChoice {
    /// Native, or generic when the driver has no native XDP.
    Auto,
    Native,
    Generic,
}

/// An attachment made by [`Probe::attach`].
#[derive(Debug)]
pub struct Attached {
    pub mode: AttachedMode,
    /// Why native mode was refused, when `Auto` fell back to generic.
    pub native_refused: Option<io::Error>,
}

/// The XDP mode an attachment actually got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachedMode {
    Native,
    Generic,
}

impl AttachedMode {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Generic => "generic",
        }
    }

    const fn flags(self) -> XdpMode {
        match self {
            Self::Native => XdpMode::Driver,
            Self::Generic => XdpMode::Skb,
        }
    }
}

/// Where an interface's counters live and what the program does on it.
#[derive(Clone, Copy, Debug)]
struct Registration {
    slot: u32,
    mode: Mode,
}

/// Per-class totals of one interface, summed over CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InterfaceCounters {
    /// Indexed like slot 0 of the counter array.
    by_class: [Counter; CLASSES_PER_INTERFACE as usize],
}

impl InterfaceCounters {
    pub fn get(&self, matched: LoopbackMatch, action: Action) -> Counter {
        self.by_class[counter_index(0, matched, action) as usize]
    }

    /// All classes, or those of one action.
    pub fn total(&self, action: Option<Action>) -> Counter {
        let mut total = Counter::default();
        for (_, class_action, counter) in self.classes() {
            if action.is_none_or(|action| action == class_action) {
                total.add(counter);
            }
        }
        total
    }

    /// Non-zero classes, in family, address, action order.
    pub fn classes(&self) -> impl Iterator<Item = (LoopbackMatch, Action, Counter)> + '_ {
        LoopbackMatch::all().flat_map(move |matched| {
            Action::ALL.into_iter().filter_map(move |action| {
                let counter = self.get(matched, action);
                (counter.packets != 0).then_some((matched, action, counter))
            })
        })
    }
}

/// The XDP program loaded into the kernel, with the interfaces it serves.
pub struct Probe {
    ebpf: Ebpf,
    program_id: u32,
    config: Array<MapData, IfaceConfig>,
    config_high: HashMap<MapData, u32, IfaceConfig>,
    counters: PerCpuArray<MapData, Counter>,
    registrations: BTreeMap<u32, Registration>,
    attached: BTreeMap<u32, AttachedMode>,
}

impl Probe {
    /// Loads the embedded program. With `verifier_log`, a rejection carries the verifier's full log.
    pub fn load(verifier_log: bool) -> Result<Self, ProbeError> {
        let level = if verifier_log {
            VerifierLogLevel::VERBOSE | VerifierLogLevel::STATS
        } else {
            VerifierLogLevel::default()
        };
        let mut ebpf = EbpfLoader::new()
            .verifier_log_level(level)
            .load(PROBE_OBJECT)
            .map_err(ProbeError::Load)?;
        let program: &mut Xdp = ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or(ProbeError::MissingPart("XDP program"))?
            .try_into()?;
        program.load().map_err(|error| match error {
            ProgramError::LoadError {
                io_error,
                verifier_log,
            } => ProbeError::Verifier {
                io_error,
                verifier_log: verifier_log.to_string(),
            },
            other => ProbeError::Program(other),
        })?;
        let program_id = program.info()?.id();
        let config = Array::try_from(
            ebpf.take_map("IFACE_CONFIG")
                .ok_or(ProbeError::MissingPart("IFACE_CONFIG map"))?,
        )?;
        let config_high = HashMap::try_from(
            ebpf.take_map("IFACE_CONFIG_HIGH")
                .ok_or(ProbeError::MissingPart("IFACE_CONFIG_HIGH map"))?,
        )?;
        let counters = PerCpuArray::try_from(
            ebpf.take_map("COUNTERS")
                .ok_or(ProbeError::MissingPart("COUNTERS map"))?,
        )?;
        Ok(Self {
            ebpf,
            program_id,
            config,
            config_high,
            counters,
            registrations: BTreeMap::new(),
            attached: BTreeMap::new(),
        })
    }

    /// The loaded program, for `BPF_PROG_TEST_RUN`.
    pub fn program(&self) -> &Xdp {
        self.ebpf
            .program(PROGRAM_NAME)
            .expect("checked at load")
            .try_into()
            .expect("checked at load")
    }

    fn program_mut(&mut self) -> &mut Xdp {
        self.ebpf
            .program_mut(PROGRAM_NAME)
            .expect("checked at load")
            .try_into()
            .expect("checked at load")
    }

    /// The kernel's id of the loaded program.
    pub const fn program_id(&self) -> u32 {
        self.program_id
    }

    /// Gives `ifindex` a block of counters and sets its mode. Frames on an interface the program
    /// is attached to but that is not configured pass uncounted, so configure first.
    pub fn configure(&mut self, ifindex: u32, mode: Mode) -> Result<(), ProbeError> {
        let slot = match self.registrations.get(&ifindex) {
            Some(registration) => registration.slot,
            None => (0..MAX_INTERFACES)
                .find(|slot| self.registrations.values().all(|r| r.slot != *slot))
                .ok_or(ProbeError::TooManyInterfaces)?,
        };
        let config = IfaceConfig::new(slot, mode);
        if ifindex < IFINDEX_ARRAY_LEN {
            self.config.set(ifindex, config, 0)?;
        } else {
            self.config_high.insert(ifindex, config, 0)?;
        }
        self.registrations
            .insert(ifindex, Registration { slot, mode });
        Ok(())
    }

    pub fn mode(&self, ifindex: u32) -> Option<Mode> {
        self.registrations.get(&ifindex).map(|r| r.mode)
    }

    /// Attaches to a configured interface. The kernel refuses when another XDP program is there;
    /// this never replaces one.
    pub fn attach(&mut self, ifindex: u32, choice: XdpModeChoice) -> Result<Attached, ProbeError> {
        if !self.registrations.contains_key(&ifindex) {
            return Err(ProbeError::NotConfigured { ifindex });
        }
        let attached = match choice {
            XdpModeChoice::Native | XdpModeChoice::Generic => {
                let mode = if choice == XdpModeChoice::Native {
                    AttachedMode::Native
                } else {
                    AttachedMode::Generic
                };
                self.attach_in(ifindex, mode)?;
                Attached {
                    mode,
                    native_refused: None,
                }
            }
            XdpModeChoice::Auto => match self.attach_in(ifindex, AttachedMode::Native) {
                Ok(()) => Attached {
                    mode: AttachedMode::Native,
                    native_refused: None,
                },
                Err(ProbeError::NoNativeSupport(error)) => {
                    self.attach_in(ifindex, AttachedMode::Generic)?;
                    Attached {
                        mode: AttachedMode::Generic,
                        native_refused: Some(error),
                    }
                }
                Err(other) => return Err(other),
            },
        };
        self.attached.insert(ifindex, attached.mode);
        Ok(attached)
    }

    fn attach_in(&mut self, ifindex: u32, mode: AttachedMode) -> Result<(), ProbeError> {
        let links_before = self.own_xdp_links()?;
        let link_id = self
            .program_mut()
            .attach_to_if_index(ifindex, mode.flags())
            .map_err(|error| match error {
                ProgramError::SyscallError(SyscallError { io_error, .. }) => {
                    match io_error.raw_os_error() {
                        Some(libc::EBUSY | libc::EEXIST) => ProbeError::Occupied(io_error),
                        Some(libc::EOPNOTSUPP | libc::EINVAL) if mode == AttachedMode::Native => {
                            ProbeError::NoNativeSupport(io_error)
                        }
                        _ => ProbeError::Program(ProgramError::SyscallError(SyscallError {
                            call: "bpf_link_create",
                            io_error,
                        })),
                    }
                }
                other => ProbeError::Program(other),
            })?;
        // aya falls back to a netlink attachment when the kernel has no XDP links; such an
        // attachment would stay after this process dies, so it is undone and refused.
        if self.own_xdp_links()? != links_before + 1 {
            self.program_mut().detach(link_id)?;
            return Err(ProbeError::NoBpfLink);
        }
        Ok(())
    }

    fn own_xdp_links(&self) -> Result<usize, ProbeError> {
        let mut count = 0;
        for link in loaded_links() {
            let link = link?;
            if link.program_id() == self.program_id && matches!(link.link_type(), Ok(LinkType::Xdp))
            {
                count += 1;
            }
        }
        Ok(count)
    }

    pub fn attached_mode(&self, ifindex: u32) -> Option<AttachedMode> {
        self.attached.get(&ifindex).copied()
    }

    /// Totals of one configured interface, summed over CPUs.
    pub fn counters(&self, ifindex: u32) -> Result<InterfaceCounters, ProbeError> {
        let registration = self
            .registrations
            .get(&ifindex)
            .ok_or(ProbeError::NotConfigured { ifindex })?;
        let mut counters = InterfaceCounters::default();
        for matched in LoopbackMatch::all() {
            for action in Action::ALL {
                let index = counter_index(registration.slot, matched, action);
                let mut total = Counter::default();
                for per_cpu in self.counters.get(&index, 0)?.iter() {
                    total.add(*per_cpu);
                }
                counters.by_class[counter_index(0, matched, action) as usize] = total;
            }
        }
        Ok(counters)
    }
}
