//! The report as Markdown: a section per measurement, with its targets.

use super::*;

impl Report {
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let _ = writeln!(
            out,
            "Machine: {}, {} CPUs, Linux {}; unix time {}.\n",
            m.cpu, m.cpus, m.kernel, m.timestamp
        );

        if let Some(k) = &self.kernel_cost {
            Self::kernel_markdown(&mut out, k);
        }
        if let Some(t) = &self.throughput {
            Self::veth_markdown(&mut out, t);
        }
        if self.kernel_cost.is_some() || self.throughput.is_some() {
            Self::tc_markdown(
                &mut out,
                self.kernel_cost.as_ref(),
                self.throughput.as_ref(),
            );
        }
        if let Some(u) = &self.userspace {
            Self::userspace_markdown(&mut out, u);
        }
        if let Some(s) = &self.startup {
            Self::startup_markdown(&mut out, s);
        }
        if let Some(h) = &self.hotplug {
            Self::hotplug_markdown(&mut out, h);
        }
        if let Some(n) = &self.node {
            node::markdown(&mut out, n);
        }
        if let Some(scan) = &self.scan {
            Self::scan_markdown(&mut out, scan);
        }

        for skipped in &self.not_measured {
            let _ = writeln!(
                out,
                "\n**{}**: not measured here: {}.",
                skipped.section, skipped.why
            );
        }
        out.push_str(
            "\n**Targets**:\n\n| goal | measured | met | why, when missed |\n| --- | --- | --- | --- |\n",
        );
        for target in &self.targets {
            let met = match (target.met, target.shortfall_percent) {
                (true, _) => "yes".to_owned(),
                (false, Some(shortfall)) => format!("**no**, off by {shortfall:.1} %"),
                (false, None) => "**no**".to_owned(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {met} | {} |",
                target.goal,
                target.measured,
                target.why.as_deref().unwrap_or("")
            );
        }
        out
    }

    fn kernel_markdown(out: &mut String, k: &KernelCost) {
        use kernel_cost::{
            EMPTY, HEADERS_DROP, PROBE_DROP, PROBE_DROP_SAMPLING, PROBE_MONITOR,
            PROBE_MONITOR_SAMPLING, XDP_FILTER,
        };

        let _ = writeln!(
            out,
            "**In-kernel cost per frame** (BPF_PROG_TEST_RUN, {} repeats × {} interleaved rounds, \
             each of which loads every program afresh, in an order of its own, so that no figure \
             is one placement's in kernel memory, and starts with a short pass left out; median \
             ns per frame, min–max; ratios and differences are medians of per-round ones; \"read \
             headers\": a program that reads the ethertype and the IP addresses, \
             bounds-checked, and drops, what any classifier pays; \"sampling\": {} \
             samples/s per interface, the CLI's default, with the limit used up, as under a \
             flood):\n",
            k.repeat, k.rounds, k.sample_rate
        );
        out.push_str(
            "| frame | empty XDP_PASS | read headers | probe (monitor) | probe (drop) | probe (monitor, \
             sampling) | probe (drop, sampling) | xdp-filter | monitor ÷ empty | drop ÷ empty | \
             sampling adds (monitor / drop) | xdp-filter ÷ monitor |\n",
        );
        out.push_str("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
        for (frame, _, _) in kernel_cost::frames() {
            let cell = |subject: &str| {
                k.results
                    .iter()
                    .find(|r| r.subject == subject && r.frame == frame)
                    .map_or("–".to_owned(), |r| {
                        format!(
                            "{:.1} ({:.1}–{:.1})",
                            r.ns_per_frame.median, r.ns_per_frame.min, r.ns_per_frame.max
                        )
                    })
            };
            let ratio = |a: &str, b: &str| k.ratio(a, b, frame);
            let added = |on: &str, off: &str| {
                k.added_ns(on, off, frame)
                    .map_or(f64::NAN, |added| added.median)
            };
            let _ = writeln!(
                out,
                "| {frame} | {} | {} | {} | {} | {} | {} | {} | {:.2}× | {:.2}× | {:+.1} / {:+.1} \
                 ns | {:.2}× |",
                cell(EMPTY),
                cell(HEADERS_DROP),
                cell(PROBE_MONITOR),
                cell(PROBE_DROP),
                cell(PROBE_MONITOR_SAMPLING),
                cell(PROBE_DROP_SAMPLING),
                cell(XDP_FILTER),
                ratio(PROBE_MONITOR, EMPTY),
                ratio(PROBE_DROP, EMPTY),
                added(PROBE_MONITOR_SAMPLING, PROBE_MONITOR),
                added(PROBE_DROP_SAMPLING, PROBE_DROP),
                ratio(XDP_FILTER, PROBE_MONITOR),
            );
        }
        Self::steps_markdown(out, k);
        Self::c_reference_markdown(out, k);
    }

    /// The probe beside C programs built with clang, code neither its toolchain nor its
    /// classifier produced, and beside itself loaded again: the harness's resolution.
    fn c_reference_markdown(out: &mut String, k: &KernelCost) {
        use kernel_cost::{
            C_CLASSIFY_COUNT_DROP, C_CLASSIFY_DROP, PROBE_DROP, PROBE_MONITOR, PROBE_MONITOR_AGAIN,
        };

        out.push_str(
            "\nBeside C programs built with clang (`bench/c-reference`): a minimal loopback \
             filter as C XDP programs are usually written, which drops untagged IPv4 and IPv6 \
             frames with a loopback source or destination, with no header checks, no VLAN tags \
             and no ARP (it passes ARP unread), and counts nothing; the same counting what it \
             drops exactly, as the probe does (the interface's entry by ifindex, the frame's \
             length by helper call, a per-CPU counter). The last column is the probe loaded \
             twice, identical programs measured side by side: where the kernel put each alone \
             moves the figures by about that much, so differences of that size say nothing:\n\n\
             | frame | C classifier | C classifier, count exactly | probe (drop) | probe (drop) \
             over C classifier | probe (drop) over C, count exactly | probe (drop) ÷ C, count \
             exactly | probe (monitor), second load over first |\n\
             | --- | --- | --- | --- | --- | --- | --- | --- |\n",
        );
        for (frame, _, _) in kernel_cost::frames() {
            let added = |subject: &str, reference: &str| {
                k.added_ns(subject, reference, frame)
                    .map_or("–".to_owned(), |added| format!("{:+.1} ns", added.median))
            };
            let _ = writeln!(
                out,
                "| {frame} | {:.1} | {:.1} | {:.1} | {} | {} | {:.2}× | {} |",
                k.median(C_CLASSIFY_DROP, frame),
                k.median(C_CLASSIFY_COUNT_DROP, frame),
                k.median(PROBE_DROP, frame),
                added(PROBE_DROP, C_CLASSIFY_DROP),
                added(PROBE_DROP, C_CLASSIFY_COUNT_DROP),
                k.ratio(PROBE_DROP, C_CLASSIFY_COUNT_DROP, frame),
                added(PROBE_MONITOR_AGAIN, PROBE_MONITOR),
            );
        }
    }

    /// Where a matched frame's nanoseconds go: the probe's path built up step by step, each
    /// step's cost the median of per-round differences to the build that stops before it.
    fn steps_markdown(out: &mut String, k: &KernelCost) {
        use kernel_cost::{
            HEADERS_COUNT_DROP, HEADERS_DROP, PROBE_ENTRY_IN_PROGRAM, PROBE_MONITOR,
            PROBE_MONITOR_SAMPLING, PROBE_ONE_BUFFER, STOPPED_AFTER_CLASSIFY,
            STOPPED_AFTER_COUNTER, STOPPED_AFTER_ENTRY,
        };

        out.push_str(
            "\nWhere a loopback frame's nanoseconds go (monitor mode; each step the median of \
             per-round differences between a build of the programs that stops after it and one \
             that stops before; the builds differ only there): classifying it (over reading the \
             headers), reading the interface's entry (its ifindex, the configuration array), \
             updating its per-CPU counter, finding its length (`bpf_xdp_get_buff_len`, a helper \
             call, since the frame may be in several buffers; the programs for one buffer, on \
             kernels without multi-buffer, find it by twelve comparisons instead), and the \
             sampling check with the limit used up. Beside them, the floor of counting exactly \
             with least privilege: a program that reads the headers as the reference does, then \
             finds the interface's entry by ifindex, the frame's length (the same helper) and a \
             per-CPU counter, and nothing else, for every frame; and what the probe adds to \
             it, the classifier's decision and checks. The last column is a build of the \
             probe that reads the interface's entry from the program's own global data rather \
             than from the array by ifindex, as a program instance per interface would, over \
             the probe: what that design would save:\n\n\
             | frame | read headers | classify | interface's entry | counter | length (helper) | \
             length (one buffer) | sampling check | probe over read headers | count exactly \
             over read headers (the floor) | probe over the floor | entry in the program |\n\
             | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
        );
        for (frame, loopback, _) in kernel_cost::frames() {
            if !loopback {
                continue;
            }
            let step = |subject: &str, before: &str| {
                k.added_ns(subject, before, frame)
                    .map_or("–".to_owned(), |added| format!("{:+.1}", added.median))
            };
            let _ = writeln!(
                out,
                "| {frame} | {:.1} | {} | {} | {} | {} | {} | {} | {} ns | {} ns | {} ns | {} ns \
                 |",
                k.median(HEADERS_DROP, frame),
                step(STOPPED_AFTER_CLASSIFY, HEADERS_DROP),
                step(STOPPED_AFTER_ENTRY, STOPPED_AFTER_CLASSIFY),
                step(STOPPED_AFTER_COUNTER, STOPPED_AFTER_ENTRY),
                step(PROBE_MONITOR, STOPPED_AFTER_COUNTER),
                step(PROBE_ONE_BUFFER, STOPPED_AFTER_COUNTER),
                step(PROBE_MONITOR_SAMPLING, PROBE_MONITOR),
                step(PROBE_MONITOR, HEADERS_DROP),
                step(HEADERS_COUNT_DROP, HEADERS_DROP),
                step(PROBE_MONITOR, HEADERS_COUNT_DROP),
                step(PROBE_ENTRY_IN_PROGRAM, PROBE_MONITOR),
            );
        }
    }

    fn veth_markdown(out: &mut String, t: &Throughput) {
        let _ = writeln!(
            out,
            "\n**veth throughput** (64-byte frames from a live-frames XDP_TX generator on CPU {}, \
             receiver NAPI threaded on CPU {}, GRO on; {} interleaved rounds of {:.1} s; Mpps \
             handled at the receiver and offered to it, median and min–max; a receiver that \
             handles {:.0} % or more of what it is offered is bound by the generator, and its \
             figure is a floor; the ratio is to no program for benign traffic and to the XDP \
             program that reads the headers and drops for loopback floods, the median of \
             per-round ratios; \"sampling\": the CLI's default --sample-rate; samples/s as the \
             kernel counted them over whole seconds of the window, lost ones found the ring \
             buffer full):\n",
            t.generator_cpu,
            t.napi_cpu,
            t.rounds,
            t.window_secs,
            GENERATOR_BOUND * 100.0
        );
        out.push_str(
            "| receiver | traffic | handled Mpps | offered Mpps | handled ÷ offered | bound by | \
             ratio | samples/s (lost/s) | localnet-probe CPU, RSS |\n",
        );
        out.push_str("| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
        for s in t
            .scenarios
            .iter()
            .filter(|s| !throughput::TCX_SCENARIOS.contains(&s.name))
        {
            let name = if s.name == throughput::NO_PROGRAM && s.traffic == throughput::LOOPBACK {
                "no program (kernel martian drop)"
            } else {
                s.name
            };
            let footprint = s.probe_footprint.as_ref().map_or("–".to_owned(), |f| {
                format!(
                    "{:.1} %, {:.1} MiB",
                    f.cpu_percent,
                    f.peak_rss_kib as f64 / 1024.0
                )
            });
            let samples = s.samples.as_ref().map_or("–".to_owned(), |samples| {
                format!(
                    "{:.0} ({:.0})",
                    samples.emitted_per_sec.median, samples.lost_per_sec.median
                )
            });
            let reference = if s.traffic == throughput::BENIGN {
                throughput::NO_PROGRAM
            } else {
                throughput::HEADERS_DROP
            };
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {:.2}× | {samples} | {footprint} |",
                s.traffic,
                Self::veth_cells(t, s),
                t.ratio(s.name, reference, s.traffic),
            );
        }
    }

    /// Handled and offered Mpps, their ratio and what bound the run, as table cells.
    fn veth_cells(t: &Throughput, s: &ScenarioResult) -> String {
        let share = t
            .handled_share(s.name, s.traffic)
            .map_or(f64::NAN, |share| share.median);
        format!(
            "{:.2} ({:.2}–{:.2}) | {:.2} ({:.2}–{:.2}) | {:.0} % | {}",
            s.handled_per_sec.median / 1e6,
            s.handled_per_sec.min / 1e6,
            s.handled_per_sec.max / 1e6,
            s.offered_per_sec.median / 1e6,
            s.offered_per_sec.min / 1e6,
            s.offered_per_sec.max / 1e6,
            share * 100.0,
            bound_by(share),
        )
    }

    /// The tc hooks: the tcx programs' in-kernel cost, and the tcx ingress scenarios at veth.
    fn tc_markdown(out: &mut String, k: Option<&KernelCost>, t: Option<&Throughput>) {
        out.push_str(
            "\n**tc hooks**: where another XDP program holds an interface, `run --on-conflict tc` \
             serves it at tcx ingress, first in the chain, with the same classifier and counters; \
             `run --egress` adds a program at tcx egress that counts frames with a loopback \
             source leaving (replies of a service reached through route_localnet) and hands \
             every frame on.\n",
        );
        if let Some(k) = k {
            Self::tc_kernel_markdown(out, k);
        }
        if let Some(t) = t {
            Self::tc_veth_markdown(out, t);
        }
    }

    fn tc_kernel_markdown(out: &mut String, k: &KernelCost) {
        use kernel_cost::{
            EGRESS, EGRESS_SAMPLING, LOOPBACK_SOURCES, TCX_DROP, TCX_EMPTY, TCX_MONITOR,
        };

        let _ = writeln!(
            out,
            "\nIn-kernel cost per frame of the tcx programs (BPF_PROG_TEST_RUN on a socket buffer \
             the kernel builds once per call from the frame, on `lo`, run {} times; in the same \
             interleaved rounds as the XDP programs above; median ns per frame, min–max; \
             \"adds\": the median of per-round differences to an empty tcx program that hands \
             every frame on, TCX_NEXT; \"sampling\" as above):\n",
            k.repeat
        );
        out.push_str(
            "| frame | empty tcx | ingress (monitor) | ingress (drop) | egress | egress \
             (sampling) | ingress adds (monitor / drop) | egress adds (sampling off / on) |\n",
        );
        out.push_str("| --- | --- | --- | --- | --- | --- | --- | --- |\n");
        let frames = kernel_cost::frames();
        for (frame, _, _) in &frames {
            let cell = |subject: &str| {
                k.results
                    .iter()
                    .find(|r| r.subject == subject && r.frame == *frame)
                    .map_or("–".to_owned(), |r| {
                        format!(
                            "{:.1} ({:.1}–{:.1})",
                            r.ns_per_frame.median, r.ns_per_frame.min, r.ns_per_frame.max
                        )
                    })
            };
            let added = |subject: &str| {
                k.added_ns(subject, TCX_EMPTY, frame)
                    .map_or(f64::NAN, |added| added.median)
            };
            let _ = writeln!(
                out,
                "| {frame} | {} | {} | {} | {} | {} | {:+.1} / {:+.1} ns | {:+.1} / {:+.1} ns |",
                cell(TCX_EMPTY),
                cell(TCX_MONITOR),
                cell(TCX_DROP),
                cell(EGRESS),
                cell(EGRESS_SAMPLING),
                added(TCX_MONITOR),
                added(TCX_DROP),
                added(EGRESS),
                added(EGRESS_SAMPLING),
            );
        }
        // The median over some frames of what `subject` adds to each, and the extremes of its
        // per-round differences there.
        let adds = |subject: &str, frames: &[&str]| {
            let added: Vec<Summary> = frames
                .iter()
                .filter_map(|frame| k.added_ns(subject, TCX_EMPTY, frame))
                .collect();
            let medians: Vec<f64> = added.iter().map(|a| a.median).collect();
            let low = added.iter().map(|a| a.min).fold(f64::INFINITY, f64::min);
            let high = added
                .iter()
                .map(|a| a.max)
                .fold(f64::NEG_INFINITY, f64::max);
            (Summary::of(&medians).median, low, high)
        };
        let benign: Vec<&str> = frames
            .iter()
            .filter(|(_, loopback, _)| !loopback)
            .map(|(frame, _, _)| *frame)
            .collect();
        let (off, low, high) = adds(EGRESS, &benign);
        let (on, _, _) = adds(EGRESS_SAMPLING, &benign);
        let (counted, _, _) = adds(EGRESS, &LOOPBACK_SOURCES);
        let (counted_sampling, _, _) = adds(EGRESS_SAMPLING, &LOOPBACK_SOURCES);
        let (ingress, _, _) = adds(TCX_MONITOR, &benign);
        let _ = writeln!(
            out,
            "\nEvery frame the host sends out of an interface served with `--egress` meets the \
             egress program. On benign frames, nearly all of them, it adds {off:+.1} ns \
             (median over the benign frames; per-round differences {low:+.1} to {high:+.1} ns), \
             {on:+.1} ns with sampling on, which they never reach; on frames with a loopback \
             source, which it counts, {counted:+.1} ns ({counted_sampling:+.1} ns with sampling \
             on). The ingress program, the same classifier, adds {ingress:+.1} ns to benign \
             frames arriving. These are the figures to quote for the egress hook: a frame's way \
             out from a socket through the stack and a veth takes on the order of microseconds, \
             hundreds of times this, so a send-rate comparison with and without the program \
             measures only its own run-to-run spread; and the senders fast enough to resolve it \
             (XDP live frames, AF_PACKET with qdisc bypass) leave without passing tcx egress."
        );
    }

    fn tc_veth_markdown(out: &mut String, t: &Throughput) {
        use throughput::{
            BENIGN, LOOPBACK, NFTABLES, NO_PROGRAM, PROBE_DROP, PROBE_TCX_DROP, PROBE_TCX_MONITOR,
            TCX_DROP_ALL, TCX_EMPTY,
        };

        out.push_str(
            "\nveth throughput at tcx ingress (as above; no XDP program on the receiving \
             interface, so the tcx path alone: beside another XDP program, `run --on-conflict \
             tc` adds that program's own cost; the probe attached by the harness through the \
             library, `Probe::attach_tc`, as the CLI does, sampling off; the ratio is to no \
             program for benign traffic and to the nftables ingress rule for the loopback \
             flood, the median of per-round ratios):\n\n",
        );
        out.push_str(
            "| receiver | traffic | handled Mpps | offered Mpps | handled ÷ offered | bound by | \
             ratio |\n| --- | --- | --- | --- | --- | --- | --- |\n",
        );
        for (name, traffic, reference) in [
            (NO_PROGRAM, BENIGN, NO_PROGRAM),
            (TCX_EMPTY, BENIGN, NO_PROGRAM),
            (PROBE_TCX_MONITOR, BENIGN, NO_PROGRAM),
            (NFTABLES, LOOPBACK, NFTABLES),
            (TCX_DROP_ALL, LOOPBACK, NFTABLES),
            (PROBE_TCX_DROP, LOOPBACK, NFTABLES),
        ] {
            let Some(s) = t.scenario(name, traffic) else {
                continue;
            };
            let _ = writeln!(
                out,
                "| {name} | {traffic} | {} | {:.2}× |",
                Self::veth_cells(t, s),
                t.ratio(name, reference, traffic),
            );
        }
        let mpps = |name: &str, traffic: &str| {
            t.scenario(name, traffic)
                .map_or(f64::NAN, |s| s.handled_per_sec.median / 1e6)
        };
        let spread = t
            .ratios(PROBE_TCX_DROP, NFTABLES, LOOPBACK)
            .map_or((f64::NAN, f64::NAN), |ratios| (ratios.min, ratios.max));
        let _ = writeln!(
            out,
            "\nIn drop mode at tcx ingress the probe handled {:.2} Mpps of the loopback flood: \
             {:.2}× the nftables ingress rule on the same traffic (per-round ratios {:.2}–{:.2}×) \
             and {:.2}× a tcx program that drops everything. At tcx, as at nftables' hook right \
             after it, each frame has become a socket buffer already; at XDP, before that, the \
             probe in drop mode handled {:.2} Mpps. In monitor \
             mode on benign traffic it kept {:.2}× the rate with no program, an empty tcx \
             program {:.2}×.",
            mpps(PROBE_TCX_DROP, LOOPBACK),
            t.ratio(PROBE_TCX_DROP, NFTABLES, LOOPBACK),
            spread.0,
            spread.1,
            t.ratio(PROBE_TCX_DROP, TCX_DROP_ALL, LOOPBACK),
            mpps(PROBE_DROP, LOOPBACK),
            t.ratio(PROBE_TCX_MONITOR, NO_PROGRAM, BENIGN),
            t.ratio(TCX_EMPTY, NO_PROGRAM, BENIGN),
        );
    }

    fn userspace_markdown(out: &mut String, u: &Userspace) {
        let many = &u.many;
        let _ = writeln!(
            out,
            "\n**Userspace**: `run --interval 1` idle for {:.0} s on one interface: {:.2} % of a \
             core, peak RSS {:.1} MiB; on {} (both ends of {} veth pairs, the default \
             selection): {:.2} % of a core, peak RSS {:.1} MiB. Counter map: {} for 1 interface; \
             {} for {}. A scrape of `/metrics` (a fresh connection, GET, the whole page) \
             serving those {}: {:.1} ms median ({:.1}–{:.1} ms over {} scrapes), {}.",
            u.idle_secs,
            u.idle.cpu_percent,
            u.idle.peak_rss_kib as f64 / 1024.0,
            thousands(many.interfaces),
            thousands(many.interfaces / 2),
            many.footprint.cpu_percent,
            many.footprint.peak_rss_kib as f64 / 1024.0,
            counter_map_size(&u.idle_counter_map),
            counter_map_size(&many.counter_map),
            thousands(many.interfaces),
            thousands(many.interfaces),
            many.scrape.seconds.median * 1e3,
            many.scrape.seconds.min * 1e3,
            many.scrape.seconds.max * 1e3,
            many.scrape.seconds.samples.len(),
            bytes(many.scrape.bytes as u64),
        );
    }

    fn scan_markdown(out: &mut String, scan: &crate::scan::ScanBench) {
        let _ = writeln!(
            out,
            "\n**Scan**: `localnet-probe scan --json FILE` against `tcpdump -r FILE -w /dev/null \
             FILTER` on the same warm file ({} frames, {} matched, {:.0} MiB; the filter: \
             `{}`), {} runs each, median and min–max:\n",
            thousands(scan.frames as usize),
            thousands(scan.matched as usize),
            scan.file_bytes as f64 / (1 << 20) as f64,
            scan.filter,
            scan.scan_frames_per_sec.samples.len()
        );
        out.push_str("| reader | frames/s, millions | peak RSS, MiB |\n| --- | --- | --- |\n");
        let s = &scan.scan_frames_per_sec;
        let rss = &scan.scan_peak_rss_kib;
        let _ = writeln!(
            out,
            "| localnet-probe scan | {:.2} ({:.2}–{:.2}) | {:.1} |",
            s.median / 1e6,
            s.min / 1e6,
            s.max / 1e6,
            rss.max / 1024.0
        );
        let t = &scan.tcpdump_frames_per_sec;
        let _ = writeln!(
            out,
            "| tcpdump -r | {:.2} ({:.2}–{:.2}) | |",
            t.median / 1e6,
            t.min / 1e6,
            t.max / 1e6
        );
    }

    fn startup_markdown(out: &mut String, attach: &[AttachTime]) {
        let _ = writeln!(
            out,
            "\n**Start-up**: `run --interval 1 --iface a0 --iface a1 …`, one end of each of as \
             many veth pairs, from starting it to its first report, which lists every interface \
             (the program loaded and attached everywhere), and the process's peak RSS (VmHWM) \
             then; {} starts each, median and min–max:\n",
            attach.first().map_or(0, |a| a.seconds.samples.len())
        );
        out.push_str("| interfaces | seconds | peak RSS, MiB |\n| --- | --- | --- |\n");
        for a in attach {
            let rss = &a.peak_rss_kib;
            let _ = writeln!(
                out,
                "| {} | {:.3} ({:.3}–{:.3}) | {:.1} ({:.1}–{:.1}) |",
                thousands(a.interfaces),
                a.seconds.median,
                a.seconds.min,
                a.seconds.max,
                rss.median / 1024.0,
                rss.min / 1024.0,
                rss.max / 1024.0
            );
        }
    }

    fn hotplug_markdown(out: &mut String, h: &Hotplug) {
        let _ = write!(
            out,
            "\n**Hot-plug**: `run --iface '{}' --interval {}`; {} veth interfaces plugged in one \
             at a time, each moved, up, into the probe's namespace by one `ip link set … netns … \
             up` from a second namespace where its peer is, so it appears during that call; from \
             the start of the call to the sending of the first loopback frame counted on the \
             interface (an upper bound), frames going out every {:.0} ms from the call's return, \
             for at most {} s (the frame before the counted one went uncounted, so the program \
             attached within {:.0} ms before it; when the first frame is counted, the program \
             was attached before it went out): ",
            h.pattern,
            h.interval_secs,
            h.interfaces,
            h.send_every_secs * 1e3,
            h.bound_secs,
            h.send_every_secs * 1e3,
        );
        match &h.outcome {
            Outcome::Unsupported(why) => {
                let _ = writeln!(out, "hot-plug not supported by this binary ({why}).");
            }
            Outcome::Measured {
                latency_secs,
                after_move_secs,
                first_frame_counted,
                move_secs,
                missed,
            } => {
                let ms = |summary: &Summary| {
                    format!(
                        "{:.2} ms median, {:.2}–{:.2} ms",
                        summary.median * 1e3,
                        summary.min * 1e3,
                        summary.max * 1e3
                    )
                };
                let _ = write!(
                    out,
                    "{} over {} interfaces; the first frame was counted on {first_frame_counted} \
                     of them. The call took {}; from its return to the first frame counted: {}",
                    ms(latency_secs),
                    latency_secs.samples.len(),
                    ms(move_secs),
                    ms(after_move_secs),
                );
                if missed.is_empty() {
                    out.push_str(".\n");
                } else {
                    let _ = writeln!(
                        out,
                        "; none was counted within {} s on {}.",
                        h.bound_secs,
                        missed.join(", ")
                    );
                }
            }
        }
    }
}
