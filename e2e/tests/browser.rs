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
        // Not a spin: the browser needs the cores to write the file.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
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

/// Empties a field and types `text` into it.
async fn fill(c: &fantoccini::Client, css: &str, text: &str) {
    let field = wait_for(c, css).await;
    field.clear().await.expect("clearing a field");
    if !text.is_empty() {
        field.send_keys(text).await.expect("typing");
    }
}

/// Clicks the first element matching `css`.
async fn click(c: &fantoccini::Client, css: &str) {
    wait_for(c, css).await.click().await.expect("clicking");
}

/// Every key and value the page keeps in session storage, local storage
/// and IndexedDB (database names), as one string.
async fn everything_stored(c: &fantoccini::Client) -> String {
    let stored = c
        .execute(
            "const all = [];
             for (const s of [sessionStorage, localStorage]) {
               for (let i = 0; i < s.length; i++) { const k = s.key(i); all.push(k, s.getItem(k)); }
             }
             return all.join('\\n');",
            vec![],
        )
        .await
        .expect("reading the storage");
    let mut out = stored.as_str().unwrap_or_default().to_owned();
    // IndexedDB: the names of the databases (the history's is one).
    if let Ok(dbs) = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             (indexedDB.databases ? indexedDB.databases() : Promise.resolve([]))
               .then(d => done(d.map(x => x.name).join(',')), () => done(''));",
            vec![],
        )
        .await
    {
        out.push_str(dbs.as_str().unwrap_or_default());
    }
    out
}

/// The user number the page signed in as (from its persisted state).
async fn own_user(c: &fantoccini::Client) -> serde_json::Value {
    c.execute(
        "return JSON.parse(sessionStorage.getItem('chat.state')).me[0]",
        vec![],
    )
    .await
    .expect("reading the own user number")
}

/// Waits until `probe` (a JavaScript expression) is true.
async fn wait_until_js(c: &fantoccini::Client, what: &str, probe: &str) {
    let deadline = Instant::now() + patience();
    loop {
        let v = c.execute(&format!("return !!({probe})"), vec![]).await;
        if matches!(v, Ok(serde_json::Value::Bool(true))) {
            return;
        }
        if Instant::now() > deadline {
            screenshot(c, "failure").await;
            panic!("{what}: {probe} did not become true");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Waits until no element matches `css`.
async fn wait_gone(c: &fantoccini::Client, css: &str) {
    let deadline = Instant::now() + patience();
    while c.find(Locator::Css(css)).await.is_ok() {
        assert!(Instant::now() < deadline, "{css} did not go away");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Signs out and waits for the sign-in form and for `other` to see the
/// user offline (the server has let the old session's connection go).
async fn sign_out(c: &fantoccini::Client, name: &str, other: &fantoccini::Client) {
    click(c, "[data-testid=sign-out]").await;
    click(c, "[data-testid=sign-out-keep]").await;
    wait_for(c, "[data-testid=name-input]").await;
    wait_gone(other, &format!("[data-testid=user][data-user-name={name}]")).await;
}

#[tokio::test]
#[ignore = "needs the built web app and Chromium; run by cargo xtask test"]
async fn a_name_claimed_with_a_password_needs_it_and_the_password_is_never_stored() {
    const PASSWORD: &str = "correct horse battery";
    let chat = Chat::start().await;
    let dora = chat.browser().await;
    let bob = chat.browser().await;
    sign_in(&bob, "bob").await;

    // Too short: refused in the page, next to the password field.
    fill(&dora, "[data-testid=name-input]", "dora").await;
    fill(&dora, "[data-testid=password-input]", "short").await;
    click(&dora, "[data-testid=protect]").await;
    click(&dora, "[data-testid=sign-in]").await;
    let error = wait_for(&dora, "[data-testid=password-error]").await;
    assert!(error.text().await.unwrap().contains("at least 8"));
    screenshot(&dora, "password-too-short").await;

    // Claimed with a good one.
    fill(&dora, "[data-testid=password-input]", PASSWORD).await;
    click(&dora, "[data-testid=sign-in]").await;
    wait_for(&dora, "[data-testid=connection-state][data-state=online]").await;
    wait_for(&dora, "[data-testid=me]").await;
    let user = own_user(&dora).await;
    let stored = everything_stored(&dora).await;
    assert!(
        stored.contains("chat.session"),
        "the session is kept: {stored}"
    );
    assert!(
        !stored.contains(PASSWORD) && !stored.contains("horse"),
        "the password is not stored: {stored}"
    );
    screenshot(&dora, "password-claimed").await;

    // A reload resumes the session from its number alone.
    dora.refresh().await.unwrap();
    wait_for(&dora, "[data-testid=connection-state][data-state=online]").await;
    wait_for(&dora, "[data-testid=me]").await;
    assert_eq!(own_user(&dora).await, user, "the same user after a reload");

    // Without the password, the name is refused as protected and the
    // password field is focused.
    sign_out(&dora, "dora", &bob).await;
    fill(&dora, "[data-testid=name-input]", "dora").await;
    click(&dora, "[data-testid=sign-in]").await;
    let error = wait_for(&dora, "[data-testid=sign-in-error]").await;
    assert!(
        error.text().await.unwrap().contains("protected"),
        "{:?}",
        error.text().await
    );
    wait_until_js(
        &dora,
        "the password field gets focus",
        "document.activeElement && document.activeElement.id === 'password'",
    )
    .await;
    screenshot(&dora, "name-protected").await;

    // A wrong password is explained next to the password field.
    fill(&dora, "[data-testid=password-input]", "not the password").await;
    click(&dora, "[data-testid=sign-in]").await;
    let error = wait_for(&dora, "[data-testid=password-error]").await;
    assert!(
        error
            .text()
            .await
            .unwrap()
            .to_lowercase()
            .contains("wrong name or password"),
        "{:?}",
        error.text().await
    );
    assert!(
        dora.find(Locator::Css("[data-testid=me]")).await.is_err(),
        "not signed in"
    );
    screenshot(&dora, "wrong-password").await;

    // The right one signs in as the same user, and the chat works.
    fill(&dora, "[data-testid=password-input]", PASSWORD).await;
    click(&dora, "[data-testid=sign-in]").await;
    wait_for(&dora, "[data-testid=connection-state][data-state=online]").await;
    wait_for(&dora, "[data-testid=me]").await;
    assert_eq!(own_user(&dora).await, user, "the same user");
    let stored = everything_stored(&dora).await;
    assert!(
        !stored.contains(PASSWORD),
        "the password is not stored: {stored}"
    );

    click(&bob, "[data-testid=user][data-user-name=dora]").await;
    send(&bob, "is it really you").await;
    click(&dora, "[data-testid=conversation][data-title=bob]").await;
    wait_for_message(&dora, "is it really you").await;
    send(&dora, "it is").await;
    wait_for_message(&bob, "it is").await;
    screenshot(&dora, "signed-in-with-password").await;

    dora.close().await.unwrap();
    bob.close().await.unwrap();
    chat.stop().await;
}

#[tokio::test]
#[ignore = "needs the built web app and Chromium; run by cargo xtask test"]
async fn a_signed_in_user_sets_and_changes_the_password_of_their_name() {
    const FIRST: &str = "first password";
    const SECOND: &str = "second password";
    let chat = Chat::start().await;
    let erin = chat.browser().await;
    let bob = chat.browser().await;
    sign_in(&bob, "bob").await;
    sign_in(&erin, "erin").await;

    // Set: the name has no password yet, so the current one stays empty.
    click(&erin, "[data-testid=password-open]").await;
    fill(&erin, "[data-testid=new-password]", FIRST).await;
    fill(&erin, "[data-testid=repeat-password]", "first passwork").await;
    click(&erin, "[data-testid=change-password]").await;
    let error = wait_for(&erin, "[data-testid=new-password-error]").await;
    assert!(error.text().await.unwrap().contains("not the same"));
    fill(&erin, "[data-testid=repeat-password]", FIRST).await;
    click(&erin, "[data-testid=change-password]").await;
    wait_for(&erin, "[data-testid=password-changed]").await;
    screenshot(&erin, "password-set").await;

    // Change: a wrong current password is explained next to its field.
    fill(&erin, "[data-testid=old-password]", "not the first one").await;
    fill(&erin, "[data-testid=new-password]", SECOND).await;
    fill(&erin, "[data-testid=repeat-password]", SECOND).await;
    click(&erin, "[data-testid=change-password]").await;
    let error = wait_for(&erin, "[data-testid=old-password-error]").await;
    assert!(error.text().await.unwrap().contains("wrong"));
    screenshot(&erin, "password-change-wrong-current").await;
    fill(&erin, "[data-testid=old-password]", FIRST).await;
    click(&erin, "[data-testid=change-password]").await;
    wait_for(&erin, "[data-testid=password-changed]").await;
    let stored = everything_stored(&erin).await;
    assert!(
        !stored.contains(FIRST) && !stored.contains(SECOND),
        "no password is stored: {stored}"
    );
    click(&erin, "[data-testid=close-password]").await;
    wait_gone(&erin, "[data-testid=password-form]").await;

    // The new password is the one that signs in.
    sign_out(&erin, "erin", &bob).await;
    fill(&erin, "[data-testid=name-input]", "erin").await;
    fill(&erin, "[data-testid=password-input]", FIRST).await;
    click(&erin, "[data-testid=sign-in]").await;
    wait_for(&erin, "[data-testid=password-error]").await;
    fill(&erin, "[data-testid=password-input]", SECOND).await;
    click(&erin, "[data-testid=sign-in]").await;
    wait_for(&erin, "[data-testid=connection-state][data-state=online]").await;
    wait_for(&erin, "[data-testid=me]").await;
    screenshot(&erin, "signed-in-with-changed-password").await;

    erin.close().await.unwrap();
    bob.close().await.unwrap();
    chat.stop().await;
}

#[tokio::test]
#[ignore = "needs the built web app and Chromium; run by cargo xtask test"]
async fn the_history_survives_closing_every_tab_and_is_cleared_only_when_asked() {
    let chat = Chat::start().await;
    let alice = chat.browser().await;
    let bob = chat.browser().await;
    sign_in(&alice, "alice").await;
    sign_in(&bob, "bob").await;
    click(&alice, "[data-testid=user][data-user-name=bob]").await;
    send(&alice, "kept across tabs").await;
    click(&bob, "[data-testid=conversation][data-title=alice]").await;
    wait_for_message(&bob, "kept across tabs").await;
    send(&bob, "me too").await;
    wait_for_message(&alice, "me too").await;
    wait_for(&bob, "[data-testid=message][data-state=sent]").await;

    // Every tab of the app closes: a blank tab keeps the browser open.
    let app_tab = bob.window().await.unwrap();
    let blank = bob.new_window(true).await.unwrap().handle;
    bob.switch_to_window(app_tab).await.unwrap();
    bob.close_window().await.unwrap();
    bob.switch_to_window(blank).await.unwrap();
    wait_gone(&alice, "[data-testid=user][data-user-name=bob]").await;

    // Opened again: a new tab has no session, so bob signs in, and finds
    // the conversation as he left it.
    bob.goto(&chat.url()).await.unwrap();
    sign_in(&bob, "bob").await;
    click(&bob, "[data-testid=conversation][data-title=alice]").await;
    wait_for_message(&bob, "kept across tabs").await;
    wait_for_message(&bob, "me too").await;
    screenshot(&bob, "history-after-reopening").await;

    // Signing out and keeping it, then in again: still there.
    sign_out(&bob, "bob", &alice).await;
    sign_in(&bob, "bob").await;
    click(&bob, "[data-testid=conversation][data-title=alice]").await;
    wait_for_message(&bob, "me too").await;

    // Cleared: gone for good.
    click(&bob, "[data-testid=sign-out]").await;
    screenshot(&bob, "sign-out-keep-or-clear").await;
    click(&bob, "[data-testid=sign-out-clear]").await;
    wait_for(&bob, "[data-testid=name-input]").await;
    wait_gone(&alice, "[data-testid=user][data-user-name=bob]").await;
    sign_in(&bob, "bob").await;
    wait_for(&bob, "[data-history=loaded]").await;
    assert!(
        bob.find(Locator::Css("[data-testid=conversation][data-title=alice]"))
            .await
            .is_err(),
        "the cleared conversation is gone"
    );
    alice.close().await.unwrap();
    bob.close().await.unwrap();
    chat.stop().await;
}

/// The messages in the open conversation, as the page shows them: text,
/// whether the sender's name is shown, and the time's hover title.
async fn shown_messages(c: &fantoccini::Client) -> Vec<(String, bool, String)> {
    let rows = c
        .execute(
            "return [...document.querySelectorAll('[data-testid=message]')].map(m => [
               m.querySelector('.text').innerText,
               !!m.querySelector('.from'),
               (m.querySelector('time') || {}).title || '']);",
            vec![],
        )
        .await
        .expect("reading the messages");
    serde_json::from_value(rows).expect("rows of three")
}

#[tokio::test]
#[ignore = "needs the built web app and Chromium; run by cargo xtask test"]
async fn messages_read_like_a_chat_with_times_days_groups_and_an_unread_marker() {
    let chat = Chat::start().await;
    let alice = chat.browser().await;
    let bob = chat.browser().await;
    sign_in(&alice, "alice").await;
    sign_in(&bob, "bob").await;
    click(&alice, "[data-testid=user][data-user-name=bob]").await;
    // Shift+Enter keeps a new line; a long word must wrap, not widen the page.
    let long_word = "x".repeat(400);
    for text in ["first of three", "second of three"] {
        send(&alice, text).await;
    }
    let composer = wait_for(&alice, "[data-testid=composer]").await;
    composer
        .send_keys("line one\u{E008}\u{E007}\u{E000}line two\u{E007}")
        .await
        .unwrap();
    send(&alice, &long_word).await;
    wait_for(
        &bob,
        "[data-testid=conversation][data-title=alice] [data-testid=unread]",
    )
    .await;
    click(&bob, "[data-testid=conversation][data-title=alice]").await;
    wait_for_message(&bob, &long_word).await;

    // The unread marker sits before the first of them.
    let marker_next = bob
        .execute(
            "const m = document.querySelector('[data-testid=unread-marker]');
             return m && m.nextElementSibling.querySelector('.text').innerText;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(marker_next, "first of three");
    // One day separator, for today; one name over the run of four.
    let days = bob
        .find_all(Locator::Css("[data-testid=day-separator]"))
        .await
        .unwrap();
    assert_eq!(days.len(), 1);
    assert_eq!(days[0].text().await.unwrap().to_lowercase(), "today");
    let shown = shown_messages(&bob).await;
    assert_eq!(shown.len(), 4, "{shown:?}");
    assert_eq!(
        shown.iter().map(|m| m.1).collect::<Vec<_>>(),
        vec![true, false, false, false],
        "grouped under one name"
    );
    assert_eq!(shown[2].0, "line one\nline two", "the new line is kept");
    let year = bob
        .execute("return String(new Date().getFullYear())", vec![])
        .await
        .unwrap();
    for (text, _, title) in &shown {
        assert!(
            title.contains(year.as_str().unwrap_or("?")),
            "{text}: the full date on hover, got {title:?}"
        );
    }
    let fits = bob
        .execute(
            "const l = document.querySelector('[data-testid=messages]');
             return l.scrollWidth <= l.clientWidth;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(fits, serde_json::Value::Bool(true), "the long word wraps");
    screenshot(&bob, "chat-times-days-groups").await;

    // Alice's own run: the state shows while it matters, then a quiet tick.
    wait_for(&alice, "[data-testid=message][data-state=sent]").await;
    let ticks = alice
        .execute(
            "return [...document.querySelectorAll('[data-testid=message][data-state=sent] .status')]
               .map(s => s.innerText.trim())",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        ticks
            .as_array()
            .is_some_and(|t| !t.is_empty() && t.iter().all(|s| s == "✓")),
        "{ticks:?}"
    );
    screenshot(&alice, "chat-own-run").await;

    // Scrolled up, a new message offers a jump to the latest.
    for n in 0..30 {
        send(&alice, &format!("filler {n}")).await;
    }
    wait_for_message(&bob, "filler 29").await;
    bob.execute(
        "document.querySelector('[data-testid=messages]').scrollTop = 0",
        vec![],
    )
    .await
    .unwrap();
    bob.execute(
        "document.querySelector('[data-testid=messages]').dispatchEvent(new Event('scroll'))",
        vec![],
    )
    .await
    .unwrap();
    send(&alice, "one more").await;
    click(&bob, "[data-testid=jump-latest]").await;
    wait_gone(&bob, "[data-testid=jump-latest]").await;
    wait_for_message(&bob, "one more").await;
    alice.close().await.unwrap();
    bob.close().await.unwrap();
    chat.stop().await;
}

#[tokio::test]
#[ignore = "needs the built web app and Chromium; run by cargo xtask test"]
async fn an_http_link_opens_and_a_javascript_url_stays_text() {
    let chat = Chat::start().await;
    let alice = chat.browser().await;
    let bob = chat.browser().await;
    sign_in(&alice, "alice").await;
    sign_in(&bob, "bob").await;
    let target = format!("http://{}/healthz", chat.addr);
    click(&alice, "[data-testid=user][data-user-name=bob]").await;
    let text = format!("status: {target}. not javascript:alert(document.domain) here");
    send(&alice, &text).await;
    click(&bob, "[data-testid=conversation][data-title=alice]").await;
    wait_for_message(&bob, &text).await;
    let links = bob
        .find_all(Locator::Css("[data-testid=message] a"))
        .await
        .unwrap();
    assert_eq!(links.len(), 1, "only the http URL is a link");
    let link = &links[0];
    assert_eq!(
        link.attr("href").await.unwrap().as_deref(),
        Some(target.as_str())
    );
    assert_eq!(
        link.attr("rel").await.unwrap().as_deref(),
        Some("noopener noreferrer")
    );
    assert!(bob
        .find(Locator::Css("a[href^='javascript' i]"))
        .await
        .is_err());
    screenshot(&bob, "links").await;

    // Clicking it opens the page in a new tab.
    let before = bob.windows().await.unwrap();
    link.click().await.unwrap();
    let deadline = Instant::now() + patience();
    let opened = loop {
        let now = bob.windows().await.unwrap();
        if let Some(w) = now.into_iter().find(|w| !before.contains(w)) {
            break w;
        }
        assert!(Instant::now() < deadline, "the link opened no tab");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    bob.switch_to_window(opened).await.unwrap();
    wait_until_js(
        &bob,
        "the linked page loads",
        &format!("location.href === '{target}'"),
    )
    .await;
    alice.close().await.unwrap();
    bob.close().await.unwrap();
    chat.stop().await;
}

/// Whether the element matching `css` is displayed.
async fn shown(c: &fantoccini::Client, css: &str) -> bool {
    match c.find(Locator::Css(css)).await {
        Ok(e) => e.is_displayed().await.unwrap_or(false),
        Err(_) => false,
    }
}

/// Waits until the element matching `css` is displayed or hidden.
async fn wait_shown(c: &fantoccini::Client, css: &str, want: bool) {
    let deadline = Instant::now() + patience();
    while shown(c, css).await != want {
        if Instant::now() > deadline {
            screenshot(c, "failure").await;
            panic!(
                "{css} did not become {}",
                if want { "shown" } else { "hidden" }
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
#[ignore = "needs the built web app and Chromium; run by cargo xtask test"]
async fn a_phone_shows_one_view_at_a_time_list_conversation_back_files() {
    let chat = Chat::start().await;
    let alice = chat.browser().await;
    let phone = chat.phone().await;
    sign_in(&alice, "alice").await;
    sign_in(&phone, "pat").await;
    let width = phone.execute("return innerWidth", vec![]).await.unwrap();
    assert_eq!(width, 390, "the phone's screen");
    click(&alice, "[data-testid=user][data-user-name=pat]").await;
    send(&alice, "hello on your phone").await;

    // The list alone, with the unread count.
    wait_for(
        &phone,
        "[data-testid=conversation][data-title=alice] [data-testid=unread]",
    )
    .await;
    assert!(!shown(&phone, "[data-testid=composer]").await);
    assert!(!shown(&phone, "[data-testid=files-panel]").await);
    screenshot(&phone, "phone-list").await;

    // A conversation alone, with a way back and the composer.
    click(&phone, "[data-testid=conversation][data-title=alice]").await;
    wait_shown(&phone, "[data-testid=composer]", true).await;
    wait_for_message(&phone, "hello on your phone").await;
    assert!(
        !shown(&phone, "[data-testid=users]").await,
        "the list is hidden"
    );
    let back_height = phone
        .execute(
            "return document.querySelector('[data-testid=back]').getBoundingClientRect().height",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        back_height.as_f64().unwrap_or(0.0) >= 44.0,
        "a touch-sized back control: {back_height}"
    );
    send(&phone, "typed on the phone").await;
    wait_for_message(&alice, "typed on the phone").await;
    screenshot(&phone, "phone-conversation").await;

    // Back to the list, then the files as a view of their own.
    click(&phone, "[data-testid=back]").await;
    wait_shown(&phone, "[data-testid=users]", true).await;
    assert!(!shown(&phone, "[data-testid=composer]").await);
    click(&phone, "[data-testid=show-files]").await;
    wait_shown(&phone, "[data-testid=files-panel]", true).await;
    assert!(!shown(&phone, "[data-testid=users]").await);
    screenshot(&phone, "phone-files").await;
    click(&phone, "[data-testid=files-back]").await;
    wait_shown(&phone, "[data-testid=users]", true).await;

    // A wide screen shows everything and no phone controls.
    assert!(shown(&alice, "[data-testid=files-panel]").await);
    assert!(!shown(&alice, "[data-testid=back]").await);
    alice.close().await.unwrap();
    phone.close().await.unwrap();
    chat.stop().await;
}

#[tokio::test]
#[ignore = "needs the built web app and Chromium; run by cargo xtask test"]
async fn a_message_to_a_hidden_tab_shows_a_notification_and_the_favicon_counts_it() {
    let chat = Chat::start().await;
    let alice = chat.browser().await;
    let bob = chat.browser().await;
    sign_in(&alice, "alice").await;
    sign_in(&bob, "bob").await;
    // The browser grants the permission (the harness's preferences); Bob
    // opts in.
    click(&bob, "[data-testid=notifications]").await;
    wait_for(&bob, "[data-testid=notifications][aria-pressed=true]").await;
    screenshot(&bob, "notifications-on").await;
    // Each notification the page makes is also posted on a channel that
    // another tab of the same origin can hear.
    bob.execute(
        "const Real = window.Notification, spy = new BroadcastChannel('test-notifications');
         window.Notification = class extends Real {
           constructor(title, options) {
             super(title, options);
             spy.postMessage([title, options && options.body, document.visibilityState]);
           }
         };",
        vec![],
    )
    .await
    .unwrap();

    // Another tab in front hides the app's.
    let app_tab = bob.window().await.unwrap();
    let other = bob.new_window(true).await.unwrap().handle;
    bob.switch_to_window(other).await.unwrap();
    bob.goto(&format!("http://{}/healthz", chat.addr))
        .await
        .unwrap();
    bob.execute(
        "window.heard = [];
         window.channel = new BroadcastChannel('test-notifications');
         window.channel.onmessage = e => window.heard.push(e.data);",
        vec![],
    )
    .await
    .unwrap();

    click(&alice, "[data-testid=user][data-user-name=bob]").await;
    send(&alice, "are you there?").await;
    wait_until_js(&bob, "a notification", "window.heard.length > 0").await;
    let heard = bob.execute("return window.heard[0]", vec![]).await.unwrap();
    assert_eq!(
        heard,
        serde_json::json!(["alice", "are you there?", "hidden"]),
        "a notification naming the sender, shown while the tab was hidden"
    );

    // Back in the app's tab: the title and the favicon count it.
    bob.switch_to_window(app_tab).await.unwrap();
    wait_until_js(
        &bob,
        "the favicon's badge",
        "document.querySelector('link[rel~=icon]').dataset.unread === '1' \
         && document.title === '(1) Chat'",
    )
    .await;
    screenshot(&bob, "notification-unread-badge").await;
    alice.close().await.unwrap();
    bob.close().await.unwrap();
    chat.stop().await;
}

#[tokio::test]
#[ignore = "needs the built web app and Chromium; run by cargo xtask test"]
async fn use_here_moves_a_session_to_a_second_tab_and_the_first_says_where_it_went() {
    let chat = Chat::start().await;
    let tabs = chat.browser().await;
    let bob = chat.browser().await;
    sign_in(&tabs, "alice").await;
    sign_in(&bob, "bob").await;
    let session = tabs
        .execute("return sessionStorage.getItem('chat.session')", vec![])
        .await
        .unwrap();

    // A second tab of the same browser sees alice signed in next door.
    let first = tabs.window().await.unwrap();
    let second = tabs.new_window(true).await.unwrap().handle;
    tabs.switch_to_window(second.clone()).await.unwrap();
    tabs.goto(&chat.url()).await.unwrap();
    wait_for(&tabs, "[data-testid=other-tab][data-name=alice]").await;
    screenshot(&tabs, "second-tab-use-here").await;
    click(&tabs, "[data-testid=use-here]").await;
    wait_for(&tabs, "[data-testid=connection-state][data-state=online]").await;
    let me = wait_for(&tabs, "[data-testid=me]").await;
    assert_eq!(me.text().await.unwrap(), "alice");
    let moved = tabs
        .execute("return sessionStorage.getItem('chat.session')", vec![])
        .await
        .unwrap();
    assert_eq!(moved, session, "the same session, resumed here");

    // It works here: bob gets a message from this tab.
    click(&tabs, "[data-testid=user][data-user-name=bob]").await;
    send(&tabs, "from the second tab").await;
    click(&bob, "[data-testid=conversation][data-title=alice]").await;
    wait_for_message(&bob, "from the second tab").await;

    // The first tab says where its session went, and offers it back.
    tabs.switch_to_window(first).await.unwrap();
    let notice = wait_for(&tabs, "[data-testid=notice]").await;
    assert!(
        notice
            .text()
            .await
            .unwrap()
            .contains("another tab of this browser"),
        "{:?}",
        notice.text().await
    );
    wait_for(&tabs, "[data-testid=connection-state][data-state=offline]").await;
    let back = wait_for(&tabs, "[data-testid=reconnect]").await;
    assert_eq!(back.text().await.unwrap(), "Use here");
    screenshot(&tabs, "first-tab-session-moved").await;
    tabs.close().await.unwrap();
    bob.close().await.unwrap();
    chat.stop().await;
}

/// Waits until `path` holds `len` bytes, for up to `limit`.
async fn wait_for_file(path: &std::path::Path, len: u64, limit: std::time::Duration) {
    let deadline = Instant::now() + limit;
    while std::fs::metadata(path).map(|m| m.len()).ok() != Some(len) {
        assert!(
            Instant::now() < deadline,
            "{} was not saved",
            path.display()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The page's WebAssembly memory, which only grows: the most it held.
async fn wasm_memory(c: &fantoccini::Client) -> u64 {
    let v = c
        .execute(
            "return Number(document.querySelector('.app').dataset.wasmMemory)",
            vec![],
        )
        .await
        .unwrap();
    v.as_u64().unwrap_or(u64::MAX)
}

#[tokio::test]
#[ignore = "needs the built web app and Chromium; run by cargo xtask test"]
async fn a_large_file_goes_up_and_down_without_ever_sitting_whole_in_the_page() {
    // CHAT_E2E_LARGE_MIB changes the size (200 MiB by default).
    let mib: u64 = std::env::var("CHAT_E2E_LARGE_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let size = mib * 1024 * 1024;
    // A transfer of this size takes far longer than an ordinary event.
    let limit = patience() * 2 + std::time::Duration::from_secs(mib / 2);
    let chat = Chat::start().await;
    let alice = chat.browser().await;
    let bob = chat.browser().await;
    sign_in(&alice, "alice").await;
    sign_in(&bob, "bob").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("large.bin");
    let data: Vec<u8> = (0..size as u32).map(|i| (i ^ (i >> 11)) as u8).collect();
    std::fs::write(&path, &data).unwrap();

    let input = alice
        .find(Locator::Css("[data-testid=upload-input]"))
        .await
        .unwrap();
    let started = Instant::now();
    input.send_keys(&path.to_string_lossy()).await.unwrap();
    alice
        .wait()
        .at_most(limit)
        .for_element(Locator::Css("[data-testid=transfer][data-state=done]"))
        .await
        .expect("the upload finishes");
    let up = started.elapsed();

    let button = wait_for(
        &bob,
        "[data-testid=file][data-file-name='large.bin'] [data-testid=download]",
    )
    .await;
    let started = Instant::now();
    button.click().await.unwrap();
    bob.wait()
        .at_most(limit)
        .for_element(Locator::Css("[data-testid=transfer][data-state=done]"))
        .await
        .expect("the download finishes");
    let down = started.elapsed();
    let saved = chat.downloads.path().join("large.bin");
    wait_for_file(&saved, size, limit).await;
    assert!(
        std::fs::read(&saved).unwrap() == data,
        "the bytes arrived as sent"
    );
    screenshot(&bob, "large-download-done").await;

    let (uploader, downloader) = (wasm_memory(&alice).await, wasm_memory(&bob).await);
    let heap = bob
        .execute(
            "return performance.memory ? performance.memory.usedJSHeapSize : 0",
            vec![],
        )
        .await
        .unwrap();
    eprintln!(
        "{mib} MiB: upload {:.1} s, download {:.1} s; wasm memory at most {:.1} MiB (uploader), \
         {:.1} MiB (downloader); downloader's JS heap afterwards {:.1} MiB",
        up.as_secs_f64(),
        down.as_secs_f64(),
        uploader as f64 / 1048576.0,
        downloader as f64 / 1048576.0,
        heap.as_f64().unwrap_or(0.0) / 1048576.0
    );
    // Neither page ever held the file: its memory stays far below its size.
    let bound = 64 * 1024 * 1024;
    assert!(
        uploader < bound && uploader < size,
        "uploader held {uploader} bytes"
    );
    assert!(
        downloader < bound && downloader < size,
        "downloader held {downloader} bytes"
    );
    alice.close().await.unwrap();
    bob.close().await.unwrap();
    chat.stop().await;
}

#[tokio::test]
#[ignore = "needs the built web app and Chromium; run by cargo xtask test"]
async fn several_tabs_reconnect_after_a_gateway_restart_each_to_its_own_session() {
    let mut chat = Chat::start().await;
    let names = ["ann", "ben", "cat", "dan"];
    let mut pages = Vec::new();
    for name in names {
        let page = chat.browser().await;
        sign_in(&page, name).await;
        pages.push(page);
    }
    let mut sessions = Vec::new();
    for page in &pages {
        sessions.push(
            page.execute("return sessionStorage.getItem('chat.session')", vec![])
                .await
                .unwrap(),
        );
    }
    chat.restart_gateway().await;
    for page in &pages {
        wait_for(page, "[data-testid=connection-state][data-state=online]").await;
    }
    for (page, session) in pages.iter().zip(&sessions) {
        let now = page
            .execute("return sessionStorage.getItem('chat.session')", vec![])
            .await
            .unwrap();
        assert_eq!(&now, session, "each resumed its own session");
    }
    // Everyone hears a broadcast sent after the restart.
    send(&pages[0], "all back").await;
    for page in &pages[1..] {
        click(page, "[data-testid=conversation][data-title=Everyone]").await;
        wait_for_message(page, "all back").await;
    }
    screenshot(&pages[3], "several-tabs-reconnected").await;
    for page in pages {
        page.close().await.unwrap();
    }
    chat.stop().await;
}

/// Saves a screenshot for the README: under `target/e2e/` always, and
/// under `docs/screenshots/` when CHAT_UPDATE_SCREENSHOTS is set.
async fn readme_screenshot(c: &fantoccini::Client, name: &str) {
    screenshot(c, &format!("readme-{name}")).await;
    if std::env::var_os("CHAT_UPDATE_SCREENSHOTS").is_some() {
        let dir = e2e::root().join("docs/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let png = c.screenshot().await.unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
}

#[tokio::test]
#[ignore = "needs the built web app and Chromium; run by cargo xtask test"]
async fn the_readme_screenshots_show_desktop_and_phone_in_light_and_dark() {
    let chat = Chat::start().await;
    let dark = serde_json::json!({ "args": [
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--window-size=1280,800", "--blink-settings=preferredColorScheme=0"
    ]});
    let light = chat
        .browser_with(serde_json::json!({ "args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--window-size=1280,800", "--blink-settings=preferredColorScheme=1"
        ]}))
        .await;
    let night = chat.browser_with(dark).await;
    let phone = chat.phone().await;
    sign_in(&light, "alice").await;
    sign_in(&night, "bob").await;
    sign_in(&phone, "carol").await;
    let is_dark = night
        .execute(
            "return matchMedia('(prefers-color-scheme: dark)').matches",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(is_dark, true, "the dark window prefers dark");

    send(
        &light,
        "Morning all! Release notes: https://example.org/notes",
    )
    .await;
    click(&night, "[data-testid=user][data-user-name=alice]").await;
    for text in ["Hi Alice", "Reading them now.\nLooks good."] {
        send(&night, text).await;
    }
    click(&light, "[data-testid=conversation][data-title=bob]").await;
    wait_for_message(&light, "Hi Alice").await;
    send(&light, "Great, thanks Bob").await;
    wait_for_message(&night, "Great, thanks Bob").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plan.pdf");
    std::fs::write(&path, vec![b'%'; 48 * 1024]).unwrap();
    light
        .find(Locator::Css("[data-testid=upload-input]"))
        .await
        .unwrap()
        .send_keys(&path.to_string_lossy())
        .await
        .unwrap();
    wait_for(&night, "[data-testid=file][data-file-name='plan.pdf']").await;
    wait_for(&light, "[data-testid=file][data-file-name='plan.pdf']").await;
    readme_screenshot(&light, "desktop-light").await;
    readme_screenshot(&night, "desktop-dark").await;

    click(&phone, "[data-testid=conversation][data-title=Everyone]").await;
    wait_for_message(
        &phone,
        "Morning all! Release notes: https://example.org/notes",
    )
    .await;
    readme_screenshot(&phone, "phone-light").await;
    let phone_dark = chat
        .browser_with(serde_json::json!({
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--no-first-run", "--blink-settings=preferredColorScheme=0"],
            "mobileEmulation": { "deviceMetrics": { "width": 390, "height": 844, "pixelRatio": 3.0, "touch": true } }
        }))
        .await;
    sign_in(&phone_dark, "dave").await;
    click(&phone_dark, "[data-testid=show-files]").await;
    wait_for(&phone_dark, "[data-testid=file][data-file-name='plan.pdf']").await;
    readme_screenshot(&phone_dark, "phone-dark-files").await;
    for c in [light, night, phone, phone_dark] {
        c.close().await.unwrap();
    }
    chat.stop().await;
}
