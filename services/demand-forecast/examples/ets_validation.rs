//! AutoETS (and the other members) on M3 monthly validation windows only (the last 18 points of each training part `x`;
//! the test part `xx` is never read): the members for reference, then accuracy, time and the
//! chosen models for a few optimiser settings. The defaults of `ets::Options` were chosen with it.
//!
//! `cargo run --release -p augur-demand-forecast --example ets_validation -- [evals:tol:cap ...]`
//! (e.g. `10:1e-4:1`; `cap` 1 bounds beta by 0.2 / m, 0 keeps only `beta <= alpha`).

use std::collections::BTreeMap;
use std::time::Instant;

use augur_demand_forecast::datasets;
use augur_demand_forecast::ets::{self, Options};
use augur_demand_forecast::metrics::mean_smape_mase;
use augur_demand_forecast::stats::{self, Method};

fn main() -> anyhow::Result<()> {
    let dir = augur_testkit::datasets::dir();
    let data = datasets::m3_monthly(&dir.join("m3/m3_monthly.json"))?;
    let h = 18;
    let windows = datasets::m3_validation_windows(&data, h);
    let score = |fs: &[Vec<f64>]| mean_smape_mase(&windows, fs, 12);
    let t0 = Instant::now();
    let all: Vec<Vec<Vec<f64>>> = windows
        .iter()
        .map(|(y, _)| stats::all_forecasts(y, 12, h))
        .collect();
    println!(
        "{} validation windows; every member {:.1} s",
        windows.len(),
        t0.elapsed().as_secs_f64()
    );
    for m in [
        Method::Ets,
        Method::Damped,
        Method::Theta,
        Method::AutoEts,
        Method::Dotm,
        Method::AutoTheta,
    ] {
        let fs: Vec<Vec<f64>> = all.iter().map(|a| a[m as usize].clone()).collect();
        let (s, q) = score(&fs);
        println!("{:>10}: sMAPE {s:.2} MASE {q:.3}", m.name());
    }
    let settings: Vec<Options> = std::env::args()
        .skip(1)
        .filter_map(|a| {
            let mut it = a.split(':');
            Some(Options {
                evals_per_coord: it.next()?.parse().ok()?,
                tol: it.next()?.parse().ok()?,
                beta_cap: it.next().is_none_or(|v| v == "1"),
            })
        })
        .collect();
    for opts in settings {
        let t0 = Instant::now();
        let mut chosen: BTreeMap<String, usize> = BTreeMap::new();
        let fs: Vec<Vec<f64>> = windows
            .iter()
            .map(|(y, _)| {
                let fit = ets::auto(y, 12, &opts);
                let code = fit.as_ref().map_or("none".into(), |f| f.spec.code());
                *chosen.entry(code).or_default() += 1;
                fit.and_then(|f| f.forecast(h))
                    .unwrap_or_else(|| ets::forecast_with(y, 12, h, &opts))
            })
            .collect();
        let secs = t0.elapsed().as_secs_f64();
        let (s, q) = score(&fs);
        println!("{opts:?}: sMAPE {s:.2} MASE {q:.3}, {secs:.1} s; chosen {chosen:?}");
    }
    Ok(())
}
