//! Medians and ranges of repeated measurements.

use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub samples: Vec<f64>,
}

impl Summary {
    pub fn of(samples: &[f64]) -> Self {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let median = match sorted.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => sorted[n / 2],
            n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        };
        Self {
            median,
            min: sorted.first().copied().unwrap_or(f64::NAN),
            max: sorted.last().copied().unwrap_or(f64::NAN),
            samples: samples.to_vec(),
        }
    }
}

/// The median of the per-round ratios `a[i] / b[i]`: rounds are interleaved, so pairing them
/// cancels the machine's drift between rounds.
pub fn paired_ratio(a: &Summary, b: &Summary) -> f64 {
    paired_ratios(a, b).median
}

/// The per-round ratios `a[i] / b[i]`.
pub fn paired_ratios(a: &Summary, b: &Summary) -> Summary {
    let ratios: Vec<f64> = a
        .samples
        .iter()
        .zip(&b.samples)
        .map(|(a, b)| a / b)
        .collect();
    Summary::of(&ratios)
}

/// The per-round differences `a[i] - b[i]`.
pub fn paired_differences(a: &Summary, b: &Summary) -> Summary {
    let differences: Vec<f64> = a
        .samples
        .iter()
        .zip(&b.samples)
        .map(|(a, b)| a - b)
        .collect();
    Summary::of(&differences)
}

#[cfg(test)]
mod tests {
    use super::{Summary, paired_differences, paired_ratio};

    #[test]
    fn paired_ratio_is_the_median_of_round_ratios() {
        let a = Summary::of(&[2.0, 9.0, 3.0]);
        let b = Summary::of(&[1.0, 3.0, 3.0]);
        assert_eq!(paired_ratio(&a, &b), 2.0);
    }

    #[test]
    fn paired_differences_are_round_by_round() {
        let a = Summary::of(&[5.0, 9.0, 3.0]);
        let b = Summary::of(&[1.0, 3.0, 3.0]);
        let differences = paired_differences(&a, &b);
        assert_eq!(
            (differences.median, differences.min, differences.max),
            (4.0, 0.0, 6.0)
        );
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        let odd = Summary::of(&[3.0, 1.0, 2.0]);
        assert_eq!((odd.median, odd.min, odd.max), (2.0, 1.0, 3.0));
        assert_eq!(Summary::of(&[4.0, 1.0, 3.0, 2.0]).median, 2.5);
        assert!(Summary::of(&[]).median.is_nan());
    }
}
