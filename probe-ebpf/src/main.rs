//! The programs: each classifies a frame with `probe_common`'s classifier; frames with a
//! loopback source or destination are counted per interface, match and action, and dropped on
//! interfaces in drop mode. Everything else passes untouched, without a map lookup.
//!
//! Three hooks run the same code on the same maps: XDP (`localnet_probe*`), the first choice;
//! tcx ingress (`localnet_probe_tc*`), where another XDP program holds the interface; and tcx
//! egress (`localnet_probe_out*`), which counts loopback-sourced frames leaving the interface,
//! replies of a service reached through route_localnet, and never drops them.
//!
//! Each hook has a program for Ethernet devices and one (`…_ip`) for layer-3 devices (tun,
//! wireguard), whose packets start at the IP header. Choosing the program by device at attach
//! time keeps that decision off the per-frame path.
#![no_std]
#![no_main]
// The BPF target has atomic loads and stores but no atomic types with read-modify-write
// methods; the intrinsic gives the one atomic add the token bucket needs.
#![feature(core_intrinsics)]
#![allow(internal_features)]
// The frame's length in one buffer is found in BPF assembly: see `LinearXdp::data_len`.
#![feature(asm_experimental_arch)]

use core::{
    cell::Cell,
    intrinsics::{AtomicOrdering, atomic_xadd},
    mem::size_of,
};

use aya_ebpf::{
    bindings::xdp_action,
    helpers::generated::{
        bpf_ktime_get_ns, bpf_skb_load_bytes, bpf_xdp_get_buff_len, bpf_xdp_load_bytes,
    },
    macros::{classifier, map, xdp},
    maps::{Array, HashMap, PerCpuArray, RingBuf},
    programs::{TcContext, XdpContext},
};
use probe_common::{
    Action, ConfigMap, Counter, Frame, FrameClass, Framing, IFINDEX_ARRAY_LEN, IfaceConfig,
    LINEAR_FRAME_MAX, LoopbackMatch, SAMPLE_CAPTURE_LEN, Sample, SampleCounts, classify,
    classify_ip, two_inline_vlan_tags,
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

/// For the benchmark's `entry-in-program` build only: the interface's entry in the program's own
/// global data, as a program instance per interface would hold it, configured for slot 0 in
/// monitor mode.
#[cfg(feature = "entry-in-program")]
#[unsafe(no_mangle)]
static mut PROGRAM_ENTRY: IfaceConfig = IfaceConfig::new(0, probe_common::Mode::Monitor, 0);

/// The frame between `data` and `data_end`, every load bounds-checked right before it is made.
struct PacketFrame {
    start: usize,
    end: usize,
}

impl PacketFrame {
    #[inline(always)]
    const fn new(start: usize, end: usize) -> Self {
        Self { start, end }
    }
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

/// The linear part of a socket buffer, remembering whether the classifier read past it: then
/// the headers may be in the buffer's page fragments.
struct LinearFrame {
    frame: PacketFrame,
    short: Cell<bool>,
}

impl Frame for LinearFrame {
    #[inline(always)]
    fn holds(&self, len: usize) -> bool {
        let holds = self.frame.holds(len);
        if !holds {
            self.short.set(true);
        }
        holds
    }

    #[inline(always)]
    fn load<T: Copy>(&self, offset: usize) -> Option<T> {
        let value = self.frame.load(offset);
        if value.is_none() {
            self.short.set(true);
        }
        value
    }
}

/// The most header bytes the classifier reads, as the helpers take lengths.
const HEADERS_LEN: u32 = probe_common::HEADERS_LEN as u32;

/// What the per-frame code needs of the hook it runs at.
trait Hook {
    /// The interface the frame arrives at or leaves.
    fn ifindex(&self) -> u32;
    /// The bytes the frame's buffers hold, from its first header on.
    fn data_len(&self) -> u64;
    /// The outer VLAN tag the driver or the stack took off the frame into its metadata, as
    /// `(protocol as in the frame, control information)`; `(0, 0)` when there is none.
    fn offloaded_vlan(&self) -> (u16, u16);
    /// Copies the frame's first bytes, at most `room`, to `to`, and says how many: none when
    /// the kernel refuses.
    fn capture(&self, to: *mut u8, room: u32) -> u32;

    /// The frame's length on the wire: its bytes and a tag taken off it.
    #[inline(always)]
    fn frame_len(&self) -> u64 {
        let (vlan_proto, _) = self.offloaded_vlan();
        self.data_len() + if vlan_proto == 0 { 0 } else { VLAN_TAG_LEN }
    }
}

/// A VLAN tag's length, as frame lengths are counted.
const VLAN_TAG_LEN: u64 = probe_common::VLAN_TAG_LEN as u64;

/// The fewest bytes a classified frame holds: an IPv4 header without options, whose addresses
/// the classifier read.
const MIN_CLASSIFIED_LEN: u32 = 20;

impl Hook for XdpContext {
    #[inline(always)]
    fn ifindex(&self) -> u32 {
        self.ingress_ifindex() as u32
    }

    #[inline(always)]
    fn offloaded_vlan(&self) -> (u16, u16) {
        // XDP sees tags where they are, in the frame.
        (0, 0)
    }

    /// Every buffer's bytes: a frame larger than a page (a jumbo MTU) arrives in several
    /// (XDP multi-buffer), of which `data_end - data` is the first only.
    #[inline(always)]
    fn data_len(&self) -> u64 {
        // SAFETY: the helper only reads the context it is given.
        unsafe { bpf_xdp_get_buff_len(self.ctx) }
    }

    #[inline(always)]
    fn capture(&self, to: *mut u8, room: u32) -> u32 {
        capture_by_helper(self.data_len(), room, |len| {
            // SAFETY: the caller gives room for `room` bytes at `to`, and `len` is at most that.
            unsafe { bpf_xdp_load_bytes(self.ctx, 0, to.cast(), len) == 0 }
        })
    }
}

/// The largest step of `LinearXdp::data_len`; twelve steps halving it reach any length up to
/// `LINEAR_FRAME_MAX`, which the loader holds interfaces' MTUs to.
const LENGTH_STEP_MAX: usize = (LINEAR_FRAME_MAX as usize).div_ceil(2);
const _: () = assert!(
    LENGTH_STEP_MAX * 2 - 1 == LINEAR_FRAME_MAX as usize,
    "the twelve steps reach LINEAR_FRAME_MAX"
);

/// An XDP frame in one buffer, for kernels without multi-buffer (before 5.18: no `xdp.frags`,
/// no `bpf_xdp_get_buff_len`, no `bpf_xdp_load_bytes`) and for devices whose MTU keeps every
/// frame in one buffer, where the length needs no helper call.
struct LinearXdp(XdpContext);

impl Hook for LinearXdp {
    #[inline(always)]
    fn ifindex(&self) -> u32 {
        self.0.ifindex()
    }

    #[inline(always)]
    fn offloaded_vlan(&self) -> (u16, u16) {
        self.0.offloaded_vlan()
    }

    /// Found by successive approximation with constant steps, the only packet pointer
    /// arithmetic the verifier allows without CAP_PERFMON: `data_end - data` is a pointer minus
    /// a pointer, and a pointer plus a variable needs it too. The frame is in one buffer, under
    /// a page, so twelve steps reach its end.
    ///
    /// Each step is written in assembly, five instructions: in Rust, LLVM turns a step into
    /// selects, which compile to two comparisons of the same pointers, and the verifier walks the
    /// second, which it can predict, speculatively too, in every state, past its limit; keeping
    /// the steps in Rust as branches took a load per step, which made the length cost about as
    /// much as the helper call it replaces.
    #[inline(always)]
    fn data_len(&self) -> u64 {
        let end = self.0.data_end();
        let mut at = self.0.data();
        let mut len: u64 = 0;
        macro_rules! approach {
            ($($index:expr),*) => {$(
                // SAFETY: registers only: `at` moves by the step while it stays within the frame
                // (a comparison with `end`, no memory access), and `len` counts the same steps.
                unsafe {
                    core::arch::asm!(
                        "{next} = {at}",
                        "{next} += {step}",
                        "if {next} > {end} goto +2",
                        "{at} = {next}",
                        "{len} += {step}",
                        next = out(reg) _,
                        at = inout(reg) at,
                        end = in(reg) end,
                        len = inout(reg) len,
                        step = const LENGTH_STEP_MAX >> $index,
                        options(pure, nomem, nostack),
                    );
                }
            )*};
        }
        approach!(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11);
        len
    }

    /// Byte by byte at constant offsets, each bounds-checked against the frame's end, up to
    /// the frame's end or `room`: packet pointer arithmetic with a variable offset needs
    /// CAP_PERFMON, and the helpers that copy from a frame came with multi-buffer. The frame's
    /// length is not asked for: a copy bounded by it would make the verifier walk the copy once
    /// for every length the approximation in `data_len` can find.
    #[inline(always)]
    fn capture(&self, to: *mut u8, room: u32) -> u32 {
        let frame = PacketFrame::new(self.0.data(), self.0.data_end());
        // What a classified frame holds, checked at once: the first byte's check alone would
        // compile to `data >= data_end`, from which the verifier learns no range.
        if !frame.holds(MIN_CLASSIFIED_LEN as usize) {
            return 0;
        }
        let room = room as usize;
        // Written out rather than looped: a loop would take its offset from a register.
        macro_rules! copy_bytes {
            ($($at:expr),*) => {$(
                if $at >= room {
                    return $at;
                }
                let Some(byte) = frame.load::<u8>($at) else {
                    return $at;
                };
                // SAFETY: the caller gives room for `room` bytes at `to`, and `$at` is below it.
                unsafe { to.add($at).write(byte) };
            )*};
        }
        macro_rules! copy_eights {
            ($($base:expr),*) => {$(
                copy_bytes!(
                    $base, $base + 1, $base + 2, $base + 3, $base + 4, $base + 5, $base + 6,
                    $base + 7
                );
            )*};
        }
        copy_eights!(
            0, 8, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 96, 104, 112, 120
        );
        const _: () = assert!(SAMPLE_CAPTURE_LEN == 128, "copy_eights! covers 128 bytes");
        SAMPLE_CAPTURE_LEN as u32
    }
}

/// What a helper that copies from the frame captures of a frame of `data_len` bytes: at most
/// `room` bytes, and none when the kernel refuses.
#[inline(always)]
fn capture_by_helper(data_len: u64, room: u32, copy: impl FnOnce(u32) -> bool) -> u32 {
    let len = data_len.min(u64::from(room)) as u32;
    // A classified frame holds at least an IPv4 header, so this is never below it. Saying so
    // with an ordered comparison keeps the verifier's minimum of the length above 0, which the
    // helpers require: 6.1's verifier learns no minimum from `!= 0`.
    if len >= MIN_CLASSIFIED_LEN && copy(len) {
        len
    } else {
        0
    }
}

impl Hook for TcContext {
    #[inline(always)]
    fn ifindex(&self) -> u32 {
        // SAFETY: the context the kernel gave, valid while the program runs.
        unsafe { (*self.skb.skb).ifindex }
    }

    #[inline(always)]
    fn data_len(&self) -> u64 {
        u64::from(self.len())
    }

    #[inline(always)]
    fn offloaded_vlan(&self) -> (u16, u16) {
        // SAFETY: the context the kernel gave, valid while the program runs.
        let skb = unsafe { &*self.skb.skb };
        if skb.vlan_present == 0 {
            (0, 0)
        } else {
            // `vlan_proto` holds the protocol as the frame did (network byte order).
            (skb.vlan_proto as u16, skb.vlan_tci as u16)
        }
    }

    #[inline(always)]
    fn capture(&self, to: *mut u8, room: u32) -> u32 {
        capture_by_helper(self.data_len(), room, |len| {
            // SAFETY: the caller gives room for `room` bytes at `to`, and `len` is at most that.
            unsafe { bpf_skb_load_bytes(self.skb.skb.cast(), 0, to.cast(), len) == 0 }
        })
    }
}

/// Declares multi-buffer support (`xdp.frags`), so it attaches to devices whose MTU is above a
/// page; it classifies from the headers in the first buffer, which hold them.
#[xdp(frags)]
fn localnet_probe(ctx: XdpContext) -> u32 {
    match classify(&PacketFrame::new(ctx.data(), ctx.data_end())) {
        None => xdp_action::XDP_PASS,
        Some(matched) => xdp_verdict(arriving(&ctx, matched, Framing::Ethernet)),
    }
}

#[xdp(frags)]
fn localnet_probe_ip(ctx: XdpContext) -> u32 {
    match classify_ip(&PacketFrame::new(ctx.data(), ctx.data_end())) {
        None => xdp_action::XDP_PASS,
        Some(matched) => xdp_verdict(arriving(&ctx, matched, Framing::Ip)),
    }
}

/// `localnet_probe` for frames in one buffer: without `xdp.frags`, so it loads on kernels
/// without multi-buffer (and attaches only to devices whose MTU fits a page), and the length
/// comes from the frame's pointers instead of a helper call.
#[xdp]
fn localnet_probe_linear(ctx: XdpContext) -> u32 {
    match classify(&PacketFrame::new(ctx.data(), ctx.data_end())) {
        None => xdp_action::XDP_PASS,
        Some(matched) => xdp_verdict(arriving(&LinearXdp(ctx), matched, Framing::Ethernet)),
    }
}

#[xdp]
fn localnet_probe_linear_ip(ctx: XdpContext) -> u32 {
    match classify_ip(&PacketFrame::new(ctx.data(), ctx.data_end())) {
        None => xdp_action::XDP_PASS,
        Some(matched) => xdp_verdict(arriving(&LinearXdp(ctx), matched, Framing::Ip)),
    }
}

/// The tcx verdict that hands a frame to the next program, or to the stack when there is none
/// (`TCX_NEXT`). `TCX_PASS` (0) would end the chain and skip programs attached after this one.
const TCX_NEXT: i32 = -1;
/// `TCX_DROP`.
const TCX_DROP: i32 = 2;

#[classifier]
fn localnet_probe_tc(ctx: TcContext) -> i32 {
    match classify_skb(&ctx, Framing::Ethernet) {
        None => TCX_NEXT,
        Some(matched) => tcx_verdict(arriving(&ctx, matched, Framing::Ethernet)),
    }
}

#[classifier]
fn localnet_probe_tc_ip(ctx: TcContext) -> i32 {
    match classify_skb(&ctx, Framing::Ip) {
        None => TCX_NEXT,
        Some(matched) => tcx_verdict(arriving(&ctx, matched, Framing::Ip)),
    }
}

#[classifier]
fn localnet_probe_out(ctx: TcContext) -> i32 {
    if let Some(matched) = classify_skb(&ctx, Framing::Ethernet) {
        leaving(&ctx, matched, Framing::Ethernet);
    }
    TCX_NEXT
}

#[classifier]
fn localnet_probe_out_ip(ctx: TcContext) -> i32 {
    if let Some(matched) = classify_skb(&ctx, Framing::Ip) {
        leaving(&ctx, matched, Framing::Ip);
    }
    TCX_NEXT
}

#[inline(always)]
const fn xdp_verdict(action: Action) -> u32 {
    match action {
        Action::Dropped => xdp_action::XDP_DROP,
        Action::Passed | Action::Replied => xdp_action::XDP_PASS,
    }
}

#[inline(always)]
const fn tcx_verdict(action: Action) -> i32 {
    match action {
        Action::Dropped => TCX_DROP,
        Action::Passed | Action::Replied => TCX_NEXT,
    }
}

/// Classifies a socket buffer from its linear part, where the headers nearly always are. Only
/// when the classifier read past it (a truncated frame, or a driver that left the headers in
/// page fragments) does the kernel pull the first bytes into it, and the frame is read again.
/// (Copying them to the stack instead takes reads at offsets the verifier accepts only with
/// CAP_PERFMON.)
#[inline(always)]
fn classify_skb(ctx: &TcContext, framing: Framing) -> Option<LoopbackMatch> {
    let linear = LinearFrame {
        frame: PacketFrame::new(ctx.data(), ctx.data_end()),
        short: Cell::new(false),
    };
    let matched = classify_framed(&linear, framing);
    if matched.is_some() || !linear.short.get() {
        return matched.filter(|_| within_tag_limit(ctx, &linear.frame, framing));
    }
    ctx.pull_data(ctx.len().min(HEADERS_LEN)).ok()?;
    let frame = PacketFrame::new(ctx.data(), ctx.data_end());
    classify_framed(&frame, framing).filter(|_| within_tag_limit(ctx, &frame, framing))
}

/// Whether a matched frame is behind at most two VLAN tags on the wire, as XDP sees them: at tc
/// an outer tag may be in the socket buffer's metadata, off the frame. Read only for matched
/// frames.
#[inline(always)]
fn within_tag_limit(ctx: &TcContext, frame: &PacketFrame, framing: Framing) -> bool {
    let (vlan_proto, _) = ctx.offloaded_vlan();
    framing == Framing::Ip || vlan_proto == 0 || !two_inline_vlan_tags(frame)
}

#[inline(always)]
fn classify_framed<F: Frame>(frame: &F, framing: Framing) -> Option<LoopbackMatch> {
    match framing {
        Framing::Ethernet => classify(frame),
        Framing::Ip => classify_ip(frame),
    }
}

/// Counts a matched frame arriving at an interface, samples it if the interface may still send
/// samples, and says what to do with it: pass unless the interface is in drop mode, or not
/// configured (not ours to judge: the loader always configures before attaching).
#[inline(always)]
fn arriving<H: Hook>(ctx: &H, matched: LoopbackMatch, framing: Framing) -> Action {
    if cfg!(feature = "stop-after-classify") {
        return Action::Passed;
    }
    #[cfg(feature = "entry-in-program")]
    let config = Some(&raw mut PROGRAM_ENTRY);
    #[cfg(not(feature = "entry-in-program"))]
    let config = config_of(ctx.ifindex());
    let Some(config) = config else {
        return Action::Passed;
    };
    // SAFETY: an entry of either map, valid while the program runs. The loader replaces entries
    // whole and removes one only after detaching from its interface; other CPUs change only
    // `sample_tokens`, read in `sample` on its own.
    let Some(class) = (unsafe { (*config).arriving(matched) }) else {
        return Action::Passed;
    };
    if cfg!(feature = "stop-after-entry") {
        return class.action();
    }
    if cfg!(feature = "stop-after-counter") {
        // The counter updated as always, with a constant for the length it has not found.
        count(class.counter_key(), u64::from(MIN_CLASSIFIED_LEN));
        return class.action();
    }
    // Once per frame: without multi-buffer, the length takes the verifier twelve branches.
    let frame_len = ctx.frame_len();
    count(class.counter_key(), frame_len);
    sample(ctx, config, class, framing, frame_len);
    class.action()
}

/// Counts and samples a frame leaving an interface that [`LoopbackMatch::counted_leaving`]
/// says is the host answering from a loopback address.
#[inline(always)]
fn leaving<H: Hook>(ctx: &H, matched: LoopbackMatch, framing: Framing) {
    if !matched.counted_leaving() {
        return;
    }
    let Some(config) = config_of(ctx.ifindex()) else {
        return;
    };
    // SAFETY: as in `arriving`.
    let entry = unsafe { &*config };
    if entry.action().is_none() {
        return;
    }
    let class = entry.leaving(matched);
    let frame_len = ctx.frame_len();
    count(class.counter_key(), frame_len);
    sample(ctx, config, class, framing, frame_len);
}

/// The configuration entry of `ifindex`, in the map [`ConfigMap::of`] says, as the loader
/// writes it. Deciding by the ifindex, rather than trying the array first, leaves the ifindex
/// dead once it is looked up, which frees a register across the calls that follow.
#[inline(always)]
fn config_of(ifindex: u32) -> Option<*mut IfaceConfig> {
    match ConfigMap::of(ifindex) {
        ConfigMap::Array => IFACE_CONFIG.get_ptr_mut(ifindex),
        ConfigMap::High => IFACE_CONFIG_HIGH.get_ptr_mut(ifindex),
    }
}

#[inline(always)]
fn count(key: u32, frame_len: u64) {
    if let Some(counter) = COUNTERS.get_ptr_mut(key) {
        // SAFETY: a per-CPU array entry is this CPU's alone while the program runs.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += frame_len;
        }
    }
}

/// Takes one of the interface's sample tokens, if sampling is on and it has any left, and
/// sends a sample of the frame.
#[inline(always)]
fn sample<H: Hook>(
    ctx: &H,
    config: *mut IfaceConfig,
    class: FrameClass,
    framing: Framing,
    frame_len: u64,
) {
    // SAFETY: a plain read of a constant the loader may have set; volatile so the compiler
    // keeps both branches.
    if unsafe { core::ptr::read_volatile(&SAMPLING) } == 0 {
        return;
    }
    // SAFETY: the address of a field of the entry; nothing is read.
    let tokens = unsafe { &raw mut (*config).sample_tokens };
    // SAFETY: read while CPUs may take tokens from it: a stale value at worst lets a racing
    // CPU through, which takes the count below zero.
    if unsafe { core::ptr::read_volatile(tokens) } > 0 {
        // SAFETY: `tokens` points into the entry, valid and 8-byte aligned. The result is
        // unused, so this is one atomic add.
        unsafe { atomic_xadd::<i64, i64, { AtomicOrdering::Relaxed }>(tokens, -1) };
        let [family, address, action] = class.sample_bytes();
        // Packed: a BPF call takes at most five arguments, and in one register they leave
        // `send_sample` the registers it needs (6.1's verifier loses the bounds of a length
        // spilled to the stack).
        send_sample(
            ctx,
            config,
            [family, address, action, framing as u8],
            frame_len,
        );
    }
}

/// Sends one sample of the frame and counts it as sent, or as lost when the ring is full. A call
/// of its own rather than inlined: it runs at most at the sample rate, so the per-frame code
/// stays small. `config` is the interface's entry, whose slot is read here rather than on the
/// per-frame path; `class` is the sample's family, address, action and framing bytes;
/// `frame_len` is the frame's length on the wire.
#[inline(never)]
fn send_sample<H: Hook>(ctx: &H, config: *const IfaceConfig, class: [u8; 4], frame_len: u64) {
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
    let (vlan_proto, vlan_tci) = ctx.offloaded_vlan();
    let tag_len = if vlan_proto == 0 { 0 } else { VLAN_TAG_LEN };
    let sample = entry.as_mut_ptr();
    // SAFETY: `sample` is the reserved entry, `size_of::<Sample>()` bytes; every field is
    // written before it is submitted, `frame` beyond `captured_len` excepted (never read).
    unsafe {
        (*sample).timestamp_ns = bpf_ktime_get_ns();
        (*sample).ifindex = ctx.ifindex();
        (*sample).frame_len = frame_len as u32;
        (*sample).vlan_proto = vlan_proto;
        (*sample).vlan_tci = vlan_tci;
        (*sample)._reserved = 0;
        [
            (*sample).family,
            (*sample).address,
            (*sample).action,
            (*sample).framing,
        ] = class;
        // Room for the tag, which the reader puts back into the frame.
        (*sample).captured_len = ctx.capture(
            (&raw mut (*sample).frame).cast(),
            SAMPLE_CAPTURE_LEN as u32 - tag_len as u32,
        );
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
