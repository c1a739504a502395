//! Headless Chromium (Debian's `chromium`, installed by `scripts/setup`) driven over the
//! DevTools protocol by chromiumoxide, for the dashboard's tests. Chromium is kept off every
//! network but loopback: its background services are off and its resolver maps every name
//! but loopback's to nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::page::ScreenshotParams;
use chromiumoxide::Page;
use futures::StreamExt;
use keel_tests::wait_for_some;

/// Where Debian's package puts the browser.
const CHROMIUM: &str = "/usr/bin/chromium";

pub struct Chromium {
    browser: Browser,
    handler: tokio::task::JoinHandle<()>,
    _profile: tempfile::TempDir,
    /// Where screenshots go: the test's temp dir, or `KEEL_UI_SCREENSHOTS` when set (how the
    /// README's pictures are made).
    pub screenshots: PathBuf,
    _screenshots_dir: tempfile::TempDir,
}

impl Chromium {
    pub async fn launch() -> Chromium {
        let profile = tempfile::tempdir().expect("profile dir");
        let config = BrowserConfig::builder()
            .chrome_executable(CHROMIUM)
            .no_sandbox()
            .new_headless_mode()
            .user_data_dir(profile.path())
            .window_size(1280, 900)
            .viewport(None)
            .args([
                "--disable-gpu",
                "--disable-quic",
                "--disable-component-update",
                "--no-proxy-server",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
            ])
            .launch_timeout(Duration::from_secs(30))
            .request_timeout(Duration::from_secs(30))
            .build()
            .expect("browser config");
        let (browser, mut events) = Browser::launch(config).await.expect("launch chromium (scripts/setup installs it)");
        // The protocol's messages must be read for anything to happen; a message this version of
        // chromiumoxide does not know is skipped, not fatal.
        let handler = tokio::spawn(async move { while events.next().await.is_some() {} });
        let screenshots_dir = tempfile::tempdir().expect("screenshots dir");
        let screenshots =
            std::env::var_os("KEEL_UI_SCREENSHOTS").map_or(screenshots_dir.path().to_path_buf(), PathBuf::from);
        Chromium { browser, handler, _profile: profile, screenshots, _screenshots_dir: screenshots_dir }
    }

    /// A new tab showing `url`, loaded.
    pub async fn open(&self, url: &str) -> Page {
        let page = self.browser.new_page(url).await.unwrap_or_else(|e| panic!("open {url}: {e}"));
        page.wait_for_navigation().await.unwrap_or_else(|e| panic!("load {url}: {e}"));
        page
    }

    /// Writes a full-page PNG of `page` as `<name>.png` among the screenshots.
    pub async fn screenshot(&self, page: &Page, name: &str) -> PathBuf {
        let path = self.screenshots.join(format!("{name}.png"));
        let params = ScreenshotParams::builder().full_page(true).build();
        page.save_screenshot(params, &path).await.unwrap_or_else(|e| panic!("screenshot {name}: {e}"));
        path
    }

    pub async fn close(mut self) {
        let _ = self.browser.close().await;
        let _ = self.browser.wait().await;
        self.handler.abort();
    }
}

/// The value of the JavaScript expression `script` in `page`.
pub async fn eval<T: serde::de::DeserializeOwned>(page: &Page, script: &str) -> T {
    let result = page.evaluate(script).await.unwrap_or_else(|e| panic!("evaluate {script}: {e}"));
    result.into_value().unwrap_or_else(|e| panic!("the value of {script}: {e}"))
}

/// Runs `script`, which navigates (clicks a link, submits a form), and waits for the new page.
pub async fn navigate_by(page: &Page, script: &str) {
    let _: bool = eval(page, &format!("{script}; true")).await;
    page.wait_for_navigation().await.unwrap_or_else(|e| panic!("the page after `{script}`: {e}"));
    // chromiumoxide may still hold the old document's script context for a moment.
    wait_until(page, Duration::from_secs(30), "the new page", "document.readyState === 'complete'").await;
}

/// Waits until `script` evaluates to true in `page`; how long it took.
pub async fn wait_until(page: &Page, timeout: Duration, what: &str, script: &str) -> Duration {
    let start = std::time::Instant::now();
    wait_for_some(timeout, what, || async {
        let result = page.evaluate(script).await.ok()?;
        result.into_value::<bool>().ok().filter(|&ok| ok)
    })
    .await
    .unwrap_or_else(|e| panic!("{e} (`{script}`)"));
    start.elapsed()
}

/// The page's first contentful paint, in milliseconds from the start of its navigation.
pub async fn first_paint_ms(page: &Page) -> f64 {
    let script = "(performance.getEntriesByName('first-contentful-paint')[0] || {startTime: -1}).startTime";
    wait_until(page, Duration::from_secs(10), "the first contentful paint", &format!("{script} >= 0")).await;
    eval(page, script).await
}

/// The text of the page's `<main>`.
pub async fn main_text(page: &Page) -> String {
    eval(page, "document.getElementById('main') ? document.getElementById('main').innerText : document.body.innerText")
        .await
}

/// Whether a screenshot was written.
pub fn written(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.len() > 0)
}
