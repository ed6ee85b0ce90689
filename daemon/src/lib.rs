//! `cardgated`, the smartcard agent service, as a library with a thin `main`: [`run`] takes a
//! checked [`Config`], a reader backend and a shutdown future, and serves
//! `org.cardgate.Agent1` (`docs/ipc.md`) on the configured bus until the future completes.
//! Tests and the demo call it with a private bus address and the backend they want (the lab's
//! pcscd, or the in-process virtual backend).
//!
//! - [`config`]: the TOML configuration and its checks.
//! - [`agent`]: the core (readers, sessions with a generation counter, decisions, audit,
//!   timers).
//! - `actor`: one card actor thread per reader.
//! - `dbus`: the D-Bus interface over the core.
//! - [`endpoint`]: the Spine-like endpoint as the core sees it.
//! - [`demo`]: `cardgated --demo`, everything in-process without hardware.

#![forbid(unsafe_code)]

mod actor;
pub mod agent;
pub mod config;
mod dbus;
pub mod demo;
pub mod endpoint;
mod error;

use std::future::Future;
use std::sync::Arc;

use cardgate_audit::{AuditEvent, AuditLog};
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

/// Opens the audit trail, recording a repaired torn tail and the start.
fn open_audit(config: &Config) -> Result<AuditLog, DaemonError> {
    let mut log = AuditLog::open(&config.paths.audit)?;
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
        match endpoint.client().crl().await {
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
pub async fn run(
    config: Config,
    backend: Arc<dyn ReaderBackend>,
    bus: Option<String>,
    shutdown: impl Future<Output = ()>,
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
    let endpoint = SpineEndpoint::new(client, config.endpoint.login_mode);
    let trust = trust(&config, &endpoint).await?;
    let inspector = Arc::new(CardInspector::new(
        Arc::clone(&backend),
        Arc::clone(&guard),
        trust,
    ));
    let bus = bus.unwrap_or_else(|| config.ipc.bus.clone());
    let restricted_group = config.ipc.restricted_group.clone();
    let agent = Agent::new(
        config,
        Arc::clone(&backend),
        inspector,
        guard,
        Arc::new(endpoint),
        audit,
    );

    // Readers first: a client must never be told "no reader" because it asked in the moment
    // between the bus name and the monitor's first events.
    match backend.list_readers() {
        Ok(names) => agent.note_readers_at_start(&names),
        Err(e) => tracing::warn!(error = %e, "listing readers at start"),
    }

    let builder = if bus == "system" {
        zbus::connection::Builder::system()?
    } else {
        zbus::connection::Builder::address(bus.as_str())?
    };
    let connection = builder
        .serve_at(
            cardgate_ipc::OBJECT_PATH,
            dbus::AgentInterface::new(agent.clone(), restricted_group),
        )?
        .name(cardgate_ipc::BUS_NAME)?
        .build()
        .await?;
    let signals = tokio::spawn(dbus::forward_signals(connection.clone(), agent.clone()));

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

    shutdown.await;
    tracing::info!("cardgated stopping");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    timers.abort();
    agent.stop().await;
    let _ = tokio::task::spawn_blocking(move || monitor.shutdown()).await;
    event_loop.abort();
    signals.abort();
    drop(connection);
    Ok(())
}
