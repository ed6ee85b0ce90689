//! `cardgate-desktop`: the agent's own passcode dialog in the pharmacist's desktop session.
//!
//! It registers with `cardgated` as this session's prompt (`org.cardgate.Login1`), and shows
//! the passcode dialog when the agent asks (`org.cardgate.Prompt1.BeginLogin`): an
//! application that needs a log-in calls `RequestLogin` and never sees the passcode. It talks
//! to the agent only over D-Bus, never to pcscd. Started for every graphical login by
//! `/etc/xdg/autostart/cardgate-desktop.desktop`.
//!
//! Two threads: GTK's main loop (the dialog, `dialog.rs`) and a tokio thread for the bus
//! (`bridge.rs`), joined by two channels. A library as well as a program, so the end-to-end
//! suite (tests/desktop_dialog.rs) runs this very code as its child process.

#![forbid(unsafe_code)]

mod bridge;
mod dialog;
mod error;
mod notify;
mod picker;
mod roles;
mod shape;
mod status;
mod tray;

pub use bridge::CARD_INSERTED_REASON;
pub use dialog::{TITLE, UNLOCK_PATHS, web_asking, web_title};
pub use notify::RENEW_ACTION;
pub use picker::{PICKER_TITLE, RENEWAL_TITLE};
pub use status::STATUS_TITLE;

use std::cell::{Cell, RefCell};
use std::process::ExitCode;
use std::rc::Rc;

use adw::prelude::*;
use clap::Parser;
use gtk::glib;

use crate::error::DesktopError;

/// The cardgate passcode dialog for this desktop session.
#[derive(Debug, Parser)]
#[command(name = "cardgate-desktop", version, about)]
pub struct Args {
    /// The bus cardgated serves on: `system`, or an address (`unix:path=...`).
    #[arg(long, default_value = "system", value_name = "ADDRESS")]
    bus: String,

    /// Do not open the dialog by itself when a card goes in (applications still ask with
    /// `RequestLogin`).
    #[arg(long)]
    no_open_on_insert: bool,

    /// Show the status window (holder, role, state; change role, renew, change passcode, log
    /// out). With the program already running in this session, that copy shows it.
    #[arg(long)]
    status: bool,

    /// Print this manual page (roff, section 1) and exit; the package's cardgate-desktop(1) is
    /// made with it when the package is built.
    #[arg(long)]
    man: bool,
}

/// `cardgate-desktop`'s manual page (section 1) in roff, from the same definition as its
/// command line.
pub fn man_page() -> std::io::Result<Vec<u8>> {
    use clap::CommandFactory as _;
    let mut page = Vec::new();
    clap_mangen::Man::new(Args::command()).render(&mut page)?;
    Ok(page)
}

/// Runs the program with `args` (the program name first, as `std::env::args_os`); returns
/// when the desktop session ends.
pub fn run<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let args = match Args::try_parse_from(args) {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if args.man {
        use std::io::Write as _;
        return match man_page().and_then(|page| std::io::stdout().write_all(&page)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("cardgate-desktop: writing the manual page: {e}");
                ExitCode::FAILURE
            }
        };
    }
    // Before any passcode is typed: no core dump may hold one.
    if let Err(e) = cardgate_secmem::forbid_core_dumps() {
        eprintln!("cardgate-desktop: {e}");
        return ExitCode::FAILURE;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();

    // One copy per desktop session (GApplication's name on the session bus): running the
    // program again, from the application list, shows the running copy's status window.
    let app = adw::Application::builder()
        .application_id("org.cardgate.Desktop")
        .build();
    let dialogs: Rc<RefCell<Option<Rc<dialog::Dialogs>>>> = Rc::default();
    {
        let dialogs = Rc::clone(&dialogs);
        let options = bridge::BusOptions {
            agent_bus: args.bus.clone(),
            open_on_insert: !args.no_open_on_insert,
        };
        // Only the first copy starts up; the bus side lives there alone.
        app.connect_startup(move |app| {
            let (to_ui, from_bus) = async_channel::unbounded();
            let (to_agent, from_ui) = async_channel::unbounded();
            let fatal = to_ui.clone();
            let options = options.clone();
            let spawned = std::thread::Builder::new()
                .name("bus".into())
                .spawn(move || {
                    let result = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        // What a call that carried a passcode left on this thread's stack.
                        .on_thread_park(cardgate_secmem::scrub_stack)
                        .build()
                        .map_err(DesktopError::Runtime)
                        .and_then(|rt| rt.block_on(bridge::run(options, to_ui, from_ui)));
                    if let Err(e) = result {
                        let _ = fatal
                            .send_blocking(bridge::ToUi::Fatal(format!("cardgate-desktop: {e}")));
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start the bus thread");
                app.quit();
                return;
            }
            // No window until the agent asks: the program lives for the session.
            let hold = app.hold();
            let shown = dialog::Dialogs::new(app.clone(), to_agent);
            *dialogs.borrow_mut() = Some(Rc::clone(&shown));
            glib::MainContext::default().spawn_local(async move {
                let _hold = hold;
                while let Ok(message) = from_bus.recv().await {
                    shown.handle(message);
                }
            });
        });
    }
    {
        let first = Cell::new(true);
        let show_status = args.status;
        app.connect_activate(move |_| {
            // The session's own start (autostart) shows nothing; `--status`, or the program
            // run again, shows the status window.
            if (!first.replace(false) || show_status)
                && let Some(dialogs) = dialogs.borrow().as_ref()
            {
                dialogs.show_status();
            }
        });
    }
    // GTK parses its own arguments; ours are clap's.
    let status = app.run_with_args::<&str>(&[]);
    if status == glib::ExitCode::SUCCESS {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
