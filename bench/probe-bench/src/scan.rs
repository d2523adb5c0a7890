//! `scan` against tcpdump over the same warm file: frames per second of `localnet-probe scan
//! FILE` and of `tcpdump -r FILE -w /dev/null` with the nearest filter pcap-filter can say,
//! and the scan's peak resident memory.
//!
//! Where the filter is not the classifier: it matches IPv4 headers whatever their version
//! nibble and IHL (the classifier refuses malformed ones), and takes `vlan` for any of 0x8100,
//! 0x88a8 and 0x9100 only as libpcap does (0x9100 as the outer tag of QinQ). The file holds
//! no malformed headers, so both match the same frames; each run checks it.

use std::{
    io::{BufWriter, Write as _},
    net::{Ipv4Addr, Ipv6Addr},
    path::Path,
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, bail};
use serde::Serialize;
use test_frames::{TPID_8021AD, TPID_8021Q, ipv4, ipv6, mapped};

use crate::{Plan, stats::Summary};

/// The loopback forms, untagged, behind one tag, behind two.
pub const TCPDUMP_FILTER: &str = "net 127.0.0.0/8 or ip6 net ::1/128 or ip6 net ::ffff:127.0.0.0/104 \
     or (vlan and (net 127.0.0.0/8 or ip6 net ::1/128 or ip6 net ::ffff:127.0.0.0/104 \
     or (vlan and (net 127.0.0.0/8 or ip6 net ::1/128 or ip6 net ::ffff:127.0.0.0/104))))";

#[derive(Debug, Serialize)]
pub struct ScanBench {
    pub frames: u64,
    pub matched: u64,
    pub file_bytes: u64,
    pub scan_frames_per_sec: Summary,
    pub tcpdump_frames_per_sec: Summary,
    pub scan_peak_rss_kib: Summary,
    pub filter: &'static str,
}

/// The mix: mostly benign IPv4 and IPv6, some tagged, one frame in a hundred loopback in one
/// of its forms.
fn mix() -> Vec<Vec<u8>> {
    let a4 = Ipv4Addr::new(198, 18, 0, 1);
    let b4 = Ipv4Addr::new(198, 18, 0, 2);
    let a6: Ipv6Addr = "fd00::1".parse().expect("address");
    let b6: Ipv6Addr = "fd00::2".parse().expect("address");
    let mut mix = Vec::new();
    for n in 0..100 {
        let frame = match n {
            0 => ipv4(a4, Ipv4Addr::LOCALHOST).build(),
            1..=40 => ipv4(a4, b4).payload(&[0; 200]).build(),
            41..=60 => ipv6(a6, b6).payload(&[0; 200]).build(),
            61..=80 => ipv4(a4, b4).vlan(TPID_8021Q).build(),
            81..=90 => ipv6(a6, b6).vlan(TPID_8021AD).vlan(TPID_8021Q).build(),
            _ => ipv4(b4, a4).ports(443, 40000).payload(&[0; 1200]).build(),
        };
        mix.push(frame);
    }
    // The other forms, in place of benign frames.
    mix[50] = ipv6(Ipv6Addr::LOCALHOST, b6).vlan(TPID_8021Q).build();
    mix[70] = ipv6(a6, mapped(Ipv4Addr::LOCALHOST)).build();
    mix
}

fn write_capture(path: &Path, frames: u64) -> anyhow::Result<u64> {
    let mix = mix();
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    // pcap, microseconds, little-endian, version 2.4, snaplen 65535, Ethernet.
    for field in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65535, 1] {
        out.write_all(&field.to_le_bytes())?;
    }
    let mut matched = 0;
    for n in 0..frames {
        let frame = &mix[(n % mix.len() as u64) as usize];
        let len = frame.len() as u32;
        for field in [(n / 100_000) as u32, (n % 100_000) as u32 * 10, len, len] {
            out.write_all(&field.to_le_bytes())?;
        }
        out.write_all(frame)?;
        matched += u64::from(probe_common::classify(frame.as_slice()).is_some());
    }
    out.flush()?;
    Ok(matched)
}

/// Runs `command` to its end; the seconds it took, its stdout, and its peak RSS in KiB.
fn timed(command: &mut Command) -> anyhow::Result<(f64, Vec<u8>, String, i64)> {
    let started = Instant::now();
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("run {command:?}"))?;
    let pid = child.id() as i32;
    let output = {
        // Read both pipes before reaping, with wait4 for this child's own rusage.
        let mut child = child;
        let mut stdout = Vec::new();
        let mut stderr = String::new();
        let mut out_pipe = child.stdout.take().expect("piped");
        let mut err_pipe = child.stderr.take().expect("piped");
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut err_pipe, &mut text);
            text
        });
        std::io::Read::read_to_end(&mut out_pipe, &mut stdout)?;
        stderr.push_str(&reader.join().expect("stderr reader"));
        (stdout, stderr)
    };
    let mut status = 0;
    // SAFETY: rusage is plain data, filled by wait4 for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::wait4(pid, &raw mut status, 0, &raw mut usage) } != pid {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    Ok((
        started.elapsed().as_secs_f64(),
        output.0,
        output.1,
        usage.ru_maxrss,
    ))
}

pub fn measure(plan: &Plan, probe_binary: &str) -> anyhow::Result<ScanBench> {
    let dir =
        std::env::temp_dir().join(format!("localnet-probe-bench-scan-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("capture.pcap");
    let result = (|| {
        let matched = write_capture(&file, plan.scan_frames)?;
        let file_bytes = std::fs::metadata(&file)?.len();
        // Warm: both read it from the page cache.
        std::io::copy(&mut std::fs::File::open(&file)?, &mut std::io::sink())?;
        let frames = plan.scan_frames as f64;
        let (mut scan_rates, mut tcpdump_rates, mut rss) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..plan.scan_rounds {
            let (seconds, stdout, stderr, peak) = timed(
                Command::new(probe_binary)
                    .args(["scan", "--json"])
                    .arg(&file),
            )?;
            let report: serde_json::Value = serde_json::from_slice(&stdout)
                .with_context(|| format!("scan's report: {stderr}"))?;
            if report["files"][0]["packets_matched"] != matched {
                bail!(
                    "scan matched {} frames, not {matched}",
                    report["files"][0]["packets_matched"]
                );
            }
            scan_rates.push(frames / seconds);
            rss.push(peak as f64);
            let (seconds, _, stderr, _) =
                timed(Command::new("tcpdump").args(["-r"]).arg(&file).args([
                    "-w",
                    "/dev/null",
                    TCPDUMP_FILTER,
                ]))?;
            // tcpdump says nothing of what it wrote; a run with -c counts it once below.
            let _ = stderr;
            tcpdump_rates.push(frames / seconds);
        }
        let (_, stdout, stderr, _) = timed(
            Command::new("tcpdump")
                .args(["-nn", "-r"])
                .arg(&file)
                .arg(TCPDUMP_FILTER),
        )?;
        let tcpdump_matched = stdout.iter().filter(|&&byte| byte == b'\n').count() as u64;
        if tcpdump_matched != matched {
            bail!("tcpdump's filter matched {tcpdump_matched} frames, not {matched}: {stderr}");
        }
        Ok(ScanBench {
            frames: plan.scan_frames,
            matched,
            file_bytes,
            scan_frames_per_sec: Summary::of(&scan_rates),
            tcpdump_frames_per_sec: Summary::of(&tcpdump_rates),
            scan_peak_rss_kib: Summary::of(&rss),
            filter: TCPDUMP_FILTER,
        })
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}
