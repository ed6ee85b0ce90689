//! `vcard insert` and `vcard remove` against a fake vpcd reader: a plain TCP listener that
//! speaks vpcd's framing (2-byte big-endian length, then the payload; a 1-byte payload is a
//! control message: 0 off, 1 on, 2 reset, 4 get ATR). The real pcscd path is covered by the
//! lab suites.

// Test helpers outside #[test] functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cardgate_vcard::card_file::CardFile;

const GET_ATR: u8 = 4;
const POWER_ON: u8 = 1;
/// SELECT the PIV application by its AID prefix (SP 800-73-4 part 2, 3.1.1).
const SELECT_PIV: [u8; 15] = [
    0x00, 0xA4, 0x04, 0x00, 0x09, 0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x00,
];

struct Lab {
    dir: tempfile::TempDir,
    card: PathBuf,
}

impl Lab {
    fn new() -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca");
        let card = dir.path().join("asha.json");
        for args in [
            vec!["ca", "init", "--dir", ca.to_str().unwrap()],
            vec![
                "provision",
                "--ca",
                ca.to_str().unwrap(),
                "--out",
                card.to_str().unwrap(),
                "--name",
                "Asha Patel",
                "--uuid",
                "555000111222",
            ],
        ] {
            let out = Command::new(env!("CARGO_BIN_EXE_vcard"))
                .args(&args)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Lab { dir, card }
    }

    fn run_dir(&self) -> &Path {
        self.dir.path()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vcard"));
        cmd.args(args).env("CARDGATE_LAB_RUN_DIR", self.run_dir());
        cmd
    }

    fn pid_file(&self, port: u16) -> PathBuf {
        self.run_dir().join(format!("vcard-{port}.pid"))
    }

    /// Starts `vcard insert` towards `port`, returning the child once it said it is in.
    fn insert(&self, port: u16) -> (Child, String) {
        let mut child = self
            .command(&[
                "insert",
                self.card.to_str().unwrap(),
                "--reader-port",
                &port.to_string(),
                "--host",
                "127.0.0.1",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        (child, line)
    }

    fn remove(&self, port: u16) -> Output {
        self.command(&["remove", "--reader-port", &port.to_string()])
            .output()
            .unwrap()
    }
}

fn send(stream: &mut TcpStream, payload: &[u8]) {
    let len = u16::try_from(payload.len()).unwrap().to_be_bytes();
    stream.write_all(&len).unwrap();
    stream.write_all(payload).unwrap();
}

fn receive(stream: &mut TcpStream) -> Vec<u8> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).unwrap();
    let mut payload = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut payload).unwrap();
    payload
}

/// Whether the card side closed the connection (a read returns end of file).
fn closed_by_card(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut byte = [0u8; 1];
    matches!(stream.read(&mut byte), Ok(0))
}

fn wait_with_timeout(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "vcard insert did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn reader() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

#[test]
fn insert_serves_the_card_and_remove_takes_it_out() {
    let lab = Lab::new();
    let (listener, port) = reader();
    let (mut child, line) = lab.insert(port);
    assert!(line.contains("inserted card"), "{line}");
    assert!(line.contains(&port.to_string()), "{line}");
    let (mut stream, _) = listener.accept().unwrap();
    assert!(lab.pid_file(port).exists());

    send(&mut stream, &[GET_ATR]);
    let atr = receive(&mut stream);
    assert_eq!(atr, CardFile::load(&lab.card).unwrap().atr);
    send(&mut stream, &[POWER_ON]);
    send(&mut stream, &SELECT_PIV);
    let response = receive(&mut stream);
    assert_eq!(
        response[response.len() - 2..],
        [0x90, 0x00],
        "{response:02X?}"
    );
    // A wrong passcode (999999, padded with FF) costs a try, and the card file keeps it:
    // `insert` opened the card so that its counters persist.
    let mut verify = vec![0x00, 0x20, 0x00, 0x80, 0x08];
    verify.extend_from_slice(b"999999\xFF\xFF");
    send(&mut stream, &verify);
    assert_eq!(receive(&mut stream), vec![0x63, 0xC2]);

    let out = lab.remove(port);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("removed"));
    assert!(closed_by_card(&mut stream), "the reader saw no removal");
    assert!(wait_with_timeout(&mut child).success());
    assert!(!lab.pid_file(port).exists(), "pid file left behind");
    assert_eq!(CardFile::load(&lab.card).unwrap().pin.tries_left, 2);
}

#[test]
fn sigterm_removes_the_card_and_the_pid_file() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let lab = Lab::new();
    let (listener, port) = reader();
    let (mut child, _) = lab.insert(port);
    let (mut stream, _) = listener.accept().unwrap();
    kill(
        Pid::from_raw(i32::try_from(child.id()).unwrap()),
        Signal::SIGTERM,
    )
    .unwrap();
    assert!(closed_by_card(&mut stream));
    assert!(wait_with_timeout(&mut child).success());
    assert!(!lab.pid_file(port).exists());
}

#[test]
fn insert_ends_when_the_reader_drops_the_connection() {
    let lab = Lab::new();
    let (listener, port) = reader();
    let (mut child, _) = lab.insert(port);
    let (stream, _) = listener.accept().unwrap();
    drop(stream);
    let status = wait_with_timeout(&mut child);
    assert!(status.success());
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert!(stdout.contains("closed the connection"), "{stdout}");
    assert!(!lab.pid_file(port).exists());
}

#[test]
fn a_second_insert_on_a_busy_port_is_refused() {
    let lab = Lab::new();
    let (listener, port) = reader();
    let (mut child, _) = lab.insert(port);
    let (_stream, _) = listener.accept().unwrap();
    let out = lab
        .command(&[
            "insert",
            lab.card.to_str().unwrap(),
            "--reader-port",
            &port.to_string(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("already inserted") && stderr.contains("vcard remove"),
        "{stderr}"
    );
    assert!(lab.remove(port).status.success());
    assert!(wait_with_timeout(&mut child).success());
}

#[test]
fn insert_without_a_reader_says_what_to_check() {
    let lab = Lab::new();
    let (listener, port) = reader();
    drop(listener);
    let out = lab
        .command(&[
            "insert",
            lab.card.to_str().unwrap(),
            "--reader-port",
            &port.to_string(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is pcscd running with the vpcd driver? see docs/lab.md"),
        "{stderr}"
    );
    assert!(!lab.pid_file(port).exists());
}

#[test]
fn remove_with_nothing_inserted_is_an_error() {
    let lab = Lab::new();
    let (_listener, port) = reader();
    let out = lab.remove(port);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nothing to remove"), "{stderr}");
}

#[test]
fn remove_clears_a_stale_pid_file() {
    let lab = Lab::new();
    let (_listener, port) = reader();
    // A pid that is certainly not a running vcard: our own test process.
    std::fs::write(lab.pid_file(port), format!("{}\n", std::process::id())).unwrap();
    let out = lab.remove(port);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("stale"));
    assert!(!lab.pid_file(port).exists());
}
