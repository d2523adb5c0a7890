//! The Debian package `cargo xtask package` built: lintian finds no error, and unpacked into a
//! throwaway root it holds the static binary (which runs: `--version`, the completions), every
//! man page (rendered with no warning), the completions, the systemd unit (not enabled, running
//! the packaged binary) and the docs.

use std::{fs, os::unix::fs::PermissionsExt as _, path::PathBuf, process::Command};

use testbed::TempDir;

use crate::{VERSION, checked};

/// target/package/localnet-probe_<version>_<arch>.deb, where `cargo xtask package` leaves it.
fn package() -> PathBuf {
    let architecture = checked(Command::new("dpkg").arg("--print-architecture"));
    let deb = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("package")
        .join(format!(
            "localnet-probe_{VERSION}_{}.deb",
            architecture.trim()
        ));
    assert!(
        deb.is_file(),
        "no {}: build it with `cargo xtask package`",
        deb.display()
    );
    deb
}

#[test]
#[ignore = "needs the package: cargo xtask package (cargo xtask test builds it)"]
fn the_package_passes_lintian_and_installs_a_binary_that_runs() {
    let deb = package();
    let lintian = Command::new("lintian")
        .args(["--fail-on", "error", "--display-info"])
        .arg(&deb)
        .output()
        .expect("run lintian (cargo xtask test installs it)");
    let said = String::from_utf8_lossy(&lintian.stdout);
    eprintln!("lintian:\n{said}");
    assert!(
        lintian.status.success(),
        "lintian: {}\n{said}",
        lintian.status
    );
    assert!(!said.lines().any(|line| line.starts_with("E: ")), "{said}");

    let fields = checked(Command::new("dpkg-deb").arg("--info").arg(&deb));
    assert!(
        fields.contains(&format!(" Version: {VERSION}\n")),
        "{fields}"
    );
    // Static: nothing to depend on; no maintainer script, so nothing enables the unit.
    assert!(!fields.contains("Depends:"), "{fields}");
    for script in ["preinst", "postinst", "prerm", "postrm"] {
        assert!(!fields.contains(script), "{fields}");
    }

    let root = TempDir::new("deb-root");
    checked(
        Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(root.path()),
    );
    let binary = root.path().join("usr/sbin/localnet-probe");
    let mode = fs::metadata(&binary)
        .expect("usr/sbin/localnet-probe")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    let headers = checked(
        Command::new("readelf")
            .args(["--program-headers", "--wide"])
            .arg(&binary),
    );
    assert!(!headers.contains("INTERP"), "not static:\n{headers}");

    let version = checked(Command::new(&binary).arg("--version"));
    let mut lines = version.lines();
    assert_eq!(
        lines.next(),
        Some(format!("localnet-probe {VERSION}").as_str())
    );
    assert!(
        lines.next().is_some_and(
            |line| line.starts_with("revision ") && line.contains(", eBPF object sha256 ")
        ),
        "{version}"
    );
    let bash = checked(Command::new(&binary).args(["generate", "completions", "bash"]));
    assert!(bash.contains("complete "), "{bash}");
    assert_eq!(
        fs::read_to_string(
            root.path()
                .join("usr/share/bash-completion/completions/localnet-probe")
        )
        .expect("the bash completion"),
        bash,
        "the packaged completion is the binary's"
    );
    for path in [
        "usr/share/zsh/vendor-completions/_localnet-probe",
        "usr/share/fish/vendor_completions.d/localnet-probe.fish",
        "usr/share/doc/localnet-probe/copyright",
        "usr/share/doc/localnet-probe/changelog.gz",
        "usr/share/doc/localnet-probe/README.md",
    ] {
        assert!(root.path().join(path).is_file(), "no {path}");
    }

    let man8 = root.path().join("usr/share/man/man8");
    let mut pages: Vec<String> = fs::read_dir(&man8)
        .expect("usr/share/man/man8")
        .map(|entry| entry.expect("an entry").file_name().into_string().unwrap())
        .collect();
    pages.sort();
    assert_eq!(
        pages,
        [
            "localnet-probe-audit.8.gz",
            "localnet-probe-detach.8.gz",
            "localnet-probe-generate.8.gz",
            "localnet-probe-run.8.gz",
            "localnet-probe-scan.8.gz",
            "localnet-probe-status.8.gz",
            "localnet-probe.8.gz",
        ]
    );
    for page in &pages {
        let shown = Command::new("man")
            .args(["--warnings", "-l"])
            .arg(man8.join(page))
            .env("MANWIDTH", "80")
            .output()
            .expect("run man");
        assert!(
            shown.status.success() && shown.stderr.is_empty(),
            "{page}: {shown:?}"
        );
        assert!(String::from_utf8_lossy(&shown.stdout).contains("EXIT STATUS"));
    }

    let unit = fs::read_to_string(
        root.path()
            .join("usr/lib/systemd/system/localnet-probe.service"),
    )
    .expect("the unit");
    assert!(
        unit.lines()
            .any(|line| line.starts_with("ExecStart=/usr/sbin/localnet-probe run ")),
        "{unit}"
    );
    assert!(!unit.contains("/usr/local/bin"), "{unit}");
    assert!(
        !root.path().join("etc").exists(),
        "nothing under /etc: not enabled"
    );
}
