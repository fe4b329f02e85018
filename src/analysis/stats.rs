//! Robust statistics for repeated measurements: median, range, spread from the median absolute deviation, outliers by modified z-score, and ratios with their uncertainty.

use serde::{Deserialize, Serialize};

/// A modified z-score above this marks an outlier (Iglewicz and Hoaglin's threshold).
pub const OUTLIER_Z: f64 = 3.5;
/// A relative spread above this is too wide to support a comparison.
pub const WIDE_SPREAD: f64 = 0.25;

/// A summary of repeated measurements of one quantity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub n: usize,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// 1.4826 × the median absolute deviation: a standard-deviation-like spread that outliers barely move.
    pub spread: f64,
    /// Indices of the values whose modified z-score exceeds [`OUTLIER_Z`].
    pub outliers: Vec<usize>,
}

impl Summary {
    pub fn of(values: &[f64]) -> Option<Summary> {
        if values.is_empty() || values.iter().any(|v| !v.is_finite()) {
            return None;
        }
        let median = median(values);
        let deviations: Vec<f64> = values.iter().map(|v| (v - median).abs()).collect();
        let mad = median_of(deviations);
        let outliers = if mad > 0.0 {
            values
                .iter()
                .enumerate()
                .filter(|(_, v)| (0.6745 * (*v - median) / mad).abs() > OUTLIER_Z)
                .map(|(i, _)| i)
                .collect()
        } else {
            Vec::new()
        };
        Some(Summary {
            n: values.len(),
            median,
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            spread: 1.4826 * mad,
            outliers,
        })
    }

    /// Spread relative to the median (0 when the median is 0).
    pub fn relative_spread(&self) -> f64 {
        if self.median == 0.0 {
            0.0
        } else {
            self.spread / self.median.abs()
        }
    }

    /// Whether the spread is too wide to compare this with something else.
    pub fn too_wide(&self) -> bool {
        self.relative_spread() > WIDE_SPREAD
    }
}

fn median(values: &[f64]) -> f64 {
    median_of(values.to_vec())
}

fn median_of(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The wall times, in seconds, of the successful builds among `records`.
pub fn wall_seconds(records: &[&crate::results::BuildRecord]) -> Option<Summary> {
    Summary::of(&records.iter().filter(|r| r.outcome == "ok").map(|r| r.wall_ms / 1000.0).collect::<Vec<_>>())
}

/// The ratio of two medians with an interval from the extremes (min/max of
/// one over max/min of the other): conservative for the few repetitions
/// builds allow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ratio {
    pub value: f64,
    pub low: f64,
    pub high: f64,
}

impl Ratio {
    pub fn of(a: &Summary, b: &Summary) -> Option<Ratio> {
        if b.median <= 0.0 || b.min <= 0.0 {
            return None;
        }
        Some(Ratio {
            value: a.median / b.median,
            low: a.min / b.max,
            high: a.max / b.min,
        })
    }

    /// Half the width the interval reaches from the value, for `value ± uncertainty`.
    pub fn uncertainty(&self) -> f64 {
        (self.high - self.value).max(self.value - self.low)
    }

    /// The interval excludes 1.
    pub fn significant(&self) -> bool {
        self.high < 1.0 || self.low > 1.0
    }

    /// `0.70 ± 0.05`, or with "no significant difference" when the interval covers 1.
    pub fn describe(&self) -> String {
        let base = format!("ratio {:.2} ± {:.2}", self.value, self.uncertainty());
        if self.significant() {
            base
        } else {
            format!("{base}, no significant difference")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_range_and_spread() {
        let s = Summary::of(&[3.0, 1.0, 2.0, 4.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.5, 1.0, 4.0, 4));
        assert!((s.spread - 1.4826).abs() < 1e-9);
        assert!(Summary::of(&[]).is_none());
    }

    #[test]
    fn a_far_value_is_flagged_as_an_outlier() {
        let s = Summary::of(&[10.0, 10.2, 9.9, 10.1, 30.0]).unwrap();
        assert_eq!(s.outliers, vec![4]);
        assert!(Summary::of(&[1.0, 1.0, 1.0]).unwrap().outliers.is_empty());
    }

    #[test]
    fn wide_spreads_are_reported() {
        assert!(Summary::of(&[1.0, 2.0, 3.0]).unwrap().too_wide());
        assert!(!Summary::of(&[10.0, 10.5, 10.2]).unwrap().too_wide());
    }

    #[test]
    fn a_ratio_whose_interval_covers_one_is_not_significant() {
        let a = Summary::of(&[30.0, 31.0, 32.0]).unwrap();
        let b = Summary::of(&[44.0, 45.0, 46.0]).unwrap();
        let r = Ratio::of(&a, &b).unwrap();
        assert!(r.significant() && r.value < 1.0);
        assert!(r.describe().starts_with("ratio 0.69 ± "));
        let c = Summary::of(&[29.0, 31.0, 33.0]).unwrap();
        let r = Ratio::of(&a, &c).unwrap();
        assert!(!r.significant());
        assert!(r.describe().ends_with("no significant difference"));
    }
}
