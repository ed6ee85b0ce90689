//! `vcard`: create a test CA, provision virtual PIV cards, put them into a vpcd reader and
//! take them out again, and show what a card file holds (never its secrets).
//!
//! Exit codes: 0 success, 1 runtime error, 2 usage error (bad flags or bad values).

use std::io::Write as _;
use std::net::{SocketAddr, ToSocketAddrs as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cardgate_vcard::Card;
use cardgate_vcard::card_file::{
    CardFile, CardFileError, CardKind, KeyAlgorithm, ManagementKeyAlgorithm, Slot,
};
use cardgate_vcard::provision::{
    self, CardSpec, ProvisionError, RevokedCard, TestCa, Validity, objects,
};
use cardgate_vcard::vpcd::{self, VpcdError};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;

/// Where `vcard insert` writes its pid file unless `CARDGATE_LAB_RUN_DIR` says otherwise.
const DEFAULT_RUN_DIR: &str = "/tmp";
/// How often `vcard insert` looks for a stop signal or a dropped connection.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How long `vcard remove` waits for the inserting process to finish.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Parser, Debug)]
#[command(
    name = "vcard",
    version,
    about = "Virtual PIV cards for the cardgate lab: test CA, provisioning, insertion into a \
             vpcd reader.",
    long_about = "Virtual PIV cards for the cardgate lab.\n\n\
        A card is a JSON card file holding keys, certificates, data objects and the passcode \
        counters. `vcard insert` puts it into the vsmartcard vpcd reader of a running pcscd, \
        so every byte goes through the same PC/SC path a USB reader would use.",
    after_help = "Examples:\n  \
        vcard ca init --dir lab/ca\n  \
        vcard provision --ca lab/ca --out asha.json --name 'Asha Patel' --uuid 555000111222\n  \
        vcard insert asha.json &\n  \
        vcard show asha.json\n  \
        vcard remove\n  \
        vcard ca revoke --dir lab/ca asha.json && vcard ca crl --dir lab/ca --out crl.der"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a test CA, record revoked cards, write CRLs.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Provision a new card file signed by a test CA.
    #[command(after_help = "Examples:\n  \
        vcard provision --ca lab/ca --out asha.json --name 'Asha Patel' --uuid 555000111222\n  \
        vcard provision --ca lab/ca --out rsa.json --name 'Ben Okafor' --uuid 555000333444 --key rsa\n  \
        vcard provision --ca lab/ca --out old.json --name 'Cara Doyle' --uuid 555000555666 --old-generation\n  \
        vcard provision --ca lab/ca --out exp.json --name 'Dev Shah' --uuid 555000777888 --expired\n  \
        vcard provision --ca lab/ca --out soon.json --name 'Eve Lund' --uuid 555000999000 --expires-in-days 30\n  \
        vcard provision --ca lab/ca --out tac.json --tac --uuid 555000121212 --pin-tries 5")]
    Provision(ProvisionArgs),
    /// Insert a card into a vpcd reader and keep it there until removed.
    #[command(
        after_help = "The card stays in the reader until pcscd drops the connection, \
        the process gets SIGINT or SIGTERM, or `vcard remove` is run for the same port. \
        Passcode counters persist to the card file as they change.\n\n\
        Examples:\n  \
        vcard insert asha.json\n  \
        vcard insert asha.json --reader-port 35964"
    )]
    Insert(InsertArgs),
    /// Take out the card a `vcard insert` holds on a reader port, and wait until it is out.
    #[command(after_help = "Examples:\n  vcard remove\n  vcard remove --reader-port 35964")]
    Remove(RemoveArgs),
    /// Show what a card file holds: holder, serial, tries left, keys, certificates, objects.
    /// Never shows the passcode, unlock code or keys.
    #[command(after_help = "Examples:\n  vcard show asha.json\n  vcard show asha.json --json")]
    Show(ShowArgs),
}

#[derive(Subcommand, Debug)]
enum CaCommand {
    /// Create a test CA (ca.crt.pem, and ca.key.pem with mode 0600) in a directory.
    #[command(after_help = "Example:\n  vcard ca init --dir lab/ca --name 'Cardgate Test CA'")]
    Init {
        /// Directory for the CA files (created if missing; must not hold a CA already).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The CA's common name.
        #[arg(long, value_name = "NAME", default_value = "Cardgate Test CA")]
        name: String,
    },
    /// Record every certificate of a card as revoked (the RA cancelling a lost card).
    #[command(after_help = "Example:\n  vcard ca revoke --dir lab/ca asha.json")]
    Revoke {
        /// The CA directory.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The card file whose certificates are revoked.
        #[arg(value_name = "CARD.json")]
        card: PathBuf,
    },
    /// Write a CRL (DER) listing every revoked certificate.
    #[command(
        after_help = "Example:\n  vcard ca crl --dir lab/ca --out lab/crl.der --next-update-days 7"
    )]
    Crl {
        /// The CA directory.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Where to write the CRL (DER).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Days until the CRL's next update.
        #[arg(long, value_name = "DAYS", default_value_t = 7)]
        next_update_days: u32,
    },
}

#[derive(Args, Debug)]
struct ProvisionArgs {
    /// The test CA directory (from `vcard ca init`).
    #[arg(long = "ca", value_name = "DIR")]
    ca_dir: PathBuf,
    /// Where to write the card file.
    #[arg(long, value_name = "CARD.json")]
    out: PathBuf,
    /// The holder's name as printed on the card (may be left out only with --tac).
    #[arg(long, value_name = "NAME", required_unless_present = "tac")]
    name: Option<String>,
    /// The holder's 12-digit UUID (the number on the card's front).
    #[arg(long, value_name = "UUID")]
    uuid: String,
    /// The card serial (digits); derived from the UUID when left out.
    #[arg(long, value_name = "SERIAL")]
    serial: Option<String>,
    /// Key algorithm for all four slots.
    #[arg(long, value_enum, default_value_t = KeyChoice::Ecc)]
    key: KeyChoice,
    /// Certificates that expired yesterday.
    #[arg(long, conflicts_with = "expires_in_days")]
    expired: bool,
    /// Certificates that expire this many days from now (default: two years).
    #[arg(long, value_name = "DAYS")]
    expires_in_days: Option<u32>,
    /// An old-generation card (serial beginning 01, 02 or 03), which cannot be renewed or
    /// unlocked. Picks such a serial unless --serial is given.
    #[arg(long)]
    old_generation: bool,
    /// A Temporary Access Card.
    #[arg(long)]
    tac: bool,
    /// The passcode, 4 to 8 letters or digits (default 123456).
    #[arg(long, value_name = "PIN")]
    pin: Option<String>,
    /// The unlock code, 8 letters or digits (default 12345678).
    #[arg(long, value_name = "PUK")]
    puk: Option<String>,
    /// Wrong passcodes before the card blocks, 1 to 15 (NHS cards: 3).
    #[arg(long, value_name = "N")]
    pin_tries: Option<u8>,
    /// The AES-128 management key as 32 hex digits (default: random).
    #[arg(long, value_name = "HEX")]
    management_key: Option<String>,
    /// Also write each slot's certificate as PEM into this directory (9A.pem, 9C.pem, ...),
    /// so tests can compare what the agent read with what was issued.
    #[arg(long, value_name = "DIR")]
    certs_dir: Option<PathBuf>,
    /// Replace an existing card file.
    #[arg(long)]
    force: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum KeyChoice {
    /// ECDSA P-256.
    Ecc,
    /// RSA 2048.
    Rsa,
}

#[derive(Args, Debug)]
struct InsertArgs {
    /// The card file (written back as passcode counters change).
    #[arg(value_name = "CARD.json")]
    card: PathBuf,
    /// The vpcd reader's TCP port (35963 is the first reader, 35964 the second).
    #[arg(long, value_name = "PORT", default_value_t = vpcd::DEFAULT_PORT)]
    reader_port: u16,
    /// The host pcscd runs on.
    #[arg(long, value_name = "HOST", default_value = "127.0.0.1")]
    host: String,
}

#[derive(Args, Debug)]
struct RemoveArgs {
    /// The vpcd reader port the card was inserted on.
    #[arg(long, value_name = "PORT", default_value_t = vpcd::DEFAULT_PORT)]
    reader_port: u16,
}

#[derive(Args, Debug)]
struct ShowArgs {
    /// The card file.
    #[arg(value_name = "CARD.json")]
    card: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Why a command failed. Each message is one sentence saying what was wrong and what to do.
#[derive(Debug, thiserror::Error)]
enum CliError {
    /// Bad flag values that clap could not catch.
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Provision(#[from] ProvisionError),
    #[error(transparent)]
    CardFile(#[from] CardFileError),
    #[error(
        "no vpcd reader listens on {addr}: is pcscd running with the vpcd driver? see docs/lab.md"
    )]
    NoReader { addr: SocketAddr },
    #[error(transparent)]
    Vpcd(VpcdError),
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{} already exists: pass --force to replace it, or choose another --out",
        path.display()
    )]
    CardExists { path: PathBuf },
    #[error(
        "a card is already inserted on reader port {port} by vcard pid {pid}: run \
         `vcard remove --reader-port {port}` first"
    )]
    PortBusy { port: u16, pid: i32 },
    #[error(
        "no `vcard insert` holds reader port {port} (no pid file {}): nothing to remove",
        path.display()
    )]
    NothingInserted { port: u16, path: PathBuf },
    #[error(
        "vcard pid {pid} did not finish within {} s after being asked to remove its card: \
         check it with `ps {pid}`",
        REMOVE_TIMEOUT.as_secs()
    )]
    RemoveTimedOut { pid: i32 },
    #[error("could not signal vcard pid {pid}: {source}")]
    Signal {
        pid: i32,
        #[source]
        source: nix::Error,
    },
}

impl CliError {
    fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_)
            | CliError::CardExists { .. }
            | CliError::Provision(
                ProvisionError::InvalidUuid { .. }
                | ProvisionError::InvalidHolderName { .. }
                | ProvisionError::InvalidCardSerial { .. }
                | ProvisionError::NotOldGeneration { .. }
                | ProvisionError::InvalidPin { .. }
                | ProvisionError::InvalidPuk { .. }
                | ProvisionError::InvalidPinTries { .. }
                | ProvisionError::InvalidValidity { .. }
                | ProvisionError::InvalidManagementKey { .. }
                | ProvisionError::InvalidCaName { .. },
            ) => 2,
            _ => 1,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Ca(command) => run_ca(command),
        Command::Provision(args) => run_provision(&args),
        Command::Insert(args) => run_insert(&args),
        Command::Remove(args) => run_remove(&args),
        Command::Show(args) => run_show(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vcard: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn run_ca(command: CaCommand) -> Result<(), CliError> {
    match command {
        CaCommand::Init { dir, name } => {
            let ca = TestCa::generate(&name)?;
            ca.save(&dir)?;
            println!(
                "created test CA {name:?} in {} ({} and {})",
                dir.display(),
                provision::CA_CERTIFICATE_FILE,
                provision::CA_KEY_FILE
            );
        }
        CaCommand::Revoke { dir, card } => {
            // Load the CA first: revoking into a directory without a CA is a mistake.
            TestCa::load(&dir)?;
            let card_file = CardFile::load(&card)?;
            let revoked = RevokedCard::all_of(&card_file, time::OffsetDateTime::now_utc())?;
            let added = provision::record_revocations(&dir, &revoked)?;
            println!(
                "revoked {added} certificate(s) of card {} (holder UUID {}); {} were already revoked; \
                 run `vcard ca crl` to publish",
                card_file.profile.card_serial,
                card_file.profile.holder_uuid,
                revoked.len() - added
            );
        }
        CaCommand::Crl {
            dir,
            out,
            next_update_days,
        } => {
            let ca = TestCa::load(&dir)?;
            let revoked = provision::load_revocations(&dir)?;
            let der = ca.crl_der(&revoked, next_update_days)?;
            std::fs::write(&out, der).map_err(|source| CliError::Io {
                what: "could not write the CRL to",
                path: out.clone(),
                source,
            })?;
            println!(
                "wrote CRL listing {} revoked certificate(s) to {}",
                revoked.len(),
                out.display()
            );
        }
    }
    Ok(())
}

fn run_provision(args: &ProvisionArgs) -> Result<(), CliError> {
    if args.out.exists() && !args.force {
        return Err(CliError::CardExists {
            path: args.out.clone(),
        });
    }
    let ca = TestCa::load(&args.ca_dir)?;
    let mut spec = CardSpec::new(args.name.as_deref().unwrap_or(""), &args.uuid).key_algorithm(
        match args.key {
            KeyChoice::Ecc => KeyAlgorithm::EccP256,
            KeyChoice::Rsa => KeyAlgorithm::Rsa2048,
        },
    );
    if let Some(serial) = &args.serial {
        spec = spec.card_serial(serial);
    }
    if args.expired {
        spec = spec.validity(Validity::Expired);
    } else if let Some(days) = args.expires_in_days {
        spec = spec.validity(Validity::ExpiresInDays(days));
    }
    if args.old_generation {
        spec = spec.old_generation();
    }
    if args.tac {
        spec = spec.temporary_access();
    }
    if let Some(pin) = &args.pin {
        spec = spec.pin(pin);
    }
    if let Some(puk) = &args.puk {
        spec = spec.puk(puk);
    }
    if let Some(tries) = args.pin_tries {
        spec = spec.pin_tries(tries);
    }
    if let Some(key) = &args.management_key {
        let bytes = zeroize::Zeroizing::new(hex::decode(key).map_err(|_| {
            CliError::Usage(
                "--management-key must be 32 hex digits (an AES-128 key), e.g. \
                 000102030405060708090a0b0c0d0e0f"
                    .into(),
            )
        })?);
        spec = spec.management_key(&bytes);
    }
    let provisioned = provision::provision(&ca, &spec)?;

    if let Some(dir) = &args.certs_dir {
        std::fs::create_dir_all(dir).map_err(|source| CliError::Io {
            what: "could not create the certificates directory",
            path: dir.clone(),
            source,
        })?;
        for (slot, der) in &provisioned.certificates {
            let path = dir.join(format!("{}.pem", slot_hex(*slot)));
            std::fs::write(&path, provision::certificate_pem(der)).map_err(|source| {
                CliError::Io {
                    what: "could not write the certificate",
                    path: path.clone(),
                    source,
                }
            })?;
        }
    }
    provisioned.card.save(&args.out)?;
    let profile = &provisioned.card.profile;
    println!(
        "provisioned {} card {} for {} (UUID {}) in {}",
        kind_name(profile.kind),
        profile.card_serial,
        display_name(&profile.holder_name),
        profile.holder_uuid,
        args.out.display()
    );
    Ok(())
}

/// The pid file of the `vcard insert` holding `port`.
fn pid_file(port: u16) -> PathBuf {
    let dir = std::env::var_os("CARDGATE_LAB_RUN_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_RUN_DIR), PathBuf::from);
    dir.join(format!("vcard-{port}.pid"))
}

/// The pid recorded in a pid file, if the file exists and holds one.
fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether `pid` is a running `vcard` process (not a recycled pid of something else).
fn is_running_vcard(pid: i32) -> bool {
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmdline) => {
            let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
            let argv0 = String::from_utf8_lossy(argv0);
            let running = Path::new(argv0.as_ref())
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vcard"));
            // A zombie has an empty cmdline: it no longer holds the card.
            running && !is_zombie(pid)
        }
        Err(_) => false,
    }
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let after_name = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
            Some(after_name == 'Z')
        })
        .unwrap_or(false)
}

/// Removes the pid file when `vcard insert` ends, however it ends.
struct PidFileGuard(PathBuf);

impl Drop for PidFileGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn run_insert(args: &InsertArgs) -> Result<(), CliError> {
    let pid_path = pid_file(args.reader_port);
    if let Some(pid) = read_pid(&pid_path) {
        let own = i32::try_from(std::process::id()).ok();
        if Some(pid) != own && is_running_vcard(pid) {
            return Err(CliError::PortBusy {
                port: args.reader_port,
                pid,
            });
        }
    }
    let addr = (args.host.as_str(), args.reader_port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| {
            CliError::Usage(format!(
                "--host {:?} is not a host name or address this machine can resolve",
                args.host
            ))
        })?;

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).map_err(|source| CliError::Io {
            what: "could not install the signal handler for",
            path: PathBuf::from(format!("signal {signal}")),
            source,
        })?;
    }

    let card = open_card(&args.card)?;
    let card_file = CardFile::load(&args.card)?;
    let inserted = vpcd::insert(addr, card).map_err(|e| match e {
        VpcdError::NoReader { addr, .. } => CliError::NoReader { addr },
        other => CliError::Vpcd(other),
    })?;

    let pid = std::process::id();
    let pid_dir = pid_path.parent().map(Path::to_path_buf).unwrap_or_default();
    std::fs::create_dir_all(&pid_dir)
        .and_then(|()| std::fs::write(&pid_path, format!("{pid}\n")))
        .map_err(|source| CliError::Io {
            what: "could not write the pid file",
            path: pid_path.clone(),
            source,
        })?;
    let _guard = PidFileGuard(pid_path);

    println!(
        "inserted card {} ({}) into the vpcd reader at {addr} (pid {pid}); stop with Ctrl-C \
         or `vcard remove --reader-port {}`",
        card_file.profile.card_serial,
        display_name(&card_file.profile.holder_name),
        args.reader_port
    );
    let _ = std::io::stdout().flush();

    loop {
        if stop.load(Ordering::SeqCst) {
            let apdus = inserted.apdu_count();
            inserted.remove().map_err(CliError::Vpcd)?;
            println!(
                "removed card {} after {apdus} APDUs",
                card_file.profile.card_serial
            );
            return Ok(());
        }
        if !inserted.is_connected() {
            let apdus = inserted.apdu_count();
            inserted.wait().map_err(CliError::Vpcd)?;
            println!(
                "the reader at {addr} closed the connection (pcscd stopped or dropped the \
                 card) after {apdus} APDUs"
            );
            return Ok(());
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Opens the card file as a PIV applet that writes its counters back to the file.
fn open_card(path: &Path) -> Result<Box<dyn Card>, CliError> {
    let applet = cardgate_vcard::applet::PivApplet::open(path)?;
    Ok(Box::new(applet))
}

fn run_remove(args: &RemoveArgs) -> Result<(), CliError> {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;

    let path = pid_file(args.reader_port);
    let Some(pid) = read_pid(&path) else {
        return Err(CliError::NothingInserted {
            port: args.reader_port,
            path,
        });
    };
    if !is_running_vcard(pid) {
        let _ = std::fs::remove_file(&path);
        println!(
            "the vcard insert on reader port {} (pid {pid}) had already ended; removed its \
             stale pid file",
            args.reader_port
        );
        return Ok(());
    }
    match kill(Pid::from_raw(pid), Signal::SIGTERM) {
        Ok(()) => {}
        Err(nix::Error::ESRCH) => {}
        Err(source) => return Err(CliError::Signal { pid, source }),
    }
    let deadline = Instant::now() + REMOVE_TIMEOUT;
    // Done when the process has removed its pid file (the card is out) or is gone.
    while path.exists() && is_running_vcard(pid) {
        if Instant::now() >= deadline {
            return Err(CliError::RemoveTimedOut { pid });
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    let _ = std::fs::remove_file(&path);
    println!(
        "removed the card on reader port {} (vcard pid {pid})",
        args.reader_port
    );
    Ok(())
}

/// What `vcard show` reports. Holds no secret: values of passcode, unlock code and keys
/// never enter it.
#[derive(Serialize, Debug)]
struct CardReport {
    holder_name: String,
    holder_uuid: String,
    card_serial: String,
    kind: CardKind,
    old_generation: bool,
    notes: Vec<String>,
    atr: String,
    pin_tries_left: u8,
    pin_max_tries: u8,
    puk_tries_left: u8,
    puk_max_tries: u8,
    management_key_algorithm: String,
    slots: Vec<SlotReport>,
    objects: Vec<ObjectReport>,
}

#[derive(Serialize, Debug)]
struct SlotReport {
    slot: String,
    name: &'static str,
    key_algorithm: Option<KeyAlgorithm>,
    pin_policy: Option<String>,
    certificate: Option<CertificateReport>,
}

#[derive(Serialize, Debug)]
struct CertificateReport {
    subject: String,
    issuer: String,
    serial: String,
    not_before: String,
    not_after: String,
    expired: bool,
}

#[derive(Serialize, Debug)]
struct ObjectReport {
    tag: String,
    name: &'static str,
    bytes: usize,
}

fn run_show(args: &ShowArgs) -> Result<(), CliError> {
    let card = CardFile::load(&args.card)?;
    let report = report(&card);
    if args.json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| CliError::Usage(format!("could not encode the report as JSON: {e}")))?;
        println!("{text}");
    } else {
        print_report(&args.card, &report);
    }
    Ok(())
}

fn report(card: &CardFile) -> CardReport {
    let slots = Slot::ALL
        .into_iter()
        .map(|slot| {
            let key = card.slots.get(&slot);
            let certificate = card
                .objects
                .get(&slot.certificate_object())
                .and_then(|o| objects::certificate_from_object(&o.0))
                .and_then(|der| certificate_report(&der));
            SlotReport {
                slot: slot_hex(slot),
                name: slot_name(slot),
                key_algorithm: key.map(|k| k.algorithm),
                pin_policy: key.map(|k| format!("{:?}", k.pin_policy).to_lowercase()),
                certificate,
            }
        })
        .collect();
    let objects = card
        .objects
        .iter()
        .map(|(tag, content)| ObjectReport {
            tag: tag.to_string(),
            name: object_name(tag.0),
            bytes: content.0.len(),
        })
        .collect();
    CardReport {
        holder_name: card.profile.holder_name.clone(),
        holder_uuid: card.profile.holder_uuid.clone(),
        card_serial: card.profile.card_serial.clone(),
        kind: card.profile.kind,
        old_generation: provision::is_old_generation_serial(&card.profile.card_serial),
        notes: card.profile.notes.clone(),
        atr: hex::encode_upper(&card.atr),
        pin_tries_left: card.pin.tries_left,
        pin_max_tries: card.pin.max_tries,
        puk_tries_left: card.puk.tries_left,
        puk_max_tries: card.puk.max_tries,
        management_key_algorithm: match card.management_key.algorithm {
            ManagementKeyAlgorithm::Aes128 => "AES-128".to_owned(),
            ManagementKeyAlgorithm::Tdes => "3DES".to_owned(),
        },
        slots,
        objects,
    }
}

fn certificate_report(der: &[u8]) -> Option<CertificateReport> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let format = |t: x509_parser::time::ASN1Time| {
        t.to_datetime()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| t.to_string())
    };
    Some(CertificateReport {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial: cert.raw_serial_as_string(),
        not_before: format(cert.validity().not_before),
        not_after: format(cert.validity().not_after),
        expired: cert.validity().not_after.to_datetime() < time::OffsetDateTime::now_utc(),
    })
}

fn print_report(path: &Path, r: &CardReport) {
    println!("Card file:      {}", path.display());
    println!("Holder:         {}", display_name(&r.holder_name));
    println!("UUID:           {}", r.holder_uuid);
    let generation = if r.old_generation {
        " (old generation: cannot be renewed or unlocked)"
    } else {
        ""
    };
    println!("Card serial:    {}{generation}", r.card_serial);
    println!("Kind:           {}", kind_name(r.kind));
    println!("ATR:            {}", r.atr);
    println!(
        "Passcode:       {} of {} tries left{}",
        r.pin_tries_left,
        r.pin_max_tries,
        if r.pin_tries_left == 0 {
            " (BLOCKED)"
        } else {
            ""
        }
    );
    println!(
        "Unlock code:    {} of {} tries left{}",
        r.puk_tries_left,
        r.puk_max_tries,
        if r.puk_tries_left == 0 {
            " (BLOCKED)"
        } else {
            ""
        }
    );
    println!("Management key: {}", r.management_key_algorithm);
    for note in &r.notes {
        println!("Note:           {note}");
    }
    println!("Slots:");
    for s in &r.slots {
        let key = s
            .key_algorithm
            .map_or("no key", provision::key_algorithm_name);
        let policy = s.pin_policy.as_deref().unwrap_or("-");
        println!("  {} {:<22} {key}, passcode {policy}", s.slot, s.name);
        match &s.certificate {
            Some(c) => {
                println!("     subject:   {}", c.subject);
                println!("     issuer:    {}", c.issuer);
                println!(
                    "     not after: {}{}",
                    c.not_after,
                    if c.expired { " (EXPIRED)" } else { "" }
                );
            }
            None => println!("     no certificate"),
        }
    }
    println!("Objects:");
    for o in &r.objects {
        println!("  {:<6} {:<28} {} bytes", o.tag, o.name, o.bytes);
    }
}

fn slot_hex(slot: Slot) -> String {
    format!("{:02X}", slot.key_reference())
}

fn slot_name(slot: Slot) -> &'static str {
    match slot {
        Slot::Authentication => "PIV Authentication",
        Slot::Signature => "Digital Signature",
        Slot::KeyManagement => "Key Management",
        Slot::CardAuthentication => "Card Authentication",
    }
}

fn object_name(tag: u32) -> &'static str {
    match tag {
        0x5FC107 => "Card Capability Container",
        0x5FC102 => "CHUID",
        0x7E => "Discovery",
        0x5FC109 => "Printed Information",
        0x5FC106 => "Security Object",
        0x5FC10C => "Key History",
        0x5FC105 => "Cert: PIV Authentication",
        0x5FC10A => "Cert: Digital Signature",
        0x5FC10B => "Cert: Key Management",
        0x5FC101 => "Cert: Card Authentication",
        _ => "other",
    }
}

fn kind_name(kind: CardKind) -> &'static str {
    match kind {
        CardKind::Permanent => "permanent",
        CardKind::TemporaryAccess => "temporary access",
    }
}

fn display_name(name: &str) -> &str {
    if name.is_empty() { "(blank TAC)" } else { name }
}
