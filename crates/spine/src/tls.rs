//! TLS in which the card signs (mode B): a rustls client configuration whose client
//! certificate is the card's and whose `Signer` forwards the TLS 1.3 CertificateVerify to the
//! card, with the service CA pinned and TLS 1.3 only.
//!
//! Schemes: P-256 cards sign `ecdsa_secp256r1_sha256` (the card returns the DER signature TLS
//! wants). RSA cards sign `rsa_pss_rsae_sha256`: TLS 1.3 offers RSA only as PSS, so the host
//! EMSA-PSS-encodes the digest and the card does the raw RSA operation
//! ([`SignInput::RsaPssSha256`]). A signer that only did PKCS#1 v1.5 would find no common
//! scheme, and rustls would then silently send no certificate at all; here that case is
//! logged and the server's refusal explained.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cardgate_piv::{KeyAlgorithm, Sha256Digest, SignInput};
use rustls::client::ResolvesClientCert;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::sign::{CertifiedKey, Signer, SigningKey};
use rustls::{AlertDescription, ClientConfig, RootCertStore, SignatureAlgorithm, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::config::Endpoint;
use crate::error::{SpineError, Step};
use crate::signer::{CardSigner, Check, check_signature};

/// Reads the pinned service CA certificate(s) from PEM.
pub fn service_roots(pem: &[u8]) -> Result<RootCertStore, SpineError> {
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(pem) {
        let certificate = certificate.map_err(|e| SpineError::Config {
            reason: format!("the service CA PEM does not parse: {e}"),
        })?;
        roots.add(certificate).map_err(|e| SpineError::Config {
            reason: format!("the service CA certificate is not usable: {e}"),
        })?;
    }
    if roots.is_empty() {
        return Err(SpineError::Config {
            reason: "the service CA PEM holds no certificate".into(),
        });
    }
    Ok(roots)
}

/// A TLS 1.3-only client configuration with the ring provider, trusting only `roots`, and
/// presenting the card's certificate when `card` is given.
pub fn client_config(
    roots: RootCertStore,
    card: Option<Arc<CardClientAuth>>,
) -> Result<Arc<ClientConfig>, SpineError> {
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|source| SpineError::Tls { source })?
            .with_root_certificates(roots);
    let config = match card {
        Some(card) => builder.with_client_cert_resolver(card),
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The card as rustls' client identity. Keep the `Arc` after building the configuration:
/// when a handshake fails because the card failed, [`CardClientAuth::take_card_error`] says
/// how (removed, timed out, wrong passcode state), which rustls' own error cannot carry.
pub struct CardClientAuth {
    certified: Arc<CertifiedKey>,
    failure: Arc<Mutex<Option<SpineError>>>,
}

impl std::fmt::Debug for CardClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardClientAuth").finish_non_exhaustive()
    }
}

impl CardClientAuth {
    /// The identity of the card behind `card`: its certificate, and a signing key that asks
    /// the card to sign.
    pub fn new(card: Arc<dyn CardSigner>) -> Result<Arc<CardClientAuth>, SpineError> {
        let algorithm = card.key_algorithm();
        let scheme = match algorithm {
            KeyAlgorithm::EccP256 => SignatureScheme::ECDSA_NISTP256_SHA256,
            KeyAlgorithm::Rsa2048 => SignatureScheme::RSA_PSS_SHA256,
            other => {
                return Err(SpineError::UnsupportedCard {
                    reason: format!("no TLS 1.3 signature scheme for {other:?} keys"),
                });
            }
        };
        let certificate = CertificateDer::from(card.certificate_der().to_vec());
        let failure = Arc::new(Mutex::new(None));
        let key = CardKey {
            card,
            scheme,
            failure: Arc::clone(&failure),
        };
        Ok(Arc::new(CardClientAuth {
            certified: Arc::new(CertifiedKey::new(vec![certificate], Arc::new(key))),
            failure,
        }))
    }

    /// The card's failure during the last handshake, if the card failed; cleared by reading.
    pub fn take_card_error(&self) -> Option<SpineError> {
        self.failure.lock().ok().and_then(|mut f| f.take())
    }
}

impl ResolvesClientCert for CardClientAuth {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        // There is one card: offer it whatever CAs the server hints; the server decides.
        Some(Arc::clone(&self.certified))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The card's key as rustls sees it.
struct CardKey {
    card: Arc<dyn CardSigner>,
    scheme: SignatureScheme,
    failure: Arc<Mutex<Option<SpineError>>>,
}

impl std::fmt::Debug for CardKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardKey")
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

impl SigningKey for CardKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        if !offered.contains(&self.scheme) {
            tracing::warn!(
                scheme = ?self.scheme,
                ?offered,
                "the server does not accept the card's signature scheme; no client certificate \
                 can be sent"
            );
            if let Ok(mut failure) = self.failure.lock() {
                *failure = Some(SpineError::UnsupportedCard {
                    reason: format!(
                        "the server does not accept {:?} signatures, the only kind this card \
                         makes in TLS 1.3",
                        self.scheme
                    ),
                });
            }
            return None;
        }
        Some(Box::new(CardTlsSigner {
            card: Arc::clone(&self.card),
            scheme: self.scheme,
            failure: Arc::clone(&self.failure),
        }))
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        match self.scheme {
            SignatureScheme::ECDSA_NISTP256_SHA256 => SignatureAlgorithm::ECDSA,
            _ => SignatureAlgorithm::RSA,
        }
    }
}

/// One CertificateVerify signature, made by the card.
struct CardTlsSigner {
    card: Arc<dyn CardSigner>,
    scheme: SignatureScheme,
    failure: Arc<Mutex<Option<SpineError>>>,
}

impl std::fmt::Debug for CardTlsSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardTlsSigner")
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

impl CardTlsSigner {
    fn sign_on_card(&self, message: &[u8]) -> Result<Vec<u8>, SpineError> {
        let digest = Sha256Digest::of(message);
        let (input, check) = if self.scheme == SignatureScheme::ECDSA_NISTP256_SHA256 {
            (SignInput::EcdsaP256Sha256(digest), Check::EcdsaSha256)
        } else {
            (SignInput::RsaPssSha256(digest), Check::RsaPssSha256)
        };
        let signature = block_in_place(|| self.card.sign(input))?;
        check_signature(self.card.certificate_der(), check, message, &signature)?;
        Ok(signature)
    }
}

impl Signer for CardTlsSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        self.sign_on_card(message).map_err(|e| {
            tracing::warn!(error = %e, "the card could not sign the TLS handshake");
            if let Ok(mut failure) = self.failure.lock() {
                *failure = Some(e);
            }
            rustls::Error::General("the smartcard could not sign the handshake".into())
        })
    }

    fn scheme(&self) -> SignatureScheme {
        self.scheme
    }
}

/// Runs the card wait without starving other tasks on a multi-threaded tokio runtime: rustls
/// calls the signer inside the handshake's poll, and a card takes up to half a second.
fn block_in_place<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Opens a TCP connection to `endpoint` (within `connect_timeout`) and completes the TLS
/// handshake (within `handshake_timeout`). The building block of every request, public for
/// diagnostics ("can this workstation reach Spine with this card?").
pub async fn connect(
    config: Arc<ClientConfig>,
    endpoint: &Endpoint,
    connect_timeout: Duration,
    handshake_timeout: Duration,
) -> Result<TlsStream<TcpStream>, SpineError> {
    let tcp = tcp_connect(endpoint, connect_timeout).await?;
    let name: ServerName<'static> = endpoint.server_name().clone();
    match tokio::time::timeout(
        handshake_timeout,
        TlsConnector::from(config).connect(name, tcp),
    )
    .await
    {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(map_transport_error(&e, endpoint)),
        Err(_) => Err(SpineError::TimedOut {
            step: Step::Request,
            after: handshake_timeout,
        }),
    }
}

/// TCP connect with a time limit; refused or unroutable is [`SpineError::Unreachable`].
pub(crate) async fn tcp_connect(
    endpoint: &Endpoint,
    connect_timeout: Duration,
) -> Result<TcpStream, SpineError> {
    let authority = endpoint.authority();
    match tokio::time::timeout(connect_timeout, TcpStream::connect(&authority)).await {
        Ok(Ok(stream)) => {
            // Small JSON requests: do not wait for Nagle.
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
        Ok(Err(source)) => Err(SpineError::Unreachable {
            endpoint: authority,
            source,
        }),
        Err(_) => Err(SpineError::TimedOut {
            step: Step::Connect,
            after: connect_timeout,
        }),
    }
}

/// Finds the rustls error inside a transport error chain. `io::Error::source` skips the
/// error it wraps, so each `io::Error` is opened with `get_ref` on the way down.
pub(crate) fn find_rustls_error<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref() {
                if let Some(found) = find_rustls_error(inner) {
                    return Some(found);
                }
            }
        }
        current = e.source();
    }
    None
}

/// Maps a rustls error to what the user acts on: the server's alerts for a revoked or
/// expired card certificate get their own variants.
pub(crate) fn map_tls_error(error: &rustls::Error) -> SpineError {
    match error {
        rustls::Error::AlertReceived(AlertDescription::CertificateRevoked) => {
            SpineError::CardRevoked
        }
        rustls::Error::AlertReceived(AlertDescription::CertificateExpired) => {
            SpineError::CertificateExpired
        }
        other => SpineError::Tls {
            source: other.clone(),
        },
    }
}

/// Maps an error of the connection (I/O, TLS, HTTP framing) for `endpoint`.
pub(crate) fn map_transport_error(
    error: &(dyn std::error::Error + 'static),
    endpoint: &Endpoint,
) -> SpineError {
    if let Some(tls) = find_rustls_error(error) {
        return map_tls_error(tls);
    }
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return SpineError::Unreachable {
                endpoint: endpoint.authority(),
                source: std::io::Error::new(io.kind(), io.to_string()),
            };
        }
        current = e.source();
    }
    SpineError::Protocol {
        reason: format!("the connection failed: {error}"),
    }
}
