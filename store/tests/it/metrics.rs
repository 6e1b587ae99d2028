//! Metric history, sampling and latest values, from buffers, segments and both.

use quiver_store::*;

use crate::{manual_options, new_run, temp_store};

fn log_steps(s: &Store, run: &str, key: &str, steps: std::ops::Range<i64>) {
    let points: Vec<Metric> = steps
        .map(|i| Metric::new(key, 1.0 / (i as f64 + 1.0), 1_000 + i * 10, i))
        .collect();
    for chunk in points.chunks(1000) {
        s.log_batch(run, chunk, &[], &[]).unwrap();
    }
}

#[test]
fn history_is_in_mlflow_order_and_keeps_special_values() {
    let (_d, s) = temp_store();
    let id = new_run(&s);
    let pts = [
        Metric::new("m", f64::NAN, 30, 1),
        Metric::new("m", f64::INFINITY, 10, 2),
        Metric::new("m", f64::NEG_INFINITY, 10, 1),
        Metric::new("m", -0.5, 20, -3),
        Metric::new("m", 2.0, 10, 1),
        Metric::new("m", 2.0, 10, 1), // exact duplicate: stored once
    ];
    s.log_batch(&id, &pts, &[], &[]).unwrap();
    let check = |h: &MetricHistory| {
        assert_eq!(h.timestamps(), &[10, 10, 10, 20, 30]);
        assert_eq!(h.steps(), &[1, 1, 2, -3, 1]);
        assert_eq!(h.values()[0], f64::NEG_INFINITY);
        assert_eq!(h.values()[1], 2.0);
        assert_eq!(h.values()[2], f64::INFINITY);
        assert!(h.values()[4].is_nan());
    };
    check(&s.metric_history(&id, "m", None, None).unwrap().0);
    s.flush().unwrap();
    check(&s.metric_history(&id, "m", None, None).unwrap().0);
    // Latest: greatest step, then timestamp, then value.
    let latest = s.latest_metrics(&id).unwrap();
    assert_eq!((latest[0].step, latest[0].timestamp), (2, 10));
    assert_eq!(latest[0].value, f64::INFINITY);
    // Unknown run or key: empty, as MLflow.
    assert!(s
        .metric_history(&id, "nope", None, None)
        .unwrap()
        .0
        .is_empty());
}

#[test]
fn history_pages_across_segments_and_buffer() {
    let (_d, s) = temp_store();
    let id = new_run(&s);
    log_steps(&s, &id, "loss", 0..2500);
    s.flush().unwrap();
    log_steps(&s, &id, "loss", 2500..4000);
    s.flush().unwrap();
    log_steps(&s, &id, "loss", 4000..5000);
    let mut token = None;
    let mut steps = Vec::new();
    let mut pages = 0;
    loop {
        let (page, next) = s
            .metric_history(&id, "loss", token.as_deref(), Some(700))
            .unwrap();
        assert!(page.len() <= 700);
        steps.extend_from_slice(page.steps());
        pages += 1;
        match next {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(pages, 8);
    assert_eq!(steps, (0..5000).collect::<Vec<_>>());
    let e = s
        .metric_history(&id, "loss", Some("garbage"), Some(10))
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidParameterValue);
    assert!(s.metric_history(&id, "loss", None, Some(0)).is_err());
}

#[test]
fn out_of_order_points_are_merged_and_sorted() {
    let (_d, s) = temp_store();
    let id = new_run(&s);
    log_steps(&s, &id, "m", 100..200);
    s.flush().unwrap();
    log_steps(&s, &id, "m", 0..150); // overlaps the segment: 100..150 are exact duplicates
    let (h, _) = s.metric_history(&id, "m", None, None).unwrap();
    assert_eq!(h.steps(), (0..200).collect::<Vec<_>>().as_slice());
    // Timestamps going back in time: history order is by timestamp.
    s.log_batch(
        &id,
        &[Metric::new("t", 1.0, 500, 1), Metric::new("t", 2.0, 100, 2)],
        &[],
        &[],
    )
    .unwrap();
    s.flush().unwrap();
    let (h, _) = s.metric_history(&id, "t", None, None).unwrap();
    assert_eq!(h.steps(), &[2, 1]);
}

/// MLflow's NTILE sampling, written plainly over a sorted vector.
fn reference_sample(steps: &[i64], max: usize) -> Vec<i64> {
    let n = steps.len();
    if n <= max {
        return steps.to_vec();
    }
    let mut buckets: Vec<Vec<i64>> = vec![Vec::new(); max];
    let (size, rem) = (n / max, n % max);
    let mut i = 0;
    for (b, bucket) in buckets.iter_mut().enumerate() {
        let len = size + usize::from(b < rem);
        bucket.extend_from_slice(&steps[i..i + len]);
        i += len;
    }
    let mut picks: Vec<i64> = buckets.iter().map(|b| b[0]).collect();
    if *picks.last().unwrap() != steps[n - 1] {
        picks.pop();
        picks.push(steps[n - 1]);
    }
    picks
}

#[test]
fn sampled_reads_follow_mlflow_bulk_interval_semantics() {
    let (_d, s) = temp_store();
    let id = new_run(&s);
    log_steps(&s, &id, "m", 0..10);
    let h = s.sampled_metric_history(&id, "m", 5, None).unwrap();
    assert_eq!(h.steps(), &[0, 2, 4, 6, 9]);
    log_steps(&s, &id, "m", 10..3000);
    s.flush().unwrap();
    log_steps(&s, &id, "m", 3000..5003);
    let all: Vec<i64> = (0..5003).collect();
    for max in [1, 7, 320, 2500, 6000] {
        let h = s.sampled_metric_history(&id, "m", max, None).unwrap();
        assert_eq!(
            h.steps(),
            reference_sample(&all, max as usize).as_slice(),
            "max {max}"
        );
    }
    for (a, b) in [(0, 0), (17, 4099), (2999, 3001), (-10, 5), (6000, 7000)] {
        let inside: Vec<i64> = all
            .iter()
            .copied()
            .filter(|s| (a..=b).contains(s))
            .collect();
        let h = s
            .sampled_metric_history(&id, "m", 100, Some((a, b)))
            .unwrap();
        assert_eq!(
            h.steps(),
            reference_sample(&inside, 100).as_slice(),
            "range {a}..={b}"
        );
    }
    assert!(s
        .sampled_metric_history(&id, "m", 10, Some((5, 1)))
        .is_err());
    assert!(s.sampled_metric_history(&id, "m", 0, None).is_err());
}

#[test]
fn model_and_dataset_references_survive_flush() {
    let (_d, s) = temp_store();
    let id = new_run(&s);
    let mut m = Metric::new("acc", 0.9, 5, 1);
    m.model_id = Some("m-123".into());
    m.dataset_name = Some("eval".into());
    m.dataset_digest = Some("abc".into());
    s.log_batch(&id, &[Metric::new("acc", 0.5, 1, 0), m.clone()], &[], &[])
        .unwrap();
    s.flush().unwrap();
    let (h, _) = s.metric_history(&id, "acc", None, None).unwrap();
    assert_eq!(h.get(0).model_id, None);
    assert_eq!(h.get(1), m);
    assert_eq!(s.get_run(&id).unwrap().metrics, vec![m]);
}

#[test]
fn compaction_merges_small_segments_without_changing_reads() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        compact_max_small: 2,
        ..manual_options()
    };
    let s = Store::open_with(dir.path(), opts).unwrap();
    let a = new_run(&s);
    let b = new_run(&s);
    for i in 0..5 {
        log_steps(&s, &a, "x", i * 100..(i + 1) * 100);
        log_steps(&s, &b, "y", i * 10..(i + 1) * 10);
        s.flush().unwrap();
    }
    assert_eq!(s.metrics_stats().segments, 5);
    assert!(s.compact().unwrap());
    assert_eq!(s.metrics_stats().segments, 1);
    assert_eq!(s.metric_history(&a, "x", None, None).unwrap().0.len(), 500);
    assert_eq!(
        s.metric_history(&b, "y", None, None).unwrap().0.steps(),
        (0..50).collect::<Vec<_>>().as_slice()
    );
    drop(s);
    let s = Store::open_with(dir.path(), manual_options()).unwrap();
    assert_eq!(s.metrics_stats().segments, 1);
    assert_eq!(s.metric_history(&a, "x", None, None).unwrap().0.len(), 500);
}

#[test]
fn large_buffered_series_read_like_persisted_ones() {
    let (_d, s) = temp_store();
    let id = new_run(&s);
    // Several sealed buffer chunks, in order.
    log_steps(&s, &id, "m", 0..50_000);
    let all: Vec<i64> = (0..50_000).collect();
    let (h, _) = s.metric_history(&id, "m", None, None).unwrap();
    assert_eq!(h.steps(), all.as_slice());
    let (page, next) = s
        .metric_history(&id, "m", Some("h1.16380"), Some(10))
        .unwrap();
    assert_eq!(
        page.steps(),
        (16_380..16_390).collect::<Vec<_>>().as_slice()
    );
    assert!(next.is_some());
    let sample = s
        .sampled_metric_history(&id, "m", 320, Some((100, 40_000)))
        .unwrap();
    let inside: Vec<i64> = (100..=40_000).collect();
    assert_eq!(sample.steps(), reference_sample(&inside, 320).as_slice());
    // Then out of order: the buffer sorts on read, and the answers stay the same after flush.
    log_steps(&s, &id, "m", 20_000..20_010); // exact duplicates
    s.log_metric(&id, &Metric::new("m", 0.5, 1_000 + 25_000 * 10, -1))
        .unwrap();
    let before = s.metric_history(&id, "m", None, None).unwrap().0;
    assert_eq!(before.len(), 50_001);
    s.flush().unwrap();
    assert_eq!(s.metric_history(&id, "m", None, None).unwrap().0, before);
}
