/// Builds `bench-ebpf`, whose object lands in `OUT_DIR/bench-xdp`, where `BENCH_OBJECT` embeds
/// it; and the builds of `probe-ebpf` that stop after one step of a matched frame's path, each in
/// `OUT_DIR/<its feature>`, for `kernel_cost::STEPS`.
fn main() -> anyhow::Result<()> {
    ebpf_build::build("bench-ebpf")?;
    for step in [
        "stop-after-classify",
        "stop-after-entry",
        "stop-after-counter",
    ] {
        ebpf_build::build_variant("probe-ebpf", &[step], step)?;
    }
    Ok(())
}
