//! A client's file manifest (`POST /api/2.0/quiver/runs/manifest`) is read, checked or refused,
//! never a panic; what is accepted is normalized, sorted and distinct.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = quiver_store::fuzzing::manifest(data);
});
