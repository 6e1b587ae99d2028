//! Pushdown: which filters are taken, and that they narrow the series a scan reads.

use std::collections::BTreeSet;

use datafusion::prelude::{col, lit};

use super::*;
use crate::types::{CreateRun, Metric};
use crate::{Store, StoreOptions};

fn set(values: &[&str]) -> BTreeSet<String> {
    values.iter().map(|v| v.to_string()).collect()
}

#[test]
fn equality_filters_are_recognized() {
    let pushed = |e: Expr| equality(&e).map(|(c, v)| (c.to_string(), v));
    assert_eq!(
        pushed(col("run_id").eq(lit("a"))),
        Some(("run_id".into(), set(&["a"])))
    );
    assert_eq!(
        pushed(lit("k").eq(col("key"))),
        Some(("key".into(), set(&["k"])))
    );
    assert_eq!(
        pushed(col("key").in_list(vec![lit("x"), lit("y")], false)),
        Some(("key".into(), set(&["x", "y"])))
    );
    let or = col("experiment_id")
        .eq(lit("1"))
        .or(col("experiment_id").eq(lit("2")));
    assert_eq!(equality(&or).unwrap().1, set(&["1", "2"]));
    // Not pushed: other columns, mixed ORs, negations, non-string literals, other operators.
    assert!(equality(&col("step").eq(lit(3i64))).is_none());
    assert!(equality(&col("run_id").eq(lit("a")).or(col("key").eq(lit("b")))).is_none());
    assert!(equality(&col("key").in_list(vec![lit("x")], true)).is_none());
    assert!(equality(&col("key").not_eq(lit("x"))).is_none());
    assert!(equality(&col("key").like(lit("x%"))).is_none());
}

#[test]
fn filters_narrow_the_series_read() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        background: false,
        ..StoreOptions::default()
    };
    let store = Store::open_with(dir.path(), options).unwrap();
    let mut runs = Vec::new();
    for _ in 0..3 {
        let id = store.create_run(CreateRun::default()).unwrap().info.run_id;
        let points: Vec<Metric> = ["a", "b", "c"]
            .iter()
            .map(|k| Metric::new(*k, 1.0, 1, 0))
            .collect();
        store.log_batch(&id, &points, &[], &[]).unwrap();
        runs.push(id);
    }
    let catalog = store.shared().catalog();
    let pick = |restrictions: &[(&str, &[&str])]| {
        let mut s = Selection::default();
        for (column, values) in restrictions {
            s.restrict(column, set(values));
        }
        select_series(catalog, &s)
            .unwrap()
            .into_iter()
            .map(|s| (s.run_id.to_string(), s.key.to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(pick(&[]).len(), 9);
    assert_eq!(
        pick(&[("run_id", &[&runs[1]]), ("key", &["b", "zz"])]),
        vec![(runs[1].clone(), "b".to_string())]
    );
    assert_eq!(pick(&[("key", &["c"])]).len(), 3);
    assert_eq!(pick(&[("run_id", &[&runs[0], &runs[2]])]).len(), 6);
    // ANDed conditions on one column intersect.
    assert!(pick(&[("run_id", &[&runs[0]]), ("run_id", &[&runs[1]])]).is_empty());
    assert_eq!(pick(&[("experiment_id", &["0"]), ("key", &["a"])]).len(), 3);
    assert!(pick(&[("experiment_id", &["1"])]).is_empty());
    assert!(pick(&[("run_id", &[&runs[0]]), ("experiment_id", &["7"])]).is_empty());
}
