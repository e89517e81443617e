//! The web console: plain HTML, CSS and JavaScript modules under `orchestrator/console/` (no build
//! step), compiled into the binary and served at `/console/` (`/` redirects there). It works
//! offline: it loads nothing from anywhere else, and its Content-Security-Policy says so. It
//! reads the API (`/v1/…`) and stays live over the feed (`/v1/feed`).
//!
//! Every file is served with a strong ETag (BLAKE3 of its bytes) and `Cache-Control: no-cache`:
//! a browser revalidates each load (a 304 when nothing changed), so a new binary's files are
//! used at once.

use super::state::Shared;
use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use std::sync::{Arc, OnceLock};

/// One embedded file.
pub struct Asset {
    /// Relative to `orchestrator/console/`.
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

macro_rules! assets {
    ($($path:literal => $content_type:literal,)*) => {
        /// Every file of the console, as compiled in.
        pub const ASSETS: &[Asset] = &[$(Asset {
            path: $path,
            content_type: $content_type,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/console/", $path)),
        },)*];
    };
}

assets! {
    "index.html" => "text/html; charset=utf-8",
    "console.css" => "text/css; charset=utf-8",
    "favicon.svg" => "image/svg+xml",
    "js/app.js" => "text/javascript; charset=utf-8",
    "js/api.js" => "text/javascript; charset=utf-8",
    "js/chart.js" => "text/javascript; charset=utf-8",
    "js/commands.js" => "text/javascript; charset=utf-8",
    "js/dom.js" => "text/javascript; charset=utf-8",
    "js/format.js" => "text/javascript; charset=utf-8",
    "js/telemetry.js" => "text/javascript; charset=utf-8",
    "js/pages/network.js" => "text/javascript; charset=utf-8",
    "js/pages/operator.js" => "text/javascript; charset=utf-8",
    "js/pages/order.js" => "text/javascript; charset=utf-8",
    "js/pages/supplier.js" => "text/javascript; charset=utf-8",
    "js/pages/worker.js" => "text/javascript; charset=utf-8",
}

/// Nothing but this origin: scripts, styles, images (and inline `data:` images), the API and
/// the feed's WebSocket.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| format!("\"{}\"", &blake3::hash(a.body).to_hex()[..32]))
            .collect()
    })
}

/// The console's routes (stateless; merged into the service's router).
pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/console/") }))
        .route("/console", get(|| async { Redirect::permanent("/console/") }))
        .route(
            "/console/",
            get(|headers: HeaderMap| async move { serve("index.html", &headers) }),
        )
        .route(
            "/console/{*path}",
            get(|Path(path): Path<String>, headers: HeaderMap| async move {
                serve(&path, &headers)
            }),
        )
}

/// One file, or a 304 when the browser holds this version, or a 404.
pub fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(i) = ASSETS.iter().position(|a| a.path == path) else {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("the console has no file {path:?}"),
        )
            .into_response();
    };
    let asset = &ASSETS[i];
    let tag = &etags()[i];
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response()
    };
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(tag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file under `console/`, relative to it.
    fn files(dir: &std::path::Path, prefix: &str, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
            if entry.file_type().unwrap().is_dir() {
                files(&entry.path(), &format!("{name}/"), out);
            } else {
                out.push(name);
            }
        }
    }

    #[test]
    fn every_file_of_the_console_is_compiled_in() {
        let mut on_disk = vec![];
        files(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("console"),
            "",
            &mut on_disk,
        );
        on_disk.sort();
        let mut embedded: Vec<String> = ASSETS.iter().map(|a| a.path.to_string()).collect();
        embedded.sort();
        assert_eq!(
            on_disk, embedded,
            "list each file of orchestrator/console in the assets! table of console.rs"
        );
    }

    #[test]
    fn the_console_loads_nothing_from_elsewhere() {
        for a in ASSETS {
            let text = String::from_utf8_lossy(a.body);
            for needle in ["http://", "https://", "//cdn", "@import url"] {
                let allowed = |line: &str| {
                    // The SVG's XML namespace and explorer links a page builds are not loads.
                    line.contains("xmlns=\"http://www.w3.org/2000/svg\"")
                        || line.contains("explorer")
                };
                for line in text.lines().filter(|l| l.contains(needle)) {
                    assert!(allowed(line), "{}: {line}", a.path);
                }
            }
        }
    }

    #[test]
    fn a_file_is_served_with_its_type_and_revalidated_by_its_etag() {
        let r = serve("js/app.js", &HeaderMap::new());
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        let tag = r.headers()[header::ETAG].clone();
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, tag);
        assert_eq!(
            serve("js/app.js", &headers).status(),
            StatusCode::NOT_MODIFIED
        );
        assert_eq!(
            serve("../Cargo.toml", &HeaderMap::new()).status(),
            StatusCode::NOT_FOUND
        );
    }
}
