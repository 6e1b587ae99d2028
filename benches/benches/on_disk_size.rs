//! Not a timing: the on-disk size of realistic training curves in quiver-store's metric
//! segments. Builds 10 runs × 10 keys × 10,000 steps of noisy decreasing curves (timestamps
//! ~100 ms apart with jitter), flushes and compacts, and prints the bytes per point of the
//! segment files (`metrics/seg-*.parquet`):
//!
//! ```text
//! on_disk_size: X.XX bytes/point (N bytes for M points)
//! ```
//!
//! A second line gives the same for values rounded to `f32` first, as metrics computed in
//! float32 (a PyTorch `loss.item()`) arrive. Runs with `cargo bench -p quiver-benches`; a filter
//! that does not match `on_disk_size` skips it, and test mode (`--test`, or no `--bench`) shrinks
//! it to a smoke run.

use std::time::Instant;

use quiver_benches::{
    bench_dir, new_run, open_store, segment_files, server_options, test_mode, timeline,
    training_curve, CurveShape, Timeline, TrainingCurve,
};
use quiver_store::Metric;
use rand::rngs::SmallRng;
use rand::SeedableRng;

const KEYS: [&str; 10] = [
    "train/loss",
    "val/loss",
    "train/ce_loss",
    "train/aux_loss",
    "val/ce_loss",
    "val/perplexity_log",
    "train/kl",
    "train/reg",
    "val/error",
    "train/error",
];

/// Criterion options that take a value, so that their value is not taken for a filter.
const OPTIONS_WITH_VALUE: &[&str] = &[
    "-b",
    "-c",
    "-s",
    "--baseline",
    "--baseline-lenient",
    "--color",
    "--confidence-level",
    "--format",
    "--load-baseline",
    "--measurement-time",
    "--noise-threshold",
    "--nresamples",
    "--output-format",
    "--plotting-backend",
    "--profile-time",
    "--sample-size",
    "--save-baseline",
    "--significance-level",
    "--warm-up-time",
];

/// Whether a criterion-style filter on the command line excludes this benchmark.
fn filtered_out() -> bool {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut filters = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if OPTIONS_WITH_VALUE.contains(&a.as_str()) {
            i += 1;
        } else if !a.starts_with('-') {
            filters.push(a.clone());
        }
        i += 1;
    }
    !filters.is_empty()
        && !filters
            .iter()
            .any(|f| "on_disk_size".contains(f.as_str()) || f.contains("on_disk"))
}

/// Logs `runs × KEYS × steps` points, flushes and compacts; returns (segment bytes, segment
/// files, points).
fn build(runs: usize, steps: i64, f32_values: bool) -> (u64, usize, u64) {
    let dir = bench_dir("on_disk_size");
    let store = open_store(dir.path(), server_options());
    let mut shape_rng = SmallRng::seed_from_u64(42);
    struct RunCurves {
        id: String,
        times: Timeline,
        curves: Vec<TrainingCurve>,
    }
    let mut all: Vec<RunCurves> = (0..runs)
        .map(|r| RunCurves {
            id: new_run(&store, &format!("run-{r}")),
            times: timeline(1000 + r as u64),
            curves: (0..KEYS.len())
                .map(|k| training_curve(CurveShape::random(&mut shape_rng), (r * 100 + k) as u64))
                .collect(),
        })
        .collect();
    // Runs log in turn, 100 steps × 10 keys = 1000 points per batch, as concurrent jobs would.
    let steps_per_batch = (quiver_benches::BATCH / KEYS.len()) as i64;
    let mut batch = Vec::with_capacity(quiver_benches::BATCH);
    let mut points = 0u64;
    for first in (0..steps).step_by(steps_per_batch as usize) {
        for run in &mut all {
            batch.clear();
            for step in first..(first + steps_per_batch).min(steps) {
                let ts = run.times.next().expect("timelines are endless");
                for (key, curve) in KEYS.iter().zip(&mut run.curves) {
                    let mut v = curve.value(step);
                    if f32_values {
                        v = v as f32 as f64;
                    }
                    batch.push(Metric::new(*key, v, ts, step));
                }
            }
            store
                .log_batch(&run.id, &batch, &[], &[])
                .expect("log_batch");
            points += batch.len() as u64;
        }
    }
    store.flush().expect("flush");
    store.compact().expect("compact");
    let stats = store.metrics_stats();
    assert_eq!(stats.segment_rows, points, "every point is in a segment");
    let (bytes, files) = segment_files(dir.path()).expect("list segments");
    store.close().expect("close");
    (bytes, files, points)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("on_disk_size: benchmark");
        return;
    }
    if filtered_out() {
        return;
    }
    let (runs, steps) = if test_mode() {
        (2, 1_000)
    } else {
        (10, 10_000)
    };
    let t = Instant::now();
    let (bytes, files, points) = build(runs, steps, false);
    println!(
        "on_disk_size: {:.2} bytes/point ({bytes} bytes for {points} points)",
        bytes as f64 / points as f64
    );
    println!(
        "  ({runs} runs × {} keys × {steps} steps, f64 values, {files} segment file(s), built in {:.1} s)",
        KEYS.len(),
        t.elapsed().as_secs_f64()
    );
    let (bytes, _, points) = build(runs, steps, true);
    println!(
        "on_disk_size (f32-rounded values): {:.2} bytes/point ({bytes} bytes for {points} points)",
        bytes as f64 / points as f64
    );
}
