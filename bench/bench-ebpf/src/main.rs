//! Reference programs (XDP and tcx) the benchmark measures localnet-probe against.
#![no_std]
#![no_main]

use core::hint::black_box;

use aya_ebpf::{
    bindings::xdp_action,
    helpers::generated::bpf_xdp_get_buff_len,
    macros::{classifier, map, xdp},
    maps::{Array, PerCpuArray},
    programs::{TcContext, XdpContext},
};

const ETHERNET_HEADER_LEN: usize = 14;
// Ethertypes as they sit in memory, compared without a byte swap.
const ETHERTYPE_IPV4: u16 = u16::from_ne_bytes([0x08, 0x00]);
const ETHERTYPE_IPV6: u16 = u16::from_ne_bytes([0x86, 0xdd]);
/// tcx verdicts: hand the frame to the next program or the stack, or drop it.
const TCX_NEXT: i32 = -1;
const TCX_DROP: i32 = 2;

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

/// The ceiling for a classifier at a veth receiver: read what any classifier must — the
/// ethertype, then the IP addresses, each bounds-checked — and drop. Drop-all never reads the
/// frame, so it does not wait for the frame's data to reach the CPU; this does, as the probe does.
#[xdp]
fn xdp_headers_drop(ctx: XdpContext) -> u32 {
    read_headers(&ctx);
    xdp_action::XDP_DROP
}

/// The entry of each interface by ifindex, for `xdp_headers_count_drop`: the key of its counter,
/// as the probe's entry holds one (all 0 here: every interface counts into the first counter).
#[map]
static INTERFACE_KEYS: Array<u32> = Array::with_max_entries(65536, 0);

/// Frames and bytes, per CPU, for `xdp_headers_count_drop`.
#[map]
static COUNTERS: PerCpuArray<[u64; 2]> = PerCpuArray::with_max_entries(1, 0);

/// The floor of counting frames exactly with least privilege (CAP_BPF, no CAP_PERFMON): read the
/// headers as `xdp_headers_drop` does, then do what the probe does with a frame it has matched,
/// and nothing more — find the interface's entry by ifindex, the frame's length (a helper call:
/// the frame may be in several buffers, and without CAP_PERFMON the verifier lets a program
/// neither subtract packet pointers nor add a variable to one), and add to a per-CPU counter —
/// and drop. It counts every frame, as if every frame matched.
#[xdp(frags)]
fn xdp_headers_count_drop(ctx: XdpContext) -> u32 {
    read_headers(&ctx);
    if let Some(key) = INTERFACE_KEYS.get(ctx.ingress_ifindex() as u32) {
        // SAFETY: the helper only reads the context it is given.
        let len = unsafe { bpf_xdp_get_buff_len(ctx.ctx) };
        if let Some(counter) = COUNTERS.get_ptr_mut(*key) {
            // SAFETY: a per-CPU array entry is this CPU's alone while the program runs.
            unsafe {
                (*counter)[0] += 1;
                (*counter)[1] += len;
            }
        }
    }
    xdp_action::XDP_DROP
}

/// Reads the ethertype and, of IPv4 and IPv6 packets, the addresses, each bounds-checked.
#[inline(always)]
fn read_headers(ctx: &XdpContext) {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + ETHERNET_HEADER_LEN <= end {
        // SAFETY: each read is inside the packet (checked right before it); packet data has no
        // alignment guarantee, hence the unaligned reads.
        unsafe {
            let ethertype = ((start + ETHERNET_HEADER_LEN - 2) as *const u16).read_unaligned();
            let ip = start + ETHERNET_HEADER_LEN;
            // black_box: the addresses must be loaded, though nothing here uses them.
            if ethertype == ETHERTYPE_IPV4 && ip + 20 <= end {
                let [source, destination] = ((ip + 12) as *const [u32; 2]).read_unaligned();
                black_box(source ^ destination);
            } else if ethertype == ETHERTYPE_IPV6 && ip + 40 <= end {
                let [a, b, c, d] = ((ip + 8) as *const [u64; 4]).read_unaligned();
                black_box(a ^ b ^ c ^ d);
            }
        }
    }
}

/// The floor at tcx: what any tcx program costs. Hands every frame on, as the probe's tcx
/// programs do with frames they pass.
#[classifier]
fn tcx_next(_ctx: TcContext) -> i32 {
    TCX_NEXT
}

/// The ceiling for a receiver at tcx ingress: drop everything without looking.
#[classifier]
fn tcx_drop(_ctx: TcContext) -> i32 {
    TCX_DROP
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
