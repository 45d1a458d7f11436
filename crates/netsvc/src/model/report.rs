//! Reports as values: their lifetime, a report as a subscriber receives it, and the events
//! of a subscription (the handles that receive them are in `api::monitor`).

use std::sync::Arc;
use std::time::Duration;

use netsvc_proto::Pattern;
use netsvc_proto::value::{Value, ValueError};

use super::binding::Binding;
use super::error::Error;
use super::payload::Payload;

/// How long a published report stays cached for subscribers who come later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Lifetime {
    /// Deliver to current subscribers only, and clear any cached report of that subject
    /// (the original's lifetime `0`).
    #[default]
    None,
    /// Cache for this long (the original's positive lifetimes, here with sub-second precision).
    For(Duration),
    /// Cache until replaced or cleared (the original's lifetime `-1`).
    Forever,
}

/// Longest finite lifetime accepted: a hundred years. Anything longer is meant as forever.
const MAX_LIFETIME: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

impl Lifetime {
    /// The original's integer lifetimes: `0` none, `n > 0` seconds, `-1` forever.
    ///
    /// ```
    /// use netsvc::Lifetime;
    /// assert_eq!(Lifetime::from_seconds(-1).unwrap(), Lifetime::Forever);
    /// assert!(Lifetime::from_seconds(-5).is_err());
    /// ```
    pub fn from_seconds(seconds: i64) -> Result<Self, Error> {
        match seconds {
            0 => Ok(Self::None),
            -1 => Ok(Self::Forever),
            s if s > 0 => Self::For(Duration::from_secs(s.unsigned_abs())).validated(),
            s => Err(Error::InvalidLifetime(format!(
                "{s} seconds (use 0 for none, a positive number, or -1 for forever)"
            ))),
        }
    }

    pub(crate) fn validated(self) -> Result<Self, Error> {
        match self {
            Self::For(d) if d.is_zero() => Err(Error::InvalidLifetime(
                "a zero duration (use Lifetime::None to deliver without caching)".into(),
            )),
            Self::For(d) if d > MAX_LIFETIME => Err(Error::InvalidLifetime(format!(
                "{} s is longer than a hundred years (use Lifetime::Forever)",
                d.as_secs()
            ))),
            other => Ok(other),
        }
    }
}

/// One report as a subscriber receives it.
#[derive(Debug, Clone)]
pub struct Report {
    publisher: Binding,
    subject: Arc<str>,
    content: Payload,
    pattern: Option<Arc<Pattern>>,
    targeted: bool,
    cached: bool,
}

impl Report {
    pub(crate) fn new(
        publisher: Binding,
        subject: Arc<str>,
        content: Payload,
        pattern: Option<Arc<Pattern>>,
        targeted: bool,
    ) -> Self {
        Self {
            publisher,
            subject,
            content,
            pattern,
            targeted,
            cached: false,
        }
    }

    /// Marks a report replayed from the publisher's cache on subscription.
    pub(crate) fn replayed(mut self) -> Self {
        self.cached = true;
        self
    }

    /// The service that published it.
    pub fn publisher(&self) -> &Binding {
        &self.publisher
    }

    /// Its subject.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    pub(crate) fn subject_arc(&self) -> &Arc<str> {
        &self.subject
    }

    /// The subscription pattern it matched; `None` for a targeted report that matched none
    /// of the recipient's patterns.
    pub fn pattern(&self) -> Option<&Pattern> {
        self.pattern.as_deref()
    }

    /// Whether the publisher sent it to this subscriber alone.
    pub fn is_targeted(&self) -> bool {
        self.targeted
    }

    /// Whether it came from the publisher's cache when this subscription was made (or made
    /// again after a reconnect), rather than being published while the subscription was
    /// live. A cached report replaced in a slow subscriber's queue by a newer one of the
    /// same subject is delivered as that newer, live report.
    pub fn is_cached(&self) -> bool {
        self.cached
    }

    /// The content. Fails only for content that arrived undecodable from another process.
    pub fn value(&self) -> Result<&Value, ValueError> {
        self.content.value()
    }

    /// The content decoded into a typed value.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, ValueError> {
        netsvc_proto::value::from_value(self.value()?.clone())
    }

    /// The shared content.
    pub fn payload(&self) -> &Payload {
        &self.content
    }
}

/// What a report subscription delivers, in order.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ReportEvent {
    /// A publisher matching the subscription's target appeared (or was there when the
    /// subscription was made). Its cached reports follow, then its live reports.
    PublisherAvailable(Binding),
    /// A report.
    Report(Report),
    /// The publisher went away; no more reports from it until it reappears.
    PublisherWithdrawn(Binding),
    /// The subscriber was behind, and this many reports were coalesced into newer reports
    /// of the same subject (or dropped, past the hard limit).
    Missed(u64),
}

/// Whether a subscription was made or ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubscriptionStatus {
    /// A subscriber subscribed (or was subscribed when the watch began).
    Requested,
    /// The subscriber unsubscribed or went away.
    Withdrawn,
}

/// A change in who subscribes to a publisher.
#[derive(Debug, Clone)]
pub struct SubscriptionEvent {
    /// The subscribing service.
    pub subscriber: Binding,
    /// The pattern it subscribed with.
    pub pattern: Pattern,
    /// Requested or withdrawn.
    pub status: SubscriptionStatus,
}
