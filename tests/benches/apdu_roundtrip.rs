//! Benchmark: one APDU's round trip from a PC/SC client through pcscd and vpcd to the virtual
//! card and back, against a bare TCP round trip over loopback as the floor. The virtual card
//! is in every agent test's path, so its cost must stay near the floor.
//!
//! `cargo bench -p cardgate-e2e --bench apdu_roundtrip` (root; runs in its own lab namespace).
//! Without `--bench` (as `cargo test` runs it) it does a short smoke run.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use cardgate_e2e::bench_table::{BenchRow, record};
use cardgate_e2e::{PcscClient, SELECT_PIV, transmit};
use cardgate_lab::{Lab, ReaderSlot};
use cardgate_vcard::applet::PivApplet;
use cardgate_vcard::provision::{CardSpec, TestCa, provision};
use socket_opts::arm_quickack;

const RERUN: &str = "cargo bench -p cardgate-e2e --bench apdu_roundtrip";

fn main() -> ExitCode {
    cardgate_lab::enter_lab_namespace();
    let full = std::env::args().any(|a| a == "--bench");
    let (warm_up, measured) = if full { (200, 2000) } else { (10, 50) };
    match run(warm_up, measured) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("apdu_roundtrip: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(warm_up: usize, measured: usize) -> Result<(), String> {
    let lab = Lab::start().map_err(|e| e.to_string())?;
    let card_kind = "virtual PIV card (PivApplet, provisioned by the test CA)";
    let ca = TestCa::generate("apdu_roundtrip bench CA").map_err(|e| e.to_string())?;
    let provisioned = provision(&ca, &CardSpec::new("Bench Holder", "555000999888"))
        .map_err(|e| e.to_string())?;
    let inserted = lab
        .insert(
            ReaderSlot::First,
            Box::new(PivApplet::new(provisioned.card)),
        )
        .map_err(|e| e.to_string())?;
    let client = PcscClient::new().map_err(|e| format!("{e:?}"))?;
    let card = client
        .connect(ReaderSlot::First)
        .map_err(|e| format!("{e:?}"))?;

    let before = inserted.apdu_count();
    let mut select = |_: usize| -> Result<(), String> {
        let response = transmit(&card, &SELECT_PIV).map_err(|e| format!("{e:?}"))?;
        if response.ends_with(&[0x90, 0x00]) {
            Ok(())
        } else {
            Err(format!("SELECT answered {}", hex::encode(response)))
        }
    };
    let pcsc_times = time(warm_up, measured, &mut select)?;
    let served = inserted.apdu_count() - before;
    if served != (warm_up + measured) as u64 {
        return Err(format!(
            "the card served {served} APDUs for {} SELECTs: something else answered",
            warm_up + measured
        ));
    }
    inserted.remove().map_err(|e| e.to_string())?;

    let tcp_times = tcp_floor(warm_up, measured)?;

    println!();
    println!("APDU round trip, {measured} measured after {warm_up} warm-up, microseconds");
    println!("card: {card_kind}");
    println!(
        "{:<52} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "path", "median", "p90", "p99", "min", "max"
    );
    print_row(
        "SELECT PIV via pcsc::Card (shared) > pcscd > vpcd",
        &pcsc_times,
    );
    print_row("bare TCP frame round trip on loopback (floor)", &tcp_times);
    let median = |sorted: &[Duration]| {
        sorted
            .get(sorted.len() / 2)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e6)
    };
    let rows = [BenchRow::compare(
        "SELECT through pcscd + vpcd, median µs",
        median(&pcsc_times),
        "bare TCP frame round trip (floor)",
        median(&tcp_times),
        1,
    )];
    if let Some(path) = record("apdu_roundtrip", &rows).map_err(|e| e.to_string())? {
        println!("rows recorded in {}", path.display());
    }
    println!("rerun: {RERUN}");
    Ok(())
}

/// Runs `op` `warm_up` times untimed, then `measured` times timed.
fn time(
    warm_up: usize,
    measured: usize,
    op: &mut dyn FnMut(usize) -> Result<(), String>,
) -> Result<Vec<Duration>, String> {
    for i in 0..warm_up {
        op(i)?;
    }
    let mut times = Vec::with_capacity(measured);
    for i in 0..measured {
        let started = Instant::now();
        op(i)?;
        times.push(started.elapsed());
    }
    times.sort();
    Ok(times)
}

/// The same framing as vpcd (2-byte length, payload) over loopback, with the card side's
/// socket options, answered by an echo thread: what the kernel alone costs.
fn tcp_floor(warm_up: usize, measured: usize) -> Result<Vec<Duration>, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let responder = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut stream, _) = listener.accept()?;
        stream.set_nodelay(true)?;
        loop {
            let mut header = [0u8; 2];
            arm_quickack(&stream)?;
            if stream.read_exact(&mut header).is_err() {
                return Ok(());
            }
            let mut payload = vec![0u8; usize::from(u16::from_be_bytes(header))];
            stream.read_exact(&mut payload)?;
            stream.write_all(&[0x00, 0x02, 0x90, 0x00])?;
        }
    });
    let mut stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut frame = vec![0x00, SELECT_PIV.len() as u8];
    frame.extend_from_slice(&SELECT_PIV);
    let mut round_trip = |_: usize| -> Result<(), String> {
        stream.write_all(&frame).map_err(|e| e.to_string())?;
        arm_quickack(&stream).map_err(|e| e.to_string())?;
        let mut answer = [0u8; 4];
        stream.read_exact(&mut answer).map_err(|e| e.to_string())?;
        Ok(())
    };
    let times = time(warm_up, measured, &mut round_trip)?;
    drop(stream);
    responder
        .join()
        .map_err(|_| "the TCP responder panicked".to_string())?
        .map_err(|e| e.to_string())?;
    Ok(times)
}

fn print_row(label: &str, sorted: &[Duration]) {
    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    let at = |q: f64| {
        let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
        sorted.get(i).copied().map(micros).unwrap_or(f64::NAN)
    };
    println!(
        "{:<52} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1}",
        label,
        at(0.5),
        at(0.9),
        at(0.99),
        at(0.0),
        at(1.0)
    );
}

/// TCP_QUICKACK through socket2's safe setter, as the vpcd client does.
mod socket_opts {
    use std::net::TcpStream;

    /// Re-arms quick ACKs (the kernel drops back to delayed ACKs on its own).
    pub fn arm_quickack(stream: &TcpStream) -> std::io::Result<()> {
        socket2::SockRef::from(stream).set_tcp_quickack(true)
    }
}
