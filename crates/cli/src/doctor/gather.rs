//! Asking the world: the configuration file (through the agent's own reader), pcscd and the
//! card (PC/SC calls block, so on a blocking thread), the certificate against the configured
//! CA and CRL, the endpoint over TLS, the agent on D-Bus. Each check writes down what it found
//! as [`facts`](super::facts); nothing here words a line.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cardgate_certs::{CheckPolicy, Crl, TrustAnchors};
use cardgate_config::{CardTrustConfig, Config, EndpointConfig, Sections};
use cardgate_piv::{PasscodeGuard, PivClient};
use cardgate_reader::{PcscBackend, PinPad, ReaderBackend, ReaderError, ReaderName};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::ReaderDetails;
use super::facts::{
    CardFacts, CardRead, CertificateFacts, CheckedCertificate, ConfigFacts, CrlFacts, DaemonFacts,
    EndpointFacts, Facts, IdentityFacts, PcscFacts, PcscdProblem,
};
use crate::atr;
use crate::error::CliError;
use crate::format::StatusView;

/// Where pcsc-lite's client library finds pcscd unless `PCSCLITE_CSOCK_NAME` says otherwise.
const PCSCD_SOCKET: &str = "/run/pcscd/pcscd.comm";

/// The authentication certificate (DER) and the card serial, as read from the card.
type CardCertificate = (Vec<u8>, String);

/// Runs every check, in the order that lets each use what an earlier one found.
pub(super) async fn gather(config_path: &Path, bus: &str) -> Facts {
    let checked_at = super::now_rfc3339();

    // The configuration, judged strictly as the agent would; the checks that follow use the
    // tables that are sound even when the agent would refuse the file.
    let (config, sections) = match Config::from_file(config_path) {
        Ok(c) => (ConfigFacts::Accepted, Sections::from(&c)),
        Err(e) => (
            ConfigFacts::Refused(e),
            Sections::from_file(config_path).unwrap_or_default(),
        ),
    };
    let bus = match (&sections.ipc, bus) {
        (Some(ipc), "system") => ipc.bus.clone(),
        _ => bus.to_owned(),
    };

    // pcscd, readers, card, ATR, PIV, passcode: PC/SC calls block, so off the runtime.
    let (pcsc, certificate) = tokio::task::spawn_blocking(pcsc)
        .await
        .unwrap_or_else(|e| (PcscFacts::Stopped(e.to_string()), None));

    // The endpoint before the certificate, which needs the endpoint's CRL.
    let (endpoint, crl_der) = endpoint(sections.endpoint.as_ref()).await;
    let certificate = match certificate {
        None => CertificateFacts::NoCard,
        Some(certificate) => match sections.card.as_ref() {
            None => CertificateFacts::NoConfig,
            Some(card) => check_certificate(card, &certificate, crl_der.as_deref()),
        },
    };
    let daemon = daemon(&bus).await;

    Facts {
        checked_at,
        config_path: config_path.to_owned(),
        bus,
        config,
        pcsc,
        certificate,
        endpoint,
        daemon,
    }
}

/// The socket pcsc-lite's clients connect to.
fn pcscd_socket() -> PathBuf {
    std::env::var_os("PCSCLITE_CSOCK_NAME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(PCSCD_SOCKET))
}

/// Whether a process named `pcscd` runs (visible in this pid namespace's /proc).
fn pcscd_process_runs() -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|e| {
        let is_pid = e
            .file_name()
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
        is_pid && std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "pcscd")
    })
}

/// pcscd, each reader (card present, PIN pad, model), and the first card found, read.
fn pcsc() -> (PcscFacts, Option<CardCertificate>) {
    let backend = PcscBackend::new();
    let socket = pcscd_socket();
    let names = match backend.list_readers() {
        Ok(names) => names,
        Err(e) => {
            let lost = e.is_service_lost();
            // Refused: pcsc-lite 2.x says so (a security violation, trixie's pcscd refusing
            // through polkit, found by scripts/installed); 1.9.x closes the socket on us
            // while pcscd runs and its socket is there.
            let problem =
                if e.is_access_denied() || (lost && pcscd_process_runs() && socket.exists()) {
                    PcscdProblem::Refused
                } else if lost {
                    PcscdProblem::NotReachable
                } else {
                    PcscdProblem::Error
                };
            // The PC/SC call and its answer, without the wrapper's own sentence.
            let error = match &e {
                ReaderError::ServiceUnavailable { call, source } => format!("{call}: {source}"),
                other => other.to_string(),
            };
            return (
                PcscFacts::Unavailable {
                    socket,
                    problem,
                    error,
                },
                None,
            );
        }
    };

    let mut readers = Vec::new();
    let mut problems = Vec::new();
    let mut card = None;
    let mut certificate = None;
    for name in &names {
        let mut details = ReaderDetails {
            name: name.as_str().to_owned(),
            card_present: false,
            pin_pad: "unknown".into(),
            model: None,
            usb_id: None,
        };
        match backend.connect(name) {
            Ok(mut connection) => {
                details.card_present = true;
                match connection.features() {
                    Ok(features) => {
                        details.pin_pad = match features.pin_pad() {
                            PinPad::Absent => "none".into(),
                            PinPad::Disabled { .. } => "disabled".into(),
                            PinPad::Usable { .. } => "usable".into(),
                        };
                        details.model = features.model().map(|m| m.name.to_owned());
                        details.usb_id = features.properties().and_then(|p| {
                            Some(format!("{:04x}:{:04x}", p.vendor_id?, p.product_id?))
                        });
                    }
                    Err(e) => problems.push(format!("{name}: features unreadable ({e})")),
                }
                if card.is_none() {
                    let (facts, cert) = read_card(name, connection.as_mut());
                    card = Some(Box::new(facts));
                    certificate = cert;
                }
            }
            Err(ReaderError::NoCard { .. }) => {}
            Err(e) => problems.push(format!("{name}: {e}")),
        }
        readers.push(details);
    }
    (
        PcscFacts::Listed {
            socket,
            readers,
            problems,
            card,
        },
        certificate,
    )
}

/// Reads the card in `reader` in one shared transaction: ATR, SELECT (timed), identity and
/// the passcode's tries (VERIFY without data: no try spent).
fn read_card(
    reader: &ReaderName,
    connection: &mut dyn cardgate_reader::CardConnection,
) -> (CardFacts, Option<CardCertificate>) {
    let known_list = std::fs::read_to_string(atr::SMARTCARD_LIST).ok();
    let atr_bytes = connection.atr().unwrap_or_default();
    let facts = |read| CardFacts {
        reader: reader.as_str().to_owned(),
        atr: atr::decode(&atr_bytes, known_list.as_deref()),
        known_list: known_list.is_some(),
        read,
    };
    let guard = match PasscodeGuard::in_memory() {
        Ok(g) => Arc::new(g),
        Err(e) => return (facts(CardRead::NotPrepared(e.to_string())), None),
    };
    let transaction = match connection.transaction() {
        Ok(t) => t,
        Err(e) => return (facts(CardRead::NoTransaction(e.to_string())), None),
    };
    let mut client = PivClient::new(cardgate_card::TransactionChannel::new(transaction), guard);
    let started = Instant::now();
    let selected = client.select();
    let round_trip = started.elapsed();
    // The passcode's tries are read whenever the identity was.
    let read = selected
        .and_then(|()| client.read_identity())
        .map(|identity| (identity, client.passcode_status()));
    let apdus = client.channel().apdus();
    drop(client);

    let (identity, certificate) = match read {
        Ok((identity, passcode)) => (
            Ok(IdentityFacts {
                card_serial: identity.card_serial.as_str().to_owned(),
                holder_uuid: identity.holder_uuid.as_str().to_owned(),
                holder_name: identity.holder_name.clone(),
                passcode,
            }),
            Some((
                identity.auth_certificate_der,
                identity.card_serial.as_str().to_owned(),
            )),
        ),
        Err(e) => (Err(e), None),
    };
    (
        facts(CardRead::Transacted {
            apdus,
            round_trip,
            identity,
        }),
        certificate,
    )
}

/// The certificate's validity, chain to the configured card CA, revocation against the
/// configured CRL (the endpoint's, or a file).
fn check_certificate(
    card_config: &CardTrustConfig,
    (der, card_serial): &CardCertificate,
    endpoint_crl: Option<&[u8]>,
) -> CertificateFacts {
    let anchors = match std::fs::read(&card_config.ca)
        .map_err(|e| e.to_string())
        .and_then(|pem| TrustAnchors::from_pem(&pem).map_err(|e| e.to_string()))
    {
        Ok(a) => a,
        Err(error) => {
            return CertificateFacts::CaUnusable {
                ca: card_config.ca.clone(),
                error,
            };
        }
    };
    let (crl, crl_facts) = if card_config.crl == "endpoint" {
        match endpoint_crl {
            Some(der) => match Crl::from_der(der, &anchors) {
                Ok(crl) => (Some(crl), CrlFacts::Usable),
                Err(e) => (None, CrlFacts::EndpointUnusable(e.to_string())),
            },
            None => (None, CrlFacts::EndpointUnfetched),
        }
    } else {
        match std::fs::read(&card_config.crl) {
            Ok(bytes) => {
                match Crl::from_der(&bytes, &anchors).or_else(|_| Crl::from_pem(&bytes, &anchors)) {
                    Ok(crl) => (Some(crl), CrlFacts::Usable),
                    Err(e) => (None, CrlFacts::FileUnusable(e.to_string())),
                }
            }
            Err(e) => (None, CrlFacts::FileUnreadable(e.to_string())),
        }
    };
    let report = match cardgate_certs::check_card_certificate(
        der,
        &anchors,
        crl.as_ref(),
        card_serial,
        OffsetDateTime::now_utc(),
        &CheckPolicy::default(),
    ) {
        Ok(r) => r,
        Err(e) => return CertificateFacts::Uncheckable(e.to_string()),
    };
    CertificateFacts::Checked {
        certificate: CheckedCertificate {
            serial: report.certificate_serial.clone(),
            not_after: report
                .not_after
                .format(&Rfc3339)
                .unwrap_or_else(|_| report.not_after.to_string()),
            issuer: report.issuer.clone(),
            findings: report
                .findings
                .iter()
                .map(|f| format!("{} {}", f.message, f.next_step))
                .collect(),
            verdict: report.verdict(),
        },
        crl: crl_facts,
        crl_source: card_config.crl.clone(),
    }
}

/// The endpoint over TLS with the pinned service CA (fetching the CRL, an unauthenticated
/// call), and the clock against the endpoint's `Date`; the CRL fetched, for the certificate.
async fn endpoint(section: Option<&EndpointConfig>) -> (EndpointFacts, Option<Vec<u8>>) {
    let Some(section) = section else {
        return (EndpointFacts::NoConfig, None);
    };
    let api = match cardgate_spine::Endpoint::parse(&section.url) {
        Ok(e) => e,
        Err(e) => {
            let facts = EndpointFacts::BadUrl {
                url: section.url.clone(),
                error: e.to_string(),
            };
            return (facts, None);
        }
    };
    let mtls = section
        .mtls_url
        .as_deref()
        .and_then(|u| cardgate_spine::Endpoint::parse(u).ok())
        .unwrap_or_else(|| api.clone());
    let service_ca = match std::fs::read(&section.service_ca) {
        Ok(pem) => pem,
        Err(e) => {
            let facts = EndpointFacts::ServiceCaUnreadable {
                path: section.service_ca.clone(),
                error: e.to_string(),
            };
            return (facts, None);
        }
    };
    let mut spine_config = cardgate_spine::SpineConfig::new(api, mtls, service_ca);
    spine_config.connect_timeout = Duration::from_secs(3);
    spine_config.request_timeout = Duration::from_secs(10);
    let client = match cardgate_spine::SpineClient::new(spine_config) {
        Ok(c) => c,
        Err(e) => return (EndpointFacts::NoClient(e.to_string()), None),
    };
    let started = Instant::now();
    match client.crl().await {
        Ok(der) => {
            let facts = EndpointFacts::Answers {
                url: section.url.clone(),
                ms: started.elapsed().as_millis(),
                skew: client.clock_skew(),
            };
            (facts, Some(der))
        }
        Err(error) => {
            let facts = EndpointFacts::Unusable {
                url: section.url.clone(),
                error,
            };
            (facts, None)
        }
    }
}

/// The agent's `Status` on `bus`.
async fn daemon(bus: &str) -> DaemonFacts {
    match crate::commands::connect(bus).await {
        Ok((_connection, agent)) => match agent.status().await {
            Ok(map) => DaemonFacts::Answers(StatusView::from_map(&map)),
            Err(e) => DaemonFacts::StatusFailed(e.to_string()),
        },
        Err(CliError::DaemonNotRunning { .. }) => DaemonFacts::NotRunning,
        Err(e) => DaemonFacts::Unreachable(e),
    }
}
