//! The credit benchmark's protocol split is the one the anchors were run on:
//! scikit-learn's `train_test_split(X, y, test_size=0.3, stratify=y, random_state=42)` over
//! `credit/credit_data.csv`. Reference values produced with Python 3.11, pandas, numpy 2 and
//! scikit-learn 1.9.1:
//!   y = (pd.read_csv(path)["Status"] == "bad").values
//!   tr, te = train_test_split(np.arange(len(y)), test_size=0.3, stratify=y, random_state=42)
//!   len(tr), len(te), sorted(te)[:10], sum(te)
#![allow(clippy::expect_used, clippy::unwrap_used)]

use augur_model::split::sklearn_stratified_split;

#[test]
fn credit_protocol_split_is_scikit_learns() {
    let Some(path) = augur_testkit::datasets::require("credit/credit_data.csv") else {
        return;
    };
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let status = header.iter().position(|h| h.trim() == "Status").unwrap();
    let y: Vec<bool> = lines
        .map(|l| l.split(',').nth(status).unwrap().trim() == "bad")
        .collect();
    assert_eq!(y.len(), 4454);
    let (train, test) = sklearn_stratified_split(&y, 0.3, 42);
    assert_eq!((train.len(), test.len()), (3117, 1337));
    assert_eq!(test[..10], [1, 2, 4, 5, 6, 11, 13, 21, 25, 27]);
    assert_eq!(test.iter().sum::<usize>(), 2_969_124);
    // Stratified: 376 or 377 of the 1,254 bad applications in the test part.
    let bad = test.iter().filter(|&&i| y[i]).count();
    assert!((376..=377).contains(&bad), "{bad}");
}
