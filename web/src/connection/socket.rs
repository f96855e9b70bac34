//! The socket lifecycle: one gloo-net WebSocket, driven by one task that
//! reports what happens and sends what it is given. It knows nothing of the
//! protocol; the shell in `mod.rs` feeds its bytes to `proto::Client`.

use futures_channel::mpsc;
use futures_util::future::{self, Either};
use futures_util::{SinkExt, StreamExt};
use gloo_net::websocket::futures::WebSocket;
use gloo_net::websocket::{Message, State, WebSocketError};

/// What a socket reports, in order: `Opened` at most once, `Data` any number
/// of times, then `Closed` exactly once (also when it never opened).
#[derive(Debug)]
pub enum SocketEvent {
    /// The connection is up.
    Opened,
    /// A binary message from the gateway.
    Data(Vec<u8>),
    /// The connection is gone; the text says why, for the header.
    Closed(String),
}

/// What the shell asks of the socket's task.
enum Command {
    Send(Vec<u8>),
    Close(u16, String),
}

/// The shell's handle on one WebSocket. Dropping it closes the socket
/// without a further [`SocketEvent`].
pub struct Socket {
    commands: mpsc::UnboundedSender<Command>,
}

impl Socket {
    /// Opens a WebSocket to `url`; `on_event` hears what happens to it.
    ///
    /// The outgoing queue is unbounded, like the browser's own send buffer
    /// behind it: what goes in is bounded by the protocol core (its
    /// message window and transfer windows), not by this queue.
    pub fn open(url: &str, on_event: impl Fn(SocketEvent) + 'static) -> Result<Socket, String> {
        let ws = WebSocket::open(url).map_err(|e| format!("cannot open {url}: {e}"))?;
        let (commands, receiver) = mpsc::unbounded();
        wasm_bindgen_futures::spawn_local(run(ws, receiver, on_event));
        Ok(Socket { commands })
    }

    /// Queues bytes to send; lost silently if the socket has closed (the
    /// core sends what matters again after a reconnect).
    pub fn send(&self, bytes: Vec<u8>) {
        let _ = self.commands.unbounded_send(Command::Send(bytes));
    }

    /// Closes the socket with a WebSocket close code and reason; no
    /// [`SocketEvent::Closed`] follows.
    pub fn close(self, code: u16, reason: &str) {
        let _ = self
            .commands
            .unbounded_send(Command::Close(code, reason.to_owned()));
    }
}

async fn run(
    mut ws: WebSocket,
    mut commands: mpsc::UnboundedReceiver<Command>,
    on_event: impl Fn(SocketEvent),
) {
    // The sink is ready once the socket has left CONNECTING: open, or
    // failed (the error event wakes it too).
    if future::poll_fn(|cx| ws.poll_ready_unpin(cx)).await.is_err()
        || !matches!(ws.state(), State::Open)
    {
        on_event(SocketEvent::Closed("could not connect".into()));
        return;
    }
    on_event(SocketEvent::Opened);
    loop {
        match future::select(ws.next(), commands.next()).await {
            Either::Left((Some(Ok(Message::Bytes(bytes))), _)) => {
                on_event(SocketEvent::Data(bytes))
            }
            // The gateway sends binary messages only.
            Either::Left((Some(Ok(Message::Text(_))), _)) => {}
            Either::Left((Some(Err(WebSocketError::ConnectionClose(e))), _)) => {
                on_event(SocketEvent::Closed(if e.reason.is_empty() {
                    format!("connection closed ({})", e.code)
                } else {
                    e.reason
                }));
                return;
            }
            // An error event is followed by the close event, which says more.
            Either::Left((Some(Err(_)), _)) => {}
            Either::Left((None, _)) => {
                on_event(SocketEvent::Closed("connection closed".into()));
                return;
            }
            Either::Right((Some(Command::Send(bytes)), _)) => {
                if ws.send(Message::Bytes(bytes)).await.is_err() {
                    // The close event follows and says why.
                    continue;
                }
            }
            Either::Right((Some(Command::Close(code, reason)), _)) => {
                let _ = ws.close(Some(code), Some(&reason));
                return;
            }
            // The shell dropped its handle: dropping `ws` closes it.
            Either::Right((None, _)) => return,
        }
    }
}
