//! `cargo xtask image`: the static binary in a container image.

use super::*;

/// What `cargo xtask image` tags its image with, beside the version.
pub(crate) const IMAGE_NAME: &str = "localhost/localnet-probe";

/// The static target for this machine's architecture: aya is pure Rust, and the eBPF object is
/// built for the BPF target whatever the host's.
pub(crate) fn musl_target() -> String {
    format!("{}-unknown-linux-musl", env::consts::ARCH)
}

/// Builds the static (musl) release binary and strips it of its symbols: the one binary the
/// image and the Debian package ship. Its path.
pub(crate) fn static_binary() -> anyhow::Result<PathBuf> {
    setup()?;
    // musl-gcc: the TLS crypto (ring) compiles C and assembly for the target.
    ensure_packages(&[("strip", "binutils"), ("musl-gcc", "musl-tools")])?;
    let target = musl_target();
    ensure_rust_target(&target)?;
    run(cargo()
        .args([
            "build",
            "--locked",
            "--release",
            "--package",
            "probe-user",
            "--target",
            &target,
        ])
        .env(format!("CC_{}", target.replace('-', "_")), "musl-gcc"))?;
    let built = target_dir()
        .join(&target)
        .join("release")
        .join("localnet-probe");
    // A copy, so cargo's own binary stays as it built it (and is not rebuilt).
    let stripped = target_dir().join("static").join("localnet-probe");
    fs::create_dir_all(stripped.parent().expect("a parent"))?;
    fs::copy(&built, &stripped).with_context(|| format!("cannot copy {}", built.display()))?;
    // The compilers' version strings (.comment) too: nothing reads them.
    run(Command::new("strip")
        .args(["--strip-all", "--remove-section=.comment"])
        .arg(&stripped))?;
    Ok(stripped)
}

/// The build's revision as the binary says it on the second line of `--version`
/// (`revision 0123456789ab[-dirty], …`): the tags say what the binary does.
pub(crate) fn binary_revision(binary: &Path) -> anyhow::Result<String> {
    let version = output(Command::new(binary).arg("--version"))?;
    version
        .lines()
        .nth(1)
        .and_then(|line| line.strip_prefix("revision "))
        .and_then(|rest| rest.split(',').next())
        .map(str::to_owned)
        .with_context(|| {
            format!(
                "no revision in {}'s --version:\n{version}",
                binary.display()
            )
        })
}

/// Builds the static binary and the image of deploy/container/Containerfile, tagged
/// `<version>` and `<version>-<revision>`, so that a rebuild at the same version is a new tag
/// that a node pulls; returns the second tag.
pub(crate) fn image() -> anyhow::Result<String> {
    ensure_packages(&[("podman", "podman")])?;
    let binary = static_binary()?;
    // The binary alone is the build context: podman would otherwise send the whole target dir.
    let context = target_dir().join("image-context");
    let _ = fs::remove_dir_all(&context);
    fs::create_dir_all(&context).with_context(|| format!("cannot create {}", context.display()))?;
    fs::copy(&binary, context.join("localnet-probe"))
        .with_context(|| format!("cannot copy {}", binary.display()))?;
    let commit = output(
        Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(workspace_root()),
    )
    .context("the image is labelled with the git revision: build it from a git checkout")?;
    let version = env!("CARGO_PKG_VERSION");
    let tag = format!("{IMAGE_NAME}:{version}");
    let revision_tag = format!("{tag}-{}", binary_revision(&binary)?);
    run(Command::new("podman")
        .arg("build")
        .arg("--file")
        .arg(workspace_root().join("deploy/container/Containerfile"))
        .args(["--tag", &tag, "--tag", &revision_tag])
        .args(["--build-arg", &format!("VERSION={version}")])
        .args(["--build-arg", &format!("REVISION={}", commit.trim())])
        .arg(&context))
    .context("building the image (podman needs root here, or subuids for rootless builds)")?;
    eprintln!("xtask: built {tag} and {revision_tag}");
    Ok(revision_tag)
}
