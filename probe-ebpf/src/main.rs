//! The XDP programs: each classifies a frame with `probe_common`'s classifier; frames with a
//! loopback source or destination are counted per interface, match and action, and dropped on
//! interfaces in drop mode. Everything else passes untouched, without a map lookup.
//!
//! `localnet_probe` serves Ethernet devices; `localnet_probe_ip` serves layer-3 devices (tun,
//! wireguard), whose packets start at the IP header. Choosing the program by device at attach
//! time keeps that decision off the per-frame path.
#![no_std]
#![no_main]
// The BPF target has atomic loads and stores but no atomic types with read-modify-write
// methods; the intrinsic gives the one atomic add the token bucket needs.
#![feature(core_intrinsics)]
#![allow(internal_features)]

use core::{
    intrinsics::{AtomicOrdering, atomic_xadd},
    mem::size_of,
};

use aya_ebpf::{
    bindings::xdp_action,
    helpers::generated::{bpf_ktime_get_ns, bpf_xdp_get_buff_len, bpf_xdp_load_bytes},
    macros::{map, xdp},
    maps::{Array, HashMap, PerCpuArray, RingBuf},
    programs::XdpContext,
};
use probe_common::{
    Action, Counter, Frame, Framing, IFINDEX_ARRAY_LEN, IfaceConfig, LoopbackMatch,
    SAMPLE_CAPTURE_LEN, Sample, SampleCounts, classify, classify_ip,
};

/// Slot, action and sample tokens by ifindex, for ifindexes below `IFINDEX_ARRAY_LEN`; written
/// by the loader before it attaches to the interface.
#[map]
static IFACE_CONFIG: Array<IfaceConfig> = Array::with_max_entries(IFINDEX_ARRAY_LEN, 0);

/// The same for higher ifindexes. Sized by the loader at load time, like `COUNTERS`.
#[map]
static IFACE_CONFIG_HIGH: HashMap<u32, IfaceConfig> = HashMap::with_max_entries(1, 0);

/// Packets and bytes by [`probe_common::counter_key`] (an interface's slot, match and action);
/// sized by the loader at load time. The loader sums the CPUs.
#[map]
static COUNTERS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(1, 0);

/// Samples of matched frames, for the loader to read; sized by the loader at load time.
#[map]
static SAMPLES: RingBuf = RingBuf::with_byte_size(4096, 0);

/// Samples sent and lost (ring buffer full), by interface slot; sized by the loader.
#[map]
static SAMPLE_COUNTS: PerCpuArray<SampleCounts> = PerCpuArray::with_max_entries(1, 0);

/// Set by the loader when sampling is on; when it is off, the verifier removes the sampling
/// code as dead, so matched frames pay nothing for it.
#[unsafe(no_mangle)]
static SAMPLING: u8 = 0;

/// Set by the loader when it may subtract packet pointers (CAP_PERFMON): the frame length is
/// then `data_end - data`. Otherwise the program asks the kernel (`bpf_xdp_get_buff_len`), a
/// helper call that costs matched frames ~10 ns more here. Read from `.rodata`, which the loader
/// freezes, so the verifier knows the value and checks only the branch taken.
#[unsafe(no_mangle)]
static LENGTH_FROM_POINTERS: u8 = 0;

/// The frame between `data` and `data_end`, every load bounds-checked right before it is made.
struct PacketFrame {
    start: usize,
    end: usize,
}

impl Frame for PacketFrame {
    #[inline(always)]
    fn holds(&self, len: usize) -> bool {
        self.start + len <= self.end
    }

    #[inline(always)]
    fn load<T: Copy>(&self, offset: usize) -> Option<T> {
        let at = self.start + offset;
        if at + size_of::<T>() > self.end {
            return None;
        }
        // SAFETY: the bytes are inside the packet (checked just above); packet data has no
        // alignment guarantee, hence the unaligned read.
        Some(unsafe { (at as *const T).read_unaligned() })
    }
}

impl PacketFrame {
    #[inline(always)]
    fn new(ctx: &XdpContext) -> Self {
        Self {
            start: ctx.data(),
            end: ctx.data_end(),
        }
    }
}

#[xdp]
fn localnet_probe(ctx: XdpContext) -> u32 {
    match classify(&PacketFrame::new(&ctx)) {
        None => xdp_action::XDP_PASS,
        Some(matched) => on_loopback_frame(&ctx, matched, Framing::Ethernet),
    }
}

#[xdp]
fn localnet_probe_ip(ctx: XdpContext) -> u32 {
    match classify_ip(&PacketFrame::new(&ctx)) {
        None => xdp_action::XDP_PASS,
        Some(matched) => on_loopback_frame(&ctx, matched, Framing::Ip),
    }
}

#[inline(always)]
fn on_loopback_frame(ctx: &XdpContext, matched: LoopbackMatch, framing: Framing) -> u32 {
    let ifindex = ctx.ingress_ifindex() as u32;
    // The array covers ifindexes below IFINDEX_ARRAY_LEN; its lookup fails only above.
    let Some(config) = IFACE_CONFIG
        .get_ptr_mut(ifindex)
        .or_else(|| IFACE_CONFIG_HIGH.get_ptr_mut(ifindex))
    else {
        return xdp_action::XDP_PASS;
    };
    // SAFETY: an entry of either map, valid while the program runs. The loader replaces entries
    // whole and removes one only after detaching from its interface; other CPUs change only
    // `sample_tokens`, read below on its own.
    let entry = unsafe { config.read() };
    // Not configured: not ours to judge (the loader always configures before attaching), so
    // pass, as an unconfigured monitor would.
    let Some(action) = entry.action() else {
        return xdp_action::XDP_PASS;
    };
    if let Some(counter) = COUNTERS.get_ptr_mut(entry.counter_key(matched)) {
        // SAFETY: a plain read of a constant the loader may have set; volatile so the compiler
        // keeps both branches.
        let len = if unsafe { core::ptr::read_volatile(&LENGTH_FROM_POINTERS) } != 0 {
            (ctx.data_end() - ctx.data()) as u64
        } else {
            // SAFETY: the helper only reads the context it is given.
            unsafe { bpf_xdp_get_buff_len(ctx.ctx) }
        };
        // SAFETY: a per-CPU array entry is this CPU's alone while the program runs.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += len;
        }
    }
    // SAFETY: as for LENGTH_FROM_POINTERS.
    if unsafe { core::ptr::read_volatile(&SAMPLING) } != 0 {
        // SAFETY: the address of a field of the entry; nothing is read.
        let tokens = unsafe { &raw mut (*config).sample_tokens };
        // SAFETY: read while CPUs may take tokens from it: a stale value at worst lets a racing
        // CPU through, which takes the count below zero.
        if unsafe { core::ptr::read_volatile(tokens) } > 0 {
            // SAFETY: `tokens` points into the entry, valid and 8-byte aligned. The result is
            // unused, so this is one atomic add.
            unsafe { atomic_xadd::<i64, i64, { AtomicOrdering::Relaxed }>(tokens, -1) };
            // Packed: a BPF call takes at most five arguments, and a match alone is two.
            let class = [
                matched.family as u8,
                matched.address as u8,
                action as u8,
                framing as u8,
            ];
            send_sample(ctx, config, class);
        }
    }
    match action {
        Action::Passed => xdp_action::XDP_PASS,
        Action::Dropped => xdp_action::XDP_DROP,
    }
}

/// Sends one sample of the frame and counts it as sent, or as lost when the ring is full. A call
/// of its own rather than inlined: it runs at most at the sample rate, so the per-frame code
/// stays small. `config` is the interface's entry, whose slot is read here rather than on the
/// per-frame path; `class` is the sample's family, address, action and framing bytes.
#[inline(never)]
fn send_sample(ctx: &XdpContext, config: *const IfaceConfig, class: [u8; 4]) {
    // SAFETY: the caller's entry, valid while the program runs.
    let slot = unsafe { (*config).slot() };
    let Some(counts) = SAMPLE_COUNTS.get_ptr_mut(slot) else {
        return;
    };
    let Some(mut entry) = SAMPLES.reserve::<Sample>(0) else {
        // SAFETY: a per-CPU array entry is this CPU's alone while the program runs.
        unsafe { (*counts).lost += 1 };
        return;
    };
    // SAFETY: the helper only reads the context it is given.
    let frame_len = unsafe { bpf_xdp_get_buff_len(ctx.ctx) };
    let captured_len = frame_len.min(SAMPLE_CAPTURE_LEN as u64) as u32;
    let sample = entry.as_mut_ptr();
    // SAFETY: `sample` is the reserved entry, `size_of::<Sample>()` bytes; every field is
    // written before it is submitted, `frame` beyond `captured_len` excepted (never read).
    unsafe {
        (*sample).timestamp_ns = bpf_ktime_get_ns();
        (*sample).ifindex = ctx.ingress_ifindex() as u32;
        (*sample).frame_len = frame_len as u32;
        [
            (*sample).family,
            (*sample).address,
            (*sample).action,
            (*sample).framing,
        ] = class;
        // A classified frame holds at least an IP header, so this is never 0, which the
        // helper refuses; saying so keeps the verifier's range of the length above it.
        let copied = if captured_len == 0 {
            0
        } else if bpf_xdp_load_bytes(ctx.ctx, 0, (&raw mut (*sample).frame).cast(), captured_len)
            == 0
        {
            captured_len
        } else {
            0
        };
        (*sample).captured_len = copied;
    }
    entry.submit(0);
    // SAFETY: as above.
    unsafe { (*counts).emitted += 1 };
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
