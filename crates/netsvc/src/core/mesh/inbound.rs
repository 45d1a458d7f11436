//! The frames a link receives, each handed to the part of the mesh that owns its kind.
//!
//! This is also where wire data becomes domain values: reason codes, patterns, names and
//! failures are checked and translated here (or by the helpers here), so that the handlers
//! below work with validated values only.

use std::sync::Arc;

use bytes::Bytes;
use netsvc_proto::Pattern;
use netsvc_proto::names;
use netsvc_proto::wire::{Frame, Text, frame};
use tokio::time::Instant;

use super::Action;
use crate::core::Core;
use crate::model::announcement::WithdrawReason;
use crate::model::binding::Audience;
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
        match frame {
            Frame::Service(service) => self.on_service(link, &service, now),
            Frame::Withdraw(withdraw) => {
                let reason = WithdrawReason::from_wire(withdraw.code());
                self.remove_route(&withdraw.address, link, reason);
            }
            Frame::Synced => self.on_synced(link),
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

    /// A SYNCED: the peer has sent its whole registry.
    fn on_synced(&mut self, link: LinkId) {
        if let Some(link) = self.mesh.links.get_mut(&link) {
            link.peer_synced = true;
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

/// The subscriber's pattern a TARGETED report names, if it names a valid one.
pub(super) fn pattern_of(text: Option<Text>) -> Option<Arc<Pattern>> {
    text.and_then(|p| Pattern::new(&p).ok()).map(Arc::new)
}
