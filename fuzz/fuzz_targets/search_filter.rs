//! MLflow search filters and order_by clauses come straight from HTTP requests: parsing and
//! compiling them must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = quiver_store::fuzzing::search_filter(text);
    }
});
