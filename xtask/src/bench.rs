//! `cargo xtask bench`: the benchmark, as root; its report in target/bench, and with
//! `--update-docs` in docs/benchmark.md too.

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
    if args.update_docs {
        update_docs(&fs::read_to_string(out.join("report.md"))?)?;
    }
    Ok(())
}

/// The page whose tables `--update-docs` replaces, between its markers.
const BENCH_PAGE: &str = "docs/benchmark.md";

const BENCH_START: &str = "<!-- bench:start -->";

const BENCH_END: &str = "<!-- bench:end -->";

fn update_docs(report: &str) -> anyhow::Result<()> {
    let path = workspace_root().join(BENCH_PAGE);
    let page = fs::read_to_string(&path).with_context(|| format!("cannot read {BENCH_PAGE}"))?;
    fs::write(&path, with_report(&page, report)?)?;
    eprintln!("xtask: updated the latest run in {}", path.display());
    Ok(())
}

/// `page` with what lies between its benchmark markers replaced by `report`.
fn with_report(page: &str, report: &str) -> anyhow::Result<String> {
    let (Some(start), Some(end)) = (page.find(BENCH_START), page.find(BENCH_END)) else {
        bail!("{BENCH_PAGE} has no {BENCH_START} … {BENCH_END} section");
    };
    Ok(format!(
        "{}{BENCH_START}\n{}\n{}",
        &page[..start],
        report.trim_end(),
        &page[end..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_replaces_what_lies_between_the_markers_of_the_benchmark_page() {
        let page = fs::read_to_string(workspace_root().join(BENCH_PAGE)).expect("the page");
        let updated = with_report(&page, "| a | table |\n").expect("the markers");
        let (before, rest) = updated.split_once(BENCH_START).expect("the start marker");
        assert_eq!(before, &page[..page.find(BENCH_START).expect("start")]);
        assert_eq!(
            rest,
            format!(
                "\n| a | table |\n{}",
                &page[page.find(BENCH_END).expect("end")..]
            )
        );
        assert!(with_report("no markers", "x").is_err());
    }
}
