//! The frames a link receives, each handed to the part of the mesh that owns its kind.
//!
//! This is also where wire data becomes domain values: reason codes, patterns, names and
//! failures are checked and translated here (or by the helpers here), so that the handlers
//! below work with validated values only.

use std::sync::Arc;

use bytes::Bytes;
use netsvc_proto::Pattern;
use netsvc_proto::names;
use netsvc_proto::wire::{CloseCode, Frame, Text, WithdrawCode, frame};
use tokio::time::Instant;

use super::Action;
use crate::core::Core;
use crate::core::link_queue::failure_frame;
use crate::model::announcement::WithdrawReason;
use crate::model::binding::Audience;
use crate::model::failure::Failure;
use crate::model::grant::Grants;
use crate::model::ids::{Conv, Id as _, LinkId, Sid};

impl Core {
    /// Hands one frame received on link `link` to its handler.
    pub(super) fn on_frame(
        &mut self,
        link: LinkId,
        frame: Frame,
        raw: &Bytes,
        now: Instant,
        actions: &mut Vec<Action>,
    ) {
        if let Some(grants) = self.mesh.link(link).and_then(|l| l.info.grants.clone())
            && !self.permitted(link, &grants, &frame)
        {
            return;
        }
        match frame {
            Frame::Service(service) => self.on_service(link, &service, now),
            Frame::Withdraw(withdraw) => {
                let reason = WithdrawReason::from_wire(withdraw.code());
                if reason == WithdrawReason::Refused
                    && let Some(local) = self.locals.get(&*withdraw.address)
                {
                    tracing::warn!(address = %withdraw.address,
                        "the peer refused to announce this service: its user may not provide the name");
                    let peer = self.mesh.link(link).map(|l| l.info.peer.clone());
                    local.service.refused(&format!(
                        "{} refused to announce it: this process's user may not provide the name {:?}",
                        peer.as_deref().unwrap_or("the exchange"),
                        service_name(&withdraw.address)
                    ));
                    return;
                }
                self.remove_route(&withdraw.address, link, reason);
            }
            Frame::Synced => self.on_synced(link),
            Frame::Interest(interest) => self.on_interest(link, interest),
            Frame::Interested(answer) => self.on_interested(link, answer.seq),
            Frame::Request(request) => self.on_request(link, request, actions),
            Frame::Response(response) => self.on_response(link, response),
            Frame::Failure(failure) => self.on_failure(link, failure),
            Frame::Cancel(cancel) => self.on_cancel(link, Conv::from_raw(cancel.conv)),
            Frame::Subscribe(subscribe) => self.subscribe_checked(link, &subscribe, now),
            Frame::Subscribed(ack) => {
                self.on_subscribed(link, Sid::from_raw(ack.sid), ack.refused);
            }
            Frame::Unsubscribe(end) => self.on_unsubscribe(link, Sid::from_raw(end.sid)),
            Frame::Report(report) => self.on_report(link, report, raw, actions),
            Frame::Targeted(targeted) => self.on_targeted(link, targeted),
            Frame::Missed(missed) => self.on_missed(link, missed),
            // Handshake, heartbeats and closes are the link task's business.
            Frame::Hello(_) | Frame::Heartbeat | Frame::Close(_) => {}
        }
    }

    /// Whether a frame from a link whose user has `grants` may go on (docs/SECURITY.md);
    /// when it may not, the refusal has been made: a FAILURE 49 for a call, a WITHDRAW
    /// `refused` for an announcement, the link closed for relaying without the right.
    fn permitted(&mut self, link: LinkId, grants: &Grants, frame: &Frame) -> bool {
        let Some(state) = self.mesh.link(link) else {
            return false;
        };
        let (peer, queue) = (state.info.peer.clone(), state.queue.clone());
        // A peer that may not relay speaks only for its own process: every address a frame
        // gives as its sender's must be one of the peer's agents. Otherwise it could pass
        // a call off as another service's (the callee trusts `Request::sender`), feed
        // reports to another publisher's subscribers, or take an address that another
        // process will announce again after a reconnect. (A relayed SERVICE is refused
        // below with its own reason first.)
        let speaks_for_another = || {
            let claimed = claimed_address(frame)?;
            (address_process(claimed) != Some(&*peer)).then_some(claimed)
        };
        let refuse_impostor = |claimed: &str| {
            tracing::warn!(user = %grants.user, %peer, kind = frame.name(),
                address = claimed, "link closed: a frame speaks for another process's service");
            queue.close(
                CloseCode::NotAuthorised,
                "a frame names a service of another process as its sender",
                false,
            );
            false
        };
        if !grants.link
            && !matches!(frame, Frame::Service(_))
            && let Some(claimed) = speaks_for_another()
        {
            return refuse_impostor(claimed);
        }
        match frame {
            Frame::Service(service) => {
                let relayed = service.path.len() != 1
                    || service.path.first().is_some_and(|p| *p.as_str() != *peer);
                let taken = self
                    .mesh
                    .remote
                    .get(service.address.as_str())
                    .is_some_and(|known| *known.binding.process_identity() != *peer);
                if !grants.link && (relayed || taken) {
                    tracing::warn!(user = %grants.user, %peer, address = %service.address,
                        "link closed: it relays (or takes over) a service without the right to link");
                    queue.close(
                        CloseCode::NotAuthorised,
                        "relayed announcements from a link that may not relay",
                        false,
                    );
                    return false;
                }
                if !grants.link
                    && let Some(claimed) = speaks_for_another()
                {
                    return refuse_impostor(claimed);
                }
                // An unnamed service (a caller or subscriber agent) cannot be found by name,
                // so it takes no name from anyone; and a publisher serves only subscribers it
                // can see.
                if !service.name.is_empty() && !grants.provide.allows(&service.name) {
                    tracing::warn!(user = %grants.user, %peer, name = %service.name,
                        "SERVICE refused: the user may not provide this name");
                    queue.push(Frame::Withdraw(frame::Withdraw {
                        address: service.address.clone(),
                        reason: WithdrawCode::Refused.code(),
                    }));
                    return false;
                }
                true
            }
            Frame::Request(request) => {
                let name = service_name(&request.to);
                if grants.call.allows(name) {
                    return true;
                }
                tracing::info!(user = %grants.user, %peer, service = name, "call refused");
                let refusal = Failure::not_authorised(format!(
                    "User {:?} may not call service {name:?}.",
                    grants.user
                ));
                queue.push_reply(failure_frame(Conv::from_raw(request.conv), &refusal));
                false
            }
            // Cached and targeted reports are publications too.
            Frame::Report(frame::Report { subject, .. })
            | Frame::Targeted(frame::Targeted { subject, .. }) => {
                let allowed = grants.publish.allows(subject);
                if !allowed {
                    tracing::debug!(user = %grants.user, %subject,
                        "report dropped: the user may not publish on this subject");
                }
                allowed
            }
            _ => true,
        }
    }

    /// A SYNCED: the peer has sent its whole registry.
    fn on_synced(&mut self, link: LinkId) {
        if let Some(link) = self.mesh.links.get_mut(&link) {
            // Where we asked for an interest scope, the peer's SYNCED comes before it has
            // heard what we want: the answer to our first INTERESTs stands for it.
            if !matches!(link.scope, Some(super::Scope::Asked { .. })) {
                link.peer_synced = true;
            }
        }
    }

    fn subscribe_checked(&mut self, link: LinkId, subscribe: &frame::Subscribe, now: Instant) {
        let sid = Sid::from_raw(subscribe.sid);
        match Pattern::new(&subscribe.pattern) {
            Ok(pattern) => self.on_subscribe(
                link,
                sid,
                &subscribe.publisher,
                &subscribe.subscriber,
                pattern,
                now,
            ),
            Err(e) => {
                tracing::warn!(pattern = %subscribe.pattern, "SUBSCRIBE not served: {e}");
                self.refuse_subscribe(link, sid);
            }
        }
    }
}

/// Checks what a SERVICE frame says of a service not known yet: a valid name, an audience,
/// and an address of the form `<agent>!<name>`. Returns the audience.
pub(super) fn new_service(service: &frame::Service) -> Result<Audience, String> {
    let (address, name) = (service.address.as_str(), service.name.as_str());
    names::check_service_name(name).map_err(|e| e.to_string())?;
    let audience: Audience = service
        .audience
        .as_str()
        .parse()
        .map_err(|e: names::NameError| format!("invalid audience: {e}"))?;
    address
        .strip_suffix(name)
        .and_then(|a| a.strip_suffix('!'))
        .filter(|a| !a.is_empty())
        .ok_or_else(|| "its address does not end in its name".to_owned())?;
    Ok(audience)
}

/// The address a frame gives as its sender's own: the service it announces, the caller of
/// a request, the subscriber of a subscription, the publisher of a report.
fn claimed_address(frame: &Frame) -> Option<&str> {
    match frame {
        Frame::Service(s) => Some(&s.address),
        Frame::Request(r) => r.from.as_deref(),
        Frame::Subscribe(s) => Some(&s.subscriber),
        Frame::Report(r) => Some(&r.publisher),
        Frame::Missed(m) => Some(&m.publisher),
        _ => None,
    }
}

/// The process identity in a service address (`<n>@<process>!<name>`): neither part may
/// contain `!` or `@`, so the first of each separates.
fn address_process(address: &str) -> Option<&str> {
    let (agent, _) = address.split_once('!')?;
    agent.split_once('@').map(|(_, process)| process)
}

/// The name part of a service address (`<agent>!<name>`).
pub(super) fn service_name(address: &str) -> &str {
    address.rsplit_once('!').map_or(address, |(_, name)| name)
}

/// The subscriber's pattern a TARGETED report names, if it names a valid one.
pub(super) fn pattern_of(text: Option<Text>) -> Option<Arc<Pattern>> {
    text.and_then(|p| Pattern::new(&p).ok()).map(Arc::new)
}
