//! The real `chat` binary against a real server on port 0.

use std::process::Output;
use std::time::Duration;

use tokio::process::Command;

struct Server {
    running: Option<server::RunningServer>,
    addr: String,
    _dir: tempfile::TempDir,
}

async fn server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut config = server::Config::for_data_dir(dir.path());
    config.sync = "normal".into();
    config.message_rate = 0;
    // Cheap password hashes: these tests check behaviour, not cost.
    config.argon2_memory_kib = 64;
    config.argon2_iterations = 1;
    let running = server::start(config).await.unwrap();
    Server {
        addr: running.local_addr().to_string(),
        running: Some(running),
        _dir: dir,
    }
}

async fn chat(srv: &Server, args: &[&str]) -> Output {
    chat_in(srv, None, args).await
}

/// Runs `chat` (in `dir` if given), killing it if it runs over a minute.
async fn chat_in(srv: &Server, dir: Option<&std::path::Path>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chat"));
    cmd.arg("--server")
        .arg(&srv.addr)
        .args(["--timeout", "20"])
        .args(args)
        .kill_on_drop(true);
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    tokio::time::timeout(std::time::Duration::from_secs(60), cmd.output())
        .await
        .expect("chat ran for over a minute")
        .unwrap()
}

fn stderr(o: &Output) -> String {
    assert!(!o.status.success(), "succeeded unexpectedly");
    assert_eq!(o.status.code(), Some(1));
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test]
async fn a_message_sent_to_a_user_number_is_printed_by_listen_as_json() {
    let srv = server().await;
    // Bob signs in once, so he has a number; then he is offline.
    let users = stdout(&chat(&srv, &["--name", "bob", "users"]).await);
    let bob = users.split('\t').next().unwrap().to_owned();
    assert!(users.contains("bob\t(you)"), "{users}");
    stdout(
        &chat(
            &srv,
            &["--name", "alice", "send", &bob, "hello from a script"],
        )
        .await,
    );
    let line = stdout(&chat(&srv, &["--name", "bob", "listen", "--json", "--count", "1"]).await);
    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(v["text"], "hello from a script");
    assert_eq!(v["from_name"], "alice");
    assert_eq!(v["broadcast"], false);
    // It was acknowledged: a second listen does not see it again, only the next one.
    stdout(&chat(&srv, &["--name", "alice", "send", &bob, "second"]).await);
    let line = stdout(&chat(&srv, &["--name", "bob", "listen", "--count", "1"]).await);
    assert_eq!(line.trim(), "alice: second");
    srv.running.unwrap().shutdown().await;
}

#[tokio::test]
async fn an_upload_downloads_byte_for_byte() {
    let srv = server().await;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("data.bin");
    let data: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&src, &data).unwrap();
    let file = stdout(&chat(&srv, &["--name", "up", "upload", src.to_str().unwrap()]).await);
    let file = file.trim();
    let listing = stdout(&chat(&srv, &["--name", "up", "files"]).await);
    assert_eq!(listing.trim(), format!("{file}\t70000\tdata.bin"));
    let dst = dir.path().join("copy.bin");
    stdout(
        &chat(
            &srv,
            &["--name", "down", "download", file, dst.to_str().unwrap()],
        )
        .await,
    );
    assert_eq!(std::fs::read(&dst).unwrap(), data);
}

/// Uploads `data` as `name` from a fresh directory; returns the file number.
async fn upload(srv: &Server, name: &str, data: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join(name);
    std::fs::write(&src, data).unwrap();
    let file = stdout(&chat(srv, &["--name", "up", "upload", src.to_str().unwrap()]).await);
    file.trim().to_owned()
}

#[tokio::test]
async fn download_never_overwrites_a_file_without_force() {
    let srv = server().await;
    let file = upload(&srv, "report.txt", b"new contents").await;
    let dir = tempfile::tempdir().unwrap();
    let dst = dir.path().join("report.txt");
    std::fs::write(&dst, b"precious").unwrap();
    let dst_s = dst.to_str().unwrap();

    // By explicit path, by directory, and by the uploader's name in the
    // current directory: all refused, the file untouched.
    let dir_s = dir.path().to_str().unwrap();
    for args in [
        vec!["--name", "down", "download", &file, dst_s],
        vec!["--name", "down", "download", &file, dir_s],
    ] {
        let err = stderr(&chat(&srv, &args).await);
        assert!(
            err.contains("already exists") && err.contains("--force"),
            "{err}"
        );
        assert_eq!(std::fs::read(&dst).unwrap(), b"precious");
    }
    let err = stderr(
        &chat_in(
            &srv,
            Some(dir.path()),
            &["--name", "down", "download", &file],
        )
        .await,
    );
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read(&dst).unwrap(), b"precious");

    stdout(
        &chat(
            &srv,
            &["--name", "down", "download", &file, dst_s, "--force"],
        )
        .await,
    );
    assert_eq!(std::fs::read(&dst).unwrap(), b"new contents");
    // No temporary file is left beside it.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[tokio::test]
async fn download_into_a_directory_saves_under_the_uploaders_name() {
    let srv = server().await;
    let file = upload(&srv, "photo.bin", &[7u8; 1000]).await;
    let dir = tempfile::tempdir().unwrap();
    let out = stdout(
        &chat(
            &srv,
            &[
                "--name",
                "down",
                "download",
                &file,
                dir.path().to_str().unwrap(),
            ],
        )
        .await,
    );
    let saved = dir.path().join("photo.bin");
    assert_eq!(out.trim(), saved.to_str().unwrap());
    assert_eq!(std::fs::read(&saved).unwrap(), vec![7u8; 1000]);
    // Without PATH: into the current directory.
    let cwd = tempfile::tempdir().unwrap();
    stdout(
        &chat_in(
            &srv,
            Some(cwd.path()),
            &["--name", "down", "download", &file],
        )
        .await,
    );
    assert_eq!(
        std::fs::read(cwd.path().join("photo.bin")).unwrap().len(),
        1000
    );
}

#[tokio::test]
async fn a_local_disk_error_names_the_path_and_is_not_blamed_on_the_server() {
    let srv = server().await;
    let file = upload(&srv, "a.txt", b"abc").await;
    let dir = tempfile::tempdir().unwrap();
    let dst = dir.path().join("no-such-dir").join("a.txt");
    let err = stderr(
        &chat(
            &srv,
            &["--name", "down", "download", &file, dst.to_str().unwrap()],
        )
        .await,
    );
    assert!(err.contains("cannot create"), "{err}");
    assert!(err.contains(dst.to_str().unwrap()), "{err}");
    assert!(err.contains("No such file or directory"), "{err}");
    assert!(!err.contains("server"), "{err}");
    // Reading a missing file to upload is a local error too.
    let err = stderr(&chat(&srv, &["--name", "up", "upload", dst.to_str().unwrap()]).await);
    assert!(
        err.contains("cannot read") && !err.contains("connection lost"),
        "{err}"
    );
}

#[tokio::test]
async fn server_errors_are_explained_with_a_non_zero_exit() {
    let srv = server().await;
    let o = chat(&srv, &["--name", "alice", "send", "999", "hi"]).await;
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("unknown user"), "{err}");
    let o = chat(&srv, &["--name", "alice", "send", "nobody", "hi"]).await;
    assert!(String::from_utf8_lossy(&o.stderr).contains("nobody named nobody is online"));
    let o = chat(&srv, &["--name", "alice", "download", "12345"]).await;
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown file"));
    let o = chat(&srv, &["--name", "", "users"]).await;
    assert!(String::from_utf8_lossy(&o.stderr).contains("name"));
}

#[tokio::test]
async fn every_bench_scenario_runs_and_prints_its_table() {
    let srv = server().await;
    let scenarios: [&[&str]; 5] = [
        &["dm", "--pairs", "2", "--seconds", "0.2"],
        &["broadcast", "--receivers", "3", "--messages", "5"],
        &["idle", "--sessions", "5", "--hold", "0.1"],
        &["files", "--mib", "1", "--windows", "4,64"],
        &["signin", "--sessions", "5", "--concurrency", "2"],
    ];
    for args in scenarios {
        let mut full = vec!["bench", "--server-pid"];
        let pid = std::process::id().to_string();
        full.push(&pid);
        full.extend_from_slice(args);
        let out = stdout(&chat(&srv, &full).await);
        assert!(out.contains("| metric | value |"), "{out}");
        assert!(out.contains("server CPU time"), "{out}");
    }
}

/// The value of a `| name | value |` row of a summary table.
fn row(out: &str, name: &str) -> u64 {
    let prefix = format!("| {name} | ");
    out.lines()
        .find_map(|l| l.strip_prefix(&prefix)?.strip_suffix(" |")?.parse().ok())
        .unwrap_or_else(|| panic!("no row {name}: {out}"))
}

#[tokio::test]
async fn a_short_soak_keeps_every_check_and_reports_the_servers_figures() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = server::Config::for_data_dir(dir.path());
    config.sync = "normal".into();
    config.message_rate = 0;
    // Silent connections are closed within the run.
    config.sign_in_timeout = 2.0;
    let running = tokio::time::timeout(Duration::from_secs(30), server::start(config))
        .await
        .expect("the server did not start within 30 s")
        .unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let srv = Server {
        addr: running.local_addr().to_string(),
        running: Some(running),
        _dir: dir,
    };
    let pid = std::process::id().to_string();
    let out = stdout(
        &chat(
            &srv,
            &[
                "bench",
                "soak",
                "--seconds",
                "20",
                "--report-every",
                "5",
                "--server-pid",
                &pid,
                "--data-dir",
                &data,
            ],
        )
        .await,
    );
    assert!(
        out.contains("| elapsed | RSS MiB | fds | db MiB | files MiB | messages |"),
        "{out}"
    );
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("| 0:")).collect();
    assert!(lines.len() >= 3, "{out}");
    // The server's figures were read: no "-" in the first report line.
    assert!(!lines[0].contains(" - |"), "{out}");
    assert!(out.lines().any(|l| l == "lost: 0"), "{out}");
    assert!(row(&out, "silent connections closed") >= 1, "{out}");
    assert!(row(&out, "downloads verified") >= 1, "{out}");
    assert_eq!(row(&out, "failed checks"), 0, "{out}");
    let stop = srv.running.unwrap().shutdown();
    tokio::time::timeout(Duration::from_secs(30), stop)
        .await
        .expect("the server did not stop within 30 s");
}

#[tokio::test]
async fn the_client_works_through_the_gateway_websocket() {
    let data = tempfile::tempdir().unwrap();
    let web = tempfile::tempdir().unwrap();
    let mut config = gateway::GatewayConfig::for_tests(data.path(), web.path());
    config.chat.sync = "normal".into();
    let gw = gateway::start(config).await.unwrap();
    let url = format!("ws://{}/ws", gw.local_addr());
    let run = |args: Vec<String>| {
        let url = url.clone();
        async move {
            let out = Command::new(env!("CARGO_BIN_EXE_chat"))
                .args(["--ws", &url])
                .args(args)
                .kill_on_drop(true)
                .output();
            tokio::time::timeout(std::time::Duration::from_secs(60), out)
                .await
                .expect("chat ran for over a minute")
                .unwrap()
        }
    };
    let users = stdout(&run(vec!["--name".into(), "web".into(), "users".into()]).await);
    let me = users.split('\t').next().unwrap().to_owned();
    stdout(
        &run(vec![
            "--name".into(),
            "tcp".into(),
            "send".into(),
            me,
            "via ws".into(),
        ])
        .await,
    );
    let line = stdout(
        &run(vec![
            "--name".into(),
            "web".into(),
            "listen".into(),
            "--count".into(),
            "1".into(),
        ])
        .await,
    );
    assert_eq!(line.trim(), "tcp: via ws");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_gateway_refusal_is_printed_with_its_reason() {
    let data = tempfile::tempdir().unwrap();
    let web = tempfile::tempdir().unwrap();
    let mut config = gateway::GatewayConfig::for_tests(data.path(), web.path());
    config.chat.sync = "normal".into();
    config.tunnel_rate = 0.001;
    config.tunnel_burst = 1.0;
    let gw = gateway::start(config).await.unwrap();
    let url = format!("ws://{}/ws", gw.local_addr());
    let run = || {
        let out = Command::new(env!("CARGO_BIN_EXE_chat"))
            .args(["--ws", &url, "--name", "fast", "users"])
            .kill_on_drop(true)
            .output();
        tokio::time::timeout(std::time::Duration::from_secs(60), out)
    };
    stdout(&run().await.unwrap().unwrap());
    let o = run().await.unwrap().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("429"), "{err}");
    assert!(
        err.contains("connecting too often from your address"),
        "{err}"
    );
    gw.shutdown().await;
}

/// Runs `chat` with `stdin` and extra environment.
async fn chat_with(srv_addr: &str, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
    use tokio::io::AsyncWriteExt;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chat"));
    cmd.arg("--server")
        .arg(srv_addr)
        .args(["--timeout", "20"])
        .args(args)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("chat ran for over a minute")
        .unwrap()
}

#[tokio::test]
async fn passwd_protects_a_name_and_the_password_signs_in() {
    let srv = server().await;
    let dir = tempfile::tempdir().unwrap();
    let out = chat_with(
        &srv.addr,
        &["--name", "alice", "passwd"],
        "\nfirst password\n",
        &[],
    )
    .await;
    assert!(stdout(&out).contains("password changed"));
    // Without the password the name is refused, and said to be protected.
    let err = stderr(&chat(&srv, &["--name", "alice", "users"]).await);
    assert!(err.contains("protected by a password"), "{err}");
    // From a file, or from CHAT_PASSWORD.
    let file = dir.path().join("pw");
    std::fs::write(&file, "first password\n").unwrap();
    let file = file.to_string_lossy().into_owned();
    let out = chat(
        &srv,
        &["--name", "alice", "--password-file", &file, "users"],
    )
    .await;
    stdout(&out);
    let env = [("CHAT_PASSWORD", "wrong password")];
    let out = chat_with(&srv.addr, &["--name", "alice", "users"], "", &env).await;
    let err = stderr(&out);
    assert!(err.contains("wrong name or password"), "{err}");
    // Changing it needs the current one.
    let env = [("CHAT_PASSWORD", "first password")];
    let args = ["--name", "alice", "passwd"];
    let out = chat_with(&srv.addr, &args, "not it\nsecond password\n", &env).await;
    assert!(stderr(&out).contains("current password is wrong"));
    let out = chat_with(&srv.addr, &args, "first password\nsecond password\n", &env).await;
    stdout(&out);
    let env = [("CHAT_PASSWORD", "second password")];
    let out = chat_with(&srv.addr, &["--name", "alice", "users"], "", &env).await;
    stdout(&out);
}

#[tokio::test]
async fn tls_to_the_chat_server_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let mut config = server::Config::for_data_dir(dir.path().join("data"));
    config.sync = "normal".into();
    config.tls = Some(server::config::TlsFiles {
        cert: cert_path.clone(),
        key: key_path,
    });
    let running = server::start(config).await.unwrap();
    let addr = format!("localhost:{}", running.local_addr().port());
    let ca = cert_path.to_string_lossy().into_owned();
    let out = chat_with(&addr, &["--ca", &ca, "--name", "alice", "users"], "", &[]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without trusting the certificate, the connection is refused.
    let out = chat_with(&addr, &["--tls", "--name", "alice", "users"], "", &[]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.contains("cannot connect"), "{err}");
    // Plain TCP to the TLS port fails too.
    let out = chat_with(&addr, &["--name", "bob", "users"], "", &[]).await;
    assert!(!out.status.success());
    running.shutdown().await;
}
