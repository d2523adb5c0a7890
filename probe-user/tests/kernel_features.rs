//! The kernel feature probe against the running kernel's own build configuration, read from
//! another source than the probe asks: `/boot/config-RELEASE` (which the kernel matrix puts
//! into its guests) or `/proc/config.gz`. Needs root.

use std::{fs, process::Command};

use probe_user::kernel::features::KernelFeatures;

/// The running kernel's build configuration, if it can be found.
fn kernel_config(release: &str) -> Option<String> {
    if let Ok(config) = fs::read_to_string(format!("/boot/config-{release}")) {
        return Some(config);
    }
    let unpacked = Command::new("gzip")
        .args(["-dc", "/proc/config.gz"])
        .output()
        .ok()?;
    unpacked
        .status
        .success()
        .then(|| String::from_utf8_lossy(&unpacked.stdout).into_owned())
}

/// The major and minor version of a release such as `6.1.0-57-cloud-amd64`.
fn version(release: &str) -> (u32, u32) {
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|number| number.parse().expect("a release starting with its version"));
    (
        numbers.next().expect("a major version"),
        numbers.next().expect("a minor version"),
    )
}

#[test]
#[ignore = "needs root"]
fn features_found_are_those_the_kernel_was_built_with() {
    let features = KernelFeatures::probe().expect("probe the kernel");
    // Without one the test cannot tell anything: it fails rather than pass having checked
    // nothing (the matrix's guests and this project's CI machines have one).
    let config = kernel_config(&features.release).unwrap_or_else(|| {
        panic!(
            "no build configuration of {} to check the features against: neither \
             /boot/config-{0} nor /proc/config.gz",
            features.release
        )
    });
    let built_in = |option: &str| config.lines().any(|line| line == format!("{option}=y"));
    assert!(
        built_in("CONFIG_BPF_SYSCALL"),
        "{}: no BPF",
        features.release
    );
    // tcx has a configuration option of its own; multi-buffer and ring buffers come with BPF
    // from a version on. The version is a fair witness for the stock kernels this runs on (the
    // host's and the matrix's Debian ones), not for vendor kernels with backports, which is
    // why the probe asks the kernel.
    let version = version(&features.release);
    assert_eq!(
        features,
        KernelFeatures {
            release: features.release.clone(),
            tcx: built_in("CONFIG_NET_XGRESS"),
            xdp_frags: version >= (5, 18),
            ring_buffer: version >= (5, 8),
            masked: Vec::new(),
        }
    );
}

#[test]
#[ignore = "needs root"]
fn the_features_serialise_for_reports() {
    let features = KernelFeatures::probe().expect("probe the kernel");
    let json = serde_json::to_value(&features).expect("serialise");
    assert_eq!(json["release"], features.release.as_str());
    for feature in ["tcx", "xdp_frags", "ring_buffer"] {
        assert!(json[feature].is_boolean(), "{feature} in {json}");
    }
}

#[test]
#[ignore = "needs root"]
fn the_environment_takes_features_away_and_says_so() {
    let found = KernelFeatures::probe().expect("probe the kernel");
    // The variable is set in a child: tests share this process's environment.
    let output = Command::new(std::env::current_exe().expect("this test binary"))
        .args([
            "--exact",
            "masked_features_as_the_child_sees_them",
            "--include-ignored",
            "--nocapture",
        ])
        .env("LOCALNET_PROBE_WITHOUT", "tcx,xdp_frags")
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Run on one thread (the matrix's guests have one CPU), the harness prints the test's name
    // before its output, on the same line.
    let line = stdout
        .lines()
        // Under --test-threads=1 the line starts with the test's name.
        .find_map(|line| line.split_once("features: ").map(|(_, features)| features))
        .unwrap_or_else(|| panic!("no features line in {stdout}"));
    let masked: serde_json::Value = serde_json::from_str(line).expect("features as JSON");
    assert_eq!(masked["tcx"], false);
    assert_eq!(masked["xdp_frags"], false);
    assert_eq!(masked["ring_buffer"], found.ring_buffer);
    assert_eq!(masked["masked"], serde_json::json!(["tcx", "xdp_frags"]));
}

#[test]
#[ignore = "needs root"]
fn masked_features_as_the_child_sees_them() {
    let features = KernelFeatures::probe().expect("probe the kernel");
    println!(
        "features: {}",
        serde_json::to_string(&features).expect("serialise")
    );
}
