//! CPU and memory of a running process, and the BPF maps it holds, from /proc.

use std::{fs, time::Instant};

use anyhow::{Context as _, bail};
use aya::maps::MapInfo;
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct Footprint {
    /// CPU time over the window, in percent of one core.
    pub cpu_percent: f64,
    /// The part of `cpu_percent` spent in the kernel on the process's behalf: its syscalls.
    pub system_percent: f64,
    /// Peak resident set size (VmHWM), KiB.
    pub peak_rss_kib: u64,
    /// Of the resident set at the end of the window, KiB: the process's own memory (RssAnon)...
    pub anon_rss_kib: u64,
    /// ... and mapped files and BPF maps (RssFile: the binary, and the sample ring buffer).
    pub file_rss_kib: u64,
}

/// CPU time of `pid` at the start of a window.
pub struct FootprintStart {
    pid: i32,
    ticks: CpuTicks,
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
            system_percent: a.system_percent.max(b.system_percent),
            peak_rss_kib: a.peak_rss_kib.max(b.peak_rss_kib),
            anon_rss_kib: a.anon_rss_kib.max(b.anon_rss_kib),
            file_rss_kib: a.file_rss_kib.max(b.file_rss_kib),
        })
    }
}

impl FootprintStart {
    pub fn finish(self) -> anyhow::Result<Footprint> {
        let ticks = cpu_ticks(self.pid)?;
        let seconds = self.at.elapsed().as_secs_f64();
        // SAFETY: sysconf has no preconditions.
        let ticks_per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let percent = |ticks: u64| ticks as f64 / ticks_per_sec / seconds * 100.0;
        let system = ticks.system - self.ticks.system;
        Ok(Footprint {
            cpu_percent: percent(ticks.user - self.ticks.user + system),
            system_percent: percent(system),
            peak_rss_kib: peak_rss_kib(self.pid)?,
            anon_rss_kib: status_kib(self.pid, "RssAnon")?,
            file_rss_kib: status_kib(self.pid, "RssFile")?,
        })
    }
}

/// CPU time of a process, in clock ticks.
#[derive(Clone, Copy)]
struct CpuTicks {
    /// utime: in the process itself.
    user: u64,
    /// stime: in the kernel on its behalf.
    system: u64,
}

fn cpu_ticks(pid: i32) -> anyhow::Result<CpuTicks> {
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
    Ok(CpuTicks {
        user: field(11)?,
        system: field(12)?,
    })
}

/// CPU seconds (user and system) `pid` has used.
pub fn cpu_secs(pid: i32) -> anyhow::Result<f64> {
    let ticks = cpu_ticks(pid)?;
    // SAFETY: sysconf has no preconditions.
    let ticks_per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok((ticks.user + ticks.system) as f64 / ticks_per_sec)
}

/// The resident set size (VmRSS) of `pid` now, KiB.
pub fn rss_kib(pid: i32) -> anyhow::Result<u64> {
    status_kib(pid, "VmRSS")
}

/// The peak resident set size (VmHWM) of `pid` so far, KiB.
pub fn peak_rss_kib(pid: i32) -> anyhow::Result<u64> {
    status_kib(pid, "VmHWM")
}

/// A field of /proc/pid/status given in kB.
fn status_kib(pid: i32, field: &str) -> anyhow::Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no {field} in /proc/pid/status"))
}

/// `BPF_MAP_TYPE_PERCPU_ARRAY`, as fdinfo's `map_type` gives it.
pub const PERCPU_ARRAY: u32 = 6;

/// A BPF map behind one of a process's file descriptors, as the descriptor's fdinfo describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BpfMap {
    pub id: u32,
    /// `enum bpf_map_type`.
    pub map_type: u32,
    pub value_size: u32,
    pub max_entries: u32,
}

impl BpfMap {
    /// `None` for a descriptor that is not a BPF map.
    fn parse(fdinfo: &str) -> Option<Self> {
        let field = |name: &str| {
            fdinfo.lines().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                (key == name).then(|| value.trim().parse().ok())?
            })
        };
        Some(Self {
            id: field("map_id")?,
            map_type: field("map_type")?,
            value_size: field("value_size")?,
            max_entries: field("max_entries")?,
        })
    }
}

/// The BPF maps `pid` holds open, each once: a map may sit behind several descriptors.
pub fn bpf_maps(pid: i32) -> anyhow::Result<Vec<BpfMap>> {
    let dir = format!("/proc/{pid}/fdinfo");
    let mut maps = Vec::new();
    for entry in fs::read_dir(&dir).with_context(|| format!("read {dir}"))? {
        // A descriptor may be closed between listing and reading; it is no map to count then.
        let Ok(fdinfo) = fs::read_to_string(entry?.path()) else {
            continue;
        };
        if let Some(map) = BpfMap::parse(&fdinfo).filter(|map| !maps.contains(map)) {
            maps.push(map);
        }
    }
    Ok(maps)
}

/// The one map of `map_type` named `name` (as the kernel keeps it) that `pid` holds.
pub fn bpf_map_named(pid: i32, map_type: u32, name: &str) -> anyhow::Result<BpfMap> {
    let mut found = Vec::new();
    for map in bpf_maps(pid)? {
        if map.map_type == map_type
            && MapInfo::from_id(map.id)
                .with_context(|| format!("map {} of process {pid}", map.id))?
                .name_as_str()
                == Some(name)
        {
            found.push(map);
        }
    }
    match found[..] {
        [map] => Ok(map),
        _ => bail!(
            "expected one map of type {map_type} named {name} among those of process {pid}, \
             found {}",
            found.len()
        ),
    }
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
        assert!(
            footprint.system_percent <= footprint.cpu_percent,
            "{footprint:?}"
        );
        assert!(footprint.peak_rss_kib > 100, "{footprint:?}");
    }

    #[test]
    fn parses_a_map_fdinfo() {
        let fdinfo = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t2052\nmap_type:\t6\n\
                      key_size:\t4\nvalue_size:\t16\nmax_entries:\t1152\nmap_flags:\t0x0\n\
                      map_extra:\t0x0\nmemlock:\t37504\nmap_id:\t42\nfrozen:\t0\n";
        assert_eq!(
            BpfMap::parse(fdinfo),
            Some(BpfMap {
                id: 42,
                map_type: 6,
                value_size: 16,
                max_entries: 1152,
            })
        );
    }

    #[test]
    fn other_descriptors_are_no_maps() {
        assert_eq!(
            BpfMap::parse("pos:\t0\nflags:\t02\nmnt_id:\t15\nino:\t7\n"),
            None
        );
        // A BPF program's fdinfo has no map fields.
        assert_eq!(
            BpfMap::parse("pos:\t0\nprog_type:\t6\nprog_jited:\t1\nprog_id:\t9\n"),
            None
        );
    }

    #[test]
    fn this_process_holds_no_maps() {
        assert_eq!(bpf_maps(std::process::id() as i32).unwrap(), []);
    }
}
