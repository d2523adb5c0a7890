//! The node section's table and targets.

use super::*;
use crate::{
    churn::{Burst, Churn, SCRAPES_PER_CYCLE},
    node::{BEFORE_PAGE_BYTES, BEFORE_SERIES, BEFORE_SERIES_PER_RESTART, CHURN_PER_SEC, Node},
};

/// What Prometheus can afford: the goal of issue 27.
const PAGE_GZIP_LIMIT: u64 = 1_000_000;
const ENCODE_LIMIT_SECS: f64 = 0.1;
/// Compact JSON's share of full JSON's bytes a day under churn, at most.
const COMPACT_SHARE_LIMIT: f64 = 0.05;
/// Every interface of a burst served within this.
const ALL_SERVED_LIMIT_SECS: f64 = 2.0;
/// The longest time between two reports during a batch, in intervals.
const REPORT_GAP_LIMIT_INTERVALS: f64 = 2.0;
/// RSS after the compressed hour over RSS after its first minute, at most.
const RSS_GROWTH_LIMIT: f64 = 1.10;
/// Before this work, a 1,000-pair delete at `--interval 0.5` (same machine, release build).
const BEFORE_DELETE_CPU_SECS: f64 = 19.3;
const BEFORE_DELETE_SECS: f64 = 21.4;
const BEFORE_DELETE_GAP_SECS: f64 = 3.2;

pub(super) fn markdown(out: &mut String, n: &Node) {
    let _ = write!(
        out,
        "\n**A busy node** ({} interfaces, from snapshots made in process). Before: a page of \
         {} series, {} raw, and {} new series for each pod restart. `/metrics`:\n\n\
         | page | series | raw | gzip | encoded and gzipped |\n| --- | --- | --- | --- | --- |\n",
        thousands(n.interfaces as usize),
        thousands(BEFORE_SERIES),
        bytes(BEFORE_PAGE_BYTES),
        BEFORE_SERIES_PER_RESTART,
    );
    for page in &n.pages {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.1} ms median, {:.1}–{:.1} ms |",
            page.case,
            thousands(page.series),
            bytes(page.raw_bytes),
            bytes(page.gzip_bytes),
            page.encode_secs.median * 1e3,
            page.encode_secs.min * 1e3,
            page.encode_secs.max * 1e3,
        );
    }
    let restarts: Vec<String> = n
        .restarts
        .iter()
        .map(|restart| format!("{} {}", restart.case, restart.new_series))
        .collect();
    let _ = writeln!(
        out,
        "\nNew series per pod restart: {}.",
        restarts.join(", ")
    );
    for j in &n.json {
        let _ = writeln!(
            out,
            "\nJSON at `--interval 1` with {CHURN_PER_SEC} interfaces replaced a second{}, over \
             {} s: full objects ({} each) {} a day, compact ones (a full one every {} s) {} a \
             day, {:.1} % of full.",
            counting(j.counting_one_in),
            j.seconds,
            bytes(j.full_object_bytes as u64),
            bytes(j.full_bytes_per_day as u64),
            j.full_every_secs,
            bytes(j.compact_bytes_per_day as u64),
            100.0 * j.compact_bytes_per_day / j.full_bytes_per_day,
        );
    }
    growth(out, n);
    churn_markdown(out, &n.churn);
}

/// The burst's figures.
fn growth(out: &mut String, n: &Node) {
    let g = &n.growth;
    let served = g.all_served_secs.map_or_else(
        || format!("not all within a minute ({} of them)", thousands(g.served)),
        |secs| format!("all served {secs:.2} s after it began"),
    );
    let grown = g.grown_to.map_or_else(
        || "the room never grew".to_owned(),
        |room| format!("the room grown to {}", thousands(room as usize)),
    );
    let _ = writeln!(
        out,
        "\n{} interfaces plugged in one `ip -batch` ({:.2} s) into `run --drop --iface 'g*'` \
         started with room for 257: {served}, {} refused, {grown}.",
        thousands(g.interfaces),
        g.batch_secs,
        g.refused,
    );
}

/// The churn part: the two batches, the compressed hour, a 500-interface node.
fn churn_markdown(out: &mut String, c: &Churn) {
    let burst = |name: &str, b: &Burst| {
        format!(
            "| {name} | {:.1} s | {:.2} s ({:.0} % of a core) | {:.2} s |\n",
            b.secs,
            b.cpu_secs,
            100.0 * b.cpu_secs / b.secs,
            b.worst_gap_secs
        )
    };
    let _ = write!(
        out,
        "\n**Churn** with the binary: {} veth pairs ({} interfaces) added in one `ip -batch`, \
         then deleted in one, under `run --iface 'ch*' --interval {}`; each from the batch's \
         start to the first report that shows all of it. Before (same machine, release build): \
         the delete took {BEFORE_DELETE_CPU_SECS} s of CPU over {BEFORE_DELETE_SECS} s, reports \
         up to {BEFORE_DELETE_GAP_SECS} s apart.\n\n\
         | batch | took | probe CPU | longest between reports |\n| --- | --- | --- | --- |\n{}{}",
        thousands(c.pairs),
        thousands(2 * c.pairs),
        c.interval_secs,
        burst("add", &c.add),
        burst("delete", &c.delete),
    );
    let h = &c.hour;
    let _ = writeln!(
        out,
        "\nAn hour of pod churn compressed: {} times a namespace brought {} interfaces in, \
         they were scraped {} times and the namespace deleted ({} interfaces in {:.0} s). RSS \
         with the node full after the first minute's worth: {}; after the hour: {}; peak {}. \
         A {}-interface node at rest (a scrape every 5 s): {:.2} % of a core, {} resident; \
         under the compressed churn: {:.1} % of a core.",
        h.cycles,
        h.interfaces,
        SCRAPES_PER_CYCLE,
        thousands(h.cycles * h.interfaces),
        h.secs,
        bytes(h.rss_after_minute_kib * 1024),
        bytes(h.rss_after_hour_kib * 1024),
        bytes(h.peak_rss_kib * 1024),
        h.interfaces,
        h.at_rest.cpu_percent,
        bytes((h.at_rest.anon_rss_kib + h.at_rest.file_rss_kib) * 1024),
        h.churning.cpu_percent,
    );
}

/// What else than churn the JSON case has.
fn counting(one_in: usize) -> String {
    if one_in == 0 {
        String::new()
    } else {
        format!(" and one interface in {one_in} counting a frame every second")
    }
}

pub(super) fn targets(n: &Node) -> Vec<Target> {
    let mut targets = Vec::new();
    let g = &n.growth;
    targets.push(Target::at_most(
        format!(
            "{} interfaces plugged in one batch all served within 2 s",
            thousands(g.interfaces)
        ),
        g.all_served_secs.unwrap_or(f64::INFINITY),
        ALL_SERVED_LIMIT_SECS,
        g.all_served_secs
            .map_or_else(|| "never".to_owned(), |secs| format!("{secs:.2} s")),
    ));
    targets.push(Target::at_most(
        "0 interfaces refused in that burst".to_owned(),
        g.refused as f64,
        0.0,
        g.refused.to_string(),
    ));
    for page in &n.pages {
        targets.push(Target::at_most(
            format!(
                "metrics at {} interfaces ({}) ≤ 1 MB gzip",
                thousands(n.interfaces as usize),
                page.case
            ),
            page.gzip_bytes as f64,
            PAGE_GZIP_LIMIT as f64,
            bytes(page.gzip_bytes),
        ));
        targets.push(Target::at_most(
            format!("metrics page ({}) encoded and gzipped < 100 ms", page.case),
            page.encode_secs.median,
            ENCODE_LIMIT_SECS,
            format!("{:.1} ms", page.encode_secs.median * 1e3),
        ));
    }
    let c = &n.churn;
    for (name, b) in [("add", &c.add), ("delete", &c.delete)] {
        targets.push(Target::at_most(
            format!(
                "{}-pair {name} in one batch: reports never more than {REPORT_GAP_LIMIT_INTERVALS} \
                 intervals apart (at --interval {})",
                thousands(c.pairs),
                c.interval_secs
            ),
            b.worst_gap_secs,
            REPORT_GAP_LIMIT_INTERVALS * c.interval_secs,
            format!("{:.2} s", b.worst_gap_secs),
        ));
    }
    targets.push(Target::at_most(
        "RSS after an hour of churn within 10 % of after the first minute".to_owned(),
        c.hour.rss_after_hour_kib as f64,
        RSS_GROWTH_LIMIT * c.hour.rss_after_minute_kib as f64,
        format!(
            "{} after the hour, {} after the first minute",
            bytes(c.hour.rss_after_hour_kib * 1024),
            bytes(c.hour.rss_after_minute_kib * 1024)
        ),
    ));
    // The goal is the soak's churn; traffic on top is reported beside it.
    if let Some(churn) = n.json.iter().find(|j| j.counting_one_in == 0) {
        let share = churn.compact_bytes_per_day / churn.full_bytes_per_day;
        targets.push(Target::at_most(
            "compact JSON ≤ 5 % of full JSON's bytes a day under the soak's churn".to_owned(),
            share,
            COMPACT_SHARE_LIMIT,
            format!("{:.1} %", share * 100.0),
        ));
    }
    targets
}
