//! The demo world: a fresh card CA, an in-process spine-sim on loopback that knows the demo
//! holders, card files issued to them, and the agent's configuration pointing at all of it.
//! `cardgated-demo` runs the richer world ([`DemoWorld::start_demo`]); the e2e suites build
//! [`DemoWorld::start`]'s and put its cards behind the lab's real pcscd.

use std::path::{Path, PathBuf};

use cardgate_spine_sim::{RunningSim, SimConfig, SpineSim};
use cardgate_vcard::card_file::CardFile;
use cardgate_vcard::provision::{CardSpec, TestCa, Validity, provision};
use cardgated::Config;

use crate::controls::DemoCard;
use crate::error::DemoError;
use crate::{DEMO_CARDS, DEMO_MANAGEMENT_KEY, DEMO_PASSCODE, DISPENSER, PHARMACIST};

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
anchors = "{d}/audit-anchors.jsonl"
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
    pub async fn start(dir: &Path) -> Result<DemoWorld, DemoError> {
        DemoWorld::start_with(dir, "").await
    }

    /// The world `cardgated-demo` runs: [`DemoWorld::start`]'s, the dispenser with a
    /// registered email and a passcode expiring in 10 days, a Sponsor/LSA and a holder whose
    /// certificate is due for renewal, and every card of [`DEMO_CARDS`] known to the RA.
    pub async fn start_demo(dir: &Path) -> Result<DemoWorld, DemoError> {
        let expires = (time::OffsetDateTime::now_utc() + time::Duration::days(10))
            .format(&time::format_description::well_known::Rfc3339)?;
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
    pub fn demo_card(&self, card: &DemoCard) -> Result<CardFile, DemoError> {
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
    pub async fn start_with(dir: &Path, extra_sim_toml: &str) -> Result<DemoWorld, DemoError> {
        DemoWorld::build(dir, "", extra_sim_toml).await
    }

    async fn build(
        dir: &Path,
        dispenser_extra: &str,
        extra_sim_toml: &str,
    ) -> Result<DemoWorld, DemoError> {
        std::fs::create_dir_all(dir).map_err(|source| DemoError::Io {
            what: "creating",
            path: dir.to_path_buf(),
            source,
        })?;
        let card_ca = |source| DemoError::Provision {
            what: "the card CA",
            source,
        };
        let ca = TestCa::generate("Cardgate Demo Card CA").map_err(card_ca)?;
        ca.save(&dir.join("card-ca")).map_err(card_ca)?;
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|source| DemoError::Io {
                what: "writing",
                path,
                source,
            })
        };
        write("card-ca.pem", &ca.certificate_pem())?;
        let identity =
            cardgate_spine_sim::init_service_dir(&dir.join("service")).map_err(|source| {
                DemoError::Sim {
                    what: "spine-sim's service identity",
                    source,
                }
            })?;
        write("service-ca.pem", &identity.ca_pem)?;
        let config = SimConfig::from_toml(&format!(
            "{}\n{extra_sim_toml}",
            sim_toml(dir, dispenser_extra)
        ))
        .map_err(|source| DemoError::Sim {
            what: "spine-sim's configuration",
            source,
        })?;
        let sim = SpineSim::start(config)
            .await
            .map_err(|source| DemoError::Sim {
                what: "starting spine-sim",
                source,
            })?;
        Ok(DemoWorld {
            dir: dir.to_path_buf(),
            ca,
            sim,
        })
    }

    /// A card for `(name, uuid)` issued by the world's CA, passcode [`DEMO_PASSCODE`].
    pub fn card(&self, holder: (&str, &str)) -> Result<CardFile, DemoError> {
        provision(
            &self.ca,
            &CardSpec::new(holder.0, holder.1).pin(DEMO_PASSCODE),
        )
        .map(|p| p.card)
        .map_err(|source| DemoError::Provision {
            what: "provisioning a card",
            source,
        })
    }

    /// A card from `spec` (serial, unlock code, management key, validity as the test needs)
    /// issued by the world's CA.
    pub fn card_from(&self, spec: &CardSpec) -> Result<CardFile, DemoError> {
        provision(&self.ca, spec)
            .map(|p| p.card)
            .map_err(|source| DemoError::Provision {
                what: "provisioning a card",
                source,
            })
    }

    /// The agent's configuration for this world, serving on `bus`.
    pub fn config(&self, bus: &str) -> Result<Config, DemoError> {
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
