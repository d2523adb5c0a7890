//! The audit's words: each interface's findings from its verdict, with the remedies that apply.

use super::{
    advice::{Serving, drop_with_probe, serve_dropping},
    *,
};
use crate::net::names::{bytes_of_name, nft_string, shell_bytes};

/// `tcp 127.0.0.1:6379 (pid 812 redis-server)`.
pub fn describe(socket: &BoundSocket) -> String {
    let processes = if socket.processes.is_empty() {
        format!("uid {}, process not found", socket.uid)
    } else {
        socket
            .processes
            .iter()
            .map(|process| format!("pid {} {}", process.pid, process.command))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!("{} ({processes})", socket.label())
}

/// The kind of [`Verdict::Exploited`]'s finding.
pub(super) const EXPLOITED: &str = "exploited";

/// Where route_localnet is set for the audited link's frames: `all`, device names.
fn route_localnet_set_in<'a>(audited: &InterfaceAudit, inputs: &'a Inputs) -> Vec<&'a str> {
    if audited.route_localnet.is_none() || audited.route_localnet_via.is_empty() {
        return Vec::new();
    }
    let mut set_in = Vec::new();
    if inputs.all.route_localnet {
        set_in.push("all");
    }
    set_in.extend(
        inputs
            .interfaces
            .iter()
            .filter(|i| {
                audited.route_localnet_via.contains(&i.name) && i.route_localnet == Some(true)
            })
            .map(|i| i.name.as_str()),
    );
    set_in
}

/// `conf.all, conf.eth0`.
fn scopes(set_in: &[&str]) -> String {
    set_in
        .iter()
        .map(|scope| format!("conf.{scope}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The command that sets `net.ipv4.conf.<scope>.<setting>` to `value`, for any device name (its
/// bytes, see [`bytes_of_name`]).
fn set_ipv4_conf(scope: &str, setting: &str, value: u32) -> String {
    let scope = bytes_of_name(scope);
    let mut word = Vec::new();
    if scope.contains(&b'=') {
        // sysctl takes the key to the first '=': write the file itself.
        word.extend_from_slice(b"/proc/sys/net/ipv4/conf/");
        word.extend_from_slice(&scope);
        word.extend_from_slice(format!("/{setting}").as_bytes());
        format!("echo {value} > {}", shell_bytes(&word))
    } else {
        // sysctl reads a '/' in a dotted key as a '.' of the name, and a '.' as a separator.
        word.extend_from_slice(b"net.ipv4.conf.");
        word.extend(
            scope
                .iter()
                .map(|&byte| if byte == b'.' { b'/' } else { byte }),
        );
        word.extend_from_slice(format!(".{setting}={value}").as_bytes());
        format!("sysctl -w {}", shell_bytes(&word))
    }
}

/// The remedy that unsets route_localnet where `set_in` says it is set.
fn unset_route_localnet(set_in: &[&str]) -> String {
    format!(
        "if nothing needs route_localnet (Docker or kube-proxy DNAT to 127.0.0.1 does), unset it: \
         {}",
        set_in
            .iter()
            .map(|scope| set_ipv4_conf(scope, "route_localnet", 0))
            .collect::<Vec<_>>()
            .join("; ")
    )
}

/// What drops frames to 127.0.0.0/8 from a mitigated link.
fn mitigated_by(audited: &InterfaceAudit) -> String {
    let by = audited
        .localnet_probe
        .as_ref()
        .filter(|probe| probe.drops())
        .map(|probe| {
            format!(
                "localnet-probe in drop mode ({}, {})",
                probe.hook, probe.how
            )
        })
        .into_iter()
        .chain(audited.nft_drops.iter().cloned())
        .collect::<Vec<_>>();
    if by.is_empty() {
        "localnet-probe in drop mode on a device it reaches".to_owned()
    } else {
        by.join(", ")
    }
}

/// The finding of an exploited interface, which says how it stands `now` (its verdict without
/// the replies). The replies are evidence whatever that state, so the finding is an exposure
/// even where a drop or an unset route_localnet stops new ones; its remedies are what is left to
/// do.
fn exploited_finding(audited: &InterfaceAudit, now: Verdict, inputs: &Inputs) -> Option<Finding> {
    let replies = audited
        .replies_seen
        .filter(|_| audited.verdict == Verdict::Exploited)?;
    let name = &audited.name;
    let stopped = "which stops new ones but not what was answered before";
    let state = match now {
        // `now` is never exploited: that is the verdict the replies make.
        Verdict::Exposed | Verdict::Exploited => "; the link is still exposed".to_owned(),
        Verdict::Latent => {
            "; nothing listens on IPv4 loopback now, but nothing drops such frames either"
                .to_owned()
        }
        Verdict::Mitigated => format!(
            "; {} drops frames to 127.0.0.0/8 from this link now, {stopped}",
            mitigated_by(audited)
        ),
        Verdict::NotExposed => {
            format!("; route_localnet is not in effect for its frames now, {stopped}")
        }
    };
    let mut remedies = Vec::new();
    if matches!(now, Verdict::Exposed | Verdict::Latent) {
        remedies.push(drop_with_probe(audited, inputs));
    }
    let set_in = route_localnet_set_in(audited, inputs);
    if !set_in.is_empty() {
        remedies.push(unset_route_localnet(&set_in));
    }
    let Serving { how, command, note } = serve_dropping(audited, inputs, &["--egress", "--events"]);
    let how = if how.is_empty() {
        String::new()
    } else {
        format!(", {how}")
    };
    let note = if note.is_empty() {
        String::new()
    } else {
        format!("; {note}")
    };
    remedies.push(format!(
        "see who tries, and whom it answered, in samples of the frames with loopback addresses \
         arriving or replied while dropping them{how}: {command} (--pcap FILE instead of --events \
         writes them for tcpdump{note}); the replies already counted are in the samples of the \
         probe that counted them, where it shows them"
    ));
    Some(Finding {
        severity: Severity::Exposure,
        kind: EXPLOITED,
        interface: Some(name.clone()),
        message: format!(
            "localnet-probe counted {replies} frame(s) with a loopback source leaving {name}: a \
             service bound to loopback answered someone on this link, or the host answered ARP \
             for a 127.x address, so the exposure was used{state}; the count stands until \
             localnet-probe's programs are loaded anew"
        ),
        remedies,
        workload: None,
    })
}

/// Why frames to 127.0.0.0/8 from a link that is not mitigated reach the stack, as a clause,
/// with the services whose frames are dropped all the same.
fn not_dropped(audited: &InterfaceAudit, sockets: &[BoundSocket]) -> String {
    let mut clause = match (&audited.spared_by, &audited.destinations) {
        (Some(rule), _) => format!(
            "{rule} drops them only from sources outside 127.0.0.0/8, while the routing here \
             accepts a spoofed 127.x source (rp_filter={}, accept_local={}), which gets by",
            audited.rp_filter.map_or(0, |setting| setting.effective),
            audited.accept_local.map_or(0, |setting| setting.effective),
        ),
        (None, Outcome::Passed(Some(rule))) => {
            format!("nothing drops them all ({rule} lets them through)")
        }
        (None, Outcome::Uncertain(rule)) => {
            format!("it is not known whether they are dropped (a rule here may drop them: {rule})")
        }
        (None, Outcome::Unread(what)) => {
            format!("it is not known whether they are dropped ({what}, so no rule of it counts)")
        }
        (None, Outcome::Passed(None) | Outcome::Dropped(_)) => "nothing drops them".to_owned(),
    };
    for service in &audited.services {
        if let Outcome::Dropped(rule) = &service.outcome {
            clause.push_str(&format!(
                "; {rule} drops those to {}",
                sockets[service.socket].label()
            ));
        }
    }
    clause
}

pub(super) fn interface_findings(
    audited: &InterfaceAudit,
    now: Verdict,
    sockets: &[BoundSocket],
    inputs: &Inputs,
    loopback_sources_pass: bool,
) -> Vec<Finding> {
    let name = &audited.name;
    let mut findings: Vec<Finding> = exploited_finding(audited, now, inputs)
        .into_iter()
        .collect();
    let set_in = route_localnet_set_in(audited, inputs);
    if set_in.is_empty() {
        return findings;
    }
    let set_by: String = audited
        .route_localnet_set_by
        .iter()
        .map(|installed| {
            format!(
                " ({}, and its {} is here; it adds no drop of such frames)",
                installed.installer.sets(),
                installed.by
            )
        })
        .collect();
    let why = format!(
        "route_localnet=1 ({}){set_by} routes 127.0.0.0/8 arriving on {name}{}",
        scopes(&set_in),
        if audited.route_localnet_via == [name.clone()] {
            String::new()
        } else {
            format!(" (through {})", audited.route_localnet_via.join(", "))
        }
    );
    let mut sysctl = unset_route_localnet(&set_in);
    if !audited.route_localnet_set_by.is_empty() {
        sysctl.push_str(
            " (it is set again with the next container whose ports are published: a drop lasts)",
        );
    }
    let probe = format!("or {}", drop_with_probe(audited, inputs));
    let nft_rule = |address: &str| {
        let rules: Vec<String> = audited
            .route_localnet_via
            .iter()
            .map(|device| {
                // A name nft's strings cannot give is matched by its index.
                let matched = nft_string(device).map_or_else(
                    || {
                        inputs
                            .interfaces
                            .iter()
                            .find(|i| i.name == *device)
                            .map_or_else(String::new, |i| format!("iif {}", i.ifindex))
                    },
                    |string| format!("iifname {}", shell_bytes(&string)),
                );
                format!(
                    "nft add rule inet localnet_guard prerouting {matched} ip {address} \
                     127.0.0.0/8 drop"
                )
            })
            .collect();
        format!(
            "or drop them with nftables: nft add table inet localnet_guard; nft add chain inet \
             localnet_guard prerouting '{{ type filter hook prerouting priority raw; }}'; {}",
            rules.join("; ")
        )
    };
    let probe_state = match &audited.localnet_probe {
        Some(probe) if probe.mode.is_none() => format!(
            "; localnet-probe is attached there but its mode could not be read ({}), so no drop \
             is assumed",
            probe.mode_unknown.as_deref().unwrap_or("unknown")
        ),
        Some(probe) if !probe.drops() => "; localnet-probe only monitors there".to_owned(),
        None if audited.unidentified_xdp_program.is_some() => {
            "; an XDP program this user cannot identify is attached there (perhaps \
             localnet-probe's: run the audit as root to know), so no drop is assumed"
                .to_owned()
        }
        None if !audited.unidentified_tcx_programs.is_empty() => {
            "; a tcx program this user cannot identify is attached there (perhaps \
             localnet-probe's: run the audit as root to know), so no drop is assumed"
                .to_owned()
        }
        None => inputs
            .tcx
            .as_ref()
            .err()
            .map(|why| {
                format!(
                    "; the tcx hooks could not be queried ({why}), so localnet-probe there is not \
                     seen"
                )
            })
            .unwrap_or_default(),
        _ => String::new(),
    };
    let not_dropped = not_dropped(audited, sockets);
    match now {
        Verdict::Exposed => {
            let services: Vec<String> = audited
                .reachable
                .iter()
                .map(|index| describe(&sockets[*index]))
                .collect();
            findings.push(Finding {
                severity: Severity::Exposure,
                kind: "reachable-services",
                interface: Some(name.clone()),
                message: format!(
                    "{why} and {not_dropped}{probe_state}: any neighbour on this link can reach {}",
                    services.join(", ")
                ),
                remedies: vec![
                    sysctl.clone(),
                    probe.clone(),
                    format!(
                        "{}; kubelet's rule in the input hook is the same idea: ip saddr != \
                         127.0.0.0/8 ip daddr 127.0.0.0/8 ct state != {{ established, related }} \
                         ct status != dnat drop",
                        nft_rule("daddr")
                    ),
                ],
                workload: None,
            });
        }
        Verdict::Latent => findings.push(Finding {
            severity: Severity::Warning,
            kind: "latent",
            interface: Some(name.clone()),
            message: format!(
                "{why} and {not_dropped}{probe_state}; no service on IPv4 loopback is reachable \
                 now, but any service that binds 127.0.0.1 later is reachable from this link"
            ),
            remedies: vec![sysctl.clone(), probe.clone(), nft_rule("daddr")],
            workload: None,
        }),
        Verdict::Mitigated => findings.push(Finding {
            severity: Severity::Info,
            kind: "mitigated",
            interface: Some(name.clone()),
            message: format!(
                "{why}, but {} drops frames to 127.0.0.0/8 from this link",
                mitigated_by(audited)
            ),
            remedies: vec![sysctl.clone()],
            workload: None,
        }),
        // `now` is never exploited: its own finding is made above.
        Verdict::NotExposed | Verdict::Exploited => {}
    }
    let receivers: Vec<&Interface> = inputs
        .interfaces
        .iter()
        .filter(|i| audited.route_localnet_via.contains(&i.name))
        .collect();
    let udp: Vec<String> = sockets
        .iter()
        .filter(|socket| {
            ipv4_udp(socket)
                && socket
                    .bound_device
                    .is_none_or(|device| receivers.iter().any(|r| r.ifindex == device))
        })
        .map(describe)
        .collect();
    if loopback_sources_pass && !udp.is_empty() {
        // The check is made on the device the frames reach the stack through (for a bridge
        // port, the bridge), with the larger of its own and `all`'s rp_filter.
        // rp_filter is the larger of `all`'s and the device's, accept_local the OR of both: with
        // `all` at loose filtering a device cannot be made strict, but accept_local off refuses
        // the source as well.
        let strict: Vec<String> = receivers
            .iter()
            .map(|r| {
                if inputs.all.rp_filter >= 2 {
                    format!(
                        "{}; {}",
                        set_ipv4_conf("all", "accept_local", 0),
                        set_ipv4_conf(&r.name, "accept_local", 0)
                    )
                } else {
                    set_ipv4_conf(&r.name, "rp_filter", 1)
                }
            })
            .collect();
        findings.push(Finding {
            severity: Severity::Exposure,
            kind: "loopback-source",
            interface: Some(name.clone()),
            message: format!(
                "{why}, and with rp_filter={} and accept_local={} a 127.x *source* from this \
                 link passes the routing check: UDP services that receive IPv4 here ({}) take \
                 such a datagram as coming from a loopback peer, which code that trusts local \
                 peers believes",
                audited.rp_filter.map_or(0, |setting| setting.effective),
                audited.accept_local.map_or(0, |setting| setting.effective),
                udp.join(", ")
            ),
            remedies: vec![
                sysctl,
                format!(
                    "or make the routing check refuse a loopback source where the frames reach the \
                     stack: {}",
                    strict.join("; ")
                ),
                probe,
                nft_rule("saddr"),
            ],
            workload: None,
        });
    }
    findings
}
