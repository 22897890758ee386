//! What every story uses: the `WebDriver` session (chromedriver or geckodriver and a headless
//! browser with a fresh profile) with its waits, clicks and screenshots, the pair form's
//! fields, taking turns, the scenario time limit.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use iobp_testkit::{ports, wait};
use serde_json::{Value, json};

use crate::util::Instance;

/// How long one scenario may take in all.
pub const SCENARIO_LIMIT: Duration = Duration::from_secs(240);
/// Default deadline of one wait.
pub const WAIT: Duration = Duration::from_secs(30);

// ================================================================ the browser

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn find_in_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// Kills the processes whose command line contains `marker` (the browser processes of one
/// test, recognised by their private profile directory).
pub fn kill_processes_with(marker: &str) {
    let Ok(entries) = std::fs::read_dir("/proc") else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().filter(|n| n.chars().all(|c| c.is_ascii_digit())) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else { continue };
        if String::from_utf8_lossy(&cmdline).contains(marker) {
            let _ = Command::new("kill").args(["-9", pid]).status();
        }
    }
}

/// Which browser a scenario runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Debian's `chromium` through `chromedriver`: every scenario.
    Chromium,
    /// Debian's `firefox-esr` through `geckodriver`: the main scenarios of both portals, so
    /// that the pages are proven in both engines.
    Firefox,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Chromium => "chromium",
            Kind::Firefox => "firefox",
        }
    }
}

/// A `WebDriver` (chromedriver or geckodriver) and a headless browser with a fresh profile.
pub struct Browser {
    pub kind: Kind,
    pub client: Client,
    pub driver: Child,
    pub profile: tempfile::TempDir,
    /// Name of the scenario, for failure screenshots.
    pub scenario: &'static str,
    /// Width and height of the window around the page.
    pub frame: std::sync::OnceLock<(u32, u32)>,
}

impl Browser {
    pub async fn start(scenario: &'static str) -> Browser {
        Browser::start_in(Kind::Chromium, scenario).await
    }

    pub async fn start_in(kind: Kind, scenario: &'static str) -> Browser {
        // A failure screenshot of an earlier run would mislead.
        let _ = std::fs::remove_file(
            repo().join(format!("test-output/screenshots/FAILED-{scenario}.png")),
        );
        let (browser_var, browser_default, driver_var, driver_name, package) = match kind {
            Kind::Chromium => (
                "IOBP_CHROMIUM",
                "/usr/bin/chromium",
                "IOBP_CHROMEDRIVER",
                "chromedriver",
                "apt-get install chromium chromium-driver",
            ),
            Kind::Firefox => (
                "IOBP_FIREFOX",
                "/usr/bin/firefox-esr",
                "IOBP_GECKODRIVER",
                "geckodriver",
                "apt-get install firefox-esr; cargo install geckodriver",
            ),
        };
        let binary = std::env::var(browser_var).unwrap_or_else(|_| browser_default.into());
        assert!(
            Path::new(&binary).is_file(),
            "{} is not installed at {binary}: the browser tests need it ({package}), or set \
             {browser_var}. They are never skipped.",
            kind.name()
        );
        let driver_bin = std::env::var_os(driver_var)
            .map(PathBuf::from)
            .or_else(|| find_in_path(driver_name))
            .or_else(|| {
                // `cargo install` puts geckodriver here, which need not be on PATH.
                let home = std::env::var_os("CARGO_HOME")
                    .map(PathBuf::from)
                    .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))?;
                Some(home.join("bin").join(driver_name)).filter(|p| p.is_file())
            })
            .unwrap_or_else(|| {
                panic!(
                    "{driver_name} is not on PATH: the browser tests need it ({package}), or \
                     set {driver_var}. They are never skipped."
                )
            });
        let port = ports::tcp();
        let mut driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", driver_bin.display()));
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = driver.try_wait() {
                panic!("{driver_name} exited at start: {status}");
            }
            if Instant::now() > deadline {
                let _ = driver.kill();
                panic!("{driver_name} did not listen on port {port} within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::Builder::new()
            .prefix(&format!("iobp-{}-", kind.name()))
            .tempdir()
            .expect("profile");
        let caps = match kind {
            Kind::Chromium => json!({
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": binary,
                    "args": [
                        "--headless=new", "--no-sandbox", "--disable-gpu",
                        "--disable-dev-shm-usage", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync", "--no-first-run",
                        format!("--user-data-dir={}", profile.path().display()),
                        "--window-size=1280,900",
                    ],
                },
            }),
            Kind::Firefox => json!({
                "browserName": "firefox",
                "moz:firefoxOptions": {
                    "binary": binary,
                    "args": [
                        "-headless", "-profile", profile.path().display().to_string(),
                        "--width=1280", "--height=900",
                    ],
                    // No update checks, telemetry or first-run pages: the test has no internet.
                    "prefs": {
                        "app.update.enabled": false,
                        "browser.shell.checkDefaultBrowser": false,
                        "datareporting.policy.dataSubmissionEnabled": false,
                        "toolkit.telemetry.enabled": false,
                        "browser.startup.homepage_override.mstone": "ignore",
                        "network.captive-portal-service.enabled": false,
                    },
                },
            }),
        };
        let Value::Object(caps) = caps else { unreachable!("an object") };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = tokio::time::timeout(
            Duration::from_secs(60),
            ClientBuilder::new(connector)
                .capabilities(caps)
                .connect(&format!("http://127.0.0.1:{port}")),
        )
        .await;
        let client = match client {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                let _ = driver.kill();
                kill_processes_with(&profile.path().display().to_string());
                panic!("cannot start a {} session through {driver_name}: {e}", kind.name());
            }
            Err(_) => {
                let _ = driver.kill();
                kill_processes_with(&profile.path().display().to_string());
                panic!("starting {} took more than 60 s", kind.name());
            }
        };
        Browser { kind, client, driver, profile, scenario, frame: std::sync::OnceLock::new() }
    }

    /// Ends the session (the browser exits), then the driver.
    pub async fn close(self) {
        let _ = tokio::time::timeout(Duration::from_secs(15), self.client.clone().close()).await;
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap_or_else(|e| panic!("goto {url}: {e}"));
    }

    /// Runs a script (a function body; a returned promise is awaited).
    pub async fn js(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Polls `script` until it returns something other than null, false or undefined; returns
    /// that. On timeout: a screenshot of the page and its text in the panic message.
    pub async fn wait_js_for(&self, what: &str, limit: Duration, script: &str) -> Value {
        let deadline = Instant::now() + limit;
        let mut last_err = String::new();
        loop {
            match self.client.execute(script, vec![]).await {
                Ok(v) if !(v.is_null() || v == Value::Bool(false)) => return v,
                Ok(_) => {}
                Err(e) => last_err = e.to_string(),
            }
            if Instant::now() > deadline {
                self.fail(&format!("timed out after {limit:?} waiting for {what} {last_err}"))
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn wait_js(&self, what: &str, script: &str) -> Value {
        self.wait_js_for(what, WAIT, script).await
    }

    /// Fails the test with a screenshot and the page's URL and text.
    pub async fn fail(&self, why: &str) -> ! {
        let shot = self.client.screenshot().await.ok();
        let name = match self.kind {
            Kind::Chromium => format!("FAILED-{}", self.scenario),
            Kind::Firefox => format!("FAILED-firefox-{}", self.scenario),
        };
        if let Some(png) = shot {
            save_png(&name, &png, false);
        }
        let url = self.client.current_url().await.map(|u| u.to_string()).unwrap_or_default();
        let text = self
            .client
            .execute("return document.body ? document.body.innerText.slice(0, 3000) : ''", vec![])
            .await
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let errors = self
            .client
            .execute("return window.IOBP ? [window.IOBP.errors, window.IOBP.notices] : []", vec![])
            .await
            .unwrap_or_default();
        panic!(
            "{why}\n  page: {url}\n  script errors, notices: {errors}\n  screenshot: test-output/screenshots/{name}.png\n  text:\n{text}"
        );
    }

    /// Waits until `css` matches a displayed element, then clicks it (retrying while
    /// something covers it or the page replaces it).
    pub async fn click(&self, css: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let err = match self.client.find(Locator::Css(css)).await {
                Ok(el) => match el.is_displayed().await {
                    Ok(true) => match el.click().await {
                        Ok(()) => return,
                        Err(e) => e.to_string(),
                    },
                    Ok(false) => "not displayed".to_string(),
                    Err(e) => e.to_string(),
                },
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                self.fail(&format!("cannot click {css}: {err}")).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clears an input and types `text` into it.
    pub async fn fill(&self, css: &str, text: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let r = async {
                let el = self.client.find(Locator::Css(css)).await?;
                el.clear().await?;
                el.send_keys(text).await
            }
            .await;
            match r {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => {
                    self.fail(&format!("cannot type into {css}: {e}")).await;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Chooses the option with `value` in a select.
    pub async fn select(&self, css: &str, value: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let r =
                async { self.client.find(Locator::Css(css)).await?.select_by_value(value).await }
                    .await;
            match r {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => {
                    self.fail(&format!("cannot select {value} in {css}: {e}")).await;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Waits for the URL path to be `path` (query and fragment ignored).
    pub async fn wait_path(&self, path: &str) {
        let script = format!("return location.pathname === {} ? true : null", json!(path));
        self.wait_js(&format!("the page {path}"), &script).await;
    }

    /// A screenshot of the window, to `test-output/screenshots/<name>.png` (and to
    /// `docs/screenshots/` when `publish`).
    pub async fn screenshot(&self, name: &str, publish: bool) {
        // Let running animations (a new feed entry) end and fonts settle.
        self.wait_js("the page to settle", "return new Promise((r) => requestAnimationFrame(() => setTimeout(() => r(true), 250)))").await;
        let png = self.client.screenshot().await.expect("screenshot");
        match self.kind {
            Kind::Chromium => save_png(name, &png, publish),
            // The README shows Chromium's; Firefox's are CI artifacts only.
            Kind::Firefox => save_png(&format!("firefox-{name}"), &png, false),
        }
    }

    /// Resizes the window so that the page gets `width` x `height` CSS pixels.
    pub async fn viewport(&self, width: u32, height: u32) {
        // The window's frame, measured once at the start size (a narrow window may not shrink
        // below the browser's minimum outer width, which would distort later measurements).
        let (dw, dh) = if let Some(f) = self.frame.get() {
            *f
        } else {
            let v = self
                .js("return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight]")
                .await;
            let f = (
                u32::try_from(v[0].as_u64().unwrap_or(0)).unwrap_or(0),
                u32::try_from(v[1].as_u64().unwrap_or(0)).unwrap_or(0),
            );
            *self.frame.get_or_init(|| f)
        };
        self.client.set_window_size(width + dw, height + dh).await.expect("window size");
        let script = format!(
            "return window.innerWidth === {width} && window.innerHeight === {height} ? true : null"
        );
        let actual = self.js("return [window.innerWidth, window.innerHeight, window.outerWidth, window.outerHeight]").await;
        self.wait_js(&format!("a {width}x{height} page (now inner, outer: {actual})"), &script)
            .await;
    }

    /// A phone-sized page: 390 x 844 CSS pixels. Firefox cannot make a window narrower than
    /// 500 pixels, so it gets 500 x 844 — still below the portals' 760-pixel phone layout.
    pub async fn phone(&self) {
        match self.kind {
            Kind::Chromium => self.viewport(390, 844).await,
            Kind::Firefox => self.viewport(500, 844).await,
        }
    }

    /// Logs in on the login page the browser is on (it redirects on to `next`).
    pub async fn login(&self, user: &str, password: &str) {
        self.wait_path("/login").await;
        self.fill("#username", user).await;
        self.fill("#password", password).await;
        self.click("#login-submit").await;
        self.wait_js(
            "leaving the login page",
            "return location.pathname !== '/login' ? true : null",
        )
        .await;
    }

    /// Text of the first element matching `css` (empty when there is none).
    pub async fn text(&self, css: &str) -> String {
        let script = format!(
            "const e = document.querySelector({}); return e ? e.textContent : ''",
            json!(css)
        );
        self.js(&script).await.as_str().unwrap_or_default().to_string()
    }

    /// Waits until the element matching `css` has a text containing `needle`.
    pub async fn wait_text(&self, css: &str, needle: &str) -> String {
        let script = format!(
            "const e = document.querySelector({}); return e && e.textContent.includes({}) ? e.textContent : null",
            json!(css),
            json!(needle)
        );
        self.wait_js(&format!("{needle:?} in {css}"), &script)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Waits until the status badge `indicator` (source, destination, buffer, channel) inside
    /// `scope` shows `color`; returns its text label.
    pub async fn wait_indicator(
        &self,
        scope: &str,
        indicator: &str,
        color: &str,
        limit: Duration,
    ) -> String {
        let script = format!(
            "const b = document.querySelector({}); return b && b.dataset.color === {} ? b.textContent : null",
            json!(format!("{scope} [data-indicator=\"{indicator}\"]")),
            json!(color)
        );
        self.wait_js_for(&format!("{indicator} to be {color} in {scope}"), limit, &script)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The texts of the Live View entries shown.
    pub async fn feed_texts(&self) -> Vec<String> {
        let v = self.js("return Array.from(document.querySelectorAll('#feed li pre.text')).map((e) => e.textContent)").await;
        serde_json::from_value(v).unwrap_or_default()
    }

    /// Waits until the Live View shows an entry with text `needle`; returns its hex line.
    pub async fn wait_feed(&self, needle: &str) -> String {
        let script = format!(
            "for (const li of document.querySelectorAll('#feed li')) {{ const t = li.querySelector('pre.text'); \
             if (t && t.textContent === {}) return li.querySelector('pre.hex').textContent; }} return null",
            json!(needle)
        );
        self.wait_js(&format!("{needle:?} in the Live View"), &script)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// A counter tile or count of the pair page or overview card (`received`, `sent`, ...).
    pub async fn wait_count(&self, scope: &str, key: &str, value: u64) {
        let script = format!(
            "const e = document.querySelector({}); return e && e.textContent.replace(/[^0-9]/g, '') === {} ? true : null",
            json!(format!("{scope} [data-count=\"{key}\"] .n")),
            json!(value.to_string())
        );
        self.wait_js(&format!("{key} = {value} in {scope}"), &script).await;
    }

    /// Calls the API from the page, as a script of the page would (with its CSRF token):
    /// the response's status code.
    pub async fn fetch_status(&self, method: &str, path: &str, body: Option<&Value>) -> u64 {
        let script = format!(
            "return (async () => {{
                const s = await (await fetch('/api/v1/session')).json();
                const r = await fetch({}, {{ method: {}, headers: {{ 'X-CSRF-Token': s.csrf_token, 'Content-Type': 'application/json' }}, body: {} }});
                return r.status;
            }})()",
            json!(path),
            json!(method),
            body.map_or("undefined".to_string(), |b| format!("JSON.stringify({b})"))
        );
        self.js(&script).await.as_u64().unwrap_or(0)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        kill_processes_with(&self.profile.path().display().to_string());
    }
}

pub fn save_png(name: &str, png: &[u8], publish: bool) {
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let dir = repo().join("test-output/screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot directory");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
    // The README's copies change only when asked for, so a test run leaves the tree clean.
    if publish && std::env::var_os("IOBP_UPDATE_SCREENSHOTS").is_some() {
        let docs = repo().join("docs/screenshots");
        std::fs::create_dir_all(&docs).expect("docs/screenshots");
        std::fs::write(docs.join(format!("{name}.png")), png).expect("write screenshot");
    }
}

/// One scenario at a time, across test threads and processes (nextest): a file lock.
pub fn take_turn() -> std::fs::File {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("iobp-browser-tests.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .expect("lock file");
    f.lock().expect("take the browser-test lock");
    f
}

/// Runs a scenario with the overall time limit.
pub async fn scenario(name: &str, f: impl Future<Output = ()>) {
    let finished = tokio::time::timeout(SCENARIO_LIMIT, f).await;
    assert!(finished.is_ok(), "scenario {name} did not finish within {SCENARIO_LIMIT:?}");
}

/// Polls `f` (a check through the API or at a receiver) until it holds, for at most [`WAIT`].
pub async fn wait_until(what: &str, f: impl FnMut() -> bool) {
    wait::until_async(WAIT.as_secs(), what, f).await;
}

pub fn lines(prefix: &str, n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("{prefix} {i}")).collect()
}

// ================================================================ the pair form

/// `[data-path="…"]`: the form field of a JSON path.
pub fn dp(path: &str) -> String {
    format!("[data-path=\"{path}\"]")
}

/// The field error shown at the field of `path`.
pub fn field_error(path: &str) -> String {
    format!(".field.invalid:has({}) .field-error", dp(path))
}

/// The values the baud rate select offers: the server's common rates, then "other".
pub fn common_bauds_and_other(inst: &Instance) -> Value {
    let r = inst.api("GET", "/api/v1/serial-ports", None);
    assert_eq!(r.status, 200, "{}", r.body);
    let mut v: Vec<String> = r.json()["common_baud_rates"]
        .as_array()
        .expect("common_baud_rates")
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(!v.is_empty(), "the server offers baud rates");
    v.push("other".into());
    json!(v)
}

impl Browser {
    /// The JSON paths of the form fields shown (not hidden) that start with `prefix`, in
    /// page order.
    pub async fn shown_paths(&self, prefix: &str) -> Vec<String> {
        let script = format!(
            "return Array.from(document.querySelectorAll('#pair-form [data-path]')).filter((e) => e.dataset.path.startsWith({}) && !e.closest('[hidden]')).map((e) => e.dataset.path)",
            json!(prefix)
        );
        serde_json::from_value(self.js(&script).await).expect("paths")
    }

    /// The value of the form field of `path` (a checkbox: its checked state).
    pub async fn field_value(&self, path: &str) -> Value {
        let script = format!(
            "const e = document.querySelector({}); return e ? (e.type === 'checkbox' ? e.checked : e.value) : null",
            json!(format!("#pair-form {}", dp(path)))
        );
        self.js(&script).await
    }

    /// Whether the element matching `css` is shown (exists, not under `[hidden]`).
    pub async fn shown(&self, css: &str) -> bool {
        let script = format!(
            "const e = document.querySelector({}); return !!e && !e.closest('[hidden]')",
            json!(css)
        );
        self.js(&script).await == Value::Bool(true)
    }

    /// The prefix of the backup block at `position` (1-based), e.g. `failover.b2`.
    pub async fn backup_prefix(&self, position: usize) -> String {
        let script = format!(
            "const b = document.querySelector('#backups > .backup:nth-child({position})'); return b ? b.dataset.prefix : null"
        );
        self.wait_js(&format!("backup {position}"), &script)
            .await
            .as_str()
            .expect("prefix")
            .to_string()
    }

    /// Opens the pair's edit form from the Channels page.
    pub async fn open_edit(&self, id: &str, name: &str) {
        self.click(&format!("tr[data-pair-id=\"{id}\"] button[data-action=\"edit\"]")).await;
        self.wait_text("#form-title", &format!("Edit {name}")).await;
        self.wait_js("the edit form", "return document.querySelector('#pair-form') ? true : null")
            .await;
    }

    /// Submits the pair form and waits until it closed (the server accepted it).
    pub async fn submit_pair_form(&self) {
        self.click("#pair-submit").await;
        self.wait_js(
            "the form to be accepted and close",
            "return document.querySelector('#form-panel').hidden ? true : null",
        )
        .await;
    }

    /// A screenshot of the whole pair form, in a window tall enough for it.
    pub async fn form_screenshot(&self, name: &str) {
        let height = self
            .js("return Math.ceil(document.querySelector('#form-panel').getBoundingClientRect().height) + 140")
            .await
            .as_u64()
            .unwrap_or(1400);
        let height = u32::try_from(height).unwrap_or(1400).clamp(900, 4000);
        self.viewport(1280, height).await;
        self.js("document.querySelector('#form-panel').scrollIntoView({ block: 'start' }); window.scrollBy(0, -70)").await;
        self.screenshot(name, false).await;
        self.viewport(1280, 900).await;
    }
}
