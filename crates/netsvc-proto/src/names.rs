//! Validation of the strings that name things: services, groups, subjects and patterns.
//!
//! The original system accepted any string and then broke in routing or header parsing on
//! `!`, newlines or wildcards inside names. netsvc refuses such names up front with a
//! [`NameError`] that says what is wrong.

use thiserror::Error;

/// Longest service name, group name, subject or pattern accepted, in bytes.
pub const MAX_NAME_LEN: usize = 1024;

/// What kind of name was being checked; used in error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// A service name (may be empty: an anonymous service).
    Service,
    /// A group name.
    Group,
    /// A report subject.
    Subject,
    /// A subject pattern.
    Pattern,
    /// A method name.
    Method,
    /// A process identity (PROTOCOL.md §4.1), as a HELLO carries it.
    Process,
    /// A user name of a hub's users file.
    User,
}

impl std::fmt::Display for NameKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Service => "service name",
            Self::Group => "group name",
            Self::Subject => "subject",
            Self::Pattern => "subject pattern",
            Self::Method => "method name",
            Self::Process => "process identity",
            Self::User => "user name",
        })
    }
}

/// A name that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    /// The name is empty where a name is required.
    #[error("{kind} must not be empty")]
    Empty {
        /// What was being named.
        kind: NameKind,
    },
    /// The name is longer than [`MAX_NAME_LEN`].
    #[error("{kind} is {len} bytes long, the limit is {MAX_NAME_LEN}")]
    TooLong {
        /// What was being named.
        kind: NameKind,
        /// Its length in bytes.
        len: usize,
    },
    /// The name contains a character that is reserved or invisible.
    #[error("{kind} {name:?} contains the forbidden character {ch:?}")]
    ForbiddenChar {
        /// What was being named.
        kind: NameKind,
        /// The offending name.
        name: String,
        /// The first forbidden character found.
        ch: char,
    },
}

/// Checks a service name. The empty name is valid (an anonymous, client-only service).
/// Forbidden: `!` (the address separator), the wildcards `*` and `?`, whitespace and control
/// characters.
pub fn check_service_name(name: &str) -> Result<(), NameError> {
    check(name, NameKind::Service, true, |c| {
        c == '!' || c == '*' || c == '?' || c.is_whitespace() || c.is_control()
    })
}

/// Checks a group name: like a service name, but never empty.
pub fn check_group_name(name: &str) -> Result<(), NameError> {
    check(name, NameKind::Group, false, |c| {
        c == '!' || c == '*' || c == '?' || c.is_whitespace() || c.is_control()
    })
}

/// Checks a method name: non-empty, no whitespace or control characters.
pub fn check_method_name(name: &str) -> Result<(), NameError> {
    check(name, NameKind::Method, false, |c| {
        c.is_whitespace() || c.is_control()
    })
}

/// Checks a report subject: non-empty, no wildcards (`*`, `?`) and no control characters.
pub fn check_subject(subject: &str) -> Result<(), NameError> {
    check(subject, NameKind::Subject, false, |c| {
        c == '*' || c == '?' || c.is_control()
    })
}

/// Checks a subject pattern: non-empty and no control characters.
pub fn check_pattern(pattern: &str) -> Result<(), NameError> {
    check(pattern, NameKind::Pattern, false, char::is_control)
}

/// Checks a process identity: non-empty; no `!` or `@` (they separate the parts of the
/// service addresses built from it), no wildcard (`*`, `?`) and no `$` (a hub substitutes the
/// identity into permission patterns as `$process`, where it must stand for itself and never
/// act as pattern syntax), no whitespace or control characters.
pub fn check_process_identity(process: &str) -> Result<(), NameError> {
    check(process, NameKind::Process, false, identity_char_forbidden)
}

/// Checks a user name of a hub's users file, with the rule of
/// [`check_process_identity`]: a hub substitutes it into permission patterns as `$user`.
pub fn check_user_name(user: &str) -> Result<(), NameError> {
    check(user, NameKind::User, false, identity_char_forbidden)
}

fn identity_char_forbidden(c: char) -> bool {
    matches!(c, '!' | '@' | '*' | '?' | '$') || c.is_whitespace() || c.is_control()
}

fn check(
    name: &str,
    kind: NameKind,
    empty_ok: bool,
    forbidden: impl Fn(char) -> bool,
) -> Result<(), NameError> {
    if name.is_empty() && !empty_ok {
        return Err(NameError::Empty { kind });
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong {
            kind,
            len: name.len(),
        });
    }
    match name.chars().find(|&c| forbidden(c)) {
        Some(ch) => Err(NameError::ForbiddenChar {
            kind,
            name: name.to_owned(),
            ch,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_never_carry_pattern_syntax() {
        for good in ["host-a:4242", "host_b:1.2", "10.0.0.1:77", "hôte:1"] {
            assert!(check_process_identity(good).is_ok(), "{good:?}");
            assert!(check_user_name(good).is_ok(), "{good:?}");
        }
        for bad in ["", "*", "a?", "a$user", "a!b", "a@b", "a b", "a\u{7}"] {
            assert!(check_process_identity(bad).is_err(), "{bad:?}");
            assert!(check_user_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn service_names() {
        assert!(check_service_name("").is_ok());
        assert!(check_service_name("alarm-monitor").is_ok());
        assert!(check_service_name("a.b/c:d").is_ok());
        for bad in ["a!b", "a b", "a*", "a?", "a\nb", "\u{0}"] {
            assert!(check_service_name(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            check_service_name(&"x".repeat(MAX_NAME_LEN + 1)),
            Err(NameError::TooLong { .. })
        ));
    }

    #[test]
    fn subjects_and_patterns() {
        assert!(check_subject("system.time").is_ok());
        assert!(check_subject("").is_err());
        assert!(check_subject("system.*").is_err());
        assert!(check_pattern("system.*").is_ok());
        assert!(check_pattern("a?c").is_ok());
        assert!(check_pattern("a\tb").is_err());
        assert!(check_group_name("").is_err());
    }

    #[test]
    fn error_messages_say_what_is_wrong() {
        let err = check_service_name("a!b").unwrap_err();
        assert_eq!(
            err.to_string(),
            "service name \"a!b\" contains the forbidden character '!'"
        );
    }
}
