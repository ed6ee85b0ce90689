//! The vpcd client: puts any [`Card`] into a `pcscd` reader slot served by the vsmartcard
//! `vpcd` driver, over vpcd's TCP protocol, with one thread per inserted card.
//!
//! The card side connects to the reader (pcscd's vpcd driver listens, on port 35963 for the
//! first reader and 35964 for the second); connecting is "insertion", closing is "removal".
//! Every frame is a 2-byte big-endian length and a payload. A 1-byte payload is a control
//! message (power off, power on, reset, get ATR); anything else is a command APDU, answered
//! with the response APDU.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

use socket2::SockRef;

use crate::Card;

/// The TCP port of the first vpcd reader (`Virtual PCD 00 00`); the second listens on the
/// next port. Fixed by the `DEVICENAME /dev/null:0x8C7B` line vsmartcard-vpcd installs.
pub const DEFAULT_PORT: u16 = 35963;

/// vpcd control byte: the reader powers the card off (volatile state is lost).
const CONTROL_POWER_OFF: u8 = 0;
/// vpcd control byte: the reader powers the card on.
const CONTROL_POWER_ON: u8 = 1;
/// vpcd control byte: warm reset.
const CONTROL_RESET: u8 = 2;
/// vpcd control byte: the reader asks for the ATR (the only control message answered).
const CONTROL_GET_ATR: u8 = 4;

/// The largest payload a 2-byte length prefix can describe.
const MAX_FRAME: usize = u16::MAX as usize;

/// Errors from putting a card into a vpcd reader or serving it there.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VpcdError {
    /// Nothing accepts connections on the reader's port: pcscd is not running, runs without
    /// the vpcd driver, or runs in another network namespace.
    #[error(
        "no vpcd reader listens on {addr}: start pcscd with the vsmartcard-vpcd driver \
         (`scripts/setup` installs it; `cargo run -p cardgate-lab -- shell` gives a lab with \
         pcscd running), and check the port ({DEFAULT_PORT} is the first reader, the next \
         port the second)"
    )]
    NoReader {
        /// The reader address tried.
        addr: SocketAddr,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// Connecting failed for another reason than a refusal.
    #[error("could not connect to the vpcd reader at {addr}: {source}")]
    Connect {
        /// The reader address tried.
        addr: SocketAddr,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// The connection failed while the card was in the reader (not a removal by either side).
    #[error("vpcd connection to {addr} failed while the card was in the reader: {source}")]
    Io {
        /// The reader address.
        addr: SocketAddr,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// The card answered more bytes than one vpcd frame can carry; the card was taken out
    /// because the reader cannot be told the answer.
    #[error(
        "the card at {addr} answered {len} bytes, more than a vpcd frame carries ({MAX_FRAME}); \
         the card was taken out of the reader"
    )]
    ResponseTooLong {
        /// The reader address.
        addr: SocketAddr,
        /// The response length the card produced.
        len: usize,
    },
    /// The card's thread panicked (a bug in the card); the card object is lost.
    #[error("the card serving {addr} panicked; the card is lost (see the panic message above)")]
    CardPanicked {
        /// The reader address.
        addr: SocketAddr,
    },
}

/// A card sitting in a vpcd reader, served by its own thread.
///
/// Dropping it removes the card, so a test that fails half-way never leaves a card behind.
pub struct InsertedCard {
    addr: SocketAddr,
    /// A second handle on the card's socket, to shut it down from outside the thread.
    socket: TcpStream,
    thread: Option<JoinHandle<Result<Box<dyn Card>, VpcdError>>>,
    removal_requested: Arc<AtomicBool>,
    connected: Arc<AtomicBool>,
    apdus_served: Arc<AtomicU64>,
}

impl std::fmt::Debug for InsertedCard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InsertedCard")
            .field("addr", &self.addr)
            .field("connected", &self.is_connected())
            .field("apdus_served", &self.apdu_count())
            .finish()
    }
}

/// Inserts `card` into the vpcd reader listening at `addr` and serves it on a new thread
/// until it is removed or the reader goes away.
///
/// Returns once the TCP connection is up; pcscd notices the card on its next poll (up to
/// about 400 ms later), so callers that need the card to be present wait for it through
/// PC/SC (`SCardGetStatusChange`), as `cardgate_lab::Lab::insert` does.
pub fn insert(addr: SocketAddr, card: Box<dyn Card>) -> Result<InsertedCard, VpcdError> {
    let stream = TcpStream::connect(addr).map_err(|source| {
        if source.kind() == io::ErrorKind::ConnectionRefused {
            VpcdError::NoReader { addr, source }
        } else {
            VpcdError::Connect { addr, source }
        }
    })?;
    let io_error = |source| VpcdError::Io { addr, source };
    // Without both, every APDU waits ~44 ms for a delayed ACK (Nagle against delayed ACK).
    stream.set_nodelay(true).map_err(io_error)?;
    SockRef::from(&stream)
        .set_tcp_quickack(true)
        .map_err(io_error)?;
    let socket = stream.try_clone().map_err(io_error)?;

    let removal_requested = Arc::new(AtomicBool::new(false));
    let connected = Arc::new(AtomicBool::new(true));
    let apdus_served = Arc::new(AtomicU64::new(0));
    let server = CardServer {
        addr,
        stream,
        card,
        removal_requested: Arc::clone(&removal_requested),
        apdus_served: Arc::clone(&apdus_served),
    };
    let thread_connected = Arc::clone(&connected);
    let thread = std::thread::Builder::new()
        .name(format!("vpcd-card-{}", addr.port()))
        .spawn(move || {
            let outcome = server.serve();
            thread_connected.store(false, Ordering::SeqCst);
            outcome
        })
        .map_err(io_error)?;
    Ok(InsertedCard {
        addr,
        socket,
        thread: Some(thread),
        removal_requested,
        connected,
        apdus_served,
    })
}

impl InsertedCard {
    /// Takes the card out of the reader: closes the connection in both directions (pcscd
    /// sees the removal on its next poll) and returns the card, with its state, for
    /// reinsertion or inspection.
    ///
    /// Fails only if the connection had already failed before removal (the error says how)
    /// or the card panicked.
    pub fn remove(mut self) -> Result<Box<dyn Card>, VpcdError> {
        self.request_removal();
        self.join()
    }

    /// Blocks until the reader closes the connection (pcscd stopped, or it dropped the card)
    /// and returns the card.
    pub fn wait(mut self) -> Result<Box<dyn Card>, VpcdError> {
        self.join()
    }

    /// APDUs the card has answered since insertion (control messages not counted), so
    /// benchmarks and tests can compare how many commands a client needed.
    pub fn apdu_count(&self) -> u64 {
        self.apdus_served.load(Ordering::SeqCst)
    }

    /// Whether the connection to the reader is still up.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    /// The reader address the card was inserted into.
    pub fn reader_addr(&self) -> SocketAddr {
        self.addr
    }

    fn request_removal(&self) {
        self.removal_requested.store(true, Ordering::SeqCst);
        // Wakes the thread blocked in read(); an error here means the socket is already gone.
        let _ = self.socket.shutdown(Shutdown::Both);
    }

    fn join(&mut self) -> Result<Box<dyn Card>, VpcdError> {
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .map_err(|_| VpcdError::CardPanicked { addr: self.addr })?,
            // Only reachable from Drop after remove/wait consumed the thread.
            None => Err(VpcdError::CardPanicked { addr: self.addr }),
        }
    }
}

impl Drop for InsertedCard {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.request_removal();
            let _ = self.join();
        }
    }
}

/// The state of one card's serving thread.
struct CardServer {
    addr: SocketAddr,
    stream: TcpStream,
    card: Box<dyn Card>,
    removal_requested: Arc<AtomicBool>,
    apdus_served: Arc<AtomicU64>,
}

impl CardServer {
    /// Serves frames until either side closes; returns the card.
    fn serve(mut self) -> Result<Box<dyn Card>, VpcdError> {
        let outcome = self.serve_frames();
        let _ = self.stream.shutdown(Shutdown::Both);
        match outcome {
            Ok(()) => Ok(self.card),
            Err(FrameError::TooLong(len)) => Err(VpcdError::ResponseTooLong {
                addr: self.addr,
                len,
            }),
            Err(FrameError::Io(source)) => {
                let closed_by_peer = matches!(
                    source.kind(),
                    io::ErrorKind::UnexpectedEof
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::BrokenPipe
                );
                if closed_by_peer || self.removal_requested.load(Ordering::SeqCst) {
                    Ok(self.card)
                } else {
                    Err(VpcdError::Io {
                        addr: self.addr,
                        source,
                    })
                }
            }
        }
    }

    fn serve_frames(&mut self) -> Result<(), FrameError> {
        loop {
            let mut header = [0u8; 2];
            self.arm_quickack()?;
            self.stream.read_exact(&mut header)?;
            let mut payload = vec![0u8; usize::from(u16::from_be_bytes(header))];
            if !payload.is_empty() {
                self.arm_quickack()?;
                self.stream.read_exact(&mut payload)?;
            }
            if let [control] = payload.as_slice() {
                match *control {
                    CONTROL_POWER_OFF => self.card.power_off(),
                    CONTROL_POWER_ON => self.card.power_on(),
                    CONTROL_RESET => self.card.reset(),
                    CONTROL_GET_ATR => {
                        let atr = self.card.atr();
                        self.send(&atr)?;
                    }
                    // Unknown controls expect no answer; ignoring them keeps the card in.
                    _ => {}
                }
            } else {
                let response = self.card.transmit(&payload);
                // Counted before the answer leaves, so a reader that got it sees the count.
                self.apdus_served.fetch_add(1, Ordering::SeqCst);
                self.send(&response)?;
            }
        }
    }

    /// Quick-ACK mode is not sticky: the kernel falls back to delayed ACKs, so it is
    /// re-armed before every read.
    fn arm_quickack(&self) -> io::Result<()> {
        SockRef::from(&self.stream).set_tcp_quickack(true)
    }

    fn send(&mut self, payload: &[u8]) -> Result<(), FrameError> {
        let len = u16::try_from(payload.len()).map_err(|_| FrameError::TooLong(payload.len()))?;
        // One write per frame: with TCP_NODELAY it leaves as one segment.
        let mut frame = Vec::with_capacity(payload.len() + 2);
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(payload);
        self.stream.write_all(&frame)?;
        Ok(())
    }
}

/// Why serving a card stopped.
enum FrameError {
    Io(io::Error),
    TooLong(usize),
}

impl From<io::Error> for FrameError {
    fn from(e: io::Error) -> Self {
        FrameError::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    /// Records what the reader asked of it; answers every APDU with its length and 90 00.
    struct RecordingCard {
        events: Arc<Mutex<Vec<String>>>,
        response_len: usize,
    }

    impl Card for RecordingCard {
        fn atr(&self) -> Vec<u8> {
            vec![0x3B, 0x80, 0x80, 0x01, 0x01]
        }
        fn power_on(&mut self) {
            self.events.lock().unwrap().push("on".into());
        }
        fn power_off(&mut self) {
            self.events.lock().unwrap().push("off".into());
        }
        fn reset(&mut self) {
            self.events.lock().unwrap().push("reset".into());
        }
        fn transmit(&mut self, command: &[u8]) -> Vec<u8> {
            self.events
                .lock()
                .unwrap()
                .push(format!("apdu {}", hex::encode(command)));
            let mut r = vec![0xAB; self.response_len];
            r.extend_from_slice(&[0x90, 0x00]);
            r
        }
    }

    fn recording_card(response_len: usize) -> (Box<dyn Card>, Arc<Mutex<Vec<String>>>) {
        let events = Arc::new(Mutex::new(Vec::new()));
        let card = RecordingCard {
            events: Arc::clone(&events),
            response_len,
        };
        (Box::new(card), events)
    }

    /// The reader side of the protocol, as pcscd's vpcd driver speaks it.
    struct FakeReader {
        stream: TcpStream,
    }

    impl FakeReader {
        fn send(&mut self, payload: &[u8]) {
            let len = u16::try_from(payload.len()).unwrap().to_be_bytes();
            self.stream.write_all(&len).unwrap();
            self.stream.write_all(payload).unwrap();
        }
        fn receive(&mut self) -> Vec<u8> {
            let mut header = [0u8; 2];
            self.stream.read_exact(&mut header).unwrap();
            let mut payload = vec![0u8; usize::from(u16::from_be_bytes(header))];
            self.stream.read_exact(&mut payload).unwrap();
            payload
        }
    }

    fn listen() -> (TcpListener, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        (listener, addr)
    }

    fn accept(listener: &TcpListener) -> FakeReader {
        let (stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        FakeReader { stream }
    }

    #[test]
    fn answers_atr_controls_and_apdus_in_vpcd_framing() {
        let (listener, addr) = listen();
        let (card, events) = recording_card(0);
        let inserted = insert(addr, card).unwrap();
        let mut reader = accept(&listener);

        reader.send(&[CONTROL_POWER_ON]);
        reader.send(&[CONTROL_GET_ATR]);
        assert_eq!(reader.receive(), vec![0x3B, 0x80, 0x80, 0x01, 0x01]);
        reader.send(&[0x00, 0xA4, 0x04, 0x00, 0x02, 0xA0, 0x00]);
        assert_eq!(reader.receive(), vec![0x90, 0x00]);
        reader.send(&[CONTROL_RESET]);
        reader.send(&[CONTROL_POWER_OFF]);
        reader.send(&[0x00, 0xB0, 0x00, 0x00]);
        assert_eq!(reader.receive(), vec![0x90, 0x00]);

        assert_eq!(inserted.apdu_count(), 2);
        assert!(inserted.is_connected());
        inserted.remove().unwrap();
        assert_eq!(
            *events.lock().unwrap(),
            vec!["on", "apdu 00a4040002a000", "reset", "off", "apdu 00b00000"]
        );
    }

    #[test]
    fn sets_nodelay_and_quickack_on_the_card_socket() {
        let (listener, addr) = listen();
        let (card, _) = recording_card(0);
        let inserted = insert(addr, card).unwrap();
        let _reader = accept(&listener);
        assert!(inserted.socket.nodelay().unwrap());
        assert!(SockRef::from(&inserted.socket).tcp_quickack().unwrap());
        inserted.remove().unwrap();
    }

    #[test]
    fn remove_closes_the_connection_promptly_and_returns_the_card() {
        let (listener, addr) = listen();
        let (card, _) = recording_card(0);
        let inserted = insert(addr, card).unwrap();
        let mut reader = accept(&listener);
        reader.send(&[CONTROL_GET_ATR]);
        reader.receive();

        let started = Instant::now();
        let mut card = inserted.remove().unwrap();
        let mut rest = Vec::new();
        // EOF (0 bytes) is how the reader sees a removal.
        assert_eq!(reader.stream.read_to_end(&mut rest).unwrap(), 0);
        assert!(started.elapsed() < Duration::from_secs(1));
        // The card comes back usable.
        assert_eq!(card.transmit(&[0, 0xB0, 0, 0]), vec![0x90, 0x00]);
    }

    #[test]
    fn wait_returns_the_card_when_the_reader_closes() {
        let (listener, addr) = listen();
        let (card, _) = recording_card(0);
        let inserted = insert(addr, card).unwrap();
        let mut reader = accept(&listener);
        reader.send(&[0x00, 0xCA, 0x00, 0x00]);
        reader.receive();
        drop(reader);
        let card = inserted.wait().unwrap();
        assert_eq!(card.atr(), vec![0x3B, 0x80, 0x80, 0x01, 0x01]);
    }

    #[test]
    fn is_connected_turns_false_when_the_reader_goes_away() {
        let (listener, addr) = listen();
        let (card, _) = recording_card(0);
        let inserted = insert(addr, card).unwrap();
        drop(accept(&listener));
        let deadline = Instant::now() + Duration::from_secs(5);
        while inserted.is_connected() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!inserted.is_connected());
    }

    #[test]
    fn refused_connection_says_no_vpcd_reader_listens() {
        let (listener, addr) = listen();
        drop(listener);
        let (card, _) = recording_card(0);
        let Err(err) = insert(addr, card) else {
            panic!("inserting into a closed port must fail")
        };
        assert!(matches!(err, VpcdError::NoReader { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("no vpcd reader listens on"), "{text}");
        assert!(text.contains(&addr.to_string()), "{text}");
    }

    #[test]
    fn oversized_response_takes_the_card_out_with_an_error() {
        let (listener, addr) = listen();
        let (card, _) = recording_card(MAX_FRAME);
        let inserted = insert(addr, card).unwrap();
        let mut reader = accept(&listener);
        reader.send(&[0x00, 0xCB, 0x3F, 0xFF]);
        let mut rest = Vec::new();
        assert_eq!(reader.stream.read_to_end(&mut rest).unwrap(), 0);
        let Err(err) = inserted.wait() else {
            panic!("an oversized response must end the insertion with an error")
        };
        assert!(
            matches!(err, VpcdError::ResponseTooLong { len, .. } if len == MAX_FRAME + 2),
            "{err:?}"
        );
    }

    #[test]
    fn dropping_an_inserted_card_removes_it() {
        let (listener, addr) = listen();
        let (card, _) = recording_card(0);
        let inserted = insert(addr, card).unwrap();
        let mut reader = accept(&listener);
        drop(inserted);
        let mut rest = Vec::new();
        assert_eq!(reader.stream.read_to_end(&mut rest).unwrap(), 0);
    }
}
