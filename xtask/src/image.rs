//! `cargo xtask image`: a static binary in a container image.

use super::*;

/// What `cargo xtask image` tags its image with, beside the version.
pub(crate) const IMAGE_NAME: &str = "localhost/localnet-probe";

/// The static target for this machine's architecture: aya is pure Rust, and the eBPF object is
/// built for the BPF target whatever the host's.
pub(crate) fn musl_target() -> String {
    format!("{}-unknown-linux-musl", env::consts::ARCH)
}

/// Builds the static binary and the image of deploy/container/Containerfile; returns its tag.
pub(crate) fn image() -> anyhow::Result<String> {
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
