//! The threads that check passwords: argon2 off the async threads, a few at a time, each
//! reusing its working memory and giving it back when idle.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Block, Params, Version};
use parking_lot::{Condvar, Mutex};
use subtle::ConstantTimeEq as _;
use tokio::sync::oneshot;

/// Password checks running at once, each on a thread of its own: argon2 costs about 20 MB
/// and tens of milliseconds each, and a flood of logins must not take the hub's memory and
/// cores.
const CONCURRENT_CHECKS: usize = 2;
/// Password checks waiting for a thread at most; past it a login is refused as "busy"
/// rather than queued (the limits above already keep one address's share small).
const MAX_QUEUED_CHECKS: usize = 256;
/// A checking thread idle this long gives its argon2 memory back.
const CHECKER_IDLE: Duration = Duration::from_secs(10);
/// argon2 memory is reserved for at least this many 1 KiB blocks (32 MiB, of which only
/// what a check uses is ever touched, so resident). glibc takes an allocation this large
/// from the system directly and returns it when freed; a smaller one (the default
/// parameters need 19 MiB) may come from a thread's arena once glibc has raised its mmap
/// threshold, and stay in the arena after it is freed.
const MMAPPED_BLOCKS: usize = 32 * 1024;

/// The argon2id hash of a random password nobody knows (default parameters), checked
/// against for unknown users.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$1NKOlZ5mYsiuVFxDcbUP0p7TTUW0F6yZkRqXq/kCO3I";

/// The threads that check passwords, and the checks waiting for them.
///
/// argon2 needs its memory (about 19 MiB with the default parameters) for every check.
/// Checked on tokio's blocking threads, each check allocated it on whichever of many
/// threads ran it, and glibc kept much of it in per-thread arenas: a burst of logins left
/// a hub hundreds of MiB larger for good. Here [`CONCURRENT_CHECKS`] long-lived threads
/// each allocate that memory once, reuse it for every check, and free it when idle.
#[derive(Debug, Default)]
pub(crate) struct Checkers {
    queue: Mutex<CheckQueue>,
    ready: Condvar,
    /// Checks run since the start.
    checks: AtomicU64,
}

#[derive(Debug, Default)]
struct CheckQueue {
    jobs: VecDeque<CheckJob>,
    threads: usize,
    /// The authenticator is gone: the threads end.
    closed: bool,
}

pub(crate) struct CheckJob {
    password: String,
    /// The user's hash, or `None` for an unknown user (checked against [`DUMMY_HASH`]).
    hash: Option<String>,
    answer: oneshot::Sender<bool>,
}

impl std::fmt::Debug for CheckJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password: a Debug print may end up in a log.
        f.debug_struct("CheckJob").finish_non_exhaustive()
    }
}

impl CheckJob {
    /// A check of `password` against `hash` (`None`: an unknown user, checked against a
    /// dummy hash so that it takes as long), answered on `answer`; a dropped receiver
    /// tells the threads to skip it.
    pub(crate) fn new(
        password: String,
        hash: Option<String>,
        answer: oneshot::Sender<bool>,
    ) -> Self {
        Self {
            password,
            hash,
            answer,
        }
    }
}

impl Checkers {
    /// Queues a check, starting a thread if fewer than [`CONCURRENT_CHECKS`] run. `None`
    /// if the queue is full or no thread could be started.
    pub(crate) fn submit(self: &Arc<Self>, job: CheckJob) -> Option<()> {
        let mut queue = self.queue.lock();
        if queue.jobs.len() >= MAX_QUEUED_CHECKS {
            return None;
        }
        if queue.threads < CONCURRENT_CHECKS {
            let checkers = self.clone();
            let started = std::thread::Builder::new()
                .name("netsvc-login".to_owned())
                .spawn(move || checkers.work());
            match started {
                Ok(_) => queue.threads += 1,
                Err(e) => tracing::warn!("cannot start a password checking thread: {e}"),
            }
        }
        if queue.threads == 0 {
            return None;
        }
        queue.jobs.push_back(job);
        drop(queue);
        self.ready.notify_one();
        Some(())
    }

    /// The checks run since the start.
    pub(crate) fn checks(&self) -> u64 {
        self.checks.load(Ordering::Relaxed)
    }

    /// No more checks: the threads end once the queue is empty.
    pub(crate) fn close(&self) {
        self.queue.lock().closed = true;
        self.ready.notify_all();
    }

    /// One checking thread: takes the checks in turn, until the checkers are closed.
    fn work(&self) {
        let mut memory: Vec<Block> = Vec::new();
        loop {
            let job = {
                let mut queue = self.queue.lock();
                loop {
                    if let Some(job) = queue.jobs.pop_front() {
                        break Some(job);
                    }
                    if queue.closed {
                        queue.threads -= 1;
                        break None;
                    }
                    if memory.capacity() == 0 {
                        self.ready.wait(&mut queue);
                    } else if self.ready.wait_for(&mut queue, CHECKER_IDLE).timed_out()
                        && queue.jobs.is_empty()
                    {
                        // Idle: the memory goes back.
                        memory = Vec::new();
                    }
                }
            };
            let Some(job) = job else { return };
            if job.answer.is_closed() {
                // Its login gave up waiting: the check would be for no one.
                continue;
            }
            self.checks.fetch_add(1, Ordering::Relaxed);
            let hash = job.hash.as_deref().unwrap_or(DUMMY_HASH);
            let verified = verify_with(&mut memory, job.password.as_bytes(), hash);
            let _ = job.answer.send(verified && job.hash.is_some());
        }
    }
}

/// Checks `password` against the PHC `hash`, with `memory` as argon2's working memory
/// (grown to what the hash's parameters need, and kept for the next check).
fn verify_with(memory: &mut Vec<Block>, password: &[u8], hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm.as_str()) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(version)) => version,
        Some(Err(_)) => return false,
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    let blocks = params.block_count();
    if memory.len() < blocks {
        // The parameters come from the users file, not the peer; still, memory that is not
        // there fails the check rather than the hub.
        *memory = Vec::new();
        if memory
            .try_reserve_exact(blocks.max(MMAPPED_BLOCKS))
            .is_err()
        {
            tracing::warn!("no memory for a password check ({blocks} KiB)");
            return false;
        }
        memory.resize(blocks, Block::new());
    }
    let mut output = [0u8; 64];
    let Some(output) = output.get_mut(..expected.len()) else {
        return false;
    };
    let Some(memory) = memory.get_mut(..blocks) else {
        return false;
    };
    argon2::Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password, salt, &mut *output, memory)
        .is_ok()
        && bool::from(output.ct_eq(expected.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::users::hash_password;

    #[test]
    fn hashes_verify_and_parse() {
        use argon2::password_hash::PasswordVerifier as _;
        let hash = hash_password("pw").expect("hashes");
        let parsed = PasswordHash::new(&hash).expect("parses");
        assert!(
            argon2::Argon2::default()
                .verify_password(b"pw", &parsed)
                .is_ok()
        );
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
        // The checking threads' verification, with memory reused, agrees with argon2's.
        let mut memory = Vec::new();
        assert!(verify_with(&mut memory, b"pw", &hash));
        assert!(!verify_with(&mut memory, b"pW", &hash));
        assert!(verify_with(&mut memory, b"pw", &hash));
        assert!(!verify_with(&mut memory, b"pw", DUMMY_HASH));
        assert!(!verify_with(
            &mut memory,
            b"pw",
            "$argon2id$v=19$m=8,t=1,p=1$bm90aGluZw"
        ));
    }
}
