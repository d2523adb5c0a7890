//! Where the probe's programs run and which one, in one vocabulary: what a frame starts with
//! ([`Framing`], shared with the kernel) picks the program; the kernel runs it at a [`Stage`]
//! (XDP, or tcx in a [`Direction`]); an XDP attachment has an [`AttachedMode`]; and an
//! interface's arriving frames are counted at a [`Hook`], a stage with its mode. (The
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
        (Stage::Tcx(Direction::Ingress), Framing::Ethernet) => "localnet_probe_tc",
        (Stage::Tcx(Direction::Ingress), Framing::Ip) => "localnet_probe_tc_ip",
        (Stage::Tcx(Direction::Egress), Framing::Ethernet) => "localnet_probe_out",
        (Stage::Tcx(Direction::Egress), Framing::Ip) => "localnet_probe_out_ip",
    }
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

    pub(crate) const fn stage(self) -> Stage {
        match self {
            Self::Xdp(_) => Stage::Xdp,
            Self::Tcx => Stage::Tcx(Direction::Ingress),
        }
    }
}
