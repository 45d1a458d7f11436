//! The gateway's memory of recent withdrawals, so that `/api/services` can say why a
//! service is gone: the registry itself keeps only what is there. One registry watch per
//! gateway feeds it; it holds at most [`MAX_WITHDRAWALS`], the oldest dropped first.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use netsvc::{AnnouncementKind, RecvError, Runtime};
use serde_json::{Value as Json, json};

/// Withdrawals remembered.
pub(crate) const MAX_WITHDRAWALS: usize = 256;

/// One service that went, and why.
#[derive(Debug, Clone)]
pub(crate) struct Withdrawal {
    pub(crate) name: String,
    pub(crate) address: String,
    reason: &'static str,
    reason_text: String,
    /// Milliseconds since the Unix epoch.
    at_ms: u64,
}

impl Withdrawal {
    pub(crate) fn json(&self) -> Json {
        json!({
            "name": self.name,
            "address": self.address,
            "reason": self.reason,
            "reason_text": self.reason_text,
            "at_ms": self.at_ms,
        })
    }
}

/// The recent withdrawals, newest last.
#[derive(Debug, Default)]
pub(crate) struct Withdrawals {
    recent: Mutex<VecDeque<Withdrawal>>,
}

impl Withdrawals {
    fn push(&self, withdrawal: Withdrawal) {
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        if recent.len() == MAX_WITHDRAWALS {
            recent.pop_front();
        }
        recent.push_back(withdrawal);
    }

    /// Newest first.
    pub(crate) fn newest_first(&self) -> Vec<Withdrawal> {
        let recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        recent.iter().rev().cloned().collect()
    }

    /// The last withdrawal of a service named `name`, if remembered.
    pub(crate) fn last_of(&self, name: &str) -> Option<Withdrawal> {
        let recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        recent.iter().rev().find(|w| w.name == name).cloned()
    }

    /// Records the withdrawals `rt`'s registry announces from now on, for as long as
    /// `owner` (the gateway) lives. Outside a tokio runtime nothing is recorded.
    pub(crate) fn follow(owner: Weak<Self>, rt: &Runtime) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let rt = rt.clone();
        let mut watch = rt.registry().watch();
        handle.spawn(async move {
            loop {
                let announcement = match watch.recv().await {
                    Ok(a) => a,
                    // Cut off for falling behind: what was missed is missed; a new watch
                    // (its snapshot holds no withdrawals) goes on with what comes.
                    Err(RecvError::Lagged) => {
                        watch = rt.registry().watch();
                        continue;
                    }
                    Err(_) => return,
                };
                let Some(withdrawals) = owner.upgrade() else {
                    return;
                };
                if let AnnouncementKind::Withdrawn(reason) = announcement.kind {
                    let at_ms = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                    withdrawals.push(Withdrawal {
                        name: announcement.binding.service_name().to_owned(),
                        address: announcement.binding.address().to_owned(),
                        reason: reason.name(),
                        reason_text: reason.to_string(),
                        at_ms,
                    });
                }
            }
        });
    }
}
