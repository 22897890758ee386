//! The manual, served by each portal at `/docs` (the first chapter), `/docs/{chapter}` and
//! `/docs/search?q=…`, in the portal's page layout, linked from every page (the last entry of
//! the navigation; the login and password pages' foot).
//!
//! No login is needed: the manual holds nothing an instance knows (it is the same text in
//! every binary), and an operator locked out needs it most. The pages are rendered once per
//! portal when its router is built and need no script, so they work with JavaScript off and
//! obey the Content-Security-Policy like every page. A search is rendered per request; its
//! query is bounded (`iobp_manual::MAX_QUERY_CHARS`) and escaped.

use std::fmt::Write as _;
use std::sync::{Arc, LazyLock, OnceLock};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use iobp_manual::{Chapter, Manual};
use serde::Deserialize;

use super::html;
use super::layout::{escape, portal_name, render_docs};
use crate::Portal;

/// The most hits a search page lists.
const MAX_HITS: usize = 30;

/// The manual, rendered once for both portals — at its first request, not at start: most
/// instances run for months without anyone opening it, and the rendered chapters of both
/// portals take about half a megabyte.
static MANUAL: LazyLock<Manual> = LazyLock::new(|| {
    let manual = Manual::load();
    for problem in manual.problems() {
        tracing::warn!("the manual: {problem}");
    }
    manual
});

/// A portal's chapter pages: (slug, page), in reading order.
type Pages = Vec<(&'static str, Option<Bytes>)>;

/// The routes of the manual for `portal`.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>(portal: Portal) -> Router<S> {
    let pages: Arc<OnceLock<Pages>> = Arc::new(OnceLock::new());
    let first = pages.clone();
    let chapters = pages;
    Router::new()
        .route(
            "/docs",
            get(move || async move {
                html(chapter_pages(&first, portal).first().and_then(|(_, b)| b.clone()))
            }),
        )
        .route(
            "/docs/search",
            get(move |Query(q): Query<SearchQuery>| async move { search(portal, &q.q) }),
        )
        .route(
            "/docs/{chapter}",
            get(move |Path(slug): Path<String>| async move {
                match chapter_pages(&chapters, portal).iter().find(|(s, _)| *s == slug) {
                    Some((_, body)) => html(body.clone()),
                    None => not_found(portal),
                }
            }),
        )
}

/// The chapter pages of `portal`, rendered at the first request.
fn chapter_pages(cell: &OnceLock<Pages>, portal: Portal) -> &Pages {
    cell.get_or_init(|| {
        let manual = &*MANUAL;
        manual
            .chapters()
            .iter()
            .enumerate()
            .map(|(i, c)| (c.slug, page(portal, manual, i)))
            .collect()
    })
}

#[derive(Debug, Deserialize)]
struct SearchQuery {
    #[serde(default)]
    q: String,
}

/// The page of chapter `index`: the table of contents (this chapter's sections open), the
/// chapter, and links to the previous and next one.
fn page(portal: Portal, manual: &Manual, index: usize) -> Option<Bytes> {
    let chapters = manual.chapters();
    let chapter = chapters.get(index)?;
    let mut article = String::with_capacity(chapter.html.len() + 512);
    article.push_str(&chapter.html);
    article.push_str("<nav class=\"docs-pager\" aria-label=\"Chapters\">");
    if let Some(prev) = index.checked_sub(1).and_then(|i| chapters.get(i)) {
        let _ =
            write!(article, "<a rel=\"prev\" href=\"{}\">← {}</a>", href(prev), escape(prev.title));
    }
    if let Some(next) = chapters.get(index + 1) {
        let _ =
            write!(article, "<a rel=\"next\" href=\"{}\">{} →</a>", href(next), escape(next.title));
    }
    article.push_str("</nav>");
    rendered(portal, chapter.title, &frame(manual, Some(chapter), "", &article))
}

/// A search's page: every section holding all the words, best first.
fn search(portal: Portal, query: &str) -> Response {
    let manual = &*MANUAL;
    let query: String = query.chars().take(iobp_manual::MAX_QUERY_CHARS).collect();
    let hits = manual.search(&query, MAX_HITS);
    let mut article = String::from("<h1>Search the manual</h1>\n<p class=\"docs-hits-count\">");
    match (query.trim().is_empty(), hits.len()) {
        (true, _) => article.push_str("Type words to find in the manual."),
        (false, 0) => {
            let _ =
                write!(article, "Nothing in the manual has every word of “{}”.", escape(&query));
        }
        (false, n) => {
            let more = if n == MAX_HITS { " (the first ones)" } else { "" };
            let _ = write!(article, "{n} section(s){more} for “{}”:", escape(&query));
        }
    }
    article.push_str("</p>\n<ol class=\"docs-hits\">\n");
    for hit in &hits {
        let title = if hit.section.level == 1 {
            escape(hit.chapter.title)
        } else {
            format!("{} › {}", escape(hit.chapter.title), escape(&hit.section.title))
        };
        let _ = writeln!(
            article,
            "<li><a href=\"{}#{}\">{title}</a><p>{}</p></li>",
            href(hit.chapter),
            escape(&hit.section.id),
            escape(&hit.snippet)
        );
    }
    article.push_str("</ol>\n");
    html(rendered(portal, "Search the manual", &frame(manual, None, &query, &article)))
}

fn not_found(portal: Portal) -> Response {
    let manual = &*MANUAL;
    let article = "<h1>No such page</h1>\n<p>The manual has no page at this address. Its \
        chapters are listed here; the search finds words in all of them.</p>\n";
    let mut r = html(rendered(portal, "No such page", &frame(manual, None, "", article)));
    *r.status_mut() = StatusCode::NOT_FOUND;
    r.into_response()
}

/// The manual's frame around `article`: the search form and the table of contents beside it.
fn frame(manual: &Manual, current: Option<&Chapter>, query: &str, article: &str) -> String {
    let mut out = String::with_capacity(article.len() + 4096);
    out.push_str("<div class=\"docs\">\n<nav class=\"docs-toc\" aria-label=\"The manual\">\n");
    let _ = writeln!(
        out,
        "<form class=\"docs-search\" action=\"/docs/search\" method=\"get\" role=\"search\">\
         <input type=\"search\" name=\"q\" value=\"{}\" placeholder=\"Search…\" \
         aria-label=\"Search the manual\" maxlength=\"{}\"><button type=\"submit\" \
         class=\"btn\">Search</button></form>",
        escape(query),
        iobp_manual::MAX_QUERY_CHARS
    );
    out.push_str("<ol>\n");
    for chapter in manual.chapters() {
        let is_current = current.is_some_and(|c| c.slug == chapter.slug);
        let mark = if is_current { " aria-current=\"page\"" } else { "" };
        let _ =
            write!(out, "<li><a href=\"{}\"{mark}>{}</a>", href(chapter), escape(chapter.title));
        if is_current {
            let sections: Vec<_> = chapter.sections.iter().filter(|s| s.level == 2).collect();
            if !sections.is_empty() {
                out.push_str("<ol>");
                for s in sections {
                    let _ = write!(
                        out,
                        "<li><a href=\"#{}\">{}</a></li>",
                        escape(&s.id),
                        escape(&s.title)
                    );
                }
                out.push_str("</ol>");
            }
        }
        out.push_str("</li>\n");
    }
    out.push_str("</ol>\n</nav>\n<article class=\"docs-content\">\n");
    out.push_str(article);
    out.push_str("\n</article>\n</div>\n");
    out
}

fn href(chapter: &Chapter) -> String {
    format!("{}/{}", iobp_manual::BASE, chapter.slug)
}

/// A manual page for `portal`; None (logged) if the layout does not render, which the tests
/// rule out.
fn rendered(portal: Portal, title: &str, content: &str) -> Option<Bytes> {
    match render_docs(portal, &format!("{title} · Manual"), content) {
        Ok(page) => Some(Bytes::from(page)),
        Err(e) => {
            tracing::error!(
                "a page of the manual does not render on the {}: {e}",
                portal_name(portal)
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt as _;

    use super::*;

    const PORTALS: [Portal; 2] = [Portal::Ops, Portal::Mgmt];

    async fn get_page(portal: Portal, uri: &str) -> (StatusCode, String) {
        let r = routes::<()>(portal)
            .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
            .await
            .expect("answer");
        let status = r.status();
        let body = axum::body::to_bytes(r.into_body(), 4 << 20).await.expect("body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[test]
    fn no_chapter_is_named_like_a_route_of_the_manual() {
        assert!(MANUAL.chapter("search").is_none());
    }

    #[tokio::test]
    async fn every_chapter_is_served_on_both_portals_in_the_portal_layout() {
        for portal in PORTALS {
            let chapters = MANUAL.chapters();
            for (i, chapter) in chapters.iter().enumerate() {
                let (status, page) = get_page(portal, &format!("/docs/{}", chapter.slug)).await;
                let name = format!("{} /docs/{}", portal.as_str(), chapter.slug);
                assert_eq!(status, StatusCode::OK, "{name}");
                assert!(
                    page.contains(&format!(
                        "<title>{} · Manual · ioBufferPro",
                        escape(chapter.title)
                    )),
                    "{name}"
                );
                assert!(page.contains(portal_name(portal)), "{name}: the portal's header");
                assert!(
                    page.contains(
                        "<a href=\"/docs\" data-nav=\"manual\" aria-current=\"page\">Manual</a>"
                    ),
                    "{name}: Manual is the current entry"
                );
                assert!(page.contains(&chapter.html), "{name}: the chapter");
                let lower = page.to_ascii_lowercase();
                assert!(
                    !lower.contains("<script")
                        && !lower.contains("<style")
                        && !lower.contains(" style="),
                    "{name}: no script, no inline style"
                );
                if let Some(next) = chapters.get(i + 1) {
                    assert!(
                        page.contains(&format!("<a rel=\"next\" href=\"/docs/{}\">", next.slug)),
                        "{name}: next"
                    );
                }
                // Every link into the manual reaches a chapter that is served.
                for (at, _) in page.match_indices("href=\"/docs/") {
                    let rest = &page[at + 12..];
                    let target = &rest[..rest.find(['"', '#']).expect("closed")];
                    assert!(
                        MANUAL.chapter(target).is_some() || target == "search",
                        "{name}: /docs/{target}"
                    );
                }
            }
            let (status, first) = get_page(portal, "/docs").await;
            assert_eq!(status, StatusCode::OK);
            assert!(first.contains(&chapters[0].html), "/docs is the first chapter");
        }
    }

    #[tokio::test]
    async fn the_search_lists_sections_and_escapes_the_query() {
        let (status, page) = get_page(Portal::Ops, "/docs/search?q=serial+port").await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("section(s)"), "{page}");
        assert!(page.contains("<li><a href=\"/docs/"), "hits link to chapters: {page}");
        assert!(page.contains("value=\"serial port\""), "the form keeps the query: {page}");

        let (status, page) =
            get_page(Portal::Mgmt, "/docs/search?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E").await;
        assert_eq!(status, StatusCode::OK);
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{page}");
        assert!(page.contains("Nothing in the manual has every word"), "{page}");

        let (status, page) = get_page(Portal::Ops, "/docs/search").await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("Type words to find"), "{page}");

        let long = "a".repeat(5000);
        let (status, page) = get_page(Portal::Ops, &format!("/docs/search?q={long}")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(!page.contains(&"a".repeat(iobp_manual::MAX_QUERY_CHARS + 1)), "the query is cut");
    }

    #[tokio::test]
    async fn an_unknown_page_is_a_404_with_the_table_of_contents() {
        let (status, page) = get_page(Portal::Ops, "/docs/no-such-chapter").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(page.contains("No such page"), "{page}");
        assert!(page.contains(&format!("href=\"/docs/{}\"", MANUAL.chapters()[0].slug)), "{page}");
    }
}
