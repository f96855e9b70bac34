//! A few threads of our own for blocking work, each with its own state (a
//! database connection, say), fed from one queue.
//!
//! Tokio's blocking pool grows a thread for every job that waits, and a
//! burst of sign-ins all reading the database through one connection made
//! dozens of threads, each with a stack and an allocator arena: memory that
//! showed per idle session. A fixed set of threads keeps that cost fixed.

use std::sync::{mpsc, Arc, Mutex};

use thiserror::Error;

type Job<S> = Box<dyn FnOnce(&mut S) + Send>;

/// The pool's threads are gone (the server is stopping).
#[derive(Debug, Clone, Copy, Error)]
#[error("the worker threads are gone")]
pub(crate) struct PoolClosed;

/// Threads that each own one `S` and run jobs on it, in turn.
#[derive(Debug)]
pub(crate) struct Pool<S> {
    jobs: Mutex<mpsc::Sender<Job<S>>>,
}

impl<S: Send + 'static> Pool<S> {
    /// One thread per state, named `name-N`; they end with the pool.
    pub(crate) fn new(name: &str, states: Vec<S>) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Job<S>>();
        let rx = Arc::new(Mutex::new(rx));
        for (i, mut state) in states.into_iter().enumerate() {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || loop {
                    let job = match rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(&mut state),
                        Err(_) => return,
                    }
                })?;
        }
        Ok(Self {
            jobs: Mutex::new(tx),
        })
    }

    /// Runs `f` on one of the threads and waits for its result.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut S) -> T + Send + 'static,
    ) -> Result<T, PoolClosed> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job<S> = Box::new(move |state| {
            let _ = reply.send(f(state));
        });
        self.jobs
            .lock()
            .map_err(|_| PoolClosed)?
            .send(job)
            .map_err(|_| PoolClosed)?;
        answer.await.map_err(|_| PoolClosed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_on_the_pools_threads_with_their_state() {
        let pool = Pool::new("test", vec![10u32, 20]).unwrap();
        let mut seen = Vec::new();
        for _ in 0..10 {
            let (state, name) = pool
                .run(|s: &mut u32| {
                    *s += 1;
                    (*s, std::thread::current().name().map(str::to_owned))
                })
                .await
                .unwrap();
            assert!(name.is_some_and(|n| n.starts_with("test-")));
            seen.push(state);
        }
        assert_eq!(seen.len(), 10);
        assert!(seen.iter().all(|s| (11..=40).contains(s)));
    }
}
