//! The calibration of the one comparison of times (`analysis::ranks`, through `stats::Ratio`, which `compare`,
//! `check`'s `max_slowdown` and the verdicts use): seeded draws of identical and shifted pairs of samples, under
//! normal, lognormal and outlier-ridden noise, at n = 3, 5, 10 and 20 per side; and its one-sample side
//! (`CentreInterval`, `check`'s `max_rebuild_seconds`) on samples at and above the limit. Pure functions; seconds to run.
//! `cargo test --release --test offline calibration:: -- --nocapture` prints the table the README shows.

use layerbench::analysis::ranks::CentreInterval;
use layerbench::analysis::stats::{Ratio, Summary};

/// splitmix64: a fixed seed gives the same draws on every machine.
struct Draws(u64);

impl Draws {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// A standard normal (Box–Muller).
    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

#[derive(Clone, Copy, Debug)]
enum Noise {
    /// 3 % normal noise.
    Normal,
    /// 3 % lognormal noise.
    Lognormal,
    /// 3 % lognormal noise, and one build in ten 50 % slower (a busy machine).
    Outliers,
}

const NOISE: f64 = 0.03;
const TRIALS: usize = 1000;
const SIZES: [usize; 4] = [3, 5, 10, 20];

fn sample(d: &mut Draws, noise: Noise, n: usize, scale: f64) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let z = d.normal();
            let t = match noise {
                Noise::Normal => 20.0 * (1.0 + NOISE * z),
                Noise::Lognormal | Noise::Outliers => 20.0 * (NOISE * z).exp(),
            };
            let outlier = matches!(noise, Noise::Outliers) && d.uniform() < 0.1;
            scale * t * if outlier { 1.5 } else { 1.0 }
        })
        .collect()
}

/// How often `decides` holds for the ratio second / first over [`TRIALS`] pairs whose second side is `shift` times slower.
fn rate(seed: u64, noise: Noise, n: usize, shift: f64, decides: fn(&Ratio) -> bool) -> f64 {
    let mut d = Draws(seed);
    let mut hits = 0;
    for _ in 0..TRIALS {
        let before = Summary::of(&sample(&mut d, noise, n, 1.0)).unwrap();
        let after = Summary::of(&sample(&mut d, noise, n, shift)).unwrap();
        hits += usize::from(decides(&Ratio::of(&after, &before).unwrap()));
    }
    hits as f64 / TRIALS as f64
}

/// `compare --fail-on-regression`'s rule: a significant ratio above 1.
fn regressions(seed: u64, noise: Noise, n: usize, shift: f64) -> f64 {
    rate(seed, noise, n, shift, |r| r.significant() && r.value > 1.0)
}

/// `check`'s `max_slowdown = 1.0` fails: the interval's lower end above 1.
fn slowdown_failures(seed: u64, noise: Noise, n: usize, shift: f64) -> f64 {
    rate(seed, noise, n, shift, |r| !r.inconclusive() && r.low > 1.0)
}

#[test]
fn false_alarms_stay_at_most_five_percent_and_power_never_falls_as_n_grows() {
    println!("noise      n   false alarms   detects 5 %   detects 10 %   max_slowdown 1.0 fails (same)");
    for (i, noise) in [Noise::Normal, Noise::Lognormal, Noise::Outliers].into_iter().enumerate() {
        let mut last = (0.0, 0.0);
        for n in SIZES {
            let seed = 1000 * i as u64 + n as u64;
            let alarms = regressions(seed, noise, n, 1.0);
            let five = regressions(seed + 1, noise, n, 1.05);
            let ten = regressions(seed + 2, noise, n, 1.10);
            let check_alarms = slowdown_failures(seed + 3, noise, n, 1.0);
            println!("{:<10} {n:>2}   {:>11.1}%   {:>10.1}%   {:>11.1}%   {:>10.1}%", format!("{noise:?}"), alarms * 100.0, five * 100.0, ten * 100.0, check_alarms * 100.0);
            assert!(alarms <= 0.05, "{noise:?} n={n}: {:.1}% false alarms", alarms * 100.0);
            assert!(check_alarms <= 0.05, "{noise:?} n={n}: max_slowdown = 1.0 failed {:.1}% of identical pairs", check_alarms * 100.0);
            if n == 3 {
                assert_eq!((alarms, five, ten), (0.0, 0.0, 0.0), "{noise:?}: 3 against 3 cannot reach 95% and is never called significant");
            }
            assert!(five >= last.0 && ten >= last.1, "{noise:?} n={n}: power fell as n grew: {five} < {} or {ten} < {}", last.0, last.1);
            if n == 10 {
                assert!(ten >= 0.80, "{noise:?}: a 10% slowdown under 3% noise detected {:.1}% of the time at n = 10", ten * 100.0);
            }
            last = (five, ten);
        }
    }
}

#[test]
fn the_plus_minus_is_half_the_intervals_width_and_the_interval_covers_the_true_ratio() {
    let mut d = Draws(7);
    let mut covered = 0;
    for _ in 0..TRIALS {
        let before = Summary::of(&sample(&mut d, Noise::Lognormal, 10, 1.0)).unwrap();
        let after = Summary::of(&sample(&mut d, Noise::Lognormal, 10, 1.10)).unwrap();
        let r = Ratio::of(&after, &before).unwrap();
        assert!((r.uncertainty() - (r.high - r.low) / 2.0).abs() < 1e-12);
        covered += usize::from(r.low <= 1.10 && 1.10 <= r.high);
    }
    assert!(covered as f64 / TRIALS as f64 >= 0.94, "the 95% interval covered the true ratio {covered} times in {TRIALS}");
}

/// How often `check`'s `max_rebuild_seconds = 20` fails (the interval's lower end above 20) over [`TRIALS`] samples
/// of `n` times whose centre is `20 × scale`.
fn rebuild_limit_failures(seed: u64, noise: Noise, n: usize, scale: f64) -> f64 {
    let mut d = Draws(seed);
    let fails = (0..TRIALS)
        .filter(|_| {
            let c = CentreInterval::of(&sample(&mut d, noise, n, scale)).unwrap();
            c.interval.is_some_and(|(low, _)| low > 20.0)
        })
        .count();
    fails as f64 / TRIALS as f64
}

#[test]
fn a_rebuild_time_at_its_limit_rarely_fails_and_one_ten_percent_over_is_caught() {
    println!("noise      n   max_rebuild_seconds fails: at the limit   10 % over");
    for (i, noise) in [Noise::Normal, Noise::Lognormal].into_iter().enumerate() {
        let mut last = 0.0;
        for n in [3, 5, 6, 10, 20] {
            let seed = 5000 + 100 * i as u64 + n as u64;
            let (same, over) = (rebuild_limit_failures(seed, noise, n, 1.0), rebuild_limit_failures(seed + 1, noise, n, 1.10));
            println!("{:<10} {n:>2}   {:>36.1}%   {:>8.1}%", format!("{noise:?}"), same * 100.0, over * 100.0);
            assert!(same <= 0.05, "{noise:?} n={n}: a time at its limit failed {:.1}% of the time", same * 100.0);
            if n < 6 {
                assert_eq!((same, over), (0.0, 0.0), "{noise:?}: {n} times cannot reach 95% and never fail");
            }
            assert!(over >= last, "{noise:?} n={n}: power fell as n grew");
            if n == 10 {
                assert!(over >= 0.80, "{noise:?}: a time 10% over its limit failed only {:.1}% of the time at n = 10", over * 100.0);
            }
            last = over;
        }
    }
}
