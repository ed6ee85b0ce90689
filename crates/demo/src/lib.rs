//! The demo and the end-to-end fixtures: test equipment, never linked into the shipped
//! binaries (`tests/shipped_tree.rs` checks the trees of `cardgated`, `cardgate` and
//! `pam_cardgate.so`).
//!
//! [`run`] (what `cardgated-demo`, and so `scripts/run`, runs) is the whole agent with no
//! hardware and no pcscd: the `cardgated` library on in-process virtual readers (one with a
//! PIN pad) holding four holders' virtual cards, an in-process spine-sim on loopback, a
//! private D-Bus it starts (unless given an address), and `org.cardgate.Demo1`
//! ([`DemoControls`]) served beside `org.cardgate.Agent1` through the daemon's
//! [`cardgated::ExtraObjects`] seam, so that a person can take cards out, put them back and
//! make the idle timers run out: every signal of the interface can be seen.
//!
//! The e2e suites take their fixtures from here: the world ([`DemoWorld`]: card CA, spine-sim,
//! card files, the agent's configuration), the holders ([`PHARMACIST`], [`DISPENSER`]), the
//! passcode ([`DEMO_PASSCODE`]), the pharmacy ([`DEMO_ODS`]) and a [`PrivateBus`].
//!
//! - `world`: [`DemoWorld`].
//! - `bus`: [`PrivateBus`] and [`bus_address_file`].
//! - `controls`: [`DemoControls`], the served `org.cardgate.Demo1`.
//! - `error`: [`DemoError`].

#![forbid(unsafe_code)]

mod bus;
mod controls;
mod error;
mod world;

use std::path::Path;
use std::sync::Arc;

use cardgate_reader::{Card, VirtualBackend, VirtualReaderModel};
use cardgate_vcard::applet::PivApplet;

pub use bus::{PrivateBus, bus_address_file};
/// The demo's configuration text (`cardgate-config`'s `demo` feature), for suites that write
/// their own variant of it.
pub use cardgate_config::DEMO_CONFIG;
pub use controls::{DemoCard, DemoControls};
pub use error::DemoError;
pub use world::DemoWorld;

/// The pharmacy the demo workstation serves.
pub const DEMO_ODS: &str = "FA123";
/// The first holder: a pharmacist at the demo pharmacy and a locum profile.
pub const PHARMACIST: (&str, &str) = ("Asha Patel", "555000111222");
/// The second holder: a dispenser (no SCR access).
pub const DISPENSER: (&str, &str) = ("Ben Okafor", "555000333444");
/// Both demo cards' passcode.
pub const DEMO_PASSCODE: &str = "k2468m";
/// Where the demo serves `org.cardgate.Demo1` (never the production daemon).
pub use cardgate_ipc::DEMO_OBJECT_PATH;
/// The demo's readers: two plain ones, then one with a PIN pad (an Omnikey 3821 as the
/// virtual backend emulates it).
pub const DEMO_READERS: [&str; 3] = [
    "Demo Reader 00 00",
    "Demo Reader 00 01",
    "Demo PIN Pad 00 02",
];
/// The demo cards' management key (renewal): a demo value, not a secret.
pub(crate) const DEMO_MANAGEMENT_KEY: [u8; 16] = *b"cardgate-demo-mk";

/// The cards `cardgated-demo` offers, in the order `Demo1.Cards` lists them.
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

/// Runs the demo until `shutdown` completes, on `bus` (`None`: a private `dbus-daemon` it
/// starts and stops). Prints the banner (what to try) once the world is ready, and writes the
/// bus address to [`bus_address_file`] while it runs.
pub async fn run(
    bus: Option<String>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), DemoError> {
    let dir = std::env::temp_dir().join(format!("cardgated-demo-{}", std::process::id()));
    let world = DemoWorld::start_demo(&dir).await?;
    let (address, private) = match bus {
        Some(address) => (address, None),
        None => {
            let private = PrivateBus::start()?;
            (private.address().to_owned(), Some(private))
        }
    };
    let mut config = world.config(&address)?;
    let key_path = dir.join("management-key.hex");
    std::fs::write(&key_path, hex::encode(DEMO_MANAGEMENT_KEY)).map_err(|source| {
        DemoError::Io {
            what: "writing the demo management key",
            path: key_path.clone(),
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
    controls.insert("pharmacist", first)?;

    let address_file = bus_address_file();
    std::fs::write(&address_file, format!("{address}\n")).map_err(|source| DemoError::Io {
        what: "writing the bus address to",
        path: address_file.clone(),
        source,
    })?;
    print_banner(&address, &address_file, &world, &dir);
    let extra = cardgated::ExtraObjects::new().at(DEMO_OBJECT_PATH, move |agent| {
        controls.attach(agent.clone());
        controls
    });
    let result = cardgated::serve(config, Arc::new(backend), Some(address), shutdown, extra).await;
    let _ = std::fs::remove_file(&address_file);
    drop(private);
    Ok(result?)
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
        "cardgated-demo: {name}'s card is in \"{reader}\"; spine-sim on {url}; files in {dir}\n\
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
