//! Independent conformance of the virtual PIV card through a real pcscd: Yubico's
//! `yubico-piv-tool` (libykpiv, an implementation of PIV that owes nothing to ours) reads
//! each certificate exactly as provisioned and reports the card's status.
//!
//! yubico-piv-tool picks the first reader whose name contains `-r` (default "Yubikey"), so
//! every run names the vpcd reader. Each test gets a freshly provisioned card file in its
//! own temporary directory and a fresh lab (private pcscd and vpcd readers).

use std::process::ExitCode;

use cardgate_e2e::tools::{TestCard, pem_certificate};
use cardgate_e2e::{check, lab_trial, run_lab_suite};
use cardgate_lab::{Lab, ReaderSlot};
use cardgate_vcard::card_file::{KeyAlgorithm, Slot};
use libtest_mimic::Failed;

const PASSCODE: &str = cardgate_e2e::TEST_PASSCODE;
const READER: ReaderSlot = cardgate_e2e::TOOL_READER;
/// The tool under test.
const YUBICO_PIV_TOOL: &str = "yubico-piv-tool";

fn main() -> ExitCode {
    run_lab_suite(vec![
        lab_trial(
            "read_certificate_prints_each_ecc_certificate_as_provisioned",
            |lab| {
                read_certificate_prints_each_certificate(lab, KeyAlgorithm::EccP256, "555000222201")
            },
        ),
        lab_trial(
            "read_certificate_prints_each_rsa_certificate_as_provisioned",
            |lab| {
                read_certificate_prints_each_certificate(lab, KeyAlgorithm::Rsa2048, "555000222202")
            },
        ),
        lab_trial(
            "status_shows_the_authentication_certificate_and_three_tries_without_spending_one",
            status_shows_the_card,
        ),
    ])
}

/// `yubico-piv-tool -a read-certificate -s <slot>` prints, for each of the four slots, the
/// PEM of exactly the certificate provisioned there.
fn read_certificate_prints_each_certificate(
    lab: &mut Lab,
    algorithm: KeyAlgorithm,
    uuid: &str,
) -> Result<(), Failed> {
    let card = TestCard::provision(algorithm, uuid, PASSCODE)?;
    let _inserted = card.insert(lab, READER)?;
    let reader = lab.reader_name(READER);
    for slot in Slot::ALL {
        let slot_name = slot_arg(slot);
        let read = card
            .run(
                YUBICO_PIV_TOOL,
                &["-r", &reader, "-a", "read-certificate", "-s", slot_name],
                None,
            )?
            .succeeded()?;
        let der = pem_certificate(&read.stdout)
            .map_err(|e| Failed::from(format!("slot {slot_name}: {e}\n{}", read.report())))?;
        let provisioned = card.certificate(slot)?;
        check(der == provisioned, || {
            format!(
                "yubico-piv-tool read slot {slot_name} as {} bytes that differ from the {} bytes \
                 provisioned\nread:        {}\nprovisioned: {}",
                der.len(),
                provisioned.len(),
                hex::encode(&der),
                hex::encode(provisioned)
            )
        })?;
    }
    Ok(())
}

/// `yubico-piv-tool -a status` works on a PIV card that is not a YubiKey: it shows the
/// PIV Authentication certificate (with the holder's UUID in its subject) and three passcode
/// tries left, and asking for the count spends none of them.
fn status_shows_the_card(lab: &mut Lab) -> Result<(), Failed> {
    let uuid = "555000222203";
    let card = TestCard::provision(KeyAlgorithm::EccP256, uuid, PASSCODE)?;
    let _inserted = card.insert(lab, READER)?;
    let reader = lab.reader_name(READER);
    let status = card
        .run(YUBICO_PIV_TOOL, &["-r", &reader, "-a", "status"], None)?
        .succeeded()?;

    let slot_9a = slot_section(&status.stdout, "9a");
    check(slot_9a.as_deref().is_some_and(|s| s.contains(uuid)), || {
        format!(
            "status shows no slot 9a certificate whose subject holds the UUID {uuid}\n{}",
            status.report()
        )
    })?;
    let tries = status
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("PIN tries left:"))
        .map(str::trim);
    check(tries == Some("3"), || {
        format!(
            "status reports PIN tries left {tries:?}, expected 3\n{}",
            status.report()
        )
    })?;
    let tries_left = card.file()?.pin.tries_left;
    check(tries_left == 3, || {
        format!(
            "asking for the status left the card file with {tries_left} passcode tries, \
             expected 3\n{}",
            status.report()
        )
    })
}

/// The lines of `-a status` output that describe one slot: from `Slot <slot>:` up to the
/// next line that is not indented.
fn slot_section(stdout: &str, slot: &str) -> Option<String> {
    let header = format!("Slot {slot}:");
    let mut lines = stdout.lines().skip_while(|line| !line.starts_with(&header));
    let first = lines.next()?;
    let mut section = first.to_owned();
    for line in lines.take_while(|line| line.starts_with('\t') || line.starts_with(' ')) {
        section.push('\n');
        section.push_str(line);
    }
    Some(section)
}

/// yubico-piv-tool's name for a slot (`-s`).
fn slot_arg(slot: Slot) -> &'static str {
    match slot {
        Slot::Authentication => "9a",
        Slot::Signature => "9c",
        Slot::KeyManagement => "9d",
        Slot::CardAuthentication => "9e",
    }
}
