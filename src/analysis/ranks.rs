//! The one comparison of two samples of times every report, check and verdict uses: a two-sided Mann–Whitney U
//! test on log times with the Hodges–Lehmann estimate of the ratio and its exact confidence interval (benchstat's
//! choice), exact for the small samples builds allow and free of any assumption about the times' distribution.
//!
//! The ratio is `exp` of the median of every pairwise difference of logs, `ln a_i − ln b_j`; the interval runs
//! between the k-th smallest and the k-th largest of those differences, k taken from the exact null distribution of
//! U so that the interval covers the true ratio with at least [`CONFIDENCE`]. When the sample sizes are too small
//! for any outcome to reach that level (3 against 3 cannot: its smallest two-sided p is 0.1), the comparison says
//! so instead of deciding. One sample against a fixed limit (`check`'s `max_rebuild_seconds`) takes the same test's
//! one-sample side, [`CentreInterval`].

/// The two-sided confidence of every interval, and 1 − the level of every test.
pub const CONFIDENCE: f64 = 0.95;

/// The result of comparing sample `a` with sample `b` (both positive times).
#[derive(Debug, Clone, PartialEq)]
pub struct RankComparison {
    /// The Hodges–Lehmann estimate of a / b.
    pub ratio: f64,
    /// The exact interval for a / b; `None` when the sizes cannot reach [`CONFIDENCE`].
    pub interval: Option<(f64, f64)>,
    /// The exact two-sided p-value of U (ties counted as halves).
    pub p_value: f64,
    pub n: (usize, usize),
}

impl RankComparison {
    /// Compares `a` with `b`; `None` when a side is empty or holds a time that is not positive and finite.
    pub fn of(a: &[f64], b: &[f64]) -> Option<RankComparison> {
        let ok = |v: &[f64]| !v.is_empty() && v.iter().all(|x| x.is_finite() && *x > 0.0);
        if !ok(a) || !ok(b) {
            return None;
        }
        let (m, n) = (a.len(), b.len());
        let mut diffs: Vec<f64> = a.iter().flat_map(|x| b.iter().map(move |y| x.ln() - y.ln())).collect();
        diffs.sort_by(f64::total_cmp);
        let estimate = middle(&diffs);
        let u: f64 = diffs.iter().map(|d| if *d > 0.0 { 1.0 } else if *d == 0.0 { 0.5 } else { 0.0 }).sum();
        let cdf = u_cdf(m, n);
        // P(U <= u) and P(U >= u) under the null (U is symmetric about mn/2).
        let at_most = |x: f64| -> f64 { if x < 0.0 { 0.0 } else { cdf[(x.floor() as usize).min(m * n)] } };
        let total = (m * n) as f64;
        let lower = at_most(u);
        let upper = at_most(total - u);
        let p_value = (2.0 * lower.min(upper)).min(1.0);
        // The largest k with P(U <= k - 1) <= alpha / 2: [d_(k), d_(mn+1-k)] covers with at least CONFIDENCE.
        let alpha = 1.0 - CONFIDENCE;
        let k = (1..=m * n).take_while(|k| cdf[k - 1] <= alpha / 2.0 + 1e-12).last();
        let interval = k.map(|k| (diffs[k - 1].exp(), diffs[m * n - k].exp()));
        Some(RankComparison { ratio: estimate.exp(), interval, p_value, n: (m, n) })
    }

    /// The sizes can reach [`CONFIDENCE`]: some outcome would be significant.
    pub fn decidable(&self) -> bool {
        self.interval.is_some()
    }

    /// The interval lies wholly above `threshold` (a / b is larger than it).
    pub fn above(&self, threshold: f64) -> bool {
        self.interval.is_some_and(|(low, _)| low > threshold)
    }

    /// The interval lies wholly below `threshold`.
    pub fn below(&self, threshold: f64) -> bool {
        self.interval.is_some_and(|(_, high)| high < threshold)
    }

    /// Half the interval's width: what `±` means wherever a ratio is printed.
    pub fn half_width(&self) -> Option<f64> {
        self.interval.map(|(low, high)| (high - low) / 2.0)
    }
}

/// The fewest repetitions per side (equal sides) at which a comparison can reach [`CONFIDENCE`].
pub fn repetitions_needed() -> usize {
    (1..).find(|n| u_cdf(*n, *n)[0] <= (1.0 - CONFIDENCE) / 2.0 + 1e-12).expect("some size decides")
}

/// One sample of times against a fixed threshold (`check`'s `max_rebuild_seconds`): the one-sample counterpart of
/// [`RankComparison`], a Wilcoxon signed-rank test on log times with the Hodges–Lehmann estimate of their centre and
/// its exact interval. It assumes only that the log times are symmetric about that centre.
#[derive(Debug, Clone, PartialEq)]
pub struct CentreInterval {
    /// The Hodges–Lehmann estimate: `exp` of the median of every pairwise mean of logs (the Walsh averages).
    pub estimate: f64,
    /// The exact interval; `None` when `n` cannot reach [`CONFIDENCE`].
    pub interval: Option<(f64, f64)>,
    pub n: usize,
}

impl CentreInterval {
    /// `None` when the sample is empty or holds a time that is not positive and finite.
    pub fn of(values: &[f64]) -> Option<CentreInterval> {
        if values.is_empty() || !values.iter().all(|x| x.is_finite() && *x > 0.0) {
            return None;
        }
        let logs: Vec<f64> = values.iter().map(|x| x.ln()).collect();
        let n = logs.len();
        let logs = &logs;
        let mut walsh: Vec<f64> = (0..n).flat_map(|i| logs[i..].iter().map(move |y| (logs[i] + y) / 2.0)).collect();
        walsh.sort_by(f64::total_cmp);
        let cdf = w_cdf(n);
        // As for U: the largest k with P(W <= k - 1) <= alpha / 2 gives [w_(k), w_(N+1-k)].
        let alpha = 1.0 - CONFIDENCE;
        let k = (1..=walsh.len()).take_while(|k| cdf[k - 1] <= alpha / 2.0 + 1e-12).last();
        let interval = k.map(|k| (walsh[k - 1].exp(), walsh[walsh.len() - k].exp()));
        Some(CentreInterval { estimate: middle(&walsh).exp(), interval, n })
    }
}

/// The fewest repetitions at which one sample's interval can reach [`CONFIDENCE`].
pub fn one_sample_repetitions_needed() -> usize {
    (1..).find(|n| w_cdf(*n)[0] <= (1.0 - CONFIDENCE) / 2.0 + 1e-12).expect("some size decides")
}

/// The exact null distribution of the signed-rank statistic W for `n` values: `cdf[w] = P(W <= w)`, w = 0..=n(n+1)/2.
fn w_cdf(n: usize) -> Vec<f64> {
    let max = n * (n + 1) / 2;
    // counts[w]: subsets of the ranks 1..=n whose sum is w.
    let mut counts = vec![0.0f64; max + 1];
    counts[0] = 1.0;
    for rank in 1..=n {
        for w in (rank..=max).rev() {
            counts[w] += counts[w - rank];
        }
    }
    cumulative(&counts)
}

fn middle(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// The exact null distribution of U for samples of `m` and `n` without ties: `cdf[u] = P(U <= u)`, u = 0..=mn;
/// computed once per pair of sizes.
fn u_cdf(m: usize, n: usize) -> std::sync::Arc<Vec<f64>> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    static MADE: OnceLock<Mutex<HashMap<(usize, usize), Arc<Vec<f64>>>>> = OnceLock::new();
    let made = MADE.get_or_init(Default::default);
    if let Some(cdf) = made.lock().unwrap_or_else(|p| p.into_inner()).get(&(m, n)) {
        return cdf.clone();
    }
    let cdf = Arc::new(make_u_cdf(m, n));
    made.lock().unwrap_or_else(|p| p.into_inner()).insert((m, n), cdf.clone());
    cdf
}

fn make_u_cdf(m: usize, n: usize) -> Vec<f64> {
    // counts[i][j][u]: arrangements of i and j values with U = u, built up one value at a time.
    let max = m * n;
    let mut table = vec![vec![vec![0.0f64; max + 1]; n + 1]; m + 1];
    for row in table.iter_mut() {
        row[0][0] = 1.0; // only a's: U = 0
    }
    for j in 0..=n {
        table[0][j][0] = 1.0;
    }
    for i in 1..=m {
        for j in 1..=n {
            for u in 0..=i * j {
                // The largest value is an a (it beats all j b's) or a b.
                let from_a = if u >= j { table[i - 1][j][u - j] } else { 0.0 };
                let from_b = table[i][j - 1][u];
                table[i][j][u] = from_a + from_b;
            }
        }
    }
    cumulative(&table[m][n])
}

/// The distribution function of counts of equally likely arrangements: `cdf[i] = P(X <= i)`.
fn cumulative(counts: &[f64]) -> Vec<f64> {
    let total: f64 = counts.iter().sum();
    let mut acc = 0.0;
    counts
        .iter()
        .map(|c| {
            acc += c;
            acc / total
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_null_distribution_is_exact() {
        // 3 against 3: 20 arrangements, one with U = 0.
        let cdf = u_cdf(3, 3);
        assert!((cdf[0] - 1.0 / 20.0).abs() < 1e-12 && (cdf[9] - 1.0).abs() < 1e-12, "{cdf:?}");
        assert!((u_cdf(4, 4)[0] - 1.0 / 70.0).abs() < 1e-12);
        assert_eq!(repetitions_needed(), 4);
    }

    #[test]
    fn one_sample_needs_six_values_and_its_interval_holds_the_estimate() {
        assert!((w_cdf(3)[0] - 1.0 / 8.0).abs() < 1e-12 && (w_cdf(3)[6] - 1.0).abs() < 1e-12);
        assert_eq!(one_sample_repetitions_needed(), 6);
        assert!(CentreInterval::of(&[10.0, 10.1, 9.9, 10.2, 10.0]).unwrap().interval.is_none(), "5 values cannot reach 95%");
        let c = CentreInterval::of(&[10.0, 10.1, 9.9, 10.2, 10.0, 9.8]).unwrap();
        let (low, high) = c.interval.unwrap();
        assert!((low - 9.8).abs() < 1e-9 && (high - 10.2).abs() < 1e-9, "at n = 6 the extremes: {c:?}");
        // n = 10: k = 9 (P(W <= 8) = 0.0244). The logs 1..=10 have Walsh averages 1, 1.5, 2, 2, 2.5, 2.5, 3, 3, 3, …:
        // the 9th is 3 and, by symmetry, the 47th of 55 is 8.
        let ten: Vec<f64> = (1..=10).map(|i| (i as f64).exp()).collect();
        let c = CentreInterval::of(&ten).unwrap();
        let (low, high) = c.interval.unwrap();
        assert!((low.ln() - 3.0).abs() < 1e-9 && (high.ln() - 8.0).abs() < 1e-9 && (c.estimate.ln() - 5.5).abs() < 1e-9, "{c:?}");
        assert!(CentreInterval::of(&[]).is_none() && CentreInterval::of(&[1.0, 0.0]).is_none());
    }

    #[test]
    fn three_against_three_is_never_decided() {
        let c = RankComparison::of(&[10.0, 10.1, 10.2], &[20.0, 20.1, 20.2]).unwrap();
        assert!(!c.decidable() && !c.below(1.0) && !c.above(1.0), "{c:?}");
        assert!((c.p_value - 0.1).abs() < 1e-12, "the smallest p of 3 against 3: {c:?}");
        assert!((c.ratio - 0.5).abs() < 0.01);
    }

    #[test]
    fn five_against_five_far_apart_is_significant_and_the_interval_holds_the_estimate() {
        let a = [10.0, 10.2, 9.9, 10.1, 10.3];
        let b = [20.0, 20.4, 19.8, 20.1, 20.6];
        let c = RankComparison::of(&a, &b).unwrap();
        let (low, high) = c.interval.unwrap();
        assert!(c.below(1.0) && low <= c.ratio && c.ratio <= high && high < 0.53, "{c:?}");
        assert!(c.p_value < 0.01);
        let same = RankComparison::of(&a, &a).unwrap();
        assert!(!same.below(1.0) && !same.above(1.0) && (same.ratio - 1.0).abs() < 1e-12, "{same:?}");
        assert!(RankComparison::of(&a, &[]).is_none() && RankComparison::of(&[0.0], &a).is_none());
    }
}
