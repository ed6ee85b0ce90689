//! Independent conformance of the virtual PIV card through a real pcscd: Yubico's
//! `yubico-piv-tool` (libykpiv, an implementation of PIV that owes nothing to ours) reads
//! each certificate exactly as provisioned and reports the card's status.
//!
//! yubico-piv-tool picks the first reader whose name contains `-r` (default "Yubikey"), so
//! every run names the vpcd reader. Each test gets a freshly provisioned card file in its
//! own temporary directory and a fresh lab (private pcscd and vpcd readers).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use cardgate_e2e::{check, lab_trial};
use cardgate_lab::{Lab, ReaderSlot, setup_script};
use cardgate_vcard::applet::PivApplet;
use cardgate_vcard::card_file::{CardFile, KeyAlgorithm, Slot};
use cardgate_vcard::provision::{CardSpec, TestCa, provision};
use cardgate_vcard::vpcd::InsertedCard;
use libtest_mimic::{Arguments, Failed};

/// The passcode the test cards get (not the PIV factory default).
const PASSCODE: &str = "739146";
/// The reader every test card goes into.
const READER: ReaderSlot = ReaderSlot::First;
/// How long one tool run may take before it counts as hung.
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    cardgate_lab::enter_lab_namespace();
    let args = Arguments::from_args();
    let trials = vec![
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
    ];
    libtest_mimic::run(&args, trials).exit_code()
}

/// `yubico-piv-tool -a read-certificate -s <slot>` prints, for each of the four slots, the
/// PEM of exactly the certificate provisioned there.
fn read_certificate_prints_each_certificate(
    lab: &mut Lab,
    algorithm: KeyAlgorithm,
    uuid: &str,
) -> Result<(), Failed> {
    let card = TestCard::provision(algorithm, uuid)?;
    let _inserted = card.insert(lab)?;
    let reader = lab.reader_name(READER);
    for slot in Slot::ALL {
        let slot_name = slot_arg(slot);
        let read = card
            .run(&["-r", &reader, "-a", "read-certificate", "-s", slot_name])?
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
    let card = TestCard::provision(KeyAlgorithm::EccP256, uuid)?;
    let _inserted = card.insert(lab)?;
    let reader = lab.reader_name(READER);
    let status = card.run(&["-r", &reader, "-a", "status"])?.succeeded()?;

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

/// A provisioned card file in its own temporary directory, with the certificates it was
/// issued.
struct TestCard {
    dir: tempfile::TempDir,
    path: PathBuf,
    certificates: BTreeMap<Slot, Vec<u8>>,
}

impl TestCard {
    /// Provisions a card with keys of `algorithm` for holder `uuid`, passcode [`PASSCODE`].
    fn provision(algorithm: KeyAlgorithm, uuid: &str) -> Result<TestCard, Failed> {
        let ca = TestCa::generate("Cardgate Conformance CA")
            .map_err(|e| Failed::from(format!("generating the test CA: {e}")))?;
        let spec = CardSpec::new("Conformance Holder", uuid)
            .key_algorithm(algorithm)
            .pin(PASSCODE);
        let provisioned =
            provision(&ca, &spec).map_err(|e| Failed::from(format!("provisioning: {e}")))?;
        let dir = tempfile::Builder::new()
            .prefix("cardgate-ykpiv-")
            .tempdir()
            .map_err(|e| Failed::from(format!("creating the card directory: {e}")))?;
        let path = dir.path().join("card.json");
        provisioned
            .card
            .save(&path)
            .map_err(|e| Failed::from(format!("saving the card file: {e}")))?;
        Ok(TestCard {
            dir,
            path,
            certificates: provisioned.certificates,
        })
    }

    /// Opens the card file as a PIV applet (which writes its counters back to the file) and
    /// inserts it into [`READER`].
    fn insert(&self, lab: &Lab) -> Result<InsertedCard, Failed> {
        let applet = PivApplet::open(&self.path)
            .map_err(|e| Failed::from(format!("opening {}: {e}", self.path.display())))?;
        lab.insert(READER, Box::new(applet))
            .map_err(|e| Failed::from(format!("inserting the card: {e}")))
    }

    /// The card file as the applet last wrote it.
    fn file(&self) -> Result<CardFile, Failed> {
        CardFile::load(&self.path).map_err(|e| Failed::from(format!("reading the card file: {e}")))
    }

    /// The DER certificate provisioned for `slot`.
    fn certificate(&self, slot: Slot) -> Result<&[u8], Failed> {
        self.certificates
            .get(&slot)
            .map(Vec::as_slice)
            .ok_or_else(|| Failed::from(format!("no certificate was provisioned for {slot:?}")))
    }

    /// Runs yubico-piv-tool with `args`, its output kept in this card's directory.
    fn run(&self, args: &[&str]) -> Result<ToolRun, Failed> {
        run_tool(self.dir.path(), "yubico-piv-tool", args)
    }
}

/// One finished run of a tool: its command line, how it ended, and what it printed.
struct ToolRun {
    command: String,
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl ToolRun {
    /// Everything needed to diagnose a run, for failure messages.
    fn report(&self) -> String {
        format!(
            "---- {} ({}) ----\n-- stdout --\n{}\n-- stderr --\n{}",
            self.command, self.status, self.stdout, self.stderr
        )
    }

    /// The run, if the tool exited successfully; a failure with its report otherwise.
    fn succeeded(self) -> Result<ToolRun, Failed> {
        if self.status.success() {
            Ok(self)
        } else {
            Err(Failed::from(format!(
                "{} failed\n{}",
                self.command,
                self.report()
            )))
        }
    }
}

/// Runs `program` with `args`, stdout and stderr in files under `dir` (no pipe can fill
/// up), killing it after [`TOOL_TIMEOUT`]. A missing program is a failure naming
/// `scripts/setup`.
fn run_tool(dir: &Path, program: &str, args: &[&str]) -> Result<ToolRun, Failed> {
    let executable = find_program(program)?;
    let command = std::iter::once(program)
        .chain(args.iter().copied())
        .map(|a| {
            if a.contains(' ') {
                format!("'{a}'")
            } else {
                a.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    let out_path = dir.join(format!("{program}.stdout"));
    let err_path = dir.join(format!("{program}.stderr"));
    let io = |what: &str, e: std::io::Error| Failed::from(format!("{command}: {what}: {e}"));
    let stdout = File::create(&out_path).map_err(|e| io("creating its stdout file", e))?;
    let stderr = File::create(&err_path).map_err(|e| io("creating its stderr file", e))?;
    let mut child = Command::new(executable)
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .map_err(|e| io("starting it", e))?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| io("waiting for it", e))? {
            break status;
        }
        if started.elapsed() > TOOL_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            let out = std::fs::read_to_string(&out_path).unwrap_or_default();
            let err = std::fs::read_to_string(&err_path).unwrap_or_default();
            return Err(Failed::from(format!(
                "{command} hung for {TOOL_TIMEOUT:?} and was killed\n-- stdout --\n{out}\n\
                 -- stderr --\n{err}"
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |path: &Path| {
        std::fs::read(path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .map_err(|e| io("reading its output", e))
    };
    Ok(ToolRun {
        stdout: read(&out_path)?,
        stderr: read(&err_path)?,
        command,
        status,
    })
}

/// Finds a tool on PATH or in /usr/bin; a missing one is a loud failure that says how to
/// install it.
fn find_program(name: &str) -> Result<PathBuf, Failed> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            Failed::from(format!(
                "{name} is not installed: run {} (it installs the yubico-piv-tool package)",
                setup_script().display()
            ))
        })
}

/// The DER of the one certificate in PEM text.
fn pem_certificate(text: &str) -> Result<Vec<u8>, String> {
    let blocks: Vec<_> = x509_parser::pem::Pem::iter_from_buffer(text.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("output is not PEM: {e}"))?;
    let mut certificates: Vec<Vec<u8>> = blocks
        .into_iter()
        .filter(|pem| pem.label == "CERTIFICATE")
        .map(|pem| pem.contents)
        .collect();
    match (certificates.pop(), certificates.len()) {
        (Some(der), 0) => Ok(der),
        (None, _) => Err("no PEM certificate in the output".to_owned()),
        (Some(_), more) => Err(format!("expected one PEM certificate, found {}", more + 1)),
    }
}
