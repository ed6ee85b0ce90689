//! The idle timers: a session idling out, a card left in an idle workstation, the
//! `mobility` re-authentication deadline; one task sleeps until the next deadline.

use cardgate_ipc::SessionEndReason;
use tokio::time::Instant;

use super::{Agent, AgentEvent, lock};

impl Agent {
    /// Checks the idle timers once: the session's idle limit and a card left in an idle
    /// workstation. Called by [`Agent::run_timers`] at each deadline; public so tests can drive
    /// it under paused time.
    pub fn check_timers(&self) {
        let config = &self.shared.config.session;
        let (idle_out, card_left, reauthentication_due) = {
            let mut state = lock(&self.shared.state);
            let idle = state.last_activity.elapsed();
            let idle_out = state.session.as_ref().is_some_and(|s| idle >= s.max_idle);
            let reauthentication_due = state.session.as_ref().is_some_and(|s| {
                s.detached
                    .and_then(|d| d.mobility_until)
                    .is_some_and(|until| Instant::now() >= until)
            });
            let card_left = if !state.limits.card_left.is_zero()
                && !state.card_left_signalled
                && idle >= state.limits.card_left
            {
                state
                    .active_card()
                    .map(|(reader, _)| (reader.to_string(), idle))
            } else {
                None
            };
            if card_left.is_some() {
                state.card_left_signalled = true;
            }
            (idle_out, card_left, reauthentication_due)
        };
        if reauthentication_due && !idle_out {
            self.end_session(SessionEndReason::ReauthenticationDue, None);
        }
        if idle_out {
            self.end_session(SessionEndReason::IdleTimeout, None);
        }
        if let Some((reader, idle)) = card_left {
            self.emit(AgentEvent::CardLeftInReader {
                reader,
                idle_seconds: u32::try_from(idle.as_secs()).unwrap_or(u32::MAX),
            });
            if config.end_session_when_card_left {
                self.end_session(SessionEndReason::CardLeftInReader, None);
            }
        }
    }

    /// When [`Agent::check_timers`] next has something to do: the session's idle limit, the
    /// `mobility` re-authentication deadline, or the card-left time; `None` when no timer
    /// runs. A deadline that moved later (activity) only costs one early look.
    pub fn next_timer_deadline(&self) -> Option<Instant> {
        let state = lock(&self.shared.state);
        let card_left_idle = state.limits.card_left;
        let idle_limit = state
            .session
            .as_ref()
            .map(|s| state.last_activity + s.max_idle);
        let mobility = state
            .session
            .as_ref()
            .and_then(|s| s.detached)
            .and_then(|d| d.mobility_until);
        let card_left = (!card_left_idle.is_zero()
            && !state.card_left_signalled
            && state.active_card().is_some())
        .then(|| state.last_activity + card_left_idle);
        [idle_limit, mobility, card_left]
            .into_iter()
            .flatten()
            .min()
    }

    /// Runs the timers until the task is dropped: sleeps until the next deadline (or until a
    /// state change may have moved one earlier), so an idle workstation costs no wake-ups.
    pub async fn run_timers(self) {
        loop {
            // Registered before the deadline is read: a change in between is not missed.
            let changed = self.shared.timers_changed.notified();
            match self.next_timer_deadline() {
                Some(deadline) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(deadline) => {}
                        () = changed => {}
                    }
                }
                None => changed.await,
            }
            self.check_timers();
        }
    }
}
