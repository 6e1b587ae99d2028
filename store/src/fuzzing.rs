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
