//! The root component.

use std::rc::Rc;

use gloo_timers::callback::Interval;
use yew::prelude::*;

use crate::browser;
use crate::components::{
    Conversation, Credentials, FilesPanel, Header, PasswordChange, PasswordForm, Sidebar, SignIn,
};
use crate::connection::{self, Connection};
use crate::history;
use crate::notify;
use crate::record;
use crate::state::{Action, Link, Peer, State, View};
use crate::tabs::{Heard, Tabs};

/// The `sessionStorage` key of the tab's snapshot (who you are, names, the
/// open conversation); the messages are in the history (IndexedDB).
pub const STATE_KEY: &str = "chat.state";
/// How often the user and file lists are refreshed.
const REFRESH_MS: u32 = 3_000;

fn initial_state() -> State {
    let notifications = notify::enabled();
    if browser::session_get(connection::NAME_KEY).is_none() {
        return State {
            notifications,
            ..State::default()
        };
    }
    let mut state = browser::session_get(STATE_KEY)
        .and_then(|json| record::state_from_json(&json))
        .unwrap_or_default();
    state.link = Link::Connecting;
    state.notifications = notifications;
    state
}

/// Notifies the user of a message that arrived while the tab is hidden, if
/// they turned notifications on. `names` are the names known so far.
fn notify_incoming(action: &Action, on: bool, names: &std::collections::HashMap<u64, String>) {
    let Action::Incoming {
        from,
        broadcast,
        text,
        ..
    } = action
    else {
        return;
    };
    if !on || !notify::hidden() {
        return;
    }
    let who = names.get(from).map_or("Someone", String::as_str);
    let (title, tag) = if *broadcast {
        (format!("{who} to everyone"), "everyone".to_owned())
    } else {
        (who.to_owned(), format!("user {from}"))
    };
    notify::show(&title, &notify::body_of(text), &tag);
}

/// What the page knows of the history it keeps for the signed-in user.
#[derive(Default)]
struct HistorySync {
    /// Whose history (see [`history::account`]).
    account: Option<String>,
    /// Whether it has been read and merged: nothing is written before, or
    /// the kept history would be overwritten by what this page has.
    loaded: bool,
    /// Each conversation as last written, to write only what changed.
    written: std::collections::HashMap<Peer, crate::state::Conversation>,
}

/// The whole app.
#[function_component]
pub fn App() -> Html {
    let state = use_reducer(initial_state);
    // What the connection's callback needs of the state, kept current by
    // the effects below (the callback outlives any one render).
    let notify_on = use_mut_ref(|| false);
    let names = use_mut_ref(std::collections::HashMap::new);
    {
        let (notify_on, names) = (notify_on.clone(), names.clone());
        use_effect_with(
            (state.notifications, state.names.clone()),
            move |(on, known)| {
                *notify_on.borrow_mut() = *on;
                *names.borrow_mut() = known.clone();
            },
        );
    }
    let conn = {
        let dispatcher = state.dispatcher();
        let (notify_on, names) = (notify_on.clone(), names.clone());
        use_memo((), move |_| {
            Connection::new(Callback::from(move |a: Action| {
                notify_incoming(&a, *notify_on.borrow(), &names.borrow());
                dispatcher.dispatch(a)
            }))
        })
    };

    {
        let conn = conn.clone();
        use_effect_with((), move |_| {
            let interval = Interval::new(REFRESH_MS, move || Connection::refresh(&conn));
            move || drop(interval)
        });
    }
    let sync = use_mut_ref(HistorySync::default);
    {
        // Signed in (or restored after a reload): read the kept history.
        let sync = sync.clone();
        let dispatcher = state.dispatcher();
        let name = state.me.as_ref().map(|(_, name)| name.clone());
        use_effect_with(name, move |name| {
            let account = name.as_deref().map(history::account);
            let mut s = sync.borrow_mut();
            if s.account != account {
                *s = HistorySync {
                    account: account.clone(),
                    ..HistorySync::default()
                };
                if let Some(account) = account {
                    let sync = sync.clone();
                    wasm_bindgen_futures::spawn_local(async move {
                        let stored = history::load(&account).await;
                        if sync.borrow().account.as_ref() != Some(&account) {
                            return; // signed out meanwhile
                        }
                        sync.borrow_mut().loaded = true;
                        match stored {
                            Ok(stored) => dispatcher.dispatch(Action::HistoryLoaded(stored)),
                            // Without storage the chat still works, for this tab.
                            Err(e) => dispatcher.dispatch(Action::Notice(Some(format!(
                                "Your history cannot be kept on this device: {e}"
                            )))),
                        }
                    });
                }
            }
        });
    }
    {
        let sync = sync.clone();
        use_effect_with(state.clone(), move |state| {
            if state.me.is_some() {
                browser::session_set(STATE_KEY, &record::state_to_json(state));
            }
            let mut s = sync.borrow_mut();
            let Some(account) = s.account.clone().filter(|_| s.loaded) else {
                return;
            };
            for (peer, c) in &state.conversations {
                if s.written.get(peer) == Some(c) {
                    continue;
                }
                s.written.insert(*peer, c.clone());
                if let Some(stored) = state.stored(*peer) {
                    let account = account.clone();
                    // IndexedDB runs a store's read-write transactions in
                    // the order they were made, so the last write wins.
                    wasm_bindgen_futures::spawn_local(async move {
                        if let Err(e) = history::save(&account, &stored).await {
                            web_sys::console::warn_1(&e.into());
                        }
                    });
                }
            }
        });
    }

    // The tab title and the favicon carry the unread count, as chat apps do.
    use_effect_with(state.total_unread(), |unread| {
        if let Some(doc) = web_sys::window().and_then(|w| w.document()) {
            doc.set_title(&match unread {
                0 => "Chat".to_owned(),
                n => format!("({n}) Chat"),
            });
        }
        notify::set_favicon(*unread);
    });
    let on_notifications = {
        let dispatcher = state.dispatcher();
        let on = state.notifications;
        Callback::from(move |_| {
            let dispatcher = dispatcher.clone();
            wasm_bindgen_futures::spawn_local(async move {
                match notify::set_enabled(!on).await {
                    Ok(now) => dispatcher.dispatch(Action::Notifications(now)),
                    Err(why) => {
                        dispatcher.dispatch(Action::Notifications(false));
                        dispatcher.dispatch(Action::Notice(Some(why)));
                    }
                }
            });
        })
    };

    // The other tabs of this browser: asked who is signed in at once, told
    // when this one is, and when it signs out.
    let tabs = {
        let conn = conn.clone();
        let dispatcher = state.dispatcher();
        use_memo((), move |_| {
            let server = browser::base_uri()
                .as_deref()
                .and_then(connection::socket_url)
                .unwrap_or_default();
            let mine: Rc<dyn Fn() -> Option<(String, u64)>> =
                Rc::new(move || Connection::signed_in_as(&conn));
            let tabs = Tabs::open(
                server,
                mine,
                Callback::from(move |heard| {
                    dispatcher.dispatch(match heard {
                        Heard::Here(name, session) => Action::TabHere(name, session),
                        Heard::Gone(name) => Action::TabGone(name),
                        Heard::Took(name) => Action::TabTook(name),
                    })
                }),
            );
            if let Some(t) = &tabs {
                t.ask();
            }
            tabs
        })
    };
    {
        let (tabs, conn) = (tabs.clone(), conn.clone());
        let online = (state.link == Link::Online)
            .then(|| state.me.clone())
            .flatten();
        use_effect_with(online, move |online| {
            if let (Some(tabs), Some(_)) = (&*tabs, online) {
                if let Some((name, session)) = Connection::signed_in_as(&conn) {
                    tabs.here(&name, session);
                }
            }
        });
    }
    let on_use_here = {
        let (tabs, conn) = (tabs.clone(), conn.clone());
        Callback::from(move |(name, session): (String, u64)| {
            if let Some(t) = &*tabs {
                t.took(&name);
            }
            Connection::take_over(&conn, &name, session);
        })
    };
    let on_sign_in = {
        let conn = conn.clone();
        Callback::from(move |c: Credentials| {
            Connection::sign_in(&conn, &c.name, c.password.as_deref())
        })
    };
    let on_password = {
        let dispatcher = state.dispatcher();
        let open = !state.password_form.is_open();
        Callback::from(move |_| dispatcher.dispatch(Action::PasswordForm(open)))
    };
    let on_change_password = {
        let conn = conn.clone();
        Callback::from(move |c: PasswordChange| Connection::change_password(&conn, &c.old, &c.new))
    };
    let on_close_password = {
        let dispatcher = state.dispatcher();
        Callback::from(move |_| dispatcher.dispatch(Action::PasswordForm(false)))
    };
    let on_sign_out = {
        let conn = conn.clone();
        let sync = sync.clone();
        let (tabs, me) = (tabs.clone(), state.me.clone());
        Callback::from(move |keep: bool| {
            if let (Some(t), Some((_, name))) = (&*tabs, &me) {
                t.gone(name);
            }
            let account = sync.borrow_mut().account.take();
            if let (false, Some(account)) = (keep, account) {
                wasm_bindgen_futures::spawn_local(async move {
                    if let Err(e) = history::clear(&account).await {
                        web_sys::console::warn_1(&e.into());
                    }
                });
            }
            Connection::sign_out(&conn);
            browser::session_remove(STATE_KEY);
        })
    };
    let on_reconnect = {
        let conn = conn.clone();
        let (tabs, me) = (tabs.clone(), state.me.clone());
        Callback::from(move |_| {
            // If another tab of this browser has the session, it hears
            // where it went.
            if let (Some(t), Some((_, name))) = (&*tabs, &me) {
                t.took(name);
            }
            Connection::reconnect(&conn)
        })
    };
    let on_open = {
        let dispatcher = state.dispatcher();
        Callback::from(move |peer: Peer| dispatcher.dispatch(Action::Open(peer)))
    };
    let on_send = {
        let conn = conn.clone();
        Callback::from(move |(peer, text): (Peer, String)| Connection::send(&conn, peer, &text))
    };
    let on_retry = {
        let conn = conn.clone();
        let dispatcher = state.dispatcher();
        Callback::from(move |(peer, number, text): (Peer, u64, String)| {
            dispatcher.dispatch(Action::Discard(number));
            Connection::send(&conn, peer, &text);
        })
    };
    let on_files = upload_callback(conn.clone());
    let on_download = {
        let conn = conn.clone();
        let state = state.clone();
        Callback::from(move |file: u64| {
            if let Some(entry) = state.files.get(&file) {
                Connection::download(&conn, file, entry);
            }
        })
    };
    let on_cancel = {
        let conn = conn.clone();
        Callback::from(move |id: u64| Connection::cancel(&conn, id))
    };
    let on_dismiss = {
        let dispatcher = state.dispatcher();
        Callback::from(move |id: u64| dispatcher.dispatch(Action::DismissTransfer(id)))
    };
    let show = |view: View| {
        let dispatcher = state.dispatcher();
        Callback::from(move |_| dispatcher.dispatch(Action::Show(view)))
    };
    let dismiss_notice = {
        let dispatcher = state.dispatcher();
        Callback::from(move |_| dispatcher.dispatch(Action::Notice(None)))
    };

    let ondragover = Callback::from(|e: DragEvent| e.prevent_default());
    let ondrop = {
        let on_files = on_files.clone();
        Callback::from(move |e: DragEvent| {
            e.prevent_default();
            if let Some(list) = e.data_transfer().and_then(|d| d.files()) {
                on_files.emit(files_of(&list));
            }
        })
    };

    let signed_in = state.me.is_some();
    let notice = state.notice.clone().map(|n| {
        html! {
            <div class="notice" role="alert" data-testid="notice">
                <span>{ n }</span>
                <button type="button" aria-label="Dismiss" onclick={dismiss_notice}>{ "×" }</button>
            </div>
        }
    });
    html! {
        <div class="app" {ondragover} {ondrop}
            data-history={if state.history_loaded { "loaded" } else { "loading" }}
            data-wasm-memory={browser::wasm_memory_bytes().to_string()}>
            <Header state={state.clone()} {on_sign_out} {on_reconnect} {on_password} {on_notifications} />
            { for notice }
            if signed_in && state.password_form.is_open() {
                <PasswordForm status={state.password_form.clone()} protected={state.protected}
                    on_change={on_change_password} on_close={on_close_password} />
            }
            if signed_in {
                <div class="layout" data-view={state.view.as_str()}>
                    <Sidebar state={state.clone()} on_open={on_open} on_files={show(View::Files)} />
                    <Conversation state={state.clone()} on_send={on_send} on_retry={on_retry}
                        on_back={show(View::List)} />
                    <FilesPanel state={state.clone()} on_files={on_files} on_download={on_download}
                        on_cancel={on_cancel} on_dismiss={on_dismiss} on_back={show(View::List)} />
                </div>
            } else {
                <SignIn error={state.sign_in_error.clone()} busy={state.link == Link::Connecting} on_sign_in={on_sign_in}
                    other_tabs={state.other_tabs.clone()} {on_use_here} />
            }
        </div>
    }
}

/// The files of a `FileList`.
pub fn files_of(list: &web_sys::FileList) -> Vec<web_sys::File> {
    (0..list.length()).filter_map(|i| list.get(i)).collect()
}

/// Hands each file to the connection, which reads it in slices as the
/// upload needs them.
fn upload_callback(conn: Rc<connection::Shared>) -> Callback<Vec<web_sys::File>> {
    Callback::from(move |files: Vec<web_sys::File>| {
        for file in files {
            Connection::upload(&conn, file);
        }
    })
}
