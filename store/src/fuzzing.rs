//! Entry points for the fuzz targets in `fuzz/` (only with the `fuzzing` feature): the decoders
//! of every byte format the store reads, so that arbitrary input is proved never to panic.

/// Decodes write-ahead-log frames (strict, then the delta log's increasing variant).
pub fn wal_frames(bytes: &[u8]) -> usize {
    let (strict, valid) = crate::wal::decode_frames(bytes);
    let (loose, _) = crate::wal::decode_frames_with(bytes, false);
    assert!(valid <= bytes.len() && strict.len() <= loose.len());
    strict.len()
}

/// Decodes one log record payload as an op, and re-encodes what decodes.
pub fn op(bytes: &[u8]) -> bool {
    match crate::ops::Op::decode(bytes) {
        Ok(op) => {
            let mut again = Vec::new();
            op.encode_into(&mut again);
            let back = crate::ops::Op::decode(&again).expect("re-decode");
            // NaN payloads make ops unequal to themselves; compare encodings instead.
            let mut twice = Vec::new();
            back.encode_into(&mut twice);
            assert_eq!(again, twice);
            true
        }
        Err(_) => false,
    }
}

/// Parses a catalog base checkpoint.
pub fn checkpoint(bytes: &[u8]) -> bool {
    crate::catalog::checkpoint::parse_base(bytes).is_ok()
}

/// Normalizes an artifact path and checks the result cannot escape its root.
pub fn artifact_path(path: &str) -> bool {
    match crate::artifact_path::normalize(path) {
        Ok(p) => {
            assert!(!p.starts_with('/') && !p.contains('\\') && !p.contains('\0'));
            assert!(p.split('/').all(|c| c != ".." && c != ".") && !p.contains("//"));
            assert_eq!(
                crate::artifact_path::normalize(&p).ok().as_deref(),
                Some(p.as_str())
            );
            true
        }
        Err(_) => false,
    }
}

/// Reads a client's manifest (a JSON list of files, as `POST runs/manifest` receives it) and
/// checks what is accepted: paths normalized, sorted and distinct, no file under another, the
/// root hash independent of the order given. Also reads it as the blob collector reads stored
/// manifests. Errors are fine, panics are not.
pub fn manifest(bytes: &[u8]) -> bool {
    let mut referenced = std::collections::HashSet::new();
    crate::store::referenced_by_manifest(bytes, &mut referenced);
    let Ok(files) = serde_json::from_slice::<Vec<crate::ManifestFile>>(bytes) else {
        return false;
    };
    let mut reversed = files.clone();
    reversed.reverse();
    match crate::Manifest::new(files) {
        Ok(m) => {
            for pair in m.files.windows(2) {
                assert!(pair[0].path < pair[1].path);
                assert!(!pair[1].path.starts_with(&format!("{}/", pair[0].path)));
            }
            for f in &m.files {
                assert_eq!(
                    crate::artifact_path::normalize(&f.path).ok().as_deref(),
                    Some(f.path.as_str())
                );
            }
            assert_eq!(
                crate::Manifest::new(reversed).expect("same files").root,
                m.root
            );
            true
        }
        Err(_) => false,
    }
}

/// Parses a search filter and an `order_by` clause as the runs, experiments, registry and
/// logged-model searches do; what parses must also compile into a query (errors are fine, panics
/// are not).
pub fn search_filter(text: &str) -> bool {
    use crate::types::ViewType;
    let filter_ok = crate::search::grammar::parse_filter(text).is_ok();
    let runs = crate::search::fuzz_compile_runs(text, ViewType::All);
    let experiments = crate::search::fuzz_compile_experiments(text);
    let registry = crate::search::registry::fuzz_compile(text);
    let logged_models = crate::search::logged_models::fuzz_compile(text);
    let _ = crate::search::grammar::parse_order_by(text);
    // Compiling needs a parse first.
    assert!(filter_ok || (!runs && !experiments && !registry && !logged_models));
    filter_ok
}

/// Opens `bytes` as a metric segment file and, when it opens, reads every series of its
/// directory through every read path: whole, by rows below a step, by candidate rows and page
/// counts with the columns read, as a history page and as a sample.
///
/// Panics of the Parquet decoder that the segment reader contains (they end as
/// [`Error::Corruption`](crate::Error), see `metrics::segment::guard`) do not reach the
/// process's panic hook (libFuzzer's aborts): only panics that would escape are crashes.
pub fn segment(bytes: &[u8]) -> bool {
    use crate::metrics::read::{Part, SeriesView};
    use crate::metrics::segment::{guard, Segment};
    use std::sync::{Arc, Once};

    static QUIET_CONTAINED: Once = Once::new();
    QUIET_CONTAINED.call_once(|| {
        let outer = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !guard::decoding_contained() {
                outer(info)
            }
        }));
    });

    let path = std::path::Path::new("fuzz.parquet");
    let Ok(segment) = Segment::from_bytes(0, path, bytes::Bytes::copy_from_slice(bytes)) else {
        return false;
    };
    let segment = Arc::new(segment);
    for ext in segment.directory() {
        // By id: a NaN key makes an extent unequal to itself.
        assert_eq!(segment.extent(ext.series).map(|e| e.start), Some(ext.start));
        if let Ok(points) = segment.read_series(ext) {
            assert_eq!(points.len() as u64, ext.rows);
        }
        let (first, last) = (ext.first.0, ext.last.0);
        let middle = first / 2 + last / 2;
        for step in [
            first,
            first.saturating_add(1),
            middle,
            last,
            last.saturating_add(1),
        ] {
            if let Ok(n) = segment.rows_below_step(ext, step) {
                assert!(n <= ext.rows);
            }
        }
        for (steps, timestamps) in [
            (None, None),
            (Some((first, last)), None),
            (Some((middle, middle)), Some((ext.first.1, ext.last.1))),
            (None, Some((i64::MIN, ext.first.1))),
        ] {
            let rows = segment.candidate_rows(ext, steps, timestamps);
            assert!(rows
                .iter()
                .all(|r| r.start >= ext.start && r.end <= ext.start + ext.rows));
            let _ = segment.pages_holding(&rows);
            if let Ok(reader) = segment.read_columns(&rows, &[1, 2, 3, 4, 5, 6], 512) {
                for batch in reader {
                    if batch.is_err() {
                        break;
                    }
                }
            }
        }
        let view = SeriesView::new(vec![Part::Segment(segment.clone(), ext.clone())]);
        let _ = view.history_page(0, 7);
        let _ = view.history_page(ext.rows / 2, 3000);
        let _ = view.sampled(5, None);
        let _ = view.sampled(3, Some((middle, last)));
    }
    true
}

/// Writes a few real segments, of the shapes the store writes, with the store's own segment
/// writer into `dir` (for the `segment` target's seed corpus); returns their paths.
pub fn write_segment_seeds(dir: &std::path::Path) -> crate::Result<Vec<std::path::PathBuf>> {
    use crate::metrics::Points;
    use crate::ops::PointExtras;
    use std::sync::Arc;

    let curve = |n: i64, ts_step: i64| {
        let mut p = Points::default();
        for i in 0..n {
            p.push(i, 1_000 + i * ts_step, 1.0 / (i + 1) as f64, None);
        }
        p
    };
    let mut extras = curve(6, 10);
    extras.push(
        6,
        2_000,
        f64::NAN,
        Some(Arc::new(PointExtras {
            model_id: Some("m-1".into()),
            dataset_name: Some("train".into()),
            dataset_digest: Some("d41d8c".into()),
        })),
    );
    let mut unsorted = Points::default();
    for (step, ts) in [(0, 50), (1, 40), (1, 60), (2, 10)] {
        unsorted.push(step, ts, step as f64 * 0.5, None);
    }
    let shapes: Vec<(&str, Vec<(u64, Points)>)> = vec![
        ("empty", Vec::new()),
        ("one-series", vec![(7, curve(10, 1))]),
        (
            "three-series",
            vec![(1, curve(3, 5)), (2, extras), (9, unsorted)],
        ),
        ("fenced", vec![(3, curve(2_500, 1)), (4, curve(5, 2))]),
    ];
    let mut written = Vec::new();
    for (name, series) in shapes {
        let path = dir.join(format!("seed-{name}.parquet"));
        crate::metrics::segment::write(&path, &series)?;
        written.push(path);
    }
    Ok(written)
}
