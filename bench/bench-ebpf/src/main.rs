//! Reference programs the benchmark measures localnet-probe against.
#![no_std]
#![no_main]

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

/// The floor: what any XDP program costs.
#[xdp]
fn xdp_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// The ceiling for a veth receiver: drop everything without looking.
#[xdp]
fn xdp_drop(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_DROP
}

/// The generator: run with BPF_PROG_TEST_RUN in live-frames mode on the sending veth, it sends
/// every test frame out of that interface.
#[xdp]
fn xdp_tx(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_TX
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
