//! `cardgated --demo`: the whole agent with no hardware and no pcscd. A [`DemoWorld`] holds
//! a fresh card CA, an in-process spine-sim on loopback that knows two holders, and virtual
//! cards for them; the demo puts one card in the in-process virtual reader, starts a private
//! D-Bus daemon (unless given `--bus ADDRESS`) and serves on it, printing what to try.
//!
//! The e2e tests build the same world and put its cards behind the lab's real pcscd instead.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cardgate_reader::VirtualBackend;
use cardgate_spine_sim::{RunningSim, SimConfig, SpineSim};
use cardgate_vcard::applet::PivApplet;
use cardgate_vcard::card_file::CardFile;
use cardgate_vcard::provision::{CardSpec, TestCa, provision};

use crate::config::Config;
use crate::error::DaemonError;

/// The pharmacy the demo workstation serves.
pub const DEMO_ODS: &str = "FA123";
/// The first holder: a pharmacist at the demo pharmacy and a locum profile.
pub const PHARMACIST: (&str, &str) = ("Asha Patel", "555000111222");
/// The second holder: a dispenser (no SCR access).
pub const DISPENSER: (&str, &str) = ("Ben Okafor", "555000333444");
/// Both demo cards' passcode.
pub const DEMO_PASSCODE: &str = "k2468m";

fn demo_error(what: &str, e: impl std::fmt::Display) -> DaemonError {
    DaemonError::Demo(format!("{what}: {e}"))
}

/// The demo's spine-sim directory: the two holders, their role profiles.
fn sim_toml(dir: &Path) -> String {
    let d = dir.display();
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
listen_mtls = "127.0.0.1:0"
service_dir = "{d}/service"
card_ca_dir = "{d}/card-ca"
outbox = "{d}/outbox.jsonl"
max_idle_time = 900

[[users]]
uid = "{pharmacist}"
name = "{pharmacist_name}"
[[users.role_profiles]]
id = "RP-PHARM-FA123"
job_role = "Pharmacist"
ods_code = "FA123"
organisation_name = "High Street Pharmacy"
activities = ["eps.nominate", "eps.download", "eps.return", "eps.dispense-notify", "eps.claim", "scr.view"]
[[users.role_profiles]]
id = "RP-LOCUM-FFFFF"
job_role = "Locum Pharmacist"
ods_code = "FFFFF"
organisation_name = "Locum organisation"
activities = ["eps.download", "eps.dispense-notify"]

[[users]]
uid = "{dispenser}"
name = "{dispenser_name}"
[[users.role_profiles]]
id = "RP-DISP-FA123"
job_role = "Dispenser"
ods_code = "FA123"
organisation_name = "High Street Pharmacy"
activities = ["eps.download", "eps.return", "eps.dispense-notify"]
"#,
        pharmacist = PHARMACIST.1,
        pharmacist_name = PHARMACIST.0,
        dispenser = DISPENSER.1,
        dispenser_name = DISPENSER.0,
    )
}

/// A card CA, a running spine-sim that trusts it, and the files the agent's configuration
/// points at, all under one directory.
#[derive(Debug)]
pub struct DemoWorld {
    dir: PathBuf,
    ca: TestCa,
    sim: RunningSim,
}

impl DemoWorld {
    /// Builds the world in `dir` (which must be empty or absent) and starts spine-sim.
    pub async fn start(dir: &Path) -> Result<DemoWorld, DaemonError> {
        DemoWorld::start_with(dir, "").await
    }

    /// As [`DemoWorld::start`], with `extra_sim_toml` appended to spine-sim's configuration:
    /// more `[[users]]` and `[[cards]]` (registered contacts, sponsors, unlock codes) for the
    /// staff-task suites.
    pub async fn start_with(dir: &Path, extra_sim_toml: &str) -> Result<DemoWorld, DaemonError> {
        std::fs::create_dir_all(dir).map_err(|source| DaemonError::Io {
            what: format!("creating {}", dir.display()),
            source,
        })?;
        let ca = TestCa::generate("Cardgate Demo Card CA").map_err(|e| demo_error("card CA", e))?;
        ca.save(&dir.join("card-ca"))
            .map_err(|e| demo_error("card CA", e))?;
        let write = |name: &str, text: &str| {
            std::fs::write(dir.join(name), text).map_err(|source| DaemonError::Io {
                what: format!("writing {name}"),
                source,
            })
        };
        write("card-ca.pem", &ca.certificate_pem())?;
        let identity = cardgate_spine_sim::init_service_dir(&dir.join("service"))
            .map_err(|e| demo_error("spine-sim service identity", e))?;
        write("service-ca.pem", &identity.ca_pem)?;
        let config = SimConfig::from_toml(&format!("{}\n{extra_sim_toml}", sim_toml(dir)))
            .map_err(|e| demo_error("spine-sim config", e))?;
        let sim = SpineSim::start(config)
            .await
            .map_err(|e| demo_error("spine-sim", e))?;
        Ok(DemoWorld {
            dir: dir.to_path_buf(),
            ca,
            sim,
        })
    }

    /// A card for `(name, uuid)` issued by the world's CA, passcode [`DEMO_PASSCODE`].
    pub fn card(&self, holder: (&str, &str)) -> Result<CardFile, DaemonError> {
        provision(
            &self.ca,
            &CardSpec::new(holder.0, holder.1).pin(DEMO_PASSCODE),
        )
        .map(|p| p.card)
        .map_err(|e| demo_error("provisioning a card", e))
    }

    /// A card from `spec` (serial, unlock code, management key, validity as the test needs)
    /// issued by the world's CA.
    pub fn card_from(&self, spec: &CardSpec) -> Result<CardFile, DaemonError> {
        provision(&self.ca, spec)
            .map(|p| p.card)
            .map_err(|e| demo_error("provisioning a card", e))
    }

    /// The agent's configuration for this world, serving on `bus`.
    pub fn config(&self, bus: &str) -> Result<Config, DaemonError> {
        let mut config = Config::demo(&self.dir, &self.sim.url(), &self.sim.mtls_url())?;
        config.ipc.bus = bus.to_owned();
        Ok(config)
    }

    /// The running spine-sim.
    pub fn sim(&self) -> &RunningSim {
        &self.sim
    }

    /// The directory holding everything.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// A private `dbus-daemon --session`, killed on drop.
#[derive(Debug)]
pub struct PrivateBus {
    address: String,
    pid: u32,
}

impl PrivateBus {
    /// Starts one (LAB.md, "A private D-Bus").
    pub fn start() -> Result<PrivateBus, DaemonError> {
        let output = std::process::Command::new("dbus-daemon")
            .args(["--session", "--print-address=1", "--print-pid=1", "--fork"])
            .output()
            .map_err(|e| demo_error("starting dbus-daemon (apt-get install dbus)", e))?;
        let text = String::from_utf8_lossy(&output.stdout);
        let mut lines = text.lines();
        let address = lines.next().unwrap_or_default().trim().to_owned();
        let pid = lines
            .next()
            .and_then(|l| l.trim().parse().ok())
            .ok_or_else(|| demo_error("dbus-daemon", "printed no pid"))?;
        if address.is_empty() {
            return Err(demo_error("dbus-daemon", "printed no address"));
        }
        Ok(PrivateBus { address, pid })
    }

    /// The bus address.
    pub fn address(&self) -> &str {
        &self.address
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .arg(self.pid.to_string())
            .status();
    }
}

/// Runs the demo until `shutdown` completes.
pub async fn run(
    bus: Option<String>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), DaemonError> {
    let dir = std::env::temp_dir().join(format!("cardgated-demo-{}", std::process::id()));
    let world = DemoWorld::start(&dir).await?;
    let private = match &bus {
        Some(_) => None,
        None => Some(PrivateBus::start()?),
    };
    let address = match (&bus, &private) {
        (Some(address), _) => address.clone(),
        (None, Some(private)) => private.address().to_owned(),
        (None, None) => return Err(demo_error("bus", "none")),
    };
    let config = world.config(&address)?;
    let backend = VirtualBackend::new();
    let reader = backend.attach_reader("Demo Reader 00 00");
    let card = world.card(PHARMACIST)?;
    backend
        .insert(&reader, Box::new(PivApplet::new(card)))
        .map_err(|_| demo_error("virtual reader", "occupied"))?;
    let b = format!("busctl --address={address}");
    let call = "org.cardgate.Agent /org/cardgate/Agent org.cardgate.Agent1";
    println!(
        "cardgated demo: {name}'s card is in \"{reader}\"; spine-sim on {url}; files in {dir}\n\
         Try (in another terminal):\n  \
         {b} introspect org.cardgate.Agent /org/cardgate/Agent\n  \
         {b} get-property {call} State\n  \
         {b} call {call} Authorise ss download {ods}\n  \
         {b} call {call} Login sb {pin} false\n  \
         {b} call {call} SelectRoleProfile s RP-PHARM-FA123\n  \
         {b} call {call} Authorise ss download {ods}\n  \
         {b} call {call} Logout\n  \
         {b} monitor org.cardgate.Agent\n\
         (the demo passcode is {pin}; Ctrl-C stops the demo)",
        name = PHARMACIST.0,
        url = world.sim().url(),
        dir = dir.display(),
        ods = DEMO_ODS,
        pin = DEMO_PASSCODE,
    );
    let result = crate::run(config, Arc::new(backend), Some(address), shutdown).await;
    drop(private);
    result
}
