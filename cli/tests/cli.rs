//! The real `chat` binary against a real server on port 0.

use std::process::Output;

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
    let running = server::start(config).await.unwrap();
    Server {
        addr: running.local_addr().to_string(),
        running: Some(running),
        _dir: dir,
    }
}

async fn chat(srv: &Server, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chat"))
        .arg("--server")
        .arg(&srv.addr)
        .args(["--timeout", "20"])
        .args(args)
        .output()
        .await
        .unwrap()
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
    let scenarios: [&[&str]; 4] = [
        &["dm", "--pairs", "2", "--seconds", "0.2"],
        &["broadcast", "--receivers", "3", "--messages", "5"],
        &["idle", "--sessions", "5", "--hold", "0.1"],
        &["files", "--mib", "1", "--windows", "4,64"],
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
            Command::new(env!("CARGO_BIN_EXE_chat"))
                .args(["--ws", &url])
                .args(args)
                .output()
                .await
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
