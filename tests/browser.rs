//! Both portals in a real headless Chromium, driven through `chromedriver` (the W3C
//! `WebDriver` protocol), against the real binary: first login and password change, the
//! Create Channel Pair form with browser and server validation, the Live View (Source and
//! Destination views), stop and start, status colours following a receiver going down and
//! coming back, the message browser and re-send, rejections, edit, delete with confirmation,
//! a Viewer's read-only view and the API refusing it, and every Management Dashboard page.
//! Screenshots of the main pages go to `test-output/screenshots/` (a few also to
//! `docs/screenshots/`, for the README, when `IOBP_UPDATE_SCREENSHOTS` is set); one test
//! reports the first paint of the Operations Portal and the instance's memory with both
//! portals open.
//!
//! Chromium (`/usr/bin/chromium`, or `IOBP_CHROMIUM`) and chromedriver (on `PATH`, or
//! `IOBP_CHROMEDRIVER`) must be installed: the tests fail, never skip, without them. Every
//! wait polls for a condition with a deadline; each scenario has an overall time limit; the
//! browser and the instance are stopped however a test ends. The scenarios take turns (a
//! file lock), so that two browsers never compete for the CPU of a small CI machine.

#![allow(clippy::too_many_lines)] // each scenario reads best as one story, step by step

mod util;

use std::future::Future;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use util::{ClosingReceiver, Instance, TEST_ADMIN_PASSWORD, connect, free_port};

/// How long one scenario may take in all.
const SCENARIO_LIMIT: Duration = Duration::from_secs(240);
/// Default deadline of one wait.
const WAIT: Duration = Duration::from_secs(30);

// ================================================================ the browser

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// Kills the processes whose command line contains `marker` (the browser processes of one
/// test, recognised by their private profile directory).
fn kill_processes_with(marker: &str) {
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

/// chromedriver and a headless Chromium with a fresh profile.
struct Browser {
    client: Client,
    driver: Child,
    profile: tempfile::TempDir,
    /// Name of the scenario, for failure screenshots.
    scenario: &'static str,
    /// Width and height of the window around the page.
    frame: std::sync::OnceLock<(u32, u32)>,
}

impl Browser {
    async fn start(scenario: &'static str) -> Browser {
        // A failure screenshot of an earlier run would mislead.
        let _ = std::fs::remove_file(
            repo().join(format!("test-output/screenshots/FAILED-{scenario}.png")),
        );
        let chromium =
            std::env::var("IOBP_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        assert!(
            Path::new(&chromium).is_file(),
            "Chromium is not installed at {chromium}: the browser tests need it (Debian: apt-get \
             install chromium chromium-driver), or set IOBP_CHROMIUM. They are never skipped."
        );
        let driver_bin = std::env::var_os("IOBP_CHROMEDRIVER")
            .map(PathBuf::from)
            .or_else(|| find_in_path("chromedriver"))
            .unwrap_or_else(|| {
                panic!(
                    "chromedriver is not on PATH: the browser tests need it (Debian: apt-get \
                     install chromium-driver), or set IOBP_CHROMEDRIVER. They are never skipped."
                )
            });
        let port = free_port();
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
                panic!("chromedriver exited at start: {status}");
            }
            if Instant::now() > deadline {
                let _ = driver.kill();
                panic!("chromedriver did not listen on port {port} within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::Builder::new().prefix("iobp-chromium-").tempdir().expect("profile");
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run",
                    format!("--user-data-dir={}", profile.path().display()),
                    "--window-size=1280,900",
                ],
            },
        });
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
                panic!("cannot start a Chromium session through chromedriver: {e}");
            }
            Err(_) => {
                let _ = driver.kill();
                kill_processes_with(&profile.path().display().to_string());
                panic!("starting Chromium took more than 60 s");
            }
        };
        Browser { client, driver, profile, scenario, frame: std::sync::OnceLock::new() }
    }

    /// Ends the session (Chromium exits), then chromedriver.
    async fn close(self) {
        let _ = tokio::time::timeout(Duration::from_secs(15), self.client.clone().close()).await;
    }

    async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap_or_else(|e| panic!("goto {url}: {e}"));
    }

    /// Runs a script (a function body; a returned promise is awaited).
    async fn js(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Polls `script` until it returns something other than null, false or undefined; returns
    /// that. On timeout: a screenshot of the page and its text in the panic message.
    async fn wait_js_for(&self, what: &str, limit: Duration, script: &str) -> Value {
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

    async fn wait_js(&self, what: &str, script: &str) -> Value {
        self.wait_js_for(what, WAIT, script).await
    }

    /// Fails the test with a screenshot and the page's URL and text.
    async fn fail(&self, why: &str) -> ! {
        let shot = self.client.screenshot().await.ok();
        let name = format!("FAILED-{}", self.scenario);
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
    async fn click(&self, css: &str) {
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
    async fn fill(&self, css: &str, text: &str) {
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
    async fn select(&self, css: &str, value: &str) {
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
    async fn wait_path(&self, path: &str) {
        let script = format!("return location.pathname === {} ? true : null", json!(path));
        self.wait_js(&format!("the page {path}"), &script).await;
    }

    /// A screenshot of the window, to `test-output/screenshots/<name>.png` (and to
    /// `docs/screenshots/` when `publish`).
    async fn screenshot(&self, name: &str, publish: bool) {
        // Let running animations (a new feed entry) end and fonts settle.
        self.wait_js("the page to settle", "return new Promise((r) => requestAnimationFrame(() => setTimeout(() => r(true), 250)))").await;
        let png = self.client.screenshot().await.expect("screenshot");
        save_png(name, &png, publish);
    }

    /// Resizes the window so that the page gets `width` x `height` CSS pixels.
    async fn viewport(&self, width: u32, height: u32) {
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
        self.wait_js(&format!("a {width}x{height} page"), &script).await;
    }

    /// Logs in on the login page the browser is on (it redirects on to `next`).
    async fn login(&self, user: &str, password: &str) {
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
    async fn text(&self, css: &str) -> String {
        let script = format!(
            "const e = document.querySelector({}); return e ? e.textContent : ''",
            json!(css)
        );
        self.js(&script).await.as_str().unwrap_or_default().to_string()
    }

    /// Waits until the element matching `css` has a text containing `needle`.
    async fn wait_text(&self, css: &str, needle: &str) -> String {
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
    async fn wait_indicator(
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
    async fn feed_texts(&self) -> Vec<String> {
        let v = self.js("return Array.from(document.querySelectorAll('#feed li pre.text')).map((e) => e.textContent)").await;
        serde_json::from_value(v).unwrap_or_default()
    }

    /// Waits until the Live View shows an entry with text `needle`; returns its hex line.
    async fn wait_feed(&self, needle: &str) -> String {
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
    async fn wait_count(&self, scope: &str, key: &str, value: u64) {
        let script = format!(
            "const e = document.querySelector({}); return e && e.textContent.replace(/[^0-9]/g, '') === {} ? true : null",
            json!(format!("{scope} [data-count=\"{key}\"] .n")),
            json!(value.to_string())
        );
        self.wait_js(&format!("{key} = {value} in {scope}"), &script).await;
    }

    /// Calls the API from the page, as a script of the page would (with its CSRF token):
    /// the response's status code.
    async fn fetch_status(&self, method: &str, path: &str, body: Option<&Value>) -> u64 {
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

fn save_png(name: &str, png: &[u8], publish: bool) {
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
fn take_turn() -> std::fs::File {
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
async fn scenario(name: &str, f: impl Future<Output = ()>) {
    let finished = tokio::time::timeout(SCENARIO_LIMIT, f).await;
    assert!(finished.is_ok(), "scenario {name} did not finish within {SCENARIO_LIMIT:?}");
}

/// Polls `f` (a check through the API) until it holds, for at most [`WAIT`].
async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends `lines` to a line-framed TCP source.
fn send_lines(port: u16, lines: &[String]) {
    let mut s = connect(port);
    for l in lines {
        s.write_all(format!("{l}\n").as_bytes()).expect("send");
    }
    s.flush().expect("flush");
}

fn lines(prefix: &str, n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("{prefix} {i}")).collect()
}

// ================================================================ the Operations Portal

/// First login with the first-start password, then the whole life of a channel pair through
/// the Operations Portal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_portal_first_login_and_a_channel_pair_from_creation_to_deletion() {
    let _turn = take_turn();
    scenario("operations portal", async {
        let dir = tempfile::tempdir().expect("tmp");
        let mut inst = Instance::start_fresh(dir.path(), &[], "info");
        let first_password = inst.initial_password().expect("first-start password file");
        let ops = format!("http://{}", inst.ops);
        let b = Browser::start("operations-portal").await;

        // ---- First login: the generated password, then the password page.
        b.goto(&format!("{ops}/")).await;
        b.wait_path("/login").await;
        b.wait_text("h1", "Operations Portal").await;
        b.screenshot("login", false).await;
        b.fill("#username", "admin").await;
        b.fill("#password", "not the password").await;
        b.click("#login-submit").await;
        b.wait_text("#login-form .form-error", "Wrong user name or password").await;
        b.login("admin", &first_password).await;
        b.wait_path("/password").await;
        b.wait_text("#pw-lead", "first login").await;
        b.screenshot("password", false).await;
        b.fill("#current", &first_password).await;
        b.fill("#new", "short").await;
        b.fill("#again", "short").await;
        b.click("#password-submit").await;
        b.wait_text("#password-form .field-error", "at least 10 characters").await;
        b.fill("#new", TEST_ADMIN_PASSWORD).await;
        b.fill("#again", TEST_ADMIN_PASSWORD).await;
        b.click("#password-submit").await;
        b.wait_path("/").await;
        b.wait_js("the empty overview", "return document.querySelector('#no-pairs') ? true : null").await;
        assert_eq!(b.text("#username").await, "admin");
        assert_eq!(b.text("#role").await, "admin");
        assert!(inst.initial_password().is_none(), "the first-start password file is gone");
        inst.login_api();

        // ---- Create Channel Pair, with the browser's and the server's validation.
        let (src, dst) = (free_port(), free_port());
        let mut receiver = ClosingReceiver::start(dst);
        b.click("a[data-nav=\"channels\"]").await;
        b.wait_path("/channels").await;
        b.click("#create-pair").await;
        b.wait_js("the pair form", "return document.querySelector('#pair-form') ? true : null").await;
        b.fill("#pair-name-input", "Lab analyzer").await;
        assert_eq!(
            b.js("return document.querySelector('#pair-id-input').value").await,
            "lab-analyzer",
            "the id follows the name until edited"
        );
        b.fill("#pair-id-input", "lab-1").await;
        assert_eq!(b.js("return document.querySelector('#source-type').value").await, "tcp_server");
        // Only the chosen type's fields are shown.
        let shown = b.js("return Array.from(document.querySelectorAll('[data-side=\"source\"] [data-path]')).filter((e) => !e.closest('[hidden]')).map((e) => e.dataset.path)").await;
        let shown: Vec<String> = serde_json::from_value(shown).expect("paths");
        for p in ["source.host", "source.port", "source.max_connections", "source.framing.type", "source.ack.type", "source.tls.enabled"] {
            assert!(shown.iter().any(|s| s == p), "{p} in {shown:?}");
        }
        assert!(!shown.iter().any(|s| s == "source.baud_rate" || s == "source.url"), "{shown:?}");
        b.select("#source-type", "serial").await;
        b.wait_js("the serial fields", "return document.querySelector('[data-path=\"source.baud_rate\"]') ? true : null").await;
        assert!(b.js("return !document.querySelector('[data-path=\"source.host\"]')").await == true);
        b.select("#source-type", "tcp_server").await;
        b.fill("[data-path=\"source.host\"]", "127.0.0.1").await;
        b.fill("[data-path=\"source.port\"]", "70000").await;
        b.select("[data-path=\"source.framing.type\"]", "line").await;
        b.wait_js("the line framing fields", "return document.querySelector('[data-path=\"source.framing.delimiter\"]') ? true : null").await;
        b.fill("[data-path=\"source.framing.max_message_bytes\"]", "64").await;
        b.fill("[data-path=\"destination.host\"]", "127.0.0.1").await;
        b.select("[data-path=\"destination.framing.type\"]", "line").await;
        b.click("details.advanced summary").await;
        b.fill("[data-path=\"retry.initial_ms\"]", "100").await;
        b.fill("[data-path=\"retry.max_ms\"]", "400").await;
        // Browser-side: the port range and a missing port, before anything is sent.
        b.click("#pair-submit").await;
        b.wait_text(".field.invalid:has([data-path=\"source.port\"]) .field-error", "between 1 and 65535").await;
        b.wait_text(".field.invalid:has([data-path=\"destination.port\"]) .field-error", "required").await;
        // Server-side: the source port is the Operations Portal's; the problem names the field.
        b.fill("[data-path=\"source.port\"]", &inst.ops.port().to_string()).await;
        b.fill("[data-path=\"destination.port\"]", &dst.to_string()).await;
        b.click("#pair-submit").await;
        b.wait_text(".field.invalid:has([data-path=\"source.port\"]) .field-error", "already used").await;
        assert_eq!(inst.api("GET", "/api/v1/pairs", None).json(), json!([]), "nothing was created");
        b.fill("[data-path=\"source.port\"]", &src.to_string()).await;
        b.viewport(1280, 1400).await;
        b.js("window.scrollTo(0, 0)").await;
        assert_eq!(
            b.js("return document.querySelector('#pair-form .form-error').hidden").await,
            true,
            "the summary goes once the marked fields were corrected"
        );
        b.screenshot("channels-create-form", true).await;
        b.viewport(1280, 900).await;
        b.click("#pair-submit").await;
        b.wait_js("the new pair in the list", "return document.querySelector('#pairs-table tr[data-pair-id=\"lab-1\"]') ? true : null").await;
        assert!(b.js("return document.querySelector('#form-panel').hidden").await == true);
        let spec = inst.api("GET", "/api/v1/pairs/lab-1", None).json()["spec"].clone();
        assert_eq!(spec["name"], "Lab analyzer");
        assert_eq!(spec["source"]["type"], "tcp_server");
        assert_eq!(spec["source"]["port"], src);
        assert_eq!(spec["source"]["framing"]["type"], "line");
        assert_eq!(spec["destination"]["port"], dst);
        assert_eq!(spec["source"]["framing"]["max_message_bytes"], 64);
        assert_eq!(spec["retry"]["initial_ms"], 100);
        b.wait_indicator("tr[data-pair-id=\"lab-1\"]", "destination", "green", WAIT).await;
        b.screenshot("channels", false).await;

        // ---- The pair page: status, Live View from both sides, counters.
        b.click("tr[data-pair-id=\"lab-1\"] a[href=\"/pairs/lab-1\"]").await;
        b.wait_path("/pairs/lab-1").await;
        b.wait_text("#pair-name", "Lab analyzer").await;
        assert_eq!(b.wait_indicator("#indicators", "source", "green", WAIT).await, "Connected");
        assert_eq!(b.wait_indicator("#indicators", "destination", "green", WAIT).await, "Connected");
        assert_eq!(b.wait_indicator("#indicators", "channel", "green", WAIT).await, "Running");
        b.wait_text("#feed", "No message received yet").await;
        b.wait_js("the live stream", "return (window.IOBP.eventCounts.pairs || 0) >= 1 ? true : null").await;
        let first = lines("hello", 5);
        send_lines(src, &first);
        let hex = b.wait_feed("hello 5").await;
        assert_eq!(hex, "68 65 6c 6c 6f 20 35", "hex of the message");
        assert_eq!(b.feed_texts().await[..5], ["hello 5", "hello 4", "hello 3", "hello 2", "hello 1"], "newest first");
        b.wait_count("#tiles", "received", 5).await;
        b.wait_count("#tiles", "sent", 5).await;
        b.wait_count("#tiles", "pending", 0).await;
        b.click("#view-destination").await;
        b.wait_feed("hello 5").await;
        b.wait_text("#feed-explain", "delivered").await;
        send_lines(src, &lines("more", 2));
        b.wait_feed("more 2").await;
        assert_eq!(b.feed_texts().await[0], "more 2", "the destination view follows deliveries live");
        b.click("#view-source").await;
        b.wait_feed("more 2").await;
        b.wait_js("chart samples", "return (window.IOBP.eventCounts.pairs || 0) >= 4 ? true : null").await;
        b.viewport(1280, 1500).await;
        b.js("window.scrollTo(0, 0)").await;
        b.screenshot("pair-live-view", true).await;
        b.viewport(1280, 900).await;
        wait_until("seven lines at the receiver", || receiver.lines().len() >= 7).await;
        assert_eq!(receiver.lines()[..5], first[..], "delivered in order");

        // ---- Stop and start (pause and play) from the page.
        assert_eq!(b.text("#pair-toggle").await, "■ Stop");
        b.click("#pair-toggle").await;
        assert_eq!(b.wait_indicator("#indicators", "channel", "white", WAIT).await, "Stopped");
        b.wait_indicator("#indicators", "source", "white", WAIT).await;
        b.wait_text("#pair-toggle", "Start").await;
        assert_eq!(inst.api("GET", "/api/v1/pairs/lab-1", None).json()["enabled"], false);
        b.click("#pair-toggle").await;
        assert_eq!(b.wait_indicator("#indicators", "channel", "green", WAIT).await, "Running");
        b.wait_indicator("#indicators", "destination", "green", WAIT).await;
        b.wait_text("#pair-toggle", "Stop").await;

        // ---- The receiving application goes down: red, messages wait; it returns: green.
        receiver.stop();
        let label = b.wait_indicator("#indicators", "destination", "red", WAIT).await;
        assert_eq!(label, "Disconnected");
        b.wait_js("the last error", "return document.querySelector('#pair-last-error').textContent.includes('destination') ? true : null").await;
        send_lines(src, &lines("while down", 3));
        b.wait_feed("while down 3").await;
        b.wait_js("pending messages", "const e = document.querySelector('#tiles [data-count=\"pending\"] .n'); return e && Number(e.textContent.replace(/[^0-9]/g, '')) + Number(document.querySelector('#tiles [data-count=\"in_flight\"] .n').textContent.replace(/[^0-9]/g, '')) === 3 ? true : null").await;
        b.screenshot("pair-destination-down", false).await;
        let receiver = ClosingReceiver::start(dst);
        assert_eq!(b.wait_indicator("#indicators", "destination", "green", WAIT).await, "Connected");
        b.wait_count("#tiles", "pending", 0).await;
        wait_until("the messages kept while the receiver was down", || {
            receiver.lines().iter().any(|l| l == "while down 3")
        })
        .await;

        // ---- Message browser: filter, inspect, re-send a Done message.
        b.click("#tab-messages").await;
        b.select("#msg-state", "done").await;
        b.click("#msg-search").await;
        let seq = b
            .wait_js(
                "hello 3 in the message browser",
                "for (const tr of document.querySelectorAll('#msg-list tbody tr')) { if (tr.querySelector('td.preview').textContent === 'hello 3' && tr.dataset.state === 'done') return tr.dataset.seq; } return null",
            )
            .await;
        let seq = seq.as_str().expect("seq").to_string();
        b.fill("#msg-from", "3").await;
        b.click("#msg-search").await;
        b.wait_js("the list from seq 3", "const r = document.querySelectorAll('#msg-list tbody tr'); return r.length && Array.from(r).every((tr) => Number(tr.dataset.seq) >= 3) ? true : null").await;
        b.click("#msg-newest").await;
        b.click(&format!("#msg-list tr[data-seq=\"{seq}\"]")).await;
        b.wait_js("the message dialog", "return document.querySelector('#message-dialog[open]') ? true : null").await;
        assert_eq!(b.text("#message-text").await, "hello 3");
        assert_eq!(b.text("#message-hex").await, "68 65 6c 6c 6f 20 33");
        b.wait_text("#message-detail .tag", "Done").await;
        b.screenshot("message-browser", false).await;
        b.click("#message-dialog .dlg-foot .btn.primary").await;
        b.wait_js("the dialog to close", "return document.querySelector('#message-dialog') ? null : true").await;
        // The original went to the first receiver; this one gets only the copy.
        wait_until("the re-sent copy", || receiver.lines().iter().any(|l| l == "hello 3")).await;
        // Search again until the copy is listed as delivered too.
        b.wait_js(
            "the delivered copy in the browser",
            "if (Array.from(document.querySelectorAll('#msg-list tr[data-state=\"done\"] td.preview')).filter((t) => t.textContent === 'hello 3').length >= 2) return true; \
             document.querySelector('#msg-search').click(); return null",
        )
        .await;

        // ---- A frame longer than the source's framing allows: rejected, listed, never silent.
        send_lines(src, &["x".repeat(100)]);
        b.wait_count("#tiles", "rejected", 1).await;
        b.wait_text("#rej-count", "(1)").await;
        b.click("#tab-rejections").await;
        b.wait_text("#rej-list tbody tr", "source").await;
        let audit = inst.api("GET", "/api/v1/audit?limit=20", None).json();
        assert!(audit.as_array().expect("list").iter().any(|e| e["action"] == "message.resend"), "{audit}");

        // ---- The overview, live, on a desktop and on a phone.
        b.click("a[data-nav=\"overview\"]").await;
        b.wait_path("/").await;
        b.wait_indicator("[data-pair-id=\"lab-1\"]", "destination", "green", WAIT).await;
        let before = b.text("[data-pair-id=\"lab-1\"] [data-count=\"received\"] .n").await;
        send_lines(src, &lines("overview", 1));
        b.wait_js("the overview to update live", &format!(
            "const e = document.querySelector('[data-pair-id=\"lab-1\"] [data-count=\"received\"] .n'); return e && e.textContent !== {} ? true : null",
            json!(before)
        )).await;
        b.wait_text("#summary", "1 Running").await;
        b.screenshot("ops-overview", true).await;
        b.viewport(390, 844).await;
        let overflow = b.js("return document.documentElement.scrollWidth - window.innerWidth").await;
        assert!(overflow.as_i64().unwrap_or(99) <= 0, "no horizontal scrolling on a phone: {overflow}");
        b.screenshot("ops-overview-phone", true).await;
        b.goto(&format!("{ops}/pairs/lab-1")).await;
        b.wait_indicator("#indicators", "destination", "green", WAIT).await;
        let overflow = b.js("return document.documentElement.scrollWidth - window.innerWidth").await;
        assert!(overflow.as_i64().unwrap_or(99) <= 0, "the pair page fits a phone: {overflow}");
        b.screenshot("pair-phone", false).await;
        b.goto(&format!("{ops}/channels")).await;
        b.wait_indicator("tr[data-pair-id=\"lab-1\"]", "destination", "green", WAIT).await;
        let overflow = b.js("return document.documentElement.scrollWidth - window.innerWidth").await;
        assert!(overflow.as_i64().unwrap_or(99) <= 0, "the channels page fits a phone: {overflow}");
        b.viewport(1280, 900).await;

        // ---- Play and pause from the Channels page.
        b.click("tr[data-pair-id=\"lab-1\"] button[data-action=\"toggle\"]").await;
        b.wait_indicator("tr[data-pair-id=\"lab-1\"]", "channel", "white", WAIT).await;
        b.wait_text("tr[data-pair-id=\"lab-1\"] button[data-action=\"toggle\"]", "Start").await;
        b.click("tr[data-pair-id=\"lab-1\"] button[data-action=\"toggle\"]").await;
        b.wait_indicator("tr[data-pair-id=\"lab-1\"]", "channel", "green", WAIT).await;
        b.wait_text("tr[data-pair-id=\"lab-1\"] button[data-action=\"toggle\"]", "Stop").await;

        // ---- Edit: the same form, filled in, id read-only; saving restarts the pair.
        b.goto(&format!("{ops}/pairs/lab-1")).await;
        b.click("#pair-edit").await;
        b.wait_path("/channels").await;
        b.wait_text("#form-title", "Edit Lab analyzer").await;
        b.click("#pair-cancel").await;
        b.wait_js("the form to close", "return document.querySelector('#form-panel').hidden ? true : null").await;
        b.click("tr[data-pair-id=\"lab-1\"] button[data-action=\"edit\"]").await;
        b.wait_text("#form-title", "Edit Lab analyzer").await;
        assert_eq!(b.js("return document.querySelector('#pair-id-input').readOnly").await, true);
        assert_eq!(b.js("return document.querySelector('#pair-id-input').value").await, "lab-1");
        assert_eq!(b.js("return document.querySelector('[data-path=\"source.port\"]').value").await, src.to_string());
        assert_eq!(b.js("return document.querySelector('[data-path=\"source.framing.type\"]').value").await, "line");
        assert_eq!(b.js("return document.querySelector('[data-path=\"source.framing.delimiter\"]').value").await, "\\n");
        b.fill("#pair-name-input", "Lab analyzer 2").await;
        b.click("#pair-submit").await;
        b.wait_text("tr[data-pair-id=\"lab-1\"] a", "Lab analyzer 2").await;
        let spec = inst.api("GET", "/api/v1/pairs/lab-1", None).json()["spec"].clone();
        assert_eq!(spec["name"], "Lab analyzer 2");
        assert_eq!(spec["source"]["framing"], json!({"type": "line", "delimiter": "\n", "max_message_bytes": 64}));
        assert_eq!(spec["retry"]["max_ms"], 400);

        // ---- Delete, confirmed by typing the id.
        b.wait_indicator("tr[data-pair-id=\"lab-1\"]", "destination", "green", WAIT).await;
        b.click("tr[data-pair-id=\"lab-1\"] button[data-action=\"delete\"]").await;
        b.wait_js("the confirmation", "return document.querySelector('#confirm-dialog[open]') ? true : null").await;
        let disabled = "return document.querySelector('#confirm-dialog .btn.danger').disabled";
        assert_eq!(b.js(disabled).await, true);
        b.fill("#confirm-input", "lab-").await;
        assert_eq!(b.js(disabled).await, true, "a wrong id does not confirm");
        b.fill("#confirm-input", "lab-1").await;
        assert_eq!(b.js(disabled).await, false);
        b.click("#confirm-dialog .btn.danger").await;
        b.wait_js("the empty list", "return document.querySelector('#no-pairs') ? true : null").await;
        assert_eq!(inst.api("GET", "/api/v1/pairs", None).json(), json!([]));

        // ---- The other connector types: serial (free baud rate), idle-gap framing, byte
        // acknowledgements, a remote instance with credentials. The form builds their JSON.
        b.click("#create-pair").await;
        b.fill("#pair-name-input", "Serial analyzer").await;
        b.select("#source-type", "serial").await;
        b.fill("[data-path=\"source.port\"]", "/dev/ttyIOBP-none").await;
        let bauds = b.js("return Array.from(document.querySelectorAll('[data-path=\"source.baud_rate\"] option')).map((o) => o.value)").await;
        assert_eq!(bauds, json!(["9600", "19200", "38400", "57600", "115200", "other"]));
        b.select("[data-path=\"source.baud_rate\"]", "other").await;
        b.fill(".field:has([data-path=\"source.baud_rate\"]) input[type=\"number\"]", "4800").await;
        b.select("[data-path=\"source.data_bits\"]", "7").await;
        b.select("[data-path=\"source.parity\"]", "Even").await;
        b.select("[data-path=\"source.stop_bits\"]", "2").await;
        b.select("[data-path=\"source.flow_control\"]", "RTS/CTS").await;
        b.select("[data-path=\"source.framing.type\"]", "idle_gap").await;
        b.fill("[data-path=\"source.framing.gap_ms\"]", "50").await;
        b.select("[data-path=\"source.ack.type\"]", "byte").await;
        b.select("#destination-type", "remote_icombuffer").await;
        b.fill("[data-path=\"destination.url\"]", "http://127.0.0.1:9").await;
        b.fill("[data-path=\"destination.channel_id\"]", "plant-2").await;
        b.click("#pair-submit").await;
        b.wait_text(".field.invalid:has([data-path=\"destination.auth.username\"]) .field-error", "required").await;
        b.fill("[data-path=\"destination.auth.username\"]", "relay-user").await;
        b.fill("[data-path=\"destination.auth.password\"]", "relay-password-1").await;
        b.click("#pair-submit").await;
        b.wait_js("the serial pair", "return document.querySelector('#pairs-table tr[data-pair-id=\"serial-analyzer\"]') ? true : null").await;
        let spec = inst.api("GET", "/api/v1/pairs/serial-analyzer", None).json()["spec"].clone();
        let source = &spec["source"];
        assert_eq!(
            [&source["type"], &source["port"], &source["baud_rate"], &source["data_bits"], &source["parity"], &source["stop_bits"], &source["flow_control"]],
            [&json!("serial"), &json!("/dev/ttyIOBP-none"), &json!(4800), &json!(7), &json!("Even"), &json!(2), &json!("RTS/CTS")],
            "{spec}"
        );
        assert_eq!(source["framing"], json!({"type": "idle_gap", "gap_ms": 50}), "{spec}");
        assert_eq!(source["ack"], json!({"type": "byte", "ack": 6, "nak": 21}), "{spec}");
        assert_eq!(
            spec["destination"],
            json!({"type": "remote_icombuffer", "url": "http://127.0.0.1:9", "channel_id": "plant-2", "auth": {"username": "relay-user", "password": "********"}}),
            "the API never shows a stored password"
        );
        b.click("tr[data-pair-id=\"serial-analyzer\"] button[data-action=\"edit\"]").await;
        b.wait_text("#form-title", "Edit Serial analyzer").await;
        assert_eq!(b.js("return document.querySelector('[data-path=\"source.baud_rate\"]').value").await, "other");
        assert_eq!(b.js("return document.querySelector('.field:has([data-path=\"source.baud_rate\"]) input[type=\"number\"]').value").await, "4800");
        assert_eq!(b.js("return document.querySelector('[data-path=\"destination.url\"]').value").await, "http://127.0.0.1:9");
        b.click("#pair-cancel").await;
        assert_eq!(inst.api("DELETE", "/api/v1/pairs/serial-analyzer?confirm=serial-analyzer", None).status, 204);
        b.close().await;
        let _ = inst.terminate();
    })
    .await;
}

/// A Viewer created on the users page sees no controls that change anything, and the API
/// refuses them when tried anyway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_sees_no_edit_controls_and_the_api_refuses_changes() {
    let _turn = take_turn();
    scenario("viewer", async {
        let dir = tempfile::tempdir().expect("tmp");
        let inst = Instance::start(dir.path(), &[]);
        let (src, dst) = (free_port(), free_port());
        let body = format!(
            r#"{{"id": "view-1", "name": "Ward monitor", "source": {{"type": "tcp_server", "host": "127.0.0.1", "port": {src}, "framing": {{"type": "line"}}}},
                "destination": {{"type": "tcp_client", "host": "127.0.0.1", "port": {dst}, "framing": {{"type": "line"}}}}}}"#
        );
        let r = inst.api("POST", "/api/v1/pairs", Some(&body));
        assert_eq!(r.status, 201, "{}", r.body);
        let receiver = ClosingReceiver::start(dst);
        send_lines(src, &lines("reading", 3));
        inst.wait_for("view-1", 20, "delivery", |s| s["counts"]["sent"] == 3);
        let ops = format!("http://{}", inst.ops);
        let mgmt = format!("http://{}", inst.mgmt);
        let b = Browser::start("viewer").await;

        // ---- The admin creates a viewer, changes and restores a role, on the users page.
        b.goto(&format!("{mgmt}/users")).await;
        b.wait_text("h1", "Management Dashboard").await;
        b.login("admin", TEST_ADMIN_PASSWORD).await;
        b.wait_path("/users").await;
        b.wait_js("the user list", "return document.querySelector('#users-table tr[data-user=\"admin\"]') ? true : null").await;
        b.click("#create-user").await;
        b.fill("#u-name", "vera").await;
        b.select("#u-role", "viewer").await;
        b.fill("#u-pw", "viewer-password-1").await;
        b.fill("#u-pw2", "viewer-password-2").await;
        b.click("#user-submit").await;
        b.wait_text("#user-form .field-error", "differ").await;
        b.fill("#u-pw2", "viewer-password-1").await;
        b.click("#user-submit").await;
        b.wait_js("vera in the list", "return document.querySelector('#users-table tr[data-user=\"vera\"]') ? true : null").await;
        b.wait_text("#users-table tr[data-user=\"vera\"]", "must change at next login").await;
        b.select("#users-table tr[data-user=\"vera\"] select", "operator").await;
        b.wait_js("the role confirmation", "return document.querySelector('#confirm-dialog[open]') ? true : null").await;
        b.click("#confirm-dialog .btn.primary").await;
        b.wait_js("vera is operator", "const s = document.querySelector('#users-table tr[data-user=\"vera\"] select'); return s && s.value === 'operator' && !s.disabled && !document.querySelector('#confirm-dialog') ? true : null").await;
        wait_until("vera to be operator in the store", || {
            let users = inst.api("GET", "/api/v1/users", None).json();
            users.as_array().is_some_and(|a| a.iter().any(|u| u["username"] == "vera" && u["role"] == "operator"))
        })
        .await;
        b.select("#users-table tr[data-user=\"vera\"] select", "viewer").await;
        b.click("#confirm-dialog .btn.primary").await;
        b.wait_js("vera is viewer again", "const s = document.querySelector('#users-table tr[data-user=\"vera\"] select'); return s && s.value === 'viewer' && !s.disabled && !document.querySelector('#confirm-dialog') ? true : null").await;
        // A password reset through the dialog (the viewer must change it at next login).
        b.click("#users-table tr[data-user=\"vera\"] button[data-action=\"reset\"]").await;
        b.wait_js("the reset dialog", "return document.querySelector('#reset-dialog[open]') ? true : null").await;
        b.fill("#r-pw", "short-1").await;
        b.fill("#r-pw2", "short-1").await;
        b.click("#reset-dialog .btn.primary").await;
        b.wait_text(".field.invalid:has(#r-pw) .field-error", "at least 10").await;
        b.fill("#r-pw", "viewer-password-1").await;
        b.fill("#r-pw2", "viewer-password-1").await;
        b.click("#reset-dialog .btn.primary").await;
        b.wait_js("the dialog to close", "return document.querySelector('#reset-dialog') ? null : true").await;
        b.wait_text("#users-table tr[data-user=\"vera\"]", "must change at next login").await;
        b.screenshot("mgmt-users", false).await;
        b.click("#logout").await;
        b.wait_path("/login").await;

        // ---- The viewer's first login on the Operations Portal: a new password first.
        b.goto(&format!("{ops}/channels")).await;
        b.login("vera", "viewer-password-1").await;
        b.wait_path("/password").await;
        b.fill("#current", "viewer-password-1").await;
        b.fill("#new", "viewer-password-2").await;
        b.fill("#again", "viewer-password-2").await;
        b.click("#password-submit").await;
        b.wait_path("/channels").await;
        b.wait_js("the list", "return document.querySelector('#pairs-table tr[data-pair-id=\"view-1\"]') ? true : null").await;
        assert_eq!(b.text("#role").await, "viewer");
        let controls = "return Array.from(document.querySelectorAll('#create-pair, button[data-action], #pair-form, #pair-toggle, #pair-delete, #pair-edit')).filter((e) => !e.hidden && e.offsetParent !== null).length";
        assert_eq!(b.js(controls).await, 0, "no create, start/stop, edit or delete for a viewer");
        b.goto(&format!("{ops}/")).await;
        b.wait_js("the overview", "return document.querySelector('[data-pair-id=\"view-1\"]') ? true : null").await;
        assert_eq!(b.js("return document.querySelector('#create-link').hidden").await, true);
        b.goto(&format!("{ops}/pairs/view-1")).await;
        b.wait_indicator("#indicators", "destination", "green", WAIT).await;
        assert_eq!(b.js(controls).await, 0, "no controls on the pair page either");
        b.click("#tab-messages").await;
        b.click("#msg-list tbody tr").await;
        b.wait_js("the message dialog", "return document.querySelector('#message-dialog[open]') ? true : null").await;
        assert_eq!(
            b.js("return Array.from(document.querySelectorAll('#message-dialog button')).some((x) => x.textContent.includes('Re-send'))").await,
            false,
            "no re-send for a viewer"
        );
        b.click("#message-dialog .close").await;

        // ---- Trying anyway: the API refuses with 403.
        assert_eq!(b.fetch_status("POST", "/api/v1/pairs/view-1/stop", None).await, 403);
        assert_eq!(b.fetch_status("DELETE", "/api/v1/pairs/view-1?confirm=view-1", None).await, 403);
        let pair = json!({"id": "sneaky", "source": {"type": "udp", "host": "127.0.0.1", "port": free_port()}, "destination": {"type": "udp", "host": "127.0.0.1", "port": free_port()}});
        assert_eq!(b.fetch_status("POST", "/api/v1/pairs", Some(&pair)).await, 403);
        assert_eq!(b.fetch_status("POST", "/api/v1/pairs/view-1/messages/0/resend", None).await, 403);
        assert_eq!(inst.pair("view-1")["channel"], "green", "still running");

        // ---- On the Management Dashboard the viewer reads, and is told what is admin-only.
        b.goto(&format!("{mgmt}/users")).await;
        b.login("vera", "viewer-password-2").await;
        b.wait_text("#role-needed", "Admins only").await;
        b.goto(&format!("{mgmt}/audit")).await;
        b.wait_text("#role-needed", "Admins only").await;
        b.goto(&format!("{mgmt}/settings")).await;
        b.wait_text("#settings-readonly", "Only admins").await;
        assert_eq!(b.js("return document.querySelector('#s-max_storage_mb').disabled").await, true);
        b.goto(&format!("{mgmt}/")).await;
        b.wait_js("the health page", "return document.querySelector('#health-pairs-table tr[data-pair-id=\"view-1\"]') ? true : null").await;
        drop(receiver);
        b.close().await;
        let _ = inst.terminate();
    })
    .await;
}

// ================================================================ the Management Dashboard

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn management_dashboard_health_settings_users_logs_and_audit() {
    let _turn = take_turn();
    scenario("management dashboard", async {
        let dir = tempfile::tempdir().expect("tmp");
        let mut inst = Instance::start_fresh(dir.path(), &[], "info");
        inst.login_api();
        let receivers: Vec<ClosingReceiver> = (0..2)
            .map(|i| {
                let (src, dst) = (free_port(), free_port());
                let body = format!(
                    r#"{{"id": "m-{i}", "name": "Plant line {i}", "retry": {{"initial_ms": 100, "max_ms": 400}}, "source": {{"type": "tcp_server", "host": "127.0.0.1", "port": {src}, "framing": {{"type": "line"}}}},
                        "destination": {{"type": "tcp_client", "host": "127.0.0.1", "port": {dst}, "framing": {{"type": "line"}}}}}}"#
                );
                let r = inst.api("POST", "/api/v1/pairs", Some(&body));
                assert_eq!(r.status, 201, "{}", r.body);
                let rec = ClosingReceiver::start(dst);
                send_lines(src, &lines("sample", 4));
                rec
            })
            .collect();
        // A third pair whose destination is down (red).
        let body = format!(
            r#"{{"id": "m-down", "name": "Archive (receiver down)", "retry": {{"initial_ms": 100, "max_ms": 400}}, "source": {{"type": "tcp_server", "host": "127.0.0.1", "port": {}, "framing": {{"type": "line"}}}},
                "destination": {{"type": "tcp_client", "host": "127.0.0.1", "port": {}, "framing": {{"type": "line"}}}}}}"#,
            free_port(),
            free_port()
        );
        assert_eq!(inst.api("POST", "/api/v1/pairs", Some(&body)).status, 201);
        // Enough audit entries for two pages of 25.
        for _ in 0..26 {
            let r = util::http(inst.mgmt, "POST", "/api/v1/session", Some(&format!(r#"{{"username": "admin", "password": "{TEST_ADMIN_PASSWORD}"}}"#)), None, None);
            assert_eq!(r.status, 200);
        }
        let ops = format!("http://{}", inst.ops);
        let mgmt = format!("http://{}", inst.mgmt);
        let b = Browser::start("management-dashboard").await;

        // ---- System Health Overview.
        b.goto(&format!("{mgmt}/")).await;
        b.login("admin", TEST_ADMIN_PASSWORD).await;
        b.wait_path("/").await;
        b.wait_text("#h-version", env!("CARGO_PKG_VERSION")).await;
        assert_eq!(b.wait_text("#h-pairs", "3").await, "3");
        b.wait_text("#h-pairs-colors", "2 Running").await;
        b.wait_text("#h-pairs-colors", "1 Error").await;
        b.wait_js("CPU", "return /%|n\\/a/.test(document.querySelector('#h-cpu').textContent) ? true : null").await;
        b.wait_js("memory", "return /[KMG]iB/.test(document.querySelector('#h-mem').textContent) ? true : null").await;
        b.wait_text("#h-disk-sub", "free of").await;
        b.wait_text("#h-storage", "of 1,000 MiB").await;
        b.wait_text("#h-datadir", &dir.path().display().to_string()).await;
        b.wait_indicator("#health-pairs-table tr[data-pair-id=\"m-down\"]", "destination", "red", WAIT).await;
        b.wait_indicator("#health-pairs-table tr[data-pair-id=\"m-0\"]", "destination", "green", WAIT).await;
        b.wait_js("live health events", "return (window.IOBP.eventCounts.health || 0) >= 3 ? true : null").await;
        b.viewport(1280, 1000).await;
        b.screenshot("mgmt-health", true).await;
        b.viewport(1280, 900).await;

        // ---- The link to the other portal: same host, the Operations Portal's port.
        b.goto(&format!("{ops}/login")).await;
        b.wait_text("h1", "Operations Portal").await;
        b.goto(&format!("{mgmt}/")).await;
        let href = b.wait_js("the link to the Operations Portal", "const a = document.querySelector('#other-portal'); return a && a.getAttribute('href') ? a.href : null").await;
        assert_eq!(href, format!("{ops}/"), "the Operations Portal as this browser last saw it");
        let pair_link = b.wait_js("a pair link", "const a = document.querySelector('#health-pairs-table tr[data-pair-id=\"m-0\"] a'); return a ? a.href : null").await;
        assert_eq!(pair_link, format!("{ops}/pairs/m-0"));

        // ---- Settings: load, browser validation, save, restart-only fields.
        b.click("a[data-nav=\"settings\"]").await;
        b.wait_path("/settings").await;
        b.wait_js("the settings", "return document.querySelector('#s-max_storage_mb').value === '1000' ? true : null").await;
        assert_eq!(b.js("return document.querySelector('#s-log_level').value").await, "info");
        assert_eq!(b.js("return document.querySelector('[data-restart=\"ops_listen\"]').hidden").await, false, "restart note on ops_listen");
        assert_eq!(b.js("return document.querySelector('[data-restart=\"max_storage_mb\"]').hidden").await, true);
        b.screenshot("mgmt-settings", false).await;
        b.fill("#s-max_storage_mb", "0").await;
        b.fill("#s-mgmt_listen", "not an address").await;
        b.click("#settings-save").await;
        b.wait_text(".field.invalid:has(#s-max_storage_mb) .field-error", "at least 1").await;
        b.wait_text(".field.invalid:has(#s-mgmt_listen) .field-error", "address").await;
        b.click("#settings-revert").await;
        b.fill("#s-retention_hours", "48").await;
        b.click("#settings-save").await;
        b.wait_text("#settings-status", "Saved").await;
        assert_eq!(inst.api("GET", "/api/v1/settings", None).json()["settings"]["retention_hours"], 48);
        b.fill("#s-ops_listen", "0.0.0.0:18080").await;
        b.click("#settings-save").await;
        b.wait_text("#settings-restart", "ops_listen").await;
        assert_eq!(inst.api("GET", "/api/v1/settings", None).json()["settings"]["ops_listen"], "0.0.0.0:18080");

        // ---- Users.
        b.click("a[data-nav=\"users\"]").await;
        b.wait_js("the users", "return document.querySelector('#users-table tr[data-user=\"admin\"]') ? true : null").await;
        assert_eq!(b.js("return document.querySelector('#users-table tr[data-user=\"admin\"] button[data-action=\"delete\"]')").await, Value::Null, "admins cannot delete themselves");
        let body = r#"{"username": "temp.user", "password": "temporary-password", "role": "operator"}"#;
        assert_eq!(inst.api("POST", "/api/v1/users", Some(body)).status, 201);
        b.goto(&format!("{mgmt}/users")).await;
        b.click("#users-table tr[data-user=\"temp.user\"] button[data-action=\"delete\"]").await;
        b.wait_js("the confirmation", "return document.querySelector('#confirm-dialog[open]') ? true : null").await;
        b.fill("#confirm-input", "temp.user").await;
        b.click("#confirm-dialog .btn.danger").await;
        b.wait_js("temp.user gone", "return document.querySelector('#users-table tr[data-user=\"admin\"]') && !document.querySelector('#users-table tr[data-user=\"temp.user\"]') ? true : null").await;
        let users = inst.api("GET", "/api/v1/users", None).json();
        assert!(!users.to_string().contains("temp.user"), "{users}");

        // ---- Logs: newest first, level filter, refresh.
        b.click("a[data-nav=\"logs\"]").await;
        b.wait_path("/logs").await;
        b.wait_js("log lines", "return Array.from(document.querySelectorAll('#log-list td.message')).some((t) => t.textContent.includes('started')) ? true : null").await;
        let times = b.js("return Array.from(document.querySelectorAll('#log-list tbody tr')).map((r) => r.cells[0].textContent)").await;
        let times: Vec<String> = serde_json::from_value(times).expect("times");
        assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first: {times:?}");
        b.screenshot("mgmt-logs", false).await;
        b.select("#log-level", "error").await;
        b.wait_js("only errors", "const rows = Array.from(document.querySelectorAll('#log-list tbody tr')); return (document.querySelector('#log-empty') || (rows.length && rows.every((r) => r.textContent.includes('ERROR')))) ? true : null").await;
        b.select("#log-level", "info").await;
        b.click("#log-refresh").await;
        b.wait_text("#log-status", "lines").await;

        // ---- Audit trail: who, what, when, from where; paging.
        b.click("a[data-nav=\"audit\"]").await;
        b.wait_path("/audit").await;
        b.wait_js("audit entries", "return document.querySelector('#audit-list tr[data-action=\"settings.update\"]') ? true : null").await;
        b.wait_text("#audit-list", "pair.create").await;
        b.wait_text("#audit-list", "127.0.0.1").await;
        b.screenshot("mgmt-audit", false).await;
        b.select("#audit-size", "25").await;
        b.wait_text("#audit-page", "Page 1").await;
        let first_page = b.js("return Array.from(document.querySelectorAll('#audit-list tbody tr')).map((r) => Number(r.dataset.id))").await;
        let first_page: Vec<i64> = serde_json::from_value(first_page).expect("ids");
        assert_eq!(first_page.len(), 25);
        b.click("#audit-older").await;
        b.wait_text("#audit-page", "Page 2").await;
        let second = b.js("return Array.from(document.querySelectorAll('#audit-list tbody tr')).map((r) => Number(r.dataset.id))").await;
        let second: Vec<i64> = serde_json::from_value(second).expect("ids");
        assert!(!second.is_empty() && second[0] < *first_page.last().expect("id"), "{first_page:?} then {second:?}");
        b.click("#audit-newer").await;
        b.wait_text("#audit-page", "Page 1").await;
        drop(receivers);
        b.close().await;
        let _ = inst.terminate();
    })
    .await;
}

// ================================================================ figures

/// Reports (does not assert) the Operations Portal's first paint and the instance's memory with
/// ten running pairs and both portals open with their live streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_figures_first_paint_and_memory_with_both_portals_open() {
    let _turn = take_turn();
    scenario("figures", async {
        let dir = tempfile::tempdir().expect("tmp");
        let inst = Instance::start(dir.path(), &[]);
        let mut receivers = Vec::new();
        for i in 0..10 {
            let (src, dst) = (free_port(), free_port());
            receivers.push(ClosingReceiver::start(dst));
            let body = format!(
                r#"{{"id": "fig-{i:02}", "name": "Figure pair {i}", "source": {{"type": "tcp_server", "host": "127.0.0.1", "port": {src}, "framing": {{"type": "line"}}}},
                    "destination": {{"type": "tcp_client", "host": "127.0.0.1", "port": {dst}, "framing": {{"type": "line"}}}}}}"#
            );
            let r = inst.api("POST", "/api/v1/pairs", Some(&body));
            assert_eq!(r.status, 201, "{}", r.body);
            send_lines(src, &lines("figure", 10));
        }
        let ops = format!("http://{}", inst.ops);
        let mgmt = format!("http://{}", inst.mgmt);
        let b = Browser::start("figures").await;
        b.goto(&format!("{ops}/login")).await;
        b.login("admin", TEST_ADMIN_PASSWORD).await;
        b.wait_path("/").await;
        // A fresh navigation of the logged-in overview: what an operator sees each morning.
        b.goto(&format!("{ops}/")).await;
        b.wait_js("ten pair cards", "return document.querySelectorAll('.pair-card').length === 10 ? true : null").await;
        // The paint entries are recorded once the frame is presented: give them a moment.
        let paint_script = "return performance.getEntriesByType('paint').map((e) => [e.name, e.startTime])";
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut paint = b.js(paint_script).await;
        while paint.as_array().is_none_or(|a| a.len() < 2) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            paint = b.js(paint_script).await;
        }
        let nav = b.js("const n = performance.getEntriesByType('navigation')[0]; return n ? [n.domContentLoadedEventEnd, n.loadEventEnd, n.transferSize] : null").await;
        let cards_ms = b.js("return performance.now()").await;
        let paint_of = |name: &str| {
            paint.as_array().and_then(|a| a.iter().find(|e| e[0] == name)).and_then(|e| e[1].as_f64())
        };
        let (fp, fcp) = (paint_of("first-paint"), paint_of("first-contentful-paint"));
        // The Management Dashboard in a second window, both with their live streams.
        let ops_window = b.client.window().await.expect("window");
        let second = b.client.new_window(false).await.expect("new window");
        b.client.switch_to_window(second.handle).await.expect("switch");
        b.goto(&format!("{mgmt}/login")).await;
        b.login("admin", TEST_ADMIN_PASSWORD).await;
        b.wait_path("/").await;
        b.wait_text("#h-pairs", "10").await;
        b.wait_js("health events", "return (window.IOBP.eventCounts.health || 0) >= 1 ? true : null").await;
        let mgmt_events = b.js("return window.IOBP.eventCounts.pairs || 0").await.as_u64().unwrap_or(0);
        b.client.switch_to_window(ops_window.clone()).await.expect("switch back");
        let ops_events = b.js("return window.IOBP.eventCounts.pairs || 0").await.as_u64().unwrap_or(0);
        // Idle for a while with both streams connected.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let ops_events_after = b.js("return window.IOBP.eventCounts.pairs || 0").await.as_u64().unwrap_or(0);
        assert!(ops_events_after > ops_events, "the overview's stream stays connected");
        assert_eq!(b.js("return document.querySelectorAll('.pair-card[data-channel=\"green\"]').length").await, 10);
        let status = std::fs::read_to_string(format!("/proc/{}/status", inst.pid())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map_or_else(|| "n/a".into(), |v| v.trim().to_string())
        };
        let (rss, hwm) = (field("VmRSS:"), field("VmHWM:"));
        let report = format!(
            "Operations Portal, logged-in overview with 10 pairs (headless Chromium, debug build of the server):\n\
             \x20 first-paint: {}\n\x20 first-contentful-paint: {}\n\x20 DOMContentLoaded, load, transfer size: {nav}\n\
             \x20 ten cards shown at: {cards_ms} ms after navigation start (includes the test's polling)\n\
             Instance with 10 running pairs, both portals open in two windows with their SSE streams, after 5 s idle:\n\
             \x20 VmRSS: {rss}\n\x20 VmHWM (peak): {hwm}\n\
             \x20 pairs events received: overview {ops_events_after}, health page {mgmt_events}+\n",
            fp.map_or("n/a".into(), |v| format!("{v:.0} ms")),
            fcp.map_or("n/a".into(), |v| format!("{v:.0} ms")),
        );
        eprintln!("{report}");
        let out = repo().join("test-output");
        std::fs::create_dir_all(&out).expect("test-output");
        std::fs::write(out.join("portal-figures.txt"), &report).expect("write figures");
        drop(receivers);
        b.close().await;
        let _ = inst.terminate();
    })
    .await;
}
