//! `cardgated`, the smartcard agent service, as a library with a thin `main`: [`run`] takes a
//! checked [`Config`], a reader backend and a shutdown future, and serves
//! `org.cardgate.Agent1` (`docs/ipc.md`) on the configured bus until the future completes.
//! Tests and the demo (`crates/demo`, `cardgated-demo`) call it with a private bus address and
//! the backend they want (the lab's pcscd, or the in-process virtual backend); [`serve`] is the
//! seam through which the demo adds its own D-Bus object. This crate links no test equipment
//! (no virtual card, no simulator): `tests/shipped_tree.rs` checks its dependency tree.
//!
//! - [`config`]: the TOML configuration and its checks.
//! - [`agent`]: the core (readers, sessions with a generation counter, decisions, audit,
//!   timers).
//! - `actor`: one card actor thread per reader.
//! - `audit_writer`: the thread that owns the audit trail and commits entries in groups.
//! - `dbus`: the D-Bus interface over the core; `callers`: who is calling, cached per
//!   connection.
//! - `staff_jobs`: the card work of the staff tasks (unlock, renewal) on the card actor.
//! - `workstation`: workstation login sessions (PAM, logind) and the card-removal action.
//! - [`endpoint`]: the Spine-like endpoint as the core sees it; `crl_refresh`: the CRL fetched
//!   again while the daemon runs.

#![forbid(unsafe_code)]

mod actor;
pub mod agent;
mod audit_writer;
mod callers;
pub mod config;
mod crl_refresh;
mod dbus;
pub mod endpoint;
mod error;
mod pending_renewals;
pub mod process;
mod prompts;
mod staff_jobs;
mod web;
mod workstation;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use cardgate_audit::{AuditEvent, AuditLog, SegmentPolicy};
use cardgate_card::{CardInspector, TrustConfig};
use cardgate_certs::{CheckPolicy, Crl, TrustAnchors};
use cardgate_piv::{JsonFileLedger, PasscodeGuard};
use cardgate_reader::{EventSink, ReaderBackend, ReaderEvent};
use cardgate_spine::{SpineClient, SpineConfig};
use tokio::sync::mpsc;

pub use agent::{Agent, AgentEvent, Snapshot};
pub use config::Config;
pub use error::DaemonError;

use crate::endpoint::SpineEndpoint;

/// Delivers monitor events into the runtime's channel without a bridging thread.
struct ChannelSink(mpsc::UnboundedSender<ReaderEvent>);

impl EventSink for ChannelSink {
    fn deliver(&mut self, event: ReaderEvent) -> bool {
        self.0.send(event).is_ok()
    }
}

fn read(path: &std::path::Path, what: &str) -> Result<Vec<u8>, DaemonError> {
    std::fs::read(path).map_err(|source| DaemonError::Io {
        what: format!("reading the {what} {}", path.display()),
        source,
    })
}

/// How long start-up waits for the endpoint's CRL before going on without one (cards are
/// refused as revocation-unknown until the refresh task gets it).
const STARTUP_CRL_WAIT: Duration = Duration::from_secs(5);

/// Opens the audit trail, recording a repaired torn tail and the start.
fn open_audit(config: &Config) -> Result<AuditLog, DaemonError> {
    let trail = &config.audit;
    let policy = SegmentPolicy {
        max_bytes: Some(trail.segment_max_bytes).filter(|b| *b > 0),
        daily: trail.segment_daily,
        keep_days: Some(trail.keep_days).filter(|d| *d > 0),
    };
    let mut log = AuditLog::open_with(&config.paths.audit, policy)?;
    let now = time::OffsetDateTime::now_utc();
    if let Some(torn) = log.recovered_torn_tail() {
        let event = torn.to_event();
        log.append(now, &event)?;
    }
    log.append(
        now,
        &AuditEvent::DaemonStarted {
            version: env!("CARGO_PKG_VERSION").into(),
        },
    )?;
    Ok(log)
}

/// The card CA and the newest CRL as configured (`"endpoint"`: fetched now; unavailable
/// means no CRL, so revocation is unknown and cards are refused, never waved through).
async fn trust(config: &Config, endpoint: &SpineEndpoint) -> Result<TrustConfig, DaemonError> {
    let anchors = TrustAnchors::from_pem(&read(&config.card.ca, "card CA")?)?;
    let crl = if config.card.crl == "endpoint" {
        // Bounded: a silent endpoint must not keep the agent off the bus for the client's
        // whole timeout; the refresh task keeps trying (crl_refresh.rs).
        let fetched = tokio::time::timeout(STARTUP_CRL_WAIT, endpoint.client().crl())
            .await
            .unwrap_or_else(|_| {
                Err(cardgate_spine::SpineError::TimedOut {
                    step: cardgate_spine::Step::Request,
                    after: STARTUP_CRL_WAIT,
                })
            });
        match fetched {
            Ok(der) => match Crl::from_der(&der, &anchors) {
                Ok(crl) => Some(crl),
                Err(e) => {
                    tracing::error!(error = %e, "the endpoint's CRL is not usable; cards will be refused");
                    None
                }
            },
            Err(e) => {
                tracing::error!(error = %e, "the CRL could not be fetched; cards will be refused");
                None
            }
        }
    } else {
        let bytes = read(std::path::Path::new(&config.card.crl), "CRL")?;
        Some(match Crl::from_der(&bytes, &anchors) {
            Ok(crl) => crl,
            Err(_) => Crl::from_pem(&bytes, &anchors)?,
        })
    };
    Ok(TrustConfig {
        anchors,
        crl,
        policy: CheckPolicy::default(),
    })
}

/// Runs the agent until `shutdown` completes: opens the audit trail and the ledger, sets up
/// the endpoint client and card trust, watches `backend`'s readers, and serves
/// `org.cardgate.Agent1` on `bus` (`"system"` or an address; `None`: the configured one).
/// Returns an error, naming what is wrong, if any of that cannot be set up.
///
/// This is what the production daemon runs: [`serve`] with no [`ExtraObjects`].
pub async fn run(
    config: Config,
    backend: Arc<dyn ReaderBackend>,
    bus: Option<String>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    serve(config, backend, bus, shutdown, ExtraObjects::new()).await
}

/// One object to register: given the agent and the connection builder, returns the builder
/// with the object added.
type Registration = Box<
    dyn FnOnce(
            &Agent,
            zbus::connection::Builder<'static>,
        ) -> zbus::Result<zbus::connection::Builder<'static>>
        + Send,
>;

/// D-Bus objects served beside `org.cardgate.Agent1` on the agent's own connection: the seam
/// through which the demo (`cardgate-demo`) serves its controls, `org.cardgate.Demo1`, without
/// this crate knowing of them. They are registered before the connection takes the bus name,
/// so a client that sees the name finds them too. The production daemon ([`run`]) serves none.
#[derive(Default)]
pub struct ExtraObjects {
    registrations: Vec<Registration>,
}

impl ExtraObjects {
    /// No extra objects (what [`run`] serves).
    pub fn new() -> ExtraObjects {
        ExtraObjects::default()
    }

    /// Adds the interface `make` builds at `path`. `make` is called once, with the agent
    /// about to be served (a handle to keep: [`Agent`] is cheap to clone), before the bus
    /// name is taken.
    pub fn at<I>(
        mut self,
        path: &'static str,
        make: impl FnOnce(&Agent) -> I + Send + 'static,
    ) -> ExtraObjects
    where
        I: zbus::object_server::Interface,
    {
        self.registrations.push(Box::new(move |agent, builder| {
            builder.serve_at(path, make(agent))
        }));
        self
    }
}

impl std::fmt::Debug for ExtraObjects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtraObjects")
            .field("objects", &self.registrations.len())
            .finish()
    }
}

/// [`run`], with `extra` objects served on the same connection as `org.cardgate.Agent1`
/// (the demo's controls). The production `cardgated` calls [`run`], so it never serves any.
pub async fn serve(
    config: Config,
    backend: Arc<dyn ReaderBackend>,
    bus: Option<String>,
    shutdown: impl Future<Output = ()>,
    extra: ExtraObjects,
) -> Result<(), DaemonError> {
    let audit = open_audit(&config)?;
    let guard = Arc::new(PasscodeGuard::new(JsonFileLedger::open(
        &config.paths.ledger,
    )?)?);
    let api = cardgate_spine::Endpoint::parse(&config.endpoint.url)?;
    let mtls = match &config.endpoint.mtls_url {
        Some(url) => cardgate_spine::Endpoint::parse(url)?,
        None => api.clone(),
    };
    let service_ca = read(&config.endpoint.service_ca, "endpoint service CA")?;
    let client = SpineClient::new(SpineConfig::new(api, mtls, service_ca))?;
    let endpoint = Arc::new(SpineEndpoint::new(client, config.endpoint.login_mode));
    let trust = trust(&config, &endpoint).await?;
    let crl_refresh = (config.card.crl == "endpoint").then(|| {
        (
            trust.anchors.clone(),
            trust.crl.clone(),
            Duration::from_secs(config.card.crl_refresh_seconds),
        )
    });
    let inspector = Arc::new(CardInspector::new(
        Arc::clone(&backend),
        Arc::clone(&guard),
        trust,
    ));
    let crl_refresh = crl_refresh.map(|(anchors, held, every)| {
        (
            Arc::clone(&endpoint),
            anchors,
            Arc::clone(&inspector),
            held,
            every,
        )
    });
    let bus = bus.unwrap_or_else(|| config.ipc.bus.clone());
    let restricted_group = config.ipc.restricted_group.clone();
    let removal_action = config.workstation.removal_action;
    let workstations = workstation::Registry::default();
    let agent = Agent::new(
        config,
        Arc::clone(&backend),
        inspector,
        guard,
        endpoint,
        audit,
    )?;
    let crl_refresh = crl_refresh.map(|(endpoint, anchors, inspector, held, every)| {
        tokio::spawn(crl_refresh::keep_fresh(
            endpoint,
            anchors,
            inspector,
            agent.clone(),
            held,
            every,
        ))
    });

    // Readers first: a client must never be told "no reader" because it asked in the moment
    // between the bus name and the monitor's first events.
    match backend.list_readers() {
        Ok(names) => agent.note_readers_at_start(&names),
        Err(e) => tracing::warn!(error = %e, "listing readers at start"),
    }

    let mut builder: zbus::connection::Builder<'static> = if bus == "system" {
        zbus::connection::Builder::system()?
    } else {
        zbus::connection::Builder::address(bus.as_str())?
    };
    for register in extra.registrations {
        builder = register(&agent, builder)?;
    }
    // One broker for the passcode dialogs: a log-in and a web sign-in never wait at once.
    let broker = Arc::new(prompts::Broker::default());
    let connection = builder
        .serve_at(
            cardgate_ipc::OBJECT_PATH,
            dbus::AgentInterface::new(agent.clone(), restricted_group.clone()),
        )?
        .serve_at(
            cardgate_ipc::OBJECT_PATH,
            prompts::LoginInterface::new(agent.clone(), Arc::clone(&broker)),
        )?
        .serve_at(
            cardgate_ipc::OBJECT_PATH,
            web::WebInterface::new(agent.clone(), broker),
        )?
        .serve_at(
            cardgate_ipc::OBJECT_PATH,
            workstation::WorkstationInterface::new(
                agent.clone(),
                workstations.clone(),
                removal_action,
                restricted_group,
            ),
        )?
        .name(cardgate_ipc::BUS_NAME)?
        .build()
        .await?;
    let signals = tokio::spawn(dbus::forward_signals(connection.clone(), agent.clone()));
    let (removed_tx, removed_rx) = mpsc::unbounded_channel();
    agent.set_removal_hook(removed_tx);
    let removal_actions = tokio::spawn(workstation::run_removal_actions(
        connection.clone(),
        workstations,
        removal_action,
        removed_rx,
    ));

    let (events_tx, mut events) = mpsc::unbounded_channel();
    let monitor = backend.monitor(Box::new(ChannelSink(events_tx)))?;
    let event_agent = agent.clone();
    let event_loop = tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            event_agent.handle_reader_event(&event);
        }
    });
    let timers = tokio::spawn(agent.clone().run_timers());

    tracing::info!(bus = %bus, "cardgated ready");
    // Not under systemd: NOTIFY_SOCKET is unset and this does nothing.
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::debug!(error = %e, "sd_notify");
    }

    let lost = tokio::select! {
        () = shutdown => None,
        reason = bus_lost(&connection) => Some(reason),
    };
    match &lost {
        None => tracing::info!("cardgated stopping"),
        Some(reason) => tracing::error!(reason, "the D-Bus connection is gone; cardgated stopping"),
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    timers.abort();
    if let Some(task) = crl_refresh {
        task.abort();
    }
    agent.stop().await;
    let _ = tokio::task::spawn_blocking(move || monitor.shutdown()).await;
    event_loop.abort();
    signals.abort();
    removal_actions.abort();
    drop(connection);
    match lost {
        None => Ok(()),
        Some(reason) => Err(DaemonError::BusLost { reason }),
    }
}

/// Resolves when the agent can no longer be reached on the bus: the connection closed (the
/// bus daemon stopped or restarted) or its well-known name was lost. Costs nothing while the
/// bus is up: one signal subscription, woken only by those events.
async fn bus_lost(connection: &zbus::Connection) -> String {
    use futures_lite::StreamExt as _;
    let dbus = match zbus::fdo::DBusProxy::new(connection).await {
        Ok(dbus) => dbus,
        Err(e) => return format!("no bus daemon proxy: {e}"),
    };
    let mut lost = match dbus.receive_name_lost().await {
        Ok(stream) => stream,
        Err(e) => return format!("cannot watch the bus name: {e}"),
    };
    while let Some(signal) = lost.next().await {
        if signal
            .args()
            .is_ok_and(|args| args.name.as_str() == cardgate_ipc::BUS_NAME)
        {
            return format!("the name {} was taken away", cardgate_ipc::BUS_NAME);
        }
    }
    "the connection to the bus closed".to_owned()
}
