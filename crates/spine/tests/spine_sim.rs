//! The client against spine-sim, in process on loopback: both logins with ECC and RSA cards,
//! roles, selection, introspection, logout, idle expiry, revoked and expired cards refused
//! with their reasons in both modes, renewal with the key generated on the card, both unlock
//! paths and Temporary Access Cards.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cardgate_piv::{KeyAlgorithm, ManagementKey, PivClient, SignInput, Slot};
use cardgate_spine::wire::{
    ErrorCode, IntrospectResponse, OutboxMessage, Secret, Session, TacActivateRequest, TacState,
    TacUsageRequest,
};
use cardgate_spine::{
    CardSigner, Endpoint, SpineClient, SpineConfig, SpineError, key_algorithm_of,
};
use cardgate_spine_sim::{RunningSim, SimConfig, SpineSim};
use cardgate_vcard::provision::{CardSpec, ProvisionedCard, RevokedCard, TestCa, Validity};
use support::{Kind, TestChannel};
use time::OffsetDateTime;

const ASHA: &str = "555000111222";
const BEN: &str = "555000333444";

/// A card signer over a shared client, as the daemon's card actor would be: the same client
/// can be used for renewal between logins.
struct SharedSigner {
    client: Arc<Mutex<PivClient<TestChannel>>>,
    certificate: Vec<u8>,
    algorithm: KeyAlgorithm,
}

impl SharedSigner {
    fn new(card: &ProvisionedCard) -> Arc<SharedSigner> {
        let (mut client, _controls) = support::verified_client(card);
        let certificate = client.read_certificate(Slot::Authentication).unwrap();
        Arc::new(SharedSigner {
            algorithm: key_algorithm_of(&certificate).unwrap(),
            certificate,
            client: Arc::new(Mutex::new(client)),
        })
    }
}

impl CardSigner for SharedSigner {
    fn certificate_der(&self) -> &[u8] {
        &self.certificate
    }
    fn key_algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }
    fn sign(&self, input: SignInput) -> Result<Vec<u8>, SpineError> {
        self.client
            .lock()
            .unwrap()
            .sign(Slot::Authentication, input)
            .map_err(SpineError::from_card)
    }
}

/// A spine-sim with a card CA, a directory and provisioned cards.
struct Lab {
    dir: tempfile::TempDir,
    ca: TestCa,
    cards: Vec<(String, String)>,
}

impl Lab {
    fn new() -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::generate("Cardgate Spine-Sim Card CA").unwrap();
        ca.save(&dir.path().join("card-ca")).unwrap();
        cardgate_spine_sim::init_service_dir(&dir.path().join("service")).unwrap();
        Lab {
            dir,
            ca,
            cards: Vec::new(),
        }
    }

    /// Provisions a card for `uid` with `serial`, registered in the directory.
    fn card(&mut self, uid: &str, serial: &str, kind: Kind, validity: Validity) -> ProvisionedCard {
        let name = if uid == ASHA {
            "Asha Patel"
        } else {
            "Ben Okafor"
        };
        let spec = CardSpec::new(name, uid)
            .card_serial(serial)
            .pin(support::PIN)
            .puk("80264513")
            .management_key(&support::MANAGEMENT_KEY)
            .validity(validity);
        let spec = match kind {
            Kind::Ecc => spec,
            Kind::Rsa => spec.key_algorithm(cardgate_vcard::card_file::KeyAlgorithm::Rsa2048),
        };
        let card = cardgate_vcard::provision::provision(&self.ca, &spec).unwrap();
        self.cards.push((serial.to_owned(), uid.to_owned()));
        card
    }

    /// Revokes every certificate of `card` in the CA directory's register.
    fn revoke(&self, card: &ProvisionedCard) {
        let revoked = RevokedCard::all_of(&card.card, OffsetDateTime::now_utc()).unwrap();
        cardgate_vcard::provision::record_revocations(&self.dir.path().join("card-ca"), &revoked)
            .unwrap();
    }

    fn outbox(&self) -> PathBuf {
        self.dir.path().join("outbox.jsonl")
    }

    async fn start(&self) -> (RunningSim, SpineClient) {
        let path = |p: &str| self.dir.path().join(p).display().to_string();
        let mut toml = format!(
            r#"
[server]
listen = "127.0.0.1:0"
listen_mtls = "127.0.0.1:0"
service_dir = "{}"
card_ca_dir = "{}"
outbox = "{}"
max_idle_time = 900

[[users]]
uid = "{ASHA}"
name = "Asha Patel"
email = "asha.patel@nhs.example"
[[users.role_profiles]]
id = "RP-1001"
job_role = "Pharmacist"
ods_code = "FA123"
organisation_name = "High Street Pharmacy"
activities = ["eps.download", "eps.dispense-notify", "eps.claim"]
[[users.role_profiles]]
id = "RP-1002"
job_role = "Locum Pharmacist"
ods_code = "FFFFF"
organisation_name = "Locum"
activities = ["eps.download"]

[[users]]
uid = "{BEN}"
name = "Ben Okafor"
[[users.role_profiles]]
id = "RP-2001"
job_role = "Sponsor"
ods_code = "FA123"
organisation_name = "High Street Pharmacy"
activities = ["admin.unlock", "admin.tac"]
"#,
            path("service"),
            path("card-ca"),
            self.outbox().display(),
        );
        for (serial, uid) in &self.cards {
            toml.push_str(&format!(
                "\n[[cards]]\nserial = \"{serial}\"\nuid = \"{uid}\"\nunlock_code = \"80264513\"\n"
            ));
        }
        let config = SimConfig::from_toml(&toml).unwrap();
        let sim = SpineSim::start(config).await.unwrap();
        let client = SpineClient::new(SpineConfig::new(
            Endpoint::parse(&sim.url()).unwrap(),
            Endpoint::parse(&sim.mtls_url()).unwrap(),
            sim.service_ca_pem().as_bytes().to_vec(),
        ))
        .unwrap();
        (sim, client)
    }
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    Broker,
    Tls,
}

async fn login(
    client: &SpineClient,
    mode: Mode,
    card: Arc<dyn CardSigner>,
) -> Result<Session, SpineError> {
    match mode {
        Mode::Broker => client.login_with_signed_challenge(card).await,
        Mode::Tls => client.login_with_client_certificate(card).await,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_logins_with_both_card_kinds_then_roles_introspection_and_logout() {
    let mut lab = Lab::new();
    let ecc = lab.card(ASHA, "6516779193", Kind::Ecc, Validity::Default);
    let rsa = lab.card(ASHA, "6516779194", Kind::Rsa, Validity::Default);
    let (_sim, client) = lab.start().await;
    for (card, kind) in [(&ecc, Kind::Ecc), (&rsa, Kind::Rsa)] {
        for mode in [Mode::Broker, Mode::Tls] {
            let (signer, _controls) = support::signer(card);
            let session = login(&client, mode, signer)
                .await
                .unwrap_or_else(|e| panic!("{kind:?} {mode:?}: {e:?}"));
            assert_eq!(session.uid, ASHA);
            assert_eq!(session.name, "Asha Patel");
            assert_eq!(session.selected_role_profile, None);
            let ids: Vec<&str> = session
                .role_profiles
                .iter()
                .map(|p| p.id.as_str())
                .collect();
            assert_eq!(ids, ["RP-1001", "RP-1002"], "{kind:?} {mode:?}");

            let selected = client.select_role(&session, "RP-1001").await.unwrap();
            assert_eq!(selected.selected_role_profile.as_deref(), Some("RP-1001"));
            // Switching role within the session is allowed.
            let switched = client.select_role(&session, "RP-1002").await.unwrap();
            assert_eq!(switched.selected_role_profile.as_deref(), Some("RP-1002"));
            let unknown = client.select_role(&session, "RP-9999").await.unwrap_err();
            assert_eq!(unknown.code(), Some(ErrorCode::UnknownRoleProfile));

            let read = client.session(&session).await.unwrap();
            assert_eq!(read.selected_role_profile.as_deref(), Some("RP-1002"));
            match client.introspect(&session.token).await.unwrap() {
                IntrospectResponse::Active {
                    uid,
                    role_profile_id,
                    ods_code,
                    ..
                } => {
                    assert_eq!(uid, ASHA);
                    assert_eq!(role_profile_id.as_deref(), Some("RP-1002"));
                    assert_eq!(ods_code.as_deref(), Some("FFFFF"));
                }
                IntrospectResponse::Inactive => panic!("a live token is inactive"),
            }

            client.logout(&session).await.unwrap();
            assert_eq!(
                client.introspect(&session.token).await.unwrap(),
                IntrospectResponse::Inactive
            );
            let after = client.session(&session).await.unwrap_err();
            assert!(
                matches!(
                    after,
                    SpineError::SessionExpired | SpineError::Refused { status: 401, .. }
                ),
                "{after:?}"
            );
        }
    }
    let skew = client.clock_skew().unwrap();
    assert!(skew.abs() <= 2, "{skew}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_expires() {
    let mut lab = Lab::new();
    let card = lab.card(ASHA, "6516779193", Kind::Ecc, Validity::Default);
    let (sim, client) = lab.start().await;
    let (signer, _controls) = support::signer(&card);
    let session = client.login_with_signed_challenge(signer).await.unwrap();
    sim.advance_clock(Duration::from_secs(901));
    let result = client.session(&session).await;
    assert!(
        matches!(result, Err(SpineError::SessionExpired)),
        "{result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_and_expired_cards_are_refused_with_their_reasons_in_both_modes() {
    let mut lab = Lab::new();
    let revoked = lab.card(ASHA, "6516779195", Kind::Ecc, Validity::Default);
    let expired = lab.card(ASHA, "6516779196", Kind::Ecc, Validity::Expired);
    lab.revoke(&revoked);
    let (_sim, client) = lab.start().await;
    for mode in [Mode::Broker, Mode::Tls] {
        let (signer, _controls) = support::signer(&revoked);
        let result = login(&client, mode, signer).await;
        assert!(
            matches!(result, Err(SpineError::CardRevoked)),
            "{mode:?}: {result:?}"
        );
        let (signer, _controls) = support::signer(&expired);
        let result = login(&client, mode, signer).await;
        assert!(
            matches!(result, Err(SpineError::CertificateExpired)),
            "{mode:?}: {result:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_generates_the_key_on_the_card_and_writes_the_new_certificate() {
    let mut lab = Lab::new();
    let due = lab.card(ASHA, "6516779197", Kind::Ecc, Validity::ExpiresInDays(30));
    let fresh = lab.card(ASHA, "6516779198", Kind::Ecc, Validity::Default);
    let (_sim, client) = lab.start().await;

    // More than 90 days left: refused.
    let signer = SharedSigner::new(&fresh);
    let session = client
        .login_with_client_certificate(signer.clone())
        .await
        .unwrap();
    let csr = {
        let mut card = signer.client.lock().unwrap();
        card.authenticate_management_key(&ManagementKey::aes128(&support::MANAGEMENT_KEY).unwrap())
            .unwrap();
        cardgate_spine::csr::card_certificate_request(
            &mut *card,
            Slot::Authentication,
            KeyAlgorithm::EccP256,
            signer.certificate_der(),
        )
        .unwrap()
    };
    let early = client.renew_certificate(&session, &csr).await.unwrap_err();
    assert_eq!(early.code(), Some(ErrorCode::RenewalNotDue), "{early:?}");

    let signer = SharedSigner::new(&due);
    let session = client
        .login_with_client_certificate(signer.clone())
        .await
        .unwrap();
    let old_not_after = session.certificate_not_after;
    let csr = {
        let mut card = signer.client.lock().unwrap();
        card.authenticate_management_key(&ManagementKey::aes128(&support::MANAGEMENT_KEY).unwrap())
            .unwrap();
        cardgate_spine::csr::card_certificate_request(
            &mut *card,
            Slot::Authentication,
            KeyAlgorithm::EccP256,
            signer.certificate_der(),
        )
        .unwrap()
    };
    let certificate = client.renew_certificate(&session, &csr).await.unwrap();
    signer
        .client
        .lock()
        .unwrap()
        .write_certificate(Slot::Authentication, &certificate)
        .unwrap();

    // The card now logs in with the new key and certificate, in both modes.
    let on_card = signer
        .client
        .lock()
        .unwrap()
        .read_certificate(Slot::Authentication)
        .unwrap();
    assert_eq!(on_card, certificate);
    let renewed = Arc::new(SharedSigner {
        client: Arc::clone(&signer.client),
        certificate: on_card,
        algorithm: KeyAlgorithm::EccP256,
    });
    for mode in [Mode::Broker, Mode::Tls] {
        let session = login(&client, mode, renewed.clone())
            .await
            .unwrap_or_else(|e| panic!("{mode:?} after renewal: {e:?}"));
        assert!(
            session.certificate_not_after > old_not_after + time::Duration::days(300),
            "{mode:?}: {} vs {old_not_after}",
            session.certificate_not_after
        );
    }
    // The old certificate with the new key no longer matches: the client says so.
    let stale = Arc::new(SharedSigner {
        client: Arc::clone(&signer.client),
        certificate: due.certificates[&cardgate_vcard::card_file::Slot::Authentication].clone(),
        algorithm: KeyAlgorithm::EccP256,
    });
    let result = client.login_with_signed_challenge(stale).await;
    assert!(
        matches!(result, Err(SpineError::KeyDoesNotMatchCertificate)),
        "{result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sponsor_and_self_service_unlock_release_the_unlock_code() {
    let mut lab = Lab::new();
    let asha = lab.card(ASHA, "6516779193", Kind::Ecc, Validity::Default);
    let ben = lab.card(BEN, "6516779200", Kind::Ecc, Validity::Default);
    let (_sim, client) = lab.start().await;
    let asha_serial = asha.card.profile.card_serial.clone();

    let (signer, _controls) = support::signer(&ben);
    let sponsor = client.login_with_client_certificate(signer).await.unwrap();
    // Without a selected role there is no admin.unlock.
    assert!(
        client
            .sponsor_unlock(&sponsor, ASHA, &asha_serial)
            .await
            .is_err()
    );
    let sponsor = client.select_role(&sponsor, "RP-2001").await.unwrap();
    let code = client
        .sponsor_unlock(&sponsor, ASHA, &asha_serial)
        .await
        .unwrap();
    assert!(!format!("{code:?}").contains("80264513"), "{code:?}");
    let own = client
        .sponsor_unlock(&sponsor, BEN, &ben.card.profile.card_serial)
        .await
        .unwrap_err();
    assert_eq!(own.code(), Some(ErrorCode::OwnCard));

    // The released code unlocks the card.
    let (mut card, _controls) = support::verified_client(&asha);
    card.reset_retry_counter(
        &code,
        &cardgate_piv::Passcode::new("2468".to_owned()).unwrap(),
        cardgate_piv::FinalTry::NotConfirmed,
    )
    .unwrap();

    // Self-service: the one-time code goes to the outbox; a wrong one is refused.
    let started = client
        .start_self_service_unlock(ASHA, &asha_serial)
        .await
        .unwrap();
    assert!(started.sent_to.contains("***"), "{}", started.sent_to);
    let wrong = client
        .confirm_self_service_unlock(&started.request_id, &Secret::new("000000"))
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Some(ErrorCode::WrongOneTimeCode));
    let line = std::fs::read_to_string(lab.outbox()).unwrap();
    let message: OutboxMessage = serde_json::from_str(line.lines().last().unwrap()).unwrap();
    assert_eq!(message.uid, ASHA);
    client
        .confirm_self_service_unlock(&started.request_id, &message.one_time_code)
        .await
        .unwrap();
    let no_contact = client
        .start_self_service_unlock(BEN, &ben.card.profile.card_serial)
        .await
        .unwrap_err();
    assert_eq!(no_contact.code(), Some(ErrorCode::NoRegisteredContact));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sponsor_activates_records_and_returns_a_tac() {
    let mut lab = Lab::new();
    let ben = lab.card(BEN, "6516779200", Kind::Ecc, Validity::Default);
    let (_sim, client) = lab.start().await;
    let (signer, _controls) = support::signer(&ben);
    let session = client.login_with_signed_challenge(signer).await.unwrap();
    let session = client.select_role(&session, "RP-2001").await.unwrap();
    let tac = "9000000001";
    assert_eq!(
        client.tac(&session, tac).await.unwrap().state,
        TacState::Blank
    );
    let active = client
        .activate_tac(
            &session,
            tac,
            &TacActivateRequest {
                holder_uid: ASHA.into(),
                custodian: "Ben Okafor".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(active.state, TacState::Active);
    let now = OffsetDateTime::now_utc();
    let used = client
        .record_tac_usage(
            &session,
            tac,
            &TacUsageRequest {
                used_by: ASHA.into(),
                from: now - time::Duration::hours(2),
                until: now,
            },
        )
        .await
        .unwrap();
    assert_eq!(used.usage.len(), 1);
    let returned = client.return_tac(&session, tac).await.unwrap();
    assert_eq!(returned.state, TacState::Blank);
    assert!(returned.history.len() >= 3);
    let again = client.return_tac(&session, tac).await.unwrap_err();
    assert_eq!(again.code(), Some(ErrorCode::TacNotActive));
}
