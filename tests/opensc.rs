//! Independent conformance of the virtual PIV card through a real pcscd: OpenSC's own tools
//! (`opensc-tool`, `pkcs15-tool`, and `pkcs11-tool` over OpenSC's PKCS#11 module) name the
//! card, read its certificates, log in, sign, and lock it after three wrong passcodes.
//!
//! OpenSC is an implementation of PIV that owes nothing to ours, so where it disagrees with
//! the card, the card is wrong. Each test gets a freshly provisioned card file in its own
//! temporary directory, a fresh lab (private pcscd and vpcd readers) and a private `HOME`
//! for the tools, so no OpenSC cache carries anything from one test to the next.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use cardgate_e2e::tools::{TestCard, pem_certificate};
use cardgate_e2e::{check, lab_trial, run_lab_suite};
use cardgate_lab::{Lab, ReaderSlot, setup_script};
use cardgate_vcard::card_file::{KeyAlgorithm, Slot};
use libtest_mimic::Failed;
use ring::signature::{self, VerificationAlgorithm};

/// OpenSC's PKCS#11 module as Debian's `opensc-pkcs11` package installs it.
const PKCS11_MODULE: &str = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so";

/// OpenSC's PKCS#11 module, or a loud failure saying how to install it.
fn pkcs11_module() -> Result<&'static str, Failed> {
    if Path::new(PKCS11_MODULE).is_file() {
        Ok(PKCS11_MODULE)
    } else {
        Err(Failed::from(format!(
            "OpenSC's PKCS#11 module {PKCS11_MODULE} is not installed: run {} (it installs the \
             opensc package)",
            setup_script().display()
        )))
    }
}
const PASSCODE: &str = cardgate_e2e::TEST_PASSCODE;
/// A wrong passcode of the same shape.
const WRONG_PASSCODE: &str = "246810";
const READER: ReaderSlot = cardgate_e2e::TOOL_READER;
/// The card name OpenSC's PIV driver gives a PIV card (card-piv.c, `piv_match_card`).
const OPENSC_PIV_NAME: &str = "Personal Identity Verification Card";

fn main() -> ExitCode {
    run_lab_suite(vec![
        lab_trial(
            "opensc_tool_names_the_card_a_piv_card",
            opensc_tool_names_the_card,
        ),
        lab_trial(
            "pkcs15_tool_lists_and_reads_each_ecc_certificate_byte_for_byte",
            |lab| pkcs15_tool_reads_certificates(lab, KeyAlgorithm::EccP256),
        ),
        lab_trial(
            "pkcs15_tool_lists_and_reads_each_rsa_certificate_byte_for_byte",
            |lab| pkcs15_tool_reads_certificates(lab, KeyAlgorithm::Rsa2048),
        ),
        lab_trial(
            "pkcs11_tool_logs_in_and_signs_ecdsa_sha256_with_the_piv_authentication_key",
            |lab| pkcs11_tool_signs(lab, &ECDSA_SHA256, "555000111204"),
        ),
        lab_trial(
            "pkcs11_tool_logs_in_and_signs_sha256_rsa_pkcs_with_the_piv_authentication_key",
            |lab| pkcs11_tool_signs(lab, &SHA256_RSA_PKCS, "555000111205"),
        ),
        lab_trial(
            "pkcs11_tool_logs_in_and_signs_sha256_rsa_pkcs_pss_with_the_piv_authentication_key",
            |lab| pkcs11_tool_signs(lab, &SHA256_RSA_PKCS_PSS, "555000111206"),
        ),
        lab_trial(
            "three_wrong_passcodes_through_pkcs11_tool_block_the_card_for_opensc_too",
            three_wrong_passcodes_block_the_card,
        ),
    ])
}

/// `opensc-tool -n` identifies the card through OpenSC's PIV driver (which needs no known
/// ATR: it recognises the card by its Discovery Object, `7E`, and the PIV AID in it), and
/// `opensc-tool -a` sees the card's ATR.
fn opensc_tool_names_the_card(lab: &mut Lab) -> Result<(), Failed> {
    let card = TestCard::provision(KeyAlgorithm::EccP256, "555000111201", PASSCODE)?;
    let _inserted = card.insert(lab, READER)?;
    let reader = reader_index();

    let named = card
        .run("opensc-tool", &["--reader", &reader, "--name"], None)?
        .succeeded()?;
    check(named.stdout.trim() == OPENSC_PIV_NAME, || {
        format!(
            "opensc-tool did not name the card a PIV card\n{}",
            named.report()
        )
    })?;

    let atr = card
        .run("opensc-tool", &["--reader", &reader, "--atr"], None)?
        .succeeded()?;
    let expected = colon_hex(&card.file()?.atr);
    check(atr.stdout.trim().eq_ignore_ascii_case(&expected), || {
        format!(
            "opensc-tool saw another ATR than the card file's {expected}\n{}",
            atr.report()
        )
    })
}

/// `pkcs15-tool --list-certificates` lists the four PIV certificates under OpenSC's PIV
/// object IDs, and `--read-certificate` returns each exactly as provisioned.
fn pkcs15_tool_reads_certificates(lab: &mut Lab, algorithm: KeyAlgorithm) -> Result<(), Failed> {
    let uuid = match algorithm {
        KeyAlgorithm::EccP256 => "555000111202",
        KeyAlgorithm::Rsa2048 => "555000111203",
    };
    let card = TestCard::provision(algorithm, uuid, PASSCODE)?;
    let inserted = card.insert(lab, READER)?;
    let reader = reader_index();

    let before = inserted.apdu_count();
    let listed = card
        .run(
            "pkcs15-tool",
            &["--reader", &reader, "--list-certificates"],
            None,
        )?
        .succeeded()?;
    let apdus = inserted.apdu_count() - before;
    eprintln!("pkcs15-tool --list-certificates ({algorithm:?} card): {apdus} APDUs");

    let found = listed_certificates(&listed.stdout);
    let expected: BTreeMap<String, String> = Slot::ALL
        .iter()
        .map(|slot| (opensc_id(*slot).to_owned(), opensc_label(*slot).to_owned()))
        .collect();
    check(found == expected, || {
        format!(
            "pkcs15-tool listed certificates {found:?}, expected {expected:?}\n{}",
            listed.report()
        )
    })?;

    for slot in Slot::ALL {
        let id = opensc_id(slot);
        let read = card
            .run(
                "pkcs15-tool",
                &["--reader", &reader, "--read-certificate", id],
                None,
            )?
            .succeeded()?;
        let der = pem_certificate(&read.stdout).map_err(|e| {
            Failed::from(format!(
                "certificate {id} ({slot:?}): {e}\n{}",
                read.report()
            ))
        })?;
        let provisioned = card.certificate(slot)?;
        check(der == provisioned, || {
            format!(
                "pkcs15-tool read certificate {id} ({slot:?}) as {} bytes that differ from the \
                 {} bytes provisioned\nread:        {}\nprovisioned: {}",
                der.len(),
                provisioned.len(),
                hex::encode(&der),
                hex::encode(provisioned)
            )
        })?;
    }
    Ok(())
}

/// A PKCS#11 signing mechanism as pkcs11-tool names it, with the extra arguments it needs
/// and how `ring` verifies what comes out.
struct SigningMechanism {
    /// The key the card holds.
    algorithm: KeyAlgorithm,
    /// pkcs11-tool's name for the mechanism (`--mechanism`).
    name: &'static str,
    /// Further pkcs11-tool arguments (PSS parameters).
    extra_args: &'static [&'static str],
    /// The matching verification in ring.
    verification: &'static dyn VerificationAlgorithm,
}

/// ECDSA over SHA-256; pkcs11-tool writes the signature as raw r||s by default.
static ECDSA_SHA256: SigningMechanism = SigningMechanism {
    algorithm: KeyAlgorithm::EccP256,
    name: "ECDSA-SHA256",
    extra_args: &[],
    verification: &signature::ECDSA_P256_SHA256_FIXED,
};

/// RSA PKCS#1 v1.5 over SHA-256 (OpenSC pads on the host, the card does raw RSA).
static SHA256_RSA_PKCS: SigningMechanism = SigningMechanism {
    algorithm: KeyAlgorithm::Rsa2048,
    name: "SHA256-RSA-PKCS",
    extra_args: &[],
    verification: &signature::RSA_PKCS1_2048_8192_SHA256,
};

/// RSA-PSS over SHA-256 with MGF1-SHA256 and a 32-byte salt: what TLS 1.3 asks of an RSA
/// client key, and the only salt length ring verifies.
static SHA256_RSA_PKCS_PSS: SigningMechanism = SigningMechanism {
    algorithm: KeyAlgorithm::Rsa2048,
    name: "SHA256-RSA-PKCS-PSS",
    extra_args: &["--mgf", "MGF1-SHA256", "--salt-len", "32"],
    verification: &signature::RSA_PSS_2048_8192_SHA256,
};

/// pkcs11-tool logs in with the passcode and signs with the PIV Authentication key (9A);
/// the signature verifies with the public key of the certificate provisioned for 9A.
fn pkcs11_tool_signs(
    lab: &mut Lab,
    mechanism: &SigningMechanism,
    uuid: &str,
) -> Result<(), Failed> {
    let card = TestCard::provision(mechanism.algorithm, uuid, PASSCODE)?;
    let _inserted = card.insert(lab, READER)?;

    let offered = card
        .run(
            "pkcs11-tool",
            &[
                "--module",
                pkcs11_module()?,
                "--slot-index",
                "0",
                "--list-mechanisms",
            ],
            None,
        )?
        .succeeded()?;
    check(offers_mechanism(&offered.stdout, mechanism.name), || {
        format!(
            "OpenSC does not offer {} for this card\n{}",
            mechanism.name,
            offered.report()
        )
    })?;

    let message = format!(
        "cardgate conformance: {} by the card's 9A key",
        mechanism.name
    );
    let input = card.scratch("message.bin");
    let output = card.scratch("signature.bin");
    std::fs::write(&input, &message)
        .map_err(|e| Failed::from(format!("writing the message: {e}")))?;
    let mut args = vec![
        "--module",
        pkcs11_module()?,
        "--slot-index",
        "0",
        "--login",
        "--pin",
        PASSCODE,
        "--sign",
        "--id",
        opensc_id(Slot::Authentication),
        "--mechanism",
        mechanism.name,
    ];
    args.extend_from_slice(mechanism.extra_args);
    let input_arg = path_arg(&input)?;
    let output_arg = path_arg(&output)?;
    args.extend_from_slice(&["--input-file", input_arg, "--output-file", output_arg]);
    let signed = card
        .run("pkcs11-tool", &args, Some(PASSCODE))?
        .succeeded()?;

    let signature = std::fs::read(&output).map_err(|e| {
        Failed::from(format!(
            "pkcs11-tool wrote no signature ({e})\n{}",
            signed.report()
        ))
    })?;
    let certificate = card.certificate(Slot::Authentication)?;
    let public_key = subject_public_key(certificate)?;
    signature::UnparsedPublicKey::new(mechanism.verification, &public_key)
        .verify(message.as_bytes(), &signature)
        .map_err(|_| {
            Failed::from(format!(
                "the {} signature pkcs11-tool got from the card does not verify with the 9A \
                 certificate's public key\nsignature ({} bytes): {}\n{}",
                mechanism.name,
                signature.len(),
                hex::encode(&signature),
                signed.report()
            ))
        })
}

/// Three wrong passcodes through pkcs11-tool, one try each, then the right one: OpenSC must
/// report the card locked (`CKR_PIN_LOCKED`) by the fourth attempt at the latest, the right
/// passcode must be refused, and the card file must hold the counter at 0.
fn three_wrong_passcodes_block_the_card(lab: &mut Lab) -> Result<(), Failed> {
    let card = TestCard::provision(KeyAlgorithm::EccP256, "555000111207", PASSCODE)?;
    let _inserted = card.insert(lab, READER)?;
    let login = |passcode: &str| {
        card.run(
            "pkcs11-tool",
            &[
                "--module",
                pkcs11_module()?,
                "--slot-index",
                "0",
                "--login",
                "--pin",
                passcode,
                "--list-objects",
            ],
            Some(passcode),
        )
    };

    for attempt in 1..=3u8 {
        let run = login(WRONG_PASSCODE)?;
        check(!run.status.success(), || {
            format!(
                "wrong passcode attempt {attempt} was accepted\n{}",
                run.report()
            )
        })?;
        let output = run.output();
        let refused_as_wrong = output.contains("CKR_PIN_INCORRECT");
        let refused_as_locked = output.contains("CKR_PIN_LOCKED");
        check(
            refused_as_wrong || (attempt == 3 && refused_as_locked),
            || {
                format!(
                    "wrong passcode attempt {attempt}: expected CKR_PIN_INCORRECT{}\n{}",
                    if attempt == 3 {
                        " or CKR_PIN_LOCKED"
                    } else {
                        ""
                    },
                    run.report()
                )
            },
        )?;
        // OpenSC must spend exactly one try per attempt: no retries, no extra VERIFY.
        let tries_left = card.file()?.pin.tries_left;
        check(tries_left == 3 - attempt, || {
            format!(
                "after wrong passcode attempt {attempt} the card file holds {tries_left} tries, \
                 expected {}\n{}",
                3 - attempt,
                run.report()
            )
        })?;
    }

    let right = login(PASSCODE)?;
    check(!right.status.success(), || {
        format!(
            "the right passcode unlocked a blocked card\n{}",
            right.report()
        )
    })?;
    check(right.output().contains("CKR_PIN_LOCKED"), || {
        format!(
            "the right passcode on a blocked card: expected CKR_PIN_LOCKED\n{}",
            right.report()
        )
    })?;
    let tries_left = card.file()?.pin.tries_left;
    check(tries_left == 0, || {
        format!("the blocked card's file holds {tries_left} passcode tries, expected 0")
    })
}

/// OpenSC's reader number for [`READER`] (pcscd lists the two vpcd readers in order).
fn reader_index() -> String {
    READER.index().to_string()
}

/// The object ID OpenSC's PIV emulation (pkcs15-piv.c) gives each slot's certificate and key.
fn opensc_id(slot: Slot) -> &'static str {
    match slot {
        Slot::Authentication => "01",
        Slot::Signature => "02",
        Slot::KeyManagement => "03",
        Slot::CardAuthentication => "04",
    }
}

/// The label OpenSC's PIV emulation gives each slot's certificate.
fn opensc_label(slot: Slot) -> &'static str {
    match slot {
        Slot::Authentication => "Certificate for PIV Authentication",
        Slot::Signature => "Certificate for Digital Signature",
        Slot::KeyManagement => "Certificate for Key Management",
        Slot::CardAuthentication => "Certificate for Card Authentication",
    }
}

/// The certificates in `pkcs15-tool --list-certificates` output, ID to label. Each entry
/// starts `X.509 Certificate [<label>]` and has an `ID : <hex>` line.
fn listed_certificates(stdout: &str) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let mut label: Option<String> = None;
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("X.509 Certificate [") {
            label = Some(rest.trim_end().trim_end_matches(']').to_owned());
        } else if let Some((key, value)) = line.split_once(':') {
            if key.trim() == "ID" {
                if let Some(label) = label.take() {
                    found.insert(value.trim().to_owned(), label);
                }
            }
        }
    }
    found
}

/// The subjectPublicKey bits of a DER certificate: an uncompressed EC point or an
/// RSAPublicKey, the forms ring's `UnparsedPublicKey` takes.
fn subject_public_key(certificate: &[u8]) -> Result<Vec<u8>, Failed> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate)
        .map_err(|e| Failed::from(format!("parsing the provisioned certificate: {e}")))?;
    Ok(parsed.public_key().subject_public_key.data.to_vec())
}

/// Whether `pkcs11-tool --list-mechanisms` output names `mechanism` (lines such as
/// `  ECDSA-SHA256, keySize={256,384}, sign, verify`).
fn offers_mechanism(listing: &str, mechanism: &str) -> bool {
    listing
        .lines()
        .any(|line| line.trim().split(',').next().map(str::trim) == Some(mechanism))
}

/// A path as a command-line argument (the temporary directories are UTF-8).
fn path_arg(path: &Path) -> Result<&str, Failed> {
    path.to_str()
        .ok_or_else(|| Failed::from(format!("{} is not UTF-8", path.display())))
}

/// Bytes as `opensc-tool -a` prints them: `3b:80:80:...`.
fn colon_hex(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (i, byte) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        let _ = write!(out, "{byte:02x}");
    }
    out
}
