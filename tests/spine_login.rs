//! End-to-end Spine logins through the real PC/SC stack, the "Done when" of issue 4: a
//! virtual card in a vpcd reader, reached through pcscd by the agent's own reader layer
//! (`PcscBackend` -> `TransactionChannel` -> `PivClient`), signs for `SpineClient` against an
//! in-process spine-sim whose card CA provisioned the card. Both login modes, role profiles,
//! selection, introspection and logout; revoked and expired cards refused with their reasons;
//! a card pulled mid-login; renewal with the key generated on the card; both unlock paths.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use cardgate_card::TransactionChannel;
use cardgate_e2e::{check, lab_trial, run_lab_suite, runtime_with_workers};
use cardgate_lab::{Lab, ReaderSlot};
use cardgate_piv::{
    FinalTry, KeyAlgorithm, ManagementKey, Passcode, PasscodeGuard, PivClient, PivError, SignInput,
    Slot,
};
use cardgate_reader::{PcscBackend, ReaderBackend, ReaderName};
use cardgate_spine::wire::{ErrorCode, IntrospectResponse, OutboxMessage, Session};
use cardgate_spine::{
    CardSigner, Endpoint, SpineClient, SpineConfig, SpineError, key_algorithm_of,
};
use cardgate_spine_sim::{RunningSim, SimConfig, SpineSim};
use cardgate_vcard::Card;
use cardgate_vcard::applet::PivApplet;
use cardgate_vcard::card_file::CardFile;
use cardgate_vcard::provision::{CardSpec, RevokedCard, TestCa, Validity};
use cardgate_vcard::vpcd::InsertedCard;
use libtest_mimic::Failed;
use time::OffsetDateTime;

/// The holder logging in.
const ASHA: &str = "555000111222";
/// The sponsor (admin.unlock) of the sponsor-unlock test.
const BEN: &str = "555000333444";
const PASSCODE: &str = cardgate_e2e::TEST_PASSCODE;
/// The test cards' unlock code, which spine-sim holds for each card.
const UNLOCK_CODE: &str = cardgate_e2e::TEST_UNLOCK_CODE;
/// The test cards' AES-128 management key.
const MANAGEMENT_KEY: [u8; 16] = [
    0x10, 0x21, 0x32, 0x43, 0x54, 0x65, 0x76, 0x87, 0x98, 0xA9, 0xBA, 0xCB, 0xDC, 0xED, 0xFE, 0x0F,
];
/// Longest any single card operation or login may take before the test calls it a hang.
const BOUND: Duration = Duration::from_secs(20);

/// Enters the lab namespace, then runs the trials.
fn main() -> ExitCode {
    run_lab_suite(vec![
        lab_trial(
            "both_modes_log_in_through_pcscd_select_a_role_are_active_then_inactive_after_logout",
            both_modes_full_session,
        ),
        lab_trial(
            "revoked_and_expired_cards_are_refused_with_their_reasons_in_both_modes",
            revoked_and_expired,
        ),
        lab_trial(
            "a_card_removed_mid_login_fails_cleanly_in_both_modes",
            removed_mid_login,
        ),
        lab_trial(
            "renewal_generates_a_key_on_the_card_writes_the_new_certificate_and_logs_in_with_it",
            renewal,
        ),
        lab_trial(
            "self_service_unlock_resets_a_card_blocked_by_three_wrong_passcodes",
            self_service_unlock,
        ),
        lab_trial(
            "a_sponsor_card_in_the_second_reader_unlocks_a_blocked_card_in_the_first",
            sponsor_unlock,
        ),
    ])
}

// ----- equipment -----

/// Turns any displayable error into a test failure with `what` in front.
fn fail<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> Failed + '_ {
    move |e| Failed::from(format!("{what}: {e}"))
}

/// The two login modes of docs/spine-protocol.md.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Mode A: the card signs the server's challenge (CMS) over one-way TLS.
    SignedChallenge,
    /// Mode B: the card signs the TLS 1.3 handshake as the client certificate's key.
    ClientCertificate,
}

/// Both modes, in order.
const MODES: [Mode; 2] = [Mode::SignedChallenge, Mode::ClientCertificate];

/// Logs in with `signer` in `mode`.
async fn login(
    client: &SpineClient,
    mode: Mode,
    signer: Arc<dyn CardSigner>,
) -> Result<Session, SpineError> {
    match mode {
        Mode::SignedChallenge => client.login_with_signed_challenge(signer).await,
        Mode::ClientCertificate => client.login_with_client_certificate(signer).await,
    }
}

/// The PIV client the card thread owns: over one PC/SC transaction held by this thread.
type LabPiv<'t> = PivClient<TransactionChannel<'t>>;
/// Work sent to the card thread.
type Job = Box<dyn for<'t> FnOnce(&mut LabPiv<'t>) + Send>;

/// The card as the daemon's card actor holds it: a thread that connected to the reader
/// through pcscd (`PcscBackend`), opened a transaction and runs every card operation on the
/// `PivClient` over it, one at a time.
struct CardThread {
    jobs: Mutex<Option<Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl CardThread {
    /// Connects to the card in `slot` and opens a transaction; `guard` is the agent's
    /// passcode ledger.
    fn open(slot: ReaderSlot, guard: Arc<PasscodeGuard>) -> Result<Arc<CardThread>, Failed> {
        let reader = ReaderName::new(slot.to_string());
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<(), String>>(1);
        let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name(format!("card-{slot}"))
            .spawn(move || {
                let backend = PcscBackend::new();
                let mut connection = match backend.connect(&reader) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("connect: {e}")));
                        return;
                    }
                };
                let transaction = match connection.transaction() {
                    Ok(t) => t,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("transaction: {e}")));
                        return;
                    }
                };
                let mut client = PivClient::new(TransactionChannel::new(transaction), guard);
                let _ = ready_tx.send(Ok(()));
                while let Ok(job) = jobs_rx.recv() {
                    job(&mut client);
                }
            })
            .map_err(fail("spawning the card thread"))?;
        ready_rx
            .recv_timeout(BOUND)
            .map_err(fail("the card thread never got ready"))?
            .map_err(|e| Failed::from(format!("opening the card in {slot}: {e}")))?;
        Ok(Arc::new(CardThread {
            jobs: Mutex::new(Some(jobs_tx)),
            thread: Mutex::new(Some(thread)),
        }))
    }

    /// Runs `work` on the card thread and waits (at most [`BOUND`]) for its result.
    fn run<R: Send + 'static>(
        &self,
        work: impl for<'t> FnOnce(&mut LabPiv<'t>) -> R + Send + 'static,
    ) -> Result<R, String> {
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |client: &mut LabPiv<'_>| {
            let _ = reply_tx.send(work(client));
        });
        self.jobs
            .lock()
            .map_err(|_| "card thread lock poisoned".to_owned())?
            .as_ref()
            .ok_or("the card thread was closed")?
            .send(job)
            .map_err(|_| "the card thread ended".to_owned())?;
        reply_rx
            .recv_timeout(BOUND)
            .map_err(|e| format!("no answer from the card thread: {e}"))
    }

    /// Ends the transaction and the connection; waits for the thread.
    fn close(&self) {
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.take();
        }
        if let Some(handle) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = handle.join();
        }
    }
}

/// A [`CardSigner`] over a [`CardThread`]: every signature is a GENERAL AUTHENTICATE through
/// pcscd to the card in the reader.
struct PcscSigner {
    card: Arc<CardThread>,
    certificate: Vec<u8>,
    algorithm: KeyAlgorithm,
}

impl PcscSigner {
    /// Reads the PIV Authentication certificate from the card.
    fn new(card: &Arc<CardThread>) -> Result<Arc<PcscSigner>, Failed> {
        let certificate = card
            .run(|c| c.read_certificate(Slot::Authentication))?
            .map_err(fail("reading the authentication certificate"))?;
        Ok(Arc::new(PcscSigner {
            algorithm: key_algorithm_of(&certificate).map_err(fail("the key algorithm"))?,
            certificate,
            card: Arc::clone(card),
        }))
    }
}

impl CardSigner for PcscSigner {
    fn certificate_der(&self) -> &[u8] {
        &self.certificate
    }
    fn key_algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }
    fn sign(&self, input: SignInput) -> Result<Vec<u8>, SpineError> {
        self.card
            .run(move |c| c.sign(Slot::Authentication, input))
            .map_err(|_| SpineError::CardUnavailable {
                reason: "the card thread did not answer",
            })?
            .map_err(SpineError::from_card)
    }
}

/// A card on disk: the applet writes its counters back to the file as a real card keeps
/// them, so a test can read the card's own passcode counter.
struct LabCard {
    path: PathBuf,
    serial: String,
}

impl LabCard {
    /// The card application over the file (counters written back to it).
    fn applet(&self) -> Result<PivApplet, Failed> {
        PivApplet::open(&self.path).map_err(fail("opening the card file"))
    }

    /// Inserts the card into `slot` of the lab.
    fn insert(&self, lab: &Lab, slot: ReaderSlot) -> Result<InsertedCard, Failed> {
        lab.insert(slot, Box::new(self.applet()?))
            .map_err(fail("inserting the card"))
    }

    /// The card's own passcode counter, from its file.
    fn pin_tries(&self) -> Result<u8, Failed> {
        CardFile::load(&self.path)
            .map(|f| f.pin.tries_left)
            .map_err(fail("reading the card file"))
    }
}

/// spine-sim's configuration directory: the card CA that provisions the cards, the service
/// CA, the outbox, and the cards it knows.
struct SimLab {
    dir: tempfile::TempDir,
    ca: TestCa,
    cards: Vec<(String, String)>,
}

impl SimLab {
    /// A fresh directory with a card CA and a service CA.
    fn new() -> Result<SimLab, Failed> {
        let dir = tempfile::Builder::new()
            .prefix("cardgate-spine-login-")
            .tempdir()
            .map_err(fail("temp dir"))?;
        let ca = TestCa::generate("Cardgate Spine Login E2E Card CA").map_err(fail("card CA"))?;
        ca.save(&dir.path().join("card-ca"))
            .map_err(fail("saving the card CA"))?;
        cardgate_spine_sim::init_service_dir(&dir.path().join("service"))
            .map_err(fail("service dir"))?;
        Ok(SimLab {
            dir,
            ca,
            cards: Vec::new(),
        })
    }

    /// Provisions a card for `uid` with `serial`, saved to a card file and registered with
    /// the simulator.
    fn card(&mut self, uid: &str, serial: &str, validity: Validity) -> Result<LabCard, Failed> {
        self.card_with(uid, serial, validity, |spec| spec)
    }

    /// [`SimLab::card`] with the spec adjusted by `adjust` (an RSA key, say).
    fn card_with(
        &mut self,
        uid: &str,
        serial: &str,
        validity: Validity,
        adjust: impl FnOnce(CardSpec) -> CardSpec,
    ) -> Result<LabCard, Failed> {
        let name = if uid == ASHA {
            "Asha Patel"
        } else {
            "Ben Okafor"
        };
        let spec = CardSpec::new(name, uid)
            .card_serial(serial)
            .pin(PASSCODE)
            .puk(UNLOCK_CODE)
            .management_key(&MANAGEMENT_KEY)
            .validity(validity);
        let spec = adjust(spec);
        let provisioned =
            cardgate_vcard::provision::provision(&self.ca, &spec).map_err(fail("provisioning"))?;
        let path = self.dir.path().join(format!("card-{serial}.json"));
        provisioned
            .card
            .save(&path)
            .map_err(fail("saving the card"))?;
        self.cards.push((serial.to_owned(), uid.to_owned()));
        Ok(LabCard {
            path,
            serial: serial.to_owned(),
        })
    }

    /// Revokes every certificate of `card` in the card CA's register, which spine-sim reads.
    fn revoke(&self, card: &LabCard) -> Result<(), Failed> {
        let file = CardFile::load(&card.path).map_err(fail("reading the card file"))?;
        let revoked =
            RevokedCard::all_of(&file, OffsetDateTime::now_utc()).map_err(fail("revoking"))?;
        cardgate_vcard::provision::record_revocations(&self.dir.path().join("card-ca"), &revoked)
            .map_err(fail("recording revocations"))?;
        Ok(())
    }

    /// Where spine-sim writes its one-time codes (one JSON message a line).
    fn outbox(&self) -> PathBuf {
        self.dir.path().join("outbox.jsonl")
    }

    /// Starts spine-sim on loopback and a client that pins its service CA.
    async fn start(&self) -> Result<(RunningSim, SpineClient), Failed> {
        let path = |p: &str| self.dir.path().join(p).display().to_string();
        let mut toml = format!(
            r#"
[server]
listen = "127.0.0.1:0"
listen_mtls = "127.0.0.1:0"
service_dir = "{}"
card_ca_dir = "{}"
outbox = "{}"
max_idle_time = 900

[[users]]
uid = "{ASHA}"
name = "Asha Patel"
email = "asha.patel@nhs.example"
[[users.role_profiles]]
id = "RP-1001"
job_role = "Pharmacist"
ods_code = "FA123"
organisation_name = "High Street Pharmacy"
activities = ["eps.download", "eps.dispense-notify", "eps.claim"]
[[users.role_profiles]]
id = "RP-1002"
job_role = "Locum Pharmacist"
ods_code = "FFFFF"
organisation_name = "Locum"
activities = ["eps.download"]

[[users]]
uid = "{BEN}"
name = "Ben Okafor"
[[users.role_profiles]]
id = "RP-2001"
job_role = "Sponsor"
ods_code = "FA123"
organisation_name = "High Street Pharmacy"
activities = ["admin.unlock", "admin.tac"]
"#,
            path("service"),
            path("card-ca"),
            self.outbox().display(),
        );
        for (serial, uid) in &self.cards {
            toml.push_str(&format!(
                "\n[[cards]]\nserial = \"{serial}\"\nuid = \"{uid}\"\nunlock_code = \"{UNLOCK_CODE}\"\n"
            ));
        }
        let config = SimConfig::from_toml(&toml).map_err(fail("sim config"))?;
        let sim = SpineSim::start(config)
            .await
            .map_err(fail("starting spine-sim"))?;
        let client = SpineClient::new(SpineConfig::new(
            Endpoint::parse(&sim.url()).map_err(fail("url"))?,
            Endpoint::parse(&sim.mtls_url()).map_err(fail("mtls url"))?,
            sim.service_ca_pem().as_bytes().to_vec(),
        ))
        .map_err(fail("spine client"))?;
        Ok((sim, client))
    }
}

/// Bounds `future` by [`BOUND`]: a hang is a failure, not a stuck test.
async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> Result<T, Failed> {
    tokio::time::timeout(BOUND, future)
        .await
        .map_err(|_| Failed::from(format!("{what}: no answer within {BOUND:?}")))
}

/// Inserts `card`, opens it through pcscd and verifies the passcode: what the agent does
/// before it offers the card for login.
fn open_verified(
    lab: &Lab,
    card: &LabCard,
    slot: ReaderSlot,
) -> Result<(InsertedCard, Arc<CardThread>), Failed> {
    let inserted = card.insert(lab, slot)?;
    let thread = CardThread::open(slot, guard()?)?;
    thread
        .run(|c| c.verify_passcode(&passcode(PASSCODE), FinalTry::NotConfirmed))?
        .map_err(fail("verifying the passcode"))?;
    Ok((inserted, thread))
}

/// A fresh agent passcode ledger, as a new agent process would have.
fn guard() -> Result<Arc<PasscodeGuard>, Failed> {
    Ok(Arc::new(
        PasscodeGuard::in_memory().map_err(fail("passcode guard"))?,
    ))
}

/// A passcode from a literal the tests know to be well formed.
fn passcode(value: &str) -> Passcode {
    Passcode::new(value.to_owned()).unwrap()
}

// ----- the tests -----

/// Mode A then mode B with an ECC and an RSA card (PSS through pcscd): roles received, one
/// selected, introspected active, logged out, introspected inactive.
fn both_modes_full_session(lab: &mut Lab) -> Result<(), Failed> {
    let mut sims = SimLab::new()?;
    let ecc = sims.card(ASHA, "6516770001", Validity::Default)?;
    let rsa = sims.card_with(ASHA, "6516770009", Validity::Default, |spec| {
        spec.key_algorithm(cardgate_vcard::card_file::KeyAlgorithm::Rsa2048)
    })?;
    let runtime = runtime_with_workers(2)?;
    let (_sim, client) = runtime.block_on(sims.start())?;
    for (card, kind) in [(&ecc, KeyAlgorithm::EccP256), (&rsa, KeyAlgorithm::Rsa2048)] {
        let (inserted, thread) = open_verified(lab, card, ReaderSlot::First)?;
        let signer = PcscSigner::new(&thread)?;
        check(signer.algorithm == kind, || {
            format!("the card's key is {:?}, not {kind:?}", signer.algorithm)
        })?;
        let apdus_before = inserted.apdu_count();
        runtime.block_on(full_sessions(&client, &signer, kind))?;
        // Every signature went to the card through pcscd: one GENERAL AUTHENTICATE a login.
        let used = inserted.apdu_count() - apdus_before;
        check(used >= 2, || {
            format!("{kind:?}: only {used} APDUs reached the card for two logins")
        })?;
        thread.close();
        inserted.remove().map_err(fail("removing"))?;
        lab.wait_until_empty(ReaderSlot::First, BOUND)
            .map_err(fail("reader never empty"))?;
    }
    Ok(())
}

/// One card's full session in each mode.
async fn full_sessions(
    client: &SpineClient,
    signer: &Arc<PcscSigner>,
    kind: KeyAlgorithm,
) -> Result<(), Failed> {
    for mode in MODES {
        let session = bounded("login", login(client, mode, signer.clone()))
            .await?
            .map_err(|e| Failed::from(format!("{kind:?} {mode:?} login: {e:?}")))?;
        check(session.uid == ASHA, || {
            format!("{kind:?} {mode:?}: uid {}", session.uid)
        })?;
        check(session.selected_role_profile.is_none(), || {
            format!("{kind:?} {mode:?}: a role was selected before any choice")
        })?;
        let ids: Vec<&str> = session
            .role_profiles
            .iter()
            .map(|p| p.id.as_str())
            .collect();
        check(ids == ["RP-1001", "RP-1002"], || {
            format!("{kind:?} {mode:?}: role profiles {ids:?}")
        })?;
        let selected = client
            .select_role(&session, "RP-1001")
            .await
            .map_err(fail("select role"))?;
        check(
            selected.selected_role_profile.as_deref() == Some("RP-1001"),
            || {
                format!(
                    "{kind:?} {mode:?}: selected {:?}",
                    selected.selected_role_profile
                )
            },
        )?;
        match client
            .introspect(&session.token)
            .await
            .map_err(fail("introspect"))?
        {
            IntrospectResponse::Active {
                uid,
                role_profile_id,
                ods_code,
                ..
            } => {
                check(uid == ASHA, || {
                    format!("{kind:?} {mode:?}: introspected uid {uid}")
                })?;
                check(role_profile_id.as_deref() == Some("RP-1001"), || {
                    format!("{kind:?} {mode:?}: introspected role {role_profile_id:?}")
                })?;
                check(ods_code.as_deref() == Some("FA123"), || {
                    format!("{kind:?} {mode:?}: introspected ODS {ods_code:?}")
                })?;
            }
            IntrospectResponse::Inactive => {
                return Err(Failed::from(format!(
                    "{kind:?} {mode:?}: a live token is inactive"
                )));
            }
        }
        client.logout(&session).await.map_err(fail("logout"))?;
        let after = client
            .introspect(&session.token)
            .await
            .map_err(fail("introspect after logout"))?;
        check(after == IntrospectResponse::Inactive, || {
            format!("{kind:?} {mode:?}: after logout {after:?}")
        })?;
    }
    Ok(())
}

/// A revoked card gets `CardRevoked` and an expired one `CertificateExpired`, in both modes.
fn revoked_and_expired(lab: &mut Lab) -> Result<(), Failed> {
    let mut sims = SimLab::new()?;
    let revoked = sims.card(ASHA, "6516770002", Validity::Default)?;
    let expired = sims.card(ASHA, "6516770003", Validity::Expired)?;
    sims.revoke(&revoked)?;
    let runtime = runtime_with_workers(2)?;
    let (_sim, client) = runtime.block_on(sims.start())?;
    for (card, name) in [(&revoked, "revoked"), (&expired, "expired")] {
        let (inserted, thread) = open_verified(lab, card, ReaderSlot::First)?;
        let signer = PcscSigner::new(&thread)?;
        for mode in MODES {
            let result =
                runtime.block_on(bounded("login", login(&client, mode, signer.clone())))?;
            let right = match name {
                "revoked" => matches!(result, Err(SpineError::CardRevoked)),
                _ => matches!(result, Err(SpineError::CertificateExpired)),
            };
            check(right, || format!("{name} card, {mode:?}: {result:?}"))?;
            if let Err(e) = &result {
                eprintln!("{name} card, {mode:?}: {e}");
            }
        }
        thread.close();
        inserted.remove().map_err(fail("removing"))?;
        lab.wait_until_empty(ReaderSlot::First, BOUND)
            .map_err(fail("reader never empty"))?;
    }
    Ok(())
}

/// The virtual card, which on its first GENERAL AUTHENTICATE (the login signature) tells
/// the test, which pulls the card, and holds its answer long enough for the pull to land.
struct PulledOnSign {
    inner: PivApplet,
    pull: Option<Sender<()>>,
}

impl Card for PulledOnSign {
    fn atr(&self) -> Vec<u8> {
        self.inner.atr()
    }
    fn power_on(&mut self) {
        self.inner.power_on();
    }
    fn power_off(&mut self) {
        self.inner.power_off();
    }
    fn reset(&mut self) {
        self.inner.reset();
    }
    fn transmit(&mut self, command: &[u8]) -> Vec<u8> {
        if command.get(1) == Some(&0x87) {
            if let Some(pull) = self.pull.take() {
                let _ = pull.send(());
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        self.inner.transmit(command)
    }
}

/// The card pulled while it signs the login: `CardRemoved` within the bound, in both modes, and the
/// removed card is not used again.
fn removed_mid_login(lab: &mut Lab) -> Result<(), Failed> {
    let mut sims = SimLab::new()?;
    let card = sims.card(ASHA, "6516770004", Validity::Default)?;
    let runtime = runtime_with_workers(2)?;
    let (_sim, client) = runtime.block_on(sims.start())?;
    for mode in MODES {
        let (pull, pull_now) = mpsc::channel();
        let inserted = lab
            .insert(
                ReaderSlot::First,
                Box::new(PulledOnSign {
                    inner: card.applet()?,
                    pull: Some(pull),
                }),
            )
            .map_err(fail("inserting"))?;
        let thread = CardThread::open(ReaderSlot::First, guard()?)?;
        thread
            .run(|c| c.verify_passcode(&passcode(PASSCODE), FinalTry::NotConfirmed))?
            .map_err(fail("verifying the passcode"))?;
        let signer = PcscSigner::new(&thread)?;
        let puller = std::thread::spawn(move || {
            let pulled = pull_now.recv_timeout(BOUND).is_ok();
            (pulled, inserted.remove().map_err(|e| e.to_string()))
        });
        let started = std::time::Instant::now();
        let result = runtime.block_on(bounded("login", login(&client, mode, signer.clone())))?;
        let took = started.elapsed();
        let (pulled, removed) = puller.join().map_err(|_| "the puller panicked")?;
        check(pulled, || {
            format!("{mode:?}: the card was never asked to sign")
        })?;
        removed.map_err(|e| Failed::from(format!("removing: {e}")))?;
        check(matches!(result, Err(SpineError::CardRemoved)), || {
            format!("{mode:?}: expected CardRemoved, got {result:?}")
        })?;
        eprintln!("{mode:?}: pulled mid-login -> {result:?} after {took:?}");
        // A removed card's client is never reused: the next operation fails too, at once.
        let next = thread.run(|c| c.read_certificate(Slot::Authentication))?;
        check(next.is_err(), || {
            format!("{mode:?}: the card answered after removal")
        })?;
        thread.close();
        lab.wait_until_empty(ReaderSlot::First, BOUND)
            .map_err(fail("reader never empty"))?;
    }
    Ok(())
}

/// A card due within 90 days: new key on the card, CSR, renewal, certificate written, then logins
/// in both modes with it.
fn renewal(lab: &mut Lab) -> Result<(), Failed> {
    let mut sims = SimLab::new()?;
    let card = sims.card(ASHA, "6516770005", Validity::ExpiresInDays(30))?;
    let (inserted, thread) = open_verified(lab, &card, ReaderSlot::First)?;
    let signer = PcscSigner::new(&thread)?;
    let old_certificate = signer.certificate.clone();
    let key_before = CardFile::load(&card.path)
        .map_err(fail("card file"))?
        .slots
        .get(&cardgate_vcard::card_file::Slot::Authentication)
        .map(|k| k.private_key_pkcs8.to_vec())
        .ok_or("no authentication key")?;
    let runtime = runtime_with_workers(2)?;
    let (_sim, client) = runtime.block_on(sims.start())?;
    let session = runtime
        .block_on(bounded(
            "login",
            client.login_with_client_certificate(signer.clone()),
        ))?
        .map_err(fail("login before renewal"))?;
    let old_not_after = session.certificate_not_after;

    let current = old_certificate.clone();
    let csr = thread
        .run(move |c| {
            let key = ManagementKey::aes128(&MANAGEMENT_KEY).map_err(SpineError::from_card)?;
            c.authenticate_management_key(&key)
                .map_err(SpineError::from_card)?;
            cardgate_spine::csr::card_certificate_request(
                c,
                Slot::Authentication,
                KeyAlgorithm::EccP256,
                &current,
            )
        })?
        .map_err(fail("generating the key and CSR on the card"))?;
    let key_after = CardFile::load(&card.path)
        .map_err(fail("card file"))?
        .slots
        .get(&cardgate_vcard::card_file::Slot::Authentication)
        .map(|k| k.private_key_pkcs8.to_vec())
        .ok_or("no authentication key after generation")?;
    check(key_after != key_before, || {
        "the card's key did not change on GENERATE".into()
    })?;
    let certificate = runtime
        .block_on(bounded("renew", client.renew_certificate(&session, &csr)))?
        .map_err(fail("renewal"))?;
    let written = certificate.clone();
    thread
        .run(move |c| c.write_certificate(Slot::Authentication, &written))?
        .map_err(fail("writing the certificate"))?;
    let renewed = PcscSigner::new(&thread)?;
    check(renewed.certificate == certificate, || {
        "the card does not hold the new certificate".into()
    })?;
    check(renewed.certificate != old_certificate, || {
        "the certificate did not change".into()
    })?;
    for mode in MODES {
        let session = runtime
            .block_on(bounded("login", login(&client, mode, renewed.clone())))?
            .map_err(|e| Failed::from(format!("{mode:?} after renewal: {e:?}")))?;
        check(
            session.certificate_not_after > old_not_after + time::Duration::days(300),
            || {
                format!(
                    "{mode:?}: new not-after {} vs old {old_not_after}",
                    session.certificate_not_after
                )
            },
        )?;
    }
    thread.close();
    inserted.remove().map_err(fail("removing"))?;
    Ok(())
}

/// Blocks the card in `slot` with three different wrong passcodes through pcscd; checks the
/// card's own counter says blocked and the right passcode is refused.
fn block(card: &LabCard, thread: &CardThread) -> Result<(), Failed> {
    for wrong in ["111111", "222222", "333333"] {
        let result =
            thread.run(move |c| c.verify_passcode(&passcode(wrong), FinalTry::Confirmed))?;
        check(result.is_err(), || {
            format!("wrong passcode {wrong} accepted")
        })?;
    }
    check(card.pin_tries()? == 0, || {
        format!("the card's counter is {:?}, not blocked", card.pin_tries())
    })?;
    let right = thread.run(|c| c.verify_passcode(&passcode(PASSCODE), FinalTry::Confirmed))?;
    check(matches!(right, Err(PivError::CardBlocked { .. })), || {
        format!("a blocked card with the right passcode: {right:?}")
    })
}

/// Resets the blocked card with `code`, sets `new_passcode`, and checks it verifies on a fresh
/// connection with a fresh agent ledger.
fn reset_and_check(
    card: &LabCard,
    thread: &Arc<CardThread>,
    code: cardgate_piv::UnlockCode,
    new_passcode: &'static str,
    slot: ReaderSlot,
) -> Result<(), Failed> {
    thread
        .run(move |c| c.reset_retry_counter(&code, &passcode(new_passcode), FinalTry::Confirmed))?
        .map_err(fail("RESET RETRY COUNTER"))?;
    check(card.pin_tries()? == 3, || {
        format!("the card's counter after unlock: {:?}", card.pin_tries())
    })?;
    thread.close();
    let again = CardThread::open(slot, guard()?)?;
    again
        .run(move |c| c.verify_passcode(&passcode(new_passcode), FinalTry::NotConfirmed))?
        .map_err(fail("the new passcode after unlock"))?;
    again.close();
    Ok(())
}

/// Self-service unlock: the outbox's one-time code releases the unlock code, which resets the
/// blocked card.
fn self_service_unlock(lab: &mut Lab) -> Result<(), Failed> {
    let mut sims = SimLab::new()?;
    let card = sims.card(ASHA, "6516770006", Validity::Default)?;
    let inserted = card.insert(lab, ReaderSlot::First)?;
    let thread = CardThread::open(ReaderSlot::First, guard()?)?;
    block(&card, &thread)?;
    let runtime = runtime_with_workers(2)?;
    let (_sim, client) = runtime.block_on(sims.start())?;
    let code = runtime.block_on(bounded("self-service unlock", async {
        let started = client
            .start_self_service_unlock(ASHA, &card.serial)
            .await
            .map_err(fail("start self-service unlock"))?;
        let line = std::fs::read_to_string(sims.outbox()).map_err(fail("reading the outbox"))?;
        let message: OutboxMessage = serde_json::from_str(line.lines().last().unwrap_or(""))
            .map_err(fail("parsing the outbox"))?;
        check(message.uid == ASHA, || {
            format!("outbox for {}", message.uid)
        })?;
        client
            .confirm_self_service_unlock(&started.request_id, &message.one_time_code)
            .await
            .map_err(fail("confirm self-service unlock"))
    }))??;
    reset_and_check(&card, &thread, code, "482916", ReaderSlot::First)?;
    inserted.remove().map_err(fail("removing"))?;
    Ok(())
}

/// Sponsor unlock: the sponsor's card in the second reader logs in, selects the sponsor role and
/// releases the holder's unlock code.
fn sponsor_unlock(lab: &mut Lab) -> Result<(), Failed> {
    let mut sims = SimLab::new()?;
    let asha = sims.card(ASHA, "6516770007", Validity::Default)?;
    let ben = sims.card(BEN, "6516770008", Validity::Default)?;
    let asha_in = asha.insert(lab, ReaderSlot::First)?;
    let asha_thread = CardThread::open(ReaderSlot::First, guard()?)?;
    block(&asha, &asha_thread)?;
    // The sponsor's own card, in the second reader, through the same pcscd.
    let (ben_in, ben_thread) = open_verified(lab, &ben, ReaderSlot::Second)?;
    let ben_signer = PcscSigner::new(&ben_thread)?;
    let runtime = runtime_with_workers(2)?;
    let (_sim, client) = runtime.block_on(sims.start())?;
    let code = runtime.block_on(bounded("sponsor unlock", async {
        let sponsor = client
            .login_with_client_certificate(ben_signer.clone())
            .await
            .map_err(fail("sponsor login"))?;
        let sponsor = client
            .select_role(&sponsor, "RP-2001")
            .await
            .map_err(fail("sponsor role"))?;
        let own = client
            .sponsor_unlock(&sponsor, BEN, &ben.serial)
            .await
            .err()
            .and_then(|e| e.code());
        check(own == Some(ErrorCode::OwnCard), || {
            format!("a sponsor unlocking their own card: {own:?}")
        })?;
        client
            .sponsor_unlock(&sponsor, ASHA, &asha.serial)
            .await
            .map_err(fail("sponsor unlock"))
    }))??;
    reset_and_check(&asha, &asha_thread, code, "593027", ReaderSlot::First)?;
    ben_thread.close();
    ben_in.remove().map_err(fail("removing the sponsor card"))?;
    asha_in.remove().map_err(fail("removing"))?;
    Ok(())
}
