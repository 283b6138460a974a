//! Quality table on MovieLens small (development shortcut for the bench binary's quality part).
fn main() -> anyhow::Result<()> {
    let dir = augur_testkit::datasets::dir();
    let (rows, summary) =
        augur_recommendation::movielens::run(&dir.join("movielens/ratings.csv"), &mut |m| {
            eprintln!("{m}")
        })?;
    println!(
        "{summary}\n\n{}",
        augur_recommendation::movielens::table(&rows)
    );
    Ok(())
}
