//! Robust statistics for repeated measurements: median, range, spread from the median absolute deviation, outliers by modified z-score, ratios with their interval (from [`crate::analysis::ranks`]), and how durations and intervals are printed without hiding a non-zero range.

use serde::{Deserialize, Serialize};

use crate::analysis::ranks::{repetitions_needed, RankComparison};

/// A modified z-score above this marks an outlier (Iglewicz and Hoaglin's threshold).
pub const OUTLIER_Z: f64 = 3.5;
/// A relative spread above this is too wide to support a comparison.
pub const WIDE_SPREAD: f64 = 0.25;
/// Durations below this many seconds are printed in milliseconds.
const MS_BELOW: f64 = 0.1;
/// The most decimals a printed number gets while looking for digits that tell values apart.
const MAX_DECIMALS: usize = 6;

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
    /// The values themselves, in the order given: comparisons rank them.
    #[serde(default)]
    pub values: Vec<f64>,
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
            values: values.to_vec(),
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

    /// Seconds as `17.1 s (n=3, 16.8–17.6)`, or `12 ms (n=8, 9–15)` below 0.1 s; a single value as `17.1 s`.
    /// The range gets enough decimals that its ends differ whenever they do.
    pub fn describe_seconds(&self) -> String {
        let f = DurationFormat::new(self.median, &[self.min, self.max], 1);
        if self.n > 1 {
            format!("{} (n={}, {}–{})", f.show(self.median), self.n, f.number(self.min), f.number(self.max))
        } else {
            f.show(self.median)
        }
    }

    /// The median and the `min–max` range as two texts with their unit (`17.10 s`, `16.80–17.60 s`), seconds with at least `decimals` decimals, ms below 0.1 s.
    pub fn seconds_and_range(&self, decimals: usize) -> (String, String) {
        let f = DurationFormat::new(self.median, &[self.min, self.max], decimals);
        (f.show(self.median), format!("{}–{} {}", f.number(self.min), f.number(self.max), f.unit))
    }
}

/// How a group of durations is printed: one unit (milliseconds when the typical value is under 0.1 s) and one number of decimals, enough to show non-zero values as non-zero and to print the ends of a non-zero range differently.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DurationFormat {
    pub unit: &'static str,
    scale: f64,
    decimals: usize,
}

impl DurationFormat {
    /// `typical` (seconds) chooses the unit; the `range` ends (seconds) must print differently when they differ; seconds get at least `min_decimals`, milliseconds none unless needed.
    pub fn new(typical: f64, range: &[f64], min_decimals: usize) -> DurationFormat {
        let (unit, scale, base) = if typical.abs() < MS_BELOW { ("ms", 1000.0, 0) } else { ("s", 1.0, min_decimals) };
        let scaled = |v: &[f64]| v.iter().map(|x| x * scale).collect::<Vec<_>>();
        let nonzero = scaled(&[&[typical][..], range].concat());
        DurationFormat { unit, scale, decimals: decimals_to_tell_apart(base, &nonzero, &scaled(range)) }
    }

    /// The duration in this format's unit, without the unit.
    pub fn number(&self, seconds: f64) -> String {
        format!("{:.*}", self.decimals, seconds * self.scale)
    }

    /// The duration with its unit: `17.1 s`, `12 ms`.
    pub fn show(&self, seconds: f64) -> String {
        format!("{} {}", self.number(seconds), self.unit)
    }
}

/// One duration: seconds with one decimal, or milliseconds below 0.1 s, never printed as zero when it is not.
pub fn seconds_text(seconds: f64) -> String {
    DurationFormat::new(seconds, &[], 1).show(seconds)
}

/// The fewest decimals (at least `at_least`, at most [`MAX_DECIMALS`]) at which every non-zero value of `nonzero` prints as non-zero and values of `distinct` that differ print differently.
fn decimals_to_tell_apart(at_least: usize, nonzero: &[f64], distinct: &[f64]) -> usize {
    let text = |v: f64, d: usize| format!("{v:.d$}");
    (at_least..=MAX_DECIMALS.max(at_least))
        .find(|d| {
            let shown = nonzero.iter().all(|v| *v == 0.0 || text(*v, *d).chars().any(|c| c.is_ascii_digit() && c != '0'));
            let apart = distinct.iter().enumerate().all(|(i, a)| distinct[i + 1..].iter().all(|b| a == b || text(*a, *d) != text(*b, *d)));
            shown && apart
        })
        .unwrap_or(MAX_DECIMALS.max(at_least))
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
    Summary::of(&records.iter().filter(|r| r.outcome.is_ok()).map(|r| r.wall_ms / 1000.0).collect::<Vec<_>>())
}

/// The ratio of two samples of times: the Hodges–Lehmann estimate with its exact 95% interval from a Mann–Whitney
/// U test on log times ([`crate::analysis::ranks`]). When the repetitions on the two sides cannot reach 95% whatever
/// the times (fewer than 4 against 4), it is inconclusive and its interval is the range of the pairwise ratios.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ratio {
    pub value: f64,
    pub low: f64,
    pub high: f64,
    /// Repetitions behind the numerator and the denominator.
    #[serde(default)]
    pub n: (usize, usize),
    /// The sizes can reach 95%: `low`–`high` is the exact interval (otherwise the range of pairwise ratios).
    #[serde(default)]
    pub decidable: bool,
}

impl Ratio {
    pub fn of(a: &Summary, b: &Summary) -> Option<Ratio> {
        let c = RankComparison::of(&a.values, &b.values)?;
        let (low, high) = c.interval.unwrap_or((a.min / b.max, a.max / b.min));
        Some(Ratio {
            value: c.ratio,
            low,
            high,
            n: c.n,
            decidable: c.decidable(),
        })
    }

    /// Half the interval's width, for `value ± uncertainty`.
    pub fn uncertainty(&self) -> f64 {
        (self.high - self.low) / 2.0
    }

    /// Too few repetitions on either side for any difference to reach 95%.
    pub fn inconclusive(&self) -> bool {
        !self.decidable
    }

    /// The interval excludes 1.
    pub fn significant(&self) -> bool {
        self.decidable && (self.high < 1.0 || self.low > 1.0)
    }

    /// `ratio 0.70 ± 0.05` (± is half the 95% interval's width), with "no significant difference" when the interval
    /// covers 1, or "inconclusive" when the repetitions cannot settle it. The uncertainty gets enough decimals to
    /// print as non-zero when it is.
    pub fn describe(&self) -> String {
        let u = self.uncertainty();
        let d = decimals_to_tell_apart(2, &[self.value, u], &[]);
        if self.inconclusive() {
            return format!(
                "ratio {:.d$}, inconclusive: n={} and n={} cannot reach 95%; needs ≥ {} per side",
                self.value,
                self.n.0,
                self.n.1,
                repetitions_needed()
            );
        }
        let base = format!("ratio {:.d$} ± {:.d$}", self.value, u);
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
        let a = Summary::of(&[30.0, 31.0, 32.0, 30.5, 31.5]).unwrap();
        let b = Summary::of(&[44.0, 45.0, 46.0, 44.5, 45.5]).unwrap();
        let r = Ratio::of(&a, &b).unwrap();
        assert!(r.significant() && r.value < 1.0, "{r:?}");
        assert!(r.describe().starts_with("ratio 0.69 ± "), "{}", r.describe());
        let c = Summary::of(&[29.0, 31.0, 33.0, 30.0, 32.0]).unwrap();
        let r = Ratio::of(&a, &c).unwrap();
        assert!(!r.significant() && !r.inconclusive(), "{r:?}");
        assert!(r.describe().ends_with("no significant difference"));
    }

    #[test]
    fn sizes_that_cannot_reach_95_percent_are_inconclusive_however_far_apart() {
        let three = Summary::of(&[30.0, 31.0, 32.0]).unwrap();
        let far = Summary::of(&[90.0, 91.0, 92.0]).unwrap();
        let two = Summary::of(&[90.0, 91.0]).unwrap();
        for r in [Ratio::of(&three, &far).unwrap(), Ratio::of(&two, &three).unwrap()] {
            assert!(r.inconclusive() && !r.significant(), "{r:?}");
            assert!(r.describe().contains("inconclusive") && r.describe().contains("needs ≥ 4 per side"), "{}", r.describe());
        }
        let one = Summary::of(&[90.0]).unwrap();
        assert!(Ratio::of(&one, &one).unwrap().describe().contains("n=1 and n=1"));
        let four = Summary::of(&[30.0, 31.0, 32.0, 30.5]).unwrap();
        let more = Summary::of(&[90.0, 91.0, 92.0, 90.5]).unwrap();
        assert!(Ratio::of(&four, &more).unwrap().significant(), "4 against 4 can reach 95%");
    }

    #[test]
    fn a_small_uncertainty_is_printed_with_digits_that_show_it() {
        let a = Summary::of(&[0.70, 0.72, 0.75, 0.71, 0.73]).unwrap();
        let b = Summary::of(&[16.7, 16.9, 17.5, 16.8, 17.0]).unwrap();
        let text = Ratio::of(&a, &b).unwrap().describe();
        assert_eq!(text, "ratio 0.043 ± 0.002", "the half width gets the digits that show it");
        let same = Summary::of(&[2.0, 2.0, 2.0, 2.0]).unwrap();
        assert_eq!(Ratio::of(&same, &same).unwrap().describe(), "ratio 1.00 ± 0.00, no significant difference");
    }

    #[test]
    fn durations_under_a_tenth_of_a_second_are_printed_in_milliseconds() {
        assert_eq!(seconds_text(17.14), "17.1 s");
        assert_eq!(seconds_text(0.012), "12 ms");
        assert_eq!(seconds_text(0.0004), "0.4 ms");
        assert_eq!(seconds_text(0.00004), "0.04 ms");
        assert_eq!(seconds_text(0.0), "0 ms");
        let s = Summary::of(&[0.0121, 0.0093, 0.0150]).unwrap();
        assert_eq!(s.describe_seconds(), "12 ms (n=3, 9–15)");
        let s = Summary::of(&[0.007, 0.006, 0.010]).unwrap();
        assert_eq!(s.describe_seconds(), "7 ms (n=3, 6–10)");
        let s = Summary::of(&[16.8, 17.1, 17.6]).unwrap();
        assert_eq!(s.describe_seconds(), "17.1 s (n=3, 16.8–17.6)");
        assert_eq!(Summary::of(&[3.0]).unwrap().describe_seconds(), "3.0 s");
    }

    #[test]
    fn a_non_zero_range_is_printed_with_ends_that_differ() {
        let s = Summary::of(&[0.31, 0.33, 0.34]).unwrap();
        assert_eq!(s.describe_seconds(), "0.33 s (n=3, 0.31–0.34)");
        let s = Summary::of(&[3.6, 3.62, 3.64]).unwrap();
        assert_eq!(s.describe_seconds(), "3.62 s (n=3, 3.60–3.64)");
        let s = Summary::of(&[0.676, 0.684, 0.754]).unwrap();
        assert_eq!(s.describe_seconds(), "0.7 s (n=3, 0.7–0.8)", "the median need not differ from an end");
        let (median, range) = Summary::of(&[0.0004, 0.0006]).unwrap().seconds_and_range(2);
        assert_eq!((median.as_str(), range.as_str()), ("0.5 ms", "0.4–0.6 ms"));
        let (median, range) = Summary::of(&[0.00041, 0.00044]).unwrap().seconds_and_range(2);
        assert_eq!((median.as_str(), range.as_str()), ("0.43 ms", "0.41–0.44 ms"));
        let (median, range) = Summary::of(&[17.1, 17.1]).unwrap().seconds_and_range(2);
        assert_eq!((median.as_str(), range.as_str()), ("17.10 s", "17.10–17.10 s"));
    }
}
