//! Opening a metric segment (Parquet with the `quiver.series` directory) and reading every series
//! of it by every read path must never panic or read out of bounds: damage is an error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = quiver_store::fuzzing::segment(data);
});
