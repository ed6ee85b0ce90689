//! [`Lab`]: one private pcscd with the two vpcd readers, its configuration and log in a
//! temporary directory, and helpers that wait for what pcscd reports rather than sleeping.

use std::ffi::CString;
use std::fmt;
use std::fs::OpenOptions;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use cardgate_vcard::Card;
use cardgate_vcard::vpcd::{self, DEFAULT_PORT, InsertedCard};

use crate::packages::{VPCD_DRIVER, ensure_lab_packages, find_program};
use crate::{LabError, in_lab_namespace};

/// How long pcscd may take to list both readers and open both vpcd ports.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a reader may take to report a card present or gone (pcscd polls vpcd about
/// every 400 ms; the margin is for a loaded 2-core CI machine).
const STATE_TIMEOUT: Duration = Duration::from_secs(10);
/// The reader name vsmartcard's own configuration uses; pcscd appends " 00 00"/" 00 01".
const FRIENDLY_NAME: &str = "Virtual PCD";
/// Where pcscd keeps its socket and pid file (a private tmpfs in the lab namespace).
const PCSCD_RUN_DIR: &str = "/run/pcscd";

/// One of the two readers a vpcd driver entry gives (LAB.md: one entry per pcscd).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReaderSlot {
    /// `Virtual PCD 00 00`, vpcd port 35963.
    First,
    /// `Virtual PCD 00 01`, vpcd port 35964.
    Second,
}

impl ReaderSlot {
    /// Both slots, in order.
    pub const ALL: [ReaderSlot; 2] = [ReaderSlot::First, ReaderSlot::Second];

    /// The slot's index as pcscd numbers it (the last two digits of the reader name).
    pub fn index(self) -> u16 {
        match self {
            ReaderSlot::First => 0,
            ReaderSlot::Second => 1,
        }
    }
}

impl fmt::Display for ReaderSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{FRIENDLY_NAME} 00 {:02}", self.index())
    }
}

/// How the lab runs pcscd.
#[derive(Clone, Debug, Default)]
pub struct LabOptions {
    /// Run pcscd with `-a -d`, so its log holds every APDU and response (slows it down).
    pub apdu_log: bool,
    /// Run pcscd with no reader at all (an empty reader.conf.d): a workstation whose reader
    /// is unplugged, for what the agent costs with nothing to watch. Inserting then fails.
    pub no_readers: bool,
}

/// Only one lab per process: pcscd's socket path in the namespace is fixed, so tests that
/// run in parallel threads take turns instead of failing.
static LAB_IN_USE: Mutex<bool> = Mutex::new(false);
static LAB_RELEASED: Condvar = Condvar::new();

/// Holds the process's lab slot until dropped.
struct LabTurn;

impl LabTurn {
    fn take() -> LabTurn {
        let mut in_use = LAB_IN_USE.lock().unwrap_or_else(|p| p.into_inner());
        while *in_use {
            in_use = LAB_RELEASED.wait(in_use).unwrap_or_else(|p| p.into_inner());
        }
        *in_use = true;
        LabTurn
    }
}

impl Drop for LabTurn {
    fn drop(&mut self) {
        let mut in_use = LAB_IN_USE.lock().unwrap_or_else(|p| p.into_inner());
        *in_use = false;
        LAB_RELEASED.notify_one();
    }
}

/// A private pcscd with two vpcd readers. Dropping it stops pcscd.
pub struct Lab {
    options: LabOptions,
    dir: tempfile::TempDir,
    pcscd: Option<Child>,
    // Declared last: released only after pcscd is gone.
    _turn: LabTurn,
}

impl fmt::Debug for Lab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lab")
            .field("dir", &self.dir.path())
            .field("pcscd_pid", &self.pcscd.as_ref().map(Child::id))
            .finish()
    }
}

impl Lab {
    /// Starts pcscd with the lab's own reader configuration and returns once both readers
    /// are listed through PC/SC and both vpcd ports accept connections.
    ///
    /// Must run inside [`crate::enter_lab_namespace`]; waits if another lab in this process
    /// is still alive.
    pub fn start() -> Result<Lab, LabError> {
        Lab::start_with(LabOptions::default())
    }

    /// [`Lab::start`] with options (e.g. pcscd's APDU log).
    pub fn start_with(options: LabOptions) -> Result<Lab, LabError> {
        if !in_lab_namespace() {
            return Err(LabError::NotInLabNamespace);
        }
        ensure_lab_packages()?;
        let turn = LabTurn::take();
        let dir = tempfile::Builder::new()
            .prefix("cardgate-lab-")
            .tempdir()
            .map_err(LabError::io("creating the lab directory"))?;
        let conf_dir = dir.path().join("reader.conf.d");
        std::fs::create_dir(&conf_dir).map_err(LabError::io("creating reader.conf.d"))?;
        if !options.no_readers {
            std::fs::write(
                conf_dir.join("vpcd"),
                format!(
                    "FRIENDLYNAME \"{FRIENDLY_NAME}\"\n\
                     DEVICENAME   /dev/null:0x{DEFAULT_PORT:04X}\n\
                     LIBPATH      {VPCD_DRIVER}\n\
                     CHANNELID    0x{DEFAULT_PORT:04X}\n"
                ),
            )
            .map_err(LabError::io("writing the vpcd reader configuration"))?;
        }
        let mut lab = Lab {
            options,
            dir,
            pcscd: None,
            _turn: turn,
        };
        lab.restart_pcscd()?;
        Ok(lab)
    }

    /// The PC/SC name of a reader, e.g. `Virtual PCD 00 00`.
    pub fn reader_name(&self, slot: ReaderSlot) -> String {
        slot.to_string()
    }

    /// Where a card connects to be inserted into `slot` (loopback in the lab's network
    /// namespace: 35963 for the first reader, 35964 for the second).
    pub fn vpcd_addr(&self, slot: ReaderSlot) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, DEFAULT_PORT + slot.index()))
    }

    /// The reader.conf.d directory pcscd runs with (`pcscd -c`); also names this lab's pcscd
    /// on the process list (`pgrep -f`).
    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().join("reader.conf.d")
    }

    /// Where pcscd's output goes (appended across restarts).
    pub fn pcscd_log_path(&self) -> PathBuf {
        self.dir.path().join("pcscd.log")
    }

    /// pcscd's output so far, to print when a test fails.
    pub fn pcscd_log(&self) -> String {
        std::fs::read_to_string(self.pcscd_log_path())
            .unwrap_or_else(|e| format!("(pcscd log unreadable: {e})"))
    }

    /// pcscd's process id, while it runs.
    pub fn pcscd_pid(&self) -> Option<u32> {
        self.pcscd.as_ref().map(Child::id)
    }

    /// Inserts `card` into `slot` and returns once pcscd reports the reader's card present
    /// (`SCardGetStatusChange`), so the caller can connect at once.
    pub fn insert(&self, slot: ReaderSlot, card: Box<dyn Card>) -> Result<InsertedCard, LabError> {
        if self.pcscd.is_none() {
            return Err(LabError::PcscdStopped);
        }
        let inserted = vpcd::insert(self.vpcd_addr(slot), card)?;
        // On timeout `inserted` is dropped, which takes the card out again.
        self.wait_until_present(slot, STATE_TIMEOUT)?;
        Ok(inserted)
    }

    /// Waits until pcscd reports a card in `slot`.
    pub fn wait_until_present(&self, slot: ReaderSlot, timeout: Duration) -> Result<(), LabError> {
        self.wait_for_reader(slot, true, timeout)
    }

    /// Waits until pcscd reports `slot` empty (after a removal, up to ~400 ms with vpcd).
    pub fn wait_until_empty(&self, slot: ReaderSlot, timeout: Duration) -> Result<(), LabError> {
        self.wait_for_reader(slot, false, timeout)
    }

    /// Kills pcscd outright (SIGKILL), as a crash would: clients' contexts go stale and
    /// inserted cards see their connection close.
    pub fn kill_pcscd(&mut self) -> Result<(), LabError> {
        if let Some(mut child) = self.pcscd.take() {
            // Already exited is fine: the goal is that it no longer runs.
            let _ = child.kill();
            child.wait().map_err(LabError::io("reaping pcscd"))?;
        }
        Ok(())
    }

    /// Stops pcscd if it runs, then starts it again and waits until both readers are back.
    pub fn restart_pcscd(&mut self) -> Result<(), LabError> {
        self.kill_pcscd()?;
        // A killed pcscd leaves its socket and pid file behind; the run dir is the lab's own.
        for stale in ["pcscd.comm", "pcscd.pid"] {
            let path = Path::new(PCSCD_RUN_DIR).join(stale);
            if path.exists() {
                std::fs::remove_file(&path)
                    .map_err(LabError::io(format!("removing {}", path.display())))?;
            }
        }
        let log_path = self.pcscd_log_path();
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(LabError::io(format!("opening {}", log_path.display())))?;
        writeln!(log, "==== cardgate-lab: starting pcscd ====")
            .map_err(LabError::io("writing the pcscd log"))?;
        let stderr = log
            .try_clone()
            .map_err(LabError::io("duplicating the pcscd log handle"))?;
        let pcscd = find_program("pcscd").unwrap_or_else(|| PathBuf::from("/usr/sbin/pcscd"));
        let mut command = Command::new(pcscd);
        command
            .arg("--foreground")
            .arg("--config")
            .arg(self.config_dir());
        if self.options.apdu_log {
            command.args(["--apdu", "--debug"]);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr))
            .spawn()
            .map_err(LabError::io("starting pcscd"))?;
        self.pcscd = Some(child);
        self.wait_until_ready()
    }

    fn wait_until_ready(&mut self) -> Result<(), LabError> {
        let started = Instant::now();
        // With no readers, pcscd answering (an empty list) is all there is to wait for.
        let slots: &[ReaderSlot] = if self.options.no_readers {
            &[]
        } else {
            &ReaderSlot::ALL
        };
        let wanted: Vec<String> = slots.iter().map(|s| s.to_string()).collect();
        let mut missing = String::from("pcscd not answering yet");
        while started.elapsed() < START_TIMEOUT {
            if let Some(child) = self.pcscd.as_mut() {
                if let Some(status) = child
                    .try_wait()
                    .map_err(LabError::io("checking on pcscd"))?
                {
                    self.pcscd = None;
                    return Err(LabError::PcscdExited {
                        status: status.to_string(),
                        log_path: self.pcscd_log_path(),
                        log: self.pcscd_log(),
                    });
                }
            }
            missing = match listed_readers() {
                Err(e) => format!("pcscd not answering ({e})"),
                Ok(listed) => {
                    let absent: Vec<&String> =
                        wanted.iter().filter(|w| !listed.contains(w)).collect();
                    let closed: Vec<SocketAddr> = slots
                        .iter()
                        .map(|s| self.vpcd_addr(*s))
                        .filter(|a| !port_accepts(*a))
                        .collect();
                    if absent.is_empty() && closed.is_empty() {
                        return Ok(());
                    }
                    format!("readers not listed: {absent:?}, vpcd ports not accepting: {closed:?}")
                }
            };
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(LabError::PcscdNotReady {
            waited: START_TIMEOUT,
            missing,
            log_path: self.pcscd_log_path(),
            log: self.pcscd_log(),
        })
    }

    fn wait_for_reader(
        &self,
        slot: ReaderSlot,
        present: bool,
        timeout: Duration,
    ) -> Result<(), LabError> {
        if self.pcscd.is_none() {
            return Err(LabError::PcscdStopped);
        }
        let started = Instant::now();
        // A fresh context each time: an old one stays "valid" but dead after a restart.
        let context = pcsc::Context::establish(pcsc::Scope::User)
            .map_err(LabError::pcsc("SCardEstablishContext"))?;
        let name = CString::new(self.reader_name(slot)).map_err(|e| LabError::Io {
            what: "reader name".into(),
            source: std::io::Error::other(e),
        })?;
        let mut states = [pcsc::ReaderState::new(name, pcsc::State::UNAWARE)];
        loop {
            let left = timeout.saturating_sub(started.elapsed());
            match context.get_status_change(left, &mut states) {
                Ok(()) => {}
                Err(pcsc::Error::Timeout) => {}
                Err(e) => return Err(LabError::pcsc("SCardGetStatusChange")(e)),
            }
            let state = states[0].event_state();
            let is_present = state.contains(pcsc::State::PRESENT);
            let is_empty = state.contains(pcsc::State::EMPTY);
            if (present && is_present) || (!present && is_empty) {
                return Ok(());
            }
            if started.elapsed() >= timeout {
                return Err(LabError::ReaderStateTimeout {
                    reader: self.reader_name(slot),
                    expected: if present { "present" } else { "empty" },
                    waited: timeout,
                    log_path: self.pcscd_log_path(),
                    log: self.pcscd_log(),
                });
            }
            states[0].sync_current_state();
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Nothing to report to from Drop; the pid namespace kills pcscd anyway at exit.
        let _ = self.kill_pcscd();
    }
}

/// The readers pcscd lists now (`SCardListReaders`), through a fresh context.
fn listed_readers() -> Result<Vec<String>, pcsc::Error> {
    let context = pcsc::Context::establish(pcsc::Scope::User)?;
    let readers = match context.list_readers_owned() {
        Ok(r) => r,
        Err(pcsc::Error::NoReadersAvailable) => Vec::new(),
        Err(e) => return Err(e),
    };
    Ok(readers
        .into_iter()
        .map(|r| r.to_string_lossy().into_owned())
        .collect())
}

/// Whether something accepts on `addr`. pcscd's vpcd driver takes the probe for a card that
/// died before answering its ATR request, which it ignores.
fn port_accepts(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}
