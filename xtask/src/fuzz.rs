//! `cargo xtask fuzz`: the classifier under cargo-fuzz, seeded with the shared test frames.

use super::*;

pub(crate) const CARGO_FUZZ_VERSION: &str = "0.13";

/// How long `cargo xtask test`, and so CI, fuzzes: enough to replay the seeds and mutate them a
/// million times or so; longer runs are `cargo xtask fuzz --seconds …`.
pub(crate) const TEST_FUZZ_SECONDS: u64 = 30;

/// The fuzz target, `fuzz/fuzz_targets/classify.rs`.
pub(crate) const FUZZ_TARGET: &str = "classify";

/// The classifier reads no further than byte 82 (Ethernet, two VLAN tags, a 60-byte IPv4
/// header); the structure-aware inputs spend a few bytes on each choice. Longer inputs only slow
/// the search.
pub(crate) const FUZZ_MAX_LEN: u32 = 256;

/// The first byte of an input the fuzz target takes as a frame from its Ethernet header, and as a
/// packet from its IP header (see fuzz/fuzz_targets/classify.rs).
pub(crate) const FUZZ_TAG_ETHERNET: u8 = 0;

pub(crate) const FUZZ_TAG_IP: u8 = 1;

pub(crate) fn fuzz(args: &FuzzArgs) -> anyhow::Result<()> {
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
pub(crate) fn ensure_cargo_fuzz() -> anyhow::Result<()> {
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
pub(crate) fn write_seeds(corpus: &Path) -> anyhow::Result<usize> {
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
pub(crate) fn files(dir: &Path) -> BTreeSet<PathBuf> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|entry| Some(entry.ok()?.path()))
                .collect()
        })
        .unwrap_or_default()
}

/// `path` from the workspace root, as messages name it.
pub(crate) fn relative(path: &Path) -> &Path {
    path.strip_prefix(workspace_root()).unwrap_or(path)
}
