//! Running independent tools (OpenSC, yubico-piv-tool, …) against a provisioned virtual card:
//! the card file in its own directory, the tool with a private `HOME`, a timeout, and a report
//! of what it printed for failure messages. Shared by the conformance suites.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use cardgate_lab::{Lab, ReaderSlot, setup_script};
use cardgate_vcard::applet::PivApplet;
use cardgate_vcard::card_file::{CardFile, KeyAlgorithm, Slot};
use cardgate_vcard::provision::{CardSpec, TestCa, provision};
use cardgate_vcard::vpcd::InsertedCard;
use libtest_mimic::Failed;

/// How long one tool run may take before it counts as hung (RSA signing on a loaded 2-core
/// machine included).
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// A provisioned card file in its own temporary directory, with the certificates it was
/// issued and a private `HOME` for the tools, so no tool cache (OpenSC keeps one under
/// `~/.cache/opensc`) carries anything from one test card to the next.
pub struct TestCard {
    dir: tempfile::TempDir,
    path: PathBuf,
    certificates: BTreeMap<Slot, Vec<u8>>,
}

impl TestCard {
    /// Provisions a card from a fresh test CA: keys of `algorithm` in every slot, holder
    /// `uuid`, card holder passcode `passcode`.
    pub fn provision(algorithm: KeyAlgorithm, uuid: &str, passcode: &str) -> Result<Self, Failed> {
        let ca = TestCa::generate("Cardgate Conformance CA")
            .map_err(|e| Failed::from(format!("generating the test CA: {e}")))?;
        let spec = CardSpec::new("Conformance Holder", uuid)
            .key_algorithm(algorithm)
            .pin(passcode);
        let provisioned =
            provision(&ca, &spec).map_err(|e| Failed::from(format!("provisioning: {e}")))?;
        let dir = tempfile::Builder::new()
            .prefix("cardgate-card-")
            .tempdir()
            .map_err(|e| Failed::from(format!("creating the card directory: {e}")))?;
        let path = dir.path().join("card.json");
        provisioned
            .card
            .save(&path)
            .map_err(|e| Failed::from(format!("saving the card file: {e}")))?;
        std::fs::create_dir(dir.path().join("home"))
            .map_err(|e| Failed::from(format!("creating the tools' HOME: {e}")))?;
        Ok(TestCard {
            dir,
            path,
            certificates: provisioned.certificates,
        })
    }

    /// Opens the card file as a PIV applet (which writes its counters back to the file, as a
    /// real card keeps them) and inserts it into `slot`.
    pub fn insert(&self, lab: &Lab, slot: ReaderSlot) -> Result<InsertedCard, Failed> {
        let applet = PivApplet::open(&self.path)
            .map_err(|e| Failed::from(format!("opening {}: {e}", self.path.display())))?;
        lab.insert(slot, Box::new(applet))
            .map_err(|e| Failed::from(format!("inserting the card: {e}")))
    }

    /// The card file as the applet last wrote it.
    pub fn file(&self) -> Result<CardFile, Failed> {
        CardFile::load(&self.path).map_err(|e| Failed::from(format!("reading the card file: {e}")))
    }

    /// The DER certificate provisioned for `slot`.
    pub fn certificate(&self, slot: Slot) -> Result<&[u8], Failed> {
        self.certificates
            .get(&slot)
            .map(Vec::as_slice)
            .ok_or_else(|| Failed::from(format!("no certificate was provisioned for {slot:?}")))
    }

    /// A path inside this card's temporary directory, for tool inputs and outputs.
    pub fn scratch(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs an independent tool with this card's private `HOME`. `secret`, when given, is
    /// replaced by `<passcode>` in the command line recorded for reports.
    pub fn run(
        &self,
        program: &str,
        args: &[&str],
        secret: Option<&str>,
    ) -> Result<ToolRun, Failed> {
        run_tool(&self.dir.path().join("home"), program, args, secret)
    }
}

/// One finished run of a tool: the command line (passcode redacted), how it ended, and what
/// it printed.
pub struct ToolRun {
    /// The command line as run, with the secret replaced.
    pub command: String,
    /// How the tool exited.
    pub status: ExitStatus,
    /// Everything it wrote to stdout.
    pub stdout: String,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

impl ToolRun {
    /// Everything needed to diagnose a run, for failure messages.
    pub fn report(&self) -> String {
        format!(
            "---- {} ({}) ----\n-- stdout --\n{}\n-- stderr --\n{}",
            self.command, self.status, self.stdout, self.stderr
        )
    }

    /// stdout and stderr together, for finding an error name wherever the tool printed it.
    pub fn output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// The run, if the tool exited successfully; a failure with its report otherwise.
    pub fn succeeded(self) -> Result<ToolRun, Failed> {
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

/// Runs `program` with `args` and `HOME=home`, with stdout and stderr in files under `home`
/// (no pipe can fill up), killing it after [`TOOL_TIMEOUT`]. `secret` is replaced in the
/// recorded command line. A missing program is a failure naming `scripts/setup`.
pub fn run_tool(
    home: &Path,
    program: &str,
    args: &[&str],
    secret: Option<&str>,
) -> Result<ToolRun, Failed> {
    let executable = find_program(program)?;
    let command = std::iter::once(program)
        .chain(args.iter().copied())
        .map(|a| match a {
            a if Some(a) == secret => "<passcode>".to_owned(),
            a if a.contains(' ') => format!("'{a}'"),
            a => a.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ");
    let out_path = home.join(format!("{program}.stdout"));
    let err_path = home.join(format!("{program}.stderr"));
    let io = |what: &str, e: std::io::Error| Failed::from(format!("{command}: {what}: {e}"));
    let stdout = File::create(&out_path).map_err(|e| io("creating its stdout file", e))?;
    let stderr = File::create(&err_path).map_err(|e| io("creating its stderr file", e))?;
    let mut child = Command::new(executable)
        .args(args)
        .env("HOME", home)
        .env("XDG_CACHE_HOME", home.join(".cache"))
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
pub fn find_program(name: &str) -> Result<PathBuf, Failed> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            Failed::from(format!(
                "{name} is not installed: run {} (it installs the lab's packages)",
                setup_script().display()
            ))
        })
}

/// The DER of the one certificate in PEM text.
pub fn pem_certificate(text: &str) -> Result<Vec<u8>, String> {
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
