//! Keeping the CRL fresh while the daemon runs (`card.crl = "endpoint"`).
//!
//! A pharmacy workstation's agent runs for weeks. A CRL fetched once at start would let a
//! card revoked since then through, and once that CRL passed its `nextUpdate` (plus the
//! check's grace) every card would be refused until a restart. So the CRL is fetched again
//! every `card.crl_refresh_seconds`, and earlier if the held one's `nextUpdate` comes
//! first. A fetch that fails keeps the CRL held (the certificate check's freshness policy
//! decides how long that stays acceptable) and is retried sooner. A CRL older than the one
//! held is refused ([`CrlCache`]: a replayed old CRL must not un-revoke a card). The new
//! CRL applies from the next card inspection (insertion).

use std::sync::Arc;
use std::time::Duration;

use cardgate_card::CardInspector;
use cardgate_certs::{Crl, CrlCache, CrlUpdate, TrustAnchors};
use time::OffsetDateTime;

use crate::agent::Agent;
use crate::endpoint::SpineEndpoint;

/// How soon a failed fetch is retried.
const RETRY: Duration = Duration::from_secs(60);
/// How soon a fetch is retried while no CRL is held at all (every card is refused meanwhile).
const RETRY_WITHOUT_CRL: Duration = Duration::from_secs(5);

fn held_any(cache: &CrlCache) -> bool {
    cache.iter().next().is_some()
}
/// Fetch this long before the held CRL's `nextUpdate`.
const AHEAD_OF_NEXT_UPDATE: Duration = Duration::from_secs(300);

/// When to fetch next: after `every`, or [`AHEAD_OF_NEXT_UPDATE`] before `next_update` if
/// that is sooner, never sooner than one second.
fn next_fetch_in(
    every: Duration,
    next_update: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Duration {
    let before_expiry = next_update.map(|next| {
        let left = (next - now).try_into().unwrap_or(Duration::ZERO);
        left.saturating_sub(AHEAD_OF_NEXT_UPDATE)
    });
    before_expiry
        .map_or(every, |d| d.min(every))
        .max(Duration::from_secs(1))
}

/// Refetches the CRL from `endpoint` for ever (the task is aborted at shutdown), installing
/// each newer one in `inspector` and having `agent` check the cards in the readers again.
/// `held` is the CRL fetched at start, if any; without one the first fetch is after
/// [`RETRY_WITHOUT_CRL`].
pub(crate) async fn keep_fresh(
    endpoint: Arc<SpineEndpoint>,
    anchors: TrustAnchors,
    inspector: Arc<CardInspector>,
    agent: Agent,
    held: Option<Crl>,
    every: Duration,
) {
    let mut cache = CrlCache::new();
    let mut next_update = held.as_ref().map(Crl::next_update);
    if let Some(crl) = held {
        // The cache only remembers what was held, to refuse anything older.
        let _ = cache.offer(crl);
    }
    let mut wait = if held_any(&cache) {
        next_fetch_in(every, next_update, OffsetDateTime::now_utc())
    } else {
        RETRY_WITHOUT_CRL.min(every)
    };
    loop {
        tokio::time::sleep(wait).await;
        let fetched = match endpoint.client().crl().await {
            Ok(der) => Crl::from_der(&der, &anchors).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let crl = match fetched {
            Ok(crl) => crl,
            Err(e) => {
                let retry = if held_any(&cache) {
                    RETRY
                } else {
                    RETRY_WITHOUT_CRL
                };
                tracing::warn!(error = %e, retry_in_s = retry.as_secs(), "CRL refresh failed; keeping the CRL held");
                wait = retry.min(every);
                continue;
            }
        };
        let (this_update, next) = (crl.this_update(), crl.next_update());
        match cache.offer(crl.clone()) {
            Ok(CrlUpdate::Unchanged) => {
                tracing::debug!(%this_update, "CRL unchanged");
                next_update = Some(next);
            }
            Ok(_) => {
                tracing::info!(%this_update, next_update = %next, revoked = crl.revoked_count(), "CRL refreshed");
                inspector.set_crl(Some(crl));
                next_update = Some(next);
                agent.recheck_cards();
            }
            Err(e) => {
                tracing::warn!(error = %e, "the endpoint sent an older CRL than the one held; ignored");
            }
        }
        wait = next_fetch_in(every, next_update, OffsetDateTime::now_utc());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_fetch_comes_before_the_held_crl_expires() {
        let now = OffsetDateTime::now_utc();
        let hour = Duration::from_secs(3600);
        assert_eq!(next_fetch_in(hour, None, now), hour);
        assert_eq!(
            next_fetch_in(hour, Some(now + time::Duration::days(7)), now),
            hour
        );
        assert_eq!(
            next_fetch_in(hour, Some(now + time::Duration::minutes(15)), now),
            Duration::from_secs(600)
        );
        // Already past: as soon as allowed, never a busy loop.
        assert_eq!(
            next_fetch_in(hour, Some(now - time::Duration::minutes(1)), now),
            Duration::from_secs(1)
        );
    }
}
