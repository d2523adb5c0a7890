//! Text for terminals, shared by the table and the live view: counts and sizes made short,
//! lines cut and wrapped to a width. Names are made printable by `net::names::printable`.

use std::time::Duration;

/// The devices of `via` (where route_localnet is in effect for `name`'s frames) other than
/// `name` itself: those stacked on it, which the ROUTE_LOCALNET cell names.
pub(crate) fn stacked_via<'a>(name: &str, via: &'a [String]) -> Vec<&'a str> {
    via.iter()
        .filter(|device| *device != name)
        .map(String::as_str)
        .collect()
}

pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `text` in lines of at most `width` characters, broken between words.
pub(crate) fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let line = lines.last_mut().expect("one line at least");
        let length = line.chars().count();
        if length > 0 && length + 1 + word.chars().count() > width {
            lines.push(word.to_owned());
        } else {
            if length > 0 {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines
        .into_iter()
        .map(|line| fit(&line, width as u16))
        .collect()
}

/// `text` cut to `width` columns, ending with `…` when cut.
pub(crate) fn fit(text: &str, width: u16) -> String {
    let width = usize::from(width);
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    if width > 0 {
        cut.push('…');
    }
    cut
}

/// Exact when it fits, else with a unit (`12.3M`).
pub(crate) fn count(value: u64, width: u16) -> String {
    let exact = value.to_string();
    if exact.len() <= usize::from(width) {
        return exact;
    }
    let (scaled, unit) = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")]
        .into_iter()
        .find(|(scale, _)| value as f64 >= *scale)
        .unwrap_or((1.0, ""));
    format!("{:.1}{unit}", value as f64 / scaled)
}

pub(crate) fn rate(per_sec: f64) -> String {
    if per_sec < 1000.0 {
        format!("{per_sec:.0}/s")
    } else if per_sec < 1e6 {
        format!("{:.1}k/s", per_sec / 1e3)
    } else {
        format!("{:.1}M/s", per_sec / 1e6)
    }
}

/// `1h02m`, `3m05s`, `45s`.
pub(crate) fn short_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
    }
}

pub(crate) fn short_family(family: &str) -> &str {
    match family {
        "ipv4" => "v4",
        "ipv6" => "v6",
        "ipv4-mapped" => "mapped",
        other => other,
    }
}

pub(crate) fn short_address(address: &str) -> &str {
    match address {
        "source" => "src",
        "destination" => "dst",
        "target" => "tgt",
        other => other,
    }
}
