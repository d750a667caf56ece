//! A small W3C WebDriver client for Debian's chromedriver and headless Chromium.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use super::fixtures::free_port;
use super::skip_or_fail;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    http: reqwest::Client,
    base: String,
    driver: Child,
    profile: std::path::PathBuf,
}

impl Browser {
    pub async fn start() -> Option<Browser> {
        for bin in ["/usr/bin/chromedriver", "/usr/bin/chromium"] {
            if !std::path::Path::new(bin).exists() {
                skip_or_fail(&format!("{bin} is missing (apt-get install chromium chromium-driver), so this browser test did not run"));
                return None;
            }
        }
        let port = free_port();
        let driver = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let mut b = Browser {
            http: reqwest::Client::new(),
            base: format!("http://127.0.0.1:{port}"),
            driver,
            profile: super::temp_dir("chromium"),
        };
        let until = Instant::now() + Duration::from_secs(15);
        while b
            .http
            .get(format!("{}/status", b.base))
            .send()
            .await
            .is_err()
        {
            assert!(Instant::now() < until, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = b.profile.clone();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--disable-quic", "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync",
                         format!("--user-data-dir={}", profile.display()), "--window-size=1280,900"]
            }
        }}});
        let res: Value = b
            .http
            .post(format!("{}/session", b.base))
            .json(&caps)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("session json");
        let id = res["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {res}"))
            .to_string();
        b.base = format!("{}/session/{id}", b.base);
        Some(b)
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res: Value = req
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        match res["value"].get("error") {
            Some(err) => Err(format!("{err}: {}", res["value"]["message"])),
            None => Ok(res["value"].clone()),
        }
    }

    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await
            .expect("navigate");
    }

    pub async fn current_url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None)
            .await
            .expect("url")
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub async fn find(&self, css: &str) -> Result<String, String> {
        let v = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await?;
        v[ELEMENT]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("no element id for {css}"))
    }

    /// Waits up to 5 s for `css` to appear.
    pub async fn wait_for(&self, css: &str) -> String {
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            match self.find(css).await {
                Ok(id) => return id,
                Err(e) if Instant::now() > until => {
                    panic!("{css} never appeared: {e}\n{}", self.source().await)
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    pub async fn click(&self, css: &str) {
        let id = self.wait_for(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            Some(json!({})),
        )
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    pub async fn fill(&self, css: &str, text: &str) {
        let id = self.wait_for(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/clear"),
            Some(json!({})),
        )
        .await
        .unwrap_or_else(|e| panic!("clear {css}: {e}"));
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        )
        .await
        .unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    /// Types keys into whatever has focus (for keyboard-only checks). "\u{E004}" is Tab,
    /// "\u{E007}" Enter.
    pub async fn keys(&self, keys: &str) {
        let actions: Vec<Value> = keys
            .chars()
            .flat_map(|c| {
                [
                    json!({"type": "keyDown", "value": c.to_string()}),
                    json!({"type": "keyUp", "value": c.to_string()}),
                ]
            })
            .collect();
        self.call(
            reqwest::Method::POST,
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})),
        )
        .await
        .expect("keys");
    }

    pub async fn text(&self, css: &str) -> String {
        let id = self.wait_for(css).await;
        self.call(reqwest::Method::GET, &format!("/element/{id}/text"), None)
            .await
            .expect("text")
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The focused element's text or value, to follow keyboard focus.
    pub async fn active_element_text(&self) -> String {
        let v = self
            .call(reqwest::Method::GET, "/element/active", None)
            .await
            .expect("active");
        let id = v[ELEMENT].as_str().unwrap_or_default().to_string();
        self.call(reqwest::Method::GET, &format!("/element/{id}/text"), None)
            .await
            .expect("text")
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Grants a browser permission, such as "clipboard-read" (W3C Permissions extension).
    pub async fn grant(&self, name: &str) {
        self.call(
            reqwest::Method::POST,
            "/permissions",
            Some(json!({"descriptor": {"name": name}, "state": "granted"})),
        )
        .await
        .unwrap_or_else(|e| panic!("grant {name}: {e}"));
    }

    /// Resizes the browser window (W3C Set Window Rect), such as to a phone's 390 × 844.
    pub async fn set_window_size(&self, width: i64, height: i64) {
        self.call(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await
        .unwrap_or_else(|e| panic!("window size {width}x{height}: {e}"));
    }

    /// Runs an async script; it calls `arguments[0](value)` to answer.
    pub async fn execute_async(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/async",
            Some(json!({"script": script, "args": []})),
        )
        .await
        .unwrap_or_else(|e| panic!("script: {e}"))
    }

    /// Waits up to 5 s for the text of `css` to contain `want`.
    pub async fn wait_for_text(&self, css: &str, want: &str) -> String {
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            // The page may be navigating: a missing or stale element just means "not yet".
            let t = match self.find(css).await {
                Ok(id) => self
                    .call(reqwest::Method::GET, &format!("/element/{id}/text"), None)
                    .await
                    .map(|v| v.as_str().unwrap_or_default().to_string())
                    .unwrap_or_default(),
                Err(_) => String::new(),
            };
            if t.contains(want) {
                return t;
            }
            assert!(
                Instant::now() < until,
                "{css} never said {want:?}; it says {t:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn source(&self) -> String {
        self.call(reqwest::Method::GET, "/source", None)
            .await
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    }

    pub async fn screenshot(&self, path: &std::path::Path) {
        let b64 = self
            .call(reqwest::Method::GET, "/screenshot", None)
            .await
            .expect("screenshot");
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap_or_default())
            .expect("png");
        std::fs::write(path, png).expect("write screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Killing chromedriver leaves Chromium running, orphaned. Ending the session first
        // makes chromedriver quit the browser. Drop cannot await, so this is plain HTTP
        // over a std socket; one read of the answer is enough (the socket may stay open).
        if let Some((host, path)) = self
            .base
            .strip_prefix("http://")
            .and_then(|rest| rest.split_once('/'))
            .filter(|(_, path)| path.starts_with("session/"))
        {
            use std::io::{Read, Write};
            if let Ok(mut stream) = std::net::TcpStream::connect(host) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
                let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
                let request = format!(
                    "DELETE /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                if stream.write_all(request.as_bytes()).is_ok() {
                    let mut answer = [0u8; 1024];
                    let _ = stream.read(&mut answer);
                }
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
