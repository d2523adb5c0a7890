//! deploy/kubernetes: kustomization.yaml lists every manifest, the Namespace first; each passes
//! kubernetes-validate in strict mode (unknown fields are errors) against the oldest and newest
//! Kubernetes it knows; and the DaemonSet's container, started as the kubelet would start it
//! (uid 0 with only its added capabilities, no privilege escalation, its arguments with the
//! node's address from the downward API), is ready by its readiness probe, pins, counts, stays
//! within its memory limit and leaves the filter attached when stopped.

use std::{
    fs,
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::Value;
use testbed::{KillOnDrop, Link, RECEIVER_IF, RECEIVER_V4, http_get, try_http_get};

use crate::{
    PROBE, VERSION, checked, deploy, send_loopback_frames, venv_bin, wait_for_passed,
    yaml_documents,
};

/// The oldest and the newest Kubernetes whose schemas kubernetes-validate has.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.25.0", "1.37.0"];

/// The manifests kustomization.yaml lists, in its order.
fn manifests() -> Vec<String> {
    let kustomization = yaml_documents(&deploy("kubernetes/kustomization.yaml"));
    kustomization[0]["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|resource| resource.as_str().expect("a file").to_owned())
        .collect()
}

#[test]
#[ignore = "needs root"]
fn the_manifests_pass_strict_validation_and_the_kustomization_lists_them_all() {
    let listed = manifests();
    let mut in_folder: Vec<String> = fs::read_dir(deploy("kubernetes"))
        .expect("deploy/kubernetes")
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".yaml") && name != "kustomization.yaml")
        .collect();
    in_folder.sort();
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(sorted, in_folder, "kustomization.yaml lists every manifest");
    assert_eq!(
        yaml_documents(&deploy(&format!("kubernetes/{}", listed[0])))[0]["kind"],
        "Namespace",
        "the namespace is made first"
    );

    for version in KUBERNETES_VERSIONS {
        let report = checked(
            Command::new(venv_bin("kubernetes-validate"))
                .args(["--strict", "--kubernetes-version", version])
                .args(
                    listed
                        .iter()
                        .map(|file| deploy(&format!("kubernetes/{file}"))),
                ),
        );
        assert_eq!(
            report.matches(" passed for resource ").count(),
            listed.len(),
            "{report}"
        );
    }
}

/// The DaemonSet's one container.
fn container() -> Value {
    let documents = yaml_documents(&deploy("kubernetes/daemonset.yaml"));
    let containers = documents[0]["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers")
        .clone();
    assert_eq!(containers.len(), 1);
    containers.into_iter().next().unwrap()
}

/// `128Mi` and the like, in bytes.
fn quantity(text: &str) -> u64 {
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap());
    let factor = match unit {
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => panic!("unit {unit}"),
    };
    number.parse::<u64>().expect("a number") * factor
}

#[test]
#[ignore = "needs root"]
fn the_daemonsets_container_runs_as_the_kubelet_starts_it() {
    const FRAMES: u64 = 40;
    let container = container();
    assert_eq!(
        container["image"],
        format!("localhost/localnet-probe:{VERSION}"),
        "the image `cargo xtask image` builds"
    );
    let security = &container["securityContext"];
    assert_eq!(security["runAsUser"], 0);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["privileged"], false);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    let caps = security["capabilities"]["add"]
        .as_array()
        .expect("added capabilities")
        .iter()
        .map(|cap| format!("+{}", cap.as_str().unwrap().to_ascii_lowercase()))
        .collect::<Vec<_>>()
        .join(",");
    // The downward API gives the node's address; here the receiver's.
    let host_ip = container["env"]
        .as_array()
        .expect("env")
        .iter()
        .find(|var| var["name"] == "HOST_IP")
        .expect("HOST_IP");
    assert_eq!(
        host_ip["valueFrom"]["fieldRef"]["fieldPath"],
        "status.hostIP"
    );
    let args: Vec<String> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|arg| {
            arg.as_str()
                .expect("a string")
                .replace("$(HOST_IP)", &RECEIVER_V4.to_string())
        })
        .collect();
    let readiness = &container["readinessProbe"]["httpGet"];
    let port = container["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .find(|port| port["name"] == readiness["port"])
        .expect("the readiness probe's port")["containerPort"]
        .clone();
    let ready_at = format!("{RECEIVER_V4}:{port}");
    let memory_limit = quantity(
        container["resources"]["limits"]["memory"]
            .as_str()
            .expect("a memory limit"),
    );

    let link = Link::new("kube");
    // uid 0 with its bounding set cut to the added capabilities: what the runtime gives the
    // container's process (root's file access, so the host's bpffs, but nothing more).
    let mut probe = KillOnDrop(
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", link.receiver.name))
            .args([
                "setpriv",
                "--reuid=0",
                "--regid=0",
                "--clear-groups",
                &format!("--inh-caps=-all,{caps}"),
                &format!("--ambient-caps=-all,{caps}"),
                &format!("--bounding-set=-all,{caps}"),
                "--no-new-privs",
            ])
            .arg(PROBE)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the probe"),
    );
    let path = readiness["path"].as_str().expect("a path");
    let mut last_words = || probe.last_words();
    crate::scrape(&link.receiver, &ready_at, &mut last_words);
    assert_eq!(http_get(&link.receiver, &ready_at, path, None).status, 200);
    assert!(
        try_http_get(&link.receiver, "127.0.0.1:9464", "/metrics", None).is_err(),
        "metrics are served on the node's address only"
    );
    send_loopback_frames(&link, FRAMES);
    wait_for_passed(&link.receiver, &ready_at, FRAMES, &mut last_words);

    let status = fs::read_to_string(format!("/proc/{}/status", probe.0.id())).expect("status");
    let peak = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|kb| kb.trim().trim_end_matches(" kB").parse::<u64>().ok())
        .expect("VmHWM")
        * 1024;
    assert!(
        peak < memory_limit,
        "peak RSS {peak} B is beyond the limit {memory_limit} B"
    );
    eprintln!("the DaemonSet's probe: peak RSS {} KiB", peak / 1024);

    let exit = probe.terminate(Duration::from_secs(20));
    let said = probe.stderr();
    assert!(exit.success(), "{exit}: {said}");
    assert!(
        said.contains("the standing filter stays attached"),
        "{said}"
    );
    assert!(link.receiver.pin_dir().exists());
    assert!(link.receiver.has_xdp(RECEIVER_IF));
}

/// `base` with a strategic-merge `patch` as kustomize applies this one: maps merged, lists of
/// named items (containers, volumes, headers) and of mounts merged by key, other lists replaced.
fn strategic_merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(base), Value::Object(patch)) => {
            for (key, value) in patch {
                match base.get_mut(key) {
                    // A null deletes the key.
                    Some(_) if value.is_null() => {
                        base.remove(key);
                    }
                    Some(existing) => strategic_merge(existing, value),
                    None => {
                        base.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (Value::Array(base), Value::Array(patch))
            if patch
                .iter()
                .all(|item| item.get("name").is_some() || item.get("mountPath").is_some()) =>
        {
            for item in patch {
                let key = if item.get("name").is_some() {
                    "name"
                } else {
                    "mountPath"
                };
                match base.iter_mut().find(|existing| existing[key] == item[key]) {
                    Some(existing) => strategic_merge(existing, item),
                    None => base.push(item.clone()),
                }
            }
        }
        (base, patch) => *base = patch.clone(),
    }
}

/// deploy/kubernetes/secure: the DaemonSet patched as kustomize does passes strict validation;
/// its arguments are the base's and --web-config, in the Secret it mounts; the kubelet's probes
/// are TCP connections, with no credential written in the manifest.
#[test]
#[ignore = "needs root"]
fn the_secure_overlay_serves_the_web_config_from_its_secret() {
    let overlay = &yaml_documents(&deploy("kubernetes/secure/kustomization.yaml"))[0];
    assert_eq!(overlay["resources"], serde_json::json!([".."]));
    assert_eq!(
        overlay["patches"],
        serde_json::json!([{"path": "daemonset-web-config.yaml"}])
    );
    let mut daemonset = yaml_documents(&deploy("kubernetes/daemonset.yaml"))[0].clone();
    let patch = &yaml_documents(&deploy("kubernetes/secure/daemonset-web-config.yaml"))[0];
    strategic_merge(&mut daemonset, patch);
    let merged = tempfile_json(&daemonset);
    for version in KUBERNETES_VERSIONS {
        let report = checked(
            Command::new(venv_bin("kubernetes-validate"))
                .args(["--strict", "--kubernetes-version", version])
                .arg(merged.path().join("daemonset.json")),
        );
        assert!(report.contains(" passed for resource "), "{report}");
    }

    let patched = &daemonset["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = patched["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|arg| arg.as_str().expect("a string"))
        .collect();
    let base_args = container()["args"].clone();
    assert_eq!(
        serde_json::json!(args[..args.len() - 2]),
        base_args,
        "the base's arguments, unchanged"
    );
    assert_eq!(args[args.len() - 2], "--web-config");
    let file = std::path::Path::new(args[args.len() - 1]);
    let mount = patched["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .find(|mount| {
            Some(mount["mountPath"].as_str().unwrap()) == file.parent().and_then(|p| p.to_str())
        })
        .expect("the web configuration's directory is mounted");
    assert_eq!(mount["readOnly"], true);
    let volume = daemonset["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|volume| volume["name"] == mount["name"])
        .expect("the mounted volume");
    assert_eq!(volume["secret"]["secretName"], "localnet-probe-web");
    // No credential in the manifest: the probes connect, nothing more.
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(
            patched[probe]["tcpSocket"],
            serde_json::json!({"port": "metrics"}),
            "{probe}"
        );
        assert!(
            patched[probe].get("httpGet").is_none(),
            "{probe}: one handler"
        );
    }
}

/// `value` written as `daemonset.json` in a directory of its own.
fn tempfile_json(value: &Value) -> testbed::TempDir {
    let dir = testbed::TempDir::new("secure-overlay");
    fs::write(
        dir.path().join("daemonset.json"),
        serde_json::to_vec(value).expect("JSON"),
    )
    .expect("write the merged DaemonSet");
    dir
}
