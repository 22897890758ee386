//! How figures are printed: percentiles of latencies, latency lines, and a line per target
//! (met, or missed by how much).

use std::time::Duration;

/// Percentile `p` (0 to 1) of sorted nanoseconds, in milliseconds; NaN when there are none.
pub(crate) fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let i = (((sorted.len() - 1) as f64) * p).round() as usize;
    #[allow(clippy::cast_precision_loss)]
    let v = sorted[i] as f64;
    v / 1e6
}

/// `<label> at <rate> msg/s: p50 … p99 … p99.9 … max …` of sorted send → receive latencies.
pub(crate) fn print_latency(label: &str, rate: u64, lat: &[u64]) {
    println!(
        "{label} at {rate:>6} msg/s: p50 {:>7.3} ms  p99 {:>7.3} ms  p99.9 {:>7.3} ms  max {:>7.3} ms  ({} messages, send -> receive, durable in between)",
        percentile(lat, 0.5),
        percentile(lat, 0.99),
        percentile(lat, 0.999),
        percentile(lat, 1.0),
        lat.len()
    );
}

/// `target  <what> <= <limit><unit>: <value><unit>  met | missed by <excess><unit>`, with
/// `decimals` digits after the point.
pub(crate) fn target(what: &str, value: f64, limit: f64, unit: &str, decimals: usize) -> String {
    let verdict = if value.is_nan() {
        "unknown".to_string()
    } else if value <= limit {
        "met".to_string()
    } else {
        format!("missed by {:.decimals$}{unit}", value - limit)
    };
    format!("target  {what} <= {limit}{unit}: {value:.decimals$}{unit}  {verdict}")
}

/// `target  <what> >= <limit><unit>: <value><unit>  met | missed by <shortfall><unit>`.
pub(crate) fn target_at_least(
    what: &str,
    value: f64,
    limit: f64,
    unit: &str,
    decimals: usize,
) -> String {
    let verdict = if value.is_nan() {
        "unknown".to_string()
    } else if value >= limit {
        "met".to_string()
    } else {
        format!("missed by {:.decimals$}{unit}", limit - value)
    };
    format!("target  {what} >= {limit}{unit}: {value:.decimals$}{unit}  {verdict}")
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// KiB as MiB; NaN when unknown.
#[allow(clippy::cast_precision_loss)]
pub(crate) fn mib(kib: Option<u64>) -> f64 {
    kib.map_or(f64::NAN, |k| k as f64 / 1024.0)
}

/// A figure, or `n/a` when unknown.
pub(crate) fn show(v: Option<u64>) -> String {
    v.map_or_else(|| "n/a".into(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_say_met_or_by_how_much_they_were_missed() {
        assert!(target("p99", 1.5, 2.0, " ms", 3).ends_with("1.500 ms  met"));
        assert!(target("p99", 2.5, 2.0, " ms", 2).ends_with("missed by 0.50 ms"));
        assert!(target("threads", 1010.0, 50.0, "", 0).ends_with(": 1010  missed by 960"));
        assert!(target("threads", f64::NAN, 50.0, "", 0).ends_with("unknown"));
    }

    #[test]
    fn percentiles_are_in_milliseconds_and_nan_without_figures() {
        let lat: Vec<u64> = (1..=1000).map(|i| i * 1_000_000).collect();
        assert!((percentile(&lat, 0.5) - 501.0).abs() < 1e-9);
        assert!((percentile(&lat, 1.0) - 1000.0).abs() < 1e-9);
        assert!(percentile(&[], 0.99).is_nan());
    }
}
