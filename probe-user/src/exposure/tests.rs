use super::*;
use crate::interfaces::Ipv4Conf;

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
        nft: Ok(Vec::new()),
    }
}

fn probe(mode: Option<Mode>) -> XdpOn {
    XdpOn::LocalnetProbe(ProbeOn {
        how: "process",
        xdp_mode: "native",
        processes: Vec::new(),
        mode: mode.map(Mode::name),
        mode_unknown: mode.is_none().then(|| "no CAP_SYS_ADMIN".to_owned()),
    })
}

fn nft_drop(interface: Option<&str>, dropped: Dropped) -> NftDrop {
    NftDrop {
        family: "inet".to_owned(),
        table: "g".to_owned(),
        chain: "pre".to_owned(),
        handle: 2,
        hook: nft::Hook::Prerouting,
        interface: interface.map(str::to_owned),
        dropped,
    }
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
            .any(|r| r.contains("localnet-probe run --drop-on eth0"))
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
    inputs.nft = Ok(vec![nft_drop(Some("eth0"), Dropped::Destinations)]);
    assert_eq!(audit_of(&inputs), Verdict::Mitigated);
    inputs.nft = Ok(vec![nft_drop(Some("eth1"), Dropped::Destinations)]);
    assert_eq!(audit_of(&inputs), Verdict::Exposed);
    // kubelet's rule lets frames from a loopback source by, which rp_filter=1 stops here.
    inputs.nft = Ok(vec![nft_drop(None, Dropped::DestinationsFromOtherSources)]);
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
    inputs.nft = Ok(vec![nft_drop(None, Dropped::Destinations)]);
    assert!(audit(&inputs, None).exposed());
    inputs.nft = Ok(vec![nft_drop(None, Dropped::Sources)]);
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
        audited.findings[0].remedies[1]
            .contains("net.ipv4.conf.all.accept_local=0 net.ipv4.conf.eth0.accept_local=0"),
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
