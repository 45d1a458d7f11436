//! [`SecretTags`]: names for secrets that do not hold them.

/// Keyed fingerprints of secrets: an HMAC-SHA256, under a random key made for this process,
/// of length-prefixed parts. A table can then be keyed by a credential without holding
/// it, and its keys tell nothing of it to anyone without the key, nor after a restart.
/// The hub remembers verified passwords by them, and the HTTP gateway the links it opened
/// for each credential.
///
/// ```
/// use netsvc::security::SecretTags;
/// let tags = SecretTags::new().expect("the system's randomness");
/// let alice = tags.tag(&[b"alice", b"hunter2"]);
/// assert_eq!(alice, tags.tag(&[b"alice", b"hunter2"]));
/// assert_ne!(alice, tags.tag(&[b"alic", b"ehunter2"]));
/// ```
#[derive(Debug)]
pub struct SecretTags {
    key: ring::hmac::Key,
}

impl SecretTags {
    /// A new key; `None` if the system gives no randomness.
    pub fn new() -> Option<Self> {
        let random = ring::rand::SystemRandom::new();
        let key = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &random).ok()?;
        Some(Self { key })
    }

    /// The tag of `parts`. Each part is preceded by its length, so that no two different
    /// lists of parts give the same input.
    pub fn tag(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut context = ring::hmac::Context::with_key(&self.key);
        for part in parts {
            context.update(&(part.len() as u64).to_le_bytes());
            context.update(part);
        }
        let mut tag = [0u8; 32];
        tag.copy_from_slice(context.sign().as_ref());
        tag
    }
}
