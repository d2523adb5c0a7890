//! The commands the audit gives for localnet-probe to drop on an interface, each one that works
//! as pasted given who serves the interface now: a standing filter is taken over keeping every
//! interface and mode it has, a running probe is stopped first, and an interface is always named
//! with `--iface` too, since `--drop-on` alone only drops on interfaces selected without it.

use super::*;
use crate::net::{names::name_argument, netns::nsenter_here};

/// What the user does for localnet-probe to drop on an interface.
pub(super) struct Serving {
    /// Said before the command: what serves the interface now, and what to stop first.
    pub how: String,
    pub command: String,
    /// Said after the command, in parentheses: what else it does, or how to keep it.
    pub note: String,
}

/// The standing filter's interfaces as the pins have them, and those whose mode could not be
/// read, when the audit cannot read the pins (`pinned`: not visible from this mount namespace):
/// every interface localnet-probe's programs serve with no process holding them.
fn pinned_elsewhere(inputs: &Inputs) -> (Vec<StandingInterface>, Vec<String>) {
    let mut kept = Vec::new();
    let mut mode_unknown = Vec::new();
    for interface in &inputs.interfaces {
        let tcx = inputs
            .tcx
            .as_ref()
            .ok()
            .and_then(|tcx| tcx.iter().find(|(on, _)| *on == interface.ifindex))
            .map(|(_, tcx)| tcx);
        let at_xdp = inputs
            .xdp
            .iter()
            .find(|(on, _)| *on == interface.ifindex)
            .and_then(|(_, xdp)| match xdp {
                XdpOn::LocalnetProbe(probe) => Some(probe),
                _ => None,
            });
        let Some(probe) = at_xdp
            .or_else(|| tcx.and_then(|tcx| tcx.ingress.as_ref()))
            .filter(|probe| probe.how == "pinned")
        else {
            continue;
        };
        let mode = match probe.mode {
            Some(name) if name == Mode::Drop.name() => Mode::Drop,
            Some(_) => Mode::Monitor,
            None => {
                mode_unknown.push(interface.name.clone());
                Mode::Monitor
            }
        };
        kept.push(StandingInterface {
            name: interface.name.clone(),
            mode,
            egress: tcx.is_some_and(|tcx| tcx.replies.is_some()),
        });
    }
    (kept, mode_unknown)
}

/// `localnet-probe run --pin` keeping the interfaces `kept` in their modes (and their replies
/// counted), with `name` added in drop mode, and `extra` flags.
fn pin_keeping(kept: &[StandingInterface], name: &str, extra: &[&str]) -> String {
    pin_switching(kept, name, Mode::Drop, extra)
}

/// `localnet-probe run --pin` that takes the standing filter serving `kept` over (or makes one,
/// with none) keeping every interface in its mode and their replies counted, with `name` added,
/// or switched, to `mode`, and `extra` flags: a bare `run --pin --drop-on NAME` would take it
/// over with a new selection, every up interface, the others in monitor mode.
pub fn pin_switching(kept: &[StandingInterface], name: &str, mode: Mode, extra: &[&str]) -> String {
    let mut words = vec!["localnet-probe run --pin".to_owned()];
    let flag = |flag: &str, name: &str| format!("{flag} {}", name_argument(name));
    words.extend(kept.iter().map(|kept| flag("--iface", &kept.name)));
    if !kept.iter().any(|kept| kept.name == name) {
        words.push(flag("--iface", name));
    }
    if kept.iter().any(|kept| kept.egress) && !extra.contains(&"--egress") {
        words.push("--egress".to_owned());
    }
    words.extend(
        kept.iter()
            .filter(|kept| kept.mode == Mode::Drop && kept.name != name)
            .map(|kept| flag("--drop-on", &kept.name)),
    );
    if mode == Mode::Drop {
        words.push(flag("--drop-on", name));
    }
    words.extend(extra.iter().map(|&extra| extra.to_owned()));
    words.join(" ")
}

/// What a `run --pin` that takes a standing filter over does beyond what it is given.
const PINS_EXACTLY: &str = "it pins exactly these interfaces: a pattern the filter was started \
                            with, such as --iface 'veth*', is not in its pins, so give it again \
                            to follow interfaces that appear later";

/// `pid 4242 localnet-probe, pid 4243 sudo`.
fn pids(processes: &[Holder]) -> String {
    processes
        .iter()
        .map(|process| format!("pid {} {}", process.pid, process.command))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How localnet-probe comes to drop on `audited`, with `extra` flags (`--egress --events`).
pub(super) fn serve_dropping(audited: &InterfaceAudit, inputs: &Inputs, extra: &[&str]) -> Serving {
    let name = &audited.name;
    let tc = beside_other_xdp(audited);
    let alone = format!(
        "localnet-probe run --iface {flag} --drop-on {flag}{}{tc}",
        extra
            .iter()
            .map(|extra| format!(" {extra}"))
            .collect::<String>(),
        flag = name_argument(name),
    );
    let Some(probe) = &audited.localnet_probe else {
        // Beside a standing filter a `run --pin` takes it over: it must keep what it has.
        let note = match &inputs.standing {
            Ok(Some(kept)) if !kept.is_empty() => format!(
                "to keep it after exit, add it to the standing filter, keeping the interfaces \
                 and modes it has: {}{tc}; {PINS_EXACTLY}",
                pin_keeping(kept, name, extra)
            ),
            _ => "with --pin to keep it after exit".to_owned(),
        };
        let how = match audited.other_xdp_program {
            Some(id) => format!("beside its XDP program {id}"),
            None => String::new(),
        };
        return Serving {
            how,
            command: alone,
            note,
        };
    };
    let kept = match probe.how {
        "standing" => inputs
            .standing
            .clone()
            .and_then(|standing| standing.ok_or_else(|| "they were gone when read".to_owned())),
        "pinned" => Ok(pinned_elsewhere(inputs).0),
        _ => {
            return Serving {
                how: format!(
                    "where localnet-probe ({} at {}) serves it already: stop it ({}), then start it \
                     again with --drop-on {} added to its arguments, or serve {name} alone in \
                     drop mode",
                    probe.how,
                    probe.hook,
                    pids(&probe.processes),
                    name_argument(name)
                ),
                command: alone,
                note: String::new(),
            };
        }
    };
    let serving = if probe.processes.is_empty() {
        String::new()
    } else {
        format!(
            "stop the run --pin serving it ({}), then ",
            pids(&probe.processes)
        )
    };
    let kept = match kept {
        Ok(kept) => kept,
        Err(why) => {
            return Serving {
                how: format!(
                    "where localnet-probe's standing filter serves it already ({} at {}), whose \
                     pins could not be read ({why}): `localnet-probe status` lists its \
                     interfaces and modes; {serving}give each to localnet-probe run --pin with \
                     --iface, and those that drop and {name} with --drop-on, as in",
                    probe.how, probe.hook
                ),
                command: pin_keeping(&[], name, extra) + tc,
                note: PINS_EXACTLY.to_owned(),
            };
        }
    };
    let (command, unknown) = if probe.how == "pinned" {
        // `run --pin` here would not see the pins: from where they are visible.
        let unknown = pinned_elsewhere(inputs).1;
        (
            format!("{} {}", nsenter_here(), pin_keeping(&kept, name, extra)),
            unknown,
        )
    } else {
        (pin_keeping(&kept, name, extra), Vec::new())
    };
    let mut note = PINS_EXACTLY.to_owned();
    if !unknown.is_empty() {
        note.push_str(&format!(
            "; the mode of {} could not be read: add --drop-on for each that drops",
            unknown.join(", ")
        ));
    }
    let from = if probe.how == "pinned" {
        " from the host's mount namespace, where its pins are visible"
    } else {
        ""
    };
    Serving {
        how: format!(
            "where localnet-probe ({} at {}) serves it already: {serving}take its standing \
             filter over in drop mode{from}, keeping the interfaces and modes it has",
            probe.how, probe.hook
        ),
        command: command + tc,
        note,
    }
}

/// The remedy of localnet-probe dropping on the interface `audited`.
pub(super) fn drop_with_probe(audited: &InterfaceAudit, inputs: &Inputs) -> String {
    let Serving { how, command, note } = serve_dropping(audited, inputs, &[]);
    let how = if how.is_empty() {
        String::new()
    } else {
        format!(", {how}")
    };
    let note = if note.is_empty() {
        String::new()
    } else {
        format!(" ({note})")
    };
    format!(
        "drop frames with loopback addresses on {} before the stack sees them{how}: \
         {command}{note}",
        audited.name
    )
}

/// `--on-conflict tc`, where localnet-probe has to serve `audited` beside another XDP program.
pub(super) fn beside_other_xdp(audited: &InterfaceAudit) -> &'static str {
    let at_tcx = audited
        .localnet_probe
        .as_ref()
        .map_or(audited.other_xdp_program.is_some(), |probe| {
            probe.hook != "xdp"
        });
    if at_tcx { " --on-conflict tc" } else { "" }
}
