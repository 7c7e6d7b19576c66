//! A minimal synchronous Chrome DevTools Protocol client, just enough for the end-to-end tests to
//! drive a real headless Chromium: passkey ceremonies against the DevTools virtual authenticator,
//! keyboard navigation and screenshots. One blocking websocket per tab; events are ignored.
#![allow(dead_code)] // not every test uses every helper

use serde_json::{json, Value};
use std::io::ErrorKind;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use tungstenite::{protocol::WebSocketConfig, Message, WebSocket};

/// How long one command may take before `call` gives up.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What Chromium answers when the page navigates away while an evaluation is in flight.
const NAVIGATED: [&str; 3] = [
    "context was destroyed",
    "Cannot find context",
    "navigated or closed",
];

/// The flags the browser runs with, besides the profile directory. `--no-sandbox` because
/// tests run as root; the `--disable-*` ones keep Chromium from reaching out to the network.
const FLAGS: &str = "--headless --no-sandbox --disable-gpu --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --remote-debugging-port=0 about:blank";

/// A running Chromium on a throwaway profile; closed (or killed) and cleaned up on drop.
pub struct Browser {
    child: Child,
    user_data_dir: PathBuf,
    port: u16,
    /// The browser-level websocket (second line of DevToolsActivePort): opens tabs, closes.
    browser_ws: String,
}

impl Browser {
    /// Starts chromium (env `CHROMIUM`, else /usr/bin/chromium, else `chromium` on PATH) on a
    /// fresh profile and reads the DevTools port it picked from `<profile>/DevToolsActivePort`,
    /// waiting up to 20 s.
    pub fn launch() -> Result<Browser, String> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let bin = match std::env::var("CHROMIUM") {
            Ok(b) if !b.is_empty() => b,
            _ if Path::new("/usr/bin/chromium").exists() => "/usr/bin/chromium".into(),
            _ => "chromium".into(),
        };
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("cdp-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir); // a stale one from a crashed run with our pid
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        // Chromium's stderr is mostly D-Bus noise; it is kept only to explain a failed launch.
        let log = dir.join("stderr.log");
        let stderr = std::fs::File::create(&log).map_err(|e| format!("creating log: {e}"))?;
        let child = Command::new(&bin)
            .arg(format!("--user-data-dir={}", dir.display()))
            .args(FLAGS.split_whitespace())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| {
                let _ = std::fs::remove_dir_all(&dir);
                format!("starting {bin}: {e}")
            })?;
        // From here on, dropping `browser` stops the child and removes the directory.
        let mut browser = Browser {
            child,
            user_data_dir: dir,
            port: 0,
            browser_ws: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            // "<port>\n<browser ws path>\n"; it may be seen half-written.
            let text = std::fs::read_to_string(browser.user_data_dir.join("DevToolsActivePort"));
            let text = text.unwrap_or_default();
            let mut lines = text.lines();
            if let (Some(Ok(port)), Some(path)) = (lines.next().map(str::parse), lines.next()) {
                browser.port = port;
                browser.browser_ws = format!("ws://127.0.0.1:{port}{path}");
                return Ok(browser);
            }
            let exited = browser.child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                let log = std::fs::read(&log).unwrap_or_default();
                let tail = String::from_utf8_lossy(&log[log.len().saturating_sub(2000)..]);
                let why = exited.map_or("no DevToolsActivePort in 20 s".into(), |s| s.to_string());
                return Err(format!("{bin} did not start ({why}); stderr ends:\n{tail}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Opens a new tab (Target.createTarget on the browser's websocket) and connects to the
    /// tab's own websocket.
    pub fn new_page(&self) -> Result<Page, String> {
        let mut browser = Page::connect(&self.browser_ws)?;
        let target = browser.call("Target.createTarget", json!({"url": "about:blank"}))?;
        let id = string(&target, "targetId")?;
        Page::connect(&format!("ws://127.0.0.1:{}/devtools/page/{id}", self.port))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Browser.close lets Chromium stop its helper processes itself; SIGKILL is the fallback.
        if let Ok(mut conn) = Page::connect(&self.browser_ws) {
            let _ = conn.call_in("Browser.close", json!({}), Duration::from_secs(5));
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A helper process may still be writing into the profile for a moment.
        let dir = &self.user_data_dir;
        for _ in 0..20 {
            if std::fs::remove_dir_all(dir).is_ok() || !dir.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// One CDP session over one websocket: a tab's (or, internally, the browser's own).
pub struct Page {
    ws: WebSocket<TcpStream>,
    next_id: u64,
}

impl Page {
    fn connect(url: &str) -> Result<Page, String> {
        let rest = url.strip_prefix("ws://").unwrap_or(url);
        let host = rest.split('/').next().unwrap_or_default();
        let stream = TcpStream::connect(host).map_err(|e| format!("connecting to {host}: {e}"))?;
        let _ = stream.set_nodelay(true);
        // A full-page screenshot arrives as one big base64 frame: lift the size limits.
        let config = WebSocketConfig::default().max_frame_size(None);
        let config = config.max_message_size(None);
        let (ws, _) = tungstenite::client::client_with_config(url, stream, Some(config))
            .map_err(|e| format!("websocket handshake with {url}: {e}"))?;
        Ok(Page { ws, next_id: 1 })
    }

    /// Sends a command and waits up to 30 s for its response, skipping events; a CDP error
    /// response becomes `Err` with its message.
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.call_in(method, params, CALL_TIMEOUT)
    }

    fn call_in(&mut self, method: &str, params: Value, limit: Duration) -> Result<Value, String> {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        let sent = self.ws.send(Message::text(msg));
        sent.map_err(|e| format!("{method}: sending: {e}"))?;
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("{method}: no response within {limit:?}"));
            }
            let _ = self.ws.get_mut().set_read_timeout(Some(left));
            let text = match self.ws.read() {
                Ok(Message::Text(t)) => t,
                Ok(Message::Close(_)) => return Err(format!("{method}: websocket closed")),
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => continue,
                Err(e) => return Err(format!("{method}: reading: {e}")),
            };
            let reply: Value =
                serde_json::from_str(&text).map_err(|e| format!("{method}: bad JSON: {e}"))?;
            // Events carry no id; replies to earlier, abandoned calls carry another one.
            if reply["id"].as_u64() != Some(id) {
                continue;
            }
            if let Some(err) = reply.get("error") {
                return Err(format!("{method}: {err}")); // {"code": …, "message": …}
            }
            return Ok(reply.get("result").cloned().unwrap_or(Value::Null));
        }
    }

    /// Page.navigate, then waits (up to 30 s) until the new document has finished loading.
    /// HTTP redirects are followed, so the final URL may differ from `url`.
    pub fn goto(&mut self, url: &str) -> Result<(), String> {
        // A marker on the old window tells "still the old document" from "the new one".
        let _ = self.eval("window.__cdpOldDocument = true");
        let nav = self.call("Page.navigate", json!({"url": url}))?;
        if let Some(err) = nav["errorText"].as_str().filter(|e| !e.is_empty()) {
            return Err(format!("navigating to {url}: {err}"));
        }
        // No loaderId means a same-document navigation (only the #fragment changed).
        let cond = match nav.get("loaderId") {
            Some(_) => "!window.__cdpOldDocument && document.readyState === 'complete'",
            None => "document.readyState === 'complete'",
        };
        let waited = self.wait_for(cond, CALL_TIMEOUT);
        waited.map_err(|e| format!("loading {url}: {e}"))
    }

    /// Runtime.evaluate with awaitPromise, returnByValue and a user gesture (so code that needs
    /// transient activation runs); returns the value (`Null` for undefined). A thrown exception
    /// or rejected promise becomes `Err` with its text.
    pub fn eval(&mut self, expression: &str) -> Result<Value, String> {
        self.eval_in(expression, CALL_TIMEOUT)
    }

    fn eval_in(&mut self, expression: &str, limit: Duration) -> Result<Value, String> {
        let params = json!({"expression": expression, "awaitPromise": true,
                            "returnByValue": true, "userGesture": true});
        let r = self.call_in("Runtime.evaluate", params, limit)?;
        if let Some(ex) = r.get("exceptionDetails") {
            let thrown = &ex["exception"];
            let text = (thrown["description"].as_str().or(thrown["value"].as_str()))
                .or(ex["text"].as_str());
            return Err(format!("JS exception: {}", text.unwrap_or("?")));
        }
        Ok(r["result"].get("value").cloned().unwrap_or(Value::Null))
    }

    /// Polls a JS boolean expression every ~100 ms until it is `true` or `timeout` passes.
    /// Evaluation errors are retried, since a navigation destroys the execution context
    /// mid-poll; the last value or error is reported on timeout.
    pub fn wait_for(&mut self, js_condition: &str, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let last = match self.eval_in(js_condition, left.max(Duration::from_secs(1))) {
                Ok(Value::Bool(true)) => return Ok(()),
                Ok(v) => format!("last value {v}"),
                Err(e) => format!("last error {e}"),
            };
            if Instant::now() >= deadline {
                let what = format!("`{js_condition}` for {timeout:?}");
                return Err(format!("waited in vain for {what} ({last})"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The current `location.href`.
    pub fn url(&mut self) -> Result<String, String> {
        let href = self.eval("location.href")?;
        Ok(href.as_str().unwrap_or_default().to_string())
    }

    /// Sets an input's value by CSS selector and fires `input` and `change` as typing would.
    pub fn fill(&mut self, selector: &str, value: &str) -> Result<(), String> {
        let set = format!(
            "el.focus(); el.value = {};
             el.dispatchEvent(new Event('input', {{bubbles: true}}));
             el.dispatchEvent(new Event('change', {{bubbles: true}}));",
            Value::from(value)
        );
        self.on_element(selector, &set)
    }

    /// Clicks an element by CSS selector (`element.click()`); `Err` if nothing matches.
    /// Does not wait for a navigation the click starts: follow it with `wait_for`.
    pub fn click(&mut self, selector: &str) -> Result<(), String> {
        match self.on_element(selector, "el.click();") {
            // The click did happen if the page went away underneath the evaluation.
            Err(e) if NAVIGATED.iter().any(|m| e.contains(m)) => Ok(()),
            r => r,
        }
    }

    /// Runs `js` with `el` bound to the first element matching `selector`.
    fn on_element(&mut self, selector: &str, js: &str) -> Result<(), String> {
        let sel = Value::from(selector); // a JSON string is a valid JS string literal
        let js = format!(
            "(() => {{ const el = document.querySelector({sel});
               if (!el) throw new Error('no element matches ' + {sel}); {js} }})()"
        );
        self.eval(&js).map(drop)
    }

    /// Presses Tab once (real key events, Input.dispatchKeyEvent) and returns the id of
    /// `document.activeElement` ("" if it has none); call it n times to press Tab n times.
    pub fn tab(&mut self) -> Result<String, String> {
        self.key("Tab", 9, "")?;
        let id = self.eval("document.activeElement ? document.activeElement.id : ''")?;
        Ok(id.as_str().unwrap_or_default().to_string())
    }

    /// Presses Enter on the focused element (activates buttons and links, submits forms).
    pub fn enter(&mut self) -> Result<(), String> {
        self.key("Enter", 13, "\r")
    }

    fn key(&mut self, key: &str, code: u32, text: &str) -> Result<(), String> {
        for kind in ["keyDown", "keyUp"] {
            let mut params = json!({"type": kind, "key": key, "code": key,
                                    "windowsVirtualKeyCode": code, "nativeVirtualKeyCode": code});
            if kind == "keyDown" && !text.is_empty() {
                params["text"] = json!(text);
            }
            self.call("Input.dispatchKeyEvent", params)?;
        }
        Ok(())
    }

    /// Writes a full-page PNG screenshot to `path`, creating its parent directories.
    pub fn screenshot(&mut self, path: &Path) -> Result<(), String> {
        let metrics = self.call("Page.getLayoutMetrics", json!({}))?;
        let size = &metrics["cssContentSize"];
        let clip = json!({"x": 0, "y": 0, "width": size["width"], "height": size["height"],
                          "scale": 1});
        let params = json!({"format": "png", "captureBeyondViewport": true, "clip": clip});
        let shot = self.call("Page.captureScreenshot", params)?;
        let png = base64_decode(&string(&shot, "data")?)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        }
        std::fs::write(path, png).map_err(|e| format!("writing {}: {e}", path.display()))
    }

    /// Enables the WebAuthn domain and adds a platform-like CTAP2 authenticator that keeps
    /// discoverable credentials, verifies the user and answers without a touch; returns its id.
    /// Add it before any ceremony starts: headless, a ceremony with no authenticator never ends.
    pub fn add_virtual_authenticator(&mut self) -> Result<String, String> {
        self.call("WebAuthn.enable", json!({}))?;
        let params = json!({"options": {"protocol": "ctap2", "transport": "internal",
            "hasResidentKey": true, "hasUserVerification": true, "isUserVerified": true,
            "automaticPresenceSimulation": true}});
        let added = self.call("WebAuthn.addVirtualAuthenticator", params)?;
        string(&added, "authenticatorId")
    }

    /// The credentials the virtual authenticator holds (WebAuthn.getCredentials).
    pub fn credentials(&mut self, authenticator_id: &str) -> Result<Vec<Value>, String> {
        let params = json!({"authenticatorId": authenticator_id});
        let r = self.call("WebAuthn.getCredentials", params)?;
        let list = r["credentials"].as_array().cloned();
        list.ok_or_else(|| format!("no credentials in {r}"))
    }
}

/// A string field of a CDP result, or an error naming it.
fn string(v: &Value, field: &str) -> Result<String, String> {
    let found = v[field].as_str().map(String::from);
    found.ok_or_else(|| format!("no {field} in {v}"))
}

/// Decodes standard base64 (how screenshots arrive); padding is skipped.
fn base64_decode(s: &str) -> Result<Vec<u8>, String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut table = [u8::MAX; 256];
    for (i, c) in ALPHABET.iter().enumerate() {
        table[usize::from(*c)] = i as u8;
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|c| *c != b'=') {
        let v = table[usize::from(c)];
        if v == u8::MAX {
            return Err(format!("bad base64 byte {c}"));
        }
        acc = ((acc << 6) | u32::from(v)) & 0xffff;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Ok(out)
}
