//! Test equipment: provisioned virtual cards (ECC and RSA) wrapped in a `CardChannel` that
//! can be pulled mid-command or made slow, card signers over them with the passcode
//! verified, an rcgen service CA with a server certificate, and a free local port.
#![allow(dead_code)] // Each test binary uses its own part of the helpers.
#![allow(clippy::unwrap_used)] // Test helpers may unwrap: a panic is the failure report.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use cardgate_piv::{CardChannel, ChannelError, FinalTry, Passcode, PasscodeGuard, PivClient, Slot};
use cardgate_spine::ThreadCardSigner;
use cardgate_vcard::Card as _;
use cardgate_vcard::applet::PivApplet;
use cardgate_vcard::card_file::KeyAlgorithm as CardKeyAlgorithm;
use cardgate_vcard::provision::{CardSpec, ProvisionedCard, TestCa, provision};

/// The test cards' passcode.
pub const PIN: &str = "7391";
/// The test cards' AES-128 management key.
pub const MANAGEMENT_KEY: [u8; 16] = [
    0x10, 0x21, 0x32, 0x43, 0x54, 0x65, 0x76, 0x87, 0x98, 0xA9, 0xBA, 0xCB, 0xDC, 0xED, 0xFE, 0x0F,
];
/// The holder.
pub const HOLDER_NAME: &str = "Asha Patel";
/// The holder's UUID.
pub const HOLDER_UUID: &str = "555000111222";

/// Key kinds a suite runs over.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// ECC P-256.
    Ecc,
    /// RSA-2048.
    Rsa,
}

/// The standard spec for `kind`.
pub fn spec(kind: Kind) -> CardSpec {
    let spec = CardSpec::new(HOLDER_NAME, HOLDER_UUID)
        .pin(PIN)
        .puk("80264513")
        .management_key(&MANAGEMENT_KEY);
    match kind {
        Kind::Ecc => spec,
        Kind::Rsa => spec.key_algorithm(CardKeyAlgorithm::Rsa2048),
    }
}

/// Controls shared with a [`TestChannel`] after it moved to the card thread.
#[derive(Default)]
pub struct Controls {
    /// Fail every command from now on as a pulled card (the command reaches the card first).
    pub pulled: AtomicBool,
    /// Pull the card when a GENERAL AUTHENTICATE (a signature) arrives.
    pub pull_on_sign: AtomicBool,
    /// Milliseconds to stall each command (a slow or hung reader).
    pub delay_ms: AtomicU64,
}

/// The virtual card as a channel, with [`Controls`].
pub struct TestChannel {
    /// The card.
    pub applet: PivApplet,
    /// Shared controls.
    pub controls: Arc<Controls>,
}

impl CardChannel for TestChannel {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, ChannelError> {
        let delay = self.controls.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(Duration::from_millis(delay));
        }
        if self.controls.pull_on_sign.load(Ordering::SeqCst) && command.get(1) == Some(&0x87) {
            self.controls.pulled.store(true, Ordering::SeqCst);
        }
        if self.controls.pulled.load(Ordering::SeqCst) {
            self.applet.power_off();
            return Err(ChannelError::CardRemoved);
        }
        Ok(self.applet.transmit(command))
    }
}

/// A provisioned card with its CA.
pub struct TestCard {
    /// The card CA.
    pub ca: TestCa,
    /// The card.
    pub card: ProvisionedCard,
}

/// Provisions a `kind` card for `spec` under a fresh card CA.
pub fn card_from(spec: &CardSpec) -> TestCard {
    let ca = TestCa::generate("Cardgate Spine Test Card CA").unwrap();
    let card = provision(&ca, spec).unwrap();
    TestCard { ca, card }
}

/// Provisions a standard card of `kind`.
pub fn card(kind: Kind) -> TestCard {
    card_from(&spec(kind))
}

/// A PIV client over `card` with the passcode verified, and the channel's controls.
pub fn verified_client(card: &ProvisionedCard) -> (PivClient<TestChannel>, Arc<Controls>) {
    let mut applet = PivApplet::new(card.card.clone());
    applet.power_on();
    let controls = Arc::new(Controls::default());
    let channel = TestChannel {
        applet,
        controls: Arc::clone(&controls),
    };
    let mut client = PivClient::new(channel, Arc::new(PasscodeGuard::in_memory().unwrap()));
    client
        .verify_passcode(
            &Passcode::new(PIN.to_owned()).unwrap(),
            FinalTry::NotConfirmed,
        )
        .unwrap();
    (client, controls)
}

/// A signer over `card`'s PIV Authentication key, passcode verified.
pub fn signer(card: &ProvisionedCard) -> (Arc<ThreadCardSigner>, Arc<Controls>) {
    let (client, controls) = verified_client(card);
    let signer =
        ThreadCardSigner::spawn(client, Slot::Authentication, Duration::from_secs(10)).unwrap();
    (Arc::new(signer), controls)
}

/// A service CA and a server certificate for 127.0.0.1 and `localhost`, PEM.
pub struct ServiceCa {
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// The server certificate, PEM.
    pub server_cert_pem: String,
    /// The server key, PKCS#8 PEM.
    pub server_key_pem: String,
}

/// Makes a service CA and a server certificate with rcgen.
pub fn service_ca() -> ServiceCa {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Cardgate Spine Test Service CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, &ca_key);
    let server_key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "spine.test");
    let server_cert = params.signed_by(&server_key, &issuer).unwrap();
    ServiceCa {
        ca_pem: ca_cert.pem(),
        server_cert_pem: server_cert.pem(),
        server_key_pem: server_key.serialize_pem(),
    }
}

/// A port on 127.0.0.1 nobody listens on right now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Writes `text` to `dir/name` and returns the path as a string.
pub fn write(dir: &Path, name: &str, text: impl AsRef<[u8]>) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// Fails with a message saying how to install openssl, if it is missing.
pub fn require_openssl() {
    let ok = std::process::Command::new("openssl")
        .arg("version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "openssl is needed as the independent verifier: apt-get install openssl"
    );
}
