//! The audit writer: one thread owns the [`AuditLog`] and commits entries in groups.
//!
//! Every gated action is acknowledged only after its entry is `fdatasync`ed, and a sync costs
//! more than a whole D-Bus round trip on a typical disk. With a lock around the log, N callers
//! asking at once queue for N syncs, each blocking a tokio worker. Here callers hand their
//! entry to the writer thread and wait (async callers on a oneshot, so no worker is blocked);
//! the thread takes everything that arrived while the previous sync ran and commits it with
//! one write and one sync ([`AuditLog::append_batch`]). One caller alone still pays one sync;
//! a hundred share a handful. The order of entries is the order of arrival.

use std::sync::Arc;
use std::sync::mpsc;

use cardgate_audit::{AuditError, AuditEvent, AuditLog, AuditReceipt};
use time::OffsetDateTime;
use tokio::sync::oneshot;

/// The most entries committed by one sync: bounds the latency of the first in a burst.
const MAX_GROUP: usize = 256;

/// What a caller gets back: the receipt once the entry is on disk, or why it is not. Shared
/// (`Arc`) because one failed sync fails every entry of its group.
pub(crate) type AuditOutcome = Result<AuditReceipt, Arc<AuditError>>;

/// Where the writer sends one caller's outcome.
enum Reply {
    Blocking(mpsc::SyncSender<AuditOutcome>),
    Async(oneshot::Sender<AuditOutcome>),
}

impl Reply {
    fn send(self, outcome: AuditOutcome) {
        // A caller that gave up waiting (its task was dropped) needs no answer.
        let _ = match self {
            Reply::Blocking(tx) => tx.send(outcome).map_err(|_| ()),
            Reply::Async(tx) => tx.send(outcome).map_err(|_| ()),
        };
    }
}

struct Request {
    at: OffsetDateTime,
    event: AuditEvent,
    reply: Reply,
}

/// The handle to the writer thread; the thread ends when the last handle is dropped, after
/// committing what was queued.
#[derive(Debug, Clone)]
pub(crate) struct AuditWriter {
    requests: mpsc::Sender<Request>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.event.kind())
    }
}

/// The answer when the writer thread is gone (it never should be while the daemon runs):
/// fail closed.
fn writer_gone() -> Arc<AuditError> {
    Arc::new(AuditError::Poisoned {
        path: "(audit writer stopped)".into(),
    })
}

impl AuditWriter {
    /// Starts the writer thread, which owns `log` from now on.
    pub(crate) fn spawn(log: AuditLog) -> std::io::Result<AuditWriter> {
        let (requests, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || run(log, &queue))?;
        Ok(AuditWriter { requests })
    }

    /// Appends `event` and waits (blocking the thread) until it is on disk.
    pub(crate) fn append_blocking(&self, at: OffsetDateTime, event: &AuditEvent) -> AuditOutcome {
        let (reply, outcome) = mpsc::sync_channel(1);
        let request = Request {
            at,
            event: event.clone(),
            reply: Reply::Blocking(reply),
        };
        if self.requests.send(request).is_err() {
            return Err(writer_gone());
        }
        outcome.recv().unwrap_or_else(|_| Err(writer_gone()))
    }

    /// Appends `event` and waits (without blocking a worker) until it is on disk.
    pub(crate) async fn append(&self, at: OffsetDateTime, event: AuditEvent) -> AuditOutcome {
        let (reply, outcome) = oneshot::channel();
        let request = Request {
            at,
            event,
            reply: Reply::Async(reply),
        };
        if self.requests.send(request).is_err() {
            return Err(writer_gone());
        }
        outcome.await.unwrap_or_else(|_| Err(writer_gone()))
    }
}

/// The thread: take a group, commit it, answer each caller, repeat.
fn run(mut log: AuditLog, queue: &mpsc::Receiver<Request>) {
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        commit(&mut log, group);
    }
}

/// Commits `group` with one sync. If the group fails as a whole, each entry is retried alone,
/// so an entry that cannot be written (too large, say) does not take its neighbours with it;
/// a full disk fails them all, each with its own error.
fn commit(log: &mut AuditLog, group: Vec<Request>) {
    let entries: Vec<(OffsetDateTime, &AuditEvent)> =
        group.iter().map(|r| (r.at, &r.event)).collect();
    match log.append_batch(&entries) {
        Ok(receipts) => {
            for (request, receipt) in group.into_iter().zip(receipts) {
                request.reply.send(Ok(receipt));
            }
        }
        Err(error) if group.len() == 1 => {
            if let Some(request) = group.into_iter().next() {
                request.reply.send(Err(Arc::new(error)));
            }
        }
        Err(_) => {
            for request in group {
                let outcome = log.append(request.at, &request.event).map_err(Arc::new);
                request.reply.send(outcome);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cardgate_audit::verify;

    fn note(i: usize) -> AuditEvent {
        AuditEvent::Note {
            holder: None,
            author: Some("test".into()),
            text: format!("entry {i}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_each_get_their_own_receipt_and_the_chain_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let writer = AuditWriter::spawn(AuditLog::open(&path).unwrap()).unwrap();
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let writer = writer.clone();
                tokio::spawn(async move { writer.append(OffsetDateTime::now_utc(), note(i)).await })
            })
            .collect();
        let mut seqs = Vec::new();
        for task in tasks {
            seqs.push(task.await.unwrap().unwrap().seq);
        }
        let blocking = writer
            .append_blocking(OffsetDateTime::now_utc(), &note(200))
            .unwrap();
        seqs.push(blocking.seq);
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=201).collect::<Vec<u64>>());
        let report = verify(&path).unwrap();
        assert!(report.is_intact(), "{:?}", report.first_break);
        assert_eq!(report.verified_entries, 201);
        assert_eq!(report.head, Some(blocking));
    }

    #[test]
    fn an_entry_too_large_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut log = AuditLog::open(&path).unwrap();
        let (tx_big, rx_big) = mpsc::sync_channel(1);
        let (tx_ok, rx_ok) = mpsc::sync_channel(1);
        let group = vec![
            Request {
                at: OffsetDateTime::now_utc(),
                event: AuditEvent::Note {
                    holder: None,
                    author: None,
                    text: "x".repeat(cardgate_audit::MAX_LINE),
                },
                reply: Reply::Blocking(tx_big),
            },
            Request {
                at: OffsetDateTime::now_utc(),
                event: note(1),
                reply: Reply::Blocking(tx_ok),
            },
        ];
        commit(&mut log, group);
        let big = rx_big.recv().unwrap().unwrap_err();
        assert!(matches!(*big, AuditError::EntryTooLarge { .. }), "{big}");
        assert_eq!(rx_ok.recv().unwrap().unwrap().seq, 1);
    }

    #[test]
    fn a_full_disk_fails_every_entry_of_the_group() {
        let writer = AuditWriter::spawn(AuditLog::open("/dev/full").unwrap()).unwrap();
        let outcome = writer.append_blocking(OffsetDateTime::now_utc(), &note(0));
        assert!(outcome.unwrap_err().is_disk_full());
    }
}
