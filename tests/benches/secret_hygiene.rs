//! Benchmark (issue 15): what the memory hygiene costs. `cardgate-secmem`'s zeroing allocator
//! (every freed block cleared, reallocations never in place) and its stack scrubbing (the card
//! actor after each job, the runtime's workers as they park) are turned off and on in turns,
//! in one run, against the same daemon: `Authorise` over D-Bus (the gate every PMR calls) and
//! a whole log-in (VERIFY through the lab's pcscd, the endpoint session over TLS, the role).
//!
//! The daemon runs in this process on a runtime built as `cardgated`'s (workers scrub their
//! stack when they park), on a private dbus-daemon, against the lab's pcscd with the demo
//! pharmacist's virtual card in a vpcd reader. What it does not toggle: secrets on locked
//! pages (`LockedBytes`, one `mmap` + `mlock` per passcode held), always on; their cost is
//! inside the log-in figure both ways.
//!
//! `cargo bench -p cardgate-e2e --bench secret_hygiene` (root; its own lab namespace). Without
//! `--bench` it does a short smoke run.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use cardgate_demo::{DEMO_ODS, DEMO_PASSCODE, PHARMACIST};
use cardgate_e2e::bench_table::{BenchRow, record};
use cardgate_e2e::daemon_harness::{RunningDaemon, insert_and_read};
use cardgate_lab::{Lab, ReaderSlot};

/// How to run this again.
const RERUN: &str = "cargo bench -p cardgate-e2e --bench secret_hygiene";
/// The role every log-in selects.
const ROLE: &str = "RP-PHARM-FA123";

fn main() -> ExitCode {
    cardgate_lab::enter_lab_namespace();
    let full = std::env::args().any(|a| a == "--bench");
    // (rounds, Authorise calls per round and setting, log-ins per round and setting)
    let plan = if full { (20, 200, 2) } else { (2, 20, 1) };
    let result = Lab::start()
        .map_err(|e| format!("lab: {e}"))
        .and_then(|lab| {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                // As cardgated's runtime (cardgated::process::run_to_exit).
                .on_thread_park(cardgate_secmem::scrub_stack)
                .build()
                .map_err(|e| format!("runtime: {e}"))?
                .block_on(bench(&lab, plan))
        });
    cardgate_secmem::set_enabled(true);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("secret_hygiene bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

async fn bench(lab: &Lab, (rounds, calls, logins): (usize, usize, usize)) -> Result<(), String> {
    let running = RunningDaemon::start(|_| {})
        .await
        .map_err(|e| format!("daemon: {e:?}"))?;
    let card = running
        .world
        .card(PHARMACIST)
        .map_err(|e| format!("card: {e}"))?;
    let agent = running.agent.clone();
    let _inserted = insert_and_read(lab, ReaderSlot::First, card, &agent, PHARMACIST.1)
        .await
        .map_err(|e| format!("card in: {e:?}"))?;
    let log_in = || async {
        agent
            .login(DEMO_PASSCODE, false)
            .await
            .map_err(|e| format!("Login: {e}"))?;
        agent
            .select_role_profile(ROLE)
            .await
            .map_err(|e| format!("role: {e}"))
    };
    log_in().await?;
    let action = "download";

    // Warm-up, both ways.
    for on in [false, true] {
        cardgate_secmem::set_enabled(on);
        for _ in 0..calls {
            agent
                .authorise(action, DEMO_ODS)
                .await
                .map_err(|e| format!("Authorise: {e}"))?;
        }
    }
    let (mut gate_on, mut gate_off) = (Vec::new(), Vec::new());
    let (mut login_on, mut login_off) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // Alternate which goes first, so neither always meets a warmer machine.
        let order = if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for on in order {
            cardgate_secmem::set_enabled(on);
            let gate = if on { &mut gate_on } else { &mut gate_off };
            for _ in 0..calls {
                let started = Instant::now();
                let answer = agent
                    .authorise(action, DEMO_ODS)
                    .await
                    .map_err(|e| format!("Authorise: {e}"))?;
                gate.push(started.elapsed());
                if !answer.allowed {
                    return Err(format!("Authorise refused: {answer:?}"));
                }
            }
            let login = if on { &mut login_on } else { &mut login_off };
            for _ in 0..logins {
                agent.logout().await.map_err(|e| format!("Logout: {e}"))?;
                let started = Instant::now();
                log_in().await?;
                login.push(started.elapsed());
            }
        }
    }
    cardgate_secmem::set_enabled(true);
    running.stop().await.map_err(|e| format!("stop: {e:?}"))?;

    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (g_on, g_off) = (median(&mut gate_on), median(&mut gate_off));
    let (l_on, l_off) = (median(&mut login_on), median(&mut login_off));
    println!(
        "secret hygiene ({} Authorise and {} log-ins each way):",
        gate_on.len(),
        login_on.len()
    );
    println!(
        "  Authorise median: {:.1} us with, {:.1} us without ({:.3}x)",
        us(g_on),
        us(g_off),
        us(g_on) / us(g_off).max(f64::MIN_POSITIVE)
    );
    println!(
        "  log-in median: {:.2} ms with, {:.2} ms without ({:.3}x)",
        ms(l_on),
        ms(l_off),
        ms(l_on) / ms(l_off).max(f64::MIN_POSITIVE)
    );
    println!("  rerun: {RERUN}");
    let rows = [
        BenchRow::compare(
            "Authorise, median µs, with memory hygiene (zeroing allocator, stack scrubbing)",
            us(g_on),
            "the same daemon with both off",
            us(g_off),
            1,
        ),
        BenchRow::compare(
            "Log-in (VERIFY, endpoint session, role), median ms, with memory hygiene",
            ms(l_on),
            "the same daemon with both off",
            ms(l_off),
            2,
        ),
    ];
    record("secret_hygiene", &rows).map_err(|e| format!("bench table: {e}"))?;
    Ok(())
}
