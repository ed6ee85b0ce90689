//! Crowds on the bus: 100 clients, each on its own connection, asking at once; then one
//! client flooding `Authorise` while the card is pulled. Every call is answered, a bystander
//! is answered promptly throughout, no allowed answer carries a generation from after the
//! removal, and every answered decision is on the audit trail.

use std::time::{Duration, Instant};

use cardgate_demo::DEMO_ODS;
use cardgate_e2e::check;
use cardgate_e2e::daemon_harness::OrFail as _;
use libtest_mimic::Failed;

use crate::support::{
    FaultDaemon, assert_entries_at_least, assert_no_session_survives, card_tries_left,
    insert_shared, pharmacist_read, pharmacist_session, virtual_reader,
};

/// Clients calling at once.
const CROWD: usize = 100;
/// Calls in the flood, and how many are in flight at a time.
const FLOOD: usize = 3_000;
const IN_FLIGHT: usize = 64;
/// The slowest answer a bystander may get while the flood runs.
const BYSTANDER_LIMIT: Duration = Duration::from_secs(2);

/// See the module comment.
pub async fn crowd_and_flood() -> Result<(), Failed> {
    let (backend, reader) = virtual_reader();
    let running = FaultDaemon::start(backend.clone(), |_, _| {}).await?;
    let agent = running.agent.clone();
    let (applet, full) = running.pharmacist_card()?;
    insert_shared(&backend, &reader, &applet)?;
    pharmacist_read(&agent, Duration::from_secs(10)).await?;
    pharmacist_session(&agent).await?;
    let mut decisions = 0;

    // 100 clients, 100 connections, one call each, all at once.
    let mut clients = Vec::with_capacity(CROWD);
    for _ in 0..CROWD {
        clients.push(running.new_client().await?);
    }
    let started = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for client in &clients {
        let client = client.clone();
        calls.spawn(async move { client.authorise("download", DEMO_ODS).await });
    }
    while let Some(answer) = calls.join_next().await {
        let answer = answer
            .or_fail("client task")?
            .or_fail("Authorise in the crowd")?;
        decisions += 1;
        check(answer.allowed, || format!("crowd: {answer:?}"))?;
    }
    let crowd_time = started.elapsed();
    let session_generation = agent
        .session_generation()
        .await
        .or_fail("SessionGeneration")?;

    // One client floods; a bystander keeps asking; the card is pulled half-way.
    let flooder = clients[0].clone();
    let flood = tokio::spawn(async move {
        let mut answers = Vec::with_capacity(FLOOD);
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..FLOOD {
            if calls.len() >= IN_FLIGHT {
                if let Some(done) = calls.join_next().await {
                    answers.push(done);
                }
            }
            let flooder = flooder.clone();
            let action = if i % 2 == 0 { "download" } else { "claim" };
            calls.spawn(async move { flooder.authorise(action, DEMO_ODS).await });
        }
        while let Some(done) = calls.join_next().await {
            answers.push(done);
        }
        answers
    });
    let bystander = clients[1].clone();
    let watch = tokio::spawn(async move {
        let mut slowest = Duration::ZERO;
        for _ in 0..30 {
            let asked = Instant::now();
            let answered = bystander.state().await.is_ok();
            slowest = slowest.max(if answered {
                asked.elapsed()
            } else {
                Duration::MAX
            });
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        slowest
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    backend.remove(&reader);
    let removed_at = Instant::now();
    let answers = flood.await.or_fail("flood task")?;
    let slowest = watch.await.or_fail("bystander task")?;
    check(answers.len() == FLOOD, || {
        format!("{} of {FLOOD} answered", answers.len())
    })?;
    let mut allowed = 0;
    let mut refused_after = 0;
    for answer in answers {
        let answer = answer
            .or_fail("flood call")?
            .or_fail("Authorise in the flood")?;
        decisions += 1;
        if answer.allowed {
            allowed += 1;
            check(answer.generation <= session_generation, || {
                format!(
                    "allowed under generation {} after removal: {answer:?}",
                    answer.generation
                )
            })?;
        } else if answer.generation > session_generation {
            refused_after += 1;
        }
    }
    check(slowest <= BYSTANDER_LIMIT, || {
        format!("a bystander waited {slowest:?} during the flood")
    })?;
    assert_no_session_survives(&agent, session_generation, Duration::from_secs(10)).await?;
    decisions += 1;
    let left = card_tries_left(&applet);
    check(left == full, || {
        format!("the card's retry counter went {full} -> {left}")
    })?;
    eprintln!(
        "crowd of {CROWD} answered in {crowd_time:.1?}; flood of {FLOOD}: {allowed} allowed \
         before the removal, {refused_after} refused after it; bystander's slowest {slowest:.1?}; \
         flood finished {:.1?} after the removal",
        removed_at.elapsed()
    );
    drop(clients);
    let audit = running.stop().await?;
    assert_entries_at_least(&audit, "authorisation_decision", decisions)
}
