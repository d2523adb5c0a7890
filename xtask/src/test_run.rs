//! `cargo xtask test`: every test, as root, then the kernel matrix and the fuzzing, with totals.

use super::{fuzz::TEST_FUZZ_SECONDS, *};

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

pub(crate) fn test(args: &TestArgs) -> anyhow::Result<()> {
    require_root("the BPF_PROG_TEST_RUN and network-namespace tests")?;
    // Before the long host run, so a kernel apt does not have is said at once.
    let kernels = kernel_vm::resolve(&args.kernel_specs())?;
    if args.kernels_only && kernels.is_empty() {
        bail!("--kernels-only with no kernel to run");
    }
    setup()?;
    let mut totals = TestTotals::default();
    let mut host_status = None;
    let skipped_log = target_dir().join("skipped-tests.log");
    match fs::remove_file(&skipped_log) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            return Err(error).with_context(|| format!("remove {}", skipped_log.display()));
        }
        _ => {}
    }
    if !args.kernels_only {
        ensure_tools()?;
        ensure_kubernetes_validate()?;
        // The deployment tests take the binary out of this image, the one a fleet would run,
        // and install the package (the same binary) into a throwaway root.
        image()?;
        package()?;
        let mut command = cargo();
        // The root tests are `#[ignore = "needs root"]`, so that a plain `cargo test` shows
        // them as ignored rather than passed; here they run.
        command
            .args([
                "test",
                "--locked",
                "--no-fail-fast",
                "--",
                "--include-ignored",
            ])
            .env(SKIPPED_LOG, &skipped_log);
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
            .env("LOCALNET_PROBE_WITHOUT", "tcx")
            .env(SKIPPED_LOG, &skipped_log);
        let without_tcx = cargo_test(command, &mut totals)?;
        totals.count_skipped(&skipped_log)?;
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
pub(crate) struct TestTotals {
    pub(crate) passed: u64,
    pub(crate) failed: u64,
    pub(crate) ignored: u64,
}

/// testbed's `SKIPPED_LOG`: the file tests name themselves in when they could not run here.
const SKIPPED_LOG: &str = "LOCALNET_PROBE_SKIPPED_LOG";

impl TestTotals {
    /// Moves the tests `log` names from passed (the harness saw them return) to skipped, saying
    /// each and why.
    pub(crate) fn count_skipped(&mut self, log: &Path) -> anyhow::Result<()> {
        let lines = match fs::read_to_string(log) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(error).with_context(|| format!("read {}", log.display())),
        };
        for line in lines.lines() {
            let (test, why) = line.split_once('\t').unwrap_or((line, ""));
            println!("xtask: skipped {test}: {why}");
            self.passed = self.passed.saturating_sub(1);
            self.ignored += 1;
        }
        Ok(())
    }

    const fn merge(&mut self, other: &Self) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.ignored += other.ignored;
    }

    pub(crate) fn add(&mut self, line: &str) {
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
