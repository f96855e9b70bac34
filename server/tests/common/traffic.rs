//! Traffic for the tests of crashes and restarts: recipients that read
//! and acknowledge everything, recording what came under which number,
//! and senders that pipeline numbered messages and record the answers.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use proto::Packet;
use tokio::sync::Semaphore;

use super::Peer;

/// What a recipient has seen: (from, body) → the delivery numbers it came
/// under. The same number twice is a redelivery, which the client core
/// drops; two numbers for one message is a duplicate.
pub type Seen = Arc<Mutex<BTreeMap<(u64, Bytes), BTreeSet<u64>>>>;

/// Reads a recipient's connection until it ends, acknowledging and
/// recording every message.
pub fn read_and_ack(mut peer: Peer, seen: Seen) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(Ok(p)) = peer.framed.next().await {
            if let Packet::IncomingMessage {
                from,
                message,
                body,
            } = p
            {
                seen.lock()
                    .unwrap()
                    .entry((from, body))
                    .or_default()
                    .insert(message);
                if peer
                    .framed
                    .send(Packet::IncomingMessageAck { message })
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    })
}

/// What a sender knows: the highest number it tried to send, and the
/// numbers the server answered.
#[derive(Default)]
pub struct Sent {
    pub tried: AtomicU64,
    pub answered: Mutex<BTreeSet<u64>>,
    pub surprises: Mutex<Vec<Packet>>,
}

/// Sends messages numbered 1, 2, … without end, at most 64 unanswered,
/// to `to[n % to.len()]`, until the connection breaks.
pub fn send_until_broken(peer: Peer, to: Vec<u64>, sent: Arc<Sent>) -> tokio::task::JoinHandle<()> {
    send_each(peer, to, sent, 1..)
}

/// Who message `n` goes to: `to[n % to.len()]`.
pub fn recipient_of(to: &[u64], n: u64) -> u64 {
    to[(n % to.len() as u64) as usize]
}

/// The body of message `n`: each sender's numbers are its own, so (sender,
/// body) names one message.
pub fn body_of(n: u64) -> Bytes {
    Bytes::from(format!("m{n}"))
}

/// [`send_until_broken`] for the numbers in `numbers` only, in their
/// order; once all are sent it waits for every answer, then hangs up.
/// `sent.tried` holds the number last sent.
pub fn send_each(
    peer: Peer,
    to: Vec<u64>,
    sent: Arc<Sent>,
    numbers: impl Iterator<Item = u64> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let session = peer.session;
    let (mut sink, mut stream) = peer.framed.split();
    let window = Arc::new(Semaphore::new(64));
    let reader = {
        let (window, sent) = (window.clone(), sent.clone());
        tokio::spawn(async move {
            while let Some(Ok(p)) = stream.next().await {
                match p {
                    Packet::MessageResponse { message } => {
                        sent.answered.lock().unwrap().insert(message);
                        window.add_permits(1);
                    }
                    p => sent.surprises.lock().unwrap().push(p),
                }
            }
            // Wakes the writer if it waits for a window.
            window.close();
        })
    };
    tokio::spawn(async move {
        let mut all_sent = true;
        for n in numbers {
            let Ok(permit) = window.acquire().await else {
                all_sent = false;
                break;
            };
            permit.forget();
            sent.tried.store(n, Ordering::SeqCst);
            let to = recipient_of(&to, n);
            let body = body_of(n);
            let request = Packet::MessageRequest {
                session,
                to,
                message: n,
                body,
            };
            if sink.send(request).await.is_err() {
                all_sent = false;
                break;
            }
        }
        if all_sent {
            // All sent: wait for the last answers, then hang up.
            let _ = window.acquire_many(64).await;
            reader.abort();
        }
        let _ = reader.await;
    })
}
