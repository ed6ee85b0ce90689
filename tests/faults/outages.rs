//! Outages: pcscd killed and restarted during each kind of card operation; the endpoint
//! down, too slow, answering garbage or presenting another service's certificate; the audit
//! disk full. Each checks the four invariants and that the agent works again afterwards.

use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cardgate_demo::{DEMO_ODS, DEMO_PASSCODE, DemoWorld};
use cardgate_e2e::check;
use cardgate_e2e::daemon_harness::{OrFail as _, fail};
use cardgate_lab::{Lab, ReaderSlot};
use cardgate_reader::PcscBackend;
use libtest_mimic::Failed;
use tokio::io::AsyncWriteExt as _;

use crate::error_name;
use crate::support::{
    FaultDaemon, Hang, Rng, SharedCard, assert_entries_at_least, assert_no_session_survives,
    card_tries_left, insert_shared, login_and_allow, pharmacist_read, virtual_reader,
};

/// How long the daemon may take to see a card, including a pcscd that just came back.
const SEE: Duration = Duration::from_secs(20);

/// pcscd killed (SIGKILL) and restarted with the card idle in the reader, under a live
/// session, in the middle of the read at insertion and in the middle of a login.
pub async fn pcscd_killed(lab: &mut Lab) -> Result<(), Failed> {
    let running = FaultDaemon::start(Arc::new(PcscBackend::new()), |_, _| {}).await?;
    let agent = running.agent.clone();
    let (applet, full) = running.pharmacist_card()?;
    let mut rng = Rng::from_env("pcscd_killed_during_each_operation");
    let mut logins = 0;

    // Learn the APDU counts of the read at insertion and of a login.
    let card = SharedCard::new(&applet);
    let served = card.served();
    let inserted = lab
        .insert(ReaderSlot::First, Box::new(card))
        .or_fail("insert")?;
    pharmacist_read(&agent, SEE).await?;
    let read_apdus = served.load(std::sync::atomic::Ordering::SeqCst);

    // 1. Idle card in the reader.
    let before = agent.session_generation().await.or_fail("gen")?;
    lab.kill_pcscd().or_fail("kill pcscd")?;
    drop(inserted);
    assert_no_session_survives(&agent, before, SEE)
        .await
        .map_err(|e| Failed::from(format!("idle: {}", e.message().unwrap_or(""))))?;
    lab.restart_pcscd().or_fail("restart pcscd")?;

    // 2. Under a live session.
    let inserted = lab
        .insert(ReaderSlot::First, Box::new(SharedCard::new(&applet)))
        .or_fail("insert after restart")?;
    pharmacist_read(&agent, SEE).await?;
    let allowed_at = login_and_allow(&agent).await?;
    logins += 1;
    lab.kill_pcscd().or_fail("kill pcscd")?;
    drop(inserted);
    assert_no_session_survives(&agent, allowed_at, SEE)
        .await
        .map_err(|e| Failed::from(format!("session: {}", e.message().unwrap_or(""))))?;
    lab.restart_pcscd().or_fail("restart pcscd")?;

    // 3. In the middle of the read at insertion (a random one of its APDUs).
    let at = 1 + rng.below(read_apdus);
    let (card, hang) = Hang::card(&applet, at, false);
    let before = agent.session_generation().await.or_fail("gen")?;
    let inserted = lab
        .insert(ReaderSlot::First, Box::new(card))
        .or_fail("insert")?;
    hang.reached
        .recv_timeout(SEE)
        .map_err(|_| Failed::from(format!("the read never reached APDU {at}")))?;
    lab.kill_pcscd().or_fail("kill pcscd")?;
    hang.release();
    drop(inserted);
    assert_no_session_survives(&agent, before, SEE)
        .await
        .map_err(|e| Failed::from(format!("read APDU {at}: {}", e.message().unwrap_or(""))))?;
    lab.restart_pcscd().or_fail("restart pcscd")?;

    // 4. In the middle of a login: the card hangs at a random APDU after the read (VERIFY,
    //    the signature over the TLS handshake, ...), then pcscd dies.
    let measuring = SharedCard::new(&applet);
    let counted = measuring.served();
    let inserted = lab
        .insert(ReaderSlot::First, Box::new(measuring))
        .or_fail("insert")?;
    pharmacist_read(&agent, SEE).await?;
    let start = counted.load(std::sync::atomic::Ordering::SeqCst);
    agent.login(DEMO_PASSCODE, false).await.or_fail("Login")?;
    logins += 1;
    let login_apdus = counted.load(std::sync::atomic::Ordering::SeqCst) - start;
    agent.logout().await.or_fail("Logout")?;
    let before = agent.session_generation().await.or_fail("gen")?;
    drop(tokio::task::spawn_blocking(move || inserted.remove()).await);
    assert_no_session_survives(&agent, before, SEE).await?;
    let at = start + 1 + rng.below(login_apdus.max(1));
    let (card, hang) = Hang::card(&applet, at, false);
    let inserted = lab
        .insert(ReaderSlot::First, Box::new(card))
        .or_fail("insert")?;
    pharmacist_read(&agent, SEE).await?;
    let before = agent.session_generation().await.or_fail("gen")?;
    let login = {
        let agent = agent.clone();
        tokio::spawn(async move { agent.login(DEMO_PASSCODE, false).await })
    };
    let reached = tokio::task::spawn_blocking(move || hang.reached.recv_timeout(SEE).map(|_| hang))
        .await
        .or_fail("wait task")?;
    let Ok(reached) = reached else {
        let outcome = login.await.or_fail("login task")?;
        return Err(Failed::from(format!(
            "the login never reached APDU {at} (read {read_apdus}, login {login_apdus}): {}",
            error_name(&outcome)
        )));
    };
    lab.kill_pcscd().or_fail("kill pcscd")?;
    reached.release();
    drop(inserted);
    let outcome = login.await.or_fail("login task")?;
    if outcome.is_ok() {
        logins += 1;
    }
    assert_no_session_survives(&agent, before, SEE)
        .await
        .map_err(|e| Failed::from(format!("login APDU {at}: {}", e.message().unwrap_or(""))))?;
    lab.restart_pcscd().or_fail("restart pcscd")?;

    // Afterwards: every try left on the card and in the agent, and a login works.
    let left = card_tries_left(&applet);
    check(left == full, || {
        format!("the card's retry counter went {full} -> {left}")
    })?;
    let _inserted = lab
        .insert(ReaderSlot::First, Box::new(SharedCard::new(&applet)))
        .or_fail("insert")?;
    pharmacist_read(&agent, SEE).await?;
    // A VERIFY cut off by the crash counts in the agent's ledger only until the card's
    // counter is read again (at this insertion): the agent reports every try.
    let reported = agent
        .passcode_tries_left()
        .await
        .or_fail("PasscodeTriesLeft")?;
    check(reported == i32::from(full), || {
        format!("after the crash the agent reports {reported} tries left, the card has {full}")
    })?;
    login_and_allow(&agent).await?;
    logins += 1;
    let tries = agent
        .passcode_tries_left()
        .await
        .or_fail("PasscodeTriesLeft")?;
    check(tries == i32::from(full), || {
        format!("after a good login the agent reports {tries} tries left")
    })?;
    eprintln!(
        "pcscd killed: read {read_apdus} APDUs, login {login_apdus}; login hung at {at}: {}; \
         the agent then reported {reported} tries (card {full})",
        error_name(&outcome)
    );
    let audit = running.stop().await?;
    assert_entries_at_least(&audit, "session_started", logins)
}

/// A misbehaving endpoint on loopback.
enum BadEndpoint {
    /// Nothing listens.
    Down,
    /// Accepts, then never says a word.
    Silent,
    /// Accepts and answers bytes that are not TLS.
    Garbage,
    /// A real Spine-like endpoint, but with another service's certificate.
    WrongCertificate,
}

/// The endpoint down, silent past the request timeout, answering garbage, and presenting a
/// certificate from a CA the agent does not pin: each login fails with a named error, no
/// session exists, the card keeps every try, and the audit chain verifies.
pub async fn endpoint_faults() -> Result<(), Failed> {
    let (a, b, c, d) = tokio::join!(
        endpoint_case(BadEndpoint::Down),
        endpoint_case(BadEndpoint::Silent),
        endpoint_case(BadEndpoint::Garbage),
        endpoint_case(BadEndpoint::WrongCertificate),
    );
    let outcomes = [a?, b?, c?, d?];
    eprintln!("endpoint faults: {outcomes:?}");
    Ok(())
}

/// What a [`Proxy`] does with each new connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ProxyMode {
    /// Forwards to the real endpoint.
    Through,
    /// Forwards to the other service (another CA's certificate).
    Other,
    /// Holds the connection and never says a word.
    Silent,
    /// Answers 4 KiB of noise and closes.
    Garbage,
}

/// A TCP proxy in front of one of the endpoint's listeners, switchable per connection, so
/// the daemon starts against the real endpoint (it fetches the CRL at start) and the fault
/// begins afterwards. [`Proxy::go_down`] stops listening: connections are then refused.
struct Proxy {
    addr: std::net::SocketAddr,
    mode: Arc<Mutex<ProxyMode>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// A proxy to `real`, with `other` as the wrong-certificate service.
    async fn start(real: String, other: Option<String>) -> Result<Proxy, Failed> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .or_fail("bind")?;
        let addr = listener.local_addr().or_fail("addr")?;
        let mode = Arc::new(Mutex::new(ProxyMode::Through));
        let shared = Arc::clone(&mode);
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            let mut noise = Rng::from_env("garbage endpoint");
            while let Ok((mut stream, _)) = listener.accept().await {
                let now = *shared.lock().unwrap_or_else(|p| p.into_inner());
                let target = match now {
                    ProxyMode::Through => Some(real.clone()),
                    ProxyMode::Other => other.clone(),
                    ProxyMode::Silent => {
                        held.push(stream);
                        continue;
                    }
                    ProxyMode::Garbage => {
                        let bytes: Vec<u8> = (0..4096).map(|_| noise.next() as u8).collect();
                        let _ = stream.write_all(&bytes).await;
                        let _ = stream.shutdown().await;
                        continue;
                    }
                };
                let Some(target) = target else { continue };
                tokio::spawn(async move {
                    if let Ok(mut upstream) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut stream, &mut upstream).await;
                    }
                });
            }
        });
        Ok(Proxy { addr, mode, task })
    }

    fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    fn set(&self, mode: ProxyMode) {
        *self.mode.lock().unwrap_or_else(|p| p.into_inner()) = mode;
    }

    /// Stops listening (and forwarding): the endpoint is down.
    fn go_down(&self) {
        self.task.abort();
    }
}

/// `https://host:port` to `host:port`.
fn authority(url: &str) -> String {
    url.trim_start_matches("https://").to_owned()
}

/// One bad endpoint; returns the login's error name and how long it took.
async fn endpoint_case(kind: BadEndpoint) -> Result<(String, Duration), Failed> {
    let other_dir = tempfile::tempdir().or_fail("tempdir")?;
    let other = match kind {
        BadEndpoint::WrongCertificate => Some(
            DemoWorld::start(other_dir.path())
                .await
                .or_fail("the other service")?,
        ),
        _ => None,
    };
    let other_api = other.as_ref().map(|w| authority(&w.sim().url()));
    let other_mtls = other.as_ref().map(|w| authority(&w.sim().mtls_url()));
    let dir = tempfile::tempdir().or_fail("tempdir")?;
    let world = DemoWorld::start(dir.path()).await.or_fail("demo world")?;
    let api = Proxy::start(authority(&world.sim().url()), other_api).await?;
    let mtls = Proxy::start(authority(&world.sim().mtls_url()), other_mtls).await?;
    let (url, mtls_url) = (api.url(), mtls.url());
    let (backend, reader) = virtual_reader();
    let running = FaultDaemon::start_in(world, dir, backend.clone(), |config, _| {
        config.endpoint.url = url;
        config.endpoint.mtls_url = Some(mtls_url);
    })
    .await?;
    let agent = running.agent.clone();
    let (applet, full) = running.pharmacist_card()?;
    insert_shared(&backend, &reader, &applet)?;
    pharmacist_read(&agent, SEE).await?;

    // The endpoint goes bad only now, after the daemon fetched its CRL through the proxies.
    for proxy in [&api, &mtls] {
        match kind {
            BadEndpoint::Down => proxy.go_down(),
            BadEndpoint::Silent => proxy.set(ProxyMode::Silent),
            BadEndpoint::Garbage => proxy.set(ProxyMode::Garbage),
            BadEndpoint::WrongCertificate => proxy.set(ProxyMode::Other),
        }
    }
    let started = Instant::now();
    let outcome = agent.login(DEMO_PASSCODE, false).await;
    let took = started.elapsed();
    let name = error_name(&outcome);
    check(name.starts_with("org.cardgate.Agent1.Error."), || {
        format!("login against a bad endpoint: {name}")
    })?;
    // The client's request timeout is 30 s: a silent endpoint must not hang a login longer.
    check(took < Duration::from_secs(45), || {
        format!("login took {took:?}")
    })?;
    let state = agent.state().await.or_fail("State")?;
    check(state != "logged-in", || {
        format!("State after a failed login: {state}")
    })?;
    let answer = agent
        .authorise("download", DEMO_ODS)
        .await
        .or_fail("Authorise")?;
    check(!answer.allowed, || {
        format!("Authorise without a session: {answer:?}")
    })?;
    let left = card_tries_left(&applet);
    check(left == full, || {
        format!("the card's retry counter went {full} -> {left}")
    })?;
    let tries = agent
        .passcode_tries_left()
        .await
        .or_fail("PasscodeTriesLeft")?;
    check(tries == i32::from(full), || {
        format!("the agent reports {tries} tries left")
    })?;
    backend.remove(&reader);
    assert_no_session_survives(&agent, answer.generation, SEE).await?;
    let audit = running.stop().await?;
    assert_entries_at_least(&audit, "authorisation_decision", 2)?;
    Ok((name, took))
}

/// Mounts a 256 KiB tmpfs on `dir` (the suite runs in its own mount namespace).
fn small_disk(dir: &Path) -> Result<(), Failed> {
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "cardgate-faults"])
        .arg(dir)
        .status()
        .or_fail("mount")?;
    check(status.success(), || format!("mount tmpfs: {status}"))
}

/// Fills the file system holding `path` with one file until writes fail.
fn fill(path: &Path) -> Result<(), Failed> {
    let mut file = std::fs::File::create(path).or_fail("filler")?;
    let block = vec![0u8; 4096];
    loop {
        match file.write_all(&block).and_then(|()| file.sync_all()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(28) => return Ok(()),
            Err(e) => return Err(fail("filling the disk", e)),
        }
    }
}

/// The audit trail's disk fills under a live session: every gated action is refused with
/// `AuditUnavailable` and a message that says so; once space is back, actions work again
/// and the chain verifies end to end.
pub async fn audit_disk_full() -> Result<(), Failed> {
    let disk = tempfile::tempdir().or_fail("tempdir")?;
    small_disk(disk.path())?;
    let audit_path = disk.path().join("audit.jsonl");
    let (backend, reader) = virtual_reader();
    let running = FaultDaemon::start(backend.clone(), |config, _| {
        config.paths.audit = audit_path.clone();
    })
    .await?;
    let agent = running.agent.clone();
    let (applet, full) = running.pharmacist_card()?;
    insert_shared(&backend, &reader, &applet)?;
    pharmacist_read(&agent, SEE).await?;
    login_and_allow(&agent).await?;
    let mut decisions = 1;

    let filler = disk.path().join("filler");
    fill(&filler)?;
    // The trail's last page may still have room for a few entries; each of those decisions
    // is acknowledged only because it was written. Then the disk is truly full.
    let mut written_while_filling = 0;
    loop {
        let outcome = agent.authorise("download", DEMO_ODS).await;
        match outcome {
            Ok(answer) if answer.allowed => {
                decisions += 1;
                written_while_filling += 1;
                check(written_while_filling < 200, || {
                    "200 decisions acknowledged on a full disk".into()
                })?;
            }
            other => {
                let name = error_name(&other);
                check(name.ends_with("Error.AuditUnavailable"), || {
                    format!("download with the audit disk full: {name}")
                })?;
                break;
            }
        }
    }
    for action in cardgate_ipc::Action::ALL.map(cardgate_ipc::Action::name) {
        let outcome = agent.authorise(action, DEMO_ODS).await;
        if let Ok(answer) = &outcome {
            check(!answer.allowed, || {
                format!("{action} allowed with the audit disk full: {answer:?}")
            })?;
        }
        let name = error_name(&outcome);
        check(name.ends_with("Error.AuditUnavailable"), || {
            format!("{action} with the audit disk full: {name}")
        })?;
        if let Err(zbus::Error::MethodError(_, Some(message), _)) = &outcome {
            check(message.contains("audit"), || {
                format!("unclear reason: {message}")
            })?;
        }
    }
    let role = agent.select_role_profile("RP-LOCUM-FFFFF").await;
    let name = error_name(&role);
    check(name.ends_with("Error.AuditUnavailable"), || {
        format!("SelectRoleProfile with the audit disk full: {name}")
    })?;
    let left = card_tries_left(&applet);
    check(left == full, || {
        format!("the card's retry counter went {full} -> {left}")
    })?;

    // Space again: the same session (still the pharmacist role) is allowed again.
    std::fs::remove_file(&filler).or_fail("removing the filler")?;
    let answer = agent
        .authorise("download", DEMO_ODS)
        .await
        .or_fail("Authorise with space again")?;
    decisions += 1;
    check(answer.allowed, || {
        format!("after space came back: {answer:?}")
    })?;
    backend.remove(&reader);
    assert_no_session_survives(&agent, answer.generation, SEE).await?;
    decisions += 1;
    eprintln!("audit disk full: {written_while_filling} decisions still fitted the last page");
    let audit = running.stop().await?;
    assert_entries_at_least(&audit, "authorisation_decision", decisions)?;
    let _ = std::process::Command::new("umount")
        .arg(disk.path())
        .status();
    Ok(())
}
