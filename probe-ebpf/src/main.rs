//! The XDP programs: each classifies a frame with `probe_common`'s classifier; frames with a
//! loopback source or destination are counted per interface, match and action, and dropped on
//! interfaces in drop mode. Everything else passes untouched, without a map lookup.
//!
//! `localnet_probe` serves Ethernet devices; `localnet_probe_ip` serves layer-3 devices (tun,
//! wireguard), whose packets start at the IP header. Choosing the program by device at attach
//! time keeps that decision off the per-frame path.
#![no_std]
#![no_main]

use core::mem::size_of;

use aya_ebpf::{
    bindings::xdp_action,
    helpers::generated::bpf_xdp_get_buff_len,
    macros::{map, xdp},
    maps::{Array, HashMap, PerCpuArray},
    programs::XdpContext,
};
use probe_common::{
    Action, Counter, Frame, IFINDEX_ARRAY_LEN, IfaceConfig, LoopbackMatch, classify, classify_ip,
    counter_key,
};

/// Slot and action by ifindex, for ifindexes below `IFINDEX_ARRAY_LEN`; written by the loader
/// before it attaches to the interface.
#[map]
static IFACE_CONFIG: Array<IfaceConfig> = Array::with_max_entries(IFINDEX_ARRAY_LEN, 0);

/// The same for higher ifindexes. Sized by the loader at load time, like `COUNTERS`.
#[map]
static IFACE_CONFIG_HIGH: HashMap<u32, IfaceConfig> = HashMap::with_max_entries(1, 0);

/// Packets and bytes by [`counter_key`] (an interface's slot, match and action); sized by the
/// loader at load time. The loader sums the CPUs.
#[map]
static COUNTERS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(1, 0);

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
        Some(matched) => on_loopback_frame(&ctx, matched),
    }
}

#[xdp]
fn localnet_probe_ip(ctx: XdpContext) -> u32 {
    match classify_ip(&PacketFrame::new(&ctx)) {
        None => xdp_action::XDP_PASS,
        Some(matched) => on_loopback_frame(&ctx, matched),
    }
}

#[inline(always)]
fn on_loopback_frame(ctx: &XdpContext, matched: LoopbackMatch) -> u32 {
    let ifindex = ctx.ingress_ifindex() as u32;
    // The array covers ifindexes below IFINDEX_ARRAY_LEN; its lookup fails only above.
    let config = IFACE_CONFIG.get(ifindex).or_else(|| {
        // SAFETY: the loader replaces entries whole and removes one only after detaching from
        // its interface, so the value read here is a complete `IfaceConfig`.
        unsafe { IFACE_CONFIG_HIGH.get(ifindex) }
    });
    // Not configured: not ours to judge (the loader always configures before attaching), so
    // pass, as an unconfigured monitor would.
    let Some((slot, action)) = config.and_then(IfaceConfig::slot_and_action) else {
        return xdp_action::XDP_PASS;
    };
    if let Some(counter) = COUNTERS.get_ptr_mut(counter_key(slot, matched, action)) {
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
    match action {
        Action::Passed => xdp_action::XDP_PASS,
        Action::Dropped => xdp_action::XDP_DROP,
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
