//! Artifact path normalization must never panic, and what it accepts cannot escape the root.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(path) = std::str::from_utf8(data) {
        let _ = quiver_store::fuzzing::artifact_path(path);
    }
});
