//! Attachments made and dropped in the test process itself, observed on the device: rollback,
//! churn. In a test binary of their own, run one at a time: a dropped link is gone only once
//! every copy of its descriptor is closed, and a test that starts a process meanwhile copies
//! the descriptors open at that moment into the child until it executes. Needs root.

use std::sync::Mutex;

use probe_common::{Framing, Mode};
use probe_user::{
    probe::{LoadOptions, Probe, XdpModeChoice, attachment::XdpPrograms},
    session::select::Selection,
    session::{OnConflict, Session, SessionError, SessionOptions},
};
use testbed::{Link, RECEIVER_IF};

/// Held by each test here for its whole run.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The per-interface lifecycle for days of churn: the same interface attached, detached,
/// re-attached and released hundreds of times, and new interfaces coming and going, all through
/// four slots; each state observed on the device while the process runs.
#[test]
#[ignore = "needs root"]
fn attach_detach_and_release_churn_through_a_few_slots() {
    let _alone = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let link = Link::new("churn");
    link.receiver.enter(|| {
        let mut probe = Probe::load(LoadOptions {
            capacity: 4,
            bound: 4,
            verifier_log: false,
            sample_rate: 0,
            xdp: XdpPrograms::MultiBuffer,
        })
        .expect("load");
        let vrx = testbed::ifindex(RECEIVER_IF);
        // Each attachment costs milliseconds (the kernel patches code on the first generic
        // program of a host and the last): 250 rounds, 750 attachments; the slot churn itself
        // runs 5,000 rounds in prog_test_run.rs.
        for round in 0..250 {
            let look = round % 25 == 0;
            probe.configure(vrx, Mode::Monitor).expect("configure");
            probe
                .attach(vrx, Framing::Ethernet, XdpModeChoice::Generic)
                .expect("attach");
            assert!(!look || link.receiver.has_xdp(RECEIVER_IF), "round {round}");
            probe.detach(vrx).expect("detach");
            assert!(
                !look || !link.receiver.has_xdp(RECEIVER_IF),
                "round {round}"
            );
            probe.configure(vrx, Mode::Drop).expect("mode change");
            // Native attachments reconfigure the veth (tens of ms): one round in 25.
            let mode = if look {
                XdpModeChoice::Native
            } else {
                XdpModeChoice::Generic
            };
            probe
                .attach(vrx, Framing::Ethernet, mode)
                .unwrap_or_else(|error| panic!("attach again, round {round}: {error}"));
            probe.release(vrx).expect("release");
            assert!(
                !look || !link.receiver.has_xdp(RECEIVER_IF),
                "round {round}"
            );
        }
        for round in 0..50 {
            let name = format!("ch{round}");
            link.receiver.ip(&[
                "link",
                "add",
                &name,
                "type",
                "veth",
                "peer",
                "name",
                &format!("cp{round}"),
            ]);
            link.receiver.ip(&["link", "set", &name, "up"]);
            let ifindex = testbed::ifindex(&name);
            probe.configure(ifindex, Mode::Drop).expect("configure");
            probe
                .attach(ifindex, Framing::Ethernet, XdpModeChoice::Auto)
                .expect("attach");
            assert!(link.receiver.has_xdp(&name));
            link.receiver.ip(&["link", "del", &name]);
            probe.release(ifindex).expect("release a deleted interface");
        }
    });
}

/// All or nothing, observed while the process that attached still runs: after a failed start
/// (native XDP on an ifb device) the veth it attached first carries nothing; after a successful
/// one, dropping the session detaches at once.
#[test]
#[ignore = "needs root"]
fn a_failed_start_leaves_nothing_attached_in_the_running_process() {
    let _alone = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let link = Link::new("rollback");
    link.receiver.ip(&["link", "add", "ifb0", "type", "ifb"]);
    link.receiver.ip(&["link", "set", "ifb0", "up"]);
    let start = |ifaces: &[&str]| {
        let options = SessionOptions {
            selection: Selection {
                ifaces: ifaces
                    .iter()
                    .map(|name| name.parse().expect("a name"))
                    .collect(),
                ..Selection::default()
            },
            xdp_mode: XdpModeChoice::Native,
            on_conflict: OnConflict::Fail,
            egress: false,
            verifier_log: false,
            sample_rate: 100,
            pin: false,
            capacity: None,
            cri: probe_user::net::workload::cri::Client::new(Default::default()),
        };
        link.receiver.enter(|| {
            let started = Session::start(options);
            let attached = link.receiver.has_xdp(RECEIVER_IF);
            (started.map(|(session, _)| session), attached)
        })
    };
    let (failed, attached) = start(&[RECEIVER_IF, "ifb0"]);
    let error = failed.err().expect("native XDP on ifb fails");
    assert!(
        matches!(&error, SessionError::Attach { name, .. } if name == "ifb0"),
        "{error}"
    );
    assert!(!attached, "vrx was detached when ifb0 failed");

    let (session, attached) = start(&[RECEIVER_IF]);
    let session = session.expect("native XDP on veth");
    assert!(attached);
    drop(session);
    assert!(
        !link.receiver.has_xdp(RECEIVER_IF),
        "dropping the session detaches"
    );
}
