//! Parsers of the seconds that subcommands take (`--interval`, `--duration`).

/// The longest `--interval`: a refresh less often than hourly is no live view.
const MAX_INTERVAL_SECS: f64 = 3600.0;
/// The longest `--duration`, a year; without `--duration` the probe runs until stopped.
const MAX_DURATION_SECS: f64 = 365.0 * 86400.0;

fn seconds_in(value: &str, max: f64, range: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(seconds) if (0.01..=max).contains(&seconds) => Ok(seconds),
        Ok(_) => Err(format!("must be {range}")),
        Err(error) => Err(format!("{error}; give a number of seconds such as 0.5")),
    }
}

/// `--interval`: how often the views refresh.
pub(crate) fn interval_seconds(value: &str) -> Result<f64, String> {
    seconds_in(value, MAX_INTERVAL_SECS, "from 0.01 to 3600 seconds")
}

/// `--duration` of `run`.
pub(crate) fn duration_seconds(value: &str) -> Result<f64, String> {
    seconds_in(
        value,
        MAX_DURATION_SECS,
        "from 0.01 to 31536000 seconds (a year); leave --duration out to run until stopped",
    )
}
