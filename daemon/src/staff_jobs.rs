//! Card work for the staff tasks (unlock with an unlock code, key generation with a
//! certificate request, certificate writing), run on the reader's card actor like every
//! other card operation, so it can never interleave with a passcode attempt or a login
//! signature; the RA unlock keyed on the reader's PIN pad ([`run_on_pad`]) too. Each job is
//! one shared-mode transaction on a fresh connection; a job queued for an insertion that has
//! ended is dropped unrun, and its caller sees the card gone.

use std::sync::Arc;

use cardgate_card::{CardError, Insertion, TransactionChannel};
use cardgate_piv::{PasscodeGuard, PivClient};
use cardgate_reader::{PadPrompts, ReaderBackend, ReaderName};
use tokio::sync::oneshot;

use crate::actor::{CardActor, reader_failure};

/// A staff job as the actor runs it: it gets the reader, the backend and the passcode guard,
/// and sends its own answer.
pub(crate) type StaffWork =
    Box<dyn FnOnce(&ReaderName, &dyn ReaderBackend, &Arc<PasscodeGuard>) + Send>;

/// Whether a job sends a passcode typed on this computer (then a reader whose PIN pad can
/// take it refuses it before anything is sent, as `ChangePasscode` does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HostTyped {
    /// The job carries a host-typed passcode.
    Yes,
    /// It does not (key generation, certificate writing).
    No,
}

/// Runs `work` with a PIV client on the card of `insertion`, in one transaction on the
/// reader's actor, and returns its answer; the card gone (before or during) is a
/// [`CardError`] saying so.
pub(crate) async fn run<T, F>(
    actor: &CardActor,
    insertion: Insertion,
    host_typed: HostTyped,
    work: F,
) -> Result<T, CardError>
where
    T: Send + 'static,
    F: FnOnce(&mut PivClient<TransactionChannel<'_>>) -> T + Send + 'static,
{
    let reader = insertion.reader().clone();
    let (reply, answer) = oneshot::channel::<Result<T, CardError>>();
    let job: StaffWork = Box::new(move |reader, backend, guard| {
        let _ = reply.send(with_client(reader, backend, guard, host_typed, work));
    });
    actor.submit_staff(insertion, job)?;
    answer
        .await
        .map_err(|_| CardError::StaleInsertion { reader })?
}

/// One connection and transaction with a PIV client over it.
fn with_client<T>(
    reader: &ReaderName,
    backend: &dyn ReaderBackend,
    guard: &Arc<PasscodeGuard>,
    host_typed: HostTyped,
    work: impl FnOnce(&mut PivClient<TransactionChannel<'_>>) -> T,
) -> Result<T, CardError> {
    let mut connection = backend
        .connect(reader)
        .map_err(|e| reader_failure(reader, e))?;
    if host_typed == HostTyped::Yes
        && connection
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
    Ok(work(&mut client))
}

/// As [`run`], for work whose secrets are keyed on the reader's PIN pad: refused with
/// [`CardError::NoPinPad`] before anything is sent unless the pad can take a change
/// (`FEATURE_MODIFY_PIN_DIRECT`); `work` gets the pad's prompts for the reader's model.
pub(crate) async fn run_on_pad<T, F>(
    actor: &CardActor,
    insertion: Insertion,
    work: F,
) -> Result<T, CardError>
where
    T: Send + 'static,
    F: FnOnce(&mut PivClient<TransactionChannel<'_>>, PadPrompts) -> T + Send + 'static,
{
    let reader = insertion.reader().clone();
    let (reply, answer) = oneshot::channel::<Result<T, CardError>>();
    let job: StaffWork = Box::new(move |reader, backend, guard| {
        let _ = reply.send(with_pad_client(reader, backend, guard, work));
    });
    actor.submit_staff(insertion, job)?;
    answer
        .await
        .map_err(|_| CardError::StaleInsertion { reader })?
}

/// Connects to `reader`, checks its PIN pad can take a modify (`NoPinPad` otherwise, before
/// anything is sent), and runs `work` with a PIV client in one transaction and the pad's
/// prompts: the card actor's passcode change and the staff unlock on the pad share it.
pub(crate) fn with_pad_client<T>(
    reader: &ReaderName,
    backend: &dyn ReaderBackend,
    guard: &Arc<PasscodeGuard>,
    work: impl FnOnce(&mut PivClient<TransactionChannel<'_>>, PadPrompts) -> T,
) -> Result<T, CardError> {
    let mut connection = backend
        .connect(reader)
        .map_err(|e| reader_failure(reader, e))?;
    let features = connection
        .features()
        .map_err(|e| reader_failure(reader, e))?;
    if !features.pin_pad().can_modify() {
        return Err(CardError::NoPinPad {
            reader: reader.clone(),
        });
    }
    let transaction = connection
        .transaction()
        .map_err(|e| reader_failure(reader, e))?;
    let mut client = PivClient::new(TransactionChannel::new(transaction), Arc::clone(guard));
    Ok(work(&mut client, features.pad_prompts()))
}
