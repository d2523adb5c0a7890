//! CPU and memory of a running process, from /proc.

use std::{fs, time::Instant};

use anyhow::Context as _;
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct Footprint {
    /// CPU time over the window, in percent of one core.
    pub cpu_percent: f64,
    /// Peak resident set size (VmHWM), KiB.
    pub peak_rss_kib: u64,
}

/// CPU time of `pid` at the start of a window.
pub struct FootprintStart {
    pid: i32,
    ticks: u64,
    at: Instant,
}

impl Footprint {
    pub fn start(pid: i32) -> anyhow::Result<FootprintStart> {
        Ok(FootprintStart {
            pid,
            ticks: cpu_ticks(pid)?,
            at: Instant::now(),
        })
    }

    /// The highest CPU and RSS among several windows.
    pub fn worst(footprints: impl Iterator<Item = Self>) -> Option<Self> {
        footprints.reduce(|a, b| Self {
            cpu_percent: a.cpu_percent.max(b.cpu_percent),
            peak_rss_kib: a.peak_rss_kib.max(b.peak_rss_kib),
        })
    }
}

impl FootprintStart {
    pub fn finish(self) -> anyhow::Result<Footprint> {
        let ticks = cpu_ticks(self.pid)? - self.ticks;
        let seconds = self.at.elapsed().as_secs_f64();
        // SAFETY: sysconf has no preconditions.
        let ticks_per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        Ok(Footprint {
            cpu_percent: ticks as f64 / ticks_per_sec / seconds * 100.0,
            peak_rss_kib: peak_rss_kib(self.pid)?,
        })
    }
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: i32) -> anyhow::Result<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("process {pid} is gone"))?;
    // The command name may hold spaces; fields are counted after its closing parenthesis.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("malformed /proc/pid/stat")?
        .1
        .split_whitespace()
        .collect();
    let field = |index: usize| -> anyhow::Result<u64> {
        Ok(fields.get(index).context("short /proc/pid/stat")?.parse()?)
    };
    // utime and stime are fields 14 and 15 of the line; `fields` starts at field 3.
    Ok(field(11)? + field(12)?)
}

fn peak_rss_kib(pid: i32) -> anyhow::Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .context("no VmHWM in /proc/pid/status")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let pid = std::process::id() as i32;
        let start = Footprint::start(pid).unwrap();
        let busy = Instant::now();
        let mut x = 0u64;
        while busy.elapsed().as_millis() < 200 {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let footprint = start.finish().unwrap();
        assert!(footprint.cpu_percent > 0.0, "{footprint:?}");
        assert!(footprint.peak_rss_kib > 100, "{footprint:?}");
    }
}
