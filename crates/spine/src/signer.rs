//! The card as a signer: [`CardSigner`] is what the logins need from a card (its certificate,
//! its key's algorithm, a signature over a digest), and [`ThreadCardSigner`] serves it from a
//! [`PivClient`] on a thread of its own.
//!
//! Why a thread: rustls asks for the TLS 1.3 CertificateVerify signature through a
//! synchronous `Signer::sign`, and a card takes 50-500 ms to answer. The card's I/O stays on
//! one thread that owns the client; callers send a request over a channel and wait for the
//! answer with a time limit, so a card that stops answering costs a bounded wait, never a
//! hung login.

use std::sync::Mutex;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cardgate_piv::{CardChannel, ChannelError, KeyAlgorithm, PivClient, PivError, SignInput, Slot};
use ring::signature::{self, UnparsedPublicKey};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey as ParsedKey;

use crate::error::{SpineError, Step};

/// What a login needs from the card. The daemon implements it with its card actor; tests and
/// simple tools use [`ThreadCardSigner`].
///
/// Implementations must not cache a signature or a passcode: each call is one operation on
/// the card that is in the reader now.
pub trait CardSigner: Send + Sync {
    /// The certificate (DER) of the signing key: the PIV Authentication certificate for
    /// logins, put in the CMS message and the TLS Certificate message.
    fn certificate_der(&self) -> &[u8];

    /// The algorithm of the signing key; decides the signature scheme.
    fn key_algorithm(&self) -> KeyAlgorithm;

    /// Has the card sign `input`. May block for as long as the card takes, up to the
    /// implementation's own time limit.
    fn sign(&self, input: SignInput) -> Result<Vec<u8>, SpineError>;
}

impl<T: CardSigner + ?Sized> CardSigner for std::sync::Arc<T> {
    fn certificate_der(&self) -> &[u8] {
        (**self).certificate_der()
    }

    fn key_algorithm(&self) -> KeyAlgorithm {
        (**self).key_algorithm()
    }

    fn sign(&self, input: SignInput) -> Result<Vec<u8>, SpineError> {
        (**self).sign(input)
    }
}

/// The key algorithm of a certificate's subject public key, if the agent can sign with it:
/// P-256 or RSA-2048, the two kinds NHS-style cards carry.
pub fn key_algorithm_of(certificate_der: &[u8]) -> Result<KeyAlgorithm, SpineError> {
    let unsupported = |reason: &str| SpineError::UnsupportedCard {
        reason: reason.to_owned(),
    };
    let (_, certificate) = X509Certificate::from_der(certificate_der)
        .map_err(|e| unsupported(&format!("the certificate does not parse: {e}")))?;
    let spki = certificate.public_key();
    let algorithm = spki.algorithm.algorithm.to_id_string();
    match algorithm.as_str() {
        ID_EC_PUBLIC_KEY => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| oid.to_id_string());
            let point = spki.subject_public_key.data.as_ref();
            if curve.as_deref() == Some(ID_PRIME256V1) && point.len() == 65 && point[0] == 0x04 {
                Ok(KeyAlgorithm::EccP256)
            } else {
                Err(unsupported("the EC key is not an uncompressed P-256 point"))
            }
        }
        ID_RSA_ENCRYPTION => match spki.parsed() {
            Ok(ParsedKey::RSA(rsa)) => {
                let modulus: Vec<u8> = rsa
                    .modulus
                    .iter()
                    .copied()
                    .skip_while(|b| *b == 0)
                    .collect();
                if modulus.len() == 256 && modulus[0] & 0x80 != 0 {
                    Ok(KeyAlgorithm::Rsa2048)
                } else {
                    Err(unsupported("the RSA key is not 2048 bits"))
                }
            }
            _ => Err(unsupported("the RSA public key does not parse")),
        },
        _ => Err(unsupported("the key is neither ECC P-256 nor RSA-2048")),
    }
}

/// id-ecPublicKey (RFC 5480).
const ID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
/// The P-256 curve, secp256r1 / prime256v1 (RFC 5480).
const ID_PRIME256V1: &str = "1.2.840.10045.3.1.7";
/// rsaEncryption (RFC 8017).
const ID_RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";

/// How a signature made by the card is checked against its certificate before it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// ECDSA P-256 with SHA-256, DER signature.
    EcdsaSha256,
    /// RSA PKCS#1 v1.5 with SHA-256.
    RsaPkcs1Sha256,
    /// RSA-PSS with SHA-256, MGF1-SHA-256.
    RsaPssSha256,
}

/// Verifies a card's signature over `message` with the certificate's public key. A card whose
/// key does not match its certificate (a half-finished renewal, a wrongly written card) is
/// reported as such here, instead of as an unexplained refusal by the server.
pub(crate) fn check_signature(
    certificate_der: &[u8],
    check: Check,
    message: &[u8],
    signature_bytes: &[u8],
) -> Result<(), SpineError> {
    let unsupported = |reason: String| SpineError::UnsupportedCard { reason };
    let (_, certificate) = X509Certificate::from_der(certificate_der)
        .map_err(|e| unsupported(format!("the certificate does not parse: {e}")))?;
    check_signature_with_key(
        certificate.public_key().subject_public_key.data.as_ref(),
        check,
        message,
        signature_bytes,
    )
}

/// [`check_signature`] with the subject public key's bytes (an EC point or an RSAPublicKey
/// DER), for a key the card has just generated and no certificate names yet.
pub(crate) fn check_signature_with_key(
    key: &[u8],
    check: Check,
    message: &[u8],
    signature_bytes: &[u8],
) -> Result<(), SpineError> {
    let algorithm: &dyn signature::VerificationAlgorithm = match check {
        Check::EcdsaSha256 => &signature::ECDSA_P256_SHA256_ASN1,
        Check::RsaPkcs1Sha256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        Check::RsaPssSha256 => &signature::RSA_PSS_2048_8192_SHA256,
    };
    UnparsedPublicKey::new(algorithm, key)
        .verify(message, signature_bytes)
        .map_err(|_| SpineError::KeyDoesNotMatchCertificate)
}

/// One request to the card thread.
struct Request {
    input: SignInput,
    /// After this the caller has given up: the card must not sign a stale request.
    deadline: Instant,
    reply: SyncSender<Result<Vec<u8>, PivError>>,
}

/// A [`CardSigner`] over a [`PivClient`] that lives on its own thread.
///
/// The client must be ready to sign: the passcode verified by the caller beforehand (PIV
/// Authentication keys need it). When the card is removed, the request in flight fails with
/// [`SpineError::CardRemoved`], the thread ends and every later request fails with
/// [`SpineError::CardUnavailable`]: a removed card's client is never reused (the next
/// insertion gets a new one).
pub struct ThreadCardSigner {
    certificate: Vec<u8>,
    algorithm: KeyAlgorithm,
    timeout: Duration,
    requests: Mutex<Option<Sender<Request>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for ThreadCardSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadCardSigner")
            .field("algorithm", &self.algorithm)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl ThreadCardSigner {
    /// Moves `client` to a new thread, reads the certificate of `slot` there, and serves
    /// signatures with that slot's key. Each signature may take at most `timeout`.
    pub fn spawn<C>(
        client: PivClient<C>,
        slot: Slot,
        timeout: Duration,
    ) -> Result<ThreadCardSigner, SpineError>
    where
        C: CardChannel + Send + 'static,
    {
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let (requests_tx, requests_rx) = mpsc::channel::<Request>();
        let thread = std::thread::Builder::new()
            .name("cardgate-card-signer".into())
            .spawn(move || serve(client, slot, ready_tx, requests_rx))
            .map_err(|_| SpineError::CardUnavailable {
                reason: "the card's signing thread could not be started",
            })?;
        let certificate = match ready_rx.recv_timeout(timeout) {
            Ok(Ok(certificate)) => certificate,
            Ok(Err(e)) => return Err(SpineError::from_card(e)),
            Err(RecvTimeoutError::Timeout) => {
                return Err(SpineError::TimedOut {
                    step: Step::CardSignature,
                    after: timeout,
                });
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(SpineError::CardUnavailable {
                    reason: "the card's signing thread ended while reading the certificate",
                });
            }
        };
        let algorithm = key_algorithm_of(&certificate)?;
        Ok(ThreadCardSigner {
            certificate,
            algorithm,
            timeout,
            requests: Mutex::new(Some(requests_tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Stops the card thread and waits for it: the client (and its channel, e.g. the PC/SC
    /// transaction) is dropped there.
    pub fn shutdown(&self) {
        if let Ok(mut requests) = self.requests.lock() {
            requests.take();
        }
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(handle) = handle {
            // A panic on the card thread has already been reported by the panic hook.
            let _ = handle.join();
        }
    }
}

impl Drop for ThreadCardSigner {
    /// Closes the request channel; the thread ends after any operation in flight. It is not
    /// joined here: a hung reader must not hang whoever drops the signer.
    fn drop(&mut self) {
        if let Ok(mut requests) = self.requests.lock() {
            requests.take();
        }
    }
}

/// The card thread: read the certificate, then sign until the card goes or the signer is
/// dropped.
fn serve<C: CardChannel>(
    mut client: PivClient<C>,
    slot: Slot,
    ready: SyncSender<Result<Vec<u8>, PivError>>,
    requests: Receiver<Request>,
) {
    let certificate = client.read_certificate(slot);
    let failed = certificate.is_err();
    if ready.send(certificate).is_err() || failed {
        return;
    }
    while let Ok(request) = requests.recv() {
        if Instant::now() >= request.deadline {
            tracing::debug!("dropping a signature request its caller gave up on");
            continue;
        }
        let result = client.sign(slot, request.input);
        let gone = matches!(
            result,
            Err(PivError::Channel(
                ChannelError::CardRemoved | ChannelError::ReaderGone | ChannelError::ServiceGone
            ))
        );
        // The caller may have timed out meanwhile; nobody to tell then.
        let _ = request.reply.send(result);
        if gone {
            tracing::info!("the card left; its signing thread ends");
            return;
        }
    }
}

impl CardSigner for ThreadCardSigner {
    fn certificate_der(&self) -> &[u8] {
        &self.certificate
    }

    fn key_algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    fn sign(&self, input: SignInput) -> Result<Vec<u8>, SpineError> {
        let unavailable = SpineError::CardUnavailable {
            reason: "the card was removed or its signing thread ended; reinsert the card",
        };
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        let request = Request {
            input,
            deadline: Instant::now() + self.timeout,
            reply: reply_tx,
        };
        {
            let requests = self
                .requests
                .lock()
                .map_err(|_| SpineError::CardUnavailable {
                    reason: "the card's signing service failed",
                })?;
            let Some(sender) = requests.as_ref() else {
                return Err(unavailable);
            };
            sender
                .send(request)
                .map_err(|_| SpineError::CardUnavailable {
                    reason: "the card was removed or its signing thread ended; reinsert the card",
                })?;
        }
        match reply_rx.recv_timeout(self.timeout) {
            Ok(Ok(signature)) => Ok(signature),
            Ok(Err(e)) => Err(SpineError::from_card(e)),
            Err(RecvTimeoutError::Timeout) => Err(SpineError::TimedOut {
                step: Step::CardSignature,
                after: self.timeout,
            }),
            Err(RecvTimeoutError::Disconnected) => Err(unavailable),
        }
    }
}
