//! What the demo's controls (`crate::demo::controls`, `org.cardgate.Demo1.ShortenIdle`)
//! may change in the agent: the idle limits, so the idle-timeout and card-left-in-reader
//! events can be seen within seconds. Only the demo calls this; the production daemon
//! never serves the interface that reaches it.

use std::time::Duration;

use super::{Agent, lock};

impl Agent {
    /// From now on a session idles out after `limit` (the live session too) and an idle
    /// workstation holding a card is reported after `limit`.
    pub(crate) fn shorten_idle_limits(&self, limit: Duration) {
        let mut state = lock(&self.shared.state);
        state.limits.max_idle = limit;
        state.limits.card_left = limit;
        if let Some(session) = state.session.as_mut() {
            session.max_idle = session.max_idle.min(limit);
        }
        drop(state);
        self.shared.timers_changed.notify_one();
    }
}
