//! The kernel matrix: the probe's kernel-facing tests run inside Debian kernels booted under
//! qemu. Each kernel package is downloaded and unpacked under target/kernel-vm (never installed
//! on the host); the guest boots from an initramfs holding static busybox, the tools the tests
//! call, the test binaries and `localnet-probe` at the paths they have here (the tests find the
//! binary through `env!("CARGO_BIN_EXE_localnet-probe")`), and the modules the tests need.
//! The tests' output comes back on the second serial port; the kernel's console goes to a file,
//! whose tail is printed when the guest gives no result.

mod initramfs;

use self::initramfs::{archive, build_root, copy_stripped};

use std::{
    collections::BTreeSet,
    fs,
    io::{BufRead as _, BufReader, Write as _},
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{cargo, ensure_packages, output, run, target_dir, test_run::TestTotals};

/// The kernels `cargo xtask test` boots when none is named: Debian 12's own (also Amazon Linux
/// 2023's default) and its backport (GKE COS and AL2023 offer 6.12 too), each the newest ABI
/// Debian has, found with apt-cache so the list does not go stale when Debian bumps it.
pub const DEFAULT_KERNELS: [&str; 2] = ["6.1", "6.12"];

/// What the matrix needs on the host: qemu's TCG emulation, a static busybox for the guest's
/// userland, cpio for the initramfs, kmod to resolve module dependencies, the decompressors of
/// the packages' modules, and the tools the tests call (copied into the guest).
const VM_TOOLS: [(&str, &str); 12] = [
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("busybox", "busybox-static"),
    ("cpio", "cpio"),
    ("depmod", "kmod"),
    ("xz", "xz-utils"),
    ("zstd", "zstd"),
    ("strip", "binutils"),
    ("ip", "iproute2"),
    ("tc", "iproute2"),
    ("bpftool", "bpftool"),
    ("setpriv", "util-linux"),
    ("nsenter", "util-linux"),
];

/// The tests the matrix runs, by test binary: what depends on the kernel (the verifier, the
/// hooks, counting, multi-buffer, the bpf file system), not what the host run covers already
/// (argument checks, outputs, deployment files). Chosen to keep both kernels well under ten
/// minutes under TCG.
const MATRIX_TESTS: [(&str, &[&str]); 12] = [
    // The feature probe against the kernel's configuration (put into the guest's /boot).
    ("kernel_features", &[""]),
    // Every program through the verifier under BPF_PROG_TEST_RUN: verdicts, counters, samples,
    // at XDP and at tc (test runs of classifiers need no tcx).
    ("prog_test_run", &[""]),
    // The programs without multi-buffer (for kernels before 5.18), the same way.
    ("prog_test_run_linear", &[""]),
    // The fallback where XDP multi-buffer is missing (kernels before 5.18, which do not boot
    // here), forced with LOCALNET_PROBE_WITHOUT=xdp_frags: the linear programs attached, exact
    // counts and drops, jumbo MTUs left out; and the features in --version and status.
    (
        "without_multi_buffer",
        &[
            "without_multi_buffer_frames_are_counted_exactly_dropped_and_jumbo_mtus_left_out",
            "without_multi_buffer_a_jumbo_mtu_named_is_refused_with_the_feature_named",
            "version_and_status_carry_the_kernel_features",
        ],
    ),
    (
        "netns",
        &[
            "ten_thousand_loopback_frames_are_counted_exactly",
            "drop_mode_stops_spoofed_datagrams_to_a_loopback_bound_server",
            "killed_probe_leaves_no_program_behind",
        ],
    ),
    // What the kernel does with ARP for loopback addresses (route_localnet), and the probe's
    // ARP counts, drops and replies leaving.
    (
        "arp",
        &[
            "the_kernel_answers_arp_for_loopback_addresses_only_where_route_localnet_is_in_effect",
            "arp_for_loopback_addresses_is_counted_dropped_and_its_replies_seen_leaving",
        ],
    ),
    (
        "lifecycle",
        &[
            // The verifier under exactly CAP_BPF and CAP_NET_ADMIN.
            "runs_with_exactly_cap_bpf_and_cap_net_admin",
            // XDP multi-buffer.
            "jumbo_frames_are_counted_whole_and_dropped_in_native_mode",
        ],
    ),
    (
        "standing",
        &["the_standing_filter_outlives_the_cli_restarts_without_a_gap_and_detaches_cleanly"],
    ),
    (
        "hotplug",
        &["a_pattern_serves_interfaces_as_they_appear_change_and_go"],
    ),
    (
        "in_process",
        &["attach_detach_and_release_churn_through_a_few_slots"],
    ),
    // The counters grown twice by a burst of 600 interfaces, each generation pinned and
    // taken over (the 2,000-interface burst is too slow under TCG).
    (
        "growth",
        &["a_standing_filter_that_grew_is_taken_over_whole_and_detached"],
    ),
    (
        "tc_hooks",
        &[
            // At tcx on 6.12; through a clsact qdisc's filter on 6.1, which has no tcx.
            "beside_another_xdp_program_it_counts_and_drops_at_tc_ingress",
            "a_reply_to_a_spoofed_syn_is_counted_leaving_unless_the_syn_is_dropped",
            "a_standing_filter_at_tc_is_taken_over_and_detached",
            "its_filters_go_on_every_way_out_even_sigkill_and_anothers_stay",
        ],
    ),
];

/// How long one kernel may take, boot to power-off, before it counts as failed.
const KERNEL_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// What the guest prints on its console when the tests are done; SeaBIOS's escape codes may
/// precede it on the line.
const EXIT_MARKER: &str = "xtask-vm-exit=";
/// What the guest prints on the results port after each test binary.
const BINARY_MARKER: &str = "xtask-vm-binary ";

/// One kernel's results.
#[derive(Debug)]
pub struct KernelResult {
    pub version: String,
    pub totals: TestTotals,
}

/// Resolves each `--kernel` argument: a full Debian version (`6.1.0-57-cloud-amd64`) as it is,
/// a prefix (`6.1`, `6.12`) to the newest cloud kernel Debian's apt has for it.
pub fn resolve(specs: &[String]) -> anyhow::Result<Vec<String>> {
    let mut updated = false;
    let mut versions = Vec::new();
    for spec in specs {
        if spec.ends_with("-amd64") {
            versions.push(spec.clone());
            continue;
        }
        let newest = loop {
            if let Some(newest) = newest_cloud_kernel(spec)? {
                break newest;
            }
            if updated {
                bail!(
                    "apt has no linux-image-{spec}…-cloud-amd64 package; `apt-cache search \
                     linux-image` lists the kernels there are"
                );
            }
            run(Command::new("apt-get").args(["update", "-q"]))?;
            updated = true;
        };
        versions.push(newest);
    }
    Ok(versions)
}

/// The newest `linux-image-PREFIX[.-]…-cloud-amd64` in apt's lists, as its version.
fn newest_cloud_kernel(prefix: &str) -> anyhow::Result<Option<String>> {
    if !prefix.chars().all(|c| c.is_ascii_digit() || c == '.') {
        bail!(
            "--kernel {prefix}: give a version prefix like 6.1 or a full version like 6.1.0-57-cloud-amd64"
        );
    }
    let pattern = format!(
        "^linux-image-{}[.-].*-cloud-amd64$",
        prefix.replace('.', "\\.")
    );
    let found = output(Command::new("apt-cache").args(["search", "--names-only", &pattern]))?;
    Ok(found
        .lines()
        .filter_map(|line| line.split_whitespace().next()?.strip_prefix("linux-image-"))
        .max_by_key(|version| version_key(version))
        .map(str::to_owned))
}

/// The numbers in a version, in order, for comparing `6.1.0-9` below `6.1.0-57`.
fn version_key(version: &str) -> Vec<u64> {
    version
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|number| number.parse().ok())
        .collect()
}

/// A test binary and the tests of it the matrix runs.
struct TestBinary {
    name: &'static str,
    path: PathBuf,
    tests: &'static [&'static str],
}

/// Builds the test binaries the matrix runs and `localnet-probe`; returns them with the binary.
fn build_tests() -> anyhow::Result<(Vec<TestBinary>, PathBuf)> {
    let mut command = cargo();
    command.args([
        "test",
        "--locked",
        "--package",
        "probe-user",
        "--no-run",
        "--message-format=json-render-diagnostics",
    ]);
    for (name, _) in MATRIX_TESTS {
        command.args(["--test", name]);
    }
    let messages = output(command.stderr(Stdio::inherit()))?;
    let mut binaries = Vec::new();
    for line in messages.lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let (Some(name), Some(path)) = (
            message["target"]["name"].as_str(),
            message["executable"].as_str(),
        ) else {
            continue;
        };
        if let Some((name, tests)) = MATRIX_TESTS.iter().find(|(test, _)| *test == name) {
            binaries.push(TestBinary {
                name,
                path: PathBuf::from(path),
                tests,
            });
        }
    }
    if binaries.len() != MATRIX_TESTS.len() {
        bail!(
            "cargo test --no-run built {} of the {} test binaries",
            binaries.len(),
            MATRIX_TESTS.len()
        );
    }
    // The tests run it from where cargo put it; `cargo test` builds it alongside them.
    let probe = target_dir().join("debug").join("localnet-probe");
    Ok((binaries, probe))
}

/// Runs the matrix on each kernel, printing the tests' output and a closing line per kernel.
pub fn run_matrix(versions: &[String]) -> anyhow::Result<Vec<KernelResult>> {
    ensure_packages(&VM_TOOLS)?;
    let (binaries, probe) = build_tests()?;
    let work = target_dir().join("kernel-vm");
    let mut results = Vec::new();
    let matrix_started = Instant::now();
    for version in versions {
        let started = Instant::now();
        let totals = match run_kernel(&work, version, &binaries, &probe) {
            Ok(totals) => totals,
            Err(error) => {
                println!("kernel {version}: {error:#}");
                TestTotals {
                    failed: 1,
                    ..TestTotals::default()
                }
            }
        };
        println!(
            "kernel {version}: {} passed, {} failed, {} skipped in {:.0} s",
            totals.passed,
            totals.failed,
            totals.ignored,
            started.elapsed().as_secs_f64()
        );
        results.push(KernelResult {
            version: version.clone(),
            totals,
        });
    }
    if !versions.is_empty() {
        println!(
            "kernel matrix: {} kernels in {:.0} s",
            versions.len(),
            matrix_started.elapsed().as_secs_f64()
        );
    }
    Ok(results)
}

fn run_kernel(
    work: &Path,
    version: &str,
    binaries: &[TestBinary],
    probe: &Path,
) -> anyhow::Result<TestTotals> {
    let kernel = unpack_kernel(work, version)?;
    let run_dir = work.join(format!("run-{version}"));
    let _ = fs::remove_dir_all(&run_dir);
    let root = run_dir.join("root");
    fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;

    let mut totals = TestTotals::default();
    let mut script = String::from("set -u\ncd /tmp\n");
    for binary in binaries {
        let guest_path = copy_stripped(&root, &binary.path)?;
        let filters = binary.tests;
        // An empty filter is the whole binary.
        let exact = if filters == [""] { "" } else { " --exact" };
        // One test at a time: the guest has one CPU (see `boot`), and the tests' timeouts are
        // set for a machine that is not running another test.
        script.push_str(&format!(
            "{guest_path} --include-ignored --test-threads=1{exact} {}; echo \"{BINARY_MARKER}{} $?\"\n",
            filters.join(" "),
            binary.name
        ));
    }
    copy_stripped(&root, probe)?;
    build_root(&root, &kernel, version, &script)?;
    let initrd = run_dir.join("initrd.cpio");
    archive(&root, &initrd)?;
    fs::remove_dir_all(&root).with_context(|| format!("cannot remove {}", root.display()))?;

    let console = run_dir.join("console.log");
    let guest = boot(&kernel, version, &initrd, &console)?;
    totals.passed += guest.totals.passed;
    totals.failed += guest.totals.failed;
    totals.ignored += guest.totals.ignored;
    if !guest.finished {
        let log = fs::read(&console).unwrap_or_default();
        let log = String::from_utf8_lossy(&log);
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        println!("kernel {version}: no result; the console's last lines:");
        for line in tail.iter().rev() {
            println!("  {line}");
        }
        totals.failed += 1;
    }
    Ok(totals)
}

/// Downloads and unpacks the kernel package under `work` unless it is there; returns the
/// directory it is unpacked in, with the modules' dependency lists made.
fn unpack_kernel(work: &Path, version: &str) -> anyhow::Result<PathBuf> {
    let kernel = work.join(format!("kernel-{version}"));
    let vmlinuz = kernel.join("boot").join(format!("vmlinuz-{version}"));
    if !vmlinuz.exists() {
        let debs = work.join("debs");
        fs::create_dir_all(&debs).with_context(|| format!("cannot create {}", debs.display()))?;
        let package = format!("linux-image-{version}");
        let download = || {
            run(Command::new("apt-get")
                // As root into a directory apt's sandbox user cannot write to: say so, or apt
                // warns.
                .args(["download", "-q", "-o", "APT::Sandbox::User=root", &package])
                .current_dir(&debs))
        };
        // Lists older than the archive name packages it no longer has.
        if download().is_err() {
            run(Command::new("apt-get").args(["update", "-q"]))?;
            download().with_context(|| format!("downloading {package}"))?;
        }
        let deb = fs::read_dir(&debs)?
            .filter_map(|entry| Some(entry.ok()?.path()))
            .find(|path| {
                path.file_name()
                    .and_then(|name| name.to_str())
                    .is_some_and(|name| name.starts_with(&format!("{package}_")))
            })
            .with_context(|| format!("apt-get download left no {package}_….deb"))?;
        let partial = work.join(format!("kernel-{version}.partial"));
        let _ = fs::remove_dir_all(&partial);
        run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&partial))?;
        run(Command::new("depmod").arg("-b").arg(&partial).arg(version))?;
        fs::rename(&partial, &kernel)?;
    }
    Ok(kernel)
}

/// What came back from a guest.
struct GuestResult {
    totals: TestTotals,
    /// Whether the guest said its tests were done.
    finished: bool,
}

/// Boots the kernel with the initramfs under TCG (KVM does not work on these machines), prints
/// the tests' output as it comes and sums it.
fn boot(
    kernel: &Path,
    version: &str,
    initrd: &Path,
    console: &Path,
) -> anyhow::Result<GuestResult> {
    let mut command = Command::new("timeout");
    command
        .args(["--kill-after=10", &KERNEL_TIMEOUT.as_secs().to_string()])
        .arg("qemu-system-x86_64")
        .args(["-accel", "tcg,thread=multi", "-cpu", "max", "-M", "pc"])
        // One CPU: with two, and tests in parallel, 6.12 panicked on a half-patched jump in the
        // XDP dispatcher, which every test run repatches. It is no slower (the tests run one at
        // a time) and leaves the host's other core to the rest.
        .args(["-smp", "1", "-m", "1G"])
        .args(["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .args(["-serial", "stdio"])
        .arg("-kernel")
        .arg(kernel.join("boot").join(format!("vmlinuz-{version}")))
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", "console=ttyS0 panic=-1 quiet loglevel=4"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {command:?}"))?;
    let stdout = child.stdout.take().expect("piped");
    let mut totals = TestTotals::default();
    let mut binary_failures = 0;
    let mut failed_before_binary = 0;
    let mut out = std::io::stdout().lock();
    for line in BufReader::new(stdout).split(b'\n') {
        let line = line.context("reading the guest's output")?;
        let line = String::from_utf8_lossy(&line);
        let line = line.trim_end_matches('\r');
        writeln!(out, "[{version}] {line}")?;
        totals.add(line);
        // A binary that failed without a failed test (it crashed, or could not start) is one
        // failure more.
        if let Some(status) = line
            .strip_prefix(BINARY_MARKER)
            .and_then(|rest| rest.rsplit(' ').next())
        {
            if status != "0" && totals.failed == failed_before_binary {
                binary_failures += 1;
            }
            failed_before_binary = totals.failed;
        }
    }
    drop(out);
    child.wait().context("waiting for qemu")?;
    totals.failed += binary_failures;
    let log = fs::read(console).unwrap_or_default();
    let finished = String::from_utf8_lossy(&log).contains(EXIT_MARKER);
    Ok(GuestResult { totals, finished })
}

#[cfg(test)]
mod tests {
    use super::version_key;

    #[test]
    fn newer_abis_and_stable_releases_sort_last() {
        let mut versions = [
            "6.1.0-57-cloud-amd64",
            "6.1.0-9-cloud-amd64",
            "6.12.118+deb12-cloud-amd64",
            "6.1.0-10-cloud-amd64",
            "6.12.9+deb12-cloud-amd64",
        ];
        versions.sort_by_key(|version| version_key(version));
        assert_eq!(
            versions,
            [
                "6.1.0-9-cloud-amd64",
                "6.1.0-10-cloud-amd64",
                "6.1.0-57-cloud-amd64",
                "6.12.9+deb12-cloud-amd64",
                "6.12.118+deb12-cloud-amd64",
            ]
        );
    }
}
