//! [`Text`]: a UTF-8 string that can share a decoded frame's buffer.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

use bytes::Bytes;
use bytestring::ByteString;

use super::WireError;

/// UTF-8 text that shares the frame's buffer (zero-copy decode).
///
/// Decoding a frame produces `Text` fields that are slices of the frame's bytes, so a hub
/// that handles millions of frames a second does not copy or allocate per string. Cloning is
/// cheap (a reference count), and a `Text` keeps the whole frame buffer alive while it
/// exists: convert to `String` to keep a small piece of a large frame for long.
///
/// Equality, ordering and hashing are those of the string, so a `Text` can be looked up in
/// maps keyed by `Text` using a `&str`.
// Backed by `ByteString` because the routing code calls `as_str` on every report: this crate
// forbids `unsafe`, so without it each call re-ran UTF-8 validation (7-9% of a hub's
// instructions); `ByteString` validates once at construction and its `Deref` is free. It
// adds a single small crate that depends on nothing but `bytes`.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Text(ByteString);

impl Text {
    /// The text as a string slice; free, since the UTF-8 check happened at construction.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Wraps a static string without copying it.
    pub const fn from_static(s: &'static str) -> Self {
        Self(ByteString::from_static(s))
    }

    /// Wraps `bytes` without copying them, failing with [`WireError::InvalidUtf8`] if they are
    /// not valid UTF-8.
    pub fn try_from_bytes(bytes: Bytes) -> Result<Self, WireError> {
        ByteString::try_from(bytes)
            .map(Self)
            .map_err(|_| WireError::InvalidUtf8)
    }

    /// The UTF-8 bytes of the text.
    pub fn into_bytes(self) -> Bytes {
        self.0.into_bytes()
    }

    /// Whether the text is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The length of the text in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The UTF-8 bytes of the text.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

// Must agree with `str`'s hash because of `Borrow<str>`; hashing the raw bytes would not
// (`[u8]` hashes its length first, `str` appends a terminator).
impl Hash for Text {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Text {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

/// Like a `str`: quoted and escaped.
impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

/// Copies the string.
impl From<&str> for Text {
    fn from(s: &str) -> Self {
        Self(ByteString::from(s))
    }
}

/// Takes over the string's buffer without copying.
impl From<String> for Text {
    fn from(s: String) -> Self {
        Self(ByteString::from(s))
    }
}

/// Copies the string.
impl From<&String> for Text {
    fn from(s: &String) -> Self {
        Self::from(s.as_str())
    }
}

/// Copies the string.
impl From<Arc<str>> for Text {
    fn from(s: Arc<str>) -> Self {
        Self::from(&*s)
    }
}

/// Copies the string.
impl From<&Arc<str>> for Text {
    fn from(s: &Arc<str>) -> Self {
        Self::from(&**s)
    }
}

impl From<Text> for String {
    fn from(t: Text) -> Self {
        t.as_str().to_owned()
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Text {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialEq<Text> for str {
    fn eq(&self, other: &Text) -> bool {
        other == self
    }
}

impl PartialEq<Text> for &str {
    fn eq(&self, other: &Text) -> bool {
        other == self
    }
}
