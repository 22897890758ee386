//! The portals' pages from one layout.
//!
//! A page file (`assets/ops/channels.html`, …) holds only what is its own: a front matter in
//! an HTML comment, then the content of its `<main>`:
//!
//! ```text
//! <!--
//! title: Channels
//! page: ops-channels
//! layout: app
//! nav: channels
//! script: /assets/ops/channels.js
//! -->
//! <div class="page-head">…
//! ```
//!
//! `title` goes into `<title>` (with the portal's name), `page` into the body's `data-page`,
//! `script` is the page's module (`<script type="module">`, the only script of a page, so the
//! Content-Security-Policy's `script-src 'self'` holds), `layout` is `app` (a portal page:
//! header with the portal's navigation, `nav` naming the entry marked current) or `auth` (the
//! login and password pages: no header, no `nav`). The layout (`assets/common/layout.html`,
//! with `assets/common/topbar.html` for the header) adds the rest. Templates and page contents
//! use `{{name}}` placeholders; contents may use `{{portal_name}}` and `{{portal}}`.
//!
//! Pages are rendered once per portal when its router is built. Any inconsistency (a
//! placeholder without value, a front-matter key unknown or missing, a nav entry the portal
//! does not have) is an error rather than a page rendered half; the tests render every page.

use std::fmt::Write as _;

use crate::Portal;

const LAYOUT: &str = include_str!("../../assets/common/layout.html");
const TOPBAR: &str = include_str!("../../assets/common/topbar.html");

/// One entry of a portal's navigation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NavEntry {
    /// What a page's front matter names (`nav: channels`).
    pub key: &'static str,
    pub href: &'static str,
    pub label: &'static str,
}

/// The navigation of the Operations Portal, in order.
pub(crate) const OPS_NAV: &[NavEntry] = &[
    NavEntry { key: "overview", href: "/", label: "Overview" },
    NavEntry { key: "channels", href: "/channels", label: "Channels" },
];

/// The navigation of the Management Dashboard, in order.
pub(crate) const MGMT_NAV: &[NavEntry] = &[
    NavEntry { key: "health", href: "/", label: "System Health" },
    NavEntry { key: "settings", href: "/settings", label: "Settings" },
    NavEntry { key: "users", href: "/users", label: "Users" },
    NavEntry { key: "logs", href: "/logs", label: "Logs" },
    NavEntry { key: "audit", href: "/audit", label: "Audit trail" },
];

/// The navigation of `portal`.
pub(crate) fn nav_of(portal: Portal) -> &'static [NavEntry] {
    match portal {
        Portal::Ops => OPS_NAV,
        Portal::Mgmt => MGMT_NAV,
    }
}

/// The name a portal shows.
pub(crate) fn portal_name(portal: Portal) -> &'static str {
    match portal {
        Portal::Ops => "Operations Portal",
        Portal::Mgmt => "Management Dashboard",
    }
}

/// Why a page does not render.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LayoutError {
    #[error("the page does not start with its front matter (`<!--` … `-->`)")]
    NoFrontMatter,
    #[error("front matter line `{0}` is not `key: value`")]
    BadLine(String),
    #[error("unknown front matter key `{0}`")]
    UnknownKey(String),
    #[error("front matter key `{0}` is given twice")]
    DuplicateKey(String),
    #[error("the front matter lacks `{0}`")]
    MissingKey(&'static str),
    #[error("unknown layout `{0}`: app or auth")]
    UnknownLayout(String),
    #[error("`nav: {0}` is not an entry of the portal's navigation")]
    UnknownNav(String),
    #[error("an auth page has no navigation, yet names `nav: {0}`")]
    NavOnAuthPage(String),
    #[error("the placeholder `{{{{{0}}}}}` has no value here")]
    UnknownPlaceholder(String),
    #[error("a placeholder `{{{{` is not closed")]
    UnclosedPlaceholder,
}

/// Which layout a page uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// A portal page: the header with the portal's navigation.
    App,
    /// The login and password pages: no header.
    Auth,
}

/// What a page file says about itself, and its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PageFile<'a> {
    pub title: &'a str,
    pub page: &'a str,
    pub layout: Layout,
    /// The nav entry marked current (app pages only).
    pub nav: Option<&'a str>,
    /// The URL of the page's module script.
    pub script: &'a str,
    /// What goes into `<main>`.
    pub content: &'a str,
}

/// Splits a page file into its front matter and content.
pub(crate) fn parse(file: &str) -> Result<PageFile<'_>, LayoutError> {
    let rest = file.strip_prefix("<!--\n").ok_or(LayoutError::NoFrontMatter)?;
    let (front, content) = rest.split_once("-->\n").ok_or(LayoutError::NoFrontMatter)?;
    let (mut title, mut page, mut layout, mut nav, mut script) = (None, None, None, None, None);
    for line in front.lines().filter(|l| !l.trim().is_empty()) {
        let (key, value) =
            line.split_once(':').ok_or_else(|| LayoutError::BadLine(line.to_string()))?;
        let slot = match key.trim() {
            "title" => &mut title,
            "page" => &mut page,
            "layout" => &mut layout,
            "nav" => &mut nav,
            "script" => &mut script,
            other => return Err(LayoutError::UnknownKey(other.to_string())),
        };
        if slot.replace(value.trim()).is_some() {
            return Err(LayoutError::DuplicateKey(key.trim().to_string()));
        }
    }
    let layout = match layout.ok_or(LayoutError::MissingKey("layout"))? {
        "app" => Layout::App,
        "auth" => Layout::Auth,
        other => return Err(LayoutError::UnknownLayout(other.to_string())),
    };
    match (layout, nav) {
        (Layout::App, None) => return Err(LayoutError::MissingKey("nav")),
        (Layout::Auth, Some(n)) => return Err(LayoutError::NavOnAuthPage(n.to_string())),
        _ => {}
    }
    Ok(PageFile {
        title: title.ok_or(LayoutError::MissingKey("title"))?,
        page: page.ok_or(LayoutError::MissingKey("page"))?,
        layout,
        nav,
        script: script.ok_or(LayoutError::MissingKey("script"))?,
        content,
    })
}

/// Renders a page file for `portal`: the whole HTML document.
pub(crate) fn render(file: &str, portal: Portal) -> Result<String, LayoutError> {
    let page = parse(file)?;
    let name = portal_name(portal);
    let content = fill(page.content, &[("portal_name", name), ("portal", portal.as_str())])?;
    let (body_attributes, header, main_class) = match page.layout {
        Layout::App => {
            let current = page.nav.unwrap_or_default();
            if !nav_of(portal).iter().any(|e| e.key == current) {
                return Err(LayoutError::UnknownNav(current.to_string()));
            }
            let attrs =
                format!(" data-portal=\"{}\" data-page=\"{}\"", portal.as_str(), escape(page.page));
            (attrs, topbar(portal, current)?, "page")
        }
        Layout::Auth => {
            let attrs = format!(
                " class=\"auth\" data-portal=\"{}\" data-page=\"{}\"",
                portal.as_str(),
                escape(page.page)
            );
            (attrs, String::new(), "auth-box")
        }
    };
    let script = format!("<script type=\"module\" src=\"{}\"></script>\n", escape(page.script));
    fill(
        LAYOUT,
        &[
            ("title", &escape(page.title)),
            ("portal_name", name),
            ("script", &script),
            ("body_attributes", &body_attributes),
            ("header", &header),
            ("main_class", main_class),
            ("content", &content),
        ],
    )
}

/// A page of the manual for `portal`: the portal's header (its navigation, *Manual* marked
/// current), no script — the manual works without JavaScript — and `content` (HTML, already
/// escaped where it must be) in `<main>`.
pub(crate) fn render_docs(
    portal: Portal,
    title: &str,
    content: &str,
) -> Result<String, LayoutError> {
    let attrs = format!(" data-portal=\"{}\" data-page=\"docs\"", portal.as_str());
    fill(
        LAYOUT,
        &[
            ("title", &escape(title)),
            ("portal_name", portal_name(portal)),
            ("script", ""),
            ("body_attributes", &attrs),
            ("header", &topbar(portal, MANUAL_NAV.key)?),
            ("main_class", "page docs-page"),
            ("content", content),
        ],
    )
}

/// The entry every portal's navigation ends with: the manual the binary serves.
pub(crate) const MANUAL_NAV: NavEntry = NavEntry { key: "manual", href: "/docs", label: "Manual" };

/// The header of an app page: the portal's navigation and the manual, `current` marked.
fn topbar(portal: Portal, current: &str) -> Result<String, LayoutError> {
    let mut links = String::new();
    for e in nav_of(portal).iter().chain(std::iter::once(&MANUAL_NAV)) {
        let mark = if e.key == current { " aria-current=\"page\"" } else { "" };
        let _ = writeln!(
            links,
            "    <a href=\"{}\" data-nav=\"{}\"{mark}>{}</a>",
            escape(e.href),
            escape(e.key),
            escape(e.label)
        );
    }
    fill(TOPBAR, &[("portal_name", portal_name(portal)), ("nav_links", &links)])
}

/// Replaces every `{{name}}` in `template` with its value in `vars` (values are not scanned
/// again).
fn fill(template: &str, vars: &[(&str, &str)]) -> Result<String, LayoutError> {
    let mut out =
        String::with_capacity(template.len() + vars.iter().map(|(_, v)| v.len()).sum::<usize>());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or(LayoutError::UnclosedPlaceholder)?;
        let name = &after[..end];
        let value = vars
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| *v)
            .ok_or_else(|| LayoutError::UnknownPlaceholder(name.to_string()))?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Text for HTML text and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "<!--\ntitle: Channels\npage: ops-channels\nlayout: app\nnav: channels\nscript: /assets/ops/channels.js\n-->\n<h1>{{portal_name}}</h1>\n";

    #[test]
    fn a_page_gets_the_layout_its_title_nav_and_script() {
        let html = render(PAGE, Portal::Ops).expect("renders");
        assert!(html.starts_with("<!doctype html>"), "{html}");
        assert!(html.contains("<title>Channels · ioBufferPro Operations Portal</title>"), "{html}");
        assert!(
            html.contains("<script type=\"module\" src=\"/assets/ops/channels.js\"></script>"),
            "{html}"
        );
        assert!(html.contains("<body data-portal=\"ops\" data-page=\"ops-channels\">"), "{html}");
        assert!(
            html.contains(
                "<a href=\"/channels\" data-nav=\"channels\" aria-current=\"page\">Channels</a>"
            ),
            "{html}"
        );
        assert!(html.contains("<a href=\"/\" data-nav=\"overview\">Overview</a>"), "{html}");
        assert!(
            html.contains("<main class=\"page\" id=\"main\">\n<h1>Operations Portal</h1>\n</main>"),
            "{html}"
        );
        assert!(!html.contains("{{"), "{html}");
    }

    #[test]
    fn every_app_page_links_the_manual_and_a_manual_page_has_no_script() {
        let html = render(PAGE, Portal::Ops).expect("renders");
        assert!(html.contains("<a href=\"/docs\" data-nav=\"manual\">Manual</a>"), "{html}");
        let docs = render_docs(Portal::Mgmt, "Connectors · Manual", "<p>x</p>").expect("renders");
        assert!(!docs.contains("<script"), "{docs}");
        assert!(
            docs.contains("<title>Connectors · Manual · ioBufferPro Management Dashboard</title>")
        );
        assert!(
            docs.contains("<a href=\"/docs\" data-nav=\"manual\" aria-current=\"page\">Manual</a>"),
            "{docs}"
        );
        assert!(
            docs.contains("<a href=\"/settings\" data-nav=\"settings\">Settings</a>"),
            "{docs}"
        );
        assert!(
            docs.contains("<main class=\"page docs-page\" id=\"main\">\n<p>x</p></main>"),
            "{docs}"
        );
    }

    #[test]
    fn an_auth_page_has_no_header() {
        let page = "<!--\ntitle: Log in\npage: login\nlayout: auth\nscript: /assets/common/login.js\n-->\n<p>x</p>\n";
        let html = render(page, Portal::Mgmt).expect("renders");
        assert!(html.contains("<body class=\"auth\" data-portal=\"mgmt\" data-page=\"login\">"));
        assert!(html.contains("<title>Log in · ioBufferPro Management Dashboard</title>"));
        assert!(!html.contains("<header") && !html.contains("<nav"), "{html}");
        assert!(html.contains("<main class=\"auth-box\" id=\"main\">"));
    }

    #[test]
    fn inconsistent_pages_are_refused() {
        let without = |key: &str| {
            PAGE.lines().filter(|l| !l.starts_with(key)).collect::<Vec<_>>().join("\n") + "\n"
        };
        assert_eq!(render("<h1>x</h1>", Portal::Ops), Err(LayoutError::NoFrontMatter));
        assert_eq!(render(&without("title:"), Portal::Ops), Err(LayoutError::MissingKey("title")));
        assert_eq!(render(&without("nav:"), Portal::Ops), Err(LayoutError::MissingKey("nav")));
        assert_eq!(
            render(&PAGE.replace("nav: channels", "nav: users"), Portal::Ops),
            Err(LayoutError::UnknownNav("users".into()))
        );
        assert_eq!(
            render(&PAGE.replace("layout: app", "layout: auth"), Portal::Ops),
            Err(LayoutError::NavOnAuthPage("channels".into()))
        );
        assert_eq!(
            render(&PAGE.replace("page: ops", "colour: red\npage: ops"), Portal::Ops),
            Err(LayoutError::UnknownKey("colour".into()))
        );
        assert_eq!(
            render(&PAGE.replace("{{portal_name}}", "{{user}}"), Portal::Ops),
            Err(LayoutError::UnknownPlaceholder("user".into()))
        );
        assert_eq!(
            render(&PAGE.replace("{{portal_name}}", "{{portal_name"), Portal::Ops),
            Err(LayoutError::UnclosedPlaceholder)
        );
    }

    #[test]
    fn values_are_escaped() {
        let html = render(&PAGE.replace("title: Channels", "title: <b>&\""), Portal::Ops)
            .expect("renders");
        assert!(html.contains("<title>&lt;b&gt;&amp;&quot; · ioBufferPro"), "{html}");
    }
}
