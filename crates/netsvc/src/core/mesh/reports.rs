//! Reports from remote publishers as they arrive on a link: delivered to the monitors here
//! and relayed, once per link, to the subscribers behind other links.

use std::sync::Arc;

use bytes::Bytes;
use netsvc_proto::wire::{Frame, Text, frame};

use super::Action;
use super::subs::SubOrigin;
use crate::core::Core;
use crate::model::ids::{Id as _, LinkId, Sid};
use crate::model::payload::Payload;
use crate::model::report::{Report, ReportEvent};

impl Core {
    /// A REPORT: matched against the installed subscriptions toward its publisher (or the
    /// route its subject took last time), forwarded as the same bytes once per downstream
    /// link, and delivered to each matching monitor here.
    pub(super) fn on_report(
        &mut self,
        link: LinkId,
        report: frame::Report,
        raw: &Bytes,
        actions: &mut Vec<Action>,
    ) {
        let Some(remote) = self.mesh.publishers.get_mut(report.publisher.as_str()) else {
            return;
        };
        let subject = &report.subject;
        self.traffic.received += 1;
        let known = remote
            .route
            .as_ref()
            .is_some_and(|r| r.link == Some(link) && *r.subject == *subject.as_str());
        if !known {
            // The previous route's buffers are reused: a publisher cycling through many
            // subjects allocates only each subject's shared string.
            let mut route = remote.route.take().unwrap_or_default();
            route.monitors.clear();
            route.downstream.clear();
            let subs = &self.mesh.subs;
            let links = &self.mesh.links;
            remote.index.for_each_match(subject, |_, sid| {
                let Some(sub) = subs.get(*sid) else { return };
                if sub.link != link {
                    return; // a report still in flight on a route we have left
                }
                match sub.origin {
                    SubOrigin::Monitor(m) => route.monitors.push((m, sub.pattern.clone())),
                    SubOrigin::Relay { link, .. } => {
                        // A link whose user may not receive this subject is left out of
                        // the route (checked once per subject, not per report).
                        let admitted = links
                            .get(&link)
                            .is_some_and(|l| l.queue.admits_subject(subject));
                        if admitted && !route.downstream.contains(&link) {
                            route.downstream.push(link);
                        }
                    }
                }
            });
            route.subject = Arc::from(subject.as_str());
            route.link = Some(link);
            remote.route = Some(route);
        }
        let Some(route) = &remote.route else {
            return;
        };
        if let Some(previous) = remote
            .counted
            .count(subject.as_str(), || route.subject.clone())
        {
            self.traffic
                .add_subject(report.publisher.as_str(), previous);
        }
        for next in &route.downstream {
            if let Some(l) = self.mesh.links.get(next)
                && l.queue
                    .push_report(raw, || (report.publisher.clone(), subject.clone()))
                && report.paced
                && l.queue.applies_backpressure()
                && !actions
                    .iter()
                    .any(|a| matches!(a, Action::Backpressure(q) if Arc::ptr_eq(q, &l.queue)))
            {
                actions.push(Action::Backpressure(l.queue.clone()));
            }
        }
        if route.monitors.is_empty() {
            return;
        }
        let Some(binding) = self
            .mesh
            .remote
            .get(report.publisher.as_str())
            .map(|s| &s.binding)
        else {
            return;
        };
        let content = Payload::from_bytes(report.payload);
        self.traffic.delivered += route.monitors.len() as u64;
        for (m, pattern) in &route.monitors {
            if let Some(monitor) = self.monitors.get_mut(*m) {
                monitor.note_seq(binding.address_arc(), report.seq);
                monitor.queue.push(ReportEvent::Report(Report::new(
                    binding.clone(),
                    route.subject.clone(),
                    content.clone(),
                    Some(pattern.clone()),
                    false,
                )));
            }
        }
    }

    /// A MISSED: reports of `publisher` were lost on the way here; every subscription that
    /// receives them through this link is told.
    pub(super) fn on_missed(&mut self, link: LinkId, missed: frame::Missed) {
        let Some(remote) = self.mesh.publishers.get(missed.publisher.as_str()) else {
            return;
        };
        let mut monitors = Vec::new();
        let mut downstream = Vec::new();
        for sid in &remote.sids {
            let Some(sub) = self.mesh.subs.get(*sid) else {
                continue;
            };
            if sub.link != link || !sub.installed {
                continue;
            }
            match sub.origin {
                SubOrigin::Monitor(m) if !monitors.contains(&m) => monitors.push(m),
                SubOrigin::Relay { link, .. } if !downstream.contains(&link) => {
                    downstream.push(link)
                }
                _ => {}
            }
        }
        for m in monitors {
            if let Some(monitor) = self.monitors.get(m) {
                monitor.queue.push(ReportEvent::Missed(missed.count));
            }
        }
        for next in downstream {
            if let Some(l) = self.mesh.links.get(&next) {
                l.queue.push(Frame::Missed(frame::Missed {
                    publisher: missed.publisher.clone(),
                    count: missed.count,
                }));
            }
        }
    }

    /// A TARGETED: a cached report replayed for one subscription, or a report for one
    /// subscriber; delivered to its monitor, or relayed to the link it came from.
    pub(super) fn on_targeted(&mut self, link: LinkId, targeted: frame::Targeted) {
        let sid = Sid::from_raw(targeted.sid);
        let Some(sub) = self.mesh.subs.get(sid) else {
            return;
        };
        if sub.link != link {
            return;
        }
        match sub.origin {
            SubOrigin::Relay { link, sid: theirs } => {
                let publisher = Text::from(sub.publisher.address());
                if let Some(l) = self.mesh.links.get(&link)
                    && l.queue.admits_subject(&targeted.subject)
                {
                    l.queue.push_targeted(
                        Frame::Targeted(frame::Targeted {
                            sid: theirs.raw(),
                            ..targeted
                        }),
                        &publisher,
                    );
                }
            }
            SubOrigin::Monitor(m) => {
                let Some(binding) = self
                    .mesh
                    .remote
                    .get(sub.publisher.address())
                    .map(|s| s.binding.clone())
                else {
                    return;
                };
                let Some(monitor) = self.monitors.get_mut(m) else {
                    return;
                };
                // After a re-subscription the cache comes again: skip what was seen.
                if !targeted.targeted && !monitor.note_seq(binding.address_arc(), targeted.seq) {
                    return;
                }
                let pattern = super::inbound::pattern_of(targeted.pattern);
                self.traffic.received += 1;
                self.traffic.delivered += 1;
                let report = Report::new(
                    binding,
                    Arc::from(targeted.subject.as_str()),
                    Payload::from_bytes(targeted.payload),
                    pattern,
                    targeted.targeted,
                );
                // A TARGETED that is not targeted is the publisher's cache replayed.
                let report = if targeted.targeted {
                    report
                } else {
                    report.replayed()
                };
                monitor.queue.push(ReportEvent::Report(report));
            }
        }
    }
}
