//! What the running kernel offers the probe, found by asking it, never by its version: vendor
//! kernels (RHEL's 5.14 above all) carry features backported from far newer releases, and a
//! custom build may leave out what its version would have.

use std::{ffi::CStr, fmt, io};

use aya::{maps::MapType, sys::is_map_supported};
use probe_common::LINEAR_FRAME_MAX;
use serde::Serialize;

use crate::kernel::{
    bpffs::{bpf, owned},
    link::{Direction, query_tcx},
};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_F_XDP_HAS_FRAGS: u32 = 1 << 5;
/// `lo`, which every network namespace has.
const LOOPBACK_IFINDEX: u32 = 1;

/// The kernel features the probe's hooks depend on, and the release for reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KernelFeatures {
    /// `uname -r`, for information only: nothing is decided from it.
    pub release: String,
    /// tcx links (Linux 6.6): programs at tc ingress and egress owned by a link rather than a
    /// clsact qdisc's filter.
    pub tcx: bool,
    /// XDP multi-buffer (`xdp.frags`, Linux 5.18): XDP on devices whose MTU is above a page, and
    /// the helpers that read a frame's whole length and bytes.
    pub xdp_frags: bool,
    /// BPF ring buffer maps (Linux 5.8), which carry the samples.
    pub ring_buffer: bool,
    /// The features [`WITHOUT_VARIABLE`] told the probe to treat as missing although the kernel
    /// has them, so that a fallback can be tried (and a bug report shows it was) on a kernel
    /// that would not need it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub masked: Vec<&'static str>,
}

/// The environment variable naming features (comma-separated: `tcx`, `xdp_frags`) to treat as
/// missing. It can only take features away, never claim one the kernel lacks.
pub const WITHOUT_VARIABLE: &str = "LOCALNET_PROBE_WITHOUT";

/// The features [`WITHOUT_VARIABLE`] may name.
const MASKABLE: [&str; 2] = ["tcx", "xdp_frags"];

#[derive(Debug, thiserror::Error)]
pub enum FeatureProbeError {
    #[error("cannot probe the kernel for {feature}: {error}")]
    Probe {
        feature: &'static str,
        #[source]
        error: io::Error,
    },
    #[error("cannot read the kernel release: {0}")]
    Release(#[source] io::Error),
    #[error(
        "{WITHOUT_VARIABLE} names {name:?}, which is not a feature it can take away (it takes: {})",
        MASKABLE.join(", ")
    )]
    UnknownMask { name: String },
}

impl KernelFeatures {
    /// Probes the running kernel. Takes CAP_BPF and CAP_NET_ADMIN, as the probe itself does;
    /// loads nothing that stays, and attaches nothing.
    pub fn probe() -> Result<Self, FeatureProbeError> {
        let probe_error = |feature| move |error| FeatureProbeError::Probe { feature, error };
        let masked = masked(std::env::var_os(WITHOUT_VARIABLE).as_deref())?;
        let found = |feature: &str, has: bool| has && !masked.contains(&feature);
        Ok(Self {
            release: release().map_err(FeatureProbeError::Release)?,
            tcx: found("tcx", has_tcx().map_err(probe_error("tcx"))?),
            xdp_frags: found(
                "xdp_frags",
                has_xdp_frags().map_err(probe_error("XDP multi-buffer"))?,
            ),
            ring_buffer: is_map_supported(MapType::RingBuf)
                .map_err(|error| error.io_error)
                .map_err(probe_error("ring buffers"))?,
            masked,
        })
    }
}

/// The features a [`WITHOUT_VARIABLE`] value names, each once.
fn masked(value: Option<&std::ffi::OsStr>) -> Result<Vec<&'static str>, FeatureProbeError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let value = value.to_string_lossy();
    let mut masked = Vec::new();
    for name in value
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
    {
        let feature = MASKABLE
            .into_iter()
            .find(|feature| *feature == name)
            .ok_or_else(|| FeatureProbeError::UnknownMask {
                name: name.to_owned(),
            })?;
        if !masked.contains(&feature) {
            masked.push(feature);
        }
    }
    Ok(masked)
}

/// The kernel's release, as `uname -r` says it.
fn release() -> io::Result<String> {
    // SAFETY: `utsname` is plain old data; zeroes are a valid value.
    let mut name: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `name` is valid for writes for the call.
    if unsafe { libc::uname(&raw mut name) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel writes a NUL-terminated string that fits the field.
    let release = unsafe { CStr::from_ptr(name.release.as_ptr()) };
    Ok(release.to_string_lossy().into_owned())
}

/// Whether the kernel knows tcx: it answers a query of `lo`'s tcx ingress hook (Linux 6.6 with
/// `CONFIG_NET_XGRESS`), which reads and changes nothing, where older ones refuse the attach
/// type.
fn has_tcx() -> io::Result<bool> {
    Ok(query_tcx(LOOPBACK_IFINDEX, Direction::Ingress, &mut [])?.is_some())
}

/// The start of `union bpf_attr` as `BPF_PROG_LOAD` reads it, up to the program flags.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_count: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
}

/// `r0 = XDP_PASS; exit`, as BPF instructions.
const XDP_PASS_PROGRAM: [u64; 2] = [
    // BPF_ALU64 | BPF_MOV | BPF_K, dst r0, imm 2.
    0xb7 | (2 << 32),
    // BPF_JMP | BPF_EXIT.
    0x95,
];

/// Whether the kernel loads an XDP program declaring multi-buffer support (Linux 5.18); older
/// ones refuse the unknown flag with EINVAL. The program is closed at once, never attached.
fn has_xdp_frags() -> io::Result<bool> {
    let license = c"GPL";
    let attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_count: XDP_PASS_PROGRAM.len() as u32,
        insns: XDP_PASS_PROGRAM.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_flags: BPF_F_XDP_HAS_FRAGS,
        ..ProgLoadAttr::default()
    };
    // SAFETY: `insns` and `license` point at data alive for the call; no log is asked for.
    match unsafe { bpf(BPF_PROG_LOAD, &attr) } {
        Ok(fd) => {
            drop(owned(fd));
            Ok(true)
        }
        Err(error) if error.raw_os_error() == Some(libc::EINVAL) => Ok(false),
        Err(error) => Err(error),
    }
}

/// A kernel feature the probe can do without, in part: its key (as in [`KernelFeatures`]' fields
/// and [`WITHOUT_VARIABLE`]), its name in sentences, and the upstream release that brought it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Feature {
    pub key: &'static str,
    pub name: &'static str,
    /// The upstream Linux release that has it; distribution kernels may have it earlier.
    pub since: &'static str,
}

impl Feature {
    pub const TCX: Self = Self {
        key: "tcx",
        name: "tcx",
        since: "6.6",
    };
    pub const XDP_FRAGS: Self = Self {
        key: "xdp_frags",
        name: "XDP multi-buffer",
        since: "5.18",
    };
    pub const RING_BUFFER: Self = Self {
        key: "ring_buffer",
        name: "BPF ring buffer",
        since: "5.8",
    };
    pub const ALL: [Self; 3] = [Self::TCX, Self::XDP_FRAGS, Self::RING_BUFFER];
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (Linux {} and later have it)", self.name, self.since)
    }
}

/// The oldest upstream release the probe runs on, reasoned from what the object and the loader
/// need (none older was booted; see docs/kernels.md): XDP BPF links (5.9), which every XDP
/// attachment is, on top of ring buffers and CAP_BPF (5.8) and batched map reads (5.6). XDP
/// multi-buffer (5.18) and tcx (6.6) are not needed: without them the probe falls back.
pub const MINIMUM_KERNEL: &str = "5.9";

impl KernelFeatures {
    pub const fn has(&self, feature: Feature) -> bool {
        match feature.key.as_bytes() {
            b"tcx" => self.tcx,
            b"xdp_frags" => self.xdp_frags,
            _ => self.ring_buffer,
        }
    }

    /// Each feature and whether this kernel has it, in words: `tcx yes, XDP multi-buffer no
    /// (masked by LOCALNET_PROBE_WITHOUT), …`.
    pub fn summary(&self) -> String {
        Feature::ALL
            .iter()
            .map(|feature| {
                let found = if self.has(*feature) {
                    "yes"
                } else if self.masked.contains(&feature.key) {
                    "no (masked by LOCALNET_PROBE_WITHOUT)"
                } else {
                    "no"
                };
                format!("{} {found}", feature.name)
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What a bug report carries of the kernel (`--version`, `status --json`): the oldest release
/// the probe runs on, and what this kernel offers, or why it could not be asked.
#[derive(Debug, Serialize)]
pub struct KernelReport {
    /// [`MINIMUM_KERNEL`].
    pub minimum: &'static str,
    #[serde(flatten)]
    pub found: Probed,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Probed {
    Features(KernelFeatures),
    NotProbed {
        release: Option<String>,
        not_probed: String,
        /// Whether the kernel refused the probe, which takes CAP_BPF and CAP_NET_ADMIN (rather
        /// than, say, an unknown name in [`WITHOUT_VARIABLE`]).
        #[serde(skip)]
        refused: bool,
    },
}

impl KernelReport {
    /// Probes the running kernel; without the privileges to, says why.
    pub fn of_this_kernel() -> Self {
        Self::from(KernelFeatures::probe())
    }

    /// As `--version` says it, one line per fact.
    pub fn lines(&self) -> String {
        let minimum = format!(
            "minimum kernel: Linux {MINIMUM_KERNEL}; Linux {} for {} (interfaces whose frames can \
             be longer than {LINEAR_FRAME_MAX} bytes), Linux {} for {}, the first choice for \
             --on-conflict tc and --egress",
            Feature::XDP_FRAGS.since,
            Feature::XDP_FRAGS.name,
            Feature::TCX.since,
            Feature::TCX.name,
        );
        let this = match &self.found {
            Probed::Features(features) => {
                format!("kernel {}: {}", features.release, features.summary())
            }
            Probed::NotProbed {
                release,
                not_probed,
                refused,
            } => format!(
                "kernel {}: features not probed ({not_probed}{})",
                release.as_deref().unwrap_or("of unknown release"),
                if *refused {
                    "; probing takes CAP_BPF and CAP_NET_ADMIN, as running the probe does"
                } else {
                    ""
                }
            ),
        };
        format!("{minimum}\n{this}")
    }
}

impl From<Result<KernelFeatures, FeatureProbeError>> for KernelReport {
    fn from(probed: Result<KernelFeatures, FeatureProbeError>) -> Self {
        Self {
            minimum: MINIMUM_KERNEL,
            found: match probed {
                Ok(features) => Probed::Features(features),
                Err(error) => Probed::NotProbed {
                    release: release().ok(),
                    refused: matches!(error, FeatureProbeError::Probe { .. }),
                    not_probed: error.to_string(),
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::*;

    #[test]
    fn the_mask_names_known_features_once() {
        assert_eq!(masked(None).unwrap(), Vec::<&str>::new());
        assert_eq!(masked(Some(OsStr::new(""))).unwrap(), Vec::<&str>::new());
        assert_eq!(
            masked(Some(OsStr::new("tcx, xdp_frags,tcx"))).unwrap(),
            ["tcx", "xdp_frags"]
        );
        let error = masked(Some(OsStr::new("tcx,ring_buffer"))).unwrap_err();
        assert_eq!(
            error.to_string(),
            "LOCALNET_PROBE_WITHOUT names \"ring_buffer\", which is not a feature it can take \
             away (it takes: tcx, xdp_frags)"
        );
    }

    fn features(tcx: bool, xdp_frags: bool, masked: Vec<&'static str>) -> KernelFeatures {
        KernelFeatures {
            release: "5.15.0-1-generic".to_owned(),
            tcx,
            xdp_frags,
            ring_buffer: true,
            masked,
        }
    }

    #[test]
    fn the_summary_says_each_feature_and_what_masked_it() {
        assert_eq!(
            features(false, false, vec!["xdp_frags"]).summary(),
            "tcx no, XDP multi-buffer no (masked by LOCALNET_PROBE_WITHOUT), BPF ring buffer yes"
        );
    }

    #[test]
    fn the_report_has_the_minimum_and_the_features_or_why_not() {
        let report = KernelReport::from(Ok(features(true, false, Vec::new())));
        assert_eq!(
            serde_json::to_value(&report).unwrap(),
            serde_json::json!({
                "minimum": MINIMUM_KERNEL,
                "release": "5.15.0-1-generic",
                "tcx": true,
                "xdp_frags": false,
                "ring_buffer": true,
            })
        );
        assert_eq!(
            report.lines(),
            "minimum kernel: Linux 5.9; Linux 5.18 for XDP multi-buffer (interfaces whose frames \
             can be longer than 4095 bytes), Linux 6.6 for tcx, the first choice for \
             --on-conflict tc and --egress\nkernel 5.15.0-1-generic: tcx yes, XDP multi-buffer \
             no, BPF ring buffer yes"
        );
        let error = FeatureProbeError::Probe {
            feature: "tcx",
            error: io::Error::from_raw_os_error(libc::EPERM),
        };
        let json = serde_json::to_value(KernelReport::from(Err(error))).unwrap();
        assert_eq!(json["minimum"], MINIMUM_KERNEL);
        assert!(json["release"].is_string(), "{json}");
        assert_eq!(
            json["not_probed"],
            "cannot probe the kernel for tcx: Operation not permitted (os error 1)"
        );
    }
}
