//! Two people in two headless Chromium windows use the chat through a real
//! gateway and server. Each test saves screenshots under `target/e2e/`.

use std::time::Instant;

use e2e::{patience, screenshot, send, sign_in, wait_for, wait_for_message, Chat};
use fantoccini::Locator;

#[tokio::test]
#[ignore = "needs the built web app and Chromium; run by cargo xtask test"]
async fn two_people_exchange_direct_messages_and_a_broadcast() {
    let chat = Chat::start().await;
    let alice = chat.browser().await;
    let bob = chat.browser().await;
    sign_in(&alice, "alice").await;
    sign_in(&bob, "bob").await;

    // Alice starts a conversation by clicking Bob's name.
    wait_for(&alice, "[data-testid=user][data-user-name=bob]")
        .await
        .click()
        .await
        .unwrap();
    send(&alice, "hello bob").await;
    wait_for(&alice, "[data-testid=message][data-state=sent]").await;

    // Bob sees an unread count on Alice's conversation, opens it, reads.
    wait_for(
        &bob,
        "[data-testid=conversation][data-title=alice] [data-testid=unread]",
    )
    .await;
    screenshot(&bob, "dm-unread").await;
    wait_for(&bob, "[data-testid=conversation][data-title=alice]")
        .await
        .click()
        .await
        .unwrap();
    wait_for_message(&bob, "hello bob").await;
    send(&bob, "hi alice").await;
    wait_for_message(&alice, "hi alice").await;

    // A broadcast from Bob reaches Alice's Everyone conversation.
    wait_for(&bob, "[data-testid=conversation][data-title=Everyone]")
        .await
        .click()
        .await
        .unwrap();
    send(&bob, "hello everyone").await;
    wait_for(
        &alice,
        "[data-testid=conversation][data-title=Everyone] [data-testid=unread]",
    )
    .await;
    wait_for(&alice, "[data-testid=conversation][data-title=Everyone]")
        .await
        .click()
        .await
        .unwrap();
    wait_for_message(&alice, "hello everyone").await;
    screenshot(&alice, "broadcast").await;
    screenshot(&bob, "broadcast-sender").await;

    alice.close().await.unwrap();
    bob.close().await.unwrap();
    chat.stop().await;
}

#[tokio::test]
#[ignore = "needs the built web app and Chromium; run by cargo xtask test"]
async fn a_name_in_use_is_refused_next_to_the_field() {
    let chat = Chat::start().await;
    let first = chat.browser().await;
    let second = chat.browser().await;
    sign_in(&first, "carol").await;
    wait_for(&second, "[data-testid=name-input]")
        .await
        .send_keys("carol")
        .await
        .unwrap();
    wait_for(&second, "[data-testid=sign-in]")
        .await
        .click()
        .await
        .unwrap();
    let error = wait_for(&second, "[data-testid=sign-in-error]").await;
    assert!(error.text().await.unwrap().contains("in use"));
    screenshot(&second, "name-in-use").await;
    first.close().await.unwrap();
    second.close().await.unwrap();
    chat.stop().await;
}

#[tokio::test]
#[ignore = "needs the built web app and Chromium; run by cargo xtask test"]
async fn a_file_uploaded_by_one_person_is_downloaded_by_another_byte_for_byte() {
    let chat = Chat::start().await;
    let alice = chat.browser().await;
    let bob = chat.browser().await;
    sign_in(&alice, "alice").await;
    sign_in(&bob, "bob").await;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.bin");
    // 10 MiB: the transfers are pipelined, so this takes seconds, not minutes.
    let data: Vec<u8> = (0..10 * 1024 * 1024u32)
        .map(|i| (i * 7 + i / 256) as u8)
        .collect();
    std::fs::write(&path, &data).unwrap();
    let input = alice
        .find(Locator::Css("[data-testid=upload-input]"))
        .await
        .unwrap();
    let started = Instant::now();
    input.send_keys(&path.to_string_lossy()).await.unwrap();
    wait_for(&alice, "[data-testid=transfer][data-state=done]").await;
    eprintln!(
        "10 MiB upload in the browser: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    screenshot(&alice, "upload-done").await;

    // Bob's file list refreshes by itself; he downloads the file.
    let button = wait_for(
        &bob,
        "[data-testid=file][data-file-name='report.bin'] [data-testid=download]",
    )
    .await;
    let started = Instant::now();
    button.click().await.unwrap();
    wait_for(&bob, "[data-testid=transfer][data-state=done]").await;
    eprintln!(
        "10 MiB download in the browser: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    screenshot(&bob, "download-done").await;
    let saved = chat.downloads.path().join("report.bin");
    let deadline = Instant::now() + patience();
    loop {
        if std::fs::metadata(&saved).map(|m| m.len()).ok() == Some(data.len() as u64) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} was not saved",
            saved.display()
        );
        tokio::task::yield_now().await;
    }
    assert_eq!(std::fs::read(&saved).unwrap(), data);
    alice.close().await.unwrap();
    bob.close().await.unwrap();
    chat.stop().await;
}

#[tokio::test]
#[ignore = "needs the built web app and Chromium; run by cargo xtask test"]
async fn a_reload_keeps_the_session_and_the_unread_messages() {
    let chat = Chat::start().await;
    let alice = chat.browser().await;
    let bob = chat.browser().await;
    sign_in(&alice, "alice").await;
    sign_in(&bob, "bob").await;
    let session_before = bob
        .execute("return sessionStorage.getItem('chat.session')", vec![])
        .await
        .unwrap();

    wait_for(&alice, "[data-testid=user][data-user-name=bob]")
        .await
        .click()
        .await
        .unwrap();
    send(&alice, "read me after the reload").await;
    wait_for(
        &bob,
        "[data-testid=conversation][data-title=alice] [data-testid=unread]",
    )
    .await;

    bob.refresh().await.unwrap();
    wait_for(&bob, "[data-testid=connection-state][data-state=online]").await;
    let session_after = bob
        .execute("return sessionStorage.getItem('chat.session')", vec![])
        .await
        .unwrap();
    assert_eq!(
        session_before, session_after,
        "the same session was resumed"
    );
    assert!(
        bob.find(Locator::Css("[data-testid=name-input]"))
            .await
            .is_err(),
        "no sign-in form"
    );
    wait_for(
        &bob,
        "[data-testid=conversation][data-title=alice] [data-testid=unread]",
    )
    .await;
    screenshot(&bob, "after-reload").await;
    wait_for(&bob, "[data-testid=conversation][data-title=alice]")
        .await
        .click()
        .await
        .unwrap();
    wait_for_message(&bob, "read me after the reload").await;

    // Messages still flow after the reload.
    send(&alice, "and this one too").await;
    wait_for_message(&bob, "and this one too").await;
    alice.close().await.unwrap();
    bob.close().await.unwrap();
    chat.stop().await;
}

#[tokio::test]
#[ignore = "needs the built web app and Chromium; run by cargo xtask test"]
async fn a_dropped_connection_reconnects_resumes_and_delivers_what_was_missed() {
    let mut chat = Chat::start().await;
    let alice = chat.browser().await;
    let bob = chat.browser().await;
    sign_in(&alice, "alice").await;
    sign_in(&bob, "bob").await;
    let session = bob
        .execute("return sessionStorage.getItem('chat.session')", vec![])
        .await
        .unwrap();
    wait_for(&alice, "[data-testid=user][data-user-name=bob]")
        .await
        .click()
        .await
        .unwrap();

    // Every tunnel drops; the gateway comes back on the same address.
    chat.restart_gateway().await;
    wait_for(&bob, "[data-testid=connection-state][data-state=online]").await;
    wait_for(&alice, "[data-testid=connection-state][data-state=online]").await;
    send(&alice, "sent after the drop").await;
    wait_for(&bob, "[data-testid=conversation][data-title=alice]")
        .await
        .click()
        .await
        .unwrap();
    wait_for_message(&bob, "sent after the drop").await;
    let after = bob
        .execute("return sessionStorage.getItem('chat.session')", vec![])
        .await
        .unwrap();
    assert_eq!(session, after, "the session was resumed, not replaced");
    screenshot(&bob, "after-reconnect").await;
    alice.close().await.unwrap();
    bob.close().await.unwrap();
    chat.stop().await;
}
