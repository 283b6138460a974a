//! How the combination search itself generalises, on M3 monthly training parts only (the test
//! part `xx` is never read): each series' `x` loses its last 18 points (the "outer" window), the
//! model is trained on the rest exactly as `Train` does (its own validation windows come from
//! the end of that rest), and the outer window scores the chosen combination. Settings of the
//! search (validation windows, members per combination) are compared this way, never on `xx`.
//!
//! `cargo run --release -p augur-demand-forecast --example combo_validation -- [windows:max_members[:mase_weight] ...]`
//! (default `1:4:0.5`).

use std::collections::BTreeMap;
use std::time::Instant;

use augur_demand_forecast::datasets;
use augur_demand_forecast::metrics::mean_smape_mase;
use augur_demand_forecast::model::{self, SeriesIn, TrainOptions};
use augur_demand_forecast::stats::{self, METHODS};

fn main() -> anyhow::Result<()> {
    let dir = augur_testkit::datasets::dir();
    let data = datasets::m3_monthly(&dir.join("m3/m3_monthly.json"))?;
    let h = 18;
    let outer = datasets::m3_validation_windows(&data, h);
    let score = |fs: &[Vec<f64>]| mean_smape_mase(&outer, fs, 12);
    println!(
        "{} series; outer window = the last {h} points of x",
        outer.len()
    );
    let all: Vec<Vec<Vec<f64>>> = outer
        .iter()
        .map(|(y, _)| stats::all_forecasts(y, 12, h))
        .collect();
    for m in METHODS {
        let fs: Vec<Vec<f64>> = all.iter().map(|a| a[m as usize].clone()).collect();
        let (s, q) = score(&fs);
        println!("member {:>15}: sMAPE {s:.2} MASE {q:.3}", m.name());
    }
    let settings: Vec<(usize, u32, f64)> = {
        let v: Vec<(usize, u32, f64)> = std::env::args()
            .skip(1)
            .filter_map(|a| {
                let mut it = a.split(':');
                Some((
                    it.next()?.parse().ok()?,
                    it.next()?.parse().ok()?,
                    it.next().map_or(Some(0.5), |w| w.parse().ok())?,
                ))
            })
            .collect();
        if v.is_empty() { vec![(1, 4, 0.5)] } else { v }
    };
    let inputs: Vec<SeriesIn> = outer
        .iter()
        .map(|(y, _)| SeriesIn {
            values: y.clone(),
            season: 12,
            ..Default::default()
        })
        .collect();
    for (windows, max_members, mase_weight) in settings {
        let opts = TrainOptions {
            horizon: h,
            windows,
            max_members,
            mase_weight,
            gru: false,
            ..TrainOptions::default()
        };
        let t0 = Instant::now();
        let trained = model::train(&inputs, &opts);
        let none = BTreeMap::new();
        let fs: Vec<Vec<f64>> = inputs
            .iter()
            .map(|s| trained.model.forecast(s, &none, h, &[]).point)
            .collect();
        let (s, q) = score(&fs);
        println!(
            "windows {windows}, at most {max_members} members, MASE weight {mase_weight}: chose {} (log {}); validation {:?}; outer sMAPE {s:.2} MASE {q:.3}; {:.1} s",
            stats::combo_name(trained.model.combo),
            trained.model.log,
            trained.validation,
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
