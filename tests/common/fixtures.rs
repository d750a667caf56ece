//! The real outside parts the tests talk to: an OpenID provider (npm `oidc-provider`) and an
//! SMTP server (npm `smtp-server`), both started from tests/fixtures on free loopback ports.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::skip_or_fail;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Starts `node <script> <args>` and waits for its READY line. None (after saying why) when
/// node or the npm packages are missing on a laptop; a panic in CI.
fn start_node(script: &str, args: &[String]) -> Option<Child> {
    if Command::new("node").arg("--version").output().is_err() {
        skip_or_fail(
            "node is not installed (apt-get install nodejs npm), so this test did not run",
        );
        return None;
    }
    if !fixtures_dir().join("node_modules").exists() {
        skip_or_fail("the test fixtures are not installed (run `npm ci --prefix tests/fixtures`), so this test did not run");
        return None;
    }
    let mut child = Command::new("node")
        .arg(script)
        .args(args)
        .current_dir(fixtures_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node starts");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("READY") {
                let _ = tx.send(line);
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(_) => Some(child),
        Err(_) => {
            let _ = child.kill();
            panic!("{script} did not become ready within 20 s");
        }
    }
}

pub struct OidcProvider {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    child: Child,
}

impl OidcProvider {
    /// A provider on `port` that knows one client whose redirect URI is `redirect_uri`.
    pub fn start(port: u16, redirect_uri: &str) -> Option<OidcProvider> {
        let client_id = "cohort-test".to_string();
        let client_secret = "cohort-test-secret-0123456789".to_string();
        let child = start_node(
            "oidc.mjs",
            &[
                "--port".into(),
                port.to_string(),
                "--client-id".into(),
                client_id.clone(),
                "--client-secret".into(),
                client_secret.clone(),
                "--redirect-uri".into(),
                redirect_uri.to_string(),
            ],
        )?;
        Some(OidcProvider {
            issuer: format!("http://127.0.0.1:{port}"),
            client_id,
            client_secret,
            child,
        })
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Walks the provider's own login (and consent) pages as a person would, typing `login`,
/// starting at `authorize_url`. Returns the URL the provider finally sends the browser to
/// (the app's callback with code and state), without opening it.
pub async fn walk_provider(authorize_url: &str, login: &str, redirect_prefix: &str) -> String {
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let mut url = authorize_url.to_string();
    let mut form: Option<(String, Vec<(String, String)>)> = None;
    for _ in 0..12 {
        let res = match form.take() {
            Some((action, fields)) => client.post(url_join(&url, &action)).form(&fields).send(),
            None => client.get(&url).send(),
        }
        .await
        .expect("provider answers");
        if let Some(loc) = res.headers().get("location") {
            let next = url_join(&url, loc.to_str().expect("location"));
            if next.starts_with(redirect_prefix) {
                return next;
            }
            url = next;
            continue;
        }
        let status = res.status();
        let page = super::html::Page::new(&res.text().await.expect("body"));
        let action = page
            .attr("form", "action")
            .unwrap_or_else(|| panic!("provider page ({status}) has no form:\n{}", page.source));
        let mut fields = Vec::new();
        for input in page
            .doc
            .select(&scraper::Selector::parse("form input").expect("selector"))
        {
            let v = input.value();
            let Some(name) = v.attr("name") else { continue };
            let value = match name {
                "login" => login.to_string(),
                "password" => "any-password".to_string(),
                _ => v.attr("value").unwrap_or("").to_string(),
            };
            fields.push((name.to_string(), value));
        }
        form = Some((action, fields));
    }
    panic!("the provider never redirected back to {redirect_prefix}");
}

fn url_join(base: &str, next: &str) -> String {
    url::Url::parse(base)
        .and_then(|b| b.join(next))
        .map(|u| u.to_string())
        .expect("a URL")
}

pub struct SmtpServer {
    pub port: u16,
    pub dir: PathBuf,
    child: Child,
}

impl SmtpServer {
    pub fn start() -> Option<SmtpServer> {
        let port = free_port();
        let dir = super::temp_dir("smtp");
        let child = start_node(
            "smtp.mjs",
            &[
                "--port".into(),
                port.to_string(),
                "--dir".into(),
                dir.display().to_string(),
            ],
        )?;
        Some(SmtpServer { port, dir, child })
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far, oldest first.
    pub fn messages(&self) -> Vec<String> {
        let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(&self.dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                    .filter_map(|p| {
                        let n = p.file_stem()?.to_str()?.parse().ok()?;
                        Some((n, p))
                    })
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
            .into_iter()
            .filter_map(|(_, p)| std::fs::read_to_string(p).ok())
            .collect()
    }

    /// Waits until there are at least `n` messages, and returns the `n`th.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Option<String> {
        let until = Instant::now() + timeout;
        loop {
            let all = self.messages();
            if all.len() >= n {
                return all.into_iter().nth(n - 1);
            }
            if Instant::now() > until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
