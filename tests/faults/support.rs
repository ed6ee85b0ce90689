//! What every fault case shares: `cardgated` on a private bus over any reader backend (the
//! lab's pcscd or the in-process virtual reader), a card whose state the test can read while
//! it is in a reader, a card that stops answering at a chosen APDU so it can be pulled
//! mid-command, a seeded random generator, and the four invariants of issue 8 as checks.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use cardgate_demo::{DEMO_ODS, DEMO_PASSCODE, DemoWorld, PHARMACIST, PrivateBus};
use cardgate_e2e::check;
use cardgate_e2e::daemon_harness::OrFail as _;
use cardgate_ipc::AgentProxy;
use cardgate_reader::{ReaderBackend, ReaderName, VirtualBackend};
use cardgate_vcard::Card;
use cardgate_vcard::applet::PivApplet;
use cardgate_vcard::vpcd::InsertedCard;
use cardgated::{Config, DaemonError};
use libtest_mimic::Failed;
use zbus::proxy::CacheProperties;

/// The in-process virtual backend with the one reader the virtual cases pull cards from.
pub fn virtual_reader() -> (Arc<VirtualBackend>, ReaderName) {
    let backend = Arc::new(VirtualBackend::new());
    let reader = backend.attach_reader("Fault Reader 00 00");
    (backend, reader)
}

/// Puts `applet` (as a fresh [`SharedCard`]) in the empty virtual `reader`.
pub fn insert_shared(
    backend: &VirtualBackend,
    reader: &ReaderName,
    applet: &Arc<Mutex<PivApplet>>,
) -> Result<(), Failed> {
    backend
        .insert(reader, Box::new(SharedCard::new(applet)))
        .map_err(|_| Failed::from("reader occupied"))
}

/// Waits, for at most `limit`, until the daemon behind `agent` has read the pharmacist's card.
pub async fn pharmacist_read(agent: &AgentProxy<'static>, limit: Duration) -> Result<(), Failed> {
    wait_until("the card to be read", limit, || {
        let agent = agent.clone();
        async move { agent.holder_uuid().await.unwrap_or_default() == PHARMACIST.1 }
    })
    .await
}

/// Logs in with the pharmacist's card and selects the pharmacist role: the session most
/// cases put their faults under.
pub async fn pharmacist_session(agent: &AgentProxy<'static>) -> Result<(), Failed> {
    agent.login(DEMO_PASSCODE, false).await.or_fail("Login")?;
    agent
        .select_role_profile("RP-PHARM-FA123")
        .await
        .or_fail("SelectRoleProfile")?;
    Ok(())
}

/// [`pharmacist_session`], then checks that download is allowed; returns the generation it
/// was allowed under.
pub async fn login_and_allow(agent: &AgentProxy<'static>) -> Result<u64, Failed> {
    pharmacist_session(agent).await?;
    let answer = agent
        .authorise("download", DEMO_ODS)
        .await
        .or_fail("Authorise")?;
    check(answer.allowed, || {
        format!("Authorise with a session: {answer:?}")
    })?;
    Ok(answer.generation)
}

/// Polls `probe` every 5 ms until it holds, for at most `limit`.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut probe: F) -> Result<(), Failed>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if probe().await {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Failed::from(format!(
                "timed out after {limit:?} waiting for {what}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `cardgated` on a private bus over `backend`, with a client proxy; like
/// `daemon_harness::RunningDaemon`, but any backend, extra clients, and the audit path kept.
pub struct FaultDaemon {
    /// The demo world: card files, the card CA and the in-process spine-sim.
    pub world: DemoWorld,
    /// The private bus's address.
    pub address: String,
    /// A client of the daemon, properties never cached.
    pub agent: AgentProxy<'static>,
    /// The audit trail the daemon writes.
    pub audit_path: PathBuf,
    stop: tokio::sync::oneshot::Sender<()>,
    daemon: tokio::task::JoinHandle<Result<(), DaemonError>>,
    _bus: Option<PrivateBus>,
    _dir: tempfile::TempDir,
}

impl FaultDaemon {
    /// Starts the world, the bus and the daemon over `backend` (with `configure` applied to
    /// the demo configuration; it also gets the world, e.g. to point the endpoint elsewhere),
    /// and returns once the daemon owns its bus name.
    pub async fn start(
        backend: Arc<dyn ReaderBackend>,
        configure: impl FnOnce(&mut Config, &DemoWorld),
    ) -> Result<FaultDaemon, Failed> {
        let dir = tempfile::tempdir().or_fail("tempdir")?;
        let world = DemoWorld::start(dir.path()).await.or_fail("demo world")?;
        FaultDaemon::start_in(world, dir, backend, configure).await
    }

    /// As [`FaultDaemon::start`], in a world the caller already started in `dir` (e.g. to put
    /// something between the daemon and its endpoint).
    pub async fn start_in(
        world: DemoWorld,
        dir: tempfile::TempDir,
        backend: Arc<dyn ReaderBackend>,
        configure: impl FnOnce(&mut Config, &DemoWorld),
    ) -> Result<FaultDaemon, Failed> {
        let bus = PrivateBus::start().or_fail("private bus")?;
        let address = bus.address().to_owned();
        let mut running =
            FaultDaemon::start_on_bus(world, dir, backend, address, configure).await?;
        running._bus = Some(bus);
        Ok(running)
    }

    /// As [`FaultDaemon::start_in`], on a bus the caller runs at `address` (e.g. to restart
    /// it under the daemon).
    pub async fn start_on_bus(
        world: DemoWorld,
        dir: tempfile::TempDir,
        backend: Arc<dyn ReaderBackend>,
        address: String,
        configure: impl FnOnce(&mut Config, &DemoWorld),
    ) -> Result<FaultDaemon, Failed> {
        let mut config = world.config(&address).or_fail("config")?;
        configure(&mut config, &world);
        let audit_path = config.paths.audit.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let daemon = tokio::spawn(cardgated::run(config, backend, None, async move {
            let _ = stopped.await;
        }));
        let agent = match client(&address).await {
            Ok(agent) => agent,
            Err(e) if daemon.is_finished() => {
                let why = match daemon.await {
                    Ok(Err(e)) => e.to_string(),
                    other => format!("{other:?}"),
                };
                return Err(Failed::from(format!(
                    "cardgated exited at start: {why} ({e:?})"
                )));
            }
            Err(e) => return Err(e),
        };
        Ok(FaultDaemon {
            world,
            address,
            agent,
            audit_path,
            stop,
            daemon,
            _bus: None,
            _dir: dir,
        })
    }

    /// The pharmacist's card of this world, shared so that the case can read its retry
    /// counter while it is in a reader, and that counter as the case starts.
    pub fn pharmacist_card(&self) -> Result<(Arc<Mutex<PivApplet>>, u8), Failed> {
        let file = self.world.card(PHARMACIST).or_fail("card")?;
        let applet = Arc::new(Mutex::new(PivApplet::new(file)));
        let full = card_tries_left(&applet);
        Ok((applet, full))
    }

    /// Whether `cardgated::run` has returned (the daemon is gone).
    pub fn has_exited(&self) -> bool {
        self.daemon.is_finished()
    }

    /// The daemon's outcome once it has exited by itself; the audit chain is verified.
    pub async fn exited(self) -> Result<Result<(), DaemonError>, Failed> {
        let outcome = self.daemon.await.or_fail("cardgated task")?;
        let report = cardgate_audit::verify(&self.audit_path).or_fail("verify")?;
        check(report.is_intact(), || {
            format!("the audit chain is broken: {:?}", report.first_break)
        })?;
        Ok(outcome)
    }

    /// Another, independent client connection (its own bus connection and unique name).
    pub async fn new_client(&self) -> Result<AgentProxy<'static>, Failed> {
        client(&self.address).await
    }

    /// Stops the daemon (within 15 s, without an error) and returns the audit trail's text
    /// after checking that the hash chain verifies from the first line to the last.
    pub async fn stop(self) -> Result<String, Failed> {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(15), self.daemon)
            .await
            .map_err(|_| Failed::from("cardgated did not stop within 15 s"))?
            .or_fail("cardgated task")?
            .or_fail("cardgated")?;
        let report = cardgate_audit::verify(&self.audit_path).or_fail("verify")?;
        check(report.is_intact(), || {
            format!("the audit chain is broken: {:?}", report.first_break)
        })?;
        std::fs::read_to_string(&self.audit_path).or_fail("audit")
    }
}

/// A client proxy on a new connection to `address`, once the daemon owns its name (10 s).
pub async fn client(address: &str) -> Result<AgentProxy<'static>, Failed> {
    let connection = zbus::connection::Builder::address(address)
        .or_fail("bus address")?
        .build()
        .await
        .or_fail("connecting to the private bus")?;
    let dbus = zbus::fdo::DBusProxy::new(&connection)
        .await
        .or_fail("bus proxy")?;
    wait_until("cardgated to own its name", Duration::from_secs(10), || {
        let dbus = dbus.clone();
        async move {
            match cardgate_ipc::BUS_NAME.try_into() {
                Ok(name) => dbus.name_has_owner(name).await.unwrap_or(false),
                Err(_) => false,
            }
        }
    })
    .await?;
    AgentProxy::builder(&connection)
        .cache_properties(CacheProperties::No)
        .build()
        .await
        .or_fail("agent proxy")
}

/// Where a [`SharedCard`] stops answering: at its `at`-th APDU (1-based) it tells the test
/// through `reached` and then hangs until released, so the test pulls it in the middle of
/// that command. With `processed`, the card has already acted on the command (a VERIFY
/// counted, a signature made) and only the answer is lost; without, the command never
/// reached it.
pub struct Cut {
    /// The APDU (1-based, counted from insertion) at which the card hangs.
    pub at: u64,
    /// Whether the card processes that command before hanging.
    pub processed: bool,
    /// Told when the card hangs.
    pub reached: std::sync::mpsc::Sender<()>,
    /// Set (and notified) to let the hung card go on; its answer then goes nowhere.
    pub release: Arc<(Mutex<bool>, Condvar)>,
}

/// The test's end of a [`Cut`]: told when the card hangs, and able to let it go.
pub struct Hang {
    /// The APDU the card hangs at.
    pub at: u64,
    /// Told when the card hangs.
    pub reached: std::sync::mpsc::Receiver<()>,
    release: Arc<(Mutex<bool>, Condvar)>,
}

impl Hang {
    /// The card behind `applet`, hanging at APDU `at` (after acting on it when `processed`),
    /// and the hang to pull it by.
    pub fn card(applet: &Arc<Mutex<PivApplet>>, at: u64, processed: bool) -> (SharedCard, Hang) {
        let (tx, reached) = std::sync::mpsc::channel();
        let release = Arc::new((Mutex::new(false), Condvar::new()));
        let cut = Cut {
            at,
            processed,
            reached: tx,
            release: Arc::clone(&release),
        };
        let hang = Hang {
            at,
            reached,
            release,
        };
        (SharedCard::with_cut(applet, cut), hang)
    }

    /// Lets the hung card go on; its answer goes nowhere.
    pub fn release(&self) {
        let (flag, wake) = &*self.release;
        *flag.lock().unwrap_or_else(|p| p.into_inner()) = true;
        wake.notify_all();
    }

    /// Waits (off the runtime) for the card to hang, pulls it from its vpcd reader while it
    /// hangs mid-command, and lets it go 20 ms later.
    pub async fn pull(self, inserted: InsertedCard) -> Result<(), Failed> {
        tokio::task::spawn_blocking(move || {
            let at = self.at;
            self.reached
                .recv_timeout(Duration::from_secs(10))
                .map_err(|_| format!("the card never reached APDU {at}"))?;
            let releaser = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                self.release();
            });
            // The connection may fail as the card goes: the removal is what matters here.
            let _ = inserted.remove();
            let _ = releaser.join();
            Ok::<(), String>(())
        })
        .await
        .or_fail("pull task")?
        .map_err(Failed::from)
    }
}

/// The PIV applet behind a shared handle, so the test reads the card's own retry counter
/// while the card is in a reader, optionally with a [`Cut`].
pub struct SharedCard {
    applet: Arc<Mutex<PivApplet>>,
    cut: Option<Cut>,
    served: Arc<AtomicU64>,
    headers: Arc<Mutex<Vec<[u8; 4]>>>,
}

impl SharedCard {
    /// The card behind `applet`, answering every APDU.
    pub fn new(applet: &Arc<Mutex<PivApplet>>) -> SharedCard {
        SharedCard {
            applet: Arc::clone(applet),
            cut: None,
            served: Arc::new(AtomicU64::new(0)),
            headers: Arc::default(),
        }
    }

    /// The card behind `applet`, hanging as `cut` says.
    pub fn with_cut(applet: &Arc<Mutex<PivApplet>>, cut: Cut) -> SharedCard {
        SharedCard {
            cut: Some(cut),
            ..SharedCard::new(applet)
        }
    }

    /// APDUs answered (or hung on) since this card was made.
    pub fn served(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.served)
    }

    /// The header (CLA INS P1 P2) of every APDU it was sent, in order, to tell which
    /// command a count lands on.
    pub fn headers(&self) -> Arc<Mutex<Vec<[u8; 4]>>> {
        Arc::clone(&self.headers)
    }
}

/// The applet, locked (a poisoned lock still holds the card's state, which is what we read).
pub fn lock(applet: &Arc<Mutex<PivApplet>>) -> std::sync::MutexGuard<'_, PivApplet> {
    applet
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The card's own passcode retry counter.
pub fn card_tries_left(applet: &Arc<Mutex<PivApplet>>) -> u8 {
    lock(applet).card_file().pin.tries_left
}

impl Card for SharedCard {
    fn atr(&self) -> Vec<u8> {
        lock(&self.applet).atr()
    }

    fn power_on(&mut self) {
        lock(&self.applet).power_on();
    }

    fn power_off(&mut self) {
        lock(&self.applet).power_off();
    }

    fn reset(&mut self) {
        lock(&self.applet).reset();
    }

    fn transmit(&mut self, command: &[u8]) -> Vec<u8> {
        let n = self.served.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(header) = command.get(..4).and_then(|h| <[u8; 4]>::try_from(h).ok()) {
            self.headers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(header);
        }
        let Some(cut) = self.cut.as_ref().filter(|c| c.at == n) else {
            return lock(&self.applet).transmit(command);
        };
        let answer = if cut.processed {
            lock(&self.applet).transmit(command)
        } else {
            vec![0x6F, 0x00]
        };
        let _ = cut.reached.send(());
        let (released, wake) = &*cut.release;
        let mut done = released.lock().unwrap_or_else(|p| p.into_inner());
        while !*done {
            done = wake.wait(done).unwrap_or_else(|p| p.into_inner());
        }
        answer
    }
}

/// A small seeded generator (xorshift64*): the seed is printed, so a failing run repeats
/// with `FAULTS_SEED`.
pub struct Rng(u64);

impl Rng {
    /// From `FAULTS_SEED`, else from the clock; prints the seed.
    pub fn from_env(case: &str) -> Rng {
        let seed = std::env::var("FAULTS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
        eprintln!("{case}: FAULTS_SEED={seed}");
        Rng(seed | 1)
    }

    /// The next number.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The cycle count for the insert/remove case: 1,000, or `FAULTS_SOAK` for a longer run.
pub fn cycles() -> u64 {
    std::env::var("FAULTS_SOAK")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000)
}

/// Invariants 1 and 2 after a card left: once the daemon reports the card gone, every
/// `Authorise` is refused, and within `limit` it refuses as `no-card` under a generation
/// later than `before` (the one a decision made with the card would have carried), and no
/// session is left (`State` is not logged in).
///
/// It asks until the answer settles because a card pulled within a few milliseconds of its
/// insertion may reach the daemon as an insertion after the test already saw `CardPresent`
/// false (the removal follows it): meanwhile the answer is `certificate-unchecked`, never yes.
pub async fn assert_no_session_survives(
    agent: &AgentProxy<'static>,
    before: u64,
    limit: Duration,
) -> Result<(), Failed> {
    wait_until("the daemon to see the card gone", limit, || {
        let agent = agent.clone();
        async move { agent.card_present().await.is_ok_and(|present| !present) }
    })
    .await?;
    let deadline = Instant::now() + limit;
    loop {
        let present = agent.card_present().await.or_fail("CardPresent")?;
        let answer = agent
            .authorise("download", DEMO_ODS)
            .await
            .or_fail("Authorise after removal")?;
        check(!answer.allowed, || {
            format!("Authorise after removal was allowed: {answer:?}")
        })?;
        if !present && answer.reason == "no-card" {
            check(answer.generation > before, || {
                format!(
                    "Authorise after removal answered under generation {} (card's was {before})",
                    answer.generation
                )
            })?;
            break;
        }
        if Instant::now() > deadline {
            return Err(Failed::from(format!(
                "{limit:?} after the removal the daemon still answered {answer:?} \
                 (CardPresent {present})"
            )));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let state = agent.state().await.or_fail("State")?;
    check(state != "logged-in", || {
        format!("State after removal: {state}")
    })?;
    Ok(())
}

/// Invariant 4, the part the chain cannot say by itself: every action the daemon acknowledged
/// to a caller has its entry. `kind` is the audit entry kind, `acknowledged` how many the
/// test saw acknowledged.
pub fn assert_entries_at_least(audit: &str, kind: &str, acknowledged: usize) -> Result<(), Failed> {
    let needle = format!("\"kind\":\"{kind}\"");
    let found = audit.lines().filter(|l| l.contains(&needle)).count();
    check(found >= acknowledged, || {
        format!("{acknowledged} {kind} acknowledged but only {found} on the audit trail")
    })
}
