//! The dashboard in a real browser: headless Chromium driven over WebDriver (chromedriver)
//! opens the page a real hub serves, sees a service appear when its process starts, its
//! request counted, and the service marked withdrawn with the reason when the process is
//! killed, without the page reloading. A screenshot goes to `target/dashboard.png`.
//!
//! Runs when `chromedriver` and `chromium` are installed (`CHROMEDRIVER`, `CHROMIUM` name
//! others); with `NETSVC_BROWSER_TEST=1` (as `.ci/run` sets) their absence is a failure.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::json;

use crate::util::*;

/// The browser's programs, or `None` to skip.
fn browser() -> Option<(PathBuf, PathBuf)> {
    let driver = PathBuf::from(
        std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into()),
    );
    let chromium =
        PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    if driver.exists() && chromium.exists() {
        return Some((driver, chromium));
    }
    assert!(
        std::env::var("NETSVC_BROWSER_TEST").as_deref() != Ok("1"),
        "NETSVC_BROWSER_TEST=1 but {} or {} is missing (apt install chromium chromium-driver)",
        driver.display(),
        chromium.display()
    );
    eprintln!("dashboard browser test skipped: no chromedriver/chromium installed");
    None
}

/// A chromedriver process, killed on drop.
struct Driver {
    child: Child,
    address: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    fn start(program: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(program)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let driver = Self {
            child,
            address: format!("127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + DEADLINE;
        while driver.try_request("GET", "/status", None).is_err() {
            assert!(Instant::now() < deadline, "chromedriver never answered");
            std::thread::sleep(Duration::from_millis(50));
        }
        driver
    }

    /// One WebDriver command: the `value` of its JSON answer, or the error text.
    fn try_request(&self, method: &str, path: &str, body: Option<&Json>) -> Result<Json, String> {
        let mut stream = TcpStream::connect(&self.address).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(|e| e.to_string())?;
        let body = body.map(Json::to_string).unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.address,
            body.len()
        );
        stream
            .write_all(head.as_bytes())
            .and_then(|()| stream.write_all(body.as_bytes()))
            .map_err(|e| e.to_string())?;
        // chromedriver says `Connection: close` but may keep the socket open: read the
        // head, then exactly Content-Length bytes.
        let mut answer = Vec::new();
        let mut chunk = [0u8; 8192];
        let (head, body_start, length) = loop {
            let n = read_some(&mut stream, &mut chunk)?;
            if n == 0 {
                return Err("chromedriver closed before answering".into());
            }
            answer.extend_from_slice(&chunk[..n]);
            if let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&answer[..end]).into_owned();
                let length = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.trim()
                            .eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .ok_or_else(|| format!("no Content-Length in {head}"))?;
                break (head, end + 4, length);
            }
        };
        while answer.len() < body_start + length {
            let n = read_some(&mut stream, &mut chunk)?;
            if n == 0 {
                return Err("chromedriver closed mid-answer".into());
            }
            answer.extend_from_slice(&chunk[..n]);
        }
        let body = String::from_utf8_lossy(&answer[body_start..body_start + length]).into_owned();
        let json: Json = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        if !head.starts_with("HTTP/1.1 200") {
            return Err(format!("{head}\n{json}"));
        }
        Ok(json["value"].clone())
    }

    fn request(&self, method: &str, path: &str, body: Option<&Json>) -> Json {
        self.try_request(method, path, body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }
}

/// One read, again if a signal interrupted it (the test process gets them from the
/// children it starts and kills).
fn read_some(stream: &mut TcpStream, buf: &mut [u8]) -> Result<usize, String> {
    loop {
        match stream.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            other => return other.map_err(|e| e.to_string()),
        }
    }
}

/// A browser session on one page.
struct Page<'d> {
    driver: &'d Driver,
    session: String,
}

impl Drop for Page<'_> {
    fn drop(&mut self) {
        let _ = self
            .driver
            .try_request("DELETE", &format!("/session/{}", self.session), None);
    }
}

impl<'d> Page<'d> {
    fn open(driver: &'d Driver, chromium: &Path, url: &str) -> Self {
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.display().to_string(),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,900"],
            },
        }}});
        let session = driver.request("POST", "/session", Some(&capabilities));
        let page = Self {
            driver,
            session: session["sessionId"]
                .as_str()
                .unwrap_or_else(|| panic!("no session in {session}"))
                .to_owned(),
        };
        page.command("url", &json!({ "url": url }));
        page
    }

    fn command(&self, what: &str, body: &Json) -> Json {
        self.driver.request(
            "POST",
            &format!("/session/{}/{what}", self.session),
            Some(body),
        )
    }

    /// Runs `script` (a function body that returns a value) in the page.
    fn eval(&self, script: &str) -> Json {
        self.command("execute/sync", &json!({ "script": script, "args": [] }))
    }

    /// Waits until `script` returns a string that `done` accepts; returns it.
    fn wait_for(&self, what: &str, script: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let value = self.eval(script);
            if let Some(text) = value.as_str()
                && done(text)
            {
                return text.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "the dashboard never showed {what}; last: {value}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn screenshot(&self) -> Vec<u8> {
        let data = self.driver.request(
            "GET",
            &format!("/session/{}/screenshot", self.session),
            None,
        );
        base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap_or_default())
            .expect("a base64 PNG")
    }
}

/// Where the workspace's build output goes.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target")),
        PathBuf::from,
    )
}

#[test]
fn the_dashboard_shows_a_service_come_serve_and_go_without_a_reload() {
    let Some((driver_program, chromium)) = browser() else {
        return;
    };
    let (mut hub, address) = hub_with(&["--http", "127.0.0.1:0"]);
    let http = hub.wait_http("http");

    let driver = Driver::start(&driver_program);
    let page = Page::open(&driver, &chromium, &format!("http://{http}/"));
    page.wait_for(
        "the event stream live",
        "return document.getElementById('connection').textContent",
        |t| t == "live",
    );
    let loaded_at = page.eval("return window.netsvcDashboard.loadedAt");

    let row = "const r = document.querySelector('#services tr[data-name=\"echo\"]'); \
               return r ? r.className + '|' + r.querySelector('.service-state').textContent : ''";
    let mut demo = Proc::spawn(&["demo", "--connect", &address]);
    demo.wait_stderr("demo ready");
    page.wait_for("echo available", row, |t| t.contains("available"));
    page.wait_for(
        "echo in the group demo",
        "const r = document.querySelector('#services tr[data-name=\"echo\"]'); \
         return r ? r.cells[1].textContent : ''",
        |t| t == "demo",
    );

    let call = run(&["call", "--connect", &address, "echo", "echo", "1"]);
    assert!(call.status.success(), "{}", stderr(&call));
    page.wait_for(
        "the relayed echo request counted",
        "const r = document.querySelector('#requests tr[data-service=\"echo\"][data-role=\"relayed\"]'); \
         return r ? r.querySelector('td.ok').textContent : ''",
        |t| t == "1",
    );

    demo.signal("KILL");
    let shown = page.wait_for("echo withdrawn", row, |t| t.contains("withdrawn"));
    assert!(shown.contains("connection lost"), "{shown}");
    assert_eq!(
        page.eval("return window.netsvcDashboard.loadedAt"),
        loaded_at,
        "the page reloaded"
    );

    let png = page.screenshot();
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    let dir = target_dir();
    std::fs::create_dir_all(&dir).expect("the target directory");
    let path = dir
        .canonicalize()
        .expect("the target directory")
        .join("dashboard.png");
    std::fs::write(&path, png).expect("write the screenshot");
    eprintln!("dashboard screenshot: {}", path.display());
}

#[test]
fn the_dashboard_of_a_hub_with_users_logs_in_then_goes_live() {
    let Some((driver_program, chromium)) = browser() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let users = dir.path().join("users.toml");
    std::fs::write(
        &users,
        format!(
            r#"
[users.admin]
token = "admin-token-5150"
[users.station]
password_hash = "{}"
[users.station.permissions]
see = {{ allow = ["echo"] }}
"#,
            crate::security::passwd("station-pw-7781")
        ),
    )
    .expect("write the users file");
    let token = dir.path().join("admin.token");
    std::fs::write(&token, "admin-token-5150\n").expect("write the token");
    let users = users.to_str().expect("a UTF-8 path");
    let (mut hub, address) = hub_with(&["--users", users, "--http", "127.0.0.1:0"]);
    let http = hub.wait_http("http");
    // Without a login the event stream is refused.
    let refused = crate::gateway::request(&http, "GET", "/api/events", &[], b"");
    assert_eq!(refused.status, 401, "{}", refused.body);

    let driver = Driver::start(&driver_program);
    let page = Page::open(&driver, &chromium, &format!("http://{http}/"));
    let connection = "return document.getElementById('connection').textContent";
    page.wait_for("the login form", connection, |t| t == "log in");
    // A wrong password is named on the form.
    page.eval(
        "document.getElementById('login-user').value = 'station'; \
         document.getElementById('login-password').value = 'wrong'; \
         document.getElementById('login').requestSubmit(); return ''",
    );
    page.wait_for(
        "the refusal",
        "return document.getElementById('login-error').textContent",
        |t| t.contains("invalid user name or password"),
    );
    page.eval(
        "document.getElementById('login-password').value = 'station-pw-7781'; \
         document.getElementById('login').requestSubmit(); return ''",
    );
    page.wait_for("the event stream live", connection, |t| t == "live");
    // The session cookie is HttpOnly: the page's script never sees it.
    assert_eq!(page.eval("return document.cookie"), json!(""));

    let row = "const r = document.querySelector('#services tr[data-name=\"echo\"]'); \
               return r ? r.className : ''";
    let mut demo = Proc::spawn(
        &["demo", "--connect", &address, "--token-file"]
            .into_iter()
            .chain([token.to_str().expect("a UTF-8 path")])
            .collect::<Vec<_>>(),
    );
    demo.wait_stderr("demo ready");
    page.wait_for("echo available", row, |t| t.contains("available"));
    // Station may not see the demo's clock, and its links are its own door's only.
    assert_eq!(
        page.eval("return document.querySelectorAll('#services tr[data-name=\"clock\"]').length"),
        json!(0)
    );
    page.wait_for(
        "one link",
        "return String(document.querySelectorAll('#links tbody tr').length)",
        |t| t == "1",
    );
    // Logging out ends the session: the form again.
    page.eval("document.getElementById('logout').click(); return ''");
    page.wait_for("the login form again", connection, |t| t == "log in");
}
