//! Entry point of the `wire_request` fuzz target (only with the `fuzzing` feature): request
//! decoding, through the functions the routes use, must never panic on any body or query string.

use crate::routes::decoders;
use crate::wire::{query_fields, Fields};

/// Decodes `bytes` as a request: the first byte picks a route (one past the last decoder picks
/// the log-batch body path, [`decoders::log_batch_body`]); the rest is read as that route's JSON
/// body ([`Fields::from_json`]) and as its query string ([`query_fields`]), and the fields go
/// through the route's decoder. Returns whether any of them decoded.
pub fn wire_request(bytes: &[u8]) -> bool {
    let Some((&selector, rest)) = bytes.split_first() else {
        return false;
    };
    let pick = usize::from(selector) % (decoders::ALL.len() + 1);
    let Some(&(_route, decode)) = decoders::ALL.get(pick) else {
        return decoders::log_batch_body(rest);
    };
    let from_body = Fields::from_json(rest).is_ok_and(|f| decode(&f).is_ok());
    let from_query = decode(&query_fields(&String::from_utf8_lossy(rest))).is_ok();
    from_body || from_query
}

/// The routes the selector byte picks, in order (the last one, `runs/log-batch (body)`, is the
/// log-batch body path); for writing seeds.
pub fn wire_routes() -> Vec<&'static str> {
    let mut routes: Vec<&'static str> = decoders::ALL.iter().map(|(name, _)| *name).collect();
    routes.push("runs/log-batch (body)");
    routes
}
