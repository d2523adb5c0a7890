//! Who holds the XDP program already attached to an interface (or another localnet-probe's at
//! its tc ingress), and what to do about it. Decided here alone, so every command that meets an
//! occupied interface says the same thing.

use probe_common::Framing;
use std::{fmt, fs, path::PathBuf};

use crate::{
    kernel::link::Link,
    kernel::processes::{self, Holder},
    net::interfaces::{AttachMode, Interface},
    net::names::{name_argument, name_word, printable},
    net::netns::nsenter_here,
    probe::attachment::{Direction, Stage, TcHook, XdpPrograms, program_name},
    probe::filters,
    probe::pins::PinDir,
};

/// Another XDP program on an interface localnet-probe was asked to serve, or another
/// localnet-probe's program at its tc ingress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Occupant {
    pub interface: String,
    /// At tc ingress (then localnet-probe's) through this, not XDP.
    pub at_tc: Option<TcHook>,
    pub program_id: u32,
    /// The program's name, when this process may read it (listing programs needs
    /// CAP_SYS_ADMIN).
    pub program_name: Option<String>,
    pub mode: AttachMode,
    /// Processes whose BPF link keeps the program attached. None when it was attached through
    /// netlink (it stays until removed) or its link is pinned in bpffs.
    pub holders: Vec<Holder>,
    /// Whether every process could be inspected; if not, a holder may have been missed.
    pub saw_every_process: bool,
    /// The directory of this network namespace's standing filter (`run --pin`), when the
    /// program is attached through a link pinned there.
    pub standing: Option<PathBuf>,
}

impl Occupant {
    /// The program on `interface`, if there is one.
    pub fn of(interface: &Interface) -> Option<Self> {
        let program = interface.xdp?;
        let Attachment {
            program_name,
            holders,
            saw_every_process,
            standing,
        } = Attachment::of(program.id, interface.ifindex, Stage::Xdp);
        Some(Self {
            interface: interface.name.clone(),
            at_tc: None,
            program_id: program.id,
            program_name,
            mode: program.mode,
            holders,
            saw_every_process,
            standing,
        })
    }

    /// Another localnet-probe's program at `interface`'s tc ingress (`run --on-conflict tc`):
    /// a clsact filter of its, or a tcx program this process can tell is its (without
    /// CAP_SYS_ADMIN, one held by another user's process has no name nor holder to recognise
    /// it by).
    pub fn localnet_probe_at_tc(interface: &Interface) -> Option<Self> {
        Self::localnet_probe_at_clsact(interface).or_else(|| Self::localnet_probe_at_tcx(interface))
    }

    /// Another localnet-probe's clsact filter at `interface`'s ingress: the standing filter's,
    /// or a process's, which holds its program.
    fn localnet_probe_at_clsact(interface: &Interface) -> Option<Self> {
        let (program_id, standing) =
            filters::probes_at(interface.ifindex, Direction::Ingress).ok()??;
        let (holders, saw_every_process) = program_holders(program_id);
        Some(Self {
            interface: interface.name.clone(),
            at_tc: Some(TcHook::Clsact),
            program_id,
            program_name: Some(
                program_name(
                    Framing::Ethernet,
                    Stage::Tc(Direction::Ingress),
                    XdpPrograms::MultiBuffer,
                )
                .to_owned(),
            ),
            mode: AttachMode::Generic,
            holders,
            saw_every_process,
            standing: standing
                .then(|| PinDir::of_this_namespace().ok().map(|dir| dir.path))
                .flatten(),
        })
    }

    fn localnet_probe_at_tcx(interface: &Interface) -> Option<Self> {
        let stage = Stage::Tc(Direction::Ingress);
        crate::kernel::link::tcx_programs(interface.ifindex, Direction::Ingress)
            .ok()?
            .into_iter()
            .find_map(|program_id| {
                let attachment = Attachment::of(program_id, interface.ifindex, stage);
                attachment.is_localnet_probe().then(|| Self {
                    interface: interface.name.clone(),
                    at_tc: Some(TcHook::Tcx),
                    program_id,
                    program_name: attachment.program_name,
                    mode: AttachMode::Generic,
                    holders: attachment.holders,
                    saw_every_process: attachment.saw_every_process,
                    standing: attachment.standing,
                })
            })
    }

    /// Whether it is another localnet-probe's.
    pub fn is_localnet_probe(&self) -> bool {
        is_localnet_probe(
            self.program_name.as_deref(),
            &self.holders,
            self.standing.is_some(),
        )
    }

    /// As [`Attachment::unidentifiable`].
    pub fn unidentifiable(&self) -> bool {
        unidentifiable(
            self.program_name.as_deref(),
            &self.holders,
            self.standing.is_some(),
        )
    }
}

/// What this process can tell of whose a program attached to an interface through a link is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// The program's name, when this process may read it (listing programs needs
    /// CAP_SYS_ADMIN).
    pub program_name: Option<String>,
    /// Processes holding the link.
    pub holders: Vec<Holder>,
    /// Whether every process could be inspected; if not, a holder may have been missed.
    pub saw_every_process: bool,
    /// The directory of this network namespace's standing filter, when the link is pinned there.
    pub standing: Option<PathBuf>,
}

impl Attachment {
    /// The program `program_id`, attached to `ifindex` through a link of `stage` (or, for XDP,
    /// through netlink).
    pub fn of(program_id: u32, ifindex: u32, stage: Stage) -> Self {
        let program_name = aya::programs::loaded_programs()
            .filter_map(Result::ok)
            .find(|loaded| loaded.id() == program_id)
            .and_then(|loaded| loaded.name_as_str().map(str::to_owned))
            .filter(|name| !name.is_empty());
        let (holders, saw_every_process) = link_holders(program_id, ifindex, stage);
        Self {
            program_name,
            holders,
            saw_every_process,
            standing: standing_filter_of(program_id, ifindex, stage),
        }
    }

    /// Whether it is localnet-probe's.
    pub fn is_localnet_probe(&self) -> bool {
        is_localnet_probe(
            self.program_name.as_deref(),
            &self.holders,
            self.standing.is_some(),
        )
    }

    /// Whether nothing here says whose it is: no name, no holder, no standing filter. Without
    /// CAP_SYS_ADMIN, which lists the programs, that is what a program of another user's process
    /// looks like, localnet-probe's included.
    pub fn unidentifiable(&self) -> bool {
        unidentifiable(
            self.program_name.as_deref(),
            &self.holders,
            self.standing.is_some(),
        )
    }
}

fn unidentifiable(name: Option<&str>, holders: &[Holder], standing: bool) -> bool {
    name.is_none()
        && holders.is_empty()
        && !standing
        && !crate::net::privileges::may_list_programs()
}

/// Whether a program with this name, these holders and perhaps pinned by the standing filter is
/// localnet-probe's.
fn is_localnet_probe(name: Option<&str>, holders: &[Holder], standing: bool) -> bool {
    // Every program's kernel name starts with the XDP Ethernet one's (the others, those without
    // multi-buffer too, are cut to "localnet_probe_").
    let ours = program_name(Framing::Ethernet, Stage::Xdp, XdpPrograms::MultiBuffer);
    // The holders only where the name is unknown (without CAP_SYS_ADMIN): a child forked to
    // exec localnet-probe holds its parent's programs, another tool's among them, until the exec
    // closes them, and is named localnet-probe before it does.
    standing
        || name.map_or_else(
            || {
                holders
                    .iter()
                    .any(|holder| holder.command == "localnet-probe")
            },
            |name| name.starts_with(ours),
        )
}

impl fmt::Display for Occupant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            interface: name,
            program_id,
            ..
        } = self;
        // Shown as text, and as one shell word in the commands.
        let interface = printable(name);
        let argument = name_argument(name);
        let device = name_word(name);
        if let Some(tc) = self.at_tc {
            write!(
                f,
                "{interface} is already served by localnet-probe at {} ingress: program id \
                 {program_id}",
                tc.name()
            )?;
        } else {
            write!(
                f,
                "{interface} already has an XDP program attached: id {program_id}"
            )?;
        }
        if let Some(name) = &self.program_name {
            write!(f, ", name {name:?}")?;
        }
        let pids = self
            .holders
            .iter()
            .map(|holder| format!("pid {} ({})", holder.pid, printable(&holder.command)))
            .collect::<Vec<_>>()
            .join(", ");
        if let Some(dir) = &self.standing {
            let served = if self.holders.is_empty() {
                String::new()
            } else {
                format!(", served now by {pids}")
            };
            write!(
                f,
                ". It is localnet-probe's standing filter (pinned in {}{served}), which stays \
                 attached when no process serves it: `localnet-probe status` shows it, `localnet-probe \
                 run --pin` takes it over (with the mode you give), `localnet-probe detach \
                 --iface {argument}` removes it; or leave the interface out with --exclude \
                 {argument}",
                dir.display()
            )
        } else if self.is_localnet_probe() && self.holders.is_empty() && self.saw_every_process {
            // A BPF link no process holds is held by a pin; neither `ip link` nor a tcx
            // attachment beside it gets past it ("Can't replace active BPF XDP link").
            write!(
                f,
                ". It is localnet-probe's, held by no process: a standing filter pinned in a BPF \
                 file system this mount namespace does not see (as under `ip netns exec`). From \
                 the host's mount namespace, `{nsenter} localnet-probe detach --iface \
                 {argument}` removes it and `{nsenter} localnet-probe run --pin` takes it over \
                 (`localnet-probe detach` where its pins are visible); or leave the interface out \
                 with --exclude {argument}",
                nsenter = nsenter_here()
            )
        } else if self.is_localnet_probe() && !self.holders.is_empty() {
            write!(
                f,
                ". Another localnet-probe serves it ({pids}): stop that one first (`kill {}`), or \
                 leave the interface out with --exclude {argument}",
                self.holders[0].pid
            )
        } else if !self.holders.is_empty() {
            write!(
                f,
                ", held by a BPF link of {pids}. localnet-probe never replaces another program: \
                 stop that process, leave the interface out (--exclude {argument}, or \
                 --on-conflict skip), or run beside it at tcx ingress with --on-conflict tc"
            )
        } else if self.saw_every_process {
            write!(
                f,
                ". localnet-probe never replaces another program. No process holds it through a \
                 BPF link, so it was attached through netlink (`ip link set dev {device} {} \
                 off` removes it) or its link is pinned in bpffs (remove the pin to detach it); \
                 leave the interface out (--exclude {argument}, or --on-conflict skip), or run \
                 beside it at tcx ingress with --on-conflict tc",
                self.mode.ip_link_keyword()
            )
        } else {
            write!(
                f,
                ". localnet-probe never replaces another program. No process this user may \
                 inspect holds it, so it is one of: a BPF link of another user's process \
                 (another localnet-probe run as root, say: stop that one; run as root to see \
                 which), a netlink attachment (`ip link set dev {device} {} off` removes it), \
                 or a link pinned in bpffs (remove the pin); or leave the interface out with \
                 --exclude {argument}",
                self.mode.ip_link_keyword()
            )
        }
    }
}

/// This network namespace's standing filter's directory, when its link of `stage` pinned for
/// `ifindex` holds `program_id` there: pinned links have no process to recognise them by, and
/// without CAP_PERFMON the programs have no name.
fn standing_filter_of(program_id: u32, ifindex: u32, stage: Stage) -> Option<PathBuf> {
    let dir = PinDir::of_this_namespace().ok()?;
    let direction = match stage {
        Stage::Xdp => Direction::Ingress,
        Stage::Tc(direction) => direction,
    };
    let info = Link::from_pin(&dir.link_path(ifindex, direction), stage)
        .ok()??
        .info()
        .ok()?;
    (info.program_id == program_id && info.ifindex == Some(ifindex)).then_some(dir.path)
}

/// Processes with a BPF link of `stage` of `program_id` on `ifindex` open, and whether every
/// process could be inspected (those this one may not inspect are passed over).
fn link_holders(program_id: u32, ifindex: u32, stage: Stage) -> (Vec<Holder>, bool) {
    let mut holders = Vec::new();
    let saw_every_process = processes::walk(|process, fds| {
        if process.pid == std::process::id() {
            return;
        }
        let holds = fds.filter_map(Result::ok).any(|fd| {
            let is_link = fs::read_link(fd.path())
                .is_ok_and(|target| target.as_os_str() == "anon_inode:bpf_link");
            is_link
                && process
                    .fdinfo(&fd.file_name())
                    .is_ok_and(|info| is_link_of(&info, stage, program_id, ifindex))
        });
        if holds {
            holders.push(process.holder());
        }
    });
    (holders, saw_every_process)
}

/// Processes holding the BPF program `program_id` open (as a running localnet-probe holds the
/// program of its clsact filters), and whether every process could be inspected.
pub(crate) fn program_holders(program_id: u32) -> (Vec<Holder>, bool) {
    let mut holders = Vec::new();
    let saw_every_process = processes::walk(|process, fds| {
        if process.pid == std::process::id() {
            return;
        }
        let holds = fds.filter_map(Result::ok).any(|fd| {
            let is_program = fs::read_link(fd.path())
                .is_ok_and(|target| target.as_os_str() == "anon_inode:bpf-prog");
            is_program
                && process.fdinfo(&fd.file_name()).is_ok_and(|info| {
                    info.lines().any(|line| {
                        line.split_once(':').is_some_and(|(key, value)| {
                            key == "prog_id" && value.trim().parse() == Ok(program_id)
                        })
                    })
                })
        });
        if holds {
            holders.push(process.holder());
        }
    });
    (holders, saw_every_process)
}

/// Reads a link's fdinfo: `link_type:\txdp` (or `tcx`), `prog_id:\t<id>`, `ifindex:\t<n>`. A
/// tcx link's direction is not read: each direction has its own program.
fn is_link_of(fdinfo: &str, stage: Stage, program_id: u32, ifindex: u32) -> bool {
    let field = |name: &str| {
        fdinfo.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key == name).then(|| value.trim())
        })
    };
    let link_type = match stage {
        Stage::Xdp => "xdp",
        Stage::Tc(_) => "tcx",
    };
    field("link_type") == Some(link_type)
        && field("prog_id").and_then(|id| id.parse().ok()) == Some(program_id)
        && field("ifindex").is_none_or(|index| index.parse() == Ok(ifindex))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_xdp_and_tcx_link_fdinfo() {
        let info = "pos:\t0\nflags:\t02000000\nmnt_id:\t15\nino:\t1057\nlink_type:\txdp\n\
                    link_id:\t7\nprog_tag:\t0123456789abcdef\nprog_id:\t42\nifindex:\t3\n";
        assert!(is_link_of(info, Stage::Xdp, 42, 3));
        assert!(!is_link_of(info, Stage::Xdp, 42, 4));
        assert!(!is_link_of(info, Stage::Xdp, 41, 3));
        let tcx = info.replace("xdp", "tcx") + "attach_type:\t46 (ingress)\n";
        assert!(!is_link_of(&tcx, Stage::Xdp, 42, 3));
        assert!(is_link_of(&tcx, Stage::Tc(Direction::Ingress), 42, 3));
        assert!(!is_link_of(info, Stage::Tc(Direction::Ingress), 42, 3));
    }

    #[test]
    fn a_program_of_either_xdp_kind_is_recognised_by_its_kernel_name() {
        let no_holders: &[Holder] = &[];
        // The kernel keeps 15 bytes of a name: both kinds and every hook show "localnet_probe…".
        for name in ["localnet_probe", "localnet_probe_", "localnet_probe_linear"] {
            assert!(is_localnet_probe(Some(name), no_holders, false), "{name}");
        }
        assert!(!is_localnet_probe(Some("xdp_filter"), no_holders, false));
        assert!(!is_localnet_probe(None, no_holders, false));
    }

    #[test]
    fn a_named_program_is_told_by_its_name_not_by_who_holds_it() {
        let forking = [Holder {
            pid: 1234,
            command: "localnet-probe".to_owned(),
        }];
        assert!(!is_localnet_probe(Some("foreign_pass"), &forking, false));
        assert!(is_localnet_probe(None, &forking, false));
        assert!(is_localnet_probe(Some("localnet_probe"), &[], false));
        assert!(is_localnet_probe(Some("foreign_pass"), &[], true));
    }

    #[test]
    fn advice_names_the_other_probe_or_the_way_out() {
        let mut occupant = Occupant {
            interface: "eth1".to_owned(),
            at_tc: None,
            program_id: 42,
            program_name: Some("localnet_probe".to_owned()),
            mode: AttachMode::Generic,
            holders: vec![Holder {
                pid: 1234,
                command: "localnet-probe".to_owned(),
            }],
            saw_every_process: true,
            standing: None,
        };
        let message = occupant.to_string();
        assert!(
            message.contains("Another localnet-probe serves it (pid 1234"),
            "{message}"
        );
        assert!(message.contains("kill 1234") && message.contains("--exclude eth1"));
        occupant.at_tc = Some(TcHook::Tcx);
        let message = occupant.to_string();
        assert!(
            message.starts_with("eth1 is already served by localnet-probe at tcx ingress")
                && message.contains("kill 1234"),
            "{message}"
        );
        occupant.at_tc = None;

        occupant.standing = Some(PathBuf::from("/sys/fs/bpf/localnet-probe/net-1"));
        let message = occupant.to_string();
        assert!(message.contains("standing filter (pinned in /sys/fs/bpf/localnet-probe/net-1, served now by pid 1234"), "{message}");
        for command in [
            "localnet-probe status",
            "localnet-probe run --pin",
            "localnet-probe detach --iface eth1",
        ] {
            assert!(message.contains(command), "{message}");
        }
        occupant.standing = None;

        occupant.program_name = Some("xdp_filter".to_owned());
        occupant.holders[0].command = "cilium-agent".to_owned();
        let message = occupant.to_string();
        assert!(
            message.contains("held by a BPF link of pid 1234 (cilium-agent)"),
            "{message}"
        );

        occupant.holders.clear();
        let message = occupant.to_string();
        assert!(message.contains("No process holds it"), "{message}");
        assert!(
            message.contains("ip link set dev eth1 xdpgeneric off"),
            "{message}"
        );
        assert!(message.contains("--exclude eth1"), "{message}");

        occupant.mode = AttachMode::Native;
        occupant.saw_every_process = false;
        let message = occupant.to_string();
        assert!(
            message.contains("No process this user may inspect"),
            "{message}"
        );
        assert!(
            message.contains("ip link set dev eth1 xdpdrv off"),
            "{message}"
        );
    }

    #[test]
    fn a_hostile_name_is_shown_escaped_and_quoted_in_every_command() {
        let name = "e\u{1b}[31m;id";
        let mut occupant = Occupant {
            interface: name.to_owned(),
            at_tc: None,
            program_id: 42,
            program_name: Some("localnet_probe".to_owned()),
            mode: AttachMode::Native,
            holders: vec![Holder {
                pid: 1234,
                command: "localnet-probe".to_owned(),
            }],
            saw_every_process: true,
            standing: Some(PathBuf::from("/sys/fs/bpf/localnet-probe/net-1")),
        };
        let exclude = format!("--exclude {}", name_argument(name));
        let mut messages = vec![occupant.to_string()];
        assert!(
            messages[0].contains(&format!("detach --iface {}", name_argument(name))),
            "{}",
            messages[0]
        );
        occupant.standing = None;
        messages.push(occupant.to_string());
        occupant.holders[0].command = "cilium-agent".to_owned();
        occupant.program_name = Some("xdp_filter".to_owned());
        messages.push(occupant.to_string());
        occupant.holders.clear();
        let netlink = occupant.to_string();
        assert!(
            netlink.contains(&format!("`ip link set dev {} xdpdrv off`", name_word(name))),
            "{netlink}"
        );
        messages.push(netlink);
        occupant.saw_every_process = false;
        messages.push(occupant.to_string());
        for message in messages {
            assert!(message.contains(&exclude), "{message}");
            assert!(!message.contains('\u{1b}'), "a raw ESC in: {message}");
            // Shown as text escaped, as Rust writes it.
            assert!(message.starts_with("e\\u{1b}[31m;id "), "{message}");
        }
    }
}
