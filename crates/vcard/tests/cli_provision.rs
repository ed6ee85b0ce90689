//! The `vcard` binary's CA, provision and show commands, run as a user would run them.

// Test helpers outside #[test] functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

use cardgate_vcard::card_file::{CardFile, CardKind, KeyAlgorithm, Slot};
use x509_parser::oid_registry::OID_X509_SERIALNUMBER;

fn vcard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vcard"))
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(args: &[&str]) -> String {
    let out = vcard(args);
    assert!(
        out.status.success(),
        "vcard {args:?} failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Runs a command expected to fail; returns (exit code, stderr).
fn fails(args: &[&str]) -> (i32, String) {
    let out = vcard(args);
    assert!(
        !out.status.success(),
        "vcard {args:?} succeeded: {}",
        text(&out.stdout)
    );
    (out.status.code().unwrap(), text(&out.stderr))
}

struct Lab {
    dir: tempfile::TempDir,
}

impl Lab {
    fn new() -> Lab {
        let lab = Lab {
            dir: tempfile::tempdir().unwrap(),
        };
        ok(&["ca", "init", "--dir", &lab.path("ca")]);
        lab
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn provision(&self, out: &str, extra: &[&str]) -> CardFile {
        let out_path = self.path(out);
        let ca = self.path("ca");
        let mut args = vec!["provision", "--ca", &ca, "--out", &out_path];
        args.extend_from_slice(extra);
        ok(&args);
        CardFile::load(Path::new(&out_path)).unwrap()
    }
}

const ASHA: [&str; 4] = ["--name", "Asha Patel", "--uuid", "555000111222"];

fn with<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = base.to_vec();
    v.extend_from_slice(extra);
    v
}

fn authentication_cert(card: &CardFile) -> Vec<u8> {
    let object = &card.objects[&Slot::Authentication.certificate_object()].0;
    cardgate_vcard::provision::objects::certificate_from_object(object).unwrap()
}

#[test]
fn ca_init_writes_the_ca_files_and_refuses_a_second_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca").display().to_string();
    let stdout = ok(&["ca", "init", "--dir", &ca, "--name", "Pharmacy Test CA"]);
    assert!(stdout.contains("Pharmacy Test CA"), "{stdout}");
    let pem = std::fs::read_to_string(dir.path().join("ca/ca.crt.pem")).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("ca/ca.key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let (code, stderr) = fails(&["ca", "init", "--dir", &ca]);
    assert_eq!(code, 1);
    assert!(stderr.contains("already exists"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("ca/ca.crt.pem")).unwrap(),
        pem
    );
}

#[test]
fn provision_default_card() {
    let lab = Lab::new();
    let card = lab.provision("asha.json", &ASHA);
    assert_eq!(card.profile.holder_name, "Asha Patel");
    assert_eq!(card.profile.holder_uuid, "555000111222");
    assert_eq!(card.profile.kind, CardKind::Permanent);
    assert_eq!(card.profile.card_serial.len(), 10);
    assert!(!cardgate_vcard::provision::is_old_generation_serial(
        &card.profile.card_serial
    ));
    assert_eq!(card.pin.max_tries, 3);
    assert_eq!(card.slots.len(), 4);
    assert!(
        card.slots
            .values()
            .all(|k| k.algorithm == KeyAlgorithm::EccP256)
    );
    let der = authentication_cert(&card);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let uuid = cert
        .subject()
        .iter_by_oid(&OID_X509_SERIALNUMBER)
        .next()
        .unwrap();
    assert_eq!(uuid.as_str().unwrap(), "555000111222");
}

#[test]
fn provision_variants() {
    let lab = Lab::new();
    let rsa = lab.provision("rsa.json", &with(&ASHA, &["--key", "rsa"]));
    assert!(
        rsa.slots
            .values()
            .all(|k| k.algorithm == KeyAlgorithm::Rsa2048)
    );

    let old = lab.provision("old.json", &with(&ASHA, &["--old-generation"]));
    assert!(cardgate_vcard::provision::is_old_generation_serial(
        &old.profile.card_serial
    ));
    assert!(
        old.profile
            .notes
            .iter()
            .any(|n| n.contains("old-generation"))
    );
    let old_explicit = lab.provision(
        "old2.json",
        &with(&ASHA, &["--old-generation", "--serial", "0312345678"]),
    );
    assert_eq!(old_explicit.profile.card_serial, "0312345678");

    let serial = lab.provision("serial.json", &with(&ASHA, &["--serial", "4123456789"]));
    assert_eq!(serial.profile.card_serial, "4123456789");

    let tac = lab.provision(
        "tac.json",
        &["--tac", "--uuid", "555000121212", "--pin-tries", "5"],
    );
    assert_eq!(tac.profile.kind, CardKind::TemporaryAccess);
    assert_eq!(tac.profile.holder_name, "");
    assert_eq!((tac.pin.max_tries, tac.pin.tries_left), (5, 5));

    let pins = lab.provision(
        "pins.json",
        &with(&ASHA, &["--pin", "7391", "--puk", "80264513"]),
    );
    assert_eq!(pins.pin.value.as_str(), "7391");
    assert_eq!(pins.puk.value.as_str(), "80264513");

    let now = time::OffsetDateTime::now_utc();
    let not_after = |card: &CardFile| {
        let der = authentication_cert(card);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        cert.validity().not_after.to_datetime()
    };
    let expired = lab.provision("expired.json", &with(&ASHA, &["--expired"]));
    assert!(not_after(&expired) < now);
    let soon = lab.provision("soon.json", &with(&ASHA, &["--expires-in-days", "30"]));
    let days = (not_after(&soon) - now).whole_days();
    assert!((29..=30).contains(&days), "{days}");

    let (code, stderr) = fails(&with(
        &[
            "provision",
            "--ca",
            &lab.path("ca"),
            "--out",
            &lab.path("x.json"),
        ],
        &with(&ASHA, &["--expired", "--expires-in-days", "3"]),
    ));
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn certs_dir_holds_the_issued_certificates_as_pem() {
    let lab = Lab::new();
    let certs = lab.path("certs");
    let card = lab.provision("asha.json", &with(&ASHA, &["--certs-dir", &certs]));
    for slot in ["9A", "9C", "9D", "9E"] {
        let pem = std::fs::read_to_string(Path::new(&certs).join(format!("{slot}.pem"))).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{slot}");
    }
    let pem = std::fs::read(Path::new(&certs).join("9A.pem")).unwrap();
    let (_, parsed) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    assert_eq!(parsed.contents, authentication_cert(&card));
}

#[test]
fn provision_refuses_to_overwrite_without_force() {
    let lab = Lab::new();
    let first = lab.provision("asha.json", &ASHA);
    let ca = lab.path("ca");
    let out = lab.path("asha.json");
    let (code, stderr) = fails(&with(&["provision", "--ca", &ca, "--out", &out], &ASHA));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("already exists") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(CardFile::load(Path::new(&out)).unwrap(), first);

    let second = lab.provision("asha.json", &with(&ASHA, &["--force"]));
    assert_ne!(second, first, "--force provisioned a fresh card");
}

#[test]
fn invalid_uuid_and_pin_are_usage_errors_with_plain_messages() {
    let lab = Lab::new();
    let ca = lab.path("ca");
    let out = lab.path("bad.json");
    let base = [
        "provision",
        "--ca",
        &ca,
        "--out",
        &out,
        "--name",
        "Asha Patel",
    ];

    let (code, stderr) = fails(&with(&base, &["--uuid", "12345"]));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("\"12345\"") && stderr.contains("exactly 12 digits"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

    let (code, stderr) = fails(&with(&base, &["--uuid", "555000111222", "--pin", "12"]));
    assert_eq!(code, 2);
    assert!(stderr.contains("4 to 8 letters or digits"), "{stderr}");

    let (code, stderr) = fails(&with(&base, &["--uuid", "555000111222", "--pin", "12$45"]));
    assert_eq!(code, 2);
    assert!(
        !stderr.contains("12$45"),
        "the passcode is never echoed: {stderr}"
    );

    let (code, stderr) = fails(&with(
        &base,
        &["--uuid", "555000111222", "--pin-tries", "0"],
    ));
    assert_eq!(code, 2);
    assert!(stderr.contains("1 to 15"), "{stderr}");

    let (code, stderr) = fails(&with(
        &base,
        &[
            "--uuid",
            "555000111222",
            "--old-generation",
            "--serial",
            "4123456789",
        ],
    ));
    assert_eq!(code, 2);
    assert!(stderr.contains("01, 02 or 03"), "{stderr}");
    assert!(!Path::new(&out).exists(), "nothing is written on bad input");

    // A missing required flag is clap's usage error, also exit code 2.
    let (code, _) = fails(&[
        "provision",
        "--ca",
        &ca,
        "--out",
        &out,
        "--uuid",
        "555000111222",
    ]);
    assert_eq!(code, 2);
    // A missing CA is a runtime error.
    let (code, stderr) = fails(&with(
        &["provision", "--ca", &lab.path("no-ca"), "--out", &out],
        &ASHA,
    ));
    assert_eq!(code, 1);
    assert!(stderr.contains("vcard ca init"), "{stderr}");
}

#[test]
fn show_reports_the_card_but_never_its_secrets() {
    let lab = Lab::new();
    let card = lab.provision(
        "asha.json",
        &with(
            &ASHA,
            &[
                "--pin",
                "7391",
                "--puk",
                "80264513",
                "--serial",
                "4123456789",
            ],
        ),
    );
    let secret_key = hex::encode(card.management_key.key.as_slice());
    let out = ok(&["show", &lab.path("asha.json")]);
    for expected in [
        "Asha Patel",
        "555000111222",
        "4123456789",
        "3 of 3 tries left",
        "serialNumber=555000111222",
        "5FC102",
        "CHUID",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in\n{out}");
    }
    for secret in ["7391", "80264513", secret_key.as_str()] {
        assert!(!out.contains(secret), "show printed a secret:\n{out}");
    }

    let json = ok(&["show", &lab.path("asha.json"), "--json"]);
    for secret in ["7391", "80264513", secret_key.as_str()] {
        assert!(
            !json.contains(secret),
            "show --json printed a secret:\n{json}"
        );
    }
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["holder_uuid"], "555000111222");
    assert_eq!(report["pin_tries_left"], 3);
    assert_eq!(report["puk_tries_left"], 3);
    assert_eq!(report["slots"].as_array().unwrap().len(), 4);
    assert_eq!(report["slots"][0]["slot"], "9A");
    assert_eq!(report["slots"][0]["certificate"]["expired"], false);
    let objects = report["objects"].as_array().unwrap();
    assert_eq!(objects.len(), 8);
    assert!(objects.iter().all(|o| o["bytes"].as_u64().unwrap() > 0));
}

#[test]
fn show_reports_tries_left_after_wrong_passcodes() {
    let lab = Lab::new();
    let mut card = lab.provision("asha.json", &ASHA);
    card.pin.tries_left = 0;
    card.save(Path::new(&lab.path("asha.json"))).unwrap();
    let out = ok(&["show", &lab.path("asha.json")]);
    assert!(out.contains("0 of 3 tries left (BLOCKED)"), "{out}");
}

#[test]
fn revoke_and_crl_list_the_cards_certificates() {
    let lab = Lab::new();
    let card = lab.provision("asha.json", &ASHA);
    let ca = lab.path("ca");
    let crl = lab.path("crl.der");

    ok(&["ca", "crl", "--dir", &ca, "--out", &crl]);
    let der = std::fs::read(&crl).unwrap();
    assert_eq!(
        x509_parser::parse_x509_crl(&der)
            .unwrap()
            .1
            .iter_revoked_certificates()
            .count(),
        0
    );

    let stdout = ok(&["ca", "revoke", "--dir", &ca, &lab.path("asha.json")]);
    assert!(stdout.contains("revoked 4 certificate"), "{stdout}");
    let again = ok(&["ca", "revoke", "--dir", &ca, &lab.path("asha.json")]);
    assert!(again.contains("revoked 0 certificate"), "{again}");

    ok(&[
        "ca",
        "crl",
        "--dir",
        &ca,
        "--out",
        &crl,
        "--next-update-days",
        "3",
    ]);
    let der = std::fs::read(&crl).unwrap();
    let (_, parsed) = x509_parser::parse_x509_crl(&der).unwrap();
    let listed: Vec<Vec<u8>> = parsed
        .iter_revoked_certificates()
        .map(|r| r.raw_serial().to_vec())
        .collect();
    assert_eq!(listed.len(), 4);
    let der = authentication_cert(&card);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert!(listed.contains(&cert.raw_serial().to_vec()));
}

#[test]
fn help_documents_every_command_with_examples() {
    let top = ok(&["--help"]);
    for command in ["ca", "provision", "insert", "remove", "show", "Examples:"] {
        assert!(top.contains(command), "{command} missing from\n{top}");
    }
    let provision = ok(&["provision", "--help"]);
    for flag in [
        "--ca",
        "--out",
        "--name",
        "--uuid",
        "--serial",
        "--key",
        "--expired",
        "--expires-in-days",
        "--old-generation",
        "--tac",
        "--pin",
        "--puk",
        "--pin-tries",
        "--certs-dir",
        "--force",
        "Examples:",
    ] {
        assert!(provision.contains(flag), "{flag} missing from\n{provision}");
    }
    for sub in [
        &["insert", "--help"][..],
        &["remove", "--help"],
        &["show", "--help"],
        &["ca", "init", "--help"],
        &["ca", "revoke", "--help"],
        &["ca", "crl", "--help"],
    ] {
        let help = ok(sub);
        assert!(help.contains("Example"), "{sub:?} has no example:\n{help}");
    }
}
