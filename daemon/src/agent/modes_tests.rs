//! The removal modes, `ChangePasscode` and the `Authorise` refusal reasons, driven with real
//! virtual PIV cards (vcard applets) in the in-process `VirtualBackend`, the real card
//! inspector and card actor, and a scripted endpoint that counts log-ins and log-outs (so
//! "no new endpoint log-in" is observable). Timers run under paused tokio time: no sleeps.

use std::sync::atomic::{AtomicUsize, Ordering};

use cardgate_certs::{Crl, TrustAnchors};
use cardgate_reader::VirtualBackend;
use cardgate_spine::CardSigner;
use cardgate_spine::wire::Secret;
use cardgate_vcard::applet::PivApplet;
use cardgate_vcard::card_file::{CardFile, KeyAlgorithm};
use cardgate_vcard::provision::{CardSpec, RevokedCard, TestCa, Validity, provision};

use super::*;
use crate::error::CoreError;
use cardgate_audit::CallerIdentity;
use cardgate_ipc::{AgentState, AuthoriseAnswer};
use cardgate_reader::{ReaderEvent, ReaderEventKind};
use cardgate_spine::SpineError;
use cardgate_spine::wire::RoleProfile;
use cardgate_spine::wire::Session as SpineSession;

use crate::config::RemovalMode;
use crate::endpoint::BoxFuture;

const PASS: &str = "k2468m";
const ASHA: (&str, &str) = ("Asha Patel", "555000111222");
const BEN: (&str, &str) = ("Ben Okafor", "555000333444");

/// An endpoint that answers at once: log-in gives session `s-N` with four role profiles;
/// selecting `RP-DOWN` fails as unreachable, `RP-GONE` as a session the endpoint ended;
/// log-ins and log-outs are counted.
#[derive(Default)]
struct ScriptedEndpoint {
    logins: AtomicUsize,
    logouts: AtomicUsize,
}

fn profile(id: &str, ods: &str, activities: &[&str]) -> RoleProfile {
    RoleProfile {
        id: id.into(),
        job_role: "Pharmacist".into(),
        ods_code: ods.into(),
        organisation_name: "Somewhere".into(),
        activities: activities.iter().map(|a| (*a).to_owned()).collect(),
    }
}

const ALL: &[&str] = &[
    "eps.nominate",
    "eps.download",
    "eps.return",
    "eps.dispense-notify",
    "eps.claim",
    "scr.view",
];

impl Endpoint for ScriptedEndpoint {
    fn login(&self, _: Arc<dyn CardSigner>) -> BoxFuture<'_, Result<SpineSession, SpineError>> {
        let n = self.logins.fetch_add(1, Ordering::SeqCst) + 1;
        Box::pin(async move {
            Ok(SpineSession {
                session_id: format!("s-{n}"),
                token: Secret::new(format!("t-{n}")),
                uid: ASHA.1.into(),
                name: ASHA.0.into(),
                max_idle_time: 900,
                logout_url: format!("/v1/sessions/s-{n}"),
                certificate_not_after: now() + time::Duration::days(365),
                role_profiles: vec![
                    profile("RP-PHARM", "FA123", ALL),
                    profile("RP-NOSCR", "FA123", &["eps.download"]),
                    profile("RP-ELSEWHERE", "FB999", ALL),
                    profile("RP-DOWN", "FA123", ALL),
                    profile("RP-GONE", "FA123", ALL),
                ],
                selected_role_profile: None,
                passcode_expires_at: None,
            })
        })
    }
    fn select_role<'a>(
        &'a self,
        session: &'a SpineSession,
        id: &'a str,
    ) -> BoxFuture<'a, Result<SpineSession, SpineError>> {
        Box::pin(async move {
            if id == "RP-DOWN" {
                return Err(SpineError::Unreachable {
                    endpoint: "127.0.0.1:1".into(),
                    source: std::io::Error::other("connection refused"),
                });
            }
            if id == "RP-GONE" {
                return Err(SpineError::SessionExpired);
            }
            let mut updated = session.clone();
            updated.selected_role_profile = Some(id.to_owned());
            Ok(updated)
        })
    }
    fn logout<'a>(&'a self, _: &'a SpineSession) -> BoxFuture<'a, Result<(), SpineError>> {
        self.logouts.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Ok(()) })
    }
}

struct World {
    agent: Agent,
    backend: Arc<VirtualBackend>,
    reader: ReaderName,
    endpoint: Arc<ScriptedEndpoint>,
    events: broadcast::Receiver<AgentEvent>,
    /// Events received while waiting, for [`World::drain`].
    pending: Vec<AgentEvent>,
    dir: tempfile::TempDir,
}

struct Cards {
    ca: TestCa,
}

impl Cards {
    fn new() -> Cards {
        Cards {
            ca: TestCa::generate("Modes Test CA").unwrap(),
        }
    }

    fn card(&self, holder: (&str, &str), serial: &str, validity: Validity) -> CardFile {
        provision(
            &self.ca,
            &CardSpec::new(holder.0, holder.1)
                .card_serial(serial)
                .pin(PASS)
                .key_algorithm(KeyAlgorithm::EccP256)
                .validity(validity),
        )
        .unwrap()
        .card
    }

    fn world(&self, revoked: &[&CardFile], adjust: impl FnOnce(&mut Config)) -> World {
        let dir = tempfile::tempdir().unwrap();
        let mut config =
            Config::demo(dir.path(), "https://127.0.0.1:1", "https://127.0.0.1:2").unwrap();
        adjust(&mut config);
        let backend = Arc::new(VirtualBackend::new());
        let reader = backend.attach_reader("Modes Reader 00 00");
        let dyn_backend: Arc<dyn ReaderBackend> = backend.clone();
        let guard = Arc::new(PasscodeGuard::in_memory().unwrap());
        let anchors = TrustAnchors::from_der([self.ca.certificate_der()]).unwrap();
        let mut listed = Vec::new();
        for card in revoked {
            listed.extend(RevokedCard::all_of(card, now() - time::Duration::days(1)).unwrap());
        }
        let crl = Crl::from_der(&self.ca.crl_der(&listed, 7).unwrap(), &anchors).unwrap();
        let inspector = Arc::new(CardInspector::new(
            Arc::clone(&dyn_backend),
            Arc::clone(&guard),
            cardgate_card::TrustConfig {
                anchors,
                crl: Some(crl),
                policy: cardgate_certs::CheckPolicy::default(),
            },
        ));
        let endpoint = Arc::new(ScriptedEndpoint::default());
        let audit = AuditLog::open(dir.path().join("audit.jsonl")).unwrap();
        let agent = Agent::new(
            config,
            dyn_backend,
            inspector,
            guard,
            endpoint.clone(),
            audit,
        )
        .unwrap();
        let events = agent.subscribe();
        agent.handle_reader_event(&ReaderEvent {
            reader: reader.clone(),
            at: std::time::Instant::now(),
            kind: ReaderEventKind::ReaderAttached,
        });
        World {
            agent,
            backend,
            reader,
            endpoint,
            events,
            pending: Vec::new(),
            dir,
        }
    }
}

fn caller() -> CallerIdentity {
    CallerIdentity {
        uid: 1000,
        pid: 42,
        executable: None,
    }
}

impl World {
    /// Puts `card` in the reader and waits (on the agent's events, no timer) until it is read.
    async fn insert(&mut self, card: &CardFile) {
        assert!(
            self.backend
                .insert(&self.reader, Box::new(PivApplet::new(card.clone())))
                .is_ok()
        );
        self.agent.handle_reader_event(&ReaderEvent {
            reader: self.reader.clone(),
            at: std::time::Instant::now(),
            kind: ReaderEventKind::CardInserted {
                atr: vec![0x3B],
                event_count: None,
            },
        });
        loop {
            {
                let state = lock(&self.agent.shared.state);
                let card = state.readers[&self.reader].card.as_ref().unwrap();
                if card.report.is_some() {
                    break;
                }
                assert!(card.problem.is_none(), "{:?}", card.problem);
            }
            let event = self.events.recv().await.unwrap();
            self.pending.push(event);
        }
    }

    fn remove(&self) {
        self.backend.remove(&self.reader);
        self.agent.handle_reader_event(&ReaderEvent {
            reader: self.reader.clone(),
            at: std::time::Instant::now(),
            kind: ReaderEventKind::CardRemoved { event_count: None },
        });
    }

    fn authorise(&self, action: &str) -> AuthoriseAnswer {
        self.agent.authorise(&caller(), action, "FA123").unwrap()
    }

    async fn login_and_select(&self, role: &str) {
        self.agent
            .login(&caller(), Some(PASS), false)
            .await
            .unwrap();
        self.agent
            .select_role_profile(&caller(), role)
            .await
            .unwrap();
    }

    fn drain(&mut self) -> Vec<AgentEvent> {
        let mut seen: Vec<AgentEvent> = std::mem::take(&mut self.pending)
            .into_iter()
            .filter(|e| *e != AgentEvent::PropertiesChanged)
            .collect();
        while let Ok(e) = self.events.try_recv() {
            if e != AgentEvent::PropertiesChanged {
                seen.push(e);
            }
        }
        seen
    }

    fn audit(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("audit.jsonl")).unwrap()
    }

    /// Lets spawned tasks (endpoint log-outs) run.
    async fn settle(&self) {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }
}

fn ended(seen: &[AgentEvent]) -> Vec<SessionEndReason> {
    seen.iter()
        .filter_map(|e| match e {
            AgentEvent::SessionEnded { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn session_lock_the_same_card_and_passcode_resume_the_same_session_and_role() {
    let cards = Cards::new();
    let asha = cards.card(ASHA, "1000000001", Validity::Default);
    let mut w = cards.world(&[], |c| c.session.removal = RemovalMode::SessionLock);
    w.insert(&asha).await;
    w.login_and_select("RP-PHARM").await;
    let before = w.authorise("download");
    assert!(before.allowed, "{before:?}");
    let ticket = w.agent.ticket().unwrap();
    w.drain();

    w.remove();
    let seen = w.drain();
    let snap = w.agent.snapshot();
    assert_eq!(snap.state, AgentState::SessionLocked);
    assert!(snap.session_generation > before.generation);
    assert!(ended(&seen).is_empty(), "{seen:?}");
    let locked = w.authorise("download");
    assert_eq!((locked.allowed, locked.reason.as_str()), (false, "no-card"));
    assert!(matches!(w.agent.ticket(), Err(CoreError::NotLoggedIn(_))));
    w.settle().await;
    assert_eq!(w.endpoint.logouts.load(Ordering::SeqCst), 0);

    // The same card back: still locked until the passcode is entered again (no PIN caching).
    w.insert(&asha).await;
    assert_eq!(w.agent.snapshot().state, AgentState::SessionLocked);
    assert!(!w.authorise("download").allowed);
    let e = w
        .agent
        .login(&caller(), Some("9999"), false)
        .await
        .unwrap_err();
    assert!(e.short_name() == "WrongPasscode", "{e:?}");
    assert_eq!(w.agent.snapshot().state, AgentState::SessionLocked);

    let profiles = w.agent.login(&caller(), Some(PASS), false).await.unwrap();
    assert_eq!(profiles.len(), 5);
    assert_eq!(
        w.endpoint.logins.load(Ordering::SeqCst),
        1,
        "no new endpoint log-in"
    );
    let snap = w.agent.snapshot();
    assert_eq!(snap.state, AgentState::LoggedIn);
    assert_eq!(snap.selected_role_profile.id, "RP-PHARM");
    let resumed = w.agent.ticket().unwrap();
    assert_eq!(resumed.token, ticket.token, "the same endpoint session");
    assert_eq!(resumed.role_profile_id, "RP-PHARM");
    let after = w.authorise("download");
    assert!(after.allowed, "{after:?}");
    assert!(after.generation > locked.generation);
    assert!(w.audit().contains("session resumed"));
    assert!(!w.audit().contains(PASS));
}

#[tokio::test]
async fn session_lock_another_card_ends_the_locked_session_as_card_swapped_and_starts_afresh() {
    let cards = Cards::new();
    let asha = cards.card(ASHA, "1000000001", Validity::Default);
    let ben = cards.card(BEN, "1000000002", Validity::Default);
    let mut w = cards.world(&[], |c| c.session.removal = RemovalMode::SessionLock);
    w.insert(&asha).await;
    w.login_and_select("RP-PHARM").await;
    w.remove();
    w.drain();

    w.insert(&ben).await;
    let seen = w.drain();
    assert_eq!(
        ended(&seen),
        vec![SessionEndReason::CardSwapped],
        "{seen:?}"
    );
    w.settle().await;
    assert_eq!(w.endpoint.logouts.load(Ordering::SeqCst), 1, "logged out");
    assert_eq!(w.agent.snapshot().state, AgentState::CardPresent);
    assert!(w.audit().contains(r#""reason":"card_swapped""#));
    let answer = w.authorise("download");
    assert_eq!(answer.reason, "not-logged-in");

    // Ben logs in afresh: a new endpoint session, no role inherited.
    w.agent.login(&caller(), Some(PASS), false).await.unwrap();
    assert_eq!(w.endpoint.logins.load(Ordering::SeqCst), 2);
    assert_eq!(w.agent.snapshot().selected_role_profile.id, "");
    assert_eq!(w.authorise("download").reason, "no-role-selected");
}

#[tokio::test]
async fn session_lock_the_same_holder_with_another_card_serial_does_not_resume() {
    let cards = Cards::new();
    let asha = cards.card(ASHA, "1000000001", Validity::Default);
    let asha_new_card = cards.card(ASHA, "1000000009", Validity::Default);
    let mut w = cards.world(&[], |c| c.session.removal = RemovalMode::SessionLock);
    w.insert(&asha).await;
    w.login_and_select("RP-PHARM").await;
    w.remove();
    w.drain();
    w.insert(&asha_new_card).await;
    assert_eq!(ended(&w.drain()), vec![SessionEndReason::CardSwapped]);
    w.agent.login(&caller(), Some(PASS), false).await.unwrap();
    assert_eq!(w.endpoint.logins.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn session_lock_the_idle_limit_still_runs_while_locked() {
    let cards = Cards::new();
    let asha = cards.card(ASHA, "1000000001", Validity::Default);
    let mut w = cards.world(&[], |c| {
        c.session.removal = RemovalMode::SessionLock;
        c.session.max_idle_time = 300;
    });
    w.insert(&asha).await;
    w.login_and_select("RP-PHARM").await;
    w.remove();
    w.drain();
    tokio::time::advance(Duration::from_secs(299)).await;
    w.agent.check_timers();
    assert!(ended(&w.drain()).is_empty());
    tokio::time::advance(Duration::from_secs(1)).await;
    w.agent.check_timers();
    assert_eq!(ended(&w.drain()), vec![SessionEndReason::IdleTimeout]);
    assert_eq!(w.agent.snapshot().state, AgentState::NoCard);
    // Back with the same card: a fresh endpoint log-in, nothing resumed.
    w.insert(&asha).await;
    w.agent.login(&caller(), Some(PASS), false).await.unwrap();
    assert_eq!(w.endpoint.logins.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn mobility_removal_voids_old_decisions_allows_within_the_window_then_forces_reauthentication()
 {
    let cards = Cards::new();
    let asha = cards.card(ASHA, "1000000001", Validity::Default);
    let mut w = cards.world(&[], |c| {
        c.session.removal = RemovalMode::Mobility;
        c.session.mobility_grace = 120;
    });
    w.insert(&asha).await;
    w.login_and_select("RP-PHARM").await;
    let before = w.authorise("download");
    assert!(before.allowed);
    w.drain();

    w.remove();
    let seen = w.drain();
    assert!(ended(&seen).is_empty(), "{seen:?}");
    let snap = w.agent.snapshot();
    assert!(
        snap.session_generation > before.generation,
        "old decisions void"
    );
    assert_eq!(snap.state, AgentState::LoggedIn);
    assert!(!snap.card_present);
    // Work goes on without the card, but changing role needs it back.
    let e = w
        .agent
        .select_role_profile(&caller(), "RP-NOSCR")
        .await
        .unwrap_err();
    assert!(matches!(e, CoreError::NoCard(_)), "{e:?}");

    tokio::time::advance(Duration::from_secs(119)).await;
    w.agent.check_timers();
    assert!(ended(&w.drain()).is_empty());
    let within = w.authorise("download");
    assert!(within.allowed, "{within:?}");
    assert_eq!(within.generation, snap.session_generation);

    tokio::time::advance(Duration::from_secs(1)).await;
    // At the deadline the card no longer counts as present, even before the timer tick.
    let due = w.authorise("download");
    assert_eq!((due.allowed, due.reason.as_str()), (false, "no-card"));
    w.agent.check_timers();
    assert_eq!(
        ended(&w.drain()),
        vec![SessionEndReason::ReauthenticationDue]
    );
    w.settle().await;
    assert_eq!(w.endpoint.logouts.load(Ordering::SeqCst), 1);
    assert_eq!(w.agent.snapshot().state, AgentState::NoCard);
    assert!(w.audit().contains(r#""reason":"reauthentication_due""#));
    assert_eq!(w.authorise("download").reason, "no-card");
}

#[tokio::test(start_paused = true)]
async fn mobility_the_same_card_back_with_its_passcode_clears_the_timer_and_another_card_ends_it() {
    let cards = Cards::new();
    let asha = cards.card(ASHA, "1000000001", Validity::Default);
    let ben = cards.card(BEN, "1000000002", Validity::Default);
    let mut w = cards.world(&[], |c| {
        c.session.removal = RemovalMode::Mobility;
        c.session.mobility_grace = 120;
    });
    w.insert(&asha).await;
    w.login_and_select("RP-PHARM").await;
    w.remove();
    tokio::time::advance(Duration::from_secs(60)).await;
    w.insert(&asha).await;
    w.agent.login(&caller(), Some(PASS), false).await.unwrap();
    assert_eq!(w.endpoint.logins.load(Ordering::SeqCst), 1);
    w.drain();
    tokio::time::advance(Duration::from_secs(120)).await;
    w.agent.check_timers();
    assert!(ended(&w.drain()).is_empty(), "the timer was cleared");
    assert!(w.authorise("download").allowed);

    // Away again, and Ben's card arrives within the window: a swap never inherits.
    w.remove();
    w.insert(&ben).await;
    assert_eq!(ended(&w.drain()), vec![SessionEndReason::CardSwapped]);
    assert_eq!(w.authorise("download").reason, "not-logged-in");
}

#[tokio::test]
async fn change_passcode_checks_shapes_first_guards_the_final_try_and_keeps_passcodes_off_the_trail()
 {
    let cards = Cards::new();
    let asha = cards.card(ASHA, "1000000001", Validity::Default);
    let mut w = cards.world(&[], |_| {});
    let e = w
        .agent
        .change_passcode(&caller(), PASS, "1a2b", false)
        .await
        .unwrap_err();
    assert!(matches!(e, CoreError::NoCard(_)), "{e:?}");
    w.insert(&asha).await;
    let apdus = w.backend.apdu_count(&w.reader);
    let e = w
        .agent
        .change_passcode(&caller(), "12", "1a2b", false)
        .await
        .unwrap_err();
    assert!(matches!(&e, CoreError::InvalidArgument(m) if m.starts_with("current")));
    let e = w
        .agent
        .change_passcode(&caller(), PASS, "123456789", false)
        .await
        .unwrap_err();
    assert!(matches!(&e, CoreError::InvalidArgument(m) if m.starts_with("new")));
    assert_eq!(w.backend.apdu_count(&w.reader), apdus, "nothing sent");

    for wrong in ["w1111", "w2222"] {
        let e = w
            .agent
            .change_passcode(&caller(), wrong, "n3w5678", false)
            .await
            .unwrap_err();
        assert!(e.short_name() == "WrongPasscode", "{e:?}");
    }
    let e = w
        .agent
        .change_passcode(&caller(), PASS, "n3w5678", false)
        .await
        .unwrap_err();
    assert!(e.short_name() == "FinalTryNotConfirmed", "{e:?}");
    w.agent
        .change_passcode(&caller(), PASS, "n3w5678", true)
        .await
        .unwrap();
    // The new passcode is the one the card takes now.
    let e = w
        .agent
        .login(&caller(), Some(PASS), false)
        .await
        .unwrap_err();
    assert!(e.short_name() == "WrongPasscode", "{e:?}");
    w.agent
        .login(&caller(), Some("n3w5678"), false)
        .await
        .unwrap();
    let audit = w.audit();
    assert!(audit.contains("passcode changed"));
    for secret in [PASS, "n3w5678", "w1111", "w2222"] {
        assert!(!audit.contains(secret), "{secret} on the audit trail");
    }
}

/// Every refusal reason `Authorise` can give, each produced by a real state of the agent.
#[tokio::test(start_paused = true)]
async fn every_refusal_reason_is_produced() {
    let cards = Cards::new();
    let asha = cards.card(ASHA, "1000000001", Validity::Default);
    let expired = cards.card(BEN, "1000000003", Validity::Expired);
    let revoked = cards.card(BEN, "1000000004", Validity::Default);
    let mut seen = std::collections::BTreeSet::new();
    let mut note = |answer: AuthoriseAnswer, want: &str| {
        assert_eq!(
            (answer.allowed, answer.reason.as_str()),
            (want == "allowed", want)
        );
        seen.insert(want.to_owned());
    };

    let mut w = cards.world(&[&revoked], |c| c.session.max_idle_time = 300);
    note(w.authorise("download"), "no-card");
    w.insert(&expired).await;
    note(w.authorise("download"), "certificate-expired");
    w.remove();
    w.insert(&revoked).await;
    note(w.authorise("download"), "certificate-revoked");
    w.remove();
    w.insert(&asha).await;
    note(w.authorise("download"), "not-logged-in");
    w.agent.login(&caller(), Some(PASS), false).await.unwrap();
    note(w.authorise("download"), "no-role-selected");
    note(
        w.agent.authorise(&caller(), "download", "ZZ999").unwrap(),
        "ods-not-configured",
    );
    w.agent
        .select_role_profile(&caller(), "RP-ELSEWHERE")
        .await
        .unwrap();
    note(w.authorise("download"), "wrong-organisation");
    w.agent
        .select_role_profile(&caller(), "RP-NOSCR")
        .await
        .unwrap();
    note(w.authorise("view-scr"), "missing-activity");
    w.agent
        .select_role_profile(&caller(), "RP-PHARM")
        .await
        .unwrap();
    note(w.authorise("view-scr"), "allowed");
    let e = w
        .agent
        .select_role_profile(&caller(), "RP-DOWN")
        .await
        .unwrap_err();
    assert!(matches!(e, CoreError::EndpointUnavailable(_)), "{e:?}");
    note(w.authorise("download"), "endpoint-unavailable");
    tokio::time::advance(Duration::from_secs(300)).await;
    note(w.authorise("download"), "session-expired");
    w.agent.logout(&caller()).await.unwrap();

    // Three wrong passcodes (the last one confirmed) lock the card.
    for (wrong, confirm) in [("w1111", false), ("w2222", false), ("w3333", true)] {
        let _ = w.agent.login(&caller(), Some(wrong), confirm).await;
    }
    while w.agent.snapshot().state != AgentState::CardLocked {
        w.events.recv().await.unwrap();
    }
    note(w.authorise("download"), "card-locked");

    for reason in [
        "no-card",
        "card-locked",
        "certificate-expired",
        "certificate-revoked",
        "not-logged-in",
        "session-expired",
        "ods-not-configured",
        "no-role-selected",
        "wrong-organisation",
        "missing-activity",
        "endpoint-unavailable",
    ] {
        assert!(seen.contains(reason), "{reason} not produced");
    }
}

#[tokio::test(start_paused = true)]
async fn the_timers_sleep_until_the_next_deadline_and_none_runs_without_one() {
    let cards = Cards::new();
    let asha = cards.card(ASHA, "1000000001", Validity::Default);
    let mut w = cards.world(&[], |c| {
        c.session.max_idle_time = 300;
        c.session.card_left_idle_time = 0;
    });
    let timers = tokio::spawn(w.agent.clone().run_timers());
    assert_eq!(w.agent.next_timer_deadline(), None, "no card, no session");
    w.insert(&asha).await;
    assert_eq!(
        w.agent.next_timer_deadline(),
        None,
        "a card in but no session and no card-left timer: nothing to wake for"
    );
    // The log-in waits on the audit writer's thread; paused time would jump to the timer's
    // deadline while the runtime idles in that wait, so the clock runs for the log-in only.
    tokio::time::resume();
    w.login_and_select("RP-PHARM").await;
    tokio::time::pause();
    let deadline = w.agent.next_timer_deadline().expect("the idle limit runs");
    let left = deadline - Instant::now();
    assert!(
        left > Duration::from_secs(299) && left <= Duration::from_secs(300),
        "{left:?}"
    );
    w.drain();
    // Nobody calls check_timers here: the spawned run_timers must fire on its own, at the
    // deadline and not before.
    tokio::time::advance(Duration::from_secs(298)).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(ended(&w.drain()).is_empty());
    tokio::time::advance(Duration::from_secs(3)).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(ended(&w.drain()), vec![SessionEndReason::IdleTimeout]);
    assert_eq!(w.agent.next_timer_deadline(), None);
    timers.abort();
}

#[tokio::test(start_paused = true)]
async fn a_session_the_endpoint_ended_ends_here_as_endpoint_ended() {
    let cards = Cards::new();
    let asha = cards.card(ASHA, "1000000001", Validity::Default);
    let mut w = cards.world(&[], |_| {});
    w.insert(&asha).await;
    w.login_and_select("RP-PHARM").await;
    assert!(w.authorise("download").allowed);
    w.drain();
    let e = w
        .agent
        .select_role_profile(&caller(), "RP-GONE")
        .await
        .unwrap_err();
    assert!(matches!(e, CoreError::NotLoggedIn(_)), "{e:?}");
    assert_eq!(ended(&w.drain()), vec![SessionEndReason::EndpointEnded]);
    assert_eq!(w.authorise("download").reason, "not-logged-in");
    assert!(w.audit().contains(r#""reason":"endpoint_ended""#));
}
