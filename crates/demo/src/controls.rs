//! `org.cardgate.Demo1` (`crates/ipc/interfaces/org.cardgate.Demo1.xml`): the demo's hands.
//! A person trying `scripts/run`, or an integrator's test, takes the card out, puts it back,
//! swaps in another holder's card, types on the PIN pad and makes the idle timers run out in
//! seconds, so every signal of `org.cardgate.Agent1` can be seen without hardware. Served only
//! by the demo ([`crate::run`], through `cardgated::serve` with `cardgated::ExtraObjects`);
//! the production daemon has no such object.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use cardgate_ipc::AgentError;
use cardgate_reader::{Card, PadEntry, ReaderName, VirtualBackend};
use cardgated::Agent;
use zbus::interface;
use zeroize::Zeroizing;

/// One demo card: who holds it and what the RA knows of it.
#[derive(Debug, Clone)]
pub struct DemoCard {
    /// The short name the controls take (`pharmacist`, `dispenser`, ...).
    pub name: &'static str,
    /// The holder's name, as on the card.
    pub holder_name: &'static str,
    /// The holder's 12-digit UUID.
    pub holder_uuid: &'static str,
    /// The card serial (CHUID).
    pub card_serial: &'static str,
    /// The unlock code the RA would read out to the holder.
    pub unlock_code: &'static str,
    /// What the card is there to show, for the banner and `Cards`.
    pub shows: &'static str,
}

/// Where every card is: in a reader, or in the demo's pocket with its state (tries left,
/// keys) as the last removal left it.
struct Whereabouts {
    in_reader: BTreeMap<ReaderName, &'static str>,
    pocket: BTreeMap<&'static str, Box<dyn Card>>,
}

/// The served object.
pub struct DemoControls {
    backend: VirtualBackend,
    /// The plain readers first, the PIN-pad reader last.
    readers: Vec<ReaderName>,
    pin_pad: ReaderName,
    cards: Vec<DemoCard>,
    whereabouts: Mutex<Whereabouts>,
    outbox: PathBuf,
    agent: OnceLock<Agent>,
}

impl std::fmt::Debug for DemoControls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoControls")
            .field("readers", &self.readers)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl DemoControls {
    /// Controls over `backend`'s `readers` (the PIN-pad one named apart) and `cards`, each
    /// card in the pocket until [`DemoControls::insert`] puts it in; spine-sim's `outbox` is
    /// where the one-time codes go.
    pub fn new(
        backend: VirtualBackend,
        readers: Vec<ReaderName>,
        pin_pad: ReaderName,
        cards: Vec<(DemoCard, Box<dyn Card>)>,
        outbox: PathBuf,
    ) -> DemoControls {
        let (cards, pocket): (Vec<_>, BTreeMap<_, _>) = cards
            .into_iter()
            .map(|(card, file)| (card.clone(), (card.name, file)))
            .unzip();
        DemoControls {
            backend,
            readers,
            pin_pad,
            cards,
            whereabouts: Mutex::new(Whereabouts {
                in_reader: BTreeMap::new(),
                pocket,
            }),
            outbox,
            agent: OnceLock::new(),
        }
    }

    /// Hands the controls the running agent (for `ShortenIdle`).
    pub(crate) fn attach(&self, agent: Agent) {
        let _ = self.agent.set(agent);
    }

    fn reader(&self, name: &str) -> Result<ReaderName, AgentError> {
        if name.is_empty() {
            return self
                .readers
                .first()
                .cloned()
                .ok_or_else(|| AgentError::Internal("the demo has no reader".into()));
        }
        self.readers
            .iter()
            .find(|r| r.as_str() == name)
            .cloned()
            .ok_or_else(|| {
                AgentError::InvalidArgument(format!(
                    "reader: no demo reader is called \"{}\"; the readers are {}",
                    name.chars().take(64).collect::<String>(),
                    self.reader_list()
                ))
            })
    }

    fn reader_list(&self) -> String {
        self.readers
            .iter()
            .map(|r| format!("\"{r}\""))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn card_name(&self, name: &str) -> Result<&'static str, AgentError> {
        self.cards
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.name)
            .ok_or_else(|| {
                AgentError::InvalidArgument(format!(
                    "card: no demo card is called \"{}\"; the cards are {}",
                    name.chars().take(64).collect::<String>(),
                    self.cards
                        .iter()
                        .map(|c| c.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }

    /// Puts demo card `card` into `reader` (`""`: the first reader).
    pub fn insert(&self, card: &str, reader: &str) -> Result<(), AgentError> {
        let name = self.card_name(card)?;
        let reader = self.reader(reader)?;
        let mut where_ = lock(&self.whereabouts);
        if let Some(other) = where_.in_reader.get(&reader) {
            return Err(AgentError::InvalidArgument(format!(
                "reader: \"{reader}\" already holds the {other} card; remove it first (RemoveCard)"
            )));
        }
        let Some(file) = where_.pocket.remove(name) else {
            let at = where_
                .in_reader
                .iter()
                .find(|(_, n)| **n == name)
                .map(|(r, _)| r.to_string())
                .unwrap_or_default();
            return Err(AgentError::InvalidArgument(format!(
                "card: the {name} card is already in \"{at}\"; remove it first (RemoveCard)"
            )));
        };
        match self.backend.insert(&reader, file) {
            Ok(()) => {
                where_.in_reader.insert(reader, name);
                Ok(())
            }
            Err(file) => {
                where_.pocket.insert(name, file);
                Err(AgentError::Internal(format!(
                    "the virtual reader \"{reader}\" refused the card"
                )))
            }
        }
    }

    /// Takes the card out of `reader` (`""`: the first reader holding one); returns its name.
    pub fn remove(&self, reader: &str) -> Result<&'static str, AgentError> {
        let mut where_ = lock(&self.whereabouts);
        let reader = if reader.is_empty() {
            where_
                .in_reader
                .keys()
                .next()
                .cloned()
                .ok_or_else(|| AgentError::NoCard("No demo card is in a reader.".into()))?
        } else {
            self.reader(reader)?
        };
        let Some(name) = where_.in_reader.remove(&reader) else {
            return Err(AgentError::NoCard(format!("No card is in \"{reader}\".")));
        };
        match self.backend.remove(&reader) {
            Some(file) => {
                where_.pocket.insert(name, file);
                Ok(name)
            }
            None => Err(AgentError::Internal(format!(
                "the virtual reader \"{reader}\" had no card to give back"
            ))),
        }
    }
}

// The macro's generated helpers cannot carry doc comments.
#[allow(missing_docs)]
#[interface(name = "org.cardgate.Demo1")]
impl DemoControls {
    /// Each demo card: name, holder name, holder UUID, card serial, RA unlock code.
    #[zbus(out_args("cards"))]
    fn cards(&self) -> Vec<(String, String, String, String, String)> {
        self.cards
            .iter()
            .map(|c| {
                (
                    c.name.to_owned(),
                    c.holder_name.to_owned(),
                    c.holder_uuid.to_owned(),
                    c.card_serial.to_owned(),
                    c.unlock_code.to_owned(),
                )
            })
            .collect()
    }

    /// Puts a demo card into a reader (`""`: the first).
    async fn insert_card(&self, card: String, reader: String) -> Result<(), AgentError> {
        self.insert(&card, &reader)
    }

    /// Takes the card out of a reader (`""`: the first holding one).
    async fn remove_card(&self, reader: String) -> Result<(), AgentError> {
        self.remove(&reader).map(|_| ())
    }

    /// Takes out whatever is in the first reader and puts `card` in.
    async fn swap_card(&self, card: String) -> Result<(), AgentError> {
        self.card_name(&card)?;
        let first = self.reader("")?;
        let occupied = lock(&self.whereabouts).in_reader.contains_key(&first);
        if occupied {
            self.remove(first.as_str())?;
            // Let the agent see the card leave before the next one arrives, as a hand would.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.insert(&card, first.as_str())
    }

    /// What the holder will key on the PIN-pad reader at its next prompt.
    async fn enter_on_pin_pad(&self, passcode: String) -> Result<(), AgentError> {
        let passcode = Zeroizing::new(passcode);
        self.backend
            .enter_on_pad(&self.pin_pad, PadEntry::pin(&passcode))
            .map_err(|e| AgentError::Internal(format!("the PIN pad: {e}")))
    }

    /// From now on sessions idle out, and a card left in an idle workstation is reported,
    /// after `seconds` (at least 1).
    async fn shorten_idle(&self, seconds: u32) -> Result<(), AgentError> {
        let agent = self
            .agent
            .get()
            .ok_or_else(|| AgentError::Internal("the agent is not running yet".into()))?;
        agent.shorten_idle_limits(Duration::from_secs(u64::from(seconds.max(1))));
        Ok(())
    }

    /// The messages spine-sim "sent" to holders (one-time codes), oldest first, one JSON
    /// object each.
    #[zbus(out_args("messages"))]
    async fn outbox(&self) -> Result<Vec<String>, AgentError> {
        match std::fs::read_to_string(&self.outbox) {
            Ok(text) => Ok(text.lines().map(str::to_owned).collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(AgentError::Internal(format!(
                "reading the outbox {}: {e}",
                self.outbox.display()
            ))),
        }
    }
}
