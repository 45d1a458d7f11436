//! What one authenticated link may do: the compiled form of a user's permissions, as the
//! core checks them where a frame enters or leaves (docs/SECURITY.md has the table).
//!
//! A [`Rule`] is a list of allowed and a list of denied glob patterns in netsvc's subject
//! syntax; a name is allowed when some allowed pattern matches it and no denied one does
//! (deny wins). [`Grants`] holds one rule per kind of act.

use netsvc_proto::Pattern;
use netsvc_proto::names::{NameError, NameKind};

/// Allowed and denied patterns for one kind of act; deny wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    allow: Vec<Pattern>,
    deny: Vec<Pattern>,
}

impl Rule {
    /// Everything is allowed.
    pub(crate) fn everything() -> Self {
        Self {
            allow: vec![Pattern::new("*").expect("`*` is a valid pattern")],
            deny: Vec::new(),
        }
    }

    /// Compiles the patterns, replacing `$user` and `$process` in each first. The values
    /// must stand for themselves: one with pattern syntax in it (`*`, `?`, or a `$` that
    /// could start another placeholder) is refused, whatever the caller checked before, so
    /// that a client can never choose its own rights through its identity.
    pub(crate) fn compile(
        allow: &[String],
        deny: &[String],
        user: &str,
        process: &str,
    ) -> Result<Self, NameError> {
        for (value, kind) in [(user, NameKind::User), (process, NameKind::Process)] {
            if let Some(ch) = value.chars().find(|c| matches!(c, '*' | '?' | '$')) {
                return Err(NameError::ForbiddenChar {
                    kind,
                    name: value.to_owned(),
                    ch,
                });
            }
        }
        let compile = |patterns: &[String]| -> Result<Vec<Pattern>, NameError> {
            patterns
                .iter()
                .map(|p| Pattern::new(&p.replace("$user", user).replace("$process", process)))
                .collect()
        };
        Ok(Self {
            allow: compile(allow)?,
            deny: compile(deny)?,
        })
    }

    /// Whether `name` (a service name or a report subject) is allowed.
    pub(crate) fn allows(&self, name: &str) -> bool {
        !self.deny.iter().any(|p| p.matches(name)) && self.allow.iter().any(|p| p.matches(name))
    }
}

/// Everything a link's user may do. A link without grants (no users configured) may do
/// everything; the core then checks nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Grants {
    /// The user, for the logs.
    pub(crate) user: String,
    /// Service names the link may announce.
    pub(crate) provide: Rule,
    /// Service names the link may call.
    pub(crate) call: Rule,
    /// Service names announced to the link.
    pub(crate) see: Rule,
    /// Subjects the link may publish reports on.
    pub(crate) publish: Rule,
    /// Subjects of the reports delivered to the link.
    pub(crate) subscribe: Rule,
    /// Whether the link may be a hub's: link as a server and relay what others announce,
    /// call and publish.
    pub(crate) link: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(allow: &[&str], deny: &[&str]) -> Rule {
        let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        Rule::compile(&owned(allow), &owned(deny), "alice", "host:1").expect("valid patterns")
    }

    #[test]
    fn deny_wins_over_allow() {
        let r = rule(&["weather.*"], &["weather.secret*"]);
        assert!(r.allows("weather.today"));
        assert!(!r.allows("weather.secret.plans"));
        assert!(!r.allows("news.today"));
    }

    #[test]
    fn nothing_allowed_without_an_allow_pattern() {
        let r = rule(&[], &[]);
        assert!(!r.allows("anything"));
        assert!(Rule::everything().allows("anything"));
    }

    #[test]
    fn user_and_process_are_substituted() {
        let r = rule(&["home.$user.*"], &[]);
        assert!(r.allows("home.alice.x"));
        assert!(!r.allows("home.bob.x"));
    }

    #[test]
    fn a_substituted_value_never_acts_as_pattern_syntax() {
        let patterns = vec!["station.$process".to_owned(), "home.$user.*".to_owned()];
        for (user, process) in [("alice", "*"), ("alice", "h?st:1"), ("a*", "host:1")] {
            assert!(
                Rule::compile(&patterns, &[], user, process).is_err(),
                "{user:?} {process:?}"
            );
        }
        let r = Rule::compile(&patterns, &[], "alice", "host:1").expect("plain values");
        assert!(r.allows("station.host:1") && !r.allows("station.payroll"));
    }

    #[test]
    fn invalid_patterns_are_errors() {
        let bad = vec!["a\u{1}b".to_owned()];
        assert!(Rule::compile(&bad, &[], "u", "p").is_err());
    }
}
