//! `cargo xtask`: everything localnet-probe needs beyond `cargo build`, from a fresh machine.

use std::{
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

/// bpf-linker's LLVM, which must be the pinned nightly's (`ebpf_build::NIGHTLY_DATE`).
const LLVM_MAJOR: &str = "22";
const BPF_LINKER_VERSION: &str = "0.13";

#[derive(Debug, Parser)]
#[command(name = "cargo xtask")]
enum Xtask {
    /// Install what the build needs: rust-src for the nightly toolchain and bpf-linker.
    Setup,
    /// Set up, then build target/{debug,release}/localnet-probe with the XDP object embedded.
    Build(BuildArgs),
    /// Set up, build, and run localnet-probe with the arguments after `--`.
    Run(RunArgs),
    /// Set up, then check formatting and run clippy on the host crates and, for the BPF target,
    /// on the eBPF crates; every warning is an error.
    Lint,
    /// Set up, then run every test: host, BPF_PROG_TEST_RUN, netns integration and a short run of
    /// the benchmark harness (needs root).
    Test,
    /// Set up, then measure (needs root): in-kernel cost per frame, veth throughput and the CLI's
    /// footprint beside reference programs; writes target/bench/report.{md,json}.
    Bench(BenchArgs),
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
        Xtask::Lint => lint(),
        Xtask::Test => test(),
        Xtask::Bench(args) => bench(&args),
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

fn ensure_bpf_linker() -> anyhow::Result<()> {
    if let Ok(version) = output(Command::new("bpf-linker").arg("--version")) {
        if version
            .split_whitespace()
            .nth(1)
            .is_some_and(|v| v.starts_with(&format!("{BPF_LINKER_VERSION}.")))
        {
            return Ok(());
        }
        eprintln!("xtask: replacing {}", version.trim());
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
    let nightly = ebpf_build::nightly()?;
    let mut ebpf = Command::new("rustup");
    ebpf.current_dir(workspace_root()).args([
        "run",
        &nightly,
        "cargo",
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
        .env("CARGO_TARGET_DIR", target_dir().join("lint-ebpf"))
        .env_remove("CARGO")
        .env_remove("RUSTC"))
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
const TOOLS: [(&str, &str); 8] = [
    ("ip", "iproute2"),
    ("nsenter", "util-linux"),
    ("xdp-filter", "xdp-tools"),
    ("bpftool", "bpftool"),
    ("nft", "nftables"),
    ("ethtool", "ethtool"),
    ("tcpdump", "tcpdump"),
    ("prometheus", "prometheus"),
];

fn ensure_tools() -> anyhow::Result<()> {
    let missing: Vec<&str> = TOOLS
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
    eprintln!("xtask: installing {}", missing.join(" "));
    run(Command::new("apt-get").args(["update", "-q"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
    .context("installing the tools the tests and the benchmark use")
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

fn test() -> anyhow::Result<()> {
    require_root("the BPF_PROG_TEST_RUN and network-namespace tests")?;
    ensure_tools()?;
    setup()?;
    let mut command = cargo();
    command
        .args(["test", "--locked"])
        .env("RUST_BACKTRACE", "1")
        .stdout(Stdio::piped());
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {command:?}"))?;
    let stdout = child.stdout.take().expect("piped");
    let mut totals = TestTotals::default();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo test's output")?;
        println!("{line}");
        totals.add(&line);
    }
    let status = child.wait().context("waiting for cargo test")?;
    // One closing line for the whole run: cargo's own last line is some crate's, often one
    // without tests.
    println!(
        "\ntests: {} passed, {} failed, {} skipped",
        totals.passed, totals.failed, totals.ignored
    );
    if !status.success() {
        bail!("cargo test failed: {status}");
    }
    if totals.passed == 0 {
        bail!("cargo test ran no test");
    }
    Ok(())
}

/// Sums cargo test's `test result:` lines.
#[derive(Debug, Default, PartialEq, Eq)]
struct TestTotals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl TestTotals {
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

#[cfg(test)]
mod tests {
    use super::TestTotals;

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
