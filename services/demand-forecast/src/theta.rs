//! The Theta family in its state-space form (Fiorucci, Pellegrini, Louzada, Petropoulos and
//! Koehler, "Models for optimising the theta method and their relationship to state space
//! models", IJF 2016): the standard Theta model (STM, theta = 2), the optimised one (OTM, theta
//! fitted), and their dynamic versions (DSTM, DOTM) in which the linear trend's intercept and
//! slope are the least-squares fit of the observations seen so far, updated at every step,
//! instead of the fit of the whole series. Level, smoothing weight and theta are fitted by
//! minimising the in-sample one-step squared error; [`auto`] takes the lowest of the four.
//! Callers seasonally adjust first (as for the classical Theta method).
//!
//! One step, for t = 2..n (t = 1 only initialises the trend with y_1):
//!
//! ```text
//! mu_t  = l_{t-1} + (1 - 1/theta) [ (1-a)^(t-1) A_{t-1} + (1 - (1-a)^t) / a * B_{t-1} ]
//! l_t   = a y_t + (1-a) l_{t-1}
//! dynamic:  ybar_t = ((t-1) ybar_{t-1} + y_t) / t
//!           B_t    = ((t-2) B_{t-1} + 6 (y_t - ybar_{t-1}) / t) / (t+1)
//!           A_t    = ybar_t - (t+1) B_t / 2
//! ```
//!
//! Forecasts continue the recursion with y replaced by mu.

// Least-squares intercept (at t = 0) and slope of y against t = 1..n.
use crate::ets::line as ols;

/// Which member of the family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    pub dynamic: bool,
    pub optimise_theta: bool,
}

pub const STM: Kind = Kind {
    dynamic: false,
    optimise_theta: false,
};
pub const OTM: Kind = Kind {
    dynamic: false,
    optimise_theta: true,
};
pub const DSTM: Kind = Kind {
    dynamic: true,
    optimise_theta: false,
};
pub const DOTM: Kind = Kind {
    dynamic: true,
    optimise_theta: true,
};

/// A fitted model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fit {
    pub kind: Kind,
    pub level0: f64,
    pub alpha: f64,
    pub theta: f64,
    /// Mean squared one-step error in sample.
    pub mse: f64,
}

const ALPHA_MIN: f64 = 0.1;
const ALPHA_MAX: f64 = 0.99;
const THETA_MIN: f64 = 1.0;
const THETA_MAX: f64 = 20.0;

/// The recursion's state after t observations.
#[derive(Debug, Clone, Copy)]
struct State {
    t: f64,
    /// (1 - alpha)^t, kept up to date by [`State::update`] rather than raised to the power at
    /// every step (the power was half the recursion's time, and a Theta fit runs it hundreds of
    /// times).
    decay: f64,
    level: f64,
    mean: f64,
    a: f64,
    b: f64,
}

impl State {
    fn mu(&self, alpha: f64, theta: f64) -> f64 {
        let decay = self.decay;
        self.level
            + (1.0 - 1.0 / theta)
                * (decay * self.a + (1.0 - decay * (1.0 - alpha)) / alpha * self.b)
    }

    fn update(&mut self, y: f64, alpha: f64, dynamic: bool) {
        self.level = alpha * y + (1.0 - alpha) * self.level;
        let t = self.t + 1.0;
        if dynamic {
            let prev_mean = self.mean;
            self.mean = ((t - 1.0) * prev_mean + y) / t;
            self.b = ((t - 2.0) * self.b + 6.0 * (y - prev_mean) / t) / (t + 1.0);
            self.a = self.mean - (t + 1.0) * self.b / 2.0;
        }
        self.t = t;
        self.decay *= 1.0 - alpha;
    }
}

/// Runs the recursion over `y` (n >= 2): the mean squared one-step error and the final state.
fn run(y: &[f64], kind: Kind, level0: f64, alpha: f64, theta: f64) -> (f64, State) {
    let (a, b) = if kind.dynamic { (y[0], 0.0) } else { ols(y) };
    let mut s = State {
        t: 1.0,
        decay: 1.0 - alpha,
        level: alpha * y[0] + (1.0 - alpha) * level0,
        mean: y[0],
        a,
        b,
    };
    let mut sse = 0.0;
    for v in &y[1..] {
        let e = v - s.mu(alpha, theta);
        sse += e * e;
        s.update(*v, alpha, kind.dynamic);
    }
    (sse / (y.len() - 1) as f64, s)
}

/// Fits one member of the family to `y` (at least 3 points; `None` otherwise or when the fit
/// is not finite).
pub fn fit(y: &[f64], kind: Kind) -> Option<Fit> {
    if y.len() < 3 || y.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let scale = y.iter().map(|v| v.abs()).sum::<f64>() / y.len() as f64;
    let scale = if scale > 0.0 { scale } else { 1.0 };
    // Optimise on the series divided by its mean magnitude (well-conditioned steps).
    let z: Vec<f64> = y.iter().map(|v| v / scale).collect();
    let theta_of = |x: &[f64]| if kind.optimise_theta { x[2] } else { 2.0 };
    let objective = |x: &[f64]| {
        let (alpha, theta) = (x[1], theta_of(x));
        if !(ALPHA_MIN..=ALPHA_MAX).contains(&alpha) || !(THETA_MIN..=THETA_MAX).contains(&theta) {
            return f64::INFINITY;
        }
        let mse = run(&z, kind, x[0], alpha, theta).0;
        if mse.is_finite() { mse } else { f64::INFINITY }
    };
    let mut x0 = vec![z[0] / 2.0, 0.5];
    let mut step = vec![0.1 * z[0].abs().max(0.1), 0.2];
    if kind.optimise_theta {
        x0.push(2.0);
        step.push(0.5);
    }
    let best = crate::stats::nelder_mead(objective, &x0, &step, 200 * x0.len());
    let mse = objective(&best);
    if !mse.is_finite() {
        return None;
    }
    Some(Fit {
        kind,
        level0: best[0] * scale,
        alpha: best[1],
        theta: theta_of(&best),
        mse: mse * scale * scale,
    })
}

/// The `h`-step forecast of a fitted model.
pub fn forecast(y: &[f64], f: &Fit, h: usize) -> Vec<f64> {
    let (_, mut s) = run(y, f.kind, f.level0, f.alpha, f.theta);
    (0..h)
        .map(|_| {
            let mu = s.mu(f.alpha, f.theta);
            s.update(mu, f.alpha, f.kind.dynamic);
            mu
        })
        .collect()
}

/// The member of the family with the lowest in-sample error (statsforecast's AutoTheta rule),
/// and the fit of DOTM alone; `None` for series too short to fit.
pub fn auto(y: &[f64]) -> Option<(Fit, Fit)> {
    let fits: Vec<Fit> = [STM, OTM, DSTM, DOTM]
        .into_iter()
        .filter_map(|k| fit(y, k))
        .collect();
    let best = fits
        .iter()
        .copied()
        .min_by(|a, b| a.mse.total_cmp(&b.mse))?;
    let dotm = fits
        .iter()
        .copied()
        .find(|f| f.kind == DOTM)
        .unwrap_or(best);
    Some((best, dotm))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_trend_is_the_running_least_squares_fit() {
        let y: Vec<f64> = (0..30)
            .map(|t| 5.0 + 0.7 * t as f64 + ((t * 7) % 5) as f64)
            .collect();
        let mut s = State {
            t: 1.0,
            decay: 0.5,
            level: y[0],
            mean: y[0],
            a: y[0],
            b: 0.0,
        };
        for (i, v) in y.iter().enumerate().skip(1) {
            s.update(*v, 0.5, true);
            let (a, b) = ols(&y[..=i]);
            assert!((s.b - b).abs() < 1e-9, "t={} {} vs {}", i + 1, s.b, b);
            assert!((s.a - a).abs() < 1e-9, "t={} {} vs {}", i + 1, s.a, a);
        }
    }

    #[test]
    fn the_kept_decay_is_the_power_of_one_minus_alpha() {
        let y: Vec<f64> = (0..200).map(|t| (t % 13) as f64).collect();
        let alpha = 0.37;
        let mut s = run(&y[..2], DOTM, 1.0, alpha, 2.0).1;
        for v in &y[2..] {
            s.update(*v, alpha, true);
            let power = (1.0 - alpha).powf(s.t);
            assert!(
                (s.decay - power).abs() <= 1e-12 * power.max(1e-300),
                "{} vs {power}",
                s.decay
            );
        }
    }

    #[test]
    fn standard_theta_forecast_is_ses_plus_half_the_drift() {
        // With theta = 2 and a long series, the h-step forecast grows by B/2 per step.
        let y: Vec<f64> = (0..120).map(|t| 100.0 + 2.0 * t as f64).collect();
        let f = fit(&y, STM).unwrap();
        let fc = forecast(&y, &f, 6);
        for w in fc.windows(2) {
            assert!((w[1] - w[0] - 1.0).abs() < 1e-6, "{fc:?}");
        }
    }

    #[test]
    fn optimised_theta_follows_a_straight_trend_better_than_theta_2() {
        let y: Vec<f64> = (0..60)
            .map(|t| 50.0 + 3.0 * t as f64 + if t % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        let truth: Vec<f64> = (60..72).map(|t| 50.0 + 3.0 * t as f64).collect();
        let err = |k: Kind| {
            let f = fit(&y, k).unwrap();
            forecast(&y, &f, 12)
                .iter()
                .zip(&truth)
                .map(|(a, b)| (a - b).abs())
                .sum::<f64>()
        };
        let (stm, otm, dotm) = (err(STM), err(OTM), err(DOTM));
        assert!(otm < stm, "OTM {otm} vs STM {stm}");
        assert!(dotm < stm, "DOTM {dotm} vs STM {stm}");
        let (best, _) = auto(&y).unwrap();
        assert!(best.theta > 2.0, "{best:?}");
    }

    #[test]
    fn finite_on_awkward_series() {
        for y in [
            vec![0.0; 12],
            vec![1.0, 2.0, 3.0],
            vec![1e9, -1e9, 1e9, -1e9, 0.0, 5.0],
            vec![0.0, 0.0, 7.0, 0.0, 0.0, 0.0, 1.0, 0.0],
        ] {
            let (best, dotm) = auto(&y).unwrap();
            for f in [best, dotm] {
                assert!(
                    forecast(&y, &f, 5).iter().all(|v| v.is_finite()),
                    "{y:?} {f:?}"
                );
            }
        }
        assert!(auto(&[1.0, 2.0]).is_none());
    }
}
