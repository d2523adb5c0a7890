//! The guest's root: static busybox and an init script, the tools and test binaries with the
//! libraries they load, and the kernel's modules the tests need, packed as a cpio initramfs.

use super::*;

/// Tools the tests run, copied into the guest with the libraries they link.
const GUEST_TOOLS: [&str; 6] = ["bash", "ip", "tc", "bpftool", "setpriv", "nsenter"];

/// Modules the tests need that Debian's cloud kernels build as modules: veth pairs, and the
/// clsact qdisc with the cls_bpf/act_bpf filters that tc and bpftool use.
const GUEST_MODULES: [&str; 4] = ["veth", "sch_ingress", "cls_bpf", "act_bpf"];

/// Copies an ELF file to the same path under `root` without its debug information (which makes
/// up most of a test binary), and the libraries it links; returns the path.
pub(super) fn copy_stripped(root: &Path, file: &Path) -> anyhow::Result<String> {
    let path = fs::canonicalize(file).with_context(|| format!("cannot find {}", file.display()))?;
    let into = under(root, &path);
    fs::create_dir_all(into.parent().expect("an absolute path"))?;
    run(Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(&into)
        .arg(&path))?;
    copy_libraries(root, &path)?;
    Ok(file.display().to_string())
}

/// `path` under `root`.
fn under(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// Copies the shared libraries `ldd` lists for `file` to their paths under `root`.
fn copy_libraries(root: &Path, file: &Path) -> anyhow::Result<()> {
    let Ok(libraries) = output(Command::new("ldd").arg(file)) else {
        // A static binary.
        return Ok(());
    };
    let paths: BTreeSet<&str> = libraries
        .split_whitespace()
        .filter(|word| word.starts_with('/'))
        .collect();
    for library in paths {
        copy_file(root, Path::new(library))?;
    }
    Ok(())
}

/// Copies `path`, following links, to the same path under `root`.
fn copy_file(root: &Path, path: &Path) -> anyhow::Result<()> {
    let into = under(root, path);
    if into.exists() {
        return Ok(());
    }
    fs::create_dir_all(into.parent().expect("an absolute path"))?;
    fs::copy(path, &into)
        .with_context(|| format!("cannot copy {} to {}", path.display(), into.display()))?;
    Ok(())
}

/// The guest's init: mounts, modules, then the tests on the results port, then power-off.
/// iproute2 comes before busybox on PATH (busybox's `ip` has no `netns`), and the tests run
/// under bash: busybox's shell prefers its own applets over PATH. /tmp stays the initramfs's
/// own (already in memory): a tmpfs mounted over it would hide test binaries copied there from a
/// checkout under /tmp.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs run /run
mkdir -p /run/netns
mount -t bpf bpf /sys/fs/bpf
for module in $(cat /modules/order); do insmod /modules/$module || echo "insmod $module failed"; done
ip link set lo up
stty -F /dev/ttyS1 raw -echo
bash /tests.sh > /dev/ttyS1 2>&1
echo "xtask-vm-exit=$?"
poweroff -f
"#;

/// Writes the guest's userland, modules, init and test script into `root`.
pub(super) fn build_root(
    root: &Path,
    kernel: &Path,
    version: &str,
    script: &str,
) -> anyhow::Result<()> {
    for dir in [
        "bin", "sbin", "proc", "sys", "dev", "tmp", "run", "etc", "modules", "boot",
    ] {
        fs::create_dir_all(root.join(dir))?;
    }
    // Writable by the unprivileged users the least-privilege tests run as, like any /tmp.
    fs::set_permissions(
        root.join("tmp"),
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )?;
    let config = format!("boot/config-{version}");
    fs::copy(kernel.join(&config), root.join(&config))
        .with_context(|| format!("cannot copy the kernel's {config}"))?;
    fs::copy("/bin/busybox", root.join("bin/busybox")).context("cannot copy /bin/busybox")?;
    for tool in GUEST_TOOLS {
        let path = which(tool)?;
        copy_file(root, &path)?;
        copy_libraries(root, &path)?;
    }
    // The tests run the CLI as nobody, as a least-privileged operator would.
    fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/tmp:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )?;
    fs::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")?;
    let mut order = String::new();
    let mut copied = BTreeSet::new();
    for module in GUEST_MODULES {
        let depends = output(Command::new("modprobe").arg("-d").arg(kernel).args([
            "-S",
            version,
            "--show-depends",
            module,
        ]))?;
        for path in depends
            .lines()
            .filter_map(|line| line.strip_prefix("insmod "))
        {
            let path = Path::new(path.trim());
            let file = path
                .file_name()
                .and_then(|name| name.to_str())
                .context("a module path without a name")?;
            // Busybox's insmod takes uncompressed modules only; 6.12 ships them xz-compressed.
            let name = file
                .strip_suffix(".xz")
                .or_else(|| file.strip_suffix(".zst"))
                .unwrap_or(file);
            if !copied.insert(name.to_owned()) {
                continue;
            }
            let plain = match path.extension().and_then(|ext| ext.to_str()) {
                Some("xz") => decompress("xz", path)?,
                Some("zst") => decompress("zstd", path)?,
                _ => fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
            };
            fs::write(root.join("modules").join(name), plain)?;
            order.push_str(name);
            order.push('\n');
        }
    }
    fs::write(root.join("modules/order"), order)?;
    fs::write(root.join("tests.sh"), script)?;
    let init = root.join("init");
    fs::write(&init, INIT)?;
    fs::set_permissions(&init, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

fn decompress(tool: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    let output = Command::new(tool)
        .arg("-dc")
        .arg(path)
        .output()
        .with_context(|| format!("cannot start {tool}"))?;
    if !output.status.success() {
        bail!("{tool} -dc {} failed: {}", path.display(), output.status);
    }
    Ok(output.stdout)
}

fn which(tool: &str) -> anyhow::Result<PathBuf> {
    [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ]
    .iter()
    .map(|dir| Path::new(dir).join(tool))
    .find(|path| path.is_file())
    .with_context(|| format!("{tool} is not installed"))
}

/// Packs `root` as an uncompressed newc cpio archive: the fastest to unpack under TCG.
pub(super) fn archive(root: &Path, initrd: &Path) -> anyhow::Result<()> {
    let archive =
        fs::File::create(initrd).with_context(|| format!("cannot create {}", initrd.display()))?;
    run(Command::new("bash")
        .args(["-c", "find . | cpio -o -H newc --quiet"])
        .current_dir(root)
        .stdout(archive))
}
