//! The dashboard: one page at `/` and its assets at `/assets/{name}`, embedded in the binary
//! (no build step, nothing fetched from outside the machine). The page holds no data: it reads
//! the API and the live stream like any other client, so the read and admin-token rules of
//! the API apply to it unchanged. A strict content security policy keeps it to this origin.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

/// The page's scripts and styles, and the vendored chart library (uPlot, from npm under
/// `web/package-lock.json`; `scripts/web.sh` copies it and checks the copy).
const ASSETS: &[Asset] = &[
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../web/app.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../../web/app.css"),
    },
    Asset {
        name: "uPlot.iife.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../web/vendor/uPlot.iife.min.js"),
    },
    Asset {
        name: "uPlot.min.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../../web/vendor/uPlot.min.css"),
    },
];

const INDEX: &str = include_str!("../../web/index.html");

/// Scripts, styles and connections from this origin only; no inline script, no frames.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The dashboard page.
pub async fn index() -> Response {
    page("text/html; charset=utf-8", INDEX)
}

/// One of the page's assets.
pub async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(a) => page(a.content_type, a.body),
        None => ApiError::not_found(format!("no dashboard asset {name:?}")).into_response(),
    }
}

fn page(content_type: &'static str, body: &'static str) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type),
            // The binary is the version: a restarted agent may serve a new page.
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_only_embedded_assets() {
        for link in INDEX.split("/assets/").skip(1) {
            let name = link.split('"').next().unwrap();
            assert!(
                ASSETS.iter().any(|a| a.name == name),
                "index.html links {name}, which is not embedded"
            );
        }
        assert!(INDEX.contains("/assets/app.js"));
    }
}
