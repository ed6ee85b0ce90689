//! Benchmark: a Spine login with the card through the real PC/SC stack, split into the card's
//! signature time and the rest (TLS handshake, HTTP requests and spine-sim's own work, all on
//! loopback), against the same login with a software key (the floor), for mode A (signed
//! challenge) and mode B (TLS client certificate); then spine-sim logins per second under a
//! bounded loopback load of software-key clients.
//!
//! The card is a provisioned ECC P-256 virtual card in the lab's vpcd reader; each signature
//! is a GENERAL AUTHENTICATE through `PcscBackend` -> pcscd -> vpcd -> the card, run on a card
//! thread that holds one PC/SC transaction (as the agent's card actor does). The software
//! floor signs the same digests with the same key (the card file's PKCS#8 key) in process
//! with `p256` (ring has no pre-hashed ECDSA). Signature time is measured inside each signer;
//! "rest" is the login's wall time minus it. Server time is not separated: spine-sim reports
//! none, so it stays inside "rest".
//!
//! `cargo bench -p cardgate-e2e --bench login` (root; its own lab namespace). Without
//! `--bench` (as `cargo test --benches` or clippy's builds run it) it does a short smoke run.

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cardgate_card::TransactionChannel;
use cardgate_e2e::bench_table::{BenchRow, record};
use cardgate_lab::{Lab, ReaderSlot};
use cardgate_piv::{FinalTry, KeyAlgorithm, Passcode, PasscodeGuard, PivClient, SignInput, Slot};
use cardgate_reader::{PcscBackend, ReaderBackend, ReaderName};
use cardgate_spine::{CardSigner, Endpoint, SpineClient, SpineConfig, SpineError};
use cardgate_spine_sim::{SimConfig, SpineSim};
use cardgate_vcard::applet::PivApplet;
use cardgate_vcard::card_file::{CardFile, Slot as CardSlot};
use cardgate_vcard::provision::{CardSpec, TestCa, provision};
use p256::ecdsa::signature::hazmat::PrehashSigner;
use p256::pkcs8::DecodePrivateKey;

/// How to run this again.
const RERUN: &str = "cargo bench -p cardgate-e2e --bench login";
/// The holder.
const UID: &str = "555000111222";
/// The card's serial.
const SERIAL: &str = "6516779901";
const PASSCODE: &str = cardgate_e2e::TEST_PASSCODE;
/// Concurrent clients in the load phase.
const LOAD_CLIENTS: usize = 4;
/// Hard cap on logins per load phase, whatever the duration.
const LOAD_CAP: u64 = 20_000;

/// Enters the lab namespace and runs the full benchmark (`--bench`) or a smoke run.
fn main() -> ExitCode {
    cardgate_lab::enter_lab_namespace();
    let full = std::env::args().any(|a| a == "--bench");
    let (runs, load_for) = if full {
        (25, Duration::from_secs(5))
    } else {
        (3, Duration::from_millis(500))
    };
    match run(runs, load_for) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("login bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Any error as text.
type BenchResult<T> = Result<T, String>;

/// Formats an error with context.
fn ctx<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> String {
    move |e| format!("{what}: {e}")
}

/// The PIV client on the card thread.
type LabPiv<'t> = PivClient<TransactionChannel<'t>>;
/// A signature request to the card thread.
/// A job for the card thread: a signature, or the passcode verified again (what a log-in
/// does first).
enum SignJob {
    Sign(SignInput, mpsc::SyncSender<Result<Vec<u8>, SpineError>>),
    Verify(mpsc::SyncSender<Result<(), String>>),
}

/// A [`CardSigner`] that records how long each signature took.
trait Timed {
    /// Takes the signature time recorded since the last call.
    fn take_sign_time(&self) -> Duration;
}

/// The card through pcscd: a thread holding the connection, one transaction and the
/// `PivClient` (passcode verified), serving signatures.
struct PcscSigner {
    jobs: Mutex<Sender<SignJob>>,
    certificate: Vec<u8>,
    spent: Mutex<Duration>,
}

impl PcscSigner {
    /// Connects through pcscd, verifies the passcode and reads the certificate on the card thread.
    fn open(slot: ReaderSlot) -> BenchResult<PcscSigner> {
        let (ready_tx, ready_rx) = mpsc::sync_channel::<BenchResult<Vec<u8>>>(1);
        let (jobs_tx, jobs_rx) = mpsc::channel::<SignJob>();
        std::thread::spawn(move || {
            let reader = ReaderName::new(slot.to_string());
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
            let guard = match PasscodeGuard::in_memory() {
                Ok(g) => Arc::new(g),
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("guard: {e}")));
                    return;
                }
            };
            let mut client: LabPiv<'_> =
                PivClient::new(TransactionChannel::new(transaction), guard);
            let ready = Passcode::new(PASSCODE.to_owned())
                .and_then(|p| client.verify_passcode(&p, FinalTry::NotConfirmed))
                .and_then(|()| client.read_certificate(Slot::Authentication))
                .map_err(|e| format!("passcode and certificate: {e}"));
            let failed = ready.is_err();
            if ready_tx.send(ready).is_err() || failed {
                return;
            }
            while let Ok(job) = jobs_rx.recv() {
                match job {
                    SignJob::Sign(input, reply) => {
                        let _ = reply.send(
                            client
                                .sign(Slot::Authentication, input)
                                .map_err(SpineError::from_card),
                        );
                    }
                    SignJob::Verify(reply) => {
                        let _ = reply.send(
                            Passcode::new(PASSCODE.to_owned())
                                .and_then(|p| client.verify_passcode(&p, FinalTry::NotConfirmed))
                                .map_err(|e| format!("passcode: {e}")),
                        );
                    }
                }
            }
        });
        let certificate = ready_rx
            .recv_timeout(Duration::from_secs(20))
            .map_err(ctx("the card thread"))??;
        Ok(PcscSigner {
            jobs: Mutex::new(jobs_tx),
            certificate,
            spent: Mutex::new(Duration::ZERO),
        })
    }
}

impl CardSigner for PcscSigner {
    fn certificate_der(&self) -> &[u8] {
        &self.certificate
    }
    fn key_algorithm(&self) -> KeyAlgorithm {
        KeyAlgorithm::EccP256
    }
    fn sign(&self, input: SignInput) -> Result<Vec<u8>, SpineError> {
        let unavailable = || SpineError::CardUnavailable {
            reason: "the card thread ended",
        };
        let started = Instant::now();
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        self.jobs
            .lock()
            .map_err(|_| unavailable())?
            .send(SignJob::Sign(input, reply_tx))
            .map_err(|_| unavailable())?;
        let result = reply_rx
            .recv_timeout(Duration::from_secs(20))
            .map_err(|_| unavailable())?;
        if let Ok(mut spent) = self.spent.lock() {
            *spent += started.elapsed();
        }
        result
    }
}

impl Timed for PcscSigner {
    fn take_sign_time(&self) -> Duration {
        self.spent
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default()
    }
}

/// The floor: the same key and certificate, signing in process.
struct SoftwareSigner {
    key: p256::ecdsa::SigningKey,
    certificate: Vec<u8>,
    spent: Mutex<Duration>,
}

impl SoftwareSigner {
    /// The card file's PIV Authentication key with the card's certificate.
    fn from_card_file(path: &Path, certificate: Vec<u8>) -> BenchResult<SoftwareSigner> {
        let file = CardFile::load(path).map_err(ctx("card file"))?;
        let slot = file
            .slots
            .get(&CardSlot::Authentication)
            .ok_or("no authentication key on the card")?;
        let key = p256::ecdsa::SigningKey::from_pkcs8_der(&slot.private_key_pkcs8)
            .map_err(ctx("PKCS#8 key"))?;
        Ok(SoftwareSigner {
            key,
            certificate,
            spent: Mutex::new(Duration::ZERO),
        })
    }
}

impl CardSigner for SoftwareSigner {
    fn certificate_der(&self) -> &[u8] {
        &self.certificate
    }
    fn key_algorithm(&self) -> KeyAlgorithm {
        KeyAlgorithm::EccP256
    }
    fn sign(&self, input: SignInput) -> Result<Vec<u8>, SpineError> {
        let started = Instant::now();
        let SignInput::EcdsaP256Sha256(digest) = input else {
            return Err(SpineError::UnsupportedCard {
                reason: "the software floor signs ECDSA P-256 only".into(),
            });
        };
        let signature: p256::ecdsa::Signature =
            self.key
                .sign_prehash(digest.as_bytes())
                .map_err(|e| SpineError::UnsupportedCard {
                    reason: e.to_string(),
                })?;
        let der = signature.to_der().as_bytes().to_vec();
        if let Ok(mut spent) = self.spent.lock() {
            *spent += started.elapsed();
        }
        Ok(der)
    }
}

impl Timed for SoftwareSigner {
    fn take_sign_time(&self) -> Duration {
        self.spent
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default()
    }
}

/// The two login modes.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Mode A: CMS-signed challenge over one-way TLS.
    A,
    /// Mode B: TLS 1.3 client certificate.
    B,
}

/// Logs in with `signer` in `mode`.
async fn login(
    client: &SpineClient,
    mode: Mode,
    signer: Arc<dyn CardSigner>,
) -> Result<cardgate_spine::wire::Session, SpineError> {
    match mode {
        Mode::A => client.login_with_signed_challenge(signer).await,
        Mode::B => client.login_with_client_certificate(signer).await,
    }
}

/// Medians of one series of logins.
struct Series {
    total: Duration,
    sign: Duration,
    rest: Duration,
}

/// The median (upper middle) of `values`.
fn median(values: &mut [Duration]) -> Duration {
    values.sort();
    values.get(values.len() / 2).copied().unwrap_or_default()
}

/// `runs` timed logins (after two warm-ups), each followed by an untimed logout.
async fn series<S: CardSigner + Timed + 'static>(
    client: &SpineClient,
    mode: Mode,
    signer: &Arc<S>,
    runs: usize,
) -> BenchResult<Series> {
    let (mut totals, mut signs, mut rests) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs + 2 {
        signer.take_sign_time();
        let started = Instant::now();
        let session = login(client, mode, signer.clone())
            .await
            .map_err(|e| format!("{mode:?} login: {e}"))?;
        let total = started.elapsed();
        let sign = signer.take_sign_time();
        client.logout(&session).await.map_err(ctx("logout"))?;
        if i >= 2 {
            totals.push(total);
            signs.push(sign);
            rests.push(total.saturating_sub(sign));
        }
    }
    Ok(Series {
        total: median(&mut totals),
        sign: median(&mut signs),
        rest: median(&mut rests),
    })
}

impl PcscSigner {
    /// Verifies the passcode on the card again (VERIFY through pcscd), as a log-in starts.
    fn verify(&self) -> BenchResult<()> {
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        self.jobs
            .lock()
            .map_err(|_| "the card thread's queue is poisoned".to_owned())?
            .send(SignJob::Verify(reply_tx))
            .map_err(|_| "the card thread ended".to_owned())?;
        reply_rx
            .recv_timeout(Duration::from_secs(20))
            .map_err(ctx("the card thread"))?
    }
}

/// Median time from the passcode being handed to the card (VERIFY) to the endpoint session
/// established (mode `mode`), signing with the card.
async fn verify_then_login(
    client: &SpineClient,
    mode: Mode,
    card: &Arc<PcscSigner>,
    runs: usize,
) -> BenchResult<Duration> {
    let mut totals = Vec::new();
    for i in 0..runs + 2 {
        let started = Instant::now();
        let card_thread = Arc::clone(card);
        tokio::task::spawn_blocking(move || card_thread.verify())
            .await
            .map_err(ctx("verify task"))??;
        let session = login(client, mode, card.clone())
            .await
            .map_err(|e| format!("{mode:?} login: {e}"))?;
        let total = started.elapsed();
        client.logout(&session).await.map_err(ctx("logout"))?;
        if i >= 2 {
            totals.push(total);
        }
    }
    Ok(median(&mut totals))
}

/// Milliseconds.
fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Starts the lab, runs the benchmark, prints pcscd's log on failure.
fn run(runs: usize, load_for: Duration) -> BenchResult<()> {
    let mut lab = Lab::start().map_err(ctx("starting the lab"))?;
    let result = bench(&lab, runs, load_for);
    if result.is_err() {
        eprintln!("---- pcscd log ----\n{}", lab.pcscd_log());
    }
    let _ = lab.kill_pcscd();
    result
}

/// Provisions and inserts the card, starts spine-sim, prints the table and the load figures.
fn bench(lab: &Lab, runs: usize, load_for: Duration) -> BenchResult<()> {
    let dir = tempfile::tempdir().map_err(ctx("temp dir"))?;
    let ca = TestCa::generate("Cardgate Login Bench Card CA").map_err(ctx("card CA"))?;
    ca.save(&dir.path().join("card-ca"))
        .map_err(ctx("saving CA"))?;
    cardgate_spine_sim::init_service_dir(&dir.path().join("service"))
        .map_err(ctx("service dir"))?;
    let provisioned = provision(
        &ca,
        &CardSpec::new("Asha Patel", UID)
            .card_serial(SERIAL)
            .pin(PASSCODE),
    )
    .map_err(ctx("provisioning"))?;
    let card_path = dir.path().join("card.json");
    provisioned
        .card
        .save(&card_path)
        .map_err(ctx("saving the card"))?;
    let applet = PivApplet::open(&card_path).map_err(ctx("opening the card"))?;
    let inserted = lab
        .insert(ReaderSlot::First, Box::new(applet))
        .map_err(ctx("inserting"))?;
    let card = Arc::new(PcscSigner::open(ReaderSlot::First)?);
    let software = Arc::new(SoftwareSigner::from_card_file(
        &card_path,
        card.certificate.clone(),
    )?);

    let path = |p: &str| dir.path().join(p).display().to_string();
    let toml = format!(
        r#"
[server]
listen = "127.0.0.1:0"
listen_mtls = "127.0.0.1:0"
service_dir = "{}"
card_ca_dir = "{}"
outbox = "{}"
max_idle_time = 900

[[users]]
uid = "{UID}"
name = "Asha Patel"
[[users.role_profiles]]
id = "RP-1001"
job_role = "Pharmacist"
ods_code = "FA123"
organisation_name = "High Street Pharmacy"
activities = ["eps.download"]

[[cards]]
serial = "{SERIAL}"
uid = "{UID}"
unlock_code = "12345678"
"#,
        path("service"),
        path("card-ca"),
        path("outbox.jsonl"),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(ctx("runtime"))?;
    runtime.block_on(async {
        let config = SimConfig::from_toml(&toml).map_err(ctx("sim config"))?;
        let sim = SpineSim::start(config).await.map_err(ctx("spine-sim"))?;
        let client = Arc::new(
            SpineClient::new(SpineConfig::new(
                Endpoint::parse(&sim.url()).map_err(ctx("url"))?,
                Endpoint::parse(&sim.mtls_url()).map_err(ctx("mtls url"))?,
                sim.service_ca_pem().as_bytes().to_vec(),
            ))
            .map_err(ctx("client"))?,
        );

        println!("login through pcscd + vpcd vs software key, median of {runs} (ms)");
        println!(
            "{:<30} {:>10} {:>10} {:>14} {:>10}",
            "mode / signer", "total", "signature", "TLS+HTTP+srv", "ratio"
        );
        for mode in [Mode::B, Mode::A] {
            let with_card = series(&client, mode, &card, runs).await?;
            let floor = series(&client, mode, &software, runs).await?;
            let name = match mode {
                Mode::A => "A signed challenge",
                Mode::B => "B client cert",
            };
            for (who, s) in [("card", &with_card), ("software", &floor)] {
                println!(
                    "{:<30} {:>10.2} {:>10.3} {:>14.2} {:>10}",
                    format!("{name} / {who}"),
                    ms(s.total),
                    ms(s.sign),
                    ms(s.rest),
                    if who == "card" {
                        format!(
                            "{:.2}x",
                            with_card.total.as_secs_f64() / floor.total.as_secs_f64().max(1e-9)
                        )
                    } else {
                        "1.00x".to_owned()
                    }
                );
            }
            println!(
                "{:<30} signature {:.1}x the software key's; rest {:.2}x",
                "",
                with_card.sign.as_secs_f64() / floor.sign.as_secs_f64().max(1e-9),
                with_card.rest.as_secs_f64() / floor.rest.as_secs_f64().max(1e-9),
            );
        }
        let mut rows = Vec::new();
        for mode in [Mode::B, Mode::A] {
            let with_card = verify_then_login(&client, mode, &card, runs).await?;
            let floor = series(&client, mode, &software, runs).await?;
            let name = match mode {
                Mode::A => "mode A (signed challenge)",
                Mode::B => "mode B (client certificate)",
            };
            println!(
                "passcode verified to session established, {name}: card {:.2} ms, \
                 software key (no passcode) {:.2} ms",
                ms(with_card),
                ms(floor.total)
            );
            rows.push(BenchRow::compare(
                format!("Passcode verify to session established, {name}, median ms"),
                ms(with_card),
                "the same log-in with a software key",
                ms(floor.total),
                2,
            ));
        }
        println!("card APDUs answered in all: {}", inserted.apdu_count());

        println!(
            "\nspine-sim under load: {LOAD_CLIENTS} concurrent software-key clients, \
             {load_for:?} per mode, capped at {LOAD_CAP} logins"
        );
        for mode in [Mode::B, Mode::A] {
            let done = Arc::new(AtomicU64::new(0));
            let failed = Arc::new(AtomicU64::new(0));
            let started = Instant::now();
            let deadline = started + load_for;
            let mut tasks = Vec::new();
            for _ in 0..LOAD_CLIENTS {
                let client = Arc::clone(&client);
                let signer: Arc<dyn CardSigner> = software.clone();
                let (done, failed) = (Arc::clone(&done), Arc::clone(&failed));
                tasks.push(tokio::spawn(async move {
                    // Every increment below the cap is one login started; one at or past it
                    // starts none.
                    while Instant::now() < deadline
                        && done.fetch_add(1, Ordering::SeqCst) < LOAD_CAP
                    {
                        if login(&client, mode, signer.clone()).await.is_err() {
                            failed.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }));
            }
            for task in tasks {
                task.await.map_err(ctx("load task"))?;
            }
            let elapsed = started.elapsed();
            let logins = done.load(Ordering::SeqCst).min(LOAD_CAP);
            let failures = failed.load(Ordering::SeqCst);
            println!(
                "mode {mode:?}: {logins} logins in {:.2} s = {:.0} logins/s ({failures} failed)",
                elapsed.as_secs_f64(),
                logins as f64 / elapsed.as_secs_f64()
            );
            if failures > 0 {
                return Err(format!("{failures} logins failed under load"));
            }
        }
        if let Some(path) = record("login", &rows).map_err(ctx("recording rows"))? {
            println!("rows recorded in {}", path.display());
        }
        println!("\nrerun: {RERUN}");
        drop(sim);
        Ok::<(), String>(())
    })?;
    inserted.remove().map_err(ctx("removing"))?;
    Ok(())
}
