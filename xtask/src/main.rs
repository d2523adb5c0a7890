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

mod bench;
mod doc_links;
mod fuzz;
mod image;
mod kernel_vm;
mod package;
mod prerequisites;
mod test_run;

use self::{
    bench::bench, fuzz::fuzz, image::image, package::package, prerequisites::*, test_run::test,
};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask")]
enum Xtask {
    /// Install what the build needs: rust-src for the nightly toolchain, bpf-linker, and clang
    /// for the benchmark's C reference programs.
    Setup,
    /// Set up, then build target/{debug,release}/localnet-probe with the XDP object embedded.
    Build(BuildArgs),
    /// Set up, build, and run localnet-probe with the arguments after `--`.
    Run(RunArgs),
    /// Set up, build a static (musl) release binary and the container image of
    /// deploy/container/Containerfile holding it, with podman (installed if missing): tagged
    /// localhost/localnet-probe:<version> and :<version>-<revision>.
    Image,
    /// Set up, build the static binary and the Debian package
    /// target/package/localnet-probe_<version>_<arch>.deb (binary, man pages, completions,
    /// systemd unit, docs) with dpkg-deb, and check it with lintian.
    Package,
    /// Set up, then check formatting and run clippy on the host crates and, for the BPF target,
    /// on the eBPF crates; every warning is an error.
    Lint,
    /// Set up, build the container image and the Debian package, then run every test: host,
    /// BPF_PROG_TEST_RUN, netns integration, the deployment files in deploy/ and the package
    /// checked by the tools that consume them and a
    /// short run of the benchmark harness (needs root); then the kernel-facing tests inside each
    /// kernel of the matrix, booted under qemu; then fuzz the classifier for 30 s.
    Test(TestArgs),
    /// Set up, then measure (needs root): in-kernel cost per frame, veth throughput and the CLI's
    /// footprint beside reference programs; writes target/bench/report.{md,json} and, with
    /// --update-docs, the tables in docs/benchmark.md.
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
    /// Replace the latest run's tables in docs/benchmark.md with this run's.
    #[arg(long)]
    update_docs: bool,
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
        Xtask::Setup => {
            setup()?;
            // A plain `cargo build` of the workspace builds the benchmark too.
            ensure_packages(&[C_COMPILER])
        }
        Xtask::Build(args) => build(&args).map(drop),
        Xtask::Run(args) => {
            let binary = build(&args.build)?;
            let error = Command::new(&binary).args(&args.args).exec();
            Err(error).with_context(|| format!("cannot run {}", binary.display()))
        }
        Xtask::Image => image().map(drop),
        Xtask::Package => package().map(drop),
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
    check_doc_links()?;
    ensure_packages(&[C_COMPILER])?;
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

/// Every relative link and anchor of README.md and docs/*.md resolves.
fn check_doc_links() -> anyhow::Result<()> {
    let root = workspace_root();
    let broken = doc_links::broken_links(&root, &doc_links::pages(&root)?)?;
    for link in &broken {
        eprintln!("{link}");
    }
    if !broken.is_empty() {
        bail!("{} broken link(s) in README.md and docs/", broken.len());
    }
    Ok(())
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

fn require_root(what: &str) -> anyhow::Result<()> {
    if !is_root()? {
        bail!("{what} need root: run `sudo -E cargo xtask …`");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::{Xtask, test_run::TestTotals};

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
        let log = std::env::temp_dir().join(format!("xtask-skipped-{}", std::process::id()));
        std::fs::write(&log, "veth_flood\tlive frames refused (EPERM)\n").unwrap();
        totals.count_skipped(&log).unwrap();
        std::fs::remove_file(&log).unwrap();
        assert_eq!((totals.passed, totals.ignored), (8, 2));
        totals.count_skipped(&log).expect("no log: nothing skipped");
        assert_eq!((totals.passed, totals.ignored), (8, 2));
    }
}
