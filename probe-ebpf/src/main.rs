//! The XDP program: classifies each frame with `probe_common::classify`; frames with a loopback
//! source or destination are counted per interface, match and action, and dropped on interfaces
//! in drop mode. Everything else passes untouched, without a map lookup.
#![no_std]
#![no_main]

use core::mem::size_of;

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{Array, HashMap, PerCpuArray},
    programs::XdpContext,
};
use probe_common::{
    COUNTER_SLOTS, Counter, Frame, IFINDEX_ARRAY_LEN, IfaceConfig, LoopbackMatch, MAX_INTERFACES,
    classify,
};

/// Verdict and counter base by ifindex, for ifindexes below `IFINDEX_ARRAY_LEN`; written by the
/// loader before it attaches to the interface.
#[map]
static IFACE_CONFIG: Array<IfaceConfig> = Array::with_max_entries(IFINDEX_ARRAY_LEN, 0);

/// The same for higher ifindexes.
#[map]
static IFACE_CONFIG_HIGH: HashMap<u32, IfaceConfig> = HashMap::with_max_entries(MAX_INTERFACES, 0);

/// Indexed by [`counter_index`]; the loader sums the CPUs.
#[map]
static COUNTERS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

/// The frame between `data` and `data_end`, every load bounds-checked right before it is made.
struct PacketFrame {
    start: usize,
    end: usize,
}

impl Frame for PacketFrame {
    #[inline(always)]
    fn len(&self) -> usize {
        self.end - self.start
    }

    #[inline(always)]
    fn load<T: Copy>(&self, offset: usize) -> Option<T> {
        let at = self.start + offset;
        if at + size_of::<T>() > self.end {
            return None;
        }
        // SAFETY: the bytes are inside the packet (checked just above). The load is an ordinary
        // one, not split into bytes: packet data is not aligned for `T` in general, which the
        // verifier allows and the JITs of the architectures XDP runs on handle.
        Some(unsafe { (at as *const T).read() })
    }
}

#[xdp]
fn localnet_probe(ctx: XdpContext) -> u32 {
    let frame = PacketFrame {
        start: ctx.data(),
        end: ctx.data_end(),
    };
    match classify(&frame) {
        None => xdp_action::XDP_PASS,
        Some(matched) => on_loopback_frame(&ctx, matched, frame.len()),
    }
}

#[inline(always)]
fn on_loopback_frame(ctx: &XdpContext, matched: LoopbackMatch, len: usize) -> u32 {
    let ifindex = ctx.ingress_ifindex() as u32;
    // The array covers ifindexes below IFINDEX_ARRAY_LEN; its lookup fails only above.
    let config = IFACE_CONFIG.get(ifindex).or_else(|| {
        // SAFETY: the loader replaces entries whole and removes one only after detaching from
        // its interface, so the value read here is a complete `IfaceConfig`.
        unsafe { IFACE_CONFIG_HIGH.get(ifindex) }
    });
    // Not configured: not ours to judge (the loader always configures before attaching), so
    // pass, as an unconfigured monitor would.
    let Some((verdict, counter_index)) = config.and_then(|config| config.on_match(matched)) else {
        return xdp_action::XDP_PASS;
    };
    if let Some(counter) = COUNTERS.get_ptr_mut(counter_index) {
        // SAFETY: a per-CPU array entry is this CPU's alone while the program runs.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += len as u64;
        }
    }
    verdict
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
