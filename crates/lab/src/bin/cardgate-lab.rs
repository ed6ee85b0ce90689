//! `cardgate-lab`: the lab from the command line. `demo` walks a provisioned virtual PIV card
//! through a private pcscd and independent tools (OpenSC); `shell` opens a shell inside a lab
//! namespace with pcscd running, for poking at cards by hand.

use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use cardgate_lab::{Lab, LabOptions, ReaderSlot};
use cardgate_vcard::Card;
use cardgate_vcard::applet::PivApplet;
use cardgate_vcard::card_file::CardFile;
use cardgate_vcard::provision::{CardSpec, TestCa, provision};
use clap::{Parser, Subcommand};

/// The PC/SC lab: a private pcscd with two vpcd readers, in its own namespaces.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: LabCommand,
}

#[derive(Subcommand)]
enum LabCommand {
    /// Provision a card with the test CA, insert it, read it with OpenSC, remove it.
    Demo,
    /// A shell inside a lab namespace with pcscd running (exit the shell to stop the lab).
    Shell {
        /// Run pcscd with its APDU log (`pcscd -a -d`); the shell prints where it goes.
        #[arg(long)]
        apdu_log: bool,
    },
}

fn main() -> ExitCode {
    cardgate_lab::enter_lab_namespace();
    let cli = Cli::parse();
    let outcome = match cli.command {
        LabCommand::Demo => demo(),
        LabCommand::Shell { apdu_log } => shell(apdu_log),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("cardgate-lab: {message}");
            ExitCode::FAILURE
        }
    }
}

fn step(text: &str) {
    println!("==> {text}");
}

fn demo() -> Result<(), String> {
    step("starting a private pcscd with two vpcd readers (own mount/net/pid namespaces)");
    let lab = Lab::start().map_err(|e| e.to_string())?;
    println!(
        "    readers: {:?} and {:?}; pcscd log: {}",
        lab.reader_name(ReaderSlot::First),
        lab.reader_name(ReaderSlot::Second),
        lab.pcscd_log_path().display()
    );

    step("provisioning a virtual PIV card with a freshly generated test CA");
    let ca = TestCa::generate("cardgate demo test CA").map_err(|e| e.to_string())?;
    let spec = CardSpec::new("Asha Patel", "555000111222");
    let provisioned = provision(&ca, &spec).map_err(|e| e.to_string())?;
    let profile = &provisioned.card.profile;
    println!(
        "    holder {} (UUID {}), card serial {}, {} certificates",
        profile.holder_name,
        profile.holder_uuid,
        profile.card_serial,
        provisioned.certificates.len()
    );

    step("inserting it into \"Virtual PCD 00 00\" and waiting for pcscd to see it");
    let started = Instant::now();
    let inserted = lab
        .insert(ReaderSlot::First, demo_card(provisioned.card.clone()))
        .map_err(|e| e.to_string())?;
    println!(
        "    pcscd reports the card present after {:?}",
        started.elapsed()
    );

    step("opensc-tool -a -n (ATR and card name, read by OpenSC through pcscd)");
    run_tool("opensc-tool", &["--reader", "0", "--atr", "--name"])?;
    step("pkcs15-tool --list-certificates (OpenSC's PIV driver reads the certificates)");
    run_tool("pkcs15-tool", &["--reader", "0", "--list-certificates"])?;
    println!("    the card answered {} APDUs", inserted.apdu_count());

    step("removing the card and waiting for pcscd to report the reader empty");
    let removed_at = Instant::now();
    inserted.remove().map_err(|e| e.to_string())?;
    lab.wait_until_empty(ReaderSlot::First, Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    println!(
        "    pcscd reports \"Virtual PCD 00 00\" empty {:?} after removal \
         (vpcd is polled about every 400 ms)",
        removed_at.elapsed()
    );
    step("demo finished: pcscd stops with the lab");
    Ok(())
}

/// The card the demo inserts for a provisioned card file: the virtual PIV card.
fn demo_card(card: CardFile) -> Box<dyn Card> {
    Box::new(PivApplet::new(card))
}

/// Runs an independent tool, shows its output, and fails the demo if the tool fails.
fn run_tool(program: &str, args: &[&str]) -> Result<(), String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("running {program}: {e} (scripts/setup installs opensc)"))?;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        println!("    | {line}");
    }
    for line in String::from_utf8_lossy(&output.stderr).lines() {
        println!("    ! {line}");
    }
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {} failed ({})",
            args.join(" "),
            output.status
        ))
    }
}

fn shell(apdu_log: bool) -> Result<(), String> {
    let lab = Lab::start_with(LabOptions {
        apdu_log,
        ..LabOptions::default()
    })
    .map_err(|e| e.to_string())?;
    let shell = std::env::var("SHELL").unwrap_or_else(|_| "/bin/bash".into());
    println!(
        "cardgate lab: pcscd is running in this namespace (pid {:?})",
        lab.pcscd_pid()
    );
    for slot in ReaderSlot::ALL {
        println!(
            "  reader {:?}: insert a card with `vcard insert CARD.json --reader-port {}`",
            lab.reader_name(slot),
            lab.vpcd_addr(slot).port()
        );
    }
    println!("  pcscd log: {}", lab.pcscd_log_path().display());
    println!("  try: opensc-tool -l ; pcsc_scan ; exit to stop the lab");
    let status = Command::new(&shell)
        .env("CARDGATE_LAB_PCSCD_LOG", lab.pcscd_log_path())
        .status()
        .map_err(|e| format!("starting {shell}: {e}"))?;
    drop(lab);
    // The shell's status is that of the last command typed: not the lab's business.
    println!("cardgate lab: shell exited ({status}); pcscd stopped");
    Ok(())
}
