//! A running `cardgated` for the daemon suites: the demo world (card CA, in-process spine-sim,
//! card files), a private `dbus-daemon`, the daemon watching the lab's real pcscd, and a client
//! proxy that waits until the daemon owns its name. Stopping it returns the audit trail, so each
//! suite can check what it recorded.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cardgate_demo::{DemoWorld, PHARMACIST, PrivateBus};
use cardgate_ipc::AgentProxy;
use cardgate_lab::{Lab, ReaderSlot};
use cardgate_reader::PcscBackend;
use cardgate_vcard::applet::PivApplet;
use cardgate_vcard::card_file::CardFile;
use cardgate_vcard::vpcd::InsertedCard;
use cardgated::{Config, DaemonError};
use libtest_mimic::Failed;
use zbus::proxy::CacheProperties;

/// A failure naming the step that failed and why.
pub fn fail(what: &str, e: impl std::fmt::Display) -> Failed {
    Failed::from(format!("{what}: {e}"))
}

/// `map_err(|e| fail(what, e))` as a method, so that each step of a test names itself in
/// one call, as `anyhow::Context` would.
pub trait OrFail<T> {
    /// The value, or a failure naming `what` and why.
    fn or_fail(self, what: &str) -> Result<T, Failed>;
}

impl<T, E: std::fmt::Display> OrFail<T> for Result<T, E> {
    fn or_fail(self, what: &str) -> Result<T, Failed> {
        self.map_err(|e| fail(what, e))
    }
}

/// Polls `probe` every 50 ms until it holds, for at most 10 s.
pub async fn wait_for<F, Fut>(what: &str, mut probe: F) -> Result<(), Failed>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if probe().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(Failed::from(format!("timed out waiting for {what}")))
}

/// A new connection to the bus at `address` and a client of the daemon on it whose
/// properties are never cached (every read asks the daemon).
pub async fn connect_uncached(
    address: &str,
) -> Result<(zbus::Connection, AgentProxy<'static>), Failed> {
    let connection = zbus::connection::Builder::address(address)
        .map_err(|e| fail("address", e))?
        .build()
        .await
        .map_err(|e| fail("connecting", e))?;
    let agent = AgentProxy::builder(&connection)
        .cache_properties(CacheProperties::No)
        .build()
        .await
        .map_err(|e| fail("agent proxy", e))?;
    Ok((connection, agent))
}

/// Connects to the bus at `address` with an uncached client of the daemon, and waits until
/// the daemon (a process of its own, [`crate::daemon_process::DaemonProcess`]) has found its
/// readers: by then it owns its name and has read pcscd.
pub async fn connect_once_readers_seen(
    address: &str,
) -> Result<(zbus::Connection, AgentProxy<'static>), Failed> {
    let (connection, agent) = connect_uncached(address).await?;
    wait_for("the daemon process to read readers", || {
        let agent = agent.clone();
        async move { agent.readers().await.is_ok_and(|r| !r.is_empty()) }
    })
    .await?;
    Ok((connection, agent))
}

/// Puts `card` in the lab's reader `slot` and waits until the daemon behind `agent` has read
/// it (its `HolderUuid` is `holder_uuid`); the card stays in while the returned handle lives.
pub async fn insert_and_read(
    lab: &Lab,
    slot: ReaderSlot,
    card: CardFile,
    agent: &AgentProxy<'static>,
    holder_uuid: &str,
) -> Result<InsertedCard, Failed> {
    reinsert_and_read(
        lab,
        slot,
        Box::new(PivApplet::new(card)),
        agent,
        holder_uuid,
    )
    .await
}

/// As [`insert_and_read`] with a card already made (one taken out earlier, its state kept).
pub async fn reinsert_and_read(
    lab: &Lab,
    slot: ReaderSlot,
    card: Box<dyn cardgate_vcard::Card>,
    agent: &AgentProxy<'static>,
    holder_uuid: &str,
) -> Result<InsertedCard, Failed> {
    let inserted = lab
        .insert(slot, card)
        .map_err(|e| fail("inserting the card", e))?;
    wait_for("the card to be read", || {
        let agent = agent.clone();
        async move { agent.holder_uuid().await.unwrap_or_default() == holder_uuid }
    })
    .await?;
    Ok(inserted)
}

/// `cardgated` running on a private bus against the lab's pcscd, with a client proxy.
pub struct RunningDaemon {
    /// The demo world: card files, the card CA and the in-process spine-sim.
    pub world: DemoWorld,
    /// The private bus's address, for independent clients such as `busctl`.
    pub address: String,
    /// A client of the daemon, properties never cached (every read asks the daemon).
    pub agent: AgentProxy<'static>,
    audit_path: PathBuf,
    stop: tokio::sync::oneshot::Sender<()>,
    daemon: tokio::task::JoinHandle<Result<(), DaemonError>>,
    // Dropped after the proxy: the bus outlives every client of it.
    _bus: PrivateBus,
    _dir: tempfile::TempDir,
}

impl RunningDaemon {
    /// Puts the pharmacist's card, as the world made it, in the lab's first reader and waits
    /// for the agent to read it.
    pub async fn insert_pharmacist(&self, lab: &Lab) -> Result<InsertedCard, Failed> {
        let card = self.world.card(PHARMACIST).or_fail("card")?;
        self.insert_pharmacist_card(lab, card).await
    }

    /// As [`RunningDaemon::insert_pharmacist`] with `card`, a variant of the pharmacist's.
    pub async fn insert_pharmacist_card(
        &self,
        lab: &Lab,
        card: CardFile,
    ) -> Result<InsertedCard, Failed> {
        insert_and_read(lab, ReaderSlot::First, card, &self.agent, PHARMACIST.1).await
    }

    /// Starts the world, the bus and the daemon (with `configure` applied to the demo
    /// configuration), and returns once the daemon owns its bus name.
    pub async fn start(configure: impl FnOnce(&mut Config)) -> Result<RunningDaemon, Failed> {
        RunningDaemon::start_with("", configure).await
    }

    /// As [`RunningDaemon::start`], with `extra_sim_toml` appended to spine-sim's
    /// configuration (`DemoWorld::start_with`).
    pub async fn start_with(
        extra_sim_toml: &str,
        configure: impl FnOnce(&mut Config),
    ) -> Result<RunningDaemon, Failed> {
        let dir = tempfile::tempdir().map_err(|e| fail("tempdir", e))?;
        let world = DemoWorld::start_with(dir.path(), extra_sim_toml)
            .await
            .map_err(|e| fail("demo world", e))?;
        let bus = PrivateBus::start().map_err(|e| fail("private bus", e))?;
        let address = bus.address().to_owned();
        let mut config = world.config(&address).map_err(|e| fail("config", e))?;
        configure(&mut config);
        let audit_path = config.paths.audit.clone();

        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let daemon = tokio::spawn(cardgated::run(
            config,
            Arc::new(PcscBackend::new()),
            None,
            async move {
                let _ = stopped.await;
            },
        ));

        let (connection, agent) = connect_uncached(&address).await?;
        let dbus = zbus::fdo::DBusProxy::new(&connection)
            .await
            .map_err(|e| fail("bus proxy", e))?;
        wait_for("cardgated to own its name", || {
            let dbus = dbus.clone();
            async move {
                match cardgate_ipc::BUS_NAME.try_into() {
                    Ok(name) => dbus.name_has_owner(name).await.unwrap_or(false),
                    Err(_) => false,
                }
            }
        })
        .await
        .map_err(|e| {
            let early = if daemon.is_finished() {
                " (cardgated has exited)"
            } else {
                ""
            };
            Failed::from(format!("{}{early}", e.message().unwrap_or("")))
        })?;
        Ok(RunningDaemon {
            world,
            address,
            agent,
            audit_path,
            stop,
            daemon,
            _bus: bus,
            _dir: dir,
        })
    }

    /// Stops the daemon (it must stop within 15 s and without an error) and returns the audit
    /// trail it wrote.
    pub async fn stop(self) -> Result<String, Failed> {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(15), self.daemon)
            .await
            .map_err(|_| Failed::from("cardgated did not stop"))?
            .map_err(|e| fail("cardgated task", e))?
            .map_err(|e| fail("cardgated", e))?;
        std::fs::read_to_string(&self.audit_path).map_err(|e| fail("audit", e))
    }
}
