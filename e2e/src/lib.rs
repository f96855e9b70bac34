//! The harness of the end-to-end tests: a real gateway with its embedded
//! chat server serving the built web app (`dist/`), a chromedriver, and
//! headless Chromium sessions driven over WebDriver.
//!
//! The tests are `#[ignore]`d because they need the release build of the web
//! app and a browser; `cargo xtask test` builds both and runs them with
//! `--ignored`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use gateway::{GatewayConfig, RunningGateway};
use hyper_util::client::legacy::connect::HttpConnector;
use tempfile::TempDir;

/// How long to wait for anything the browser should show; raise it with
/// CHAT_TEST_TIMEOUT_SECS on a slow machine.
pub fn patience() -> Duration {
    devservices::patience_or(20.0)
}

/// The workspace root.
pub fn root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(Path::to_path_buf).unwrap_or(here)
}

/// A running chat system, a chromedriver, and where screenshots go.
pub struct Chat {
    gateway: Option<RunningGateway>,
    server: Option<server::RunningServer>,
    dist: PathBuf,
    /// The gateway's address.
    pub addr: SocketAddr,
    driver: Child,
    driver_url: String,
    _data: TempDir,
    /// Where the browsers save downloads.
    pub downloads: TempDir,
}

impl Chat {
    /// Starts the gateway (embedded server, fresh data directory) and chromedriver.
    pub async fn start() -> Self {
        let dist = root().join("dist");
        assert!(
            dist.join("index.html").exists(),
            "{} has no built web app: run `trunk build --release` (cargo xtask test does)",
            dist.display()
        );
        let data = tempfile::tempdir().expect("temp dir");
        // The server runs on its own so the gateway can be restarted under
        // the browsers, as a network drop would look to them.
        let mut chat = server::Config::for_data_dir(data.path());
        chat.sync = "normal".into();
        let server = server::start(chat).await.expect("server starts");
        let gateway = start_gateway(&dist, &server.local_addr().to_string(), "127.0.0.1:0").await;
        let addr = gateway.local_addr();
        let port = devservices::free_port();
        let driver =
            Command::new(std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into()))
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("chromedriver starts (apt-get install chromium-driver)");
        let deadline = Instant::now() + patience();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on {port}"
            );
            // Not a spin: chromedriver needs the cores to start.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self {
            gateway: Some(gateway),
            server: Some(server),
            dist,
            addr,
            driver,
            driver_url: format!("http://127.0.0.1:{port}"),
            _data: data,
            downloads: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// The app's URL.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// A new headless Chromium window (its own profile, so its own session
    /// storage) with the app open.
    pub async fn browser(&self) -> Client {
        self.browser_with(serde_json::json!({})).await
    }

    /// A new headless Chromium emulating a phone with a 390×844 screen
    /// (touch, a phone's user agent and pixel ratio), with the app open.
    pub async fn phone(&self) -> Client {
        self.browser_with(serde_json::json!({
            "mobileEmulation": {
                "deviceMetrics": { "width": 390, "height": 844, "pixelRatio": 3.0, "touch": true },
                "userAgent": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Mobile Safari/537.36"
            }
        }))
        .await
    }

    /// A new headless Chromium with `extra` added to its `goog:chromeOptions`.
    pub async fn browser_with(&self, extra: serde_json::Value) -> Client {
        let mut options = serde_json::json!({
            "binary": std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1280,900"
            ],
            "prefs": {
                "download.default_directory": self.downloads.path().to_string_lossy(),
                "download.prompt_for_download": false,
                // Notifications are allowed, as if the user had said yes.
                "profile.default_content_setting_values.notifications": 1
            }
        });
        if let (Some(options), Some(extra)) = (options.as_object_mut(), extra.as_object()) {
            options.extend(extra.clone());
        }
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), options);
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&self.driver_url)
            .await
            .expect("a browser session");
        client.goto(&self.url()).await.expect("the app loads");
        client
    }

    /// Stops the gateway (every tunnel closes) and starts a new one on
    /// the same address, in front of the same server.
    pub async fn restart_gateway(&mut self) {
        if let Some(g) = self.gateway.take() {
            g.shutdown().await;
        }
        let server = self
            .server
            .as_ref()
            .map(|s| s.local_addr().to_string())
            .unwrap_or_default();
        self.gateway = Some(start_gateway(&self.dist, &server, &self.addr.to_string()).await);
    }

    /// Stops the gateway, the server and the driver.
    pub async fn stop(mut self) {
        if let Some(g) = self.gateway.take() {
            g.shutdown().await;
        }
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

async fn start_gateway(dist: &Path, server: &str, listen: &str) -> RunningGateway {
    let mut config = GatewayConfig::for_tests(std::env::temp_dir(), dist);
    config.server = vec![server.to_owned()];
    config.listen = listen.parse().expect("an address");
    gateway::start(config).await.expect("gateway starts")
}

impl Drop for Chat {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}

/// Waits for an element matching a CSS selector.
pub async fn wait_for(c: &Client, css: &str) -> Element {
    match c
        .wait()
        .at_most(patience())
        .for_element(Locator::Css(css))
        .await
    {
        Ok(e) => e,
        Err(e) => {
            screenshot(c, "failure").await;
            panic!("{css} did not appear: {e}");
        }
    }
}

/// Waits for an element matching an XPath expression.
pub async fn wait_for_xpath(c: &Client, xpath: &str) -> Element {
    match c
        .wait()
        .at_most(patience())
        .for_element(Locator::XPath(xpath))
        .await
    {
        Ok(e) => e,
        Err(e) => {
            screenshot(c, "failure").await;
            panic!("{xpath} did not appear: {e}");
        }
    }
}

/// Waits for a message with exactly this text in the open conversation.
pub async fn wait_for_message(c: &Client, text: &str) -> Element {
    wait_for_xpath(
        c,
        &format!("//li[@data-testid='message'][p[normalize-space()='{text}']]"),
    )
    .await
}

/// Signs in and waits until the app says it is connected.
pub async fn sign_in(c: &Client, name: &str) {
    wait_for(c, "[data-testid=name-input]")
        .await
        .send_keys(name)
        .await
        .expect("typing the name");
    wait_for(c, "[data-testid=sign-in]")
        .await
        .click()
        .await
        .expect("clicking sign in");
    wait_for(c, "[data-testid=connection-state][data-state=online]").await;
    wait_for(c, "[data-testid=me]").await;
}

/// Types a message in the composer and presses Enter.
pub async fn send(c: &Client, text: &str) {
    let composer = wait_for(c, "[data-testid=composer]").await;
    composer
        .send_keys(&format!("{text}\u{E007}"))
        .await
        .expect("typing a message");
}

/// Saves what the browser shows under `target/e2e/NAME.png`.
pub async fn screenshot(c: &Client, name: &str) {
    let dir = root().join("target/e2e");
    let _ = std::fs::create_dir_all(&dir);
    if let Ok(png) = c.screenshot().await {
        let _ = std::fs::write(dir.join(format!("{name}.png")), png);
    }
}
