//! The portals' pages and static files, embedded in the binary (no CDN, nothing fetched from
//! the internet). Pages are static shells; their scripts fetch everything through the API.
//!
//! Every page is its own content rendered into one layout ([`layout`]) when a portal's router
//! is built; it loads one module script, which imports the modules it needs (plain ES modules
//! served from `/assets/`, no bundler). Every page obeys the Content-Security-Policy of
//! [`crate::router`]: no inline script, no inline style, no inline event handler. The tests
//! below render every page and follow every `<script>` and `import` to a module that is
//! served, with a JavaScript content type, and exports what is imported from it: a missing
//! module would otherwise fail only in a browser.
//!
//! Caching: pages `no-cache` (a new version's pages are fetched at once), assets an hour.

mod docs;
mod layout;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::{Portal, WebState};

const JS: &str = "text/javascript; charset=utf-8";

/// A JavaScript module under `assets/`, served at the same path below `/assets/`
/// (`ops/pair.js` at `/assets/ops/pair.js`), so that relative imports resolve alike in the
/// source tree and in the browser.
macro_rules! module {
    ($path:literal) => {
        ($path, JS, include_bytes!(concat!("../assets/", $path)))
    };
}

/// Static files under `/assets/`: (path, content type, bytes).
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("style.css", "text/css; charset=utf-8", include_bytes!("../assets/common/style.css")),
    ("favicon.svg", "image/svg+xml", include_bytes!("../assets/common/favicon.svg")),
    module!("common/api.js"),
    module!("common/chart.js"),
    module!("common/diagnostics.js"),
    module!("common/dom.js"),
    module!("common/events.js"),
    module!("common/format.js"),
    module!("common/forms.js"),
    module!("common/login.js"),
    module!("common/page.js"),
    module!("common/password.js"),
    module!("common/status.js"),
    module!("common/ui.js"),
    module!("mgmt/audit.js"),
    module!("mgmt/health.js"),
    module!("mgmt/logs.js"),
    module!("mgmt/settings.js"),
    module!("mgmt/users.js"),
    module!("ops/channels.js"),
    module!("ops/form-backups.js"),
    module!("ops/form-fields.js"),
    module!("ops/form-sides.js"),
    module!("ops/live-view.js"),
    module!("ops/message-browser.js"),
    module!("ops/message-trace.js"),
    module!("ops/overview.js"),
    module!("ops/pair-actions.js"),
    module!("ops/pair-charts.js"),
    module!("ops/pair-form.js"),
    module!("ops/pair-status.js"),
    module!("ops/pair-text.js"),
    module!("ops/pair.js"),
    module!("ops/rejections.js"),
    module!("ops/parked.js"),
    module!("ops/reconciliation.js"),
];

const LOGIN: &str = include_str!("../assets/common/login.html");
const PASSWORD: &str = include_str!("../assets/common/password.html");

/// Pages of the Operations Portal: (route, page file).
const OPS_PAGES: &[(&str, &str)] = &[
    ("/", include_str!("../assets/ops/index.html")),
    ("/channels", include_str!("../assets/ops/channels.html")),
    ("/pairs/{id}", include_str!("../assets/ops/pair.html")),
];

/// Pages of the Management Dashboard.
const MGMT_PAGES: &[(&str, &str)] = &[
    ("/", include_str!("../assets/mgmt/index.html")),
    ("/settings", include_str!("../assets/mgmt/settings.html")),
    ("/users", include_str!("../assets/mgmt/users.html")),
    ("/logs", include_str!("../assets/mgmt/logs.html")),
    ("/audit", include_str!("../assets/mgmt/audit.html")),
];

fn pages_of(portal: Portal) -> &'static [(&'static str, &'static str)] {
    match portal {
        Portal::Ops => OPS_PAGES,
        Portal::Mgmt => MGMT_PAGES,
    }
}

/// A page rendered for `portal`; None (logged) if it does not render, which the tests rule
/// out for every page.
fn rendered(file: &str, portal: Portal) -> Option<Bytes> {
    match layout::render(file, portal) {
        Ok(html) => Some(Bytes::from(html)),
        Err(e) => {
            tracing::error!("a page of the {} does not render: {e}", layout::portal_name(portal));
            None
        }
    }
}

fn html(body: Option<Bytes>) -> Response {
    let Some(body) = body else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "this page does not render; see the log")
            .into_response();
    };
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

async fn asset(Path(path): Path<String>) -> Response {
    match ASSETS.iter().find(|(p, _, _)| *p == path) {
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

/// The route of the static files.
fn asset_routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/assets/{*path}", get(asset))
}

/// Routes of a portal's pages and assets.
pub(crate) fn pages(portal: Portal) -> Router<WebState> {
    let login = rendered(LOGIN, portal);
    let password = rendered(PASSWORD, portal);
    let mut r = asset_routes()
        .merge(docs::routes(portal))
        .route("/login", get(move || async move { html(login) }))
        .route("/password", get(move || async move { html(password) }));
    for (path, file) in pages_of(portal) {
        let body = rendered(file, portal);
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
    use std::collections::BTreeSet;

    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt as _;

    use super::layout::{Layout, nav_of, parse, portal_name};
    use super::*;

    const PORTALS: [Portal; 2] = [Portal::Ops, Portal::Mgmt];

    /// Every page file a portal serves: (name, file), the shared ones included.
    fn page_files(portal: Portal) -> Vec<(&'static str, &'static str)> {
        let mut all = vec![("/login", LOGIN), ("/password", PASSWORD)];
        all.extend(pages_of(portal).iter().copied());
        all
    }

    /// Every page as a portal serves it: (portal, route, HTML).
    fn rendered_pages() -> Vec<(Portal, &'static str, String)> {
        let mut out = Vec::new();
        for portal in PORTALS {
            for (route, file) in page_files(portal) {
                let html = layout::render(file, portal)
                    .unwrap_or_else(|e| panic!("{} {route} does not render: {e}", portal.as_str()));
                out.push((portal, route, html));
            }
        }
        out
    }

    fn has_extension(path: &str, ext: &str) -> bool {
        std::path::Path::new(path).extension().is_some_and(|e| e.eq_ignore_ascii_case(ext))
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

    /// The `<script …>` opening tags of a page.
    fn script_tags(html: &str) -> Vec<&str> {
        html.match_indices("<script")
            .map(|(i, _)| &html[i..i + html[i..].find('>').expect("closed tag")])
            .collect()
    }

    fn asset_of(url: &str) -> Option<&'static (&'static str, &'static str, &'static [u8])> {
        url.strip_prefix("/assets/").and_then(|p| ASSETS.iter().find(|(n, _, _)| *n == p))
    }

    /// The JavaScript modules served: (URL, source).
    fn modules() -> Vec<(String, String)> {
        ASSETS
            .iter()
            .filter(|(_, ctype, _)| *ctype == JS)
            .map(|(p, _, b)| (format!("/assets/{p}"), String::from_utf8_lossy(b).into_owned()))
            .collect()
    }

    /// One `import` declaration: the names imported (empty for `* as` and bare imports) and
    /// the module specifier.
    #[derive(Debug)]
    struct Import {
        names: Vec<String>,
        from: String,
    }

    /// The imports of a module. The portals' modules keep their imports at the top (after
    /// comments), one `import … from '…';` each, and import nothing dynamically: checked here,
    /// so that this reading sees every import.
    fn imports(url: &str, js: &str) -> Vec<Import> {
        let mut out = Vec::new();
        let mut statement = String::new();
        let mut header = true;
        for line in js.lines() {
            let t = line.trim();
            if header && statement.is_empty() && (t.is_empty() || t.starts_with("//")) {
                continue;
            }
            if header && (!statement.is_empty() || t.starts_with("import ")) {
                statement.push_str(t);
                statement.push(' ');
                if t.ends_with(';') {
                    out.push(parse_import(url, &statement));
                    statement.clear();
                }
                continue;
            }
            header = false;
            assert!(
                !t.starts_with("import ") && !t.contains("import("),
                "{url}: imports stand at the top of the module: {line}"
            );
        }
        out
    }

    fn parse_import(url: &str, statement: &str) -> Import {
        let quoted: Vec<&str> = statement.split('\'').collect();
        assert_eq!(quoted.len(), 3, "{url}: one quoted specifier in {statement}");
        let from = quoted[1].to_string();
        let clause = quoted[0].trim().trim_start_matches("import").trim();
        let clause = clause.strip_suffix("from").map_or(clause, str::trim);
        let names = if let Some(list) = clause.strip_prefix('{') {
            let list = list.strip_suffix('}').unwrap_or_else(|| panic!("{url}: {statement}"));
            list.split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(|n| n.split(" as ").next().unwrap_or(n).trim().to_string())
                .collect()
        } else {
            assert!(
                clause.is_empty() || clause.starts_with("* as "),
                "{url}: named, namespace or bare imports only: {statement}"
            );
            Vec::new()
        };
        Import { names, from }
    }

    /// The names a module exports (`export function|const|let|class NAME`).
    fn exports(js: &str) -> BTreeSet<String> {
        js.lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| {
                let l = l.strip_prefix("async ").unwrap_or(l);
                ["function ", "const ", "let ", "class "].iter().find_map(|k| l.strip_prefix(k))
            })
            .map(|l| {
                l.chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '$')
                    .collect()
            })
            .collect()
    }

    /// A module specifier resolved against the URL of the module that imports it.
    fn resolve(base: &str, spec: &str) -> String {
        let mut parts: Vec<&str> = if spec.starts_with('/') {
            Vec::new()
        } else {
            let dir = &base[..base.rfind('/').unwrap_or(0)];
            dir.split('/').filter(|p| !p.is_empty()).collect()
        };
        for p in spec.split('/').filter(|p| !p.is_empty() && *p != ".") {
            if p == ".." {
                parts.pop();
            } else {
                parts.push(p);
            }
        }
        format!("/{}", parts.join("/"))
    }

    /// The scripts of every page and everything they import, transitively: URL → who refers
    /// to it.
    fn referenced_scripts() -> Vec<(String, String)> {
        let mut todo: Vec<(String, String)> = Vec::new();
        for (portal, route, html) in rendered_pages() {
            for tag in script_tags(&html) {
                for src in attr_values(tag, "src") {
                    todo.push((src.to_string(), format!("{} {route}", portal.as_str())));
                }
            }
        }
        let mut seen: Vec<(String, String)> = Vec::new();
        while let Some((url, by)) = todo.pop() {
            if seen.iter().any(|(u, _)| *u == url) {
                continue;
            }
            if let Some((_, _, body)) = asset_of(&url) {
                let js = String::from_utf8_lossy(body);
                for i in imports(&url, &js) {
                    todo.push((resolve(&url, &i.from), url.clone()));
                }
            }
            seen.push((url, by));
        }
        seen
    }

    #[test]
    fn every_page_is_built_from_the_layout() {
        for (portal, route, html) in rendered_pages() {
            let name = format!("{} {route}", portal.as_str());
            let file = page_files(portal).into_iter().find(|(r, _)| *r == route).expect("page").1;
            let page = parse(file).expect("front matter");
            assert!(html.starts_with("<!doctype html>\n<html lang=\"en\">\n<head>"), "{name}");
            assert!(
                html.contains(&format!(
                    "<title>{} · ioBufferPro {}</title>",
                    page.title,
                    portal_name(portal)
                )),
                "{name}: its title and the portal's name"
            );
            assert!(
                html.contains("<link rel=\"stylesheet\" href=\"/assets/style.css\">"),
                "{name}"
            );
            assert!(html.contains(&format!(" data-portal=\"{}\"", portal.as_str())), "{name}");
            assert!(html.contains(&format!(" data-page=\"{}\"", page.page)), "{name}");
            assert!(
                !html.contains("{{") && !html.contains("__PORTAL"),
                "{name}: every placeholder filled"
            );
            // One script: the page's module.
            let tags = script_tags(&html);
            assert_eq!(
                tags,
                [format!("<script type=\"module\" src=\"{}\"", page.script)],
                "{name}: its module script only"
            );
            match page.layout {
                Layout::App => {
                    assert!(html.contains("<nav class=\"mainnav\""), "{name}: the navigation");
                    for entry in nav_of(portal) {
                        let link = format!("<a href=\"{}\" data-nav=\"{}\"", entry.href, entry.key);
                        assert!(html.contains(&link), "{name}: nav entry {}", entry.key);
                    }
                    assert_eq!(html.matches("aria-current=\"page\"").count(), 1, "{name}");
                    let current = format!(
                        "data-nav=\"{}\" aria-current=\"page\"",
                        page.nav.unwrap_or_default()
                    );
                    assert!(html.contains(&current), "{name}: its own nav entry is current");
                    assert!(html.contains("<div class=\"userbox\" id=\"userbox\">"), "{name}");
                }
                Layout::Auth => {
                    assert!(!html.contains("<nav"), "{name}: no navigation before logging in");
                    assert!(html.contains("<body class=\"auth\""), "{name}");
                }
            }
        }
    }

    #[test]
    fn every_portal_page_is_in_its_navigation_and_every_entry_has_a_page() {
        for portal in PORTALS {
            let marked: BTreeSet<&str> = pages_of(portal)
                .iter()
                .filter_map(|(_, f)| parse(f).expect("front matter").nav)
                .collect();
            for entry in nav_of(portal) {
                assert!(
                    marked.contains(entry.key),
                    "{}: a page marks {}",
                    portal.as_str(),
                    entry.key
                );
                assert!(
                    pages_of(portal).iter().any(|(route, _)| *route == entry.href),
                    "{}: {} is a page",
                    portal.as_str(),
                    entry.href
                );
            }
        }
    }

    #[test]
    fn pages_obey_the_content_security_policy() {
        for (portal, route, html) in rendered_pages() {
            let name = format!("{} {route}", portal.as_str());
            let lower = html.to_ascii_lowercase();
            assert!(!lower.contains(" style="), "{name}: no inline style attribute");
            assert!(!lower.contains("<style"), "{name}: no inline style element");
            assert!(!lower.contains("javascript:"), "{name}: no javascript: URL");
            for tag in script_tags(&lower) {
                assert!(tag.contains(" src=\"/assets/"), "{name}: no inline script: {tag}");
                let close = format!("{tag}></script>");
                assert!(lower.contains(&close), "{name}: an empty script element: {tag}");
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
                if url.starts_with("/assets/") {
                    assert!(asset_of(url).is_some(), "{name}: {url} is served");
                }
            }
        }
    }

    #[test]
    fn every_script_and_import_is_a_served_module_that_exports_what_is_imported() {
        let modules = modules();
        let referenced = referenced_scripts();
        for (url, by) in &referenced {
            let Some((_, ctype, _)) = asset_of(url) else {
                panic!("{url} (from {by}) is not served");
            };
            assert_eq!(*ctype, JS, "{url} (from {by}) is served as JavaScript");
        }
        for (url, js) in &modules {
            for import in imports(url, js) {
                let target = resolve(url, &import.from);
                assert!(
                    import.from.starts_with("./") || import.from.starts_with("../"),
                    "{url}: imports are relative: {}",
                    import.from
                );
                let source = modules.iter().find(|(u, _)| *u == target).map_or_else(
                    || panic!("{url} imports {target}, which is not served"),
                    |(_, s)| s,
                );
                let exported = exports(source);
                for name in &import.names {
                    assert!(
                        exported.contains(name),
                        "{url} imports {name}, which {target} does not export"
                    );
                }
            }
        }
        // And nothing is served that no page uses.
        for (url, _) in &modules {
            assert!(referenced.iter().any(|(u, _)| u == url), "{url} is used by no page");
        }
    }

    #[tokio::test]
    async fn every_referenced_module_answers_200_with_a_javascript_content_type() {
        let referenced = referenced_scripts();
        assert!(referenced.len() > 10, "pages and their imports: {referenced:?}");
        for (url, by) in
            referenced.into_iter().chain([("/assets/style.css".to_string(), String::new())])
        {
            let r = asset_routes::<()>()
                .oneshot(Request::get(&url).body(Body::empty()).expect("request"))
                .await
                .expect("answer");
            assert_eq!(r.status(), StatusCode::OK, "{url} (from {by})");
            let ctype = r.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
            let want = if has_extension(&url, "css") { "text/css; charset=utf-8" } else { JS };
            assert_eq!(ctype, Some(want), "{url}");
            let cache = r.headers().get(header::CACHE_CONTROL).and_then(|v| v.to_str().ok());
            assert_eq!(cache, Some("public, max-age=3600"), "{url}");
        }
        let r = asset_routes::<()>()
            .oneshot(Request::get("/assets/ops/nothing.js").body(Body::empty()).expect("request"))
            .await
            .expect("answer");
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }

    /// A file added under `assets/` but not to [`ASSETS`] (or a page list) would be missing
    /// from the binary.
    #[test]
    fn every_file_under_assets_is_served_or_a_page() {
        fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for e in std::fs::read_dir(dir).expect("assets dir") {
                let p = e.expect("entry").path();
                if p.is_dir() { walk(&p, out) } else { out.push(p) }
            }
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
        let mut files = Vec::new();
        walk(&root, &mut files);
        let templates = ["common/layout.html", "common/topbar.html"];
        let pages: Vec<&str> = [LOGIN, PASSWORD]
            .into_iter()
            .chain(OPS_PAGES.iter().map(|(_, f)| *f))
            .chain(MGMT_PAGES.iter().map(|(_, f)| *f))
            .collect();
        for file in files {
            let rel = file.strip_prefix(&root).expect("below").to_string_lossy().replace('\\', "/");
            let bytes = std::fs::read(&file).expect("read");
            let served = ASSETS.iter().any(|(_, _, b)| *b == bytes.as_slice());
            let page = has_extension(&rel, "html")
                && (templates.contains(&rel.as_str())
                    || pages.iter().any(|p| p.as_bytes() == bytes.as_slice()));
            assert!(served || page, "assets/{rel} is neither served nor a page");
            if has_extension(&rel, "js") {
                assert!(
                    ASSETS.iter().any(|(p, _, _)| *p == rel),
                    "assets/{rel} is served at /assets/{rel}"
                );
            }
        }
    }

    #[test]
    fn scripts_do_not_set_inline_styles_or_evaluate_strings() {
        for (name, ctype, body) in ASSETS {
            assert!(!body.is_empty(), "{name} is not empty");
            if *ctype != JS {
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
        let ops = layout::render(LOGIN, Portal::Ops).expect("renders");
        assert!(ops.contains("data-portal=\"ops\"") && ops.contains("<h1>Operations Portal</h1>"));
        let mgmt = layout::render(PASSWORD, Portal::Mgmt).expect("renders");
        assert!(mgmt.contains("data-portal=\"mgmt\"") && mgmt.contains("Management Dashboard"));
    }

    #[test]
    fn import_specifiers_resolve_like_urls() {
        assert_eq!(resolve("/assets/ops/pair.js", "../common/dom.js"), "/assets/common/dom.js");
        assert_eq!(resolve("/assets/ops/pair.js", "./pair-text.js"), "/assets/ops/pair-text.js");
        assert_eq!(resolve("/assets/ops/pair.js", "/assets/x.js"), "/assets/x.js");
        let i = imports(
            "t",
            "// c\nimport { a, b as c,\n  $ } from '../x.js';\nimport * as f from './f.js';\n\nconst x = 1;\n",
        );
        assert_eq!(i.len(), 2);
        assert_eq!(
            (i[0].names.clone(), i[0].from.as_str()),
            (vec!["a".into(), "b".into(), "$".into()], "../x.js")
        );
        assert!(i[1].names.is_empty());
        assert_eq!(
            exports(
                "export function a() {}\nexport async function b() {}\nexport const $x = 1;\nconst y = 2;\n"
            ),
            ["$x", "a", "b"].into_iter().map(String::from).collect()
        );
    }
}
