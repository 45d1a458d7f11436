//! Requests that cross links: our own calls to remote services, requests for our services
//! that arrive on a link, and requests relayed from one link to another, with their replies
//! and cancellations.
//!
//! Every request we send on a link takes its conversation id from that link's allocator,
//! whether a caller of this runtime made it or we relay it for a caller elsewhere: the id is
//! then unique among our pending requests on the link, as PROTOCOL.md §4.6 requires, and a
//! reply always finds the caller it belongs to.

use std::sync::Arc;

use netsvc_proto::wire::{Frame, Text, frame};
use tokio::sync::oneshot;

use super::Action;
use crate::core::Core;
use crate::core::link_queue::RequestRefused;
use crate::core::link_queue::failure_frame;
use crate::core::local::EncodedCall;
use crate::core::meters::Metered;
use crate::core::reply::{Reply, Responder};
use crate::model::failure::{Failure, codes};
use crate::model::ids::{Conv, Id as _, LinkId};
use crate::model::stats::RequestRole;

/// A request sent on a link and not answered yet.
pub(super) enum Pending {
    /// For a caller in this runtime.
    Local(oneshot::Sender<Reply>),
    /// Relayed for a request that came in on another link, under its conversation id there.
    Relay {
        link: LinkId,
        conv: Conv,
        metered: Metered,
    },
}

impl RequestRefused {
    fn failure(self) -> Failure {
        match self {
            Self::Congested => Failure::link_congested(),
            Self::TooLarge(e) => Failure::request_too_large(e.size, e.limit),
        }
    }
}

impl Core {
    /// Sends a request of a caller in this runtime on `link`: `request` builds the frame
    /// under the conversation id the link gives it, and the reply will go to `reply`.
    /// Fails at once if the link is gone, congested, or would refuse the frame.
    pub(crate) fn start_call(
        &mut self,
        link: LinkId,
        request: impl FnOnce(Conv) -> Frame,
        reply: oneshot::Sender<Reply>,
    ) -> Result<Conv, Failure> {
        let Some(l) = self.mesh.links.get_mut(&link) else {
            return Err(Failure::withdrawn());
        };
        let conv = l.convs.next();
        l.queue
            .try_push_request(&request(conv))
            .map_err(RequestRefused::failure)?;
        l.calls.insert(conv, Pending::Local(reply));
        Ok(conv)
    }

    /// Stops waiting for the reply to our request `conv` on `link` (the caller timed out or
    /// was cancelled, or the request it relayed was): the next hop is told.
    pub(crate) fn cancel_call(&mut self, link: LinkId, conv: Conv) {
        if let Some(l) = self.mesh.links.get_mut(&link)
            && let Some(pending) = l.calls.remove(&conv)
        {
            if let Pending::Relay { metered, .. } = pending {
                metered.finish(Some(codes::REQUEST_ABORTED));
            }
            l.queue
                .push(Frame::Cancel(frame::Cancel { conv: conv.raw() }));
        }
    }

    /// The requests relayed on `next` for a link that went: their callers are gone.
    pub(super) fn cancel_relayed(&mut self, next: LinkId, conv: Conv) {
        self.cancel_call(next, conv);
    }

    /// A REQUEST: dispatched to a local service (after the lock is released), relayed on
    /// the best route toward a remote one, or failed with 46 if there is none.
    pub(super) fn on_request(
        &mut self,
        link: LinkId,
        request: frame::Request,
        actions: &mut Vec<Action>,
    ) {
        let Some(back) = self.mesh.queue(link) else {
            return;
        };
        let conv = Conv::from_raw(request.conv);
        // Who the caller logged in as is the hub's to say (PROTOCOL.md §4.6): a link
        // without the `link` right gets its login written in, whatever it sent; a relaying
        // hub's word is kept.
        let mut request = request;
        let caller_grants = self
            .mesh
            .link(link)
            .and_then(|l| l.info.grants.clone())
            .filter(|grants| !grants.link);
        if let Some(grants) = &caller_grants {
            request.user = (!grants.user.is_empty()).then(|| Text::from(grants.user.as_str()));
        }
        if let Some(local) = self.locals.get(request.to.as_str()) {
            let sender = request
                .from
                .as_deref()
                .and_then(|f| self.registry.lookup_address(f));
            let service = local.service.clone();
            let served = local.served.clone();
            let id = self.ids.requests.next();
            actions.push(Action::Dispatch {
                service,
                call: EncodedCall {
                    id,
                    method: request.method,
                    args: request.args,
                    sender,
                    user: request.user.as_deref().map(Arc::from),
                    grants: caller_grants,
                },
                responder: Responder::link(back, conv, self.limits, served),
            });
            return;
        }
        let meter = self.relay_meter(request.to.as_str());
        let next = self.best_link(request.to.as_str());
        // A service is told who calls it: on an interest-scoped link, the caller first.
        if let (Some(next), Some(from)) = (next, &request.from) {
            self.admit(next, from);
        }
        let Some((next, next_link)) =
            next.and_then(|next| Some((next, self.mesh.links.get_mut(&next)?)))
        else {
            meter.record(Some(codes::SERVICE_UNAVAILABLE), std::time::Duration::ZERO);
            let missing = format!("No service at address {:?}.", request.to.as_str());
            back.push_reply(failure_frame(conv, &Failure::service_unavailable(missing)));
            return;
        };
        let next_conv = next_link.convs.next();
        let relayed = Frame::Request(frame::Request {
            conv: next_conv.raw(),
            ..request
        });
        if let Err(refused) = next_link.queue.try_push_request(&relayed) {
            let failure = refused.failure();
            meter.record(Some(failure.error), std::time::Duration::ZERO);
            back.push_reply(failure_frame(conv, &failure));
            return;
        }
        next_link.calls.insert(
            next_conv,
            Pending::Relay {
                link,
                conv,
                metered: Metered::start(meter),
            },
        );
        if let Some(l) = self.mesh.links.get_mut(&link) {
            l.relayed.insert(conv, (next, next_conv));
        }
    }

    /// The pending request `conv` on `link` is answered: takes it off the link's books.
    fn answered(&mut self, link: LinkId, conv: u64) -> Option<Pending> {
        let pending = self
            .mesh
            .links
            .get_mut(&link)?
            .calls
            .remove(&Conv::from_raw(conv))?;
        if let Pending::Relay { link, conv, .. } = &pending
            && let Some(back) = self.mesh.links.get_mut(link)
        {
            back.relayed.remove(conv);
        }
        Some(pending)
    }

    /// A RESPONSE: to its caller here, or back along the path it was relayed on.
    pub(super) fn on_response(&mut self, link: LinkId, response: frame::Response) {
        match self.answered(link, response.conv) {
            Some(Pending::Local(tx)) => {
                let _ = tx.send(Reply::Encoded(response.result));
            }
            Some(Pending::Relay {
                link,
                conv,
                metered,
            }) => {
                metered.finish(None);
                if let Some(back) = self.mesh.queue(link) {
                    back.push_reply(Frame::Response(frame::Response {
                        conv: conv.raw(),
                        ..response
                    }));
                }
            }
            None => {} // the caller gave up
        }
    }

    /// A FAILURE: to its caller here, or back along the path it was relayed on.
    pub(super) fn on_failure(&mut self, link: LinkId, failure: frame::Failure) {
        match self.answered(link, failure.conv) {
            Some(Pending::Local(tx)) => {
                let _ = tx.send(Reply::Failure(Failure::from_wire(&failure)));
            }
            Some(Pending::Relay {
                link,
                conv,
                metered,
            }) => {
                metered.finish(Some(failure.error));
                if let Some(back) = self.mesh.queue(link) {
                    back.push_reply(Frame::Failure(frame::Failure {
                        conv: conv.raw(),
                        ..failure
                    }));
                }
            }
            None => {}
        }
    }

    /// The meter of requests relayed to the service at `address`, by its name.
    fn relay_meter(&self, address: &str) -> Arc<crate::core::meters::RequestMeter> {
        let name = self
            .mesh
            .remote
            .get(address)
            // No such service here: counted under a name no service can have.
            .map_or("!unknown", |s| s.binding.service_name());
        self.meters.requests(name, RequestRole::Relayed)
    }

    /// A CANCEL: the caller of a request we relayed gave up; so do we.
    pub(super) fn on_cancel(&mut self, link: LinkId, conv: Conv) {
        let relayed = self
            .mesh
            .links
            .get_mut(&link)
            .and_then(|l| l.relayed.remove(&conv));
        if let Some((next, next_conv)) = relayed {
            self.cancel_relayed(next, next_conv);
        }
    }
}
