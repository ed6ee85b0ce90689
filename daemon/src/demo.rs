//! `cardgated --demo`: the whole agent with no hardware and no pcscd. A [`DemoWorld`] holds
//! a fresh card CA, an in-process spine-sim on loopback that knows two holders, and virtual
//! cards for them; the demo puts one card in the in-process virtual reader, starts a private
//! D-Bus daemon (unless given `--bus ADDRESS`) and serves on it, printing what to try.
//!
//! The e2e tests build the same world and put its cards behind the lab's real pcscd instead.
//!
//! `cardgated --demo` itself runs a richer world ([`DemoWorld::start_demo`]): four holders'
//! cards and three readers (one with a PIN pad), and serves `org.cardgate.Demo1`
//! ([`controls`]) so that a person can take cards out, put them back and make the idle timers
//! run out: every signal of the interface can be seen.

mod controls;

pub use controls::{DemoCard, DemoControls};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cardgate_reader::{VirtualBackend, VirtualReaderModel};
use cardgate_spine_sim::{RunningSim, SimConfig, SpineSim};
use cardgate_vcard::Card;
use cardgate_vcard::applet::PivApplet;
use cardgate_vcard::card_file::CardFile;
use cardgate_vcard::provision::{CardSpec, TestCa, Validity, provision};

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
/// Where `cardgated --demo` serves `org.cardgate.Demo1` (never the production daemon).
pub use cardgate_ipc::DEMO_OBJECT_PATH;
/// The demo's readers: two plain ones, then one with a PIN pad (an Omnikey 3821 as the
/// virtual backend emulates it).
pub const DEMO_READERS: [&str; 3] = [
    "Demo Reader 00 00",
    "Demo Reader 00 01",
    "Demo PIN Pad 00 02",
];
/// The demo cards' management key (renewal): a demo value, not a secret.
const DEMO_MANAGEMENT_KEY: [u8; 16] = *b"cardgate-demo-mk";

/// The cards `cardgated --demo` offers, in the order `Demo1.Cards` lists them.
pub const DEMO_CARDS: [DemoCard; 4] = [
    DemoCard {
        name: "pharmacist",
        holder_name: PHARMACIST.0,
        holder_uuid: PHARMACIST.1,
        card_serial: "6516770201",
        unlock_code: "80264511",
        shows: "a pharmacist at FA123 who also holds a locum profile (FFFFF)",
    },
    DemoCard {
        name: "dispenser",
        holder_name: DISPENSER.0,
        holder_uuid: DISPENSER.1,
        card_serial: "6516770202",
        unlock_code: "80264512",
        shows: "a dispenser with a registered email (self-service unlock) whose passcode expires in 10 days",
    },
    DemoCard {
        name: "manager",
        holder_name: "Priya Shah",
        holder_uuid: "555000777888",
        card_serial: "6516770203",
        unlock_code: "80264513",
        shows: "the pharmacy manager, Sponsor/LSA (unlocks other cards, Temporary Access Cards)",
    },
    DemoCard {
        name: "expiring",
        holder_name: "Tom Reid",
        holder_uuid: "555000999000",
        card_serial: "6516770204",
        unlock_code: "80264514",
        shows: "a pharmacist whose certificate expires in 20 days (renew it)",
    },
];

fn demo_error(what: &str, e: impl std::fmt::Display) -> DaemonError {
    DaemonError::Demo(format!("{what}: {e}"))
}

/// The demo's spine-sim directory: the two holders, their role profiles.
fn sim_toml(dir: &Path, dispenser_extra: &str) -> String {
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
{dispenser_extra}
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

    /// The world `cardgated --demo` runs: [`DemoWorld::start`]'s, the dispenser with a
    /// registered email and a passcode expiring in 10 days, a Sponsor/LSA and a holder whose
    /// certificate is due for renewal, and every card of [`DEMO_CARDS`] known to the RA.
    pub async fn start_demo(dir: &Path) -> Result<DemoWorld, DaemonError> {
        let expires = (time::OffsetDateTime::now_utc() + time::Duration::days(10))
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|e| demo_error("passcode expiry", e))?;
        let dispenser =
            format!("email = \"ben.okafor@nhs.example\"\npasscode_expires_at = \"{expires}\"");
        let [_, _, manager, expiring] = &DEMO_CARDS;
        let mut extra = format!(
            r#"
[[users]]
uid = "{manager_uid}"
name = "{manager_name}"
[[users.role_profiles]]
id = "RP-LSA-FA123"
job_role = "Pharmacy Manager"
ods_code = "FA123"
organisation_name = "High Street Pharmacy"
activities = ["eps.nominate", "eps.download", "eps.return", "eps.dispense-notify", "eps.claim", "scr.view", "admin.unlock", "admin.tac"]

[[users]]
uid = "{expiring_uid}"
name = "{expiring_name}"
[[users.role_profiles]]
id = "RP-PHARM2-FA123"
job_role = "Pharmacist"
ods_code = "FA123"
organisation_name = "High Street Pharmacy"
activities = ["eps.download", "eps.dispense-notify"]
"#,
            manager_uid = manager.holder_uuid,
            manager_name = manager.holder_name,
            expiring_uid = expiring.holder_uuid,
            expiring_name = expiring.holder_name,
        );
        for card in &DEMO_CARDS {
            extra += &format!(
                "\n[[cards]]\nserial = \"{}\"\nuid = \"{}\"\nunlock_code = \"{}\"\n",
                card.card_serial, card.holder_uuid, card.unlock_code
            );
        }
        DemoWorld::build(dir, &dispenser, &extra).await
    }

    /// The card of [`DEMO_CARDS`] entry `card` (the `expiring` one due in 20 days).
    pub fn demo_card(&self, card: &DemoCard) -> Result<CardFile, DaemonError> {
        let validity = if card.name == "expiring" {
            Validity::ExpiresInDays(20)
        } else {
            Validity::Default
        };
        self.card_from(
            &CardSpec::new(card.holder_name, card.holder_uuid)
                .card_serial(card.card_serial)
                .pin(DEMO_PASSCODE)
                .puk(card.unlock_code)
                .management_key(&DEMO_MANAGEMENT_KEY)
                .validity(validity),
        )
    }

    /// As [`DemoWorld::start`], with `extra_sim_toml` appended to spine-sim's configuration:
    /// more `[[users]]` and `[[cards]]` (registered contacts, sponsors, unlock codes) for the
    /// staff-task suites.
    pub async fn start_with(dir: &Path, extra_sim_toml: &str) -> Result<DemoWorld, DaemonError> {
        DemoWorld::build(dir, "", extra_sim_toml).await
    }

    async fn build(
        dir: &Path,
        dispenser_extra: &str,
        extra_sim_toml: &str,
    ) -> Result<DemoWorld, DaemonError> {
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
        let config = SimConfig::from_toml(&format!(
            "{}\n{extra_sim_toml}",
            sim_toml(dir, dispenser_extra)
        ))
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

/// Where the demo writes its bus address for `cardgate demo ...` and example clients:
/// `$XDG_RUNTIME_DIR/cardgate-demo.bus`, else `/tmp/cardgate-demo-UID.bus`.
pub fn bus_address_file() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("cardgate-demo.bus"),
        _ => std::env::temp_dir().join(format!("cardgate-demo-{}.bus", effective_uid())),
    }
}

/// The process's uid, from `/proc/self/status` (the daemon forbids `unsafe`, so no libc).
fn effective_uid() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(str::to_owned))
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Runs the demo until `shutdown` completes.
pub async fn run(
    bus: Option<String>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), DaemonError> {
    let dir = std::env::temp_dir().join(format!("cardgated-demo-{}", std::process::id()));
    let world = DemoWorld::start_demo(&dir).await?;
    let private = match &bus {
        Some(_) => None,
        None => Some(PrivateBus::start()?),
    };
    let address = match (&bus, &private) {
        (Some(address), _) => address.clone(),
        (None, Some(private)) => private.address().to_owned(),
        (None, None) => return Err(demo_error("bus", "none")),
    };
    let mut config = world.config(&address)?;
    let key_path = dir.join("management-key.hex");
    std::fs::write(&key_path, hex::encode(DEMO_MANAGEMENT_KEY)).map_err(|source| {
        DaemonError::Io {
            what: "writing the demo management key".into(),
            source,
        }
    })?;
    config.renewal.management_key = Some(key_path);

    let backend = VirtualBackend::new();
    let [first, second, pad] = DEMO_READERS;
    let readers = vec![
        backend.attach_reader(first),
        backend.attach_reader(second),
        backend.attach_reader_model(pad, VirtualReaderModel::omnikey_3821()),
    ];
    let cards = DEMO_CARDS
        .iter()
        .map(|card| {
            world.demo_card(card).map(|file| {
                (
                    card.clone(),
                    Box::new(PivApplet::new(file)) as Box<dyn Card>,
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let controls = DemoControls::new(
        backend.clone(),
        readers.clone(),
        readers[2].clone(),
        cards,
        dir.join("outbox.jsonl"),
    );
    controls
        .insert("pharmacist", first)
        .map_err(|e| demo_error("the first card", e))?;

    let address_file = bus_address_file();
    std::fs::write(&address_file, format!("{address}\n")).map_err(|source| DaemonError::Io {
        what: format!("writing {}", address_file.display()),
        source,
    })?;
    print_banner(&address, &address_file, &world, &dir);
    let result = crate::serve(
        config,
        Arc::new(backend),
        Some(address),
        shutdown,
        Some(controls),
    )
    .await;
    let _ = std::fs::remove_file(&address_file);
    drop(private);
    result
}

/// What a person can try, printed once the demo is ready to start.
fn print_banner(address: &str, address_file: &Path, world: &DemoWorld, dir: &Path) {
    let b = format!("busctl --address={address}");
    let call = "org.cardgate.Agent /org/cardgate/Agent org.cardgate.Agent1";
    let demo = "org.cardgate.Agent /org/cardgate/Demo org.cardgate.Demo1";
    let cg = "cargo run -q -p cardgate-cli -- demo";
    let cards: String = DEMO_CARDS
        .iter()
        .map(|c| {
            format!(
                "\n  {:<11} {} ({}): {}",
                c.name, c.holder_name, c.holder_uuid, c.shows
            )
        })
        .collect();
    println!(
        "cardgated demo: {name}'s card is in \"{reader}\"; spine-sim on {url}; files in {dir}\n\
         bus: {address}  (also in {file})\n\
         Cards (passcode {pin} on every one):{cards}\n\
         Readers: {readers}\n\n\
         Try (in another terminal):\n  \
         {b} get-property {call} State\n  \
         {b} call {call} Authorise ss download {ods}\n  \
         {b} call {call} Login sb {pin} false\n  \
         {b} call {call} SelectRoleProfile s RP-PHARM-FA123\n  \
         {b} call {call} Authorise ss download {ods}\n  \
         {b} monitor org.cardgate.Agent\n\
         Take the card out, put it back, swap holders, make the idle timers run out:\n  \
         {cg} remove            ({b} call {demo} RemoveCard s \"\")\n  \
         {cg} insert pharmacist ({b} call {demo} InsertCard ss pharmacist \"\")\n  \
         {cg} swap dispenser    ({b} call {demo} SwapCard s dispenser)\n  \
         {cg} idle-soon 5       ({b} call {demo} ShortenIdle u 5)\n  \
         {cg} cards | pin-pad PASSCODE | outbox\n\
         (Ctrl-C stops the demo; docs/ipc.md, \"Trying it\", says more)",
        name = PHARMACIST.0,
        reader = DEMO_READERS[0],
        url = world.sim().url(),
        dir = dir.display(),
        file = address_file.display(),
        readers = DEMO_READERS.join(", "),
        ods = DEMO_ODS,
        pin = DEMO_PASSCODE,
    );
}
