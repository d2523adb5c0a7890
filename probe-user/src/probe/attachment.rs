//! Where the probe's programs run and which one, in one vocabulary: what a frame starts with
//! ([`Framing`], shared with the kernel) picks the program; the kernel runs it at a [`Stage`]
//! (XDP, or tc in a [`Direction`]); an XDP attachment has an [`AttachedMode`], a tc one a
//! [`TcHook`] (a tcx link, or a clsact filter where the kernel has no tcx); and an interface's
//! arriving frames are counted at a [`Hook`], a stage with its mode. (The
//! `AttachMode` netlink reports for any XDP program is another thing: it has offload and
//! several.)

use probe_common::{ETHERNET_HEADER_LEN, Framing, LINEAR_FRAME_MAX, MAX_VLAN_TAGS, VLAN_TAG_LEN};

pub use crate::kernel::link::{AttachedMode, Direction, Stage};

/// Which XDP programs the probe loads: with multi-buffer where the kernel has it (Linux 5.18),
/// otherwise the programs for frames in one buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpPrograms {
    /// `xdp.frags`: any MTU.
    MultiBuffer,
    /// Without `xdp.frags`: frames of at most [`LINEAR_FRAME_MAX`] bytes.
    Linear,
}

impl XdpPrograms {
    /// The programs a kernel with (or without) XDP multi-buffer takes.
    pub const fn for_kernel(xdp_frags: bool) -> Self {
        if xdp_frags {
            Self::MultiBuffer
        } else {
            Self::Linear
        }
    }

    /// The largest MTU of an interface whose frames start with `framing` that these programs
    /// serve; `None` for any. Without multi-buffer a frame is measured up to
    /// [`LINEAR_FRAME_MAX`] bytes, and an Ethernet frame is its MTU, its header and up to two
    /// VLAN tags (a VLAN device's MTU is its parent's).
    pub const fn largest_mtu(self, framing: Framing) -> Option<u32> {
        match (self, framing) {
            (Self::MultiBuffer, _) => None,
            (Self::Linear, Framing::Ip) => Some(LINEAR_FRAME_MAX),
            (Self::Linear, Framing::Ethernet) => Some(
                LINEAR_FRAME_MAX
                    - (ETHERNET_HEADER_LEN + MAX_VLAN_TAGS as usize * VLAN_TAG_LEN) as u32,
            ),
        }
    }
}

/// The function name in the object of the program for frames that start with `framing`, at
/// `stage` (at XDP, of `xdp`'s kind); the kernel shows its first 15 bytes.
pub const fn program_name(framing: Framing, stage: Stage, xdp: XdpPrograms) -> &'static str {
    match (stage, framing) {
        (Stage::Xdp, Framing::Ethernet) => match xdp {
            XdpPrograms::MultiBuffer => "localnet_probe",
            XdpPrograms::Linear => "localnet_probe_linear",
        },
        (Stage::Xdp, Framing::Ip) => match xdp {
            XdpPrograms::MultiBuffer => "localnet_probe_ip",
            XdpPrograms::Linear => "localnet_probe_linear_ip",
        },
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_multi_buffer_the_linear_programs_serve_mtus_whose_frames_they_measure() {
        assert_eq!(XdpPrograms::for_kernel(true), XdpPrograms::MultiBuffer);
        assert_eq!(XdpPrograms::for_kernel(false), XdpPrograms::Linear);
        for xdp in [XdpPrograms::MultiBuffer, XdpPrograms::Linear] {
            for framing in Framing::ALL {
                // Every program's kernel name starts with the name occupants are recognised by.
                assert!(program_name(framing, Stage::Xdp, xdp).starts_with("localnet_probe"));
            }
        }
        assert_eq!(
            program_name(Framing::Ip, Stage::Xdp, XdpPrograms::Linear),
            "localnet_probe_linear_ip"
        );
        assert_eq!(
            XdpPrograms::MultiBuffer.largest_mtu(Framing::Ethernet),
            None
        );
        // 4095 bytes: 4073 of payload, 14 of Ethernet header, 8 of two VLAN tags.
        assert_eq!(
            XdpPrograms::Linear.largest_mtu(Framing::Ethernet),
            Some(4073)
        );
        assert_eq!(XdpPrograms::Linear.largest_mtu(Framing::Ip), Some(4095));
    }
}
