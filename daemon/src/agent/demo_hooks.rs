//! The idle limits as something outside the agent may change them: the seam through which the
//! demo's controls (`cardgate-demo`, `org.cardgate.Demo1.ShortenIdle`) make the idle-timeout
//! and card-left-in-reader events visible within seconds. The production daemon serves no
//! interface that reaches it.

use std::time::Duration;

use super::{Agent, lock};

impl Agent {
    /// From now on a session idles out after `limit` (the live session too, if its own limit
    /// is longer) and an idle workstation holding a card is reported after `limit`. The timer
    /// task is woken, so a deadline that moved earlier is kept.
    pub fn shorten_idle_limits(&self, limit: Duration) {
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
