//! Quiver Studio at `/studio/`: a SQL console over `POST /api/2.0/quiver/sql` whose results
//! show as a table or a chart, and a compare view that charts the metrics of up to 1,000 runs
//! from `GET /api/2.0/quiver/metrics/sampled` (each line at most as many points as the chart is
//! wide; zooming fetches the detail of the visible steps).
//!
//! Plain HTML, CSS and JavaScript modules written for Quiver (no build step, no third-party
//! code), embedded in the binary. `/studio` redirects to `/studio/` so that the page's relative
//! links (its assets, the API) resolve under it; the query string is kept and the browser keeps
//! the `#q=` fragment that carries a shared query.

use axum::extract::RawQuery;
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

const INDEX_HTML: &str = include_str!("studio/index.html");
const STUDIO_CSS: &str = include_str!("studio/studio.css");
/// The JavaScript modules, by file name.
const MODULES: [(&str, &str); 5] = [
    ("studio.js", include_str!("studio/studio.js")),
    ("api.js", include_str!("studio/api.js")),
    ("chart.js", include_str!("studio/chart.js")),
    ("compare.js", include_str!("studio/compare.js")),
    ("sqlchart.js", include_str!("studio/sqlchart.js")),
];

/// Served with `no-cache`: the files are small, and an upgraded binary takes effect at once.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Studio's routes: `/studio` (a redirect), `/studio/` and its assets.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut router = Router::new();
    for (name, body) in MODULES {
        router = router.route(
            &format!("/studio/{name}"),
            get(move || async move { asset("text/javascript; charset=utf-8", body) }),
        );
    }
    router
        .route(
            "/studio",
            get(|RawQuery(q): RawQuery| async move {
                match q {
                    Some(q) => Redirect::permanent(&format!("/studio/?{q}")),
                    None => Redirect::permanent("/studio/"),
                }
            }),
        )
        .route(
            "/studio/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/studio/studio.css",
            get(|| async { asset("text/css; charset=utf-8", STUDIO_CSS) }),
        )
}
