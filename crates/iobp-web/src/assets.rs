//! The portals' pages and static files, embedded in the binary (no CDN, nothing fetched from
//! the internet). Pages are static shells; their scripts fetch everything through the API.
//!
//! Every page obeys the Content-Security-Policy of [`crate::router`]: no inline script, no
//! inline style, no inline event handler (checked by the tests below). The login and password
//! pages are shared by both portals; `__PORTAL__` and `__PORTAL_NAME__` in them are replaced
//! with the portal's name when the router is built.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
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

/// A shared page for one portal: its placeholders replaced.
fn for_portal(template: &[u8], portal: Portal) -> Bytes {
    let name = match portal {
        Portal::Ops => "Operations Portal",
        Portal::Mgmt => "Management Dashboard",
    };
    let text = String::from_utf8_lossy(template)
        .replace("__PORTAL_NAME__", name)
        .replace("__PORTAL__", portal.as_str());
    Bytes::from(text)
}

fn html(body: Bytes) -> Response {
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
    let login = for_portal(LOGIN, portal);
    let password = for_portal(PASSWORD, portal);
    let mut r = Router::new()
        .route("/assets/{name}", get(asset))
        .route("/login", get(move || async move { html(login) }))
        .route("/password", get(move || async move { html(password) }));
    let pages = match portal {
        Portal::Ops => OPS_PAGES,
        Portal::Mgmt => MGMT_PAGES,
    };
    for (path, body) in pages {
        let body = Bytes::from_static(body);
        r = r.route(
            path,
            get(move |State(s): State<WebState>, headers: HeaderMap, uri: Uri| async move {
                if crate::auth::has_session(&s, &headers) {
                    html(body)
                } else {
                    // Logged out: the login page, which comes back here afterwards.
                    Redirect::to(&format!("/login?next={}", encode_path(uri.path())))
                        .into_response()
                }
            }),
        );
    }
    r
}

/// A path percent-encoded for a query value (unreserved characters and `/` stay).
fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xF)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pages() -> Vec<(&'static str, String)> {
        let mut all: Vec<(&str, &[u8])> = vec![("login", LOGIN), ("password", PASSWORD)];
        all.extend(OPS_PAGES.iter().copied());
        all.extend(MGMT_PAGES.iter().copied());
        all.into_iter().map(|(n, b)| (n, String::from_utf8_lossy(b).into_owned())).collect()
    }

    /// The values of `attr="…"` in `html`.
    fn attr_values<'a>(html: &'a str, attr: &str) -> Vec<&'a str> {
        let needle = format!(" {attr}=\"");
        html.match_indices(&needle)
            .filter_map(|(i, _)| {
                let rest = &html[i + needle.len()..];
                rest.find('"').map(|end| &rest[..end])
            })
            .collect()
    }

    #[test]
    fn pages_obey_the_content_security_policy() {
        for (name, html) in pages() {
            let lower = html.to_ascii_lowercase();
            assert!(lower.starts_with("<!doctype html>"), "{name}: a full HTML document");
            assert!(!lower.contains(" style="), "{name}: no inline style attribute");
            assert!(!lower.contains("<style"), "{name}: no inline style element");
            assert!(!lower.contains("javascript:"), "{name}: no javascript: URL");
            for (i, _) in lower.match_indices("<script") {
                let tag = &lower[i..i + lower[i..].find('>').expect("closed tag")];
                assert!(tag.contains(" src=\"/assets/"), "{name}: no inline script: {tag}");
            }
            // No inline event handlers (onclick=, onload=, ...).
            for (i, _) in lower.match_indices(" on") {
                let word: String =
                    lower[i + 1..].chars().take_while(char::is_ascii_alphabetic).collect();
                let next = lower[i + 1 + word.len()..].chars().next();
                assert!(next != Some('='), "{name}: inline event handler `{word}=`");
            }
            for url in attr_values(&html, "src").into_iter().chain(attr_values(&html, "href")) {
                assert!(!url.contains("://"), "{name}: nothing from another origin: {url}");
                if let Some(asset) = url.strip_prefix("/assets/") {
                    assert!(
                        ASSETS.iter().any(|(n, _, _)| *n == asset),
                        "{name}: /assets/{asset} is served"
                    );
                }
            }
        }
    }

    #[test]
    fn scripts_do_not_set_inline_styles_or_evaluate_strings() {
        for (name, ctype, body) in ASSETS {
            assert!(!body.is_empty(), "{name} is not empty");
            if !ctype.starts_with("text/javascript") {
                continue;
            }
            let js = String::from_utf8_lossy(body);
            for banned in ["setAttribute('style'", "innerHTML", "eval(", "new Function", "cssText"]
            {
                assert!(!js.contains(banned), "{name} uses {banned}");
            }
        }
    }

    #[test]
    fn shared_pages_name_their_portal() {
        let ops = for_portal(LOGIN, Portal::Ops);
        let text = std::str::from_utf8(&ops).expect("utf-8");
        assert!(text.contains("data-portal=\"ops\"") && text.contains("Operations Portal"));
        assert!(!text.contains("__PORTAL"));
        let mgmt = for_portal(PASSWORD, Portal::Mgmt);
        let text = std::str::from_utf8(&mgmt).expect("utf-8");
        assert!(text.contains("data-portal=\"mgmt\"") && text.contains("Management Dashboard"));
        assert!(!text.contains("__PORTAL"));
    }
}
