//! `cargo xtask package`: a Debian package of the static binary (the image's), with its manual
//! pages, shell completions, the systemd unit of deploy/systemd (installed, not enabled) and the
//! guides, put together by hand and built by dpkg-deb, then checked by lintian.

use std::{collections::BTreeMap, fmt::Write as _, os::unix::fs::PermissionsExt as _};

use super::{image::static_binary, *};

const PACKAGE: &str = "localnet-probe";

/// Where the package installs the binary; the unit's ExecStart is changed to it.
const INSTALLED_BINARY: &str = "/usr/sbin/localnet-probe";

/// The unit's ExecStart as deploy/systemd has it, for an installation by hand.
const HAND_INSTALLED_BINARY: &str = "/usr/local/bin/localnet-probe";

/// The unit's opening words for an installation by hand, and the package's instead.
const UNIT_HAND_INSTALL: &str = "install the binary as\n# /usr/local/bin/localnet-probe and this \
                                 file as /etc/systemd/system/localnet-probe.service, then\n# \
                                 `systemctl enable --now localnet-probe`.";
const UNIT_PACKAGED: &str = "installed by the localnet-probe package and not\n# enabled: \
                             `systemctl enable --now localnet-probe` starts it now and at boot.\n#";

/// The unit's description, after which the package names its man pages (`systemctl help`); not
/// in deploy/systemd's, since a binary installed by hand may come without them.
const UNIT_DESCRIPTION: &str = "\nDescription=";
const UNIT_DOCUMENTATION: &str = "Documentation=man:localnet-probe-run(8) man:localnet-probe(8)\n";

/// The shells whose completions the package installs, where each looks for them.
const COMPLETIONS: [(&str, &str); 3] = [
    (
        "bash",
        "usr/share/bash-completion/completions/localnet-probe",
    ),
    ("zsh", "usr/share/zsh/vendor-completions/_localnet-probe"),
    (
        "fish",
        "usr/share/fish/vendor_completions.d/localnet-probe.fish",
    ),
];

/// The package's file name in target/package for this version and `architecture`.
pub(crate) fn package_path(architecture: &str) -> PathBuf {
    target_dir().join("package").join(format!(
        "{PACKAGE}_{}_{architecture}.deb",
        env!("CARGO_PKG_VERSION")
    ))
}

/// Builds target/package/localnet-probe_<version>_<arch>.deb and runs lintian on it, which must
/// find no error; its path.
pub(crate) fn package() -> anyhow::Result<PathBuf> {
    ensure_packages(&[("dpkg-deb", "dpkg"), ("lintian", "lintian")])?;
    let binary = static_binary()?;
    let architecture = output(Command::new("dpkg").arg("--print-architecture"))?
        .trim()
        .to_owned();
    let root = target_dir().join("package").join("root");
    let _ = fs::remove_dir_all(&root);

    install(&root, "usr/sbin/localnet-probe", &fs::read(&binary)?, 0o755)?;
    let pages = target_dir().join("package").join("man");
    let _ = fs::remove_dir_all(&pages);
    run(Command::new(&binary).arg("generate").arg("man").arg(&pages))?;
    for page in fs::read_dir(&pages)? {
        let page = page?.path();
        let name = page.file_name().expect("a page's name").to_string_lossy();
        install(
            &root,
            &format!("usr/share/man/man8/{name}.gz"),
            &gzip(&fs::read(&page)?)?,
            0o644,
        )?;
    }
    for (shell, path) in COMPLETIONS {
        let script = output(Command::new(&binary).args(["generate", "completions", shell]))?;
        install(&root, path, script.as_bytes(), 0o644)?;
    }
    install(
        &root,
        "usr/lib/systemd/system/localnet-probe.service",
        packaged_unit()?.as_bytes(),
        0o644,
    )?;
    install_docs(&root)?;
    install(
        &root,
        &format!("usr/share/lintian/overrides/{PACKAGE}"),
        LINTIAN_OVERRIDES.as_bytes(),
        0o644,
    )?;

    let control = control(&root, &architecture)?;
    install(&root, "DEBIAN/control", control.as_bytes(), 0o644)?;
    install(&root, "DEBIAN/md5sums", md5sums(&root)?.as_bytes(), 0o644)?;

    let deb = package_path(&architecture);
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zxz", "--build"])
        .arg(&root)
        .arg(&deb))?;
    eprintln!("xtask: built {}", deb.display());
    run(Command::new("lintian")
        .args(["--fail-on", "error", "--display-info"])
        .arg(&deb))
    .context("lintian found errors in the package")?;
    Ok(deb)
}

/// What lintian mistakes: a static PIE (musl's default: position-independent, so the kernel
/// randomises where it loads) is a shared object without an interpreter, which lintian takes
/// for a library that does not say what it needs; and the web configuration's YAML parser
/// (unsafe-libyaml, libyaml translated to Rust) keeps libyaml's messages, which lintian takes
/// for a copy of the C library.
const LINTIAN_OVERRIDES: &str = "# A static PIE (musl), not a library: it needs no other.\n\
                                 localnet-probe: shared-library-lacks-prerequisites \
                                 [usr/sbin/localnet-probe]\n\
                                 # unsafe-libyaml: libyaml translated to Rust, no C copy.\n\
                                 localnet-probe: embedded-library libyaml \
                                 [usr/sbin/localnet-probe]\n";

/// Writes `contents` to `root`/`path` with `mode`, creating its directories (mode 755).
fn install(root: &Path, path: &str, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    let file = root.join(path);
    let mut dir = file.parent().expect("under the root").to_path_buf();
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    while dir.starts_with(root) {
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
        if !dir.pop() {
            break;
        }
    }
    fs::write(&file, contents).with_context(|| format!("cannot write {}", file.display()))?;
    fs::set_permissions(&file, fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// `bytes` compressed as Debian wants them: `gzip -9n`, no name or time stored, so two builds
/// of the same page are the same bytes.
fn gzip(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    use std::io::Write as _;
    let mut child = Command::new("gzip")
        .arg("-9n")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start gzip")?;
    let mut stdin = child.stdin.take().expect("piped");
    let bytes = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&bytes));
    let compressed = child.wait_with_output().context("waiting for gzip")?;
    writer.join().expect("the writer")?;
    if !compressed.status.success() {
        bail!("gzip failed: {}", compressed.status);
    }
    Ok(compressed.stdout)
}

/// deploy/systemd's unit with the package's binary path and opening words; fails if the unit
/// no longer has the words replaced, rather than ship a unit that runs another binary.
fn packaged_unit() -> anyhow::Result<String> {
    let path = workspace_root().join("deploy/systemd/localnet-probe.service");
    let unit =
        fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let exec_start = format!("ExecStart={HAND_INSTALLED_BINARY} ");
    let description_line_end = unit
        .find(UNIT_DESCRIPTION)
        .and_then(|start| unit[start + 1..].find('\n').map(|end| start + 1 + end + 1));
    let (Some(documentation_at), true, 1) = (
        description_line_end,
        unit.contains(UNIT_HAND_INSTALL),
        unit.matches(&exec_start).count(),
    ) else {
        bail!(
            "{} no longer says {UNIT_HAND_INSTALL:?}, has a Description= line and starts \
             {HAND_INSTALLED_BINARY}: change xtask/src/package.rs with it",
            path.display()
        );
    };
    let mut unit = unit;
    unit.insert_str(documentation_at, UNIT_DOCUMENTATION);
    Ok(unit
        .replace(UNIT_HAND_INSTALL, UNIT_PACKAGED)
        .replace(&exec_start, &format!("ExecStart={INSTALLED_BINARY} ")))
}

/// The README and docs/ as they are (their links between each other keep working), the
/// copyright file and the changelog.
fn install_docs(root: &Path) -> anyhow::Result<()> {
    let doc = format!("usr/share/doc/{PACKAGE}");
    install(
        root,
        &format!("{doc}/README.md"),
        &fs::read(workspace_root().join("README.md"))?,
        0o644,
    )?;
    let docs = workspace_root().join("docs");
    for file in files_under(&docs)? {
        let relative = file.strip_prefix(&docs)?.display().to_string();
        install(
            root,
            &format!("{doc}/docs/{relative}"),
            &fs::read(&file)?,
            0o644,
        )?;
    }
    install(
        root,
        &format!("{doc}/copyright"),
        copyright()?.as_bytes(),
        0o644,
    )?;
    // A native package (no Debian revision): lintian wants its changelog as changelog.gz.
    install(
        root,
        &format!("{doc}/changelog.gz"),
        &gzip(changelog()?.as_bytes())?,
        0o644,
    )
}

/// The files under `dir`, at any depth, sorted.
fn files_under(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            files.extend(files_under(&path)?);
        } else {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The git author of the checked-out commit, `Name <address>`: the package's maintainer.
fn maintainer() -> anyhow::Result<String> {
    Ok(git(&["log", "-1", "--format=%an <%ae>"])?.trim().to_owned())
}

fn git(args: &[&str]) -> anyhow::Result<String> {
    output(Command::new("git").args(args).current_dir(workspace_root()))
        .context("the package is built from a git checkout")
}

/// One entry for this version, dated with the commit's date (so rebuilds are the same bytes).
fn changelog() -> anyhow::Result<String> {
    let date = git(&["log", "-1", "--format=%aD"])?;
    let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
    Ok(format!(
        "{PACKAGE} ({version}) unstable; urgency=medium\n\n  * Built from revision {commit}.\n\n \
         -- {maintainer}  {date}\n",
        version = env!("CARGO_PKG_VERSION"),
        commit = commit.trim(),
        maintainer = maintainer()?,
        date = date.trim(),
    ))
}

/// The copyright file in Debian's machine-readable format: localnet-probe's licence, and the
/// crates linked into the static binary with theirs (from `cargo tree`).
fn copyright() -> anyhow::Result<String> {
    let crates = output(cargo().args([
        "tree",
        "--locked",
        "--package",
        "probe-user",
        "--edges",
        "normal",
        "--target",
        &image::musl_target(),
        "--prefix",
        "none",
        "--format",
        "{p}: {l}",
    ]))?;
    let mut linked = BTreeMap::new();
    for line in crates.lines() {
        // `name v1.2.3 (/path)` for workspace crates, `name v1.2.3` for the others.
        let Some((package, licence)) = line.split_once(": ") else {
            continue;
        };
        let package = package.split(" (").next().unwrap_or(package);
        // `(*)`: a crate already listed, whose dependencies are not repeated.
        let licence = licence.trim_end_matches(" (*)");
        if !package.starts_with("probe-") {
            linked.insert(package.to_owned(), licence.to_owned());
        }
    }
    let years = git(&["log", "--format=%ad", "--date=format:%Y"])?;
    let first = years.lines().last().context("a commit")?;
    let last = years.lines().next().context("a commit")?;
    let years = if first == last {
        last.to_owned()
    } else {
        format!("{first}-{last}")
    };
    let mut text = format!(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
         Upstream-Name: {PACKAGE}\n\n\
         Files: *\n\
         Copyright: {years} The localnet-probe developers\n\
         License: Expat or Apache-2.0\n\
         Comment: The binary is statically linked with these Rust crates, under their licences:\n"
    );
    for (package, licence) in &linked {
        let _ = writeln!(text, " {package}: {licence}");
    }
    text.push_str(EXPAT);
    text.push_str(APACHE);
    Ok(text)
}

const EXPAT: &str = "
License: Expat
 Permission is hereby granted, free of charge, to any person obtaining a copy
 of this software and associated documentation files (the \"Software\"), to deal
 in the Software without restriction, including without limitation the rights
 to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
 copies of the Software, and to permit persons to whom the Software is
 furnished to do so, subject to the following conditions:
 .
 The above copyright notice and this permission notice shall be included in all
 copies or substantial portions of the Software.
 .
 THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
 IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
 FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
 AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
 LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
 OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
 SOFTWARE.
";

const APACHE: &str = "
License: Apache-2.0
 Licensed under the Apache License, Version 2.0 (the \"License\"); you may not
 use this file except in compliance with the License.
 .
 On Debian systems, the full text of the Apache License, Version 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
";

/// DEBIAN/control. No Depends: the binary is static, and needs nothing of the system but the
/// kernel.
fn control(root: &Path, architecture: &str) -> anyhow::Result<String> {
    let installed_kib = files_under(root)?
        .iter()
        .map(|file| Ok(fs::metadata(file)?.len().div_ceil(1024)))
        .sum::<anyhow::Result<u64>>()?;
    Ok(format!(
        "Package: {PACKAGE}\n\
         Version: {version}\n\
         Architecture: {architecture}\n\
         Maintainer: {maintainer}\n\
         Installed-Size: {installed_kib}\n\
         Section: net\n\
         Priority: optional\n\
         Description: count or drop frames with loopback addresses on real interfaces\n \
         localnet-probe counts, and on request drops, frames with a loopback source or\n \
         destination (127.0.0.0/8, ::1, ::ffff:127.0.0.0/104) arriving on real network\n \
         interfaces, with an XDP program: frames that reach services bound to loopback\n \
         where route_localnet is set, as kube-proxy and Docker set it. Its audit says\n \
         which links can reach such services.\n \
         .\n \
         The systemd unit localnet-probe.service is installed but not enabled.\n",
        version = env!("CARGO_PKG_VERSION"),
        maintainer = maintainer()?,
    ))
}

/// DEBIAN/md5sums: every file but DEBIAN's, by its path in the package.
fn md5sums(root: &Path) -> anyhow::Result<String> {
    let mut sums = String::new();
    for file in files_under(root)? {
        let relative = file.strip_prefix(root)?;
        if relative.starts_with("DEBIAN") {
            continue;
        }
        let sum = output(Command::new("md5sum").arg(&file))?;
        let hash = sum.split_whitespace().next().context("md5sum's output")?;
        let _ = writeln!(sums, "{hash}  {}", relative.display());
    }
    Ok(sums)
}
