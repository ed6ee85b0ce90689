//! The status indicator where the desktop offers one: a StatusNotifierItem
//! (`org.kde.StatusNotifierItem`, the freedesktop tray that KDE, Xfce, Cinnamon, MATE and
//! GNOME with the AppIndicator extension show). Its tooltip says who is logged in, in which
//! role, and the agent's state; activating it opens the status window (`status.rs`), where the
//! actions are. With no StatusNotifierWatcher on the session bus (plain GNOME) there is no
//! tray: the status window is reached from the application list instead.

use std::collections::HashMap;

use cardgate_ipc::{AgentProxy, property};
use zbus::object_server::SignalEmitter;
use zbus::zvariant::OwnedValue;

use crate::bridge::ToUi;
use crate::roles::selected_label;
use crate::status::state_words;

/// Where the item is served.
pub const ITEM_PATH: &str = "/StatusNotifierItem";

/// The watcher the desktop's tray host runs.
#[zbus::proxy(
    interface = "org.kde.StatusNotifierWatcher",
    default_service = "org.kde.StatusNotifierWatcher",
    default_path = "/StatusNotifierWatcher",
    gen_blocking = false
)]
trait StatusNotifierWatcher {
    /// Announces an item by its bus name.
    fn register_status_notifier_item(&self, service: &str) -> zbus::Result<()>;
}

/// The item: a few read-only properties, and "activate" to open the status window.
pub struct TrayItem {
    agent: AgentProxy<'static>,
    to_ui: async_channel::Sender<ToUi>,
}

impl TrayItem {
    async fn summary(&self) -> (String, String) {
        let map: HashMap<String, OwnedValue> = self.agent.status().await.unwrap_or_default();
        let text = |key: &str| -> String {
            map.get(key)
                .and_then(|v| v.try_clone().ok())
                .and_then(|v| String::try_from(v).ok())
                .unwrap_or_default()
        };
        let state = text(property::STATE);
        let holder = text(property::HOLDER_NAME);
        let role = match self.agent.selected_role_profile().await {
            Ok(selected) if !selected.id.is_empty() => selected_label(&selected),
            _ => String::new(),
        };
        let title = format!("Smartcard: {}", state_words(&state));
        let description = match (holder.is_empty(), role.is_empty()) {
            (true, _) => String::new(),
            (false, true) => holder,
            (false, false) => format!("{holder}, {role}"),
        };
        (title, description)
    }
}

#[zbus::interface(name = "org.kde.StatusNotifierItem")]
impl TrayItem {
    /// What kind of item this is.
    #[zbus(property)]
    fn category(&self) -> &str {
        "ApplicationStatus"
    }

    /// A stable id for the host.
    #[zbus(property)]
    fn id(&self) -> &str {
        "cardgate-desktop"
    }

    /// The item's name.
    #[zbus(property)]
    fn title(&self) -> &str {
        "Smartcard"
    }

    /// Always shown: the smartcard's state matters all day.
    #[zbus(property)]
    fn status(&self) -> &str {
        "Active"
    }

    /// The freedesktop icon name.
    #[zbus(property)]
    fn icon_name(&self) -> &str {
        "auth-smartcard"
    }

    /// Not a menu: activating opens the status window.
    #[zbus(property)]
    fn item_is_menu(&self) -> bool {
        false
    }

    /// The state, holder and role, asked of the agent each time the host reads it.
    #[zbus(property)]
    async fn tool_tip(&self) -> (String, Vec<(i32, i32, Vec<u8>)>, String, String) {
        let (title, description) = self.summary().await;
        ("auth-smartcard".into(), Vec::new(), title, description)
    }

    /// A click on the icon: the status window.
    async fn activate(&self, _x: i32, _y: i32) {
        let _ = self.to_ui.send(ToUi::ShowStatus).await;
    }

    /// A middle click: the same.
    async fn secondary_activate(&self, _x: i32, _y: i32) {
        let _ = self.to_ui.send(ToUi::ShowStatus).await;
    }

    /// The host shows no menu of ours; the window has the actions.
    async fn context_menu(&self, _x: i32, _y: i32) {
        let _ = self.to_ui.send(ToUi::ShowStatus).await;
    }

    /// Scrolling over the icon does nothing.
    fn scroll(&self, _delta: i32, _orientation: &str) {}

    /// The tooltip changed (the state, holder or role did).
    #[zbus(signal)]
    async fn new_tool_tip(emitter: &SignalEmitter<'_>) -> zbus::Result<()>;
}

/// Serves the item on the session bus and announces it to the watcher; `None` (logged) when
/// the desktop has no tray.
pub async fn offer(
    session: &zbus::Connection,
    agent: AgentProxy<'static>,
    to_ui: async_channel::Sender<ToUi>,
) -> Option<Tray> {
    let watcher = StatusNotifierWatcherProxy::new(session).await.ok()?;
    let dbus = zbus::fdo::DBusProxy::new(session).await.ok()?;
    let has_watcher = match zbus::names::BusName::try_from("org.kde.StatusNotifierWatcher") {
        Ok(name) => dbus.name_has_owner(name).await.unwrap_or(false),
        Err(_) => false,
    };
    if !has_watcher {
        tracing::info!("no StatusNotifierWatcher on the session bus: no tray icon");
        return None;
    }
    let name = format!("org.kde.StatusNotifierItem-{}-1", std::process::id());
    let served = async {
        session
            .object_server()
            .at(ITEM_PATH, TrayItem { agent, to_ui })
            .await?;
        session.request_name(name.as_str()).await?;
        watcher.register_status_notifier_item(&name).await
    };
    match served.await {
        Ok(()) => {
            tracing::info!(%name, "tray icon offered");
            Some(Tray {
                session: session.clone(),
            })
        }
        Err(e) => {
            tracing::warn!(error = %e, "the tray did not take the icon");
            None
        }
    }
}

/// The served item, to tell the host when its tooltip changed.
#[derive(Clone)]
pub struct Tray {
    session: zbus::Connection,
}

impl Tray {
    /// The state changed: the host reads the tooltip again.
    pub async fn changed(&self) {
        if let Ok(emitter) = SignalEmitter::new(&self.session, ITEM_PATH)
            && let Err(e) = TrayItem::new_tool_tip(&emitter).await
        {
            tracing::debug!(error = %e, "NewToolTip");
        }
    }
}
