//! A real headless Chromium, driven through chromedriver's WebDriver HTTP
//! API (<https://www.w3.org/TR/webdriver2/>) with the blocking hyper client
//! of [`super::http`]: open a page, run a script in it, take a screenshot.
//!
//! Needs `chromium` and `chromedriver` (Debian's `chromium` and
//! `chromium-driver` packages; `CHROMIUM` and `CHROMEDRIVER` name others).
//! [`Browser::start`] says why it cannot run and returns `None` where they
//! are missing, and panics instead when `SHMESH_REQUIRE_BROWSER` is set, as
//! CI does. Each browser has its own chromedriver on a free port and its
//! own profile directory, so tests run side by side.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use super::http::HttpClient;

/// A headless Chromium session; ended (and chromedriver stopped) on drop.
pub struct Browser {
    driver: Child,
    client: HttpClient,
    addr: SocketAddr,
    session: String,
    dir: PathBuf,
}

/// The first of `names` found on PATH.
fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

fn binaries() -> Result<(PathBuf, PathBuf), String> {
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| on_path(&["chromium", "chromium-browser", "google-chrome"]))
        .ok_or("no chromium on PATH (Debian: apt-get install chromium chromium-driver)")?;
    let driver = std::env::var_os("CHROMEDRIVER")
        .map(PathBuf::from)
        .or_else(|| on_path(&["chromedriver"]))
        .ok_or("no chromedriver on PATH (Debian: apt-get install chromium-driver)")?;
    Ok((chromium, driver))
}

impl Browser {
    /// A headless Chromium whose profile and logs live under `dir`, or
    /// `None` (with the reason on stderr) where this machine has none.
    pub fn start(test: &str, dir: &Path) -> Option<Browser> {
        let (chromium, driver) = match binaries() {
            Ok(found) => found,
            Err(why) => {
                // CI sets this where it installed them.
                if std::env::var_os("SHMESH_REQUIRE_BROWSER").is_some() {
                    panic!("{test}: {why}");
                }
                eprintln!("skipped {test}: {why}");
                return None;
            }
        };
        // Another process may take the port between picking and binding:
        // try a few.
        let mut last_error = String::new();
        for _ in 0..3 {
            match Browser::launch(&chromium, &driver, dir) {
                Ok(browser) => return Some(browser),
                Err(e) => last_error = e,
            }
        }
        panic!("{test}: cannot start Chromium: {last_error}");
    }

    fn launch(chromium: &Path, driver: &Path, dir: &Path) -> Result<Browser, String> {
        let port = super::free_port("127.0.0.1");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let log = dir.join("chromedriver.log");
        let mut child = Command::new(driver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", driver.display()))?;
        let ready = |client: &mut Option<HttpClient>| -> bool {
            if client.is_none() {
                *client = HttpClient::connect(addr).ok();
            }
            let Some(c) = client.as_mut() else {
                return false;
            };
            let status = c.get(&addr.to_string(), "/status", &[]);
            status.is_ok_and(|r| {
                serde_json::from_str::<Value>(&r.body).is_ok_and(|v| v["value"]["ready"] == true)
            })
        };
        let mut client = None;
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ready(&mut client) {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!("chromedriver exited ({status}): {log}"));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("chromedriver did not become ready within 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut client = client.expect("connected");
        // Launching Chromium on a busy machine takes a while.
        client.set_timeout(Duration::from_secs(60));
        let profile = dir.join("chromium-profile");
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": chromium,
                        "args": [
                            "--headless=new",
                            "--no-sandbox",
                            "--disable-gpu",
                            "--disable-dev-shm-usage",
                            "--no-first-run",
                            "--disable-extensions",
                            "--window-size=1200,1000",
                            format!("--user-data-dir={}", profile.display()),
                        ],
                    },
                },
            },
        });
        let mut me = Browser {
            driver: child,
            client,
            addr,
            session: String::new(),
            dir: dir.to_path_buf(),
        };
        let created = me.call("POST", "/session", Some(capabilities))?;
        me.session = created["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no session id in {created}"))?
            .to_string();
        me.client.set_timeout(Duration::from_secs(20));
        Ok(me)
    }

    /// One WebDriver command; its `value`, or the error it answered.
    fn call(&mut self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let headers: &[(&str, &str)] = if body.is_empty() {
            &[]
        } else {
            &[("content-type", "application/json")]
        };
        let response = self.client.request(
            method,
            &self.addr.to_string(),
            path,
            headers,
            body.as_bytes(),
        )?;
        let value: Value = serde_json::from_str(&response.body)
            .map_err(|e| format!("{method} {path}: {e}: {}", response.body))?;
        if response.status != 200 {
            return Err(format!(
                "{method} {path}: {} {}",
                response.status, value["value"]
            ));
        }
        Ok(value["value"].clone())
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    /// Opens `url` and waits for it to load.
    pub fn goto(&mut self, url: &str) {
        let path = self.session_path("/url");
        self.call("POST", &path, Some(json!({ "url": url })))
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// Runs `script` (a function body; `return` gives the result) in the page.
    pub fn execute(&mut self, script: &str) -> Value {
        let path = self.session_path("/execute/sync");
        self.call("POST", &path, Some(json!({ "script": script, "args": [] })))
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Runs `script` every 50 ms until `done` accepts its result or
    /// `timeout` passes; the last result, and whether it was accepted.
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        script: &str,
        mut done: impl FnMut(&Value) -> bool,
    ) -> (Value, bool) {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.execute(script);
            if done(&value) {
                return (value, true);
            }
            if Instant::now() >= deadline {
                return (value, false);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Makes the window as tall as the page (at most 3000 pixels), so a
    /// screenshot shows all of it.
    pub fn fit_to_page(&mut self) {
        // The window is taller than the page it shows, by what the browser
        // draws around it.
        let height = self
            .execute("return document.documentElement.scrollHeight + (window.outerHeight - window.innerHeight);")
            .as_u64()
            .unwrap_or(1000)
            .min(3000);
        let path = self.session_path("/window/rect");
        self.call(
            "POST",
            &path,
            Some(json!({ "width": 1200, "height": height })),
        )
        .unwrap_or_else(|e| panic!("resize the window: {e}"));
    }

    /// A PNG of the window.
    pub fn screenshot(&mut self) -> Vec<u8> {
        let path = self.session_path("/screenshot");
        let value = self
            .call("GET", &path, None)
            .unwrap_or_else(|e| panic!("screenshot: {e}"));
        base64::engine::general_purpose::STANDARD
            .decode(value.as_str().expect("base64 screenshot"))
            .expect("screenshot is base64")
    }

    /// chromedriver's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("chromedriver.log")).unwrap_or_default()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let path = self.session_path("");
            let _ = self.call("DELETE", &path, None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
