//! The portals' pages and static files, embedded in the binary (no CDN, nothing fetched from
//! the internet). Pages are static shells; their scripts fetch everything through the API.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::{Portal, WebState};

/// Static files under `/assets/`: (name, content type, bytes).
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("style.css", "text/css; charset=utf-8", include_bytes!("../assets/common/style.css")),
    ("app.js", "text/javascript; charset=utf-8", include_bytes!("../assets/common/app.js")),
    ("chart.js", "text/javascript; charset=utf-8", include_bytes!("../assets/common/chart.js")),
    ("ops.js", "text/javascript; charset=utf-8", include_bytes!("../assets/ops/ops.js")),
    ("mgmt.js", "text/javascript; charset=utf-8", include_bytes!("../assets/mgmt/mgmt.js")),
    ("favicon.svg", "image/svg+xml", include_bytes!("../assets/common/favicon.svg")),
];

const LOGIN: &[u8] = include_bytes!("../assets/common/login.html");
const PASSWORD: &[u8] = include_bytes!("../assets/common/password.html");

/// Pages of the Operations Portal: (route, page).
const OPS_PAGES: &[(&str, &[u8])] = &[
    ("/", include_bytes!("../assets/ops/index.html")),
    ("/channels", include_bytes!("../assets/ops/channels.html")),
    ("/pairs/{id}", include_bytes!("../assets/ops/pair.html")),
];

/// Pages of the Management Dashboard.
const MGMT_PAGES: &[(&str, &[u8])] = &[
    ("/", include_bytes!("../assets/mgmt/index.html")),
    ("/settings", include_bytes!("../assets/mgmt/settings.html")),
    ("/users", include_bytes!("../assets/mgmt/users.html")),
    ("/logs", include_bytes!("../assets/mgmt/logs.html")),
    ("/audit", include_bytes!("../assets/mgmt/audit.html")),
];

fn html(body: &'static [u8]) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, ctype, body)) => {
            let mut r = (StatusCode::OK, *body).into_response();
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
            // Assets change only with the binary; pages are no-cache, so a new version's
            // pages reload them within the hour at worst.
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
            r
        }
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

/// Routes of a portal's pages and assets.
pub(crate) fn pages(portal: Portal) -> Router<WebState> {
    let mut r = Router::new()
        .route("/assets/{name}", get(asset))
        .route("/login", get(|| async { html(LOGIN) }))
        .route("/password", get(|| async { html(PASSWORD) }));
    let pages = match portal {
        Portal::Ops => OPS_PAGES,
        Portal::Mgmt => MGMT_PAGES,
    };
    for (path, body) in pages {
        let body: &'static [u8] = body;
        r = r.route(path, get(move || async move { html(body) }));
    }
    r
}
