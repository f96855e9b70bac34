//! Names protected by a password (issue 14), over real TCP: claiming,
//! refusing, the three modes, changing a password, slowed guessing, the
//! operator's commands and TLS.

mod common;

use std::time::Duration;

use common::{patience, Peer, TestServer};
use proto::{ErrorCode, Packet};

/// Cheap hashes: these tests check behaviour, not cost.
fn cheap(c: &mut server::Config) {
    c.argon2_memory_kib = 64;
    c.argon2_iterations = 1;
}

async fn open_server() -> TestServer {
    TestServer::start_with(cheap).await
}

fn code(p: &Packet) -> Option<(ErrorCode, u16, String)> {
    match p {
        Packet::Error {
            code,
            request_type,
            text,
            ..
        } => Some((*code, *request_type, text.clone())),
        _ => None,
    }
}

#[tokio::test]
async fn a_claimed_name_needs_its_password_and_keeps_its_number() {
    let srv = open_server().await;
    let mut a = srv.peer().await;
    assert!(matches!(
        a.account_sign_in("alice", "correct horse").await,
        Packet::SessionCookie { .. }
    ));
    let user = a.user;
    drop(a);
    // The seed's sign-in is refused for a claimed name.
    let mut b = srv.peer().await;
    b.send(Packet::SessionRequest {
        name: "alice".into(),
    })
    .await;
    let (c, t, _) = code(&b.recv().await).unwrap();
    assert_eq!((c, t), (ErrorCode::NameProtected, 1));
    // A wrong password is refused, and the connection stays open.
    let (c, t, text) = code(&b.account_sign_in("alice", "wrong horse").await).unwrap();
    assert_eq!((c, t), (ErrorCode::BadCredentials, 27));
    assert_eq!(text, "wrong name or password");
    assert!(matches!(
        b.account_sign_in("alice", "correct horse").await,
        Packet::SessionCookie { .. }
    ));
    assert_eq!(b.user, user, "the same user number");
    // Unclaimed names work as in the seed.
    let mut c = srv.signed_in("carol").await;
    assert_eq!(c.users().await.len(), 2);
}

#[tokio::test]
async fn a_session_opened_with_a_password_resumes_with_session_preserve() {
    let srv = open_server().await;
    let mut a = srv.peer().await;
    a.account_sign_in("alice", "correct horse").await;
    let (user, session) = (a.user, a.session);
    let mut again = Peer::connect(srv.addr).await;
    again.send(Packet::SessionPreserve { session }).await;
    assert_eq!(again.recv().await, Packet::SessionCookie { user, session });
    assert_eq!(code(&a.recv().await).unwrap().0, ErrorCode::SessionMoved);
}

#[tokio::test]
async fn the_password_is_checked_before_the_name_is_said_to_be_in_use() {
    let srv = open_server().await;
    let mut a = srv.peer().await;
    a.account_sign_in("alice", "correct horse").await;
    let mut b = srv.peer().await;
    let (c, ..) = code(&b.account_sign_in("alice", "wrong horse").await).unwrap();
    assert_eq!(c, ErrorCode::BadCredentials);
    let (c, ..) = code(&b.account_sign_in("alice", "correct horse").await).unwrap();
    assert_eq!(c, ErrorCode::NameInUse);
}

#[tokio::test]
async fn required_mode_refuses_unknown_names_exactly_as_wrong_passwords() {
    let srv = TestServer::start_with(|c| {
        cheap(c);
        c.accounts = server::accounts::AccountMode::Required;
    })
    .await;
    {
        let mut accounts = server::store::admin::Accounts::open(srv.dir.path()).unwrap();
        let hash = srv.config.hash_params().hash_now("correct horse").unwrap();
        assert!(accounts.add("alice", &hash).unwrap());
    }
    let mut p = srv.peer().await;
    let unknown = p.account_sign_in("mallory", "correct horse").await;
    let wrong = p.account_sign_in("alice", "wrong horse").await;
    assert_eq!(
        code(&unknown).unwrap().0,
        ErrorCode::BadCredentials,
        "{unknown:?}"
    );
    let strip = |p: Packet| match p {
        Packet::Error {
            request_type,
            code,
            subject,
            text,
        } => (request_type, code, subject, text),
        other => panic!("{other:?}"),
    };
    assert_eq!(strip(unknown), strip(wrong), "the two answers are the same");
    p.send(Packet::SessionRequest {
        name: "carol".into(),
    })
    .await;
    assert_eq!(code(&p.recv().await).unwrap().0, ErrorCode::NameProtected);
    assert!(matches!(
        p.account_sign_in("alice", "correct horse").await,
        Packet::SessionCookie { .. }
    ));
}

#[tokio::test]
async fn off_mode_behaves_as_before_accounts() {
    let srv = TestServer::start_with(|c| {
        cheap(c);
        c.accounts = server::accounts::AccountMode::Off;
    })
    .await;
    {
        let mut accounts = server::store::admin::Accounts::open(srv.dir.path()).unwrap();
        let hash = srv.config.hash_params().hash_now("correct horse").unwrap();
        accounts.add("alice", &hash).unwrap();
    }
    let mut p = srv.peer().await;
    let (c, t, _) = code(&p.account_sign_in("bob", "correct horse").await).unwrap();
    assert_eq!((c, t), (ErrorCode::UnexpectedPacket, 27));
    // Every name signs in without a password, a protected one too.
    p.sign_in("alice").await;
    assert_eq!(p.users().await, vec![p.user]);
}

#[tokio::test]
async fn a_signed_in_user_sets_then_changes_a_password() {
    let srv = open_server().await;
    let mut a = srv.signed_in("alice").await;
    let session = a.session;
    let change = |old: &str, new: &str| Packet::PasswordChange {
        session,
        old: old.into(),
        new: new.into(),
    };
    a.send(change("", "first password")).await;
    assert_eq!(a.recv().await, Packet::PasswordChanged { user: a.user });
    a.send(change("not it", "second password")).await;
    let (c, t, _) = code(&a.recv().await).unwrap();
    assert_eq!((c, t), (ErrorCode::BadCredentials, 28));
    a.send(change("first password", "short")).await;
    assert_eq!(code(&a.recv().await).unwrap().0, ErrorCode::BadCredentials);
    a.send(change("first password", "second password")).await;
    assert_eq!(a.recv().await, Packet::PasswordChanged { user: a.user });
    drop(a);
    let mut b = srv.peer().await;
    b.send(Packet::SessionRequest {
        name: "alice".into(),
    })
    .await;
    assert_eq!(code(&b.recv().await).unwrap().0, ErrorCode::NameProtected);
    assert!(code(&b.account_sign_in("alice", "first password").await).is_some());
    assert!(matches!(
        b.account_sign_in("alice", "second password").await,
        Packet::SessionCookie { .. }
    ));
}

#[tokio::test]
async fn guessing_is_slowed_and_the_owner_still_gets_in() {
    let srv = TestServer::start_with(|c| {
        cheap(c);
        c.free_guesses_per_name = 2;
        // Long enough that the third attempt surely comes within it.
        c.max_guess_delay = 3.0;
    })
    .await;
    let mut owner = srv.peer().await;
    owner.account_sign_in("alice", "correct horse").await;
    drop(owner);
    let mut guesser = srv.peer().await;
    for _ in 0..2 {
        let (c, ..) = code(&guesser.account_sign_in("alice", "guess guess").await).unwrap();
        assert_eq!(c, ErrorCode::BadCredentials);
    }
    // Now attempts must wait, even with the right password.
    let (c, _, text) = code(&guesser.account_sign_in("alice", "correct horse").await).unwrap();
    assert_eq!(c, ErrorCode::RateLimited, "{text}");
    assert!(text.contains("try again in"), "{text}");
    // The owner gets in once the wait (at most the 3 s ceiling) is over.
    let mut owner = srv.peer().await;
    let deadline = tokio::time::Instant::now() + patience();
    loop {
        match owner.account_sign_in("alice", "correct horse").await {
            Packet::SessionCookie { .. } => break,
            Packet::Error {
                code: ErrorCode::RateLimited,
                ..
            } => {
                assert!(tokio::time::Instant::now() < deadline, "locked out");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("{other:?}"),
        }
    }
}

/// Runs `chat-server --data-dir DIR account ...` with `stdin`.
async fn operator(dir: &std::path::Path, args: &[&str], stdin: &str) -> std::process::Output {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .arg("--data-dir")
        .arg(dir)
        .args(["--argon2-memory-kib", "64", "--argon2-iterations", "1"])
        .arg("account")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    tokio::time::timeout(patience(), child.wait_with_output())
        .await
        .expect("the command ends")
        .unwrap()
}

#[tokio::test]
async fn the_operators_commands_work_while_the_server_runs() {
    let srv = open_server().await;
    let dir = srv.dir.path();
    let out = operator(dir, &["add", "bob"], "bob's password\n").await;
    assert!(out.status.success(), "{out:?}");
    let mut p = srv.peer().await;
    assert!(matches!(
        p.account_sign_in("bob", "bob's password").await,
        Packet::SessionCookie { .. }
    ));
    drop(p);
    let out = operator(dir, &["add", "bob"], "again and again\n").await;
    assert!(!out.status.success(), "adding twice is refused");
    let out = operator(dir, &["list"], "").await;
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(listed.contains("\tbob"), "{listed}");
    assert!(!listed.contains("password"), "{listed}");
    let out = operator(dir, &["reset", "bob"], "a new password\n").await;
    assert!(out.status.success(), "{out:?}");
    let mut p = srv.peer().await;
    assert!(code(&p.account_sign_in("bob", "bob's password").await).is_some());
    assert!(matches!(
        p.account_sign_in("bob", "a new password").await,
        Packet::SessionCookie { .. }
    ));
    drop(p);
    let out = operator(dir, &["add", "carol"], "short\n").await;
    assert!(!out.status.success(), "a short password is refused");
    let out = operator(dir, &["remove", "bob"], "").await;
    assert!(out.status.success(), "{out:?}");
    // Unprotected again: the seed's sign-in works (once the session ends).
    let deadline = tokio::time::Instant::now() + patience();
    let mut p = srv.peer().await;
    loop {
        p.send(Packet::SessionRequest { name: "bob".into() }).await;
        match p.recv().await {
            Packet::SessionCookie { .. } => break,
            Packet::Error {
                code: ErrorCode::NameInUse,
                ..
            } => {
                assert!(tokio::time::Instant::now() < deadline);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn tls_on_the_tcp_port() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_util::codec::Framed;
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let srv = TestServer::start_with(|c| {
        cheap(c);
        c.tls = Some(server::config::TlsFiles {
            cert: cert_path.clone(),
            key: key_path.clone(),
        });
    })
    .await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio::time::timeout(patience(), connector.connect(name, tcp))
        .await
        .unwrap()
        .unwrap();
    let mut framed = Framed::new(tls, proto::codec::PacketCodec);
    framed
        .send(Packet::AccountSignIn {
            name: "alice".into(),
            password: "correct horse".into(),
        })
        .await
        .unwrap();
    let answer = tokio::time::timeout(patience(), framed.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(answer, Packet::SessionCookie { .. }), "{answer:?}");
    // Plain bytes on the TLS port are a failed handshake, not a session.
    let mut plain = Peer::connect(srv.addr).await;
    plain
        .send(Packet::SessionRequest { name: "bob".into() })
        .await;
    plain.expect_closed().await;
}
