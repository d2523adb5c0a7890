//! What the tasks need on a fresh machine, installed on first use: rust-src, bpf-linker, apt packages, Python tools, Rust targets.

use super::*;

/// bpf-linker's LLVM, which must be the pinned nightly's (`ebpf_build::NIGHTLY_DATE`).
pub(crate) const LLVM_MAJOR: &str = "22";

pub(crate) const BPF_LINKER_VERSION: &str = "0.13";

/// The Kubernetes manifests' validator, from PyPI, with the API schemas of Kubernetes 1.25 to 1.37.
pub(crate) const KUBERNETES_VALIDATE_VERSION: &str = "1.37.0";

pub(crate) fn setup() -> anyhow::Result<()> {
    ensure_rust_src()?;
    ensure_bpf_linker()
}

pub(crate) fn ensure_rust_src() -> anyhow::Result<()> {
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
pub(crate) fn has_version(version_command: &mut Command, major_minor: &str) -> bool {
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

pub(crate) fn ensure_bpf_linker() -> anyhow::Result<()> {
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

/// The compiler of the benchmark's C reference programs (`bench/c-reference`), which the
/// benchmark's build runs: clippy and the tests build it too.
pub(crate) const C_COMPILER: (&str, &str) = ("clang", "clang");

/// Commands the root tests and the benchmark run, and the Debian packages that have them.
pub(crate) const TOOLS: [(&str, &str); 24] = [
    C_COMPILER,
    ("ip", "iproute2"),
    ("nsenter", "util-linux"),
    ("xdp-filter", "xdp-tools"),
    ("bpftool", "bpftool"),
    ("nft", "nftables"),
    // kubelet's and Docker's rules as they install them (iptables-nft), and iptables-legacy-save.
    ("iptables", "iptables"),
    ("ethtool", "ethtool"),
    ("tcpdump", "tcpdump"),
    // Captures written by tools that are not ours, for the scan tests: pcapng from Wireshark's
    // editcap and mergecap, pcap from scapy, zstd-compressed.
    ("editcap", "wireshark-common"),
    ("scapy", "python3-scapy"),
    ("zstd", "zstd"),
    ("prometheus", "prometheus"),
    ("tmux", "tmux"),
    // The deployment tests: the unit checked by systemd's own parser, the syscalls the probe
    // makes held against the unit's filter, the image.
    ("systemd-analyze", "systemd"),
    ("strace", "strace"),
    ("podman", "podman"),
    // The man pages rendered with groff's warnings on, the package checked by Debian's lint.
    ("man", "man-db"),
    ("groff", "groff-base"),
    ("lintian", "lintian"),
    // The pod names test: containerd runs a pod whose image is a static busybox, on the
    // bridge CNI plugin.
    ("containerd", "containerd"),
    ("runc", "runc"),
    ("/usr/lib/cni/bridge", "containernetworking-plugins"),
    ("/bin/busybox", "busybox-static"),
];

pub(crate) fn ensure_tools() -> anyhow::Result<()> {
    ensure_packages(&TOOLS)
}

/// Installs from Debian the packages of the `commands` that are not found.
pub(crate) fn ensure_packages(commands: &[(&str, &str)]) -> anyhow::Result<()> {
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

pub(crate) fn apt_install(packages: &[&str]) -> anyhow::Result<()> {
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
pub(crate) fn deploy_venv() -> PathBuf {
    target_dir().join("deploy-tools").join("venv")
}

/// Installs kubernetes-validate into [`deploy_venv`] unless this version is there. Debian's
/// python3 makes a venv only with python3-venv, installed if that is what is missing.
pub(crate) fn ensure_kubernetes_validate() -> anyhow::Result<()> {
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

pub(crate) fn ensure_rust_target(target: &str) -> anyhow::Result<()> {
    let installed = output(Command::new("rustup").args(["target", "list", "--installed"]))?;
    if installed.lines().any(|line| line.trim() == target) {
        return Ok(());
    }
    run(Command::new("rustup").args(["target", "add", target]))
}
