//! Pushdown: which filters are taken, and that they narrow the series a scan reads.

use std::collections::{BTreeSet, HashMap};

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

#[test]
fn range_filters_are_recognized() {
    let pushed = |e: Expr| range(&e).map(|(c, b)| (c.to_string(), b));
    let step = || col("step");
    assert_eq!(pushed(step().eq(lit(5i64))), Some(("step".into(), (5, 5))));
    assert_eq!(
        pushed(lit(5i64).lt(col("timestamp"))),
        Some(("timestamp".into(), (6, i64::MAX)))
    );
    assert_eq!(
        pushed(step().lt(lit(5i32))),
        Some(("step".into(), (i64::MIN, 4)))
    );
    assert_eq!(
        pushed(step().lt_eq(lit(5u8))),
        Some(("step".into(), (i64::MIN, 5)))
    );
    assert_eq!(
        pushed(step().gt_eq(lit(7i64))),
        Some(("step".into(), (7, i64::MAX)))
    );
    assert_eq!(
        pushed(step().between(lit(10i64), lit(20i64))),
        Some(("step".into(), (10, 20)))
    );
    assert_eq!(
        pushed(step().in_list(vec![lit(9i64), lit(3i64), lit(5i64)], false)),
        Some(("step".into(), (3, 9)))
    );
    assert_eq!(
        pushed(step().gt(lit(10i64)).and(step().lt(lit(20i64)))),
        Some(("step".into(), (11, 19)))
    );
    assert_eq!(
        pushed(step().eq(lit(1i64)).or(step().eq(lit(100i64)))),
        Some(("step".into(), (1, 100)))
    );
    assert_eq!(
        pushed(col("series_id").lt_eq(lit(7u64))),
        Some(("series_id".into(), (i64::MIN, 7)))
    );
    // Nothing satisfies these: empty bounds.
    let (_, (lo, hi)) = range(&step().lt(lit(i64::MIN))).unwrap();
    assert!(lo > hi);
    let (_, (lo, hi)) = range(&step().gt(lit(i64::MAX))).unwrap();
    assert!(lo > hi);
    // An empty side of an OR does not widen the other.
    assert_eq!(
        pushed(step().gt(lit(i64::MAX)).or(step().eq(lit(4i64)))),
        Some(("step".into(), (4, 4)))
    );
    // Not pushed: other columns, mixed columns, negations, non-integers, expressions.
    assert!(range(&col("value").gt(lit(1.0))).is_none());
    assert!(range(&step().gt(lit(1.5))).is_none());
    assert!(range(&step().gt(lit(1i64)).or(col("timestamp").lt(lit(5i64)))).is_none());
    assert!(range(&step().not_between(lit(1i64), lit(2i64))).is_none());
    assert!(range(&step().not_eq(lit(1i64))).is_none());
    assert!(range(&step().in_list(vec![lit(1i64)], true)).is_none());
    assert!(range(&(step() + lit(1i64)).gt(lit(3i64))).is_none());
    assert!(range(&step().gt(lit("3"))).is_none());
}

const T0: i64 = 1_700_000_000_000;

/// A store with run A's `loss` and `acc` (100,000 points each: steps 0..100,000, timestamps
/// T0 + step) in one segment, then 1,000 more points of `loss` (steps 100,000..101,000) in the
/// buffer. Returns the store and run A's id.
fn long_series() -> (tempfile::TempDir, Store, String) {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        background: false,
        flush_points: usize::MAX,
        flush_wal_bytes: u64::MAX,
        ..StoreOptions::default()
    };
    let store = Store::open_with(dir.path(), options).unwrap();
    let run = store.create_run(CreateRun::default()).unwrap().info.run_id;
    let log = |steps: std::ops::Range<i64>, keys: &[&str]| {
        for chunk in steps.collect::<Vec<_>>().chunks(500) {
            let points: Vec<Metric> = chunk
                .iter()
                .flat_map(|&s| {
                    keys.iter()
                        .map(move |k| Metric::new(*k, s as f64 / 10.0, T0 + s, s))
                })
                .collect();
            store.log_batch(&run, &points, &[], &[]).unwrap();
        }
    };
    log(0..100_000, &["loss", "acc"]);
    store.flush().unwrap();
    log(100_000..101_000, &["loss"]);
    (dir, store, run)
}

/// The scan figures `EXPLAIN ANALYZE` shows, exactly.
const FIGURES: [&str; 5] = [
    "segment_rows",
    "segment_pages",
    "segment_values",
    "memory_rows",
    "pruned_rows",
];

/// Runs `sql` and returns its first row as strings, and the exact figures of its `metrics` scans.
fn run_counted(store: &Store, sql: &str) -> (Vec<String>, HashMap<&'static str, usize>) {
    let inner = store.shared().clone();
    let sql = sql.to_string();
    crate::query::runtime().block_on(async move {
        let ctx = crate::query::context(inner, &crate::query::QueryOptions::default()).unwrap();
        let plan = ctx
            .sql(&sql)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let batches = datafusion::physical_plan::collect(plan.clone(), ctx.task_ctx())
            .await
            .unwrap();
        let batch = &batches[0];
        let row = (0..batch.num_columns())
            .map(|c| arrow::util::display::array_value_to_string(batch.column(c), 0).unwrap())
            .collect();
        let mut figures: HashMap<&'static str, usize> = HashMap::new();
        let mut stack = vec![plan];
        while let Some(node) = stack.pop() {
            if node.name() == "MetricsScanExec" {
                let m = node.metrics().unwrap();
                for name in FIGURES {
                    *figures.entry(name).or_default() +=
                        m.sum_by_name(name).map_or(0, |v| v.as_usize());
                }
            }
            stack.extend(node.children().into_iter().cloned());
        }
        (row, figures)
    })
}

#[test]
fn step_and_timestamp_filters_read_only_the_pages_that_can_match() {
    let (_dir, store, run) = long_series();
    let series = format!("run_id = '{run}' AND key = 'loss'");

    // Everything of the series: 100,000 segment rows, 1,000 buffered.
    let (row, all) = run_counted(
        &store,
        &format!("SELECT count(*), max(step) FROM metrics WHERE {series} AND value >= 0"),
    );
    assert_eq!(row, ["101000", "100999"]);
    assert_eq!(all["segment_rows"], 100_000);
    assert_eq!(all["segment_pages"], 98); // ⌈100,000 / 1024⌉
    assert_eq!(all["memory_rows"], 1_000);
    assert_eq!(all["pruned_rows"], 0);

    // A step range inside the segment: its pages only, nothing from the buffer.
    let (row, f) = run_counted(
        &store,
        &format!(
            "SELECT count(*), min(step), max(step), sum(step) FROM metrics
             WHERE {series} AND step BETWEEN 50000 AND 51000"
        ),
    );
    assert_eq!(row, ["1001", "50000", "51000", "50550500"]);
    assert!(
        (1001..=3 * 1024).contains(&f["segment_rows"]),
        "{f:?}: the 1,001 rows lie in at most 3 pages"
    );
    assert!(f["segment_pages"] <= 3, "{f:?}");
    assert_eq!(f["memory_rows"], 0, "{f:?}");
    assert_eq!(f["pruned_rows"], 100_000 - f["segment_rows"]);

    // Equality and open ranges; a range reaching into the buffer takes just those points.
    let (row, f) = run_counted(
        &store,
        &format!("SELECT count(*) , sum(value) FROM metrics WHERE {series} AND step = 77777"),
    );
    assert_eq!(row, ["1", "7777.7"]);
    assert!(f["segment_rows"] <= 1024, "{f:?}");
    let (row, f) = run_counted(
        &store,
        &format!("SELECT count(*) FROM metrics WHERE {series} AND step > 100499"),
    );
    assert_eq!(row, ["500"]);
    assert_eq!((f["segment_rows"], f["memory_rows"]), (0, 500), "{f:?}");

    // Timestamps: through the page statistics of the timestamp column.
    let (row, f) = run_counted(
        &store,
        &format!(
            "SELECT count(*), min(step) FROM metrics
             WHERE {series} AND timestamp >= {} AND timestamp < {}",
            T0 + 20_000,
            T0 + 20_100
        ),
    );
    assert_eq!(row, ["100", "20000"]);
    assert!(f["segment_rows"] <= 2 * 1024, "{f:?}");

    // Both keys, a step range: each series' pages.
    let (row, f) = run_counted(
        &store,
        "SELECT count(*) FROM metrics WHERE step BETWEEN 10 AND 20 OR step BETWEEN 5000 AND 5001",
    );
    assert_eq!(row, ["26"]);
    // One OR is one range (10..=5001) for the scan: 5 pages of each series at most.
    assert!(f["segment_rows"] <= 2 * 6 * 1024, "{f:?}");
}

#[test]
fn only_projected_columns_are_decoded() {
    let (_dir, store, run) = long_series();
    let series = format!("run_id = '{run}' AND key = 'acc'");
    let values = |sql: &str| run_counted(&store, sql).1["segment_values"];
    // Counting rows, or reading only the constant columns, decodes nothing.
    assert_eq!(
        values(&format!("SELECT count(*) FROM metrics WHERE {series}")),
        0
    );
    assert_eq!(
        values("SELECT count(DISTINCT run_id || key) FROM metrics"),
        0
    );
    // One column, then two, then every column of the segment.
    assert_eq!(
        values(&format!("SELECT sum(value) FROM metrics WHERE {series}")),
        100_000
    );
    assert_eq!(
        values(&format!(
            "SELECT max(step), sum(value) FROM metrics WHERE {series}"
        )),
        200_000
    );
    assert_eq!(
        values(&format!(
            "SELECT count(*) FROM (SELECT * FROM metrics WHERE {series})"
        )),
        // DataFusion prunes the unused columns of the subquery: nothing to decode.
        0
    );
    assert_eq!(
        values(&format!(
            "SELECT count(*) FROM metrics WHERE {series} AND step + timestamp + value > 0
               AND model_id IS NULL AND dataset_name IS NULL AND dataset_digest IS NULL"
        )),
        6 * 100_000
    );
}
