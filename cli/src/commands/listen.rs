//! `chat listen`: prints incoming messages as they arrive, one per line,
//! and acknowledges each once it is printed.

use std::collections::HashMap;
use std::io::Write;

use proto::Event;

use crate::session::{Session, SessionError};

struct Pending {
    from: u64,
    message: u64,
    broadcast: bool,
    text: String,
}

fn print(p: &Pending, name: &str, json: bool) {
    let mut out = std::io::stdout().lock();
    let _ = if json {
        let line = serde_json::json!({
            "from": p.from,
            "from_name": name,
            "message": p.message,
            "broadcast": p.broadcast,
            "text": p.text,
        });
        writeln!(out, "{line}")
    } else if p.broadcast {
        writeln!(out, "{name} (to everyone): {}", p.text)
    } else {
        writeln!(out, "{name}: {}", p.text)
    };
    let _ = out.flush();
}

/// Listens until `count` messages were printed (forever without one).
pub async fn run(s: &mut Session, json: bool, count: Option<u64>) -> Result<(), SessionError> {
    let mut names: HashMap<u64, String> = HashMap::new();
    let mut waiting: Vec<Pending> = Vec::new();
    let mut printed = 0u64;
    while count.is_none_or(|c| printed < c) {
        match s.next_event().await? {
            Event::Incoming {
                from,
                message,
                broadcast,
                body,
            } => {
                let p = Pending {
                    from,
                    message,
                    broadcast,
                    text: String::from_utf8_lossy(&body).into_owned(),
                };
                match names.get(&from) {
                    Some(name) => {
                        print(&p, name, json);
                        s.core.acknowledge(message);
                        printed += 1;
                    }
                    None => {
                        s.core.request_user(from)?;
                        waiting.push(p);
                    }
                }
            }
            Event::UserName { user, name } => {
                // Print in arrival order what waited for this name.
                let mut rest = Vec::new();
                for p in waiting.drain(..) {
                    if p.from == user && count.is_none_or(|c| printed < c) {
                        print(&p, &name, json);
                        s.core.acknowledge(p.message);
                        printed += 1;
                    } else {
                        rest.push(p);
                    }
                }
                waiting = rest;
                names.insert(user, name);
            }
            Event::Disconnected { code, text } => return Err(SessionError::Server { code, text }),
            _ => {}
        }
    }
    s.flush().await
}
