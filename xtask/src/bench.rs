//! `cargo xtask bench`: the benchmark, as root, and its report in README.

use super::*;

pub(crate) fn bench(args: &BenchArgs) -> anyhow::Result<()> {
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

pub(crate) const README_BENCH_START: &str = "<!-- bench:start -->";

pub(crate) const README_BENCH_END: &str = "<!-- bench:end -->";

pub(crate) fn update_readme(report: &str) -> anyhow::Result<()> {
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
