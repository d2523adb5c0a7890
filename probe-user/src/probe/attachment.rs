//! Where the probe's programs run and which one, in one vocabulary: what a frame starts with
//! ([`Framing`], shared with the kernel) picks the program; the kernel runs it at a [`Stage`]
//! (XDP, or tc in a [`Direction`]); an XDP attachment has an [`AttachedMode`], a tc one a
//! [`TcHook`] (a tcx link, or a clsact filter where the kernel has no tcx); and an interface's
//! arriving frames are counted at a [`Hook`], a stage with its mode. (The
//! `AttachMode` netlink reports for any XDP program is another thing: it has offload and
//! several.)

use probe_common::Framing;

pub use crate::kernel::link::{AttachedMode, Direction, Stage};

/// The function name in the object of the program for frames that start with `framing`, at
/// `stage`; the kernel shows its first 15 bytes.
pub const fn program_name(framing: Framing, stage: Stage) -> &'static str {
    match (stage, framing) {
        (Stage::Xdp, Framing::Ethernet) => "localnet_probe",
        (Stage::Xdp, Framing::Ip) => "localnet_probe_ip",
        (Stage::Tc(Direction::Ingress), Framing::Ethernet) => "localnet_probe_tc",
        (Stage::Tc(Direction::Ingress), Framing::Ip) => "localnet_probe_tc_ip",
        (Stage::Tc(Direction::Egress), Framing::Ethernet) => "localnet_probe_out",
        (Stage::Tc(Direction::Egress), Framing::Ip) => "localnet_probe_out_ip",
    }
}

/// How a program is attached at a tc hook, decided by what the kernel has (never by its
/// version): a tcx link where it has tcx (Linux 6.6), otherwise a direct-action cls_bpf filter
/// on the interface's clsact qdisc, which no process holds and so is deleted by its owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcHook {
    Tcx,
    Clsact,
}

impl TcHook {
    /// `tcx`, or `tc` for the clsact filter.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Tcx => "tcx",
            Self::Clsact => "tc",
        }
    }

    /// The one a kernel with or without tcx gets.
    pub const fn for_kernel(tcx: bool) -> Self {
        if tcx { Self::Tcx } else { Self::Clsact }
    }
}

/// Where an interface's arriving frames are counted and dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// XDP, the first choice.
    Xdp(AttachedMode),
    /// tc ingress, where another XDP program holds the interface.
    Tc(TcHook),
}

impl Hook {
    /// `xdp`, `tcx` or `tc`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Xdp(_) => "xdp",
            Self::Tc(tc) => tc.name(),
        }
    }

    pub const fn xdp_mode(self) -> Option<AttachedMode> {
        match self {
            Self::Xdp(mode) => Some(mode),
            Self::Tc(_) => None,
        }
    }

    /// As the live view shows it: the XDP mode, `tcx` or `tc`.
    pub const fn label(self) -> &'static str {
        match self {
            Self::Xdp(mode) => mode.name(),
            Self::Tc(tc) => tc.name(),
        }
    }

    pub(crate) const fn stage(self) -> Stage {
        match self {
            Self::Xdp(_) => Stage::Xdp,
            Self::Tc(_) => Stage::Tc(Direction::Ingress),
        }
    }
}
