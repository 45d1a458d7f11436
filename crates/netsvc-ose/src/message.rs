//! The message catalogue: what an [`Envelope`] means (its subject, header and content read
//! together), and the envelopes this side sends, in the original's exact shapes.
//!
//! Addresses are source routes of `!`-separated components. A sending endpoint strips the
//! peer's endpoint id from the front of `to` and puts its own in front of `from`; a `$RELAY`
//! component forwards along the rest. So a reply goes to the `from` it answers, with the
//! peer's endpoint id taken off.

use bytes::Bytes;

use crate::frame::Envelope;

/// Subjects of the exchange's own frames.
pub mod subjects {
    /// The endpoint layer's hello.
    pub const ENDPOINT_ANNOUNCE: &str = "$EP::ANNOUNCE";
    /// A client exchange's hello.
    pub const ANNOUNCE_CLIENT: &str = "$E::ANNOUNCE-CLIENT";
    /// A server exchange's hello.
    pub const ANNOUNCE_SERVER: &str = "$E::ANNOUNCE-SERVER";
    /// A service became available.
    pub const SERVICE_AVAILABLE: &str = "$E::SERVICE-AVAILABLE";
    /// A service was withdrawn.
    pub const SERVICE_WITHDRAWN: &str = "$E::SERVICE-WITHDRAWN";
    /// A service joined a group.
    pub const GROUP_AVAILABLE: &str = "$E::GROUP-AVAILABLE";
    /// A service left a group.
    pub const GROUP_WITHDRAWN: &str = "$E::GROUP-WITHDRAWN";
    /// The two-minute round trip.
    pub const KEEP_ALIVE: &str = "$E::KEEP-ALIVE";
    /// A method call.
    pub const REQUEST: &str = "$S::REQUEST";
    /// A call's result.
    pub const RESPONSE: &str = "$S::RESPONSE";
    /// A call's failure.
    pub const FAILURE: &str = "$S::FAILURE";
    /// A published report.
    pub const REPORT: &str = "$S::REPORT";
    /// A subscriber's pattern, sent to the publisher.
    pub const SUBSCRIPTION_REQUESTED: &str = "$S::SUBSCRIPTION-REQUESTED";
    /// A subscriber's pattern withdrawn.
    pub const SUBSCRIPTION_WITHDRAWN: &str = "$S::SUBSCRIPTION-WITHDRAWN";
    /// An agent-to-agent message (not bridged).
    pub const MESSAGE: &str = "$S::MESSAGE";
}

/// The local receiver that forwards along a route.
pub const RELAY: &str = "$RELAY";

/// The content type of NET-RPC payloads.
pub const XML: &str = "text/xml";

/// An exchange's role, as its ANNOUNCE says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeRole {
    /// Connects to servers; relays everything.
    Client,
    /// A hub: relays to its clients, and to other servers what came from its clients.
    Server,
}

/// A service as `SERVICE-AVAILABLE` carries it, or a membership as `GROUP-AVAILABLE` and
/// `GROUP-WITHDRAWN` do: four NUL-separated fields, no trailing NUL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRecord {
    /// The service's name.
    pub name: String,
    /// The receiver (agent) hosting it, in the sender's process.
    pub receiver: String,
    /// `$RELAY` for the sender's own services, else the route the sender reaches it by.
    pub process_address: String,
    /// The audience (SERVICE-AVAILABLE) or the group (GROUP-*).
    pub scope: String,
}

impl ServiceRecord {
    fn parse(content: &[u8]) -> Result<Self, MessageError> {
        let text = std::str::from_utf8(content).map_err(|_| MessageError::NotUtf8)?;
        let mut fields = text.split('\0');
        let mut next = || fields.next().ok_or(MessageError::Fields);
        let record = Self {
            name: next()?.to_owned(),
            receiver: next()?.to_owned(),
            process_address: next()?.to_owned(),
            scope: next()?.to_owned(),
        };
        if record.receiver.is_empty() {
            return Err(MessageError::Fields);
        }
        Ok(record)
    }

    fn content(&self) -> Bytes {
        Bytes::from(format!(
            "{}\0{}\0{}\0{}",
            self.name, self.receiver, self.process_address, self.scope
        ))
    }

    /// The service's address relative to the sender: what a `to` starts with to reach it
    /// through the sender, and what `SERVICE-WITHDRAWN` names it by.
    pub fn relative_address(&self) -> String {
        if self.process_address.is_empty() {
            format!("{}!{}", self.receiver, self.name)
        } else {
            format!("{}!{}!{}", self.process_address, self.receiver, self.name)
        }
    }
}

/// What an envelope means.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Message {
    /// `$EP::ANNOUNCE`: the peer's endpoint id is the envelope's `from`.
    EndpointAnnounce,
    /// `$E::ANNOUNCE-CLIENT` / `-SERVER`, with the peer's `host:pid`.
    ExchangeAnnounce {
        /// The peer exchange's role.
        role: ExchangeRole,
        /// Its process identity.
        identity: String,
    },
    /// `$E::SERVICE-AVAILABLE`.
    ServiceAvailable(ServiceRecord),
    /// `$E::SERVICE-WITHDRAWN`, naming the service by its address relative to the sender.
    ServiceWithdrawn {
        /// That address.
        address: String,
    },
    /// `$E::GROUP-AVAILABLE`.
    GroupAvailable(ServiceRecord),
    /// `$E::GROUP-WITHDRAWN`.
    GroupWithdrawn(ServiceRecord),
    /// `$E::KEEP-ALIVE`: one going round, or one come back.
    KeepAlive,
    /// `$S::REQUEST`: the arguments are the content, an `<array>`.
    Request {
        /// The method (header `MethodName`).
        method: String,
    },
    /// `$S::RESPONSE`: the result is the content.
    Response,
    /// `$S::FAILURE`: the four fields are the content.
    Failure,
    /// `$S::REPORT`.
    Report {
        /// Header `SubjectName`.
        subject: String,
        /// Header `SubjectPattern`: which of the subscriber's patterns it answers (absent for
        /// a report sent to one subscriber).
        pattern: Option<String>,
    },
    /// `$S::SUBSCRIPTION-REQUESTED`.
    SubscriptionRequested {
        /// Header `SubjectPattern`.
        pattern: String,
    },
    /// `$S::SUBSCRIPTION-WITHDRAWN`.
    SubscriptionWithdrawn {
        /// Header `SubjectPattern`.
        pattern: String,
    },
    /// Anything else (`$S::MESSAGE`, subjects of other layers): not bridged.
    Unsupported,
}

/// Why an envelope does not mean what its subject says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// A header line the subject needs is missing.
    #[error("header {0} missing")]
    MissingHeader(&'static str),
    /// Announcement content is not UTF-8.
    #[error("announcement content is not UTF-8")]
    NotUtf8,
    /// Announcement content does not have its four fields.
    #[error("announcement content does not have its four fields")]
    Fields,
}

impl Message {
    /// Reads an envelope.
    pub fn parse(envelope: &Envelope) -> Result<Self, MessageError> {
        use subjects::*;
        let header = |key: &'static str| {
            envelope
                .header_value(key)
                .map(str::to_owned)
                .ok_or(MessageError::MissingHeader(key))
        };
        let content = &envelope.content[..];
        Ok(match envelope.subject.as_str() {
            ENDPOINT_ANNOUNCE => Self::EndpointAnnounce,
            ANNOUNCE_CLIENT | ANNOUNCE_SERVER => Self::ExchangeAnnounce {
                role: if envelope.subject == ANNOUNCE_CLIENT {
                    ExchangeRole::Client
                } else {
                    ExchangeRole::Server
                },
                identity: String::from_utf8_lossy(content).into_owned(),
            },
            SERVICE_AVAILABLE => Self::ServiceAvailable(ServiceRecord::parse(content)?),
            SERVICE_WITHDRAWN => Self::ServiceWithdrawn {
                address: std::str::from_utf8(content)
                    .map_err(|_| MessageError::NotUtf8)?
                    .to_owned(),
            },
            GROUP_AVAILABLE => Self::GroupAvailable(ServiceRecord::parse(content)?),
            GROUP_WITHDRAWN => Self::GroupWithdrawn(ServiceRecord::parse(content)?),
            KEEP_ALIVE => Self::KeepAlive,
            REQUEST => Self::Request {
                method: header("MethodName")?,
            },
            RESPONSE => Self::Response,
            FAILURE => Self::Failure,
            REPORT => Self::Report {
                subject: header("SubjectName")?,
                pattern: envelope.header_value("SubjectPattern").map(str::to_owned),
            },
            SUBSCRIPTION_REQUESTED => Self::SubscriptionRequested {
                pattern: header("SubjectPattern")?,
            },
            SUBSCRIPTION_WITHDRAWN => Self::SubscriptionWithdrawn {
                pattern: header("SubjectPattern")?,
            },
            _ => Self::Unsupported,
        })
    }
}

/// The first component of an address and the rest after its `!`.
pub fn split_first(address: &str) -> (&str, &str) {
    address.split_once('!').unwrap_or((address, ""))
}

/// An address with `endpoint`'s component taken off its front, as a sending endpoint does
/// to a `to` that starts with its peer's id.
pub fn strip_endpoint<'a>(address: &'a str, endpoint: &str) -> &'a str {
    match split_first(address) {
        (first, rest) if first == endpoint => rest,
        _ => address,
    }
}

/// Builds the envelopes one side of one OSE connection sends: it knows its own endpoint id
/// and exchange name, and writes every address as the original's endpoint would after its
/// rewriting (so a frame built here is byte for byte what the original puts on the wire).
#[derive(Debug, Clone)]
pub struct Outbound {
    /// This side's endpoint id, `$EP?…`.
    pub endpoint: String,
    /// This side's exchange receiver: `$E`, or `$E?group`.
    pub exchange: String,
}

impl Outbound {
    /// A frame from this side: `from` gets the endpoint id in front.
    fn envelope(&self, to: &str, from: &str, subject: &str) -> Envelope {
        Envelope {
            to: to.to_owned(),
            from: if from.is_empty() {
                String::new()
            } else {
                format!("{}!{from}", self.endpoint)
            },
            subject: subject.to_owned(),
            ..Envelope::default()
        }
    }

    /// `$EP::ANNOUNCE`: empty `to`, `from` the bare endpoint id, seq 0, no content.
    pub fn endpoint_announce(&self, conversation: &str) -> Envelope {
        Envelope {
            from: self.endpoint.clone(),
            subject: subjects::ENDPOINT_ANNOUNCE.to_owned(),
            conversation: conversation.to_owned(),
            ..Envelope::default()
        }
    }

    /// `$E::ANNOUNCE-CLIENT` / `-SERVER` to the peer's exchange, in `conversation` at
    /// `sequence` (0 opening it, 1 answering).
    pub fn exchange_announce(
        &self,
        role: ExchangeRole,
        identity: &str,
        conversation: &str,
        sequence: u32,
    ) -> Envelope {
        let subject = match role {
            ExchangeRole::Client => subjects::ANNOUNCE_CLIENT,
            ExchangeRole::Server => subjects::ANNOUNCE_SERVER,
        };
        Envelope {
            conversation: conversation.to_owned(),
            sequence,
            content: Bytes::from(identity.to_owned()),
            ..self.envelope(&self.exchange, &self.exchange, subject)
        }
    }

    /// An exchange-level announcement (`SERVICE-AVAILABLE`, `GROUP-*`) to the peer's
    /// exchange.
    pub fn record(
        &self,
        subject: &str,
        record: &ServiceRecord,
        conversation: &str,
        sequence: u32,
    ) -> Envelope {
        Envelope {
            conversation: conversation.to_owned(),
            sequence,
            content: record.content(),
            ..self.envelope(&self.exchange, &self.exchange, subject)
        }
    }

    /// `$E::SERVICE-WITHDRAWN` naming a service by its address relative to this side.
    pub fn service_withdrawn(&self, address: &str, conversation: &str) -> Envelope {
        Envelope {
            conversation: conversation.to_owned(),
            content: Bytes::from(address.to_owned()),
            ..self.envelope(&self.exchange, &self.exchange, subjects::SERVICE_WITHDRAWN)
        }
    }

    /// A `$E::KEEP-ALIVE` of this side's, going round through the peer's exchange and back.
    pub fn keep_alive(&self, conversation: &str) -> Envelope {
        let back = format!("{}!{}", self.endpoint, self.exchange);
        Envelope {
            conversation: conversation.to_owned(),
            ..self.envelope(
                &format!("{}!{back}", self.exchange),
                &self.exchange,
                subjects::KEEP_ALIVE,
            )
        }
    }

    /// The peer's `$E::KEEP-ALIVE` sent on along its route (back to the peer), as the
    /// original's exchange receiver does: `$E!` in front of `from`.
    pub fn keep_alive_return(&self, received: &Envelope, peer_endpoint: &str) -> Envelope {
        let (_, rest) = split_first(&received.to);
        Envelope {
            conversation: received.conversation.clone(),
            sequence: received.sequence,
            ..self.envelope(
                strip_endpoint(rest, peer_endpoint),
                &format!("{}!{}", self.exchange, received.from),
                subjects::KEEP_ALIVE,
            )
        }
    }

    /// `$S::REQUEST` from `from` (an address in this process) to `to` (relative to the
    /// peer), seq 0, the arguments' `<array>` as content.
    pub fn request(
        &self,
        to: &str,
        from: &str,
        method: &str,
        conversation: &str,
        payload: String,
    ) -> Envelope {
        Envelope {
            header: format!("MethodName: {method}\n"),
            conversation: conversation.to_owned(),
            content_type: XML.to_owned(),
            content: Bytes::from(payload),
            ..self.envelope(to, from, subjects::REQUEST)
        }
    }

    /// The answer to `request` (as received from `peer_endpoint`): a `RESPONSE` at seq+1
    /// with content type `text/xml`, or a `FAILURE` at the same seq with none, as the
    /// original sends them.
    pub fn answer(
        &self,
        request: &Envelope,
        peer_endpoint: &str,
        failed: bool,
        payload: String,
    ) -> Envelope {
        let (subject, sequence, content_type) = if failed {
            (subjects::FAILURE, request.sequence, "")
        } else {
            (subjects::RESPONSE, request.sequence.saturating_add(1), XML)
        };
        Envelope {
            conversation: request.conversation.clone(),
            sequence,
            content_type: content_type.to_owned(),
            content: Bytes::from(payload),
            ..self.envelope(
                strip_endpoint(&request.from, peer_endpoint),
                &request.to,
                subject,
            )
        }
    }

    /// `$S::SUBSCRIPTION-REQUESTED` or `-WITHDRAWN` from subscriber `from` to publisher `to`.
    pub fn subscription(
        &self,
        requested: bool,
        to: &str,
        from: &str,
        pattern: &str,
        conversation: &str,
    ) -> Envelope {
        let subject = if requested {
            subjects::SUBSCRIPTION_REQUESTED
        } else {
            subjects::SUBSCRIPTION_WITHDRAWN
        };
        Envelope {
            header: format!("SubjectPattern: {pattern}\n"),
            conversation: conversation.to_owned(),
            ..self.envelope(to, from, subject)
        }
    }

    /// `$S::REPORT` from publisher `from` to subscriber `to` (relative to the peer).
    pub fn report(
        &self,
        to: &str,
        from: &str,
        subject: &str,
        pattern: &str,
        conversation: &str,
        payload: String,
    ) -> Envelope {
        Envelope {
            header: format!("SubjectName: {subject}\nSubjectPattern: {pattern}\n"),
            conversation: conversation.to_owned(),
            content_type: XML.to_owned(),
            content: Bytes::from(payload),
            ..self.envelope(to, from, subjects::REPORT)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPC: &str = "$EP?7F000001:593F:88330001";
    const EPS: &str = "$EP?7F000001:593D:88320001";

    fn client() -> Outbound {
        Outbound {
            endpoint: EPC.into(),
            exchange: "$E".into(),
        }
    }

    #[test]
    fn records_have_four_fields_and_no_trailing_nul() {
        let record = ServiceRecord {
            name: "ose-echo".into(),
            receiver: "$O?7F000001:593D:88320002".into(),
            process_address: RELAY.into(),
            scope: "*".into(),
        };
        let envelope = client().record(subjects::SERVICE_AVAILABLE, &record, "C1", 2);
        assert_eq!(
            &envelope.content[..],
            b"ose-echo\0$O?7F000001:593D:88320002\0$RELAY\0*"
        );
        assert_eq!(envelope.to, "$E");
        assert_eq!(envelope.from, format!("{EPC}!$E"));
        assert_eq!(
            Message::parse(&envelope),
            Ok(Message::ServiceAvailable(record.clone()))
        );
        assert_eq!(
            record.relative_address(),
            "$RELAY!$O?7F000001:593D:88320002!ose-echo"
        );
        let short = Envelope {
            content: Bytes::from_static(b"name\0receiver\0$RELAY"),
            ..envelope
        };
        assert_eq!(Message::parse(&short), Err(MessageError::Fields));
    }

    #[test]
    fn answers_retrace_the_request_route() {
        // Frame #6 of ose-wire-observed.md as the server received it.
        let request = Envelope {
            to: "$RELAY!$O?S!ose-echo".into(),
            from: format!("{EPC}!$RELAY!$O?C!ose-echo"),
            subject: subjects::REQUEST.into(),
            header: "MethodName: echo\n".into(),
            conversation: "$ID?x".into(),
            content_type: XML.into(),
            ..Envelope::default()
        };
        assert_eq!(
            Message::parse(&request),
            Ok(Message::Request {
                method: "echo".into()
            })
        );
        let server = Outbound {
            endpoint: EPS.into(),
            exchange: "$E".into(),
        };
        let response = server.answer(&request, EPC, false, String::new());
        assert_eq!(response.to, "$RELAY!$O?C!ose-echo");
        assert_eq!(response.from, format!("{EPS}!$RELAY!$O?S!ose-echo"));
        assert_eq!(
            (response.sequence, response.content_type.as_str()),
            (1, XML)
        );
        let failure = server.answer(&request, EPC, true, String::new());
        assert_eq!((failure.sequence, failure.content_type.as_str()), (0, ""));
    }

    #[test]
    fn keep_alives_go_round_as_observed() {
        let out = client().keep_alive("K");
        assert_eq!(out.to, format!("$E!{EPC}!$E"));
        assert_eq!(out.from, format!("{EPC}!$E"));
        let server = Outbound {
            endpoint: EPS.into(),
            exchange: "$E".into(),
        };
        let back = server.keep_alive_return(&out, EPC);
        assert_eq!(back.to, "$E");
        assert_eq!(back.from, format!("{EPS}!$E!{EPC}!$E"));
        assert_eq!(back.conversation, "K");
    }
}
