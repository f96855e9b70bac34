//! Password hashing: Argon2id, on threads of its own, a few at a time.
//!
//! A hash takes tens of milliseconds of a core by design. It never runs on
//! the runtime's threads, and at most `concurrency` run at once, so a flood
//! of sign-ins queues here instead of taking the cores that deliver
//! messages. The threads are its own ([`Pool`]), not tokio's blocking pool:
//! each hash allocates its memory cost (19 MiB) and the allocator keeps a
//! freed block for the thread that used it, so hashes spread over the
//! pool's many threads held a gigabyte after a burst of sign-ins; here at
//! most `concurrency` blocks are kept.

use std::sync::{Arc, OnceLock};

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use thiserror::Error;

use crate::pool::Pool;

/// Why a hash could not be made or checked.
#[derive(Debug, Error)]
pub enum HashError {
    /// The parameters are out of Argon2's range.
    #[error("bad Argon2 parameters: {0}")]
    Params(String),
    /// Hashing failed (the random salt could not be had).
    #[error("cannot hash the password: {0}")]
    Hash(String),
    /// The blocking task did not run.
    #[error("the hashing task failed: {0}")]
    Task(String),
}

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    /// Memory, KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
}

impl HashParams {
    fn argon2(self) -> Result<Argon2<'static>, HashError> {
        let params = Params::new(self.memory_kib, self.iterations, 1, None)
            .map_err(|e| HashError::Params(e.to_string()))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }

    /// Hashes `password` with a random salt, here and now (for the
    /// operator's commands, which have no runtime to spare).
    pub fn hash_now(self, password: &str) -> Result<String, HashError> {
        self.argon2()?
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| HashError::Hash(e.to_string()))
    }
}

/// Whether `password` matches the PHC string `hash` (whose own parameters
/// are used). A damaged hash matches nothing.
fn verify_now(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(e) => {
            tracing::error!(error = %e, "a stored password hash is damaged");
            false
        }
    }
}

/// Hashes and checks passwords off the runtime, `concurrency` at a time.
#[derive(Debug)]
pub(crate) struct Hasher {
    params: HashParams,
    /// `concurrency` threads; they end when the hasher is dropped.
    threads: Pool<()>,
    /// A hash of nothing anyone knows, checked against when a name has no
    /// account, so that answer takes as long as a wrong password. Made on
    /// first use, on a hashing thread.
    decoy: Arc<OnceLock<String>>,
}

impl Hasher {
    /// Checks the parameters and starts the hashing threads.
    pub(crate) fn new(params: HashParams, concurrency: usize) -> Result<Self, HashError> {
        params.argon2()?;
        let threads = Pool::new("chat-hasher", vec![(); concurrency.max(1)])
            .map_err(|e| HashError::Task(e.to_string()))?;
        Ok(Self {
            params,
            threads,
            decoy: Arc::new(OnceLock::new()),
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        self.threads
            .run(move |_| f())
            .await
            .map_err(|e| HashError::Task(e.to_string()))
    }

    /// A new hash of `password`.
    pub(crate) async fn hash(&self, password: String) -> Result<String, HashError> {
        let params = self.params;
        self.run(move || params.hash_now(&password)).await?
    }

    /// Whether `password` matches `hash`; with no hash, checks against the
    /// decoy and answers false, in the same time.
    pub(crate) async fn verify(
        &self,
        password: String,
        hash: Option<String>,
    ) -> Result<bool, HashError> {
        let known = hash.is_some();
        let (params, decoy) = (self.params, self.decoy.clone());
        let matched = self
            .run(move || {
                let hash = hash.unwrap_or_else(|| {
                    decoy
                        .get_or_init(|| {
                            let secret: [u8; 16] = rand::random();
                            params.hash_now(&format!("{secret:?}")).unwrap_or_default()
                        })
                        .clone()
                });
                verify_now(&password, &hash)
            })
            .await?;
        Ok(known && matched)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: HashParams = HashParams {
        memory_kib: 64,
        iterations: 1,
    };

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let h = Hasher::new(CHEAP, 1).unwrap();
        let hash = h.hash("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{hash}");
        assert!(!hash.contains("correct"));
        assert!(h
            .verify("correct horse".into(), Some(hash.clone()))
            .await
            .unwrap());
        assert!(!h.verify("wrong horse".into(), Some(hash)).await.unwrap());
        assert!(!h.verify("correct horse".into(), None).await.unwrap());
        assert!(!h
            .verify("x".into(), Some("not a hash".into()))
            .await
            .unwrap());
    }

    #[test]
    fn out_of_range_parameters_are_refused() {
        let bad = HashParams {
            memory_kib: 1,
            iterations: 0,
        };
        assert!(Hasher::new(bad, 1).is_err());
    }
}
