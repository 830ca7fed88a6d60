//! The web console: the files of `console/` in the repository (and Chart.js from
//! `console/vendor/`), embedded in the binary
//! (it works offline, no CDN), served at `/` and `/console/`. The page talks to the public
//! REST API only. A strict Content-Security-Policy allows nothing but this origin's own
//! scripts, styles and API.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::Gateway;

const INDEX: &str = include_str!("../../console/index.html");
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// The files under `/console/`: path, content type, content. Chart.js is pinned in
/// `console/package-lock.json` (copied to `console/vendor/` by `scripts/console-vendor.sh`).
const FILES: &[(&str, &str, &str)] = &[
    ("app.js", JS, include_str!("../../console/app.js")),
    ("lib.js", JS, include_str!("../../console/lib.js")),
    (
        "pages/data.js",
        JS,
        include_str!("../../console/pages/data.js"),
    ),
    (
        "pages/lineage.js",
        JS,
        include_str!("../../console/pages/lineage.js"),
    ),
    (
        "pages/ops.js",
        JS,
        include_str!("../../console/pages/ops.js"),
    ),
    ("app.css", CSS, include_str!("../../console/app.css")),
    (
        "vendor/chart.umd.min.js",
        JS,
        include_str!("../../console/vendor/chart.umd.min.js"),
    ),
];

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

async fn file(Path(path): Path<String>) -> Response {
    match FILES.iter().find(|(p, _, _)| *p == path) {
        Some((_, content_type, body)) => asset(content_type, body),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `/` (the page) and `/console/{file}`; no token needed (the page signs in through the API).
pub(crate) fn routes() -> Router<Gateway> {
    Router::new()
        .route("/", get(index))
        .route("/console/{*path}", get(file))
}

#[cfg(test)]
mod tests {
    use super::FILES;

    /// Every module the page imports is served (a missing one is a blank page).
    #[test]
    fn every_imported_module_is_served() {
        for (path, _, body) in FILES.iter().filter(|(p, _, _)| p.ends_with(".js")) {
            for line in body.lines().filter(|l| l.starts_with("import ")) {
                let Some(target) = line.split('"').nth(1) else {
                    continue;
                };
                let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
                let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
                for seg in target.split('/') {
                    match seg {
                        "." => {}
                        ".." => {
                            parts.pop();
                        }
                        s => parts.push(s),
                    }
                }
                let resolved = parts.join("/");
                assert!(
                    FILES.iter().any(|(p, _, _)| *p == resolved),
                    "{path} imports {target} ({resolved}), which is not served"
                );
            }
        }
    }
}
