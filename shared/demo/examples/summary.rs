//! Prints what `augur_demo::generate` produces for the default config (or `--seed N`,
//! `--customers N`, `--products N`, `--days N`) and how long it took.
//!
//! `cargo run -p augur-demo --release --example summary -- --seed 7`

use std::time::Instant;

fn main() {
    let mut cfg = augur_demo::DemoConfig::default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let value = pair
            .get(1)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_default();
        match pair[0].as_str() {
            "--seed" => cfg.seed = value,
            "--customers" => cfg.customers = usize::try_from(value).unwrap_or_default(),
            "--products" => cfg.products = usize::try_from(value).unwrap_or_default(),
            "--days" => cfg.days = u32::try_from(value).unwrap_or_default(),
            other => eprintln!("ignoring unknown argument {other}"),
        }
    }
    let started = Instant::now();
    let data = augur_demo::generate(&cfg);
    let took = started.elapsed();
    println!("{}", data.summary);
    println!("generated in {:.2?}", took);
}
