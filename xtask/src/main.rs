//! `cargo xtask`: everything localnet-probe needs beyond `cargo build`, from a fresh machine.

use std::{
    collections::BTreeSet,
    env,
    ffi::OsString,
    fs,
    io::{BufRead as _, BufReader},
    os::unix::{fs::MetadataExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};
use clap::{Args, Parser};

mod kernel_vm;

/// bpf-linker's LLVM, which must be the pinned nightly's (`ebpf_build::NIGHTLY_DATE`).
const LLVM_MAJOR: &str = "22";
const BPF_LINKER_VERSION: &str = "0.13";
const CARGO_FUZZ_VERSION: &str = "0.13";
/// The Kubernetes manifests' validator, from PyPI, with the API schemas of Kubernetes 1.25 to 1.37.
const KUBERNETES_VALIDATE_VERSION: &str = "1.37.0";
/// What `cargo xtask image` tags its image with, beside the version.
const IMAGE_NAME: &str = "localhost/localnet-probe";

#[derive(Debug, Parser)]
#[command(name = "cargo xtask")]
enum Xtask {
    /// Install what the build needs: rust-src for the nightly toolchain and bpf-linker.
    Setup,
    /// Set up, then build target/{debug,release}/localnet-probe with the XDP object embedded.
    Build(BuildArgs),
    /// Set up, build, and run localnet-probe with the arguments after `--`.
    Run(RunArgs),
    /// Set up, build a static (musl) release binary and the container image of
    /// deploy/container/Containerfile holding it, with podman (installed if missing): tagged
    /// localhost/localnet-probe:<version>.
    Image,
    /// Set up, then check formatting and run clippy on the host crates and, for the BPF target,
    /// on the eBPF crates; every warning is an error.
    Lint,
    /// Set up, build the container image, then run every test: host, BPF_PROG_TEST_RUN, netns
    /// integration, the deployment files in deploy/ checked by the tools that consume them and a
    /// short run of the benchmark harness (needs root); then the kernel-facing tests inside each
    /// kernel of the matrix, booted under qemu; then fuzz the classifier for 30 s.
    Test(TestArgs),
    /// Set up, then measure (needs root): in-kernel cost per frame, veth throughput and the CLI's
    /// footprint beside reference programs; writes target/bench/report.{md,json}.
    Bench(BenchArgs),
    /// Fuzz the classifier against a reference built on etherparse, with cargo-fuzz (installed if
    /// missing) on the pinned nightly; a panic or a disagreement fails and leaves its input in
    /// fuzz/artifacts/classify/. Given inputs, runs only those, to reproduce a failure.
    Fuzz(FuzzArgs),
}

#[derive(Debug, Args)]
struct FuzzArgs {
    /// How long to fuzz.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    seconds: u64,
    /// Inputs to run once instead of fuzzing, e.g. fuzz/artifacts/classify/crash-….
    inputs: Vec<PathBuf>,
}

#[derive(Debug, Args)]
struct TestArgs {
    /// A kernel to run the kernel-facing tests in, repeatable: a Debian cloud kernel's version
    /// (6.1.0-57-cloud-amd64) or a prefix for the newest apt has (6.1, 6.12); `none` for none.
    /// Default: 6.1 and 6.12.
    #[arg(long = "kernel", visible_alias = "kernels", value_name = "VERSION")]
    kernels: Vec<String>,
    /// Run the kernel matrix only: no host tests, image or fuzzing.
    #[arg(long, conflicts_with = "no_kernels")]
    kernels_only: bool,
    /// Skip the kernel matrix, for a quick local run (the same as `--kernel none`).
    #[arg(long)]
    no_kernels: bool,
}

impl TestArgs {
    /// The kernels asked for, as given.
    fn kernel_specs(&self) -> Vec<String> {
        if self.no_kernels || self.kernels.iter().any(|kernel| kernel == "none") {
            return Vec::new();
        }
        if self.kernels.is_empty() {
            return kernel_vm::DEFAULT_KERNELS.map(str::to_owned).to_vec();
        }
        self.kernels.clone()
    }
}

#[derive(Debug, Args)]
struct BenchArgs {
    /// Replace the benchmark table in README.md with this run's.
    #[arg(long)]
    update_readme: bool,
    /// Arguments for the harness, e.g. `-- --section kernel`.
    #[arg(last = true)]
    args: Vec<OsString>,
}

#[derive(Debug, Args)]
struct BuildArgs {
    /// Build with the release profile.
    #[arg(long)]
    release: bool,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    build: BuildArgs,
    /// Arguments for localnet-probe, e.g. `-- run --iface eth0`.
    #[arg(last = true)]
    args: Vec<OsString>,
}

fn main() -> anyhow::Result<()> {
    match Xtask::parse() {
        Xtask::Setup => setup(),
        Xtask::Build(args) => build(&args).map(drop),
        Xtask::Run(args) => {
            let binary = build(&args.build)?;
            let error = Command::new(&binary).args(&args.args).exec();
            Err(error).with_context(|| format!("cannot run {}", binary.display()))
        }
        Xtask::Image => image().map(drop),
        Xtask::Lint => lint(),
        Xtask::Test(args) => test(&args),
        Xtask::Bench(args) => bench(&args),
        Xtask::Fuzz(args) => fuzz(&args),
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace")
        .to_path_buf()
}

fn cargo() -> Command {
    let mut command = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(workspace_root());
    command
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot start {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed: {status}");
    }
    Ok(())
}

fn output(command: &mut Command) -> anyhow::Result<String> {
    let output = command
        .output()
        .with_context(|| format!("cannot start {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?)
}

fn setup() -> anyhow::Result<()> {
    ensure_rust_src()?;
    ensure_bpf_linker()
}

fn ensure_rust_src() -> anyhow::Result<()> {
    let nightly = ebpf_build::nightly()?;
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        &nightly,
    ]))?;
    if !installed.lines().any(|line| line.starts_with("rust-src")) {
        run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            &nightly,
        ]))?;
    }
    let llvm = output(Command::new("rustc").args([&format!("+{nightly}"), "-vV"]))?;
    let llvm_major = llvm
        .lines()
        .find_map(|line| line.strip_prefix("LLVM version: "))
        .and_then(|version| version.split('.').next());
    if llvm_major != Some(LLVM_MAJOR) {
        bail!(
            "the {nightly} toolchain uses LLVM {llvm_major:?}, bpf-linker here is built for LLVM \
             {LLVM_MAJOR}; they must match"
        );
    }
    Ok(())
}

/// Whether `version_command` prints `NAME MAJOR.MINOR.…` for `major_minor`; says what is replaced
/// when it prints another.
fn has_version(version_command: &mut Command, major_minor: &str) -> bool {
    let Ok(version) = output(version_command) else {
        return false;
    };
    if version
        .split_whitespace()
        .nth(1)
        .is_some_and(|v| v.starts_with(&format!("{major_minor}.")))
    {
        return true;
    }
    eprintln!("xtask: replacing {}", version.trim());
    false
}

fn ensure_bpf_linker() -> anyhow::Result<()> {
    if has_version(
        Command::new("bpf-linker").arg("--version"),
        BPF_LINKER_VERSION,
    ) {
        return Ok(());
    }

    let mut install = Command::new("cargo");
    install.args([
        "install",
        "bpf-linker",
        "--locked",
        "--force",
        "--version",
        &format!("~{BPF_LINKER_VERSION}"),
        "--no-default-features",
    ]);
    let debian_llvm = PathBuf::from(format!("/usr/lib/llvm-{LLVM_MAJOR}"));
    if debian_llvm.join("bin/llvm-config").exists() {
        eprintln!(
            "xtask: building bpf-linker against {}",
            debian_llvm.display()
        );
        install
            .args(["--features", &format!("llvm-{LLVM_MAJOR}")])
            .env("LLVM_PREFIX", &debian_llvm);
    } else {
        // No system LLVM: link the nightly toolchain's own libLLVM, which is the same major.
        let nightly = ebpf_build::nightly()?;
        let sysroot =
            output(Command::new("rustc").args([&format!("+{nightly}"), "--print", "sysroot"]))?;
        let lib_dir = Path::new(sysroot.trim()).join("lib");
        let library = fs::read_dir(&lib_dir)
            .with_context(|| format!("cannot read {}", lib_dir.display()))?
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .find(|name| {
                name.starts_with(&format!("libLLVM-{LLVM_MAJOR}")) && name.ends_with(".so")
            })
            .with_context(|| {
                format!(
                    "no libLLVM-{LLVM_MAJOR} in {}; install Debian's llvm-{LLVM_MAJOR}-dev instead",
                    lib_dir.display()
                )
            })?;
        let link_name = library
            .strip_prefix("lib")
            .and_then(|name| name.strip_suffix(".so"))
            .expect("matched above");
        eprintln!(
            "xtask: building bpf-linker against {}",
            lib_dir.join(&library).display()
        );
        let lib_dir = lib_dir.display();
        install
            .args(["--features", &format!("llvm-{LLVM_MAJOR},no-llvm-linking")])
            .env(
                "RUSTFLAGS",
                format!(
                    "-C link-arg=-L{lib_dir} -C link-arg=-l{link_name} -C link-arg=-Wl,-rpath,{lib_dir}"
                ),
            );
    }
    run(&mut install)
}

fn build(args: &BuildArgs) -> anyhow::Result<PathBuf> {
    setup()?;
    let mut command = cargo();
    command.args(["build", "--locked", "--package", "probe-user"]);
    if args.release {
        command.arg("--release");
    }
    run(&mut command)?;
    let profile = if args.release { "release" } else { "debug" };
    Ok(target_dir().join(profile).join("localnet-probe"))
}

/// The eBPF crates, which build only for the BPF target.
const EBPF_PACKAGES: [&str; 2] = ["probe-ebpf", "bench-ebpf"];

fn lint() -> anyhow::Result<()> {
    setup()?;
    run(cargo().args(["fmt", "--all", "--check"]))
        .context("formatting differs: run `cargo fmt --all`")?;
    let mut host = cargo();
    host.args(["clippy", "--locked", "--workspace", "--all-targets"]);
    for package in EBPF_PACKAGES {
        host.args(["--exclude", package]);
    }
    run(host.args(["--", "-D", "warnings"]))?;
    lint_fuzz()?;
    let nightly = ebpf_build::nightly()?;
    let mut ebpf = nightly_cargo(&nightly);
    ebpf.args([
        "clippy",
        "--locked",
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
        "--release",
    ]);
    for package in EBPF_PACKAGES {
        ebpf.args(["--package", package]);
    }
    // A target dir of its own, so the host build's artefacts are not rebuilt for nightly.
    run(ebpf
        .args(["--", "-D", "warnings"])
        .env("CARGO_TARGET_DIR", target_dir().join("lint-ebpf")))
}

/// The fuzz crate, a workspace of its own, linted on stable like the host crates. Without its
/// default feature, which builds libFuzzer's C++ for nothing here: clippy links nothing.
fn lint_fuzz() -> anyhow::Result<()> {
    let manifest = workspace_root().join("fuzz/Cargo.toml");
    run(cargo()
        .args(["fmt", "--check", "--manifest-path"])
        .arg(&manifest))
    .context("formatting differs: run `cargo fmt --manifest-path fuzz/Cargo.toml`")?;
    run(cargo()
        .args([
            "clippy",
            "--locked",
            "--all-targets",
            "--no-default-features",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        // The workspace's target dir: etherparse and the rest are checked there already.
        .arg("--target-dir")
        .arg(target_dir())
        .args(["--", "-D", "warnings"]))
}

/// `cargo` of the pinned nightly, in the workspace root.
fn nightly_cargo(nightly: &str) -> Command {
    let mut command = Command::new("rustup");
    command
        .current_dir(workspace_root())
        .args(["run", nightly, "cargo"])
        // Else stable's, which `cargo xtask` runs with, would be used.
        .env_remove("CARGO")
        .env_remove("RUSTC");
    command
}

fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace_root().join("target"), PathBuf::from)
}

fn is_root() -> anyhow::Result<bool> {
    Ok(fs::metadata("/proc/self")
        .context("cannot read /proc/self")?
        .uid()
        == 0)
}

/// Commands the root tests and the benchmark run, and the Debian packages that have them.
const TOOLS: [(&str, &str); 12] = [
    ("ip", "iproute2"),
    ("nsenter", "util-linux"),
    ("xdp-filter", "xdp-tools"),
    ("bpftool", "bpftool"),
    ("nft", "nftables"),
    ("ethtool", "ethtool"),
    ("tcpdump", "tcpdump"),
    ("prometheus", "prometheus"),
    ("tmux", "tmux"),
    // The deployment tests: the unit checked by systemd's own parser, the syscalls the probe
    // makes held against the unit's filter, the image.
    ("systemd-analyze", "systemd"),
    ("strace", "strace"),
    ("podman", "podman"),
];

fn ensure_tools() -> anyhow::Result<()> {
    ensure_packages(&TOOLS)
}

/// Installs from Debian the packages of the `commands` that are not found.
fn ensure_packages(commands: &[(&str, &str)]) -> anyhow::Result<()> {
    let missing: Vec<&str> = commands
        .iter()
        .filter(|(command, _)| {
            !env::split_paths(&env::var_os("PATH").unwrap_or_default())
                .chain(["/usr/sbin".into(), "/sbin".into()])
                .any(|dir| dir.join(command).is_file())
        })
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    apt_install(&missing)
}

fn apt_install(packages: &[&str]) -> anyhow::Result<()> {
    eprintln!("xtask: installing {}", packages.join(" "));
    run(Command::new("apt-get").args(["update", "-q"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive"))
    .with_context(|| format!("installing {} (as root)", packages.join(" ")))
}

/// The virtual environment the deployment tests take kubernetes-validate from
/// (probe-user/tests/deploy finds it here).
fn deploy_venv() -> PathBuf {
    target_dir().join("deploy-tools").join("venv")
}

/// Installs kubernetes-validate into [`deploy_venv`] unless this version is there. Debian's
/// python3 makes a venv only with python3-venv, installed if that is what is missing.
fn ensure_kubernetes_validate() -> anyhow::Result<()> {
    let venv = deploy_venv();
    let validator = venv.join("bin").join("kubernetes-validate");
    if output(Command::new(&validator).arg("--version"))
        .is_ok_and(|version| version.trim() == KUBERNETES_VALIDATE_VERSION)
    {
        return Ok(());
    }
    let make_venv = || {
        output(
            Command::new("python3")
                .args(["-m", "venv", "--clear"])
                .arg(&venv),
        )
    };
    if make_venv().is_err() {
        apt_install(&["python3-venv"])?;
        make_venv().context("creating a Python virtual environment for kubernetes-validate")?;
    }
    run(Command::new(venv.join("bin").join("pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        &format!("kubernetes-validate=={KUBERNETES_VALIDATE_VERSION}"),
    ]))
    .context("installing kubernetes-validate from PyPI")
}

/// The static target for this machine's architecture: aya is pure Rust, and the eBPF object is
/// built for the BPF target whatever the host's.
fn musl_target() -> String {
    format!("{}-unknown-linux-musl", env::consts::ARCH)
}

fn ensure_rust_target(target: &str) -> anyhow::Result<()> {
    let installed = output(Command::new("rustup").args(["target", "list", "--installed"]))?;
    if installed.lines().any(|line| line.trim() == target) {
        return Ok(());
    }
    run(Command::new("rustup").args(["target", "add", target]))
}

/// Builds the static binary and the image of deploy/container/Containerfile; returns its tag.
fn image() -> anyhow::Result<String> {
    setup()?;
    ensure_packages(&[("podman", "podman")])?;
    let target = musl_target();
    ensure_rust_target(&target)?;
    run(cargo().args([
        "build",
        "--locked",
        "--release",
        "--package",
        "probe-user",
        "--target",
        &target,
    ]))?;
    let binary = target_dir()
        .join(&target)
        .join("release")
        .join("localnet-probe");
    // The binary alone is the build context: podman would otherwise send the whole target dir.
    let context = target_dir().join("image-context");
    let _ = fs::remove_dir_all(&context);
    fs::create_dir_all(&context).with_context(|| format!("cannot create {}", context.display()))?;
    fs::copy(&binary, context.join("localnet-probe"))
        .with_context(|| format!("cannot copy {}", binary.display()))?;
    let revision = output(
        Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(workspace_root()),
    )
    .context("the image is labelled with the git revision: build it from a git checkout")?;
    let version = env!("CARGO_PKG_VERSION");
    let tag = format!("{IMAGE_NAME}:{version}");
    run(Command::new("podman")
        .arg("build")
        .arg("--file")
        .arg(workspace_root().join("deploy/container/Containerfile"))
        .args(["--tag", &tag])
        .args(["--build-arg", &format!("VERSION={version}")])
        .args(["--build-arg", &format!("REVISION={}", revision.trim())])
        .arg(&context))
    .context("building the image (podman needs root here, or subuids for rootless builds)")?;
    eprintln!("xtask: built {tag}");
    Ok(tag)
}

fn require_root(what: &str) -> anyhow::Result<()> {
    if !is_root()? {
        bail!("{what} need root: run `sudo -E cargo xtask …`");
    }
    Ok(())
}

fn bench(args: &BenchArgs) -> anyhow::Result<()> {
    require_root("the benchmark's programs and namespaces")?;
    ensure_tools()?;
    setup()?;
    run(cargo().args([
        "build",
        "--locked",
        "--release",
        "--package",
        "probe-user",
        "--package",
        "probe-bench",
    ]))?;
    let release = target_dir().join("release");
    let out = target_dir().join("bench");
    run(Command::new(release.join("localnet-probe-bench"))
        .arg("--probe-binary")
        .arg(release.join("localnet-probe"))
        .arg("--out")
        .arg(&out)
        .args(&args.args)
        .current_dir(workspace_root()))?;
    if args.update_readme {
        update_readme(&fs::read_to_string(out.join("report.md"))?)?;
    }
    Ok(())
}

const README_BENCH_START: &str = "<!-- bench:start -->";
const README_BENCH_END: &str = "<!-- bench:end -->";

fn update_readme(report: &str) -> anyhow::Result<()> {
    let path = workspace_root().join("README.md");
    let readme = fs::read_to_string(&path)?;
    let (Some(start), Some(end)) = (
        readme.find(README_BENCH_START),
        readme.find(README_BENCH_END),
    ) else {
        bail!("README.md has no {README_BENCH_START} … {README_BENCH_END} section");
    };
    let updated = format!(
        "{}{README_BENCH_START}\n{}\n{}",
        &readme[..start],
        report.trim_end(),
        &readme[end..]
    );
    fs::write(&path, updated)?;
    eprintln!("xtask: updated the benchmark section of {}", path.display());
    Ok(())
}

/// Runs `command` (a `cargo test`), printing its output and counting its results into
/// `totals`.
fn cargo_test(
    mut command: Command,
    totals: &mut TestTotals,
) -> anyhow::Result<std::process::ExitStatus> {
    command.env("RUST_BACKTRACE", "1").stdout(Stdio::piped());
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {command:?}"))?;
    let stdout = child.stdout.take().expect("piped");
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo test's output")?;
        println!("{line}");
        totals.add(&line);
    }
    child.wait().context("waiting for cargo test")
}

fn test(args: &TestArgs) -> anyhow::Result<()> {
    require_root("the BPF_PROG_TEST_RUN and network-namespace tests")?;
    // Before the long host run, so a kernel apt does not have is said at once.
    let kernels = kernel_vm::resolve(&args.kernel_specs())?;
    if args.kernels_only && kernels.is_empty() {
        bail!("--kernels-only with no kernel to run");
    }
    setup()?;
    let mut totals = TestTotals::default();
    let mut host_status = None;
    if !args.kernels_only {
        ensure_tools()?;
        ensure_kubernetes_validate()?;
        // The deployment tests take the binary out of this image, the one a fleet would run.
        image()?;
        let mut command = cargo();
        // The root tests are `#[ignore = "needs root"]`, so that a plain `cargo test` shows
        // them as ignored rather than passed; here they run.
        command.args(["test", "--locked", "--", "--include-ignored"]);
        let all = cargo_test(command, &mut totals)?;
        // The tc hooks again as on a kernel without tcx: through clsact filters.
        println!("\nxtask: tc_hooks again with LOCALNET_PROBE_WITHOUT=tcx (clsact filters)");
        let mut command = cargo();
        command
            .args([
                "test",
                "--locked",
                "--test",
                "tc_hooks",
                "--",
                "--include-ignored",
            ])
            .env("LOCALNET_PROBE_WITHOUT", "tcx");
        let without_tcx = cargo_test(command, &mut totals)?;
        host_status = Some(if all.success() { without_tcx } else { all });
    }
    let matrix = kernel_vm::run_matrix(&kernels)?;
    for kernel in &matrix {
        totals.merge(&kernel.totals);
    }
    // One closing line for the whole run: cargo's own last line is some crate's, often one
    // without tests.
    println!(
        "\ntests: {} passed, {} failed, {} skipped",
        totals.passed, totals.failed, totals.ignored
    );
    if let Some(status) = host_status
        && !status.success()
    {
        bail!("cargo test failed: {status}");
    }
    let failed: Vec<&str> = matrix
        .iter()
        .filter(|kernel| kernel.totals.failed > 0 || kernel.totals.passed == 0)
        .map(|kernel| kernel.version.as_str())
        .collect();
    if !failed.is_empty() {
        bail!("the kernel matrix failed on {}", failed.join(", "));
    }
    if totals.passed == 0 {
        bail!("cargo test ran no test");
    }
    if args.kernels_only {
        return Ok(());
    }
    fuzz(&FuzzArgs {
        seconds: TEST_FUZZ_SECONDS,
        inputs: Vec::new(),
    })
}

/// Sums cargo test's `test result:` lines.
#[derive(Debug, Default, PartialEq, Eq)]
struct TestTotals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl TestTotals {
    const fn merge(&mut self, other: &Self) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.ignored += other.ignored;
    }

    fn add(&mut self, line: &str) {
        let Some(summary) = line.strip_prefix("test result: ") else {
            return;
        };
        for part in summary.split([';', '.']) {
            let mut words = part.split_whitespace();
            let (Some(count), Some(kind)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(count) = count.parse::<u64>() else {
                continue;
            };
            match kind {
                "passed" => self.passed += count,
                "failed" => self.failed += count,
                "ignored" => self.ignored += count,
                _ => {}
            }
        }
    }
}

/// How long `cargo xtask test`, and so CI, fuzzes: enough to replay the seeds and mutate them a
/// million times or so; longer runs are `cargo xtask fuzz --seconds …`.
const TEST_FUZZ_SECONDS: u64 = 30;
/// The fuzz target, `fuzz/fuzz_targets/classify.rs`.
const FUZZ_TARGET: &str = "classify";
/// The classifier reads no further than byte 82 (Ethernet, two VLAN tags, a 60-byte IPv4
/// header); the structure-aware inputs spend a few bytes on each choice. Longer inputs only slow
/// the search.
const FUZZ_MAX_LEN: u32 = 256;
/// The first byte of an input the fuzz target takes as a frame from its Ethernet header, and as a
/// packet from its IP header (see fuzz/fuzz_targets/classify.rs).
const FUZZ_TAG_ETHERNET: u8 = 0;
const FUZZ_TAG_IP: u8 = 1;

fn fuzz(args: &FuzzArgs) -> anyhow::Result<()> {
    let nightly = ebpf_build::nightly()?;
    ensure_cargo_fuzz()?;
    let fuzz_dir = workspace_root().join("fuzz");
    // cargo-fuzz has no --locked; fetching with it first refuses a lock file that would change.
    run(nightly_cargo(&nightly)
        .args(["fetch", "--locked", "--manifest-path"])
        .arg(fuzz_dir.join("Cargo.toml")))?;
    let mut command = nightly_cargo(&nightly);
    command
        .args(["fuzz", "run", "--fuzz-dir"])
        .arg(&fuzz_dir)
        .arg(FUZZ_TARGET);

    if !args.inputs.is_empty() {
        // libFuzzer runs the files it is given once each, without fuzzing.
        for input in &args.inputs {
            command.arg(
                fs::canonicalize(input)
                    .with_context(|| format!("cannot read {}", input.display()))?,
            );
        }
        return run(&mut command);
    }

    let corpus = fuzz_dir.join("corpus").join(FUZZ_TARGET);
    let seeds = write_seeds(&corpus)?;
    let artifacts = fuzz_dir.join("artifacts").join(FUZZ_TARGET);
    let before = files(&artifacts);
    eprintln!(
        "xtask: fuzzing {FUZZ_TARGET} for {} s, corpus {} ({seeds} seeds from test-frames)",
        args.seconds,
        relative(&corpus).display()
    );
    command.arg(&corpus).args([
        "--".to_owned(),
        format!("-max_total_time={}", args.seconds),
        format!("-max_len={FUZZ_MAX_LEN}"),
        "-print_final_stats=1".to_owned(),
    ]);
    let status = command
        .status()
        .with_context(|| format!("cannot start {command:?}"))?;
    if status.success() {
        return Ok(());
    }
    let failed: Vec<String> = files(&artifacts)
        .difference(&before)
        .map(|input| relative(input).display().to_string())
        .collect();
    if failed.is_empty() {
        bail!("{command:?} failed: {status}");
    }
    let failed = failed.join(" ");
    bail!(
        "fuzzing {FUZZ_TARGET} failed ({status}) on the input kept in {failed} (libFuzzer's report \
         is above); run it alone with `cargo xtask fuzz {failed}`"
    )
}

/// Installs cargo-fuzz unless this version is there, with the stable toolchain like bpf-linker:
/// only what it builds needs the nightly. A debug build: it only drives cargo and libFuzzer, and
/// builds in a quarter of the time of a release one (about 25 s against 90 on two cores).
fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    // `cargo fuzz --version` prints `cargo-fuzz 0.13.2`.
    if has_version(
        Command::new("cargo").args(["fuzz", "--version"]),
        CARGO_FUZZ_VERSION,
    ) {
        return Ok(());
    }
    run(Command::new("cargo").args([
        "install",
        "cargo-fuzz",
        "--locked",
        "--force",
        "--debug",
        "--version",
        &format!("~{CARGO_FUZZ_VERSION}"),
    ]))
}

/// Writes every test-frames case into `corpus` as the fuzz target's two raw framings: the whole
/// frame, and its IP packet where it has one. Returns how many files it wrote.
fn write_seeds(corpus: &Path) -> anyhow::Result<usize> {
    fs::create_dir_all(corpus).with_context(|| format!("cannot create {}", corpus.display()))?;
    let mut written = 0;
    for case in test_frames::cases() {
        let name: String = case
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        let mut seeds = vec![(
            format!("seed-ethernet-{name}"),
            [&[FUZZ_TAG_ETHERNET][..], &case.frame].concat(),
        )];
        if let Some(ip_offset) = test_frames::ip_offset(&case.frame) {
            seeds.push((
                format!("seed-ip-{name}"),
                [&[FUZZ_TAG_IP][..], &case.frame[ip_offset..]].concat(),
            ));
        }
        for (file, bytes) in seeds {
            let path = corpus.join(file);
            fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
            written += 1;
        }
    }
    Ok(written)
}

/// The files in `dir`; none if it does not exist yet.
fn files(dir: &Path) -> BTreeSet<PathBuf> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|entry| Some(entry.ok()?.path()))
                .collect()
        })
        .unwrap_or_default()
}

/// `path` from the workspace root, as messages name it.
fn relative(path: &Path) -> &Path {
    path.strip_prefix(workspace_root()).unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::{TestTotals, Xtask};

    fn kernels(args: &[&str]) -> Vec<String> {
        let Xtask::Test(test) =
            Xtask::try_parse_from(["cargo xtask", "test"].iter().chain(args)).expect("parses")
        else {
            panic!("not the test subcommand");
        };
        test.kernel_specs()
    }

    #[test]
    fn kernels_default_to_6_1_and_6_12_and_can_be_chosen_or_left_out() {
        assert_eq!(kernels(&[]), ["6.1", "6.12"]);
        assert_eq!(kernels(&["--kernel", "6.12"]), ["6.12"]);
        assert_eq!(
            kernels(&["--kernel", "6.1.0-57-cloud-amd64", "--kernels", "6.12"]),
            ["6.1.0-57-cloud-amd64", "6.12"]
        );
        assert!(kernels(&["--kernel", "none"]).is_empty());
        assert!(kernels(&["--no-kernels"]).is_empty());
        assert!(
            Xtask::try_parse_from(["cargo xtask", "test", "--no-kernels", "--kernels-only"])
                .is_err()
        );
    }

    #[test]
    fn sums_cargo_test_result_lines() {
        let mut totals = TestTotals::default();
        for line in [
            "test result: ok. 7 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.59s",
            "running 3 tests",
            "test result: FAILED. 2 passed; 3 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.83s",
        ] {
            totals.add(line);
        }
        assert_eq!(
            totals,
            TestTotals {
                passed: 9,
                failed: 3,
                ignored: 1
            }
        );
    }
}
