//! Property tests: metric round trips against a plain model, params write-once, tags.

use std::collections::BTreeMap;

use proptest::prelude::*;
use quiver_store::*;

use crate::{new_run, temp_store};

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(0.0),
        Just(-0.0),
        -1e6f64..1e6,
    ]
}

/// (step, timestamp, value) with small ranges so that duplicates and ties are common.
fn point() -> impl Strategy<Value = (i64, i64, f64)> {
    (-5i64..20, 0i64..15, value())
}

#[derive(Debug, Clone)]
enum Action {
    Log(Vec<(i64, i64, f64)>),
    Flush,
    Compact,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        6 => prop::collection::vec(point(), 1..40).prop_map(Action::Log),
        1 => Just(Action::Flush),
        1 => Just(Action::Compact),
    ]
}

fn history_key(p: &(i64, i64, f64)) -> (i64, i64, u64) {
    // Total order on values, as the store uses.
    let bits = p.2.to_bits() as i64;
    let ordered = (bits ^ (((bits >> 63) as u64) >> 1) as i64) as u64 ^ (1 << 63);
    (p.1, p.0, ordered)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Whatever is logged, flushed and compacted in whatever order reads back as the sorted,
    /// deduplicated set of points, in full, in pages, after reopening; latest follows MLflow.
    #[test]
    fn metrics_round_trip(actions in prop::collection::vec(action(), 1..12), page in 1u64..9) {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions { compact_max_small: 1, ..crate::manual_options() };
        let s = Store::open_with(dir.path(), opts.clone()).unwrap();
        let run = new_run(&s);
        let mut model: BTreeMap<(i64, i64, u64), (i64, i64, f64)> = BTreeMap::new();
        for a in &actions {
            match a {
                Action::Log(points) => {
                    let metrics: Vec<Metric> = points.iter().map(|&(st, ts, v)| Metric::new("m", v, ts, st)).collect();
                    s.log_batch(&run, &metrics, &[], &[]).unwrap();
                    for p in points {
                        model.entry(history_key(p)).or_insert(*p);
                    }
                }
                Action::Flush => s.flush().unwrap(),
                Action::Compact => { s.compact().unwrap(); }
            }
        }
        let expected: Vec<(i64, i64, f64)> = model.values().copied().collect();
        let check = |s: &Store| -> Result<(), TestCaseError> {
            let (h, next) = s.metric_history(&run, "m", None, None).unwrap();
            prop_assert!(next.is_none());
            let got: Vec<(i64, i64, f64)> = (0..h.len()).map(|i| (h.steps()[i], h.timestamps()[i], h.values()[i])).collect();
            prop_assert_eq!(got.len(), expected.len());
            for (g, e) in got.iter().zip(&expected) {
                prop_assert_eq!((g.0, g.1, g.2.to_bits()), (e.0, e.1, e.2.to_bits()));
            }
            let mut token: Option<String> = None;
            let mut paged = 0;
            loop {
                let (p, next) = s.metric_history(&run, "m", token.as_deref(), Some(page)).unwrap();
                for i in 0..p.len() {
                    prop_assert_eq!(p.steps()[i], expected[paged + i].0);
                }
                paged += p.len();
                match next { Some(t) => token = Some(t), None => break }
            }
            prop_assert_eq!(paged, expected.len());
            let latest = expected.iter().max_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.total_cmp(&b.2)));
            let stored = s.latest_metrics(&run).unwrap();
            match latest {
                None => prop_assert!(stored.is_empty()),
                Some(latest) => {
                    let l = &stored[0];
                    prop_assert_eq!((l.step, l.timestamp, l.value.to_bits()), (latest.0, latest.1, latest.2.to_bits()));
                }
            }
            Ok(())
        };
        check(&s)?;
        s.close().unwrap();
        let s = Store::open_with(dir.path(), opts).unwrap();
        check(&s)?;
    }

    /// Params: the first value of a key stays; a different value is refused; tags are upserts
    /// and deletes, as a map would do it.
    #[test]
    fn params_write_once_and_tags_upsert(ops in prop::collection::vec((0u8..3, 0u8..4, 0u8..3), 1..40)) {
        let (_d, s) = temp_store();
        let run = new_run(&s);
        let mut params: BTreeMap<String, String> = BTreeMap::new();
        let mut tags: BTreeMap<String, String> = BTreeMap::new();
        for (kind, k, v) in ops {
            let (key, value) = (format!("k{k}"), format!("v{v}"));
            match kind {
                0 => {
                    let r = s.log_param(&run, &key, &value);
                    match params.get(&key) {
                        Some(old) if *old != value => prop_assert!(r.is_err()),
                        _ => { r.unwrap(); params.entry(key).or_insert(value); }
                    }
                }
                1 => { s.set_tag(&run, &key, &value).unwrap(); tags.insert(key, value); }
                _ => {
                    let r = s.delete_tag(&run, &key);
                    prop_assert_eq!(r.is_ok(), tags.remove(&key).is_some());
                }
            }
        }
        let r = s.get_run(&run).unwrap();
        let got_params: BTreeMap<String, String> = r.params.into_iter().map(|p| (p.key, p.value)).collect();
        let got_tags: BTreeMap<String, String> = r.tags.into_iter().filter(|t| t.key != "mlflow.runName").map(|t| (t.key, t.value)).collect();
        prop_assert_eq!(got_params, params);
        prop_assert_eq!(got_tags, tags);
    }
}
