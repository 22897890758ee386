//! The user manual, embedded: the Markdown chapters of `docs/manual` (listed, in reading order,
//! by its mdBook-style `SUMMARY.md`; see `build.rs`) rendered to HTML fragments, with each
//! chapter's sections for a table of contents and a plain-text search. The web layer puts the
//! fragments into its page layout and serves them at [`BASE`], so an offline plant has its
//! manual in the binary it runs.
//!
//! Contract of the rendering (tests below prove each line):
//! - A chapter's title is the title `SUMMARY.md` gives it; its slug is its file name without
//!   `.md` (`connectors.md` at `/docs/connectors`).
//! - Every heading gets an `id`: the GitHub-style slug of its text ([`slug`]), made unique
//!   within the chapter with `-1`, `-2`, … as GitHub does.
//! - Links between chapters are written as in mdBook (`connectors.md#serial-ports`) and become
//!   `/docs/connectors#serial-ports`; in-chapter links (`#serial-ports`) stay. Each one must
//!   name a chapter and a heading that exist, and no link may leave the manual by a relative
//!   path (a file of the source tree is not in the binary): anything else is a [`Problem`].
//! - Raw HTML in a chapter is shown as text, never passed through (the pages' Content Security
//!   Policy forbids inline script and style, and the manual needs neither).
//!
//! Problems do not stop rendering — the page is still served — but the test suite requires
//! there be none, so a broken link fails CI rather than an operator's search.

use pulldown_cmark::{CowStr, Event, HeadingLevel, Options, Parser, Tag, TagEnd};

mod chapters {
    include!(concat!(env!("OUT_DIR"), "/chapters.rs"));
}

/// Where the manual is served.
pub const BASE: &str = "/docs";

/// The longest search query taken (longer ones are cut): the search scans every section per
/// word, so a bounded query bounds its work.
pub const MAX_QUERY_CHARS: usize = 200;
/// The most words of a query taken.
pub const MAX_QUERY_WORDS: usize = 8;

/// One chapter, rendered.
#[derive(Debug, Clone)]
pub struct Chapter {
    /// Its file name without `.md`: its URL below [`BASE`].
    pub slug: &'static str,
    pub title: &'static str,
    /// The chapter as an HTML fragment (no `<html>`, no `<body>`).
    pub html: String,
    /// Its headings in order, each with the text that follows it up to the next heading.
    pub sections: Vec<Section>,
}

/// A heading of a chapter and the text under it.
#[derive(Debug, Clone)]
pub struct Section {
    /// The heading's `id` (the URL fragment that reaches it).
    pub id: String,
    /// 1 for the chapter's title, 2 for `##`, …
    pub level: u8,
    pub title: String,
    /// The plain text under the heading (code included), for the search.
    text: String,
}

/// Something wrong in the manual's sources.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("{chapter}.md: the link `{link}` names no chapter of the manual")]
    NoSuchChapter { chapter: &'static str, link: String },
    #[error("{chapter}.md: the link `{link}` names no heading of {target}.md")]
    NoSuchHeading { chapter: &'static str, link: String, target: String },
    #[error("{chapter}.md: the link `{link}` leaves the manual (only chapters and http(s) links)")]
    OutsideLink { chapter: &'static str, link: String },
    #[error("{chapter}.md: raw HTML is shown as text: `{html}`")]
    RawHtml { chapter: &'static str, html: String },
    #[error("{chapter}.md does not start with a `# ` title")]
    NoTitle { chapter: &'static str },
}

/// A section that matches a search.
#[derive(Debug, Clone)]
pub struct Hit<'a> {
    pub chapter: &'a Chapter,
    pub section: &'a Section,
    /// Up to about 200 characters of the section's text around the first match.
    pub snippet: String,
    score: usize,
}

/// The whole manual, rendered.
#[derive(Debug, Clone)]
pub struct Manual {
    chapters: Vec<Chapter>,
    problems: Vec<Problem>,
}

impl Manual {
    /// Renders the embedded manual (a few milliseconds; done once per portal at start).
    #[must_use]
    pub fn load() -> Self {
        Self::render(chapters::CHAPTERS)
    }

    /// Renders `sources`: (slug, title, Markdown) in reading order.
    fn render(sources: &[(&'static str, &'static str, &'static str)]) -> Self {
        let mut problems = Vec::new();
        let parsed: Vec<Parsed> = sources
            .iter()
            .map(|&(slug, title, markdown)| Parsed::new(slug, title, markdown, &mut problems))
            .collect();
        let chapters =
            parsed.iter().map(|p| p.to_chapter(&parsed, &mut problems)).collect::<Vec<_>>();
        Self { chapters, problems }
    }

    /// The chapters in reading order.
    #[must_use]
    pub fn chapters(&self) -> &[Chapter] {
        &self.chapters
    }

    /// The chapter with this slug.
    #[must_use]
    pub fn chapter(&self, slug: &str) -> Option<&Chapter> {
        self.chapters.iter().find(|c| c.slug == slug)
    }

    /// What is wrong in the sources (none, in a release: the tests see to it).
    #[must_use]
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// The sections that contain every word of `query` (ASCII letters compared without case),
    /// best first: a word in a heading counts most, then how often the words occur. At most
    /// `limit` hits; an empty query finds nothing.
    #[must_use]
    pub fn search(&self, query: &str, limit: usize) -> Vec<Hit<'_>> {
        let query: String = query.chars().take(MAX_QUERY_CHARS).collect();
        let query = query.to_ascii_lowercase();
        let words: Vec<&str> = query.split_whitespace().take(MAX_QUERY_WORDS).collect();
        if words.is_empty() {
            return Vec::new();
        }
        let mut hits = Vec::new();
        for chapter in &self.chapters {
            for section in &chapter.sections {
                let title = section.title.to_ascii_lowercase();
                let text = section.text.to_ascii_lowercase();
                let mut score = 0;
                let mut first: Option<usize> = None;
                for word in &words {
                    let in_title = title.contains(word);
                    let count = text.matches(word).take(10).count();
                    if !in_title && count == 0 {
                        score = 0;
                        break;
                    }
                    score += if in_title { 20 } else { 0 } + count;
                    if let Some(at) = text.find(word) {
                        first = Some(first.map_or(at, |f| f.min(at)));
                    }
                }
                if score > 0 {
                    let snippet = snippet(&section.text, first.unwrap_or(0));
                    hits.push(Hit { chapter, section, snippet, score });
                }
            }
        }
        // Stable: equal scores stay in reading order.
        hits.sort_by_key(|h| std::cmp::Reverse(h.score));
        hits.truncate(limit);
        hits
    }
}

/// About 200 characters of `text` around byte `at`, on character boundaries, with `…` where
/// it was cut.
fn snippet(text: &str, at: usize) -> String {
    let mut start = at.saturating_sub(60);
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = (start + 200).min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = String::new();
    if start > 0 {
        out.push('…');
    }
    out.push_str(text[start..end].trim());
    if end < text.len() {
        out.push('…');
    }
    out
}

/// The GitHub-style slug of a heading: lowercase, letters, digits, spaces, `-` and `_` kept,
/// everything else dropped, spaces turned into `-` (`Fleets: relay, MQTT or JetStream` becomes
/// `fleets-relay-mqtt-or-jetstream`).
#[must_use]
pub fn slug(text: &str) -> String {
    text.trim()
        .chars()
        .flat_map(char::to_lowercase)
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// A chapter parsed, its headings known, before links are resolved against all chapters.
struct Parsed {
    slug: &'static str,
    title: &'static str,
    events: Vec<Event<'static>>,
    /// (index of the heading's Start event, section).
    headings: Vec<(usize, Section)>,
}

impl Parsed {
    fn new(
        slug: &'static str,
        title: &'static str,
        markdown: &'static str,
        problems: &mut Vec<Problem>,
    ) -> Self {
        let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH;
        let events: Vec<Event<'static>> = Parser::new_ext(markdown, options).collect();
        let mut headings: Vec<(usize, Section)> = Vec::new();
        let mut open: Option<(usize, u8, String)> = None;
        for (i, event) in events.iter().enumerate() {
            match event {
                Event::Start(Tag::Heading { level, .. }) => {
                    open = Some((i, heading_level(*level), String::new()));
                }
                Event::End(TagEnd::Heading(_)) => {
                    if let Some((start, level, title)) = open.take() {
                        let base = crate::slug(&title);
                        let taken = |id: &str| headings.iter().any(|(_, s)| s.id == id);
                        let mut id = base.clone();
                        let mut n = 0;
                        while taken(&id) {
                            n += 1;
                            id = format!("{base}-{n}");
                        }
                        headings.push((start, Section { id, level, title, text: String::new() }));
                    }
                }
                Event::Text(t) | Event::Code(t) => match (&mut open, headings.last_mut()) {
                    (Some((_, _, title)), _) => title.push_str(t),
                    (None, Some((_, section))) => section.text.push_str(t),
                    (None, None) => {}
                },
                Event::SoftBreak | Event::HardBreak | Event::End(_) => {
                    if open.is_none()
                        && let Some((_, section)) = headings.last_mut()
                        && !section.text.ends_with(' ')
                    {
                        section.text.push(' ');
                    }
                }
                _ => {}
            }
        }
        if headings.first().is_none_or(|(_, s)| s.level != 1) {
            problems.push(Problem::NoTitle { chapter: slug });
        }
        Self { slug, title, events, headings }
    }

    fn has_heading(&self, id: &str) -> bool {
        self.headings.iter().any(|(_, s)| s.id == id)
    }

    /// The chapter's HTML, its links resolved against `all`.
    fn to_chapter(&self, all: &[Parsed], problems: &mut Vec<Problem>) -> Chapter {
        let chapter = self.slug;
        let mut events = self.events.clone();
        for (start, section) in &self.headings {
            if let Some(Event::Start(Tag::Heading { id, .. })) = events.get_mut(*start) {
                *id = Some(CowStr::from(section.id.clone()));
            }
        }
        for event in &mut events {
            match event {
                Event::Start(Tag::Link { dest_url, .. }) => {
                    let link = dest_url.to_string();
                    match self.resolve(&link, all) {
                        Ok(url) => *dest_url = CowStr::from(url),
                        Err(problem) => problems.push(problem),
                    }
                }
                Event::Html(html) | Event::InlineHtml(html) => {
                    problems.push(Problem::RawHtml { chapter, html: html.trim().to_string() });
                    *event = Event::Text(html.clone());
                }
                _ => {}
            }
        }
        let mut html = String::new();
        pulldown_cmark::html::push_html(&mut html, events.into_iter());
        Chapter {
            slug: self.slug,
            title: self.title,
            html,
            sections: self.headings.iter().map(|(_, s)| s.clone()).collect(),
        }
    }

    /// Where a link of this chapter points in the served manual.
    fn resolve(&self, link: &str, all: &[Parsed]) -> Result<String, Problem> {
        let chapter = self.slug;
        if ["http://", "https://", "mailto:"].iter().any(|p| link.starts_with(p)) {
            return Ok(link.to_string());
        }
        let (path, anchor) = link.split_once('#').map_or((link, None), |(p, a)| (p, Some(a)));
        let target = if path.is_empty() {
            self
        } else {
            let Some(slug) = path.strip_suffix(".md").filter(|s| !s.contains('/')) else {
                return Err(Problem::OutsideLink { chapter, link: link.to_string() });
            };
            all.iter()
                .find(|p| p.slug == slug)
                .ok_or_else(|| Problem::NoSuchChapter { chapter, link: link.to_string() })?
        };
        if let Some(anchor) = anchor
            && !target.has_heading(anchor)
        {
            return Err(Problem::NoSuchHeading {
                chapter,
                link: link.to_string(),
                target: target.slug.to_string(),
            });
        }
        Ok(match (path.is_empty(), anchor) {
            (true, Some(a)) => format!("#{a}"),
            (false, Some(a)) => format!("{BASE}/{}#{a}", target.slug),
            (_, None) => format!("{BASE}/{}", target.slug),
        })
    }
}

fn heading_level(level: HeadingLevel) -> u8 {
    match level {
        HeadingLevel::H1 => 1,
        HeadingLevel::H2 => 2,
        HeadingLevel::H3 => 3,
        HeadingLevel::H4 => 4,
        HeadingLevel::H5 => 5,
        HeadingLevel::H6 => 6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTRO: &str = "# Introduction\n\nSee [the connectors](connectors.md) and \
        [serial ports](connectors.md#serial-ports), or [below](#next-steps).\n\n\
        ## Next steps\n\nRead on.\n\n## Next steps\n\nAgain.\n";
    const CONNECTORS: &str = "# Connectors\n\n## Serial ports\n\nRS-232 and `rs485`, at any \
        baud rate.\n\n## TCP: server & client\n\nSockets.\n\n| a | b |\n|---|---|\n| 1 | 2 |\n";

    fn manual(extra: &'static str) -> Manual {
        Manual::render(&[
            ("introduction", "Introduction", INTRO),
            ("connectors", "Connectors", CONNECTORS),
            ("extra", "Extra", extra),
        ])
    }

    #[test]
    fn the_embedded_manual_renders_without_a_problem() {
        let manual = Manual::load();
        assert!(manual.problems().is_empty(), "{:#?}", manual.problems());
        assert!(manual.chapters().len() >= 10, "{} chapters", manual.chapters().len());
        assert_eq!(manual.chapters()[0].slug, "introduction");
        for c in manual.chapters() {
            assert!(c.html.contains("<h1"), "{} has no title", c.slug);
            assert!(c.sections.len() >= 2, "{} has no section", c.slug);
        }
    }

    #[test]
    fn headings_get_github_ids_unique_within_a_chapter() {
        assert_eq!(slug("Fleets: relay, MQTT or JetStream"), "fleets-relay-mqtt-or-jetstream");
        assert_eq!(slug("TCP: server & client"), "tcp-server--client");
        assert_eq!(slug(" `rs485` and RS_485 "), "rs485-and-rs_485");
        let m = manual("# Extra\n");
        let intro = m.chapter("introduction").expect("intro");
        assert!(intro.html.contains("<h2 id=\"next-steps\">"), "{}", intro.html);
        assert!(intro.html.contains("<h2 id=\"next-steps-1\">"), "{}", intro.html);
        let ids: Vec<&str> = intro.sections.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["introduction", "next-steps", "next-steps-1"]);
        let conn = m.chapter("connectors").expect("connectors");
        assert!(conn.html.contains("<h2 id=\"tcp-server--client\">"), "{}", conn.html);
        assert!(conn.html.contains("<table>"), "tables render: {}", conn.html);
    }

    #[test]
    fn links_between_chapters_become_urls_of_the_served_manual() {
        let m = manual("# Extra\n");
        assert!(m.problems().is_empty(), "{:?}", m.problems());
        let html = &m.chapter("introduction").expect("intro").html;
        assert!(html.contains("href=\"/docs/connectors\""), "{html}");
        assert!(html.contains("href=\"/docs/connectors#serial-ports\""), "{html}");
        assert!(html.contains("href=\"#next-steps\""), "{html}");
    }

    #[test]
    fn broken_and_outside_links_are_problems() {
        let m = manual(
            "# Extra\n\n[a](nowhere.md) [b](connectors.md#parity) [c](#nope) \
             [d](../../README.md) [e](https://example.com/x.md)\n",
        );
        let problems = m.problems();
        assert_eq!(problems.len(), 4, "{problems:#?}");
        assert!(
            matches!(&problems[0], Problem::NoSuchChapter { link, .. } if link == "nowhere.md")
        );
        assert!(matches!(
            &problems[1],
            Problem::NoSuchHeading { link, target, .. } if link == "connectors.md#parity" && target == "connectors"
        ));
        assert!(matches!(&problems[2], Problem::NoSuchHeading { link, .. } if link == "#nope"));
        assert!(
            matches!(&problems[3], Problem::OutsideLink { link, .. } if link == "../../README.md")
        );
        let html = &m.chapter("extra").expect("extra").html;
        assert!(html.contains("href=\"https://example.com/x.md\""), "{html}");
    }

    #[test]
    fn raw_html_is_shown_as_text_and_reported() {
        let m = manual("# Extra\n\n<script>alert(1)</script>\n\nand <b onclick=\"x\">bold</b>\n");
        let html = &m.chapter("extra").expect("extra").html;
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<b "), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert_eq!(
            m.problems().iter().filter(|p| matches!(p, Problem::RawHtml { .. })).count(),
            3,
            "{:?}",
            m.problems()
        );
    }

    #[test]
    fn a_chapter_without_a_title_is_a_problem() {
        let m = manual("Just text.\n");
        assert_eq!(m.problems(), [Problem::NoTitle { chapter: "extra" }]);
    }

    #[test]
    fn search_finds_sections_with_every_word_headings_first() {
        let m = manual("# Extra\n\nSerial cables are grey. SERIAL serial serial.\n");
        let hits = m.search("Serial", 10);
        let found: Vec<(&str, &str)> =
            hits.iter().map(|h| (h.chapter.slug, h.section.id.as_str())).collect();
        // The heading "Serial ports" first, although "extra" mentions the word more often;
        // then by count, the introduction's link text last.
        assert_eq!(
            found,
            [("connectors", "serial-ports"), ("extra", "extra"), ("introduction", "introduction")]
        );
        let both = m.search("baud rs485", 10);
        assert_eq!(both.len(), 1);
        assert!(both[0].snippet.contains("baud rate"), "{}", both[0].snippet);
        assert!(m.search("baud nowhere", 10).is_empty());
        assert!(m.search("   ", 10).is_empty());
        assert_eq!(m.search("e", 2).len(), 2, "the limit holds");
    }

    #[test]
    fn a_huge_query_is_cut_not_scanned_whole() {
        let m = manual("# Extra\n");
        let query = "serial ".repeat(100_000);
        assert_eq!(m.search(&query, 10).len(), m.search("serial", 10).len());
    }

    #[test]
    fn snippets_cut_on_character_boundaries() {
        let text = "é".repeat(300);
        for at in [0, 1, 121, 599] {
            let s = snippet(&text, at);
            assert!(s.chars().count() <= 202, "{}", s.len());
        }
    }
}
