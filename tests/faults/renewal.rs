//! The card pulled during certificate self-renewal, through the lab's real pcscd: once at
//! every APDU of a renewal (the management-key handshake, key generation, the request signed
//! on the card, the new certificate written, the card read afresh), the command processed by
//! the card or not, at random. Beside the four invariants, each cycle reinserts the card and
//! checks it is left in a state the holder can use: its old key and certificate, or its new
//! key with the new certificate; a new key without its certificate is the one outcome that
//! would need the RA, and the agent must prevent or repair it when it can.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cardgate_demo::{DEMO_PASSCODE, PHARMACIST};
use cardgate_e2e::daemon_harness::OrFail as _;
use cardgate_e2e::{TEST_MANAGEMENT_KEY, check};
use cardgate_ipc::AgentStaffProxy;
use cardgate_lab::{Lab, ReaderSlot};
use cardgate_reader::PcscBackend;
use cardgate_vcard::applet::PivApplet;
use cardgate_vcard::card_file::{ObjectTag, Slot};
use cardgate_vcard::provision::{CardSpec, Validity};
use cardgate_vcard::vpcd::InsertedCard;
use libtest_mimic::Failed;

use crate::cycles::{Acknowledged, full_login};
use crate::support::{
    FaultDaemon, Hang, Rng, SharedCard, assert_entries_at_least, assert_no_session_survives,
    card_tries_left, lock, pharmacist_read, wait_until,
};

/// How long the daemon may take to see an insertion or removal.
const SEE: Duration = Duration::from_secs(10);

/// A fresh pharmacist card whose certificate expires in 30 days, so renewal is due.
fn due_card(running: &FaultDaemon) -> Result<Arc<Mutex<PivApplet>>, Failed> {
    let spec = CardSpec::new(PHARMACIST.0, PHARMACIST.1)
        .pin(DEMO_PASSCODE)
        .management_key(&TEST_MANAGEMENT_KEY)
        .validity(Validity::ExpiresInDays(30));
    let file = running.world.card_from(&spec).or_fail("card")?;
    Ok(Arc::new(Mutex::new(PivApplet::new(file))))
}

/// The card's authentication key and certificate object, to tell what a pull left behind.
#[derive(PartialEq, Eq, Clone)]
struct AuthSlot {
    key: Vec<u8>,
    certificate: Vec<u8>,
}

fn auth_slot(applet: &Arc<Mutex<PivApplet>>) -> AuthSlot {
    let card = lock(applet);
    let file = card.card_file();
    AuthSlot {
        key: file
            .slots
            .get(&Slot::Authentication)
            .map(|k| k.private_key_pkcs8.to_vec())
            .unwrap_or_default(),
        certificate: file
            .objects
            .get(&ObjectTag::CERT_AUTHENTICATION)
            .map(|o| o.0.clone())
            .unwrap_or_default(),
    }
}

/// What a pull during renewal left on the card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Left {
    /// The old key and certificate: nothing changed.
    Untouched,
    /// A new key and a new certificate: renewed.
    Renewed,
    /// A new key beside the old certificate.
    KeyWithoutCertificate,
    /// The old key beside a new certificate (never expected).
    CertificateWithoutKey,
}

fn left(before: &AuthSlot, now: &AuthSlot) -> Left {
    match (before.key == now.key, before.certificate == now.certificate) {
        (true, true) => Left::Untouched,
        (false, false) => Left::Renewed,
        (false, true) => Left::KeyWithoutCertificate,
        (true, false) => Left::CertificateWithoutKey,
    }
}

async fn remove(inserted: InsertedCard) -> Result<(), Failed> {
    tokio::task::spawn_blocking(move || inserted.remove())
        .await
        .or_fail("remove task")?
        .or_fail("remove")?;
    Ok(())
}

/// One pull at every APDU of a renewal, then the card reinserted and used.
pub async fn renewal_pulls(lab: &mut Lab) -> Result<(), Failed> {
    let keys = tempfile::tempdir().or_fail("tempdir")?;
    let key_path: PathBuf = keys.path().join("management-key.hex");
    std::fs::write(&key_path, hex::encode(TEST_MANAGEMENT_KEY)).or_fail("key file")?;
    let running = FaultDaemon::start(Arc::new(PcscBackend::new()), |config, _| {
        config.renewal.management_key = Some(key_path.clone());
    })
    .await?;
    let agent = running.agent.clone();
    let staff = AgentStaffProxy::builder(agent.inner().connection())
        .build()
        .await
        .or_fail("staff proxy")?;
    let mut rng = Rng::from_env("pcscd_card_pulled_during_renewal");
    let mut ack = Acknowledged::default();

    // A session the endpoint has already idled out: refused before the card's key is touched,
    // and the local session ends with it.
    let applet = due_card(&running)?;
    let original = auth_slot(&applet);
    let inserted = lab
        .insert(ReaderSlot::First, Box::new(SharedCard::new(&applet)))
        .or_fail("insert")?;
    pharmacist_read(&agent, SEE).await?;
    let generation = full_login(&agent, &mut ack).await?;
    running.world.sim().advance_clock(Duration::from_secs(901));
    let refused = staff.renew_certificate().await;
    check(
        crate::error_name(&refused).ends_with("Error.NotLoggedIn"),
        || format!("renewal in a session the endpoint ended: {refused:?}"),
    )?;
    check(
        left(&original, &auth_slot(&applet)) == Left::Untouched,
        || "a renewal refused by the endpoint replaced the card's key".into(),
    )?;
    wait_until("the session to end", SEE, || {
        let agent = agent.clone();
        async move { agent.state().await.is_ok_and(|s| s != "logged-in") }
    })
    .await?;
    remove(inserted).await?;
    assert_no_session_survives(&agent, generation, SEE).await?;
    ack.decisions += 1;

    // A clean renewal next, counting the APDUs up to it and of it.
    let applet = due_card(&running)?;
    let original = auth_slot(&applet);
    let card = SharedCard::new(&applet);
    let served = card.served();
    let headers = card.headers();
    let inserted = lab
        .insert(ReaderSlot::First, Box::new(card))
        .or_fail("insert")?;
    pharmacist_read(&agent, SEE).await?;
    let generation = full_login(&agent, &mut ack).await?;
    let before_renewal = served.load(Ordering::SeqCst);
    staff
        .renew_certificate()
        .await
        .or_fail("RenewCertificate")?;
    let renewal_apdus = served.load(Ordering::SeqCst) - before_renewal;
    let phases = Phases::of(&lock_headers(&headers)[before_renewal as usize..])?;
    check(
        left(&original, &auth_slot(&applet)) == Left::Renewed,
        || "the clean renewal did not leave a new key and certificate".into(),
    )?;
    remove(inserted).await?;
    assert_no_session_survives(&agent, generation, SEE).await?;
    ack.decisions += 1;

    let began = Instant::now();
    // Renewals cut short after the certificate was issued, which the agent finishes when the
    // card comes back.
    let mut finished_later = 0;
    let mut outcomes: Vec<(u64, bool, String, Left)> = Vec::new();
    // Every APDU once, processed or not at random; the two that decide whether the key is
    // replaced (the key generation, and the request's signature after it) both ways.
    let mut pulls = Vec::new();
    for k in 1..=renewal_apdus {
        if (phases.generate..phases.first_write).contains(&k) {
            pulls.extend([(k, false), (k, true)]);
        } else {
            pulls.push((k, rng.below(2) == 1));
        }
    }
    for &(k, processed) in &pulls {
        let applet = due_card(&running)?;
        let original = auth_slot(&applet);
        let full = card_tries_left(&applet);
        let (card, hang) = Hang::card(&applet, before_renewal + k, processed);
        let inserted = lab
            .insert(ReaderSlot::First, Box::new(card))
            .or_fail("insert")?;
        pharmacist_read(&agent, SEE).await?;
        let generation = full_login(&agent, &mut ack).await?;
        let renewal = {
            let staff = staff.clone();
            tokio::spawn(async move { staff.renew_certificate().await })
        };
        hang.pull(inserted).await.map_err(|e| {
            Failed::from(format!("renewal APDU {k}: {}", e.message().unwrap_or("")))
        })?;
        let answered = renewal.await.or_fail("renewal task")?;
        let answer = match &answered {
            Ok(_) => "ok".to_owned(),
            Err(_) => short(&crate::error_name(&answered)),
        };
        let context = |e: Failed| {
            Failed::from(format!(
                "renewal APDU {k} (processed {processed}): {}",
                e.message().unwrap_or("")
            ))
        };
        assert_no_session_survives(&agent, generation, SEE)
            .await
            .map_err(context)?;
        ack.decisions += 1;
        let tries = card_tries_left(&applet);
        check(tries == full, || {
            format!("renewal APDU {k}: the card's retry counter went {full} -> {tries}")
        })
        .map_err(context)?;

        // Reinserted, the card must be usable: the agent completes or has not begun.
        let inserted = lab
            .insert(ReaderSlot::First, Box::new(SharedCard::new(&applet)))
            .or_fail("insert")?;
        pharmacist_read(&agent, SEE).await.map_err(context)?;
        let relogin = full_login(&agent, &mut ack).await;
        let state = left(&original, &auth_slot(&applet));
        outcomes.push((k, processed, answer.clone(), state));
        let expected = phases.expected(k, processed);
        check(state == expected, || {
            format!(
                "the card was left {state:?}, expected {expected:?} (renewal answered {answer})"
            )
        })
        .map_err(context)?;
        if answered.is_err() && k >= phases.first_write {
            finished_later += 1;
        }
        if answered.is_ok() {
            check(state == Left::Renewed, || {
                format!("renewal APDU {k}: renewal answered success but the card is {state:?}")
            })?;
        }
        if state == Left::KeyWithoutCertificate {
            // The one state only the RA can mend: the log-in says so, by name and cause,
            // after the card accepted the passcode (no try spent).
            let refused = relogin.err().map(|e| e.message().unwrap_or("").to_owned());
            check(
                refused.as_deref().is_some_and(|m| {
                    m.contains("Agent1.Error.Card") && m.contains("cut short") && m.contains("RA")
                }),
                || format!("log-in with a key its certificate does not name: {refused:?}"),
            )
            .map_err(context)?;
            check(card_tries_left(&applet) == full, || {
                "the refused log-in spent a passcode try".into()
            })
            .map_err(context)?;
        } else {
            relogin.map_err(|e| {
                context(Failed::from(format!(
                    "after the pull (renewal answered {answer}) the card was left {state:?} and \
                     log-in failed: {}",
                    e.message().unwrap_or("")
                )))
            })?;
            agent.logout().await.or_fail("Logout")?;
        }
        remove(inserted).await?;
        wait_until("the card to be gone", SEE, || {
            let agent = agent.clone();
            async move { agent.card_present().await.is_ok_and(|p| !p) }
        })
        .await?;
    }
    eprintln!(
        "{} renewal pulls in {:.1?} after {before_renewal} APDUs of read and log-in \
         ({phases:?}): (APDU, processed, answer, card left) {outcomes:?}",
        pulls.len(),
        began.elapsed()
    );
    let audit = running.stop().await?;
    assert_entries_at_least(&audit, "session_started", ack.logins)?;
    assert_entries_at_least(&audit, "authorisation_decision", ack.decisions)?;
    // Every renewal the daemon answered, success or not, is on the trail.
    let renewals = audit
        .lines()
        .filter(|l| l.contains("\"kind\":\"renewal\""))
        .count();
    let finished = audit
        .lines()
        .filter(|l| {
            l.contains("\"kind\":\"renewal\"")
                && (l.contains("finished_at_reinsertion") || l.contains("written_before_removal"))
        })
        .count();
    check(finished == finished_later, || {
        format!("{finished_later} renewals finished at reinsertion, {finished} on the audit trail")
    })?;
    // One entry per renewal asked (the refused one, the clean one and each pulled), one per
    // finish.
    let asked = pulls.len() + 2;
    check(renewals == asked + finished_later, || {
        format!(
            "{asked} renewals asked and {finished_later} finished, {renewals} on the audit trail"
        )
    })
}

/// The last part of a D-Bus error name (`NoCard`), or what succeeded.
fn short(name: &str) -> String {
    name.rsplit('.').next().unwrap_or(name).to_owned()
}

/// Where a renewal's APDUs fall, counted from 1 at its first: the card's key is replaced
/// at `generate`, and the certificate has been issued from `first_write` on (the first
/// command after the request's signature: the write's SELECT).
#[derive(Debug)]
struct Phases {
    generate: u64,
    first_write: u64,
}

/// GENERATE ASYMMETRIC KEY PAIR.
const INS_GENERATE: u8 = 0x47;
/// GENERAL AUTHENTICATE (the management key handshake, or a signature).
const INS_GENERAL_AUTHENTICATE: u8 = 0x87;
/// The PIV Authentication key's reference, as P2 of a signature.
const KEY_AUTHENTICATION: u8 = 0x9A;
/// GET RESPONSE (the rest of a long answer, still part of the command before it).
const INS_GET_RESPONSE: u8 = 0xC0;

impl Phases {
    fn of(headers: &[[u8; 4]]) -> Result<Phases, Failed> {
        let position = |from: usize, wanted: &dyn Fn(&[u8; 4]) -> bool| {
            headers[from..].iter().position(wanted).map(|i| from + i)
        };
        let missing = |what: &str| Failed::from(format!("{what} in the renewal: {headers:02X?}"));
        let generate =
            position(0, &|h| h[1] == INS_GENERATE).ok_or_else(|| missing("no key generation"))?;
        let sign = position(generate, &|h| {
            h[1] == INS_GENERAL_AUTHENTICATE && h[3] == KEY_AUTHENTICATION
        })
        .ok_or_else(|| missing("no signature after the key generation"))?;
        let write = position(sign + 1, &|h| h[1] != INS_GET_RESPONSE)
            .ok_or_else(|| missing("no write after the signature"))?;
        Ok(Phases {
            generate: generate as u64 + 1,
            first_write: write as u64 + 1,
        })
    }

    /// What the card must be left as, after reinsertion, by a pull at APDU `k`.
    fn expected(&self, k: u64, processed: bool) -> Left {
        if k < self.generate || (k == self.generate && !processed) {
            Left::Untouched
        } else if k < self.first_write {
            Left::KeyWithoutCertificate
        } else {
            Left::Renewed
        }
    }
}

fn lock_headers(headers: &Arc<Mutex<Vec<[u8; 4]>>>) -> std::sync::MutexGuard<'_, Vec<[u8; 4]>> {
    headers.lock().unwrap_or_else(|p| p.into_inner())
}
