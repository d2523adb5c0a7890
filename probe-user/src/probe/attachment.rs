//! Where a program of the probe runs and which one: the object's programs by what a frame
//! starts with ([`Program`]), the kernel hooks they run at ([`Stage`]), and where an interface's
//! arriving frames are counted ([`Hook`]).

use crate::kernel::link::Kind;
pub use crate::kernel::link::{AttachedMode, Direction};

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

    pub(crate) const fn stage(self) -> Stage {
        match self {
            Self::Xdp(_) => Stage::Xdp,
            Self::Tcx => Stage::TcxIngress,
        }
    }

    pub(crate) const fn link_kind(self) -> Kind {
        match self {
            Self::Xdp(_) => Kind::Xdp,
            Self::Tcx => Kind::Tcx(Direction::Ingress),
        }
    }
}
