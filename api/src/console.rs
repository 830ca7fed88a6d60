//! The web console: the files of `console/` in the repository (and Chart.js from
//! `console/vendor/`), embedded in the binary
//! (it works offline, no CDN), served at `/` and `/console/`. The page talks to the public
//! REST API only. A strict Content-Security-Policy allows nothing but this origin's own
//! scripts, styles and API.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::Gateway;

const INDEX: &str = include_str!("../../console/index.html");
const APP_JS: &str = include_str!("../../console/app.js");
const APP_CSS: &str = include_str!("../../console/app.css");
/// Chart.js, as pinned in `console/package-lock.json` (copied by `scripts/console-vendor.sh`).
const CHART_JS: &str = include_str!("../../console/vendor/chart.umd.min.js");

/// No inline script or style, no other origin, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   img-src 'self' data: blob:; connect-src 'self'; form-action 'self'; \
                   base-uri 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Small files that change with the binary: always revalidated.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    res
}

async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

async fn chart_js() -> Response {
    asset("text/javascript; charset=utf-8", CHART_JS)
}

/// `/` (the page), `/console/app.js`, `/console/app.css`; no token needed (the page signs in
/// through the API).
pub(crate) fn routes() -> Router<Gateway> {
    Router::new()
        .route("/", get(index))
        .route("/console/app.js", get(script))
        .route("/console/app.css", get(style))
        .route("/console/vendor/chart.umd.min.js", get(chart_js))
}
