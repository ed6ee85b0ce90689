//! spine-sim: a Spine-like national endpoint for tests and the demo, speaking
//! docs/spine-protocol.md over real HTTPS: the mode A broker flow (CMS over a challenge), mode
//! B TLS client authentication with the card, sessions with role profiles and an idle
//! timeout, introspection, the card CA's CRL, certificate renewal, both unlock paths and
//! Temporary Access Cards.
//!
//! A library with a thin `main` (the mini-redis shape), so tests and the daemon's demo run
//! it in-process on loopback ports:
//!
//! ```no_run
//! # async fn demo(config: cardgate_spine_sim::SimConfig) -> Result<(), cardgate_spine_sim::SimError> {
//! let sim = cardgate_spine_sim::SpineSim::start(config).await?;
//! println!("mode A/API on {}, mode B on {}", sim.addr(), sim.mtls_addr());
//! // ... agents pin sim.service_ca_pem() ...
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod api;
mod authority;
mod cms_verify;
pub mod config;
mod error;
pub mod identity;
mod oidc;
mod serve;
mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::SimConfig;
pub use error::SimError;
pub use identity::ServiceIdentity;
pub use oidc::{ACR_SATISFIED, ACR_SMARTCARD, AMR_SMARTCARD, write_signing_key};

/// The OpenID Connect provider's signing key file `spine-sim init` writes beside the service
/// identity (`[oidc] signing_key` names it).
pub const OIDC_SIGNING_KEY_FILE: &str = "oidc-signing.key.pem";

use crate::api::AppState;
use crate::authority::CardAuthority;
use crate::state::{Clock, Directory, Inner};

/// The crypto provider: ring, explicitly (LAB.md: never rely on a process default).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Writes a new service identity (service CA and server certificate for the loopback
/// names) and the OpenID Connect provider's signing key ([`OIDC_SIGNING_KEY_FILE`]) into
/// `dir`: what `spine-sim init --dir DIR` does.
pub fn init_service_dir(dir: &std::path::Path) -> Result<ServiceIdentity, SimError> {
    let identity = ServiceIdentity::generate()?;
    identity.save(dir)?;
    write_signing_key(&dir.join(OIDC_SIGNING_KEY_FILE))?;
    Ok(identity)
}

/// Everything loaded from a configuration, ready to serve on any listeners.
struct Prepared {
    state: Arc<AppState>,
    api_tls: Arc<rustls::ServerConfig>,
    mtls_tls: Arc<rustls::ServerConfig>,
    service_ca_pem: String,
    card_ca_pem: String,
}

fn prepare(config: &SimConfig) -> Result<Prepared, SimError> {
    config.check()?;
    if let Some(oidc) = &config.oidc {
        oidc::check_signing_key(oidc)?;
    }
    let provider = provider();
    let identity = ServiceIdentity::load(&config.server.service_dir)?;
    let authority = Arc::new(CardAuthority::load(
        &config.server.card_ca_dir,
        provider.clone(),
    )?);
    let api_tls = serve::server_config(provider.clone(), &identity, None)?;
    let mtls_tls = serve::server_config(provider, &identity, Some(authority.client_verifier()))?;
    let card_ca_pem = authority.ca_pem();
    let state = Arc::new(AppState {
        directory: Directory::new(config),
        authority,
        clock: Arc::new(Clock::default()),
        inner: Mutex::new(Inner::default()),
        max_idle: Duration::from_secs(config.server.max_idle_time),
        outbox: config.server.outbox.clone(),
        anchors: config.server.anchors.clone(),
        rng: ring::rand::SystemRandom::new(),
    });
    Ok(Prepared {
        state,
        api_tls,
        mtls_tls,
        service_ca_pem: identity.ca_pem.clone(),
        card_ca_pem,
    })
}

/// Serves `config` on the given listeners (API and mode A on `listener`, mode B on
/// `mtls_listener`) until `shutdown` completes: the entry point for a caller that binds its
/// own sockets. Open connections get a few seconds to finish.
pub async fn run(
    config: SimConfig,
    listener: TcpListener,
    mtls_listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), SimError> {
    let prepared = prepare(&config)?;
    let (tx, rx) = watch::channel(false);
    let provider = match &config.oidc {
        Some(oidc) => Some(start_provider(&prepared, oidc, rx.clone()).await?),
        None => None,
    };
    let router = api::router(prepared.state.clone());
    let api = tokio::spawn(serve::accept_loop(
        "listen",
        listener,
        prepared.api_tls,
        router.clone(),
        rx.clone(),
    ));
    let mtls = tokio::spawn(serve::accept_loop(
        "listen_mtls",
        mtls_listener,
        prepared.mtls_tls,
        router,
        rx,
    ));
    shutdown.await;
    let _ = tx.send(true);
    let _ = tokio::join!(api, mtls);
    if let Some((_, _, task)) = provider {
        let _ = task.await;
    }
    Ok(())
}

/// Binds the OpenID Connect provider's listener and serves it (server authentication only:
/// the API's TLS configuration) until `shutdown` changes. Returns its address and issuer.
async fn start_provider(
    prepared: &Prepared,
    config: &config::OidcConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<(SocketAddr, String, JoinHandle<()>), SimError> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| SimError::Listen {
            what: "oidc.listen",
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| SimError::Listen {
        what: "oidc.listen",
        source,
    })?;
    let issuer = config
        .issuer
        .clone()
        .unwrap_or_else(|| format!("https://localhost:{}", addr.port()));
    let provider = Arc::new(oidc::Provider::new(prepared.state.clone(), config, issuer)?);
    let issuer = provider.issuer().to_owned();
    let task = tokio::spawn(serve::accept_loop(
        "oidc.listen",
        listener,
        prepared.api_tls.clone(),
        oidc::router(provider),
        shutdown,
    ));
    tracing::info!(%addr, %issuer, "OpenID Connect provider serving");
    Ok((addr, issuer, task))
}

/// Entry point for starting spine-sim in-process.
#[derive(Debug)]
#[non_exhaustive]
pub struct SpineSim;

impl SpineSim {
    /// Loads `config`, binds both listeners (port 0 picks free ports) and serves in the
    /// background until the returned handle is shut down or dropped.
    pub async fn start(config: SimConfig) -> Result<RunningSim, SimError> {
        let prepared = prepare(&config)?;
        let listener = TcpListener::bind(config.server.listen)
            .await
            .map_err(|source| SimError::Listen {
                what: "listen",
                source,
            })?;
        let mtls_listener =
            TcpListener::bind(config.server.listen_mtls)
                .await
                .map_err(|source| SimError::Listen {
                    what: "listen_mtls",
                    source,
                })?;
        let local = |l: &TcpListener, what| {
            l.local_addr()
                .map_err(|source| SimError::Listen { what, source })
        };
        let addr = local(&listener, "listen")?;
        let mtls_addr = local(&mtls_listener, "listen_mtls")?;
        let (tx, rx) = watch::channel(false);
        let provider = match &config.oidc {
            Some(oidc) => Some(start_provider(&prepared, oidc, rx.clone()).await?),
            None => None,
        };
        let router = api::router(prepared.state.clone());
        let mut tasks = vec![
            tokio::spawn(serve::accept_loop(
                "listen",
                listener,
                prepared.api_tls,
                router.clone(),
                rx.clone(),
            )),
            tokio::spawn(serve::accept_loop(
                "listen_mtls",
                mtls_listener,
                prepared.mtls_tls,
                router,
                rx,
            )),
        ];
        let oidc = provider.map(|(addr, issuer, task)| {
            tasks.push(task);
            (addr, issuer)
        });
        tracing::info!(%addr, %mtls_addr, "spine-sim serving");
        Ok(RunningSim {
            addr,
            mtls_addr,
            oidc,
            service_ca_pem: prepared.service_ca_pem,
            card_ca_pem: prepared.card_ca_pem,
            clock: prepared.state.clock.clone(),
            shutdown: tx,
            tasks,
        })
    }
}

/// A spine-sim serving in the background. Dropping it stops the listeners too.
#[derive(Debug)]
pub struct RunningSim {
    addr: SocketAddr,
    mtls_addr: SocketAddr,
    oidc: Option<(SocketAddr, String)>,
    service_ca_pem: String,
    card_ca_pem: String,
    clock: Arc<Clock>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningSim {
    /// The API and mode A listener (server authentication only).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The mode B listener (client certificate required).
    pub fn mtls_addr(&self) -> SocketAddr {
        self.mtls_addr
    }

    /// `https://<addr>`, for clients.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// `https://<mtls_addr>`, for clients.
    pub fn mtls_url(&self) -> String {
        format!("https://{}", self.mtls_addr)
    }

    /// The OpenID Connect provider's listener, if `[oidc]` is configured.
    pub fn oidc_addr(&self) -> Option<SocketAddr> {
        self.oidc.as_ref().map(|(addr, _)| *addr)
    }

    /// The OpenID Connect provider's issuer (`https://localhost:<port>` unless configured):
    /// discovery is at `<issuer>/.well-known/openid-configuration`, and it is the web origin
    /// the card's sign-in signature is checked against.
    pub fn oidc_issuer(&self) -> Option<&str> {
        self.oidc.as_ref().map(|(_, issuer)| issuer.as_str())
    }

    /// The service CA (PEM) that agents pin.
    pub fn service_ca_pem(&self) -> &str {
        &self.service_ca_pem
    }

    /// The card CA (PEM) the sim trusts cards from.
    pub fn card_ca_pem(&self) -> &str {
        &self.card_ca_pem
    }

    /// Moves the sim's clock forward: sessions idle out and challenges expire as if `by`
    /// had passed, without sleeping. Certificate validity keeps the real clock.
    pub fn advance_clock(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// Stops accepting, lets open connections finish (a few seconds at most) and waits.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}
