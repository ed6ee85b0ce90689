//! `cardgate demo ...`: the embedded demo's hands (`org.cardgate.Demo1`, served only by
//! `cardgated-demo`): take the card out, put it back, swap holders, key a passcode on the
//! demo PIN pad, make the idle timers run out soon, read what spine-sim "sent" to holders.
//! Without `--bus` it finds the demo's bus in the file the demo writes at start
//! (`cardgate_demo::bus_address_file`'s place: `$XDG_RUNTIME_DIR/cardgate-demo.bus`, else
//! `/tmp/cardgate-demo-UID.bus`).

use std::path::PathBuf;

use cardgate_ipc::DemoProxy;
use clap::Subcommand;
use serde_json::json;
use zeroize::Zeroizing;

use crate::commands::{Outcome, print_json};
use crate::error::CliError;

/// `cardgate demo` subcommands.
#[derive(Debug, Subcommand)]
pub enum DemoCommand {
    /// List the demo cards (name, holder, UUID, card serial, the RA's unlock code).
    Cards,
    /// Put a demo card into a reader.
    Insert {
        /// The card: pharmacist, dispenser, manager or expiring (`cardgate demo cards`).
        card: String,
        /// The reader (default: the first, "Demo Reader 00 00").
        #[arg(long, value_name = "NAME", default_value = "")]
        reader: String,
    },
    /// Take the card out of a reader.
    Remove {
        /// The reader (default: the first reader holding a card).
        #[arg(long, value_name = "NAME", default_value = "")]
        reader: String,
    },
    /// Take out the card in the first reader and put another in.
    Swap {
        /// The card to put in.
        card: String,
    },
    /// What the holder keys on the demo PIN pad at its next prompts, one value per prompt
    /// (then `login --pin-pad` with a card in "Demo PIN Pad 00 02"; a passcode change takes
    /// three: current, new, new again; an unlock the RA's unlock code, new, new again).
    PinPad {
        /// The values the holder types on the pad, in order.
        #[arg(required = true, value_name = "VALUE")]
        values: Vec<String>,
    },
    /// Sessions idle out, and a card left in an idle workstation is reported, after SECONDS.
    IdleSoon {
        /// Seconds (at least 1).
        seconds: u32,
    },
    /// What spine-sim sent to holders (self-service one-time codes), oldest first.
    Outbox,
}

/// Where the demo writes its bus address (the same rule as `cardgate_demo::bus_address_file`).
fn address_file() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("cardgate-demo.bus"),
        _ => {
            let uid = std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("Uid:"))
                        .and_then(|ids| ids.split_whitespace().nth(1).map(str::to_owned))
                })
                .unwrap_or_else(|| "unknown".to_owned());
            std::env::temp_dir().join(format!("cardgate-demo-{uid}.bus"))
        }
    }
}

/// The demo's bus: `--bus` when given, else the address file.
fn demo_bus(bus: &str) -> Result<String, CliError> {
    if bus != "system" {
        return Ok(bus.to_owned());
    }
    let file = address_file();
    std::fs::read_to_string(&file)
        .map(|text| text.trim().to_owned())
        .map_err(|e| {
            CliError::Usage(format!(
                "no demo is running: {} cannot be read ({e}). Start it with `scripts/run` (or `cardgated-demo`), or give its address with --bus",
                file.display()
            ))
        })
}

/// Runs one `cardgate demo` command.
pub(crate) async fn run(bus: &str, json: bool, command: DemoCommand) -> Outcome {
    let bus = demo_bus(bus).map_err(|e| (2, e))?;
    let (connection, _agent) = crate::commands::connect(&bus).await.map_err(|e| (2, e))?;
    let demo = DemoProxy::new(&connection)
        .await
        .map_err(|e| (2, CliError::from_call(&bus, e)))?;
    let call = |e| (1, CliError::from_call(&bus, e));
    let done = |what: String| {
        if json {
            print_json(&json!({"ok": true, "done": what}));
        } else {
            println!("{what}");
        }
        Ok(0)
    };
    match command {
        DemoCommand::Cards => {
            let cards = demo.cards().await.map_err(call)?;
            if json {
                let list: Vec<_> = cards
                    .iter()
                    .map(|(name, holder, uuid, serial, code)| {
                        json!({"name": name, "holder_name": holder, "holder_uuid": uuid,
                               "card_serial": serial, "unlock_code": code})
                    })
                    .collect();
                print_json(&json!(list));
            } else {
                for (name, holder, uuid, serial, code) in cards {
                    println!("{name:<11} {holder} ({uuid}), card {serial}, RA unlock code {code}");
                }
            }
            Ok(0)
        }
        DemoCommand::Insert { card, reader } => {
            demo.insert_card(&card, &reader).await.map_err(call)?;
            done(format!("the {card} card is in the reader"))
        }
        DemoCommand::Remove { reader } => {
            demo.remove_card(&reader).await.map_err(call)?;
            done("the card is out of the reader".to_owned())
        }
        DemoCommand::Swap { card } => {
            demo.swap_card(&card).await.map_err(call)?;
            done(format!("the {card} card is in the first reader"))
        }
        DemoCommand::PinPad { values } => {
            let count = values.len();
            for value in values {
                let value = Zeroizing::new(value);
                demo.enter_on_pin_pad(&value).await.map_err(call)?;
            }
            done(if count == 1 {
                "the PIN pad will key that value at its next prompt".to_owned()
            } else {
                format!("the PIN pad will key those {count} values at its next {count} prompts")
            })
        }
        DemoCommand::IdleSoon { seconds } => {
            demo.shorten_idle(seconds).await.map_err(call)?;
            done(format!(
                "sessions now idle out, and a card left in the reader is reported, after {seconds} s"
            ))
        }
        DemoCommand::Outbox => {
            let messages = demo.outbox().await.map_err(call)?;
            if json {
                print_json(&json!(messages));
            } else {
                for m in messages {
                    println!("{m}");
                }
            }
            Ok(0)
        }
    }
}
