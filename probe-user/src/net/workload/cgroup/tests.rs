use proptest::prelude::*;

use super::*;

const ID: &str = "3f4e8a1b2c9d0e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f";
const UID: &str = "0f7c1a9e-2b3d-4c5e-8f6a-7b8c9d0e1f2a";

fn attributed(runtime: Option<Runtime>, pod: Option<Qos>) -> Attribution {
    Attribution {
        runtime,
        container_id: Some(ID.to_owned()),
        pod_uid: pod.map(|_| UID.to_owned()),
        qos: pod,
    }
}

#[test]
fn the_runtimes_paths_as_they_lay_them_out() {
    let systemd_uid = UID.replace('-', "_");
    let cases = [
        // Docker, systemd driver (v2 and v1 alike).
        (
            format!("/system.slice/docker-{ID}.scope"),
            attributed(Some(Runtime::Docker), None),
        ),
        // Docker, cgroupfs driver, and Docker in Docker (the innermost container).
        (
            format!("/docker/{ID}"),
            attributed(Some(Runtime::Docker), None),
        ),
        (
            format!("/docker/{}/docker/{ID}", "a".repeat(64)),
            attributed(Some(Runtime::Docker), None),
        ),
        // Podman, rootful and rootless, with the `container` child of --cgroups=split.
        (
            format!("/machine.slice/libpod-{ID}.scope"),
            attributed(Some(Runtime::Podman), None),
        ),
        (
            format!(
                "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container"
            ),
            attributed(Some(Runtime::Podman), None),
        ),
        (
            format!("/libpod_parent/libpod-{ID}"),
            attributed(Some(Runtime::Podman), None),
        ),
        // The kubelet's systemd driver with containerd and CRI-O, each QoS class.
        (
            format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{systemd_uid}.slice/cri-containerd-{ID}.scope"
            ),
            attributed(Some(Runtime::Containerd), Some(Qos::Burstable)),
        ),
        (
            format!(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{systemd_uid}.slice/crio-{ID}.scope"
            ),
            attributed(Some(Runtime::Crio), Some(Qos::BestEffort)),
        ),
        (
            format!("/kubepods.slice/kubepods-pod{systemd_uid}.slice/crio-{ID}.scope/container"),
            attributed(Some(Runtime::Crio), Some(Qos::Guaranteed)),
        ),
        // cri-dockerd: Docker's scope under the kubelet's slice.
        (
            format!("/kubepods.slice/kubepods-pod{systemd_uid}.slice/docker-{ID}.scope"),
            attributed(Some(Runtime::Docker), Some(Qos::Guaranteed)),
        ),
        // The kubelet's cgroupfs driver: the id without its runtime.
        (
            format!("/kubepods/burstable/pod{UID}/{ID}"),
            attributed(None, Some(Qos::Burstable)),
        ),
        (
            format!("/kubepods/besteffort/pod{UID}/{ID}"),
            attributed(None, Some(Qos::BestEffort)),
        ),
        (
            format!("/kubepods/pod{UID}/{ID}"),
            attributed(None, Some(Qos::Guaranteed)),
        ),
    ];
    for (path, expected) in cases {
        assert_eq!(attribute_path(&path), Some(expected), "{path}");
    }
}

#[test]
fn a_pod_without_a_container_yet_names_the_pod() {
    let path = format!("/kubepods/besteffort/pod{UID}");
    assert_eq!(
        attribute_path(&path),
        Some(Attribution {
            runtime: None,
            container_id: None,
            pod_uid: Some(UID.to_owned()),
            qos: Some(Qos::BestEffort),
        })
    );
}

#[test]
fn paths_of_no_container_name_none() {
    for path in [
        "/",
        "/init.scope",
        "/system.slice/sshd.service",
        "/user.slice/user-0.slice/session-3.scope",
        // conmon's scopes are the monitor, not the container.
        &format!("/machine.slice/libpod-conmon-{ID}.scope"),
        &format!("/system.slice/crio-conmon-{ID}.scope"),
        // Not an id: too short, uppercase, or a runtime's name on another service.
        "/system.slice/docker-1234.scope",
        &format!("/docker/{}", ID.to_ascii_uppercase()),
        "/system.slice/docker.service",
        "/kubepods/burstable/podnot-a-uid/x",
    ] {
        assert_eq!(attribute_path(path), None, "{path}");
    }
}

#[test]
fn v2_is_read_before_v1_and_v1_alone_is_enough() {
    let hybrid = format!(
        "12:pids:/system.slice/docker-{}.scope\n1:name=systemd:/\n0::/system.slice/docker-{ID}.scope\n",
        "b".repeat(64)
    );
    assert_eq!(
        attribute(&hybrid).and_then(|a| a.container_id),
        Some(ID.to_owned())
    );
    let v1_only = format!(
        "11:memory:/kubepods/burstable/pod{UID}/{ID}\n4:cpu,cpuacct:/kubepods/burstable/pod{UID}/{ID}\n1:name=systemd:/kubepods/burstable/pod{UID}/{ID}\n"
    );
    assert_eq!(
        attribute(&v1_only),
        Some(attributed(None, Some(Qos::Burstable)))
    );
    // Hybrid with the container in v1 only (the v2 line at the root).
    let unified_root = format!("4:memory:/docker/{ID}\n0::/\n");
    assert_eq!(
        attribute(&unified_root),
        Some(attributed(Some(Runtime::Docker), None))
    );
    assert_eq!(main_path(&unified_root), Some("/"));
    assert_eq!(main_path("3:cpu:/a\n"), Some("/a"));
    assert_eq!(attribute(""), None);
    assert_eq!(main_path(""), None);
}

#[test]
fn paths_with_colons_are_read_whole() {
    // Only the first two colons separate fields.
    assert_eq!(
        attribute(&format!("0::/odd:name/docker-{ID}.scope\n")).and_then(|a| a.runtime),
        Some(Runtime::Docker)
    );
}

proptest! {
    /// Arbitrary text never panics, and what it names is always well-formed.
    #[test]
    fn any_text_is_read_without_panic(text in ".{0,300}") {
        if let Some(attribution) = attribute(&text) {
            if let Some(id) = attribution.container_id {
                prop_assert!(is_container_id(&id));
            }
            if let Some(uid) = attribution.pod_uid {
                prop_assert!(uid.len() <= 36 && !uid.contains('_'));
            }
        }
    }

    /// Any id under any runtime's scope, under any parents, is found exactly.
    #[test]
    fn any_id_in_any_scope_is_found(
        id in "[0-9a-f]{64}",
        parents in proptest::collection::vec("[a-z]{1,8}\\.slice", 0..4),
        which in 0usize..4,
    ) {
        let (prefix, runtime) = [
            ("docker-", Runtime::Docker),
            ("cri-containerd-", Runtime::Containerd),
            ("crio-", Runtime::Crio),
            ("libpod-", Runtime::Podman),
        ][which];
        let path = format!("/{}/{prefix}{id}.scope", parents.join("/"));
        let found = attribute_path(&path).expect("a container");
        prop_assert_eq!(found.runtime, Some(runtime));
        prop_assert_eq!(found.container_id, Some(id));
    }
}
