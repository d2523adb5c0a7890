//! What can go wrong loading the programs and serving an interface.

use super::*;

#[derive(Debug, Error)]
pub enum ProbeError {
    #[error("loading the XDP object failed")]
    Load(#[source] aya::EbpfError),
    #[error("the kernel verifier rejected the XDP program: {io_error}")]
    Verifier {
        io_error: io::Error,
        verifier_log: String,
    },
    #[error("the embedded object has no {0}")]
    MissingPart(&'static str),
    #[error(transparent)]
    Program(#[from] ProgramError),
    #[error(transparent)]
    Map(#[from] MapError),
    #[error("cannot count the CPUs")]
    Cpus(#[source] io::Error),
    #[error("cannot read the counters")]
    ReadCounters(#[source] io::Error),
    #[error(
        "{map} holds counts for interface slot {slot} that no kernel could have counted: \
         something other than the probe wrote them, and they cannot be trusted; \
         `localnet-probe detach` removes the standing filter"
    )]
    ImplausibleCounts { map: &'static str, slot: u32 },
    #[error("cannot refill the sample budgets")]
    Refill(#[source] io::Error),
    #[error(
        "all {capacity} interfaces that --capacity allows are served: start with a larger \
         --capacity (at most {MAX_SLOTS})"
    )]
    Full { capacity: u32 },
    #[error("interface {ifindex} is not configured")]
    NotConfigured { ifindex: u32 },
    #[error(
        "no native XDP here ({}); use --xdp-mode generic or auto, which falls back to it",
        native_refusal(.0)
    )]
    NoNativeSupport(io::Error),
    #[error(
        "the driver takes this MTU in native XDP only with {feature}, which this kernel lacks \
         ({0}); lower the MTU, use --xdp-mode generic or auto, or leave the interface out",
        feature = Feature::XDP_FRAGS
    )]
    NativeNeedsMultiBuffer(io::Error),
    #[error(
        "the kernel refused the XDP link as invalid ({0}): kernels before Linux {minimum} have no \
         XDP BPF links, which localnet-probe attaches with",
        minimum = crate::kernel::features::MINIMUM_KERNEL
    )]
    NoXdpLinks(io::Error),
    #[error("another XDP program is attached (the kernel said: {0})")]
    Occupied(io::Error),
    #[error(transparent)]
    Features(#[from] FeatureProbeError),
    #[error(
        "the kernel refused a clsact filter at tc {} (this kernel has no tcx, Linux 6.6, so the \
         probe falls back to one): {error}",
        direction.name()
    )]
    Clsact {
        direction: Direction,
        error: io::Error,
    },
    #[error(
        "tcx {} of this interface already holds as many programs as the kernel allows ({error}); \
         remove one of them, or leave the interface out",
        direction.name()
    )]
    TcxFull {
        direction: Direction,
        error: io::Error,
    },
    #[error("the kernel refused the attachment: {0}")]
    Attach(io::Error),
    #[error(transparent)]
    Pin(#[from] PinError),
    #[error("cannot pin the link of interface {ifindex}: {error}")]
    PinLink { ifindex: u32, error: io::Error },
    #[error("cannot take over the pinned link of interface {ifindex}: {error}")]
    Adopt { ifindex: u32, error: io::Error },
    #[error(
        "cannot take over the pinned link of interface {ifindex}: its driver takes its MTU in \
         native XDP only with {}, which this kernel lacks ({error}); lower its MTU, or remove it \
         from the standing filter with `localnet-probe detach`",
        Feature::XDP_FRAGS
    )]
    AdoptNeedsMultiBuffer { ifindex: u32, error: io::Error },
}

/// Why a driver refused native XDP, in words: ERANGE means the device's MTU is above what its
/// driver can run XDP with (a page on veth), not that it has no XDP at all.
pub fn native_refusal(error: &io::Error) -> String {
    if error.raw_os_error() == Some(libc::ERANGE) {
        format!("the driver refused it for this MTU, too large for native XDP: {error}")
    } else {
        format!("the driver refused it: {error}")
    }
}
