//! The card actor: one thread per reader through which every operation on that reader's card
//! goes (inspection, passcode verification, signatures for the endpoint login), one at a time
//! in arrival order. Two passcode attempts can therefore never race, and no client can spend
//! a try behind another's back (ARCHITECTURE.md, "one card actor per reader").
//!
//! A thread, not a tokio task, because every card operation blocks in PC/SC for up to half a
//! second; async callers wait on a oneshot, rustls' synchronous signer on a std channel.
//!
//! Each job carries the [`Insertion`] it is for; the card layer refuses a job whose insertion
//! ended (`CardError::StaleInsertion`) before sending anything, so a job queued before a
//! removal can never reach the next card.
//!
//! From a verified passcode until the session lets go ([`CardActor::release`]) the actor
//! holds a connection to the card open. pcscd powers a card down once no program has it
//! connected (after a grace period of well under a second), and a power cycle resets the
//! card's security status: without the hold, a renewal or any other use of the verified
//! passcode a moment after the log-in would find it no longer verified.
//!
//! When the session ends with the card in, [`CardActor::end_verification`] asks the card to
//! forget the verified passcode (PIV VERIFY with P1 = FF) and lets go of the hold; a card that
//! refuses (some answer 6A86, 6D00 or 6B00) is reset instead (`SCARD_RESET_CARD`), so no other
//! program sharing the reader can use its keys without the passcode either.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use cardgate_apdu::StatusWord;
use cardgate_card::{
    CardError, CardInspector, CardReport, Insertion, PasscodeSource, TransactionChannel,
};
use cardgate_piv::{FinalTry, KeyAlgorithm, Passcode, PasscodeGuard, PivClient, SignInput, Slot};
use cardgate_reader::{CardConnection, PivModify, ReaderBackend, ReaderName};
use cardgate_spine::{CardSigner, SpineError};
use tokio::sync::oneshot;

/// One operation for the card actor.
enum Job {
    Inspect {
        insertion: Insertion,
        reply: oneshot::Sender<Result<CardReport, CardError>>,
    },
    Verify {
        insertion: Insertion,
        source: PasscodeSource,
        final_try: FinalTry,
        reply: oneshot::Sender<Result<(), CardError>>,
    },
    Sign {
        insertion: Insertion,
        input: SignInput,
        reply: mpsc::SyncSender<Result<Vec<u8>, SpineError>>,
    },
    ChangePasscode {
        insertion: Insertion,
        current: Passcode,
        new: Passcode,
        final_try: FinalTry,
        reply: oneshot::Sender<Result<(), CardError>>,
    },
    /// CHANGE REFERENCE DATA with both passcodes keyed on the reader's PIN pad.
    ChangePasscodeOnPad {
        insertion: Insertion,
        final_try: FinalTry,
        reply: oneshot::Sender<Result<(), CardError>>,
    },
    /// The session is over with the card in: VERIFY P1 = FF (or a reset), then let go.
    EndVerification {
        insertion: Insertion,
        reply: oneshot::Sender<Result<VerificationEnded, CardError>>,
    },
    /// A staff operation (unlock, renewal; `staff_jobs.rs`) that replies itself; dropped
    /// unrun when its insertion is over, so its caller sees the card gone.
    Staff {
        insertion: Insertion,
        work: crate::staff_jobs::StaffWork,
    },
    /// The session is over: stop holding the card's connection open.
    Release { insertion: Insertion },
}

/// How the card's verified passcode ended at the end of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VerificationEnded {
    /// The card forgot it (VERIFY with P1 = FF answered 90 00).
    Forgotten,
    /// The card refused to forget it (the status word it answered) and was reset
    /// (`SCardDisconnect` with `SCARD_RESET_CARD`).
    CardReset {
        /// What the card answered VERIFY P1 = FF with.
        refused_with: StatusWord,
    },
}

/// The handle to one reader's card actor; dropping every handle ends the thread.
#[derive(Clone, Debug)]
pub(crate) struct CardActor {
    reader: ReaderName,
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Job::Inspect { .. } => "Inspect",
            Job::Verify { .. } => "Verify(<redacted>)",
            Job::Sign { .. } => "Sign",
            Job::ChangePasscode { .. } => "ChangePasscode(<redacted>)",
            Job::ChangePasscodeOnPad { .. } => "ChangePasscodeOnPad",
            Job::EndVerification { .. } => "EndVerification",
            Job::Staff { .. } => "Staff(<redacted>)",
            Job::Release { .. } => "Release",
        })
    }
}

/// The answer when the actor thread is gone (it never should be while the daemon runs).
fn actor_gone(reader: &ReaderName) -> CardError {
    CardError::StaleInsertion {
        reader: reader.clone(),
    }
}

impl CardActor {
    /// Starts the actor thread for `reader`.
    pub(crate) fn spawn(
        reader: ReaderName,
        inspector: Arc<CardInspector>,
        backend: Arc<dyn ReaderBackend>,
        guard: Arc<PasscodeGuard>,
    ) -> std::io::Result<CardActor> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let name = reader.clone();
        std::thread::Builder::new()
            .name(format!("card-actor {reader}"))
            .spawn(move || serve(&name, &inspector, backend.as_ref(), &guard, &queue))?;
        Ok(CardActor { reader, jobs })
    }

    /// Hands the actor the job `make` builds around a reply channel and waits for its answer
    /// (a gone actor is `actor_gone`, however far the job got).
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, CardError>>) -> Job,
    ) -> Result<T, CardError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(make(reply))
            .map_err(|_| actor_gone(&self.reader))?;
        answer.await.map_err(|_| actor_gone(&self.reader))?
    }

    /// Reads and checks the card of `insertion`.
    pub(crate) async fn inspect(&self, insertion: Insertion) -> Result<CardReport, CardError> {
        self.ask(|reply| Job::Inspect { insertion, reply }).await
    }

    /// Verifies the passcode on the card of `insertion` (the card layer's policy applies).
    pub(crate) async fn verify(
        &self,
        insertion: Insertion,
        source: PasscodeSource,
        final_try: FinalTry,
    ) -> Result<(), CardError> {
        self.ask(|reply| Job::Verify {
            insertion,
            source,
            final_try,
            reply,
        })
        .await
    }

    /// Changes the passcode on the card of `insertion` under the PIV client's policy (the
    /// current passcode counts like a VERIFY: ledger, tries read first, final try only when
    /// confirmed, a value that just failed never re-sent). Refused without sending anything
    /// on a reader with a usable PIN pad (the passcode must not be typed on the host there).
    pub(crate) async fn change_passcode(
        &self,
        insertion: Insertion,
        current: Passcode,
        new: Passcode,
        final_try: FinalTry,
    ) -> Result<(), CardError> {
        self.ask(|reply| Job::ChangePasscode {
            insertion,
            current,
            new,
            final_try,
            reply,
        })
        .await
    }

    /// Changes the passcode on the card of `insertion` with the current and the new one keyed
    /// on the reader's PIN pad, under the same policy as [`CardActor::change_passcode`].
    /// Refused without sending anything on a reader whose pad cannot change passcodes.
    pub(crate) async fn change_passcode_on_pad(
        &self,
        insertion: Insertion,
        final_try: FinalTry,
    ) -> Result<(), CardError> {
        self.ask(|reply| Job::ChangePasscodeOnPad {
            insertion,
            final_try,
            reply,
        })
        .await
    }

    /// Ends the verified passcode on the card of `insertion` (module docs), after anything
    /// queued, and lets go of the connection held for the session.
    pub(crate) async fn end_verification(
        &self,
        insertion: Insertion,
    ) -> Result<VerificationEnded, CardError> {
        self.ask(|reply| Job::EndVerification { insertion, reply })
            .await
    }

    /// Queues a staff operation for the card of `insertion` (`staff_jobs::run`).
    pub(crate) fn submit_staff(
        &self,
        insertion: Insertion,
        work: crate::staff_jobs::StaffWork,
    ) -> Result<(), CardError> {
        self.jobs
            .send(Job::Staff { insertion, work })
            .map_err(|_| actor_gone(&self.reader))
    }

    /// Lets go of the connection held open since the passcode of `insertion` was verified
    /// (the session ended and the verification was dropped, or the card left). Queued behind
    /// what is already waiting, so a last job still finds the card powered.
    pub(crate) fn release(&self, insertion: Insertion) {
        // A gone actor holds nothing.
        let _ = self.jobs.send(Job::Release { insertion });
    }

    /// A [`CardSigner`] for the endpoint login, signing with the card of `insertion` through
    /// this actor.
    pub(crate) fn signer(
        &self,
        insertion: Insertion,
        certificate_der: Vec<u8>,
        timeout: Duration,
    ) -> Result<ActorSigner, SpineError> {
        let algorithm = cardgate_spine::key_algorithm_of(&certificate_der)?;
        Ok(ActorSigner {
            actor: self.clone(),
            insertion,
            certificate_der,
            algorithm,
            timeout,
        })
    }
}

/// Signs for a login through the card actor, so the signature is one more job in the
/// reader's queue and can never interleave with a passcode attempt.
#[derive(Debug)]
pub(crate) struct ActorSigner {
    actor: CardActor,
    insertion: Insertion,
    certificate_der: Vec<u8>,
    algorithm: KeyAlgorithm,
    timeout: Duration,
}

impl CardSigner for ActorSigner {
    fn certificate_der(&self) -> &[u8] {
        &self.certificate_der
    }

    fn key_algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    fn sign(&self, input: SignInput) -> Result<Vec<u8>, SpineError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.actor
            .jobs
            .send(Job::Sign {
                insertion: self.insertion.clone(),
                input,
                reply,
            })
            .map_err(|_| SpineError::CardUnavailable {
                reason: "the card's actor has stopped",
            })?;
        match answer.recv_timeout(self.timeout) {
            Ok(result) => result,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(SpineError::TimedOut {
                step: cardgate_spine::Step::CardSignature,
                after: self.timeout,
            }),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(SpineError::CardUnavailable {
                reason: "the card's actor has stopped",
            }),
        }
    }
}

/// The actor thread: one job at a time until every handle is dropped.
fn serve(
    reader: &ReaderName,
    inspector: &CardInspector,
    backend: &dyn ReaderBackend,
    guard: &Arc<PasscodeGuard>,
    queue: &mpsc::Receiver<Job>,
) {
    // The connection kept open from a verified passcode to the session's end (module docs).
    let mut held: Option<(Insertion, Box<dyn CardConnection>)> = None;
    while let Ok(job) = queue.recv() {
        tracing::debug!(%reader, ?job, "card job");
        if held
            .as_ref()
            .is_some_and(|(insertion, _)| !inspector.is_current(insertion))
        {
            held = None;
        }
        match job {
            Job::Inspect { insertion, reply } => {
                let _ = reply.send(inspector.inspect(&insertion));
            }
            Job::Verify {
                insertion,
                source,
                final_try,
                reply,
            } => {
                // Opened before the VERIFY, so the card never goes unconnected between the
                // passcode and the hold.
                let hold = match &held {
                    Some((held_for, _)) if *held_for == insertion => None,
                    _ => backend.connect(reader).ok(),
                };
                let result = inspector.verify_passcode(&insertion, source, final_try);
                match (&result, hold) {
                    (Ok(()), Some(hold)) => held = Some((insertion, hold)),
                    (Ok(()), None) => {}
                    // A failed VERIFY leaves the card unverified: nothing to keep powered.
                    (Err(_), _) => held = None,
                }
                let _ = reply.send(result);
            }
            Job::Release { insertion } => {
                if held.as_ref().is_some_and(|(h, _)| *h == insertion) {
                    held = None;
                }
            }
            Job::Sign {
                insertion,
                input,
                reply,
            } => {
                let result = if inspector.is_current(&insertion) {
                    sign(reader, backend, guard, input)
                } else {
                    Err(SpineError::CardRemoved)
                };
                let _ = reply.send(result);
            }
            Job::ChangePasscode {
                insertion,
                current,
                new,
                final_try,
                reply,
            } => {
                let result = if inspector.is_current(&insertion) {
                    change_passcode(reader, backend, guard, &current, &new, final_try)
                } else {
                    Err(actor_gone(reader))
                };
                let _ = reply.send(result);
            }
            Job::ChangePasscodeOnPad {
                insertion,
                final_try,
                reply,
            } => {
                let result = if inspector.is_current(&insertion) {
                    change_passcode_on_pad(reader, backend, guard, final_try)
                } else {
                    Err(actor_gone(reader))
                };
                let _ = reply.send(result);
            }
            Job::EndVerification { insertion, reply } => {
                let result = if inspector.is_current(&insertion) {
                    end_verification(reader, backend, guard)
                } else {
                    Err(actor_gone(reader))
                };
                // Verified no longer (or the card is gone): it may power down when idle.
                if held.as_ref().is_some_and(|(h, _)| *h == insertion) {
                    held = None;
                }
                let _ = reply.send(result);
            }
            Job::Staff { insertion, work } => {
                if inspector.is_current(&insertion) {
                    work(reader, backend, guard);
                }
            }
        }
        // What the job left on this thread's stack (a padded passcode, a hash's working
        // block) is cleared before the thread waits for the next one.
        cardgate_secmem::scrub_stack();
    }
}

/// A reader failure as the card layer names it (card gone, service gone, other).
pub(crate) fn reader_failure(reader: &ReaderName, e: cardgate_reader::ReaderError) -> CardError {
    if e.is_card_gone() {
        CardError::CardRemoved {
            reader: reader.clone(),
            source: e,
        }
    } else if e.is_service_lost() {
        CardError::ServiceUnavailable(e)
    } else {
        CardError::Reader {
            reader: reader.clone(),
            source: e,
        }
    }
}

/// VERIFY with P1 = FF in one shared-mode transaction; a card that answers with a refusal
/// (any status word but 90 00) is reset as the connection is closed.
fn end_verification(
    reader: &ReaderName,
    backend: &dyn ReaderBackend,
    guard: &Arc<PasscodeGuard>,
) -> Result<VerificationEnded, CardError> {
    let mut connection = backend
        .connect(reader)
        .map_err(|e| reader_failure(reader, e))?;
    let forgot = {
        let transaction = connection
            .transaction()
            .map_err(|e| reader_failure(reader, e))?;
        let mut client = PivClient::new(TransactionChannel::new(transaction), Arc::clone(guard));
        client.forget_verification()
    };
    match forgot {
        Ok(()) => Ok(VerificationEnded::Forgotten),
        Err(e) => match e.status() {
            // The card answered and said no: only a reset ends its security state now.
            Some(refused_with) => {
                connection
                    .disconnect_resetting()
                    .map_err(|e| reader_failure(reader, e))?;
                Ok(VerificationEnded::CardReset { refused_with })
            }
            None => Err(CardError::Card {
                reader: reader.clone(),
                source: e,
            }),
        },
    }
}

/// CHANGE REFERENCE DATA keyed on the reader's PIN pad, in one shared-mode transaction, the
/// PIV client's passcode policy applied before the pad is asked.
fn change_passcode_on_pad(
    reader: &ReaderName,
    backend: &dyn ReaderBackend,
    guard: &Arc<PasscodeGuard>,
    final_try: FinalTry,
) -> Result<(), CardError> {
    crate::staff_jobs::with_pad_client(reader, backend, guard, |client, prompts| {
        client
            .change_passcode_on_reader(final_try, |channel| {
                channel.modify_on_pin_pad(PivModify::ChangePasscode, prompts)
            })
            .map_err(|source| CardError::Card {
                reader: reader.clone(),
                source,
            })
    })?
}

/// CHANGE REFERENCE DATA in one shared-mode transaction, the PIV client's passcode policy
/// applied before anything is sent. On a reader whose PIN pad can change passcodes it is
/// refused before anything is sent (they are keyed there); a pad that only verifies cannot
/// take a new passcode, so there the host is the only way, as on a reader without a pad.
fn change_passcode(
    reader: &ReaderName,
    backend: &dyn ReaderBackend,
    guard: &Arc<PasscodeGuard>,
    current: &Passcode,
    new: &Passcode,
    final_try: FinalTry,
) -> Result<(), CardError> {
    let mut connection = backend
        .connect(reader)
        .map_err(|e| reader_failure(reader, e))?;
    if connection
        .features()
        .map_err(|e| reader_failure(reader, e))?
        .pin_pad()
        .can_modify()
    {
        return Err(CardError::UsePinPad {
            reader: reader.clone(),
        });
    }
    let transaction = connection
        .transaction()
        .map_err(|e| reader_failure(reader, e))?;
    let mut client = PivClient::new(TransactionChannel::new(transaction), Arc::clone(guard));
    client
        .change_passcode(current, new, final_try)
        .map_err(|source| CardError::Card {
            reader: reader.clone(),
            source,
        })
}

/// One signature with the PIV Authentication key, in one shared-mode transaction. The
/// passcode was verified by the login just before, in this same card session.
fn sign(
    reader: &ReaderName,
    backend: &dyn ReaderBackend,
    guard: &Arc<PasscodeGuard>,
    input: SignInput,
) -> Result<Vec<u8>, SpineError> {
    let unavailable = |e: cardgate_reader::ReaderError| {
        if e.is_card_gone() {
            SpineError::CardRemoved
        } else {
            tracing::warn!(%reader, error = %e, "the reader failed while signing");
            SpineError::CardUnavailable {
                reason: "the reader failed while the card was signing",
            }
        }
    };
    let mut connection = backend.connect(reader).map_err(unavailable)?;
    let transaction = connection.transaction().map_err(unavailable)?;
    let mut client = PivClient::new(TransactionChannel::new(transaction), Arc::clone(guard));
    client.select().map_err(SpineError::from_card)?;
    client
        .sign(Slot::Authentication, input)
        .map_err(SpineError::from_card)
}
