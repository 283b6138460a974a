//! Times the neural component on MovieLens (development aid).
fn main() -> anyhow::Result<()> {
    let dir = augur_testkit::datasets::dir();
    let raw = augur_recommendation::movielens::load_ratings(&dir.join("movielens/ratings.csv"))?;
    let d = augur_recommendation::data::Dataset::from_raw(&raw).keep_users_with(5);
    let split = augur_recommendation::data::chrono_split(&d, 0.2);
    let args: Vec<String> = std::env::args().collect();
    let mut cfg = augur_recommendation::neural::SeqConfig::default();
    if let Some(s) = args.get(1) {
        cfg.steps = s.parse()?;
    }
    if let Some(s) = args.get(2) {
        cfg.dim = s.parse()?;
    }
    if let Some(s) = args.get(3) {
        cfg.lr = s.parse()?;
    }
    if let Some(s) = args.get(4) {
        cfg.batch = s.parse()?;
    }
    let t = std::time::Instant::now();
    let m = augur_recommendation::neural::train(&split.train, &cfg, |s, l| {
        eprintln!("step {s} loss {l:.3} at {:.1}s", t.elapsed().as_secs_f64())
    })?;
    eprintln!("trained in {:.1}s", t.elapsed().as_secs_f64());
    let r = augur_recommendation::eval::evaluate(
        &|_: usize, h: &[augur_recommendation::data::Ev], o: &mut [f32]| m.score(h, 1.0, o),
        &split,
    );
    println!("{cfg:?} {r:?}");
    Ok(())
}
