/// Builds `probe-ebpf`; the object lands in `OUT_DIR/localnet-probe-xdp`, where `PROBE_OBJECT`
/// embeds it.
fn main() -> anyhow::Result<()> {
    ebpf_build::build("probe-ebpf")
}
