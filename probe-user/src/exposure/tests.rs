use super::*;
use crate::{
    exposure::ruleset::{Action, Base, Chain, Condition, Hook, NameMatch, Net, Rule, Ruleset},
    net::interfaces::Ipv4Conf,
};

fn interface(name: &str, ifindex: u32, route_localnet: bool) -> Interface {
    Interface {
        route_localnet: Some(route_localnet),
        ipv4_conf: Some(Ipv4Conf {
            rp_filter: 1,
            ..Ipv4Conf::default()
        }),
        ..Interface::for_tests(name, ifindex)
    }
}

fn socket(protocol: Protocol, local: &str, v6only: Option<bool>) -> BoundSocket {
    BoundSocket {
        protocol,
        local: local.parse().unwrap(),
        v6only,
        bound_device: None,
        uid: 0,
        inode: 7,
        processes: vec![Holder {
            pid: 42,
            command: "redis-server".to_owned(),
        }],
    }
}

fn inputs(interfaces: Vec<Interface>) -> Inputs {
    Inputs {
        interfaces,
        all: GlobalConf {
            rp_filter: 1,
            ..GlobalConf::default()
        },
        default: GlobalConf::default(),
        sockets: vec![
            socket(Protocol::Tcp, "127.0.0.1:6379", None),
            socket(Protocol::Udp, "[::ffff:127.0.0.53]:53", Some(false)),
            socket(Protocol::Udp, "[::1]:53", Some(true)),
            socket(Protocol::Tcp, "0.0.0.0:22", None),
        ],
        saw_every_process: true,
        xdp: Vec::new(),
        tcx: Ok(Vec::new()),
        nft: Ok(Ruleset::default()),
        standing: Ok(None),
        workloads: std::collections::BTreeMap::new(),
        children: std::collections::BTreeMap::new(),
    }
}

fn probe(mode: Option<Mode>) -> XdpOn {
    XdpOn::LocalnetProbe(ProbeOn {
        hook: "xdp",
        xdp_mode: Some("native"),
        ..probe_at_tcx(mode)
    })
}

fn probe_at_tcx(mode: Option<Mode>) -> ProbeOn {
    ProbeOn {
        hook: "tcx",
        how: "process",
        xdp_mode: None,
        processes: Vec::new(),
        mode: mode.map(Mode::name),
        mode_unknown: mode.is_none().then(|| "no CAP_SYS_ADMIN".to_owned()),
        preceded_by: Vec::new(),
        replies: None,
    }
}

/// localnet-probe at eth0's (ifindex 2) tcx egress, having counted `replies`.
fn replies(replies: Result<u64, String>) -> Result<Vec<(u32, TcxOn)>, String> {
    Ok(vec![(
        2,
        TcxOn {
            replies: Some(replies),
            ..TcxOn::default()
        },
    )])
}

/// Which frames a rule of [`nft_drop`] drops.
#[derive(Clone, Copy)]
enum Dropped {
    /// `ip daddr 127.0.0.0/8`.
    Destinations,
    /// kubelet's: `ip saddr != 127.0.0.0/8 ip daddr 127.0.0.0/8`.
    DestinationsFromOtherSources,
    /// `ip saddr 127.0.0.0/8`.
    Sources,
}

/// A prerouting chain with one drop rule, on `interface` or every link.
fn nft_drop(interface: Option<&str>, dropped: Dropped) -> Ruleset {
    let loopback = |negated| Condition::Source {
        net: Net::LOOPBACK,
        negated,
    };
    let destinations = Condition::Destination {
        net: Net::LOOPBACK,
        negated: false,
    };
    let mut conditions: Vec<Condition> = interface
        .map(|name| Condition::Interface {
            names: vec![NameMatch::Exactly(name.to_owned())],
            negated: false,
        })
        .into_iter()
        .collect();
    conditions.extend(match dropped {
        Dropped::Destinations => vec![destinations],
        Dropped::DestinationsFromOtherSources => vec![loopback(true), destinations],
        Dropped::Sources => vec![loopback(false)],
    });
    let mut ruleset = Ruleset::default();
    ruleset.chains.insert(
        "nft inet g pre".to_owned(),
        Chain {
            label: "nft inet g pre".to_owned(),
            base: Some(Base {
                hook: Hook::Prerouting,
                devices: Some(Vec::new()),
                conntracked: false,
                policy_drop: false,
            }),
            rules: vec![Rule {
                label: "nft inet g pre handle 2".to_owned(),
                conditions,
                action: Action::Drop,
            }],
        },
    );
    ruleset
}

#[test]
fn lists_ipv4_loopback_services_where_route_localnet_is_in_effect() {
    let audit = audit(
        &inputs(vec![
            interface("eth0", 2, true),
            interface("eth1", 3, false),
        ]),
        None,
    );
    assert!(audit.exposed());
    // The v4-mapped one is IPv4 loopback; ::1 is listed but reachable from nowhere; 0.0.0.0 is
    // not a loopback service.
    assert_eq!(audit.sockets.len(), 3);
    assert_eq!(audit.interfaces[0].verdict, Verdict::Exposed);
    assert_eq!(audit.interfaces[0].reachable, [0, 1]);
    assert_eq!(audit.interfaces[1].verdict, Verdict::NotExposed);
    let finding = &audit.findings[0];
    assert_eq!(finding.kind, "reachable-services");
    assert!(
        finding
            .message
            .contains("tcp 127.0.0.1:6379 (pid 42 redis-server)")
    );
    assert!(
        finding
            .remedies
            .iter()
            .any(|r| r.contains("localnet-probe run --iface eth0 --drop-on eth0 (with --pin"))
    );
    assert!(
        finding
            .remedies
            .iter()
            .any(|r| r.contains("net.ipv4.conf.eth0.route_localnet=0"))
    );
    assert!(audit.findings.iter().any(|f| f.kind == "ipv6-loopback"));
    // conf.all alone puts it in effect everywhere.
    let mut all = inputs(vec![interface("eth0", 2, false)]);
    all.all.route_localnet = true;
    assert_eq!(audit_of(&all), Verdict::Exposed);
}

fn audit_of(inputs: &Inputs) -> Verdict {
    audit(inputs, None).interfaces[0].verdict
}

#[test]
fn an_exposed_links_findings_name_the_pod_behind_it() {
    use crate::net::workload::{
        Netns, Workload,
        cgroup::{Attribution, Qos, Runtime},
        cri::Names,
    };
    let mut inputs = inputs(vec![
        interface("eth0", 2, true),
        interface("veth8a3f1c2", 3, true),
    ]);
    let id = "3f4e8a1b2c9d".repeat(5) + "0123";
    let workload = Workload {
        netns: Some(Netns {
            inode: 4_026_532_999,
            cookie: None,
            name: None,
        }),
        processes: Vec::new(),
        process_count: 1,
        attribution: Attribution {
            runtime: Some(Runtime::Containerd),
            container_id: Some(id.clone()),
            pod_uid: Some("0f7c1a9e-2b3d-4c5e-8f6a-7b8c9d0e1f2a".to_owned()),
            qos: Some(Qos::Burstable),
        },
        unresolved: None,
        names: Names {
            pod: Some("web-0".to_owned()),
            namespace: Some("shop".to_owned()),
            container: Some("app".to_owned()),
        },
        names_unresolved: None,
    };
    inputs.workloads.insert(3, workload.clone());
    let audited = audit(&inputs, None);
    let on = |name: &str| {
        audited
            .findings
            .iter()
            .filter(|finding| finding.interface.as_deref() == Some(name))
            .collect::<Vec<_>>()
    };
    let veth = on("veth8a3f1c2");
    assert!(
        veth.iter().any(|f| f.severity == Severity::Exposure),
        "{veth:?}"
    );
    for finding in &veth {
        assert_eq!(finding.workload.as_ref(), Some(&workload));
        assert!(
            finding.message.ends_with(
                " (workload: containerd 3f4e8a1b2c9d pod shop/web-0 (burstable) container app)"
            ),
            "{}",
            finding.message
        );
    }
    let eth0 = on("eth0");
    assert!(!eth0.is_empty());
    assert!(
        eth0.iter()
            .all(|f| f.workload.is_none() && !f.message.contains("workload"))
    );
    assert_eq!(
        audited
            .interfaces
            .iter()
            .find(|i| i.ifindex == 3)
            .unwrap()
            .workload,
        Some(workload)
    );
}

#[test]
fn only_a_verified_drop_mitigates() {
    let mut inputs = inputs(vec![interface("eth0", 2, true)]);
    inputs.xdp = vec![(2, probe(Some(Mode::Drop)))];
    assert_eq!(audit_of(&inputs), Verdict::Mitigated);
    assert!(!audit(&inputs, None).exposed());
    for unverified in [
        probe(Some(Mode::Monitor)),
        probe(None),
        XdpOn::Other { id: 9, name: None },
    ] {
        inputs.xdp = vec![(2, unverified)];
        assert_eq!(audit_of(&inputs), Verdict::Exposed);
    }
    inputs.xdp.clear();
    inputs.nft = Ok(nft_drop(Some("eth0"), Dropped::Destinations));
    assert_eq!(audit_of(&inputs), Verdict::Mitigated);
    inputs.nft = Ok(nft_drop(Some("eth1"), Dropped::Destinations));
    assert_eq!(audit_of(&inputs), Verdict::Exposed);
    // kubelet's rule lets frames from a loopback source by, which rp_filter=1 stops here.
    inputs.nft = Ok(nft_drop(None, Dropped::DestinationsFromOtherSources));
    assert_eq!(audit_of(&inputs), Verdict::Mitigated);
    inputs.all.rp_filter = 0;
    inputs.interfaces[0].ipv4_conf = Some(Ipv4Conf::default());
    assert_eq!(audit_of(&inputs), Verdict::Exposed);
    inputs.nft = Err("nft is not installed".to_owned());
    let audit = audit(&inputs, None);
    assert!(
        audit.findings[0]
            .message
            .contains("nftables ruleset could not be read")
    );
}

#[test]
fn a_stacked_device_with_route_localnet_exposes_its_lower_link() {
    let mut inputs = inputs(vec![
        interface("eth0", 2, false),
        Interface {
            kind: Some("macvlan".to_owned()),
            lower: Some(2),
            ..interface("mv0", 3, true)
        },
    ]);
    let only = NamePatterns::new(&["eth0".to_owned()], "--iface").unwrap();
    let audited = audit(&inputs, Some(&only));
    assert_eq!(audited.interfaces.len(), 1);
    assert_eq!(audited.interfaces[0].route_localnet_via, ["mv0"]);
    assert_eq!(audited.interfaces[0].verdict, Verdict::Exposed);
    // A drop on the lower link covers the child's frames.
    inputs.xdp = vec![(2, probe(Some(Mode::Drop)))];
    assert_eq!(
        audit(&inputs, Some(&only)).interfaces[0].verdict,
        Verdict::Mitigated
    );
}

#[test]
fn latent_without_services_and_dual_stack_udp_on_its_own() {
    let mut inputs = inputs(vec![interface("eth0", 2, true)]);
    inputs.sockets.clear();
    let audited = audit(&inputs, None);
    assert_eq!(audited.interfaces[0].verdict, Verdict::Latent);
    assert!(!audited.exposed(), "a warning, not an exposure");
    inputs.sockets = vec![socket(Protocol::Udp, "[::]:5354", Some(false))];
    // rp_filter=1 and accept_local=0: a 127.x source fails the routing check.
    assert!(!audit(&inputs, None).exposed());
    // Strict filtering refuses a 127.x source even with accept_local (its reverse route is
    // local, not through the device); loose filtering lets it in with accept_local.
    inputs.interfaces[0].ipv4_conf = Some(Ipv4Conf {
        rp_filter: 1,
        accept_local: 1,
        ..Ipv4Conf::default()
    });
    assert!(!audit(&inputs, None).exposed());
    inputs.interfaces[0].ipv4_conf = Some(Ipv4Conf {
        rp_filter: 2,
        accept_local: 1,
        ..Ipv4Conf::default()
    });
    let audited = audit(&inputs, None);
    assert!(audited.exposed());
    assert_eq!(audited.findings[0].kind, "loopback-source");
    assert!(
        audited.findings[0]
            .message
            .contains("rp_filter=2 and accept_local=1"),
        "{}",
        audited.findings[0].message
    );
    // A drop of loopback destinations does not stop a loopback source; one of sources does.
    inputs.nft = Ok(nft_drop(None, Dropped::Destinations));
    assert!(audit(&inputs, None).exposed());
    inputs.nft = Ok(nft_drop(None, Dropped::Sources));
    assert!(!audit(&inputs, None).exposed());
}

#[test]
fn the_routing_check_passes_a_loopback_source_as_fib_validate_source_does() {
    for (rp_filter, accept_local, passes) in [
        (0, false, true),
        (0, true, true),
        (1, false, false),
        (1, true, false),
        (2, false, false),
        (2, true, true),
    ] {
        assert_eq!(
            loopback_source_passes(rp_filter, accept_local),
            passes,
            "rp_filter={rp_filter} accept_local={accept_local}"
        );
    }
}

#[test]
fn ipv4_udp_services_see_a_loopback_source_too() {
    let mut inputs = inputs(vec![interface("eth0", 2, true)]);
    inputs.all.rp_filter = 0;
    inputs.interfaces[0].ipv4_conf = Some(Ipv4Conf::default());
    inputs.sockets = vec![socket(Protocol::Udp, "0.0.0.0:7778", None)];
    let audited = audit(&inputs, None);
    assert!(audited.exposed());
    assert_eq!(audited.findings[0].kind, "loopback-source");
    assert!(audited.findings[0].message.contains("udp 0.0.0.0:7778"));
    assert!(
        audited.findings[0].remedies[1].contains("net.ipv4.conf.eth0.rp_filter=1"),
        "{:?}",
        audited.findings[0].remedies
    );
    // With `all` at loose filtering a device cannot be made strict: accept_local must go.
    inputs.all.rp_filter = 2;
    inputs.all.accept_local = 1;
    let audited = audit(&inputs, None);
    assert!(
        audited.findings[0].remedies[1].contains(
            "sysctl -w net.ipv4.conf.all.accept_local=0; sysctl -w \
                 net.ipv4.conf.eth0.accept_local=0"
        ),
        "{:?}",
        audited.findings[0].remedies
    );
    // A v6-only socket takes no IPv4.
    inputs.sockets = vec![socket(Protocol::Udp, "[::]:7778", Some(true))];
    assert!(!audit(&inputs, None).exposed());
}

#[test]
fn a_drop_on_the_lower_device_covers_a_child_audited_on_its_own() {
    let mut inputs = inputs(vec![
        interface("eth0", 2, false),
        Interface {
            kind: Some("macvlan".to_owned()),
            lower: Some(2),
            ..interface("mv0", 3, true)
        },
        Interface {
            kind: Some("bridge".to_owned()),
            ..interface("br0", 4, true)
        },
        Interface {
            master: Some(4),
            ..interface("p1", 5, false)
        },
        Interface {
            master: Some(4),
            ..interface("p2", 6, false)
        },
    ]);
    let verdict = |inputs: &Inputs, name: &str| {
        let only = NamePatterns::new(&[name.to_owned()], "--iface").unwrap();
        audit(inputs, Some(&only)).interfaces[0].verdict
    };
    assert_eq!(verdict(&inputs, "mv0"), Verdict::Exposed);
    inputs.xdp = vec![(2, probe(Some(Mode::Drop)))];
    assert_eq!(verdict(&inputs, "mv0"), Verdict::Mitigated);
    // A bridge gets frames through every port: one dropping is not enough.
    inputs.xdp.push((5, probe(Some(Mode::Drop))));
    assert_eq!(verdict(&inputs, "br0"), Verdict::Exposed);
    inputs.xdp.push((6, probe(Some(Mode::Drop))));
    assert_eq!(verdict(&inputs, "br0"), Verdict::Mitigated);
}

#[test]
fn replies_seen_make_an_exposed_link_exploited() {
    let mut inputs = inputs(vec![interface("eth0", 2, true)]);
    inputs.tcx = replies(Ok(3));
    let audited = audit(&inputs, None);
    let eth0 = &audited.interfaces[0];
    assert_eq!(eth0.verdict, Verdict::Exploited);
    assert_eq!(eth0.replies_seen, Some(3));
    assert!(audited.exposed() && audited.exploited());
    // Still reachable now, and said so beside the replies.
    assert_eq!(eth0.reachable, [0, 1]);
    let kinds: Vec<&str> = audited.findings.iter().map(|f| f.kind).collect();
    assert_eq!(kinds[..2], ["exploited", "reachable-services"], "{kinds:?}");
    let exploited = &audited.findings[0];
    assert_eq!(exploited.severity, Severity::Exposure);
    assert!(
        exploited
            .message
            .contains("counted 3 frame(s) with a loopback source leaving eth0")
            && exploited.message.contains("the link is still exposed"),
        "{}",
        exploited.message
    );
    for remedy in [
        "localnet-probe run --iface eth0 --drop-on eth0 (with --pin",
        "localnet-probe run --iface eth0 --drop-on eth0 --egress --events",
        "net.ipv4.conf.eth0.route_localnet=0",
        "--egress --events",
        "--pcap FILE",
    ] {
        assert!(
            exploited.remedies.iter().any(|r| r.contains(remedy)),
            "{remedy}: {:?}",
            exploited.remedies
        );
    }
    // An exploited interface comes first, before another's exposure.
    inputs.interfaces.insert(0, interface("eth1", 3, true));
    let audited = audit(&inputs, None);
    assert_eq!(audited.findings[0].kind, "exploited");
    assert_eq!(audited.findings[0].interface.as_deref(), Some("eth0"));
}

#[test]
fn replies_counted_as_none_are_not_replies_not_counted() {
    let mut inputs = inputs(vec![interface("eth0", 2, true)]);
    let audited = audit(&inputs, None);
    assert_eq!(
        audited.interfaces[0].replies_seen, None,
        "not counted there"
    );
    assert_eq!(audited.interfaces[0].verdict, Verdict::Exposed);
    inputs.tcx = replies(Ok(0));
    let audited = audit(&inputs, None);
    assert_eq!(audited.interfaces[0].replies_seen, Some(0), "counted, none");
    assert_eq!(audited.interfaces[0].verdict, Verdict::Exposed);
    assert!(!audited.exploited());
    assert!(audited.findings.iter().all(|f| f.kind != "exploited"));
    inputs.tcx = replies(Err("no CAP_SYS_ADMIN".to_owned()));
    let audited = audit(&inputs, None);
    assert_eq!(audited.interfaces[0].replies_seen, None);
    assert_eq!(
        audited.interfaces[0].replies_unknown.as_deref(),
        Some("no CAP_SYS_ADMIN")
    );
    assert_eq!(audited.interfaces[0].verdict, Verdict::Exposed);
}

#[test]
fn replies_stay_evidence_once_the_link_is_mitigated_or_route_localnet_unset() {
    let mut inputs = inputs(vec![interface("eth0", 2, true)]);
    inputs.xdp = vec![(2, probe(Some(Mode::Drop)))];
    inputs.tcx = replies(Ok(2));
    let audited = audit(&inputs, None);
    assert_eq!(audited.interfaces[0].verdict, Verdict::Exploited);
    assert!(audited.exposed(), "the replies count in the exit status");
    assert!(
        audited.interfaces[0].reachable.is_empty(),
        "none reachable now"
    );
    let exploited = &audited.findings[0];
    assert!(
        exploited
            .message
            .contains("localnet-probe in drop mode (xdp, process) drops frames to 127.0.0.0/8 from this link now"),
        "{}",
        exploited.message
    );
    assert!(
        !exploited
            .remedies
            .iter()
            .any(|r| r.contains("--pin to keep it")),
        "it drops already: {:?}",
        exploited.remedies
    );
    assert!(audited.findings.iter().any(|f| f.kind == "mitigated"));

    inputs.xdp.clear();
    inputs.interfaces[0].route_localnet = Some(false);
    let audited = audit(&inputs, None);
    assert_eq!(audited.interfaces[0].verdict, Verdict::Exploited);
    assert_eq!(audited.findings.len(), 2, "{:?}", audited.findings);
    assert!(
        audited.findings[0]
            .message
            .contains("route_localnet is not in effect for its frames now"),
        "{}",
        audited.findings[0].message
    );
    assert!(
        !audited.findings[0]
            .remedies
            .iter()
            .any(|r| r.contains("route_localnet=0")),
        "{:?}",
        audited.findings[0].remedies
    );
}

#[test]
fn a_drop_at_tcx_ingress_mitigates_beside_another_xdp_program() {
    let mut inputs = inputs(vec![interface("eth0", 2, true)]);
    inputs.xdp = vec![(
        2,
        XdpOn::Other {
            id: 9,
            name: Some("xdp_lb".to_owned()),
        },
    )];
    let at_tcx = |mode| {
        Ok(vec![(
            2,
            TcxOn {
                ingress: Some(probe_at_tcx(mode)),
                ..TcxOn::default()
            },
        )])
    };
    inputs.tcx = at_tcx(Some(Mode::Drop));
    let audited = audit(&inputs, None);
    let eth0 = &audited.interfaces[0];
    assert_eq!(eth0.verdict, Verdict::Mitigated);
    assert_eq!(
        eth0.other_xdp_program,
        Some(9),
        "the other program is still said"
    );
    let probe = eth0.localnet_probe.as_ref().expect("the probe at tcx");
    assert_eq!((probe.hook, probe.xdp_mode), ("tcx", None));
    assert!(
        audited.findings[0]
            .message
            .contains("localnet-probe in drop mode (tcx, process)"),
        "{}",
        audited.findings[0].message
    );
    for unverified in [Some(Mode::Monitor), None] {
        inputs.tcx = at_tcx(unverified);
        assert_eq!(audit_of(&inputs), Verdict::Exposed);
    }
    // A program there this user cannot identify is no drop, and is said.
    inputs.tcx = Ok(vec![(
        2,
        TcxOn {
            unidentified: vec![12],
            ..TcxOn::default()
        },
    )]);
    inputs.xdp.clear();
    let audited = audit(&inputs, None);
    assert_eq!(audited.interfaces[0].verdict, Verdict::Exposed);
    assert_eq!(audited.interfaces[0].unidentified_tcx_programs, [12]);
    assert!(
        audited.findings[0]
            .message
            .contains("a tcx program this user cannot identify"),
        "{}",
        audited.findings[0].message
    );
    // Nor are hooks that could not be queried.
    inputs.tcx = Err("querying them takes CAP_NET_ADMIN".to_owned());
    let audited = audit(&inputs, None);
    assert_eq!(
        audited.tcx_unqueried.as_deref(),
        Some("querying them takes CAP_NET_ADMIN")
    );
    assert!(
        audited.findings[0]
            .message
            .contains("the tcx hooks could not be queried"),
        "{}",
        audited.findings[0].message
    );
}

#[test]
fn a_drop_at_tcx_behind_another_program_is_no_mitigation() {
    let mut inputs = inputs(vec![interface("eth0", 2, true)]);
    let mut probe = probe_at_tcx(Some(Mode::Drop));
    probe.preceded_by = vec![31];
    inputs.tcx = Ok(vec![(
        2,
        TcxOn {
            ingress: Some(probe),
            ..TcxOn::default()
        },
    )]);
    let audited = audit(&inputs, None);
    assert_eq!(audited.interfaces[0].verdict, Verdict::Exposed);
    let probe = audited.interfaces[0]
        .localnet_probe
        .as_ref()
        .expect("the probe at tcx");
    assert_eq!(probe.preceded_by, [31]);
}

#[test]
fn replies_kept_in_the_counters_outlive_the_egress_program() {
    let mut inputs = inputs(vec![interface("eth0", 2, true)]);
    let mut probe = probe_at_tcx(Some(Mode::Drop));
    probe.replies = Some(3);
    inputs.tcx = Ok(vec![(
        2,
        TcxOn {
            ingress: Some(probe.clone()),
            ..TcxOn::default()
        },
    )]);
    let audited = audit(&inputs, None);
    assert_eq!(audited.interfaces[0].verdict, Verdict::Exploited);
    assert_eq!(audited.interfaces[0].replies_seen, Some(3));
    // None counted, and no egress program: not counted there.
    probe.replies = Some(0);
    inputs.tcx = Ok(vec![(
        2,
        TcxOn {
            ingress: Some(probe),
            ..TcxOn::default()
        },
    )]);
    let audited = audit(&inputs, None);
    assert_eq!(audited.interfaces[0].verdict, Verdict::Mitigated);
    assert_eq!(audited.interfaces[0].replies_seen, None);
}

/// The remedy that has localnet-probe drop on `name`, from `inputs`' audit.
fn drop_remedy(inputs: &Inputs, name: &str) -> String {
    let audited = audit(inputs, None);
    audited
        .findings
        .iter()
        .filter(|finding| finding.interface.as_deref() == Some(name))
        .flat_map(|finding| &finding.remedies)
        .find(|remedy| remedy.starts_with("or drop frames with loopback addresses"))
        .unwrap_or_else(|| panic!("no remedy for {name}: {:?}", audited.findings))
        .clone()
}

fn standing_probe(mode: Mode, how: &'static str, processes: Vec<Holder>) -> XdpOn {
    XdpOn::LocalnetProbe(ProbeOn {
        hook: "xdp",
        how,
        xdp_mode: Some("native"),
        processes,
        ..probe_at_tcx(Some(mode))
    })
}

fn kept(name: &str, mode: Mode, egress: bool) -> StandingInterface {
    StandingInterface {
        name: name.to_owned(),
        mode,
        egress,
    }
}

#[test]
fn taking_a_standing_filter_over_keeps_its_interfaces_modes_and_replies() {
    let mut inputs = inputs(vec![
        interface("eth0", 2, true),
        interface("eth1", 3, false),
        interface("eth2", 4, false),
    ]);
    inputs.xdp = vec![
        (2, standing_probe(Mode::Monitor, "standing", Vec::new())),
        (3, standing_probe(Mode::Drop, "standing", Vec::new())),
    ];
    inputs.standing = Ok(Some(vec![
        kept("eth0", Mode::Monitor, false),
        kept("eth1", Mode::Drop, true),
    ]));
    let remedy = drop_remedy(&inputs, "eth0");
    assert!(
        remedy.contains(
            "take its standing filter over in drop mode, keeping the interfaces and modes it \
             has: localnet-probe run --pin --iface eth0 --iface eth1 --egress --drop-on eth1 \
             --drop-on eth0 (it pins exactly these interfaces: a pattern"
        ),
        "{remedy}"
    );
    // Served by a `run --pin`, which holds the lock a second one needs.
    inputs.xdp[0] = (
        2,
        standing_probe(
            Mode::Monitor,
            "standing",
            vec![Holder {
                pid: 7,
                command: "localnet-probe".to_owned(),
            }],
        ),
    );
    let remedy = drop_remedy(&inputs, "eth0");
    assert!(
        remedy.contains("stop the run --pin serving it (pid 7 localnet-probe), then take its"),
        "{remedy}"
    );
    // Pins that cannot be read give no command that would pass for keeping them.
    inputs.standing = Err("permission denied".to_owned());
    let remedy = drop_remedy(&inputs, "eth0");
    assert!(
        remedy.contains("whose pins could not be read (permission denied)")
            && remedy.contains("`localnet-probe status` lists its interfaces and modes"),
        "{remedy}"
    );
}

#[test]
fn a_pin_advised_beside_a_standing_filter_keeps_it() {
    let mut inputs = inputs(vec![
        interface("eth0", 2, false),
        interface("eth1", 3, false),
        interface("eth2", 4, true),
    ]);
    inputs.xdp = vec![
        (2, standing_probe(Mode::Monitor, "standing", Vec::new())),
        (3, standing_probe(Mode::Drop, "standing", Vec::new())),
    ];
    inputs.standing = Ok(Some(vec![
        kept("eth0", Mode::Monitor, false),
        kept("eth1", Mode::Drop, false),
    ]));
    let remedy = drop_remedy(&inputs, "eth2");
    assert!(
        remedy.contains(
            "before the stack sees them: localnet-probe run --iface eth2 --drop-on eth2 (to \
             keep it after exit, add it to the standing filter, keeping the interfaces and modes \
             it has: localnet-probe run --pin --iface eth0 --iface eth1 --iface eth2 --drop-on \
             eth1 --drop-on eth2; it pins exactly"
        ),
        "{remedy}"
    );
    inputs.standing = Ok(None);
    let remedy = drop_remedy(&inputs, "eth2");
    assert!(
        remedy.ends_with(
            "localnet-probe run --iface eth2 --drop-on eth2 (with --pin to keep it after exit)"
        ),
        "{remedy}"
    );
}

#[test]
fn pins_not_visible_here_are_kept_as_the_kernel_shows_them() {
    let mut inputs = inputs(vec![
        interface("eth0", 2, true),
        interface("eth1", 3, false),
        interface("eth2", 4, false),
    ]);
    inputs.xdp = vec![
        (2, standing_probe(Mode::Monitor, "pinned", Vec::new())),
        (3, standing_probe(Mode::Drop, "pinned", Vec::new())),
    ];
    let mut unknown = probe_at_tcx(None);
    unknown.how = "pinned";
    inputs.tcx = Ok(vec![(
        4,
        TcxOn {
            ingress: Some(unknown),
            replies: Some(Ok(0)),
            ..TcxOn::default()
        },
    )]);
    let remedy = drop_remedy(&inputs, "eth0");
    assert!(
        remedy.contains(
            "from the host's mount namespace, where its pins are visible, keeping the interfaces \
             and modes it has: nsenter --net="
        ) && remedy.contains(
            " localnet-probe run --pin --iface eth0 --iface eth1 --iface eth2 --egress --drop-on \
             eth1 --drop-on eth0 (it pins exactly"
        ) && remedy
            .contains("the mode of eth2 could not be read: add --drop-on for each that drops"),
        "{remedy}"
    );
}

#[test]
fn a_probe_process_is_stopped_before_one_drops_there() {
    let mut inputs = inputs(vec![interface("eth0", 2, true)]);
    inputs.xdp = vec![(
        2,
        standing_probe(
            Mode::Monitor,
            "process",
            vec![Holder {
                pid: 9,
                command: "localnet-probe".to_owned(),
            }],
        ),
    )];
    let remedy = drop_remedy(&inputs, "eth0");
    assert!(
        remedy.ends_with(
            "where localnet-probe (process at xdp) serves it already: stop it (pid 9 \
             localnet-probe), then start it again with --drop-on eth0 added to its arguments, or \
             serve eth0 alone in drop mode: localnet-probe run --iface eth0 --drop-on eth0"
        ),
        "{remedy}"
    );
}
