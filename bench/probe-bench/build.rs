/// Builds `bench-ebpf`; the object lands in `OUT_DIR/bench-xdp`, where `BENCH_OBJECT` embeds it.
fn main() -> anyhow::Result<()> {
    ebpf_build::build("bench-ebpf")
}
