//! The D-Bus server of `org.cardgate.Agent1` (`docs/ipc.md`): properties, signals and
//! methods over the [`Agent`] core, on any bus address.
//!
//! The caller of every method is identified from the message's sender through the bus
//! daemon (`GetConnectionCredentials`, cached per connection, then `/proc/PID/exe`; see
//! `callers.rs`), never from an argument and never from the daemon's own process. Restricted methods are
//! checked here against the caller's uid and groups, whatever the bus policy already did.

use std::collections::HashMap;

use cardgate_audit::CallerIdentity;
use cardgate_ipc::{
    AgentError, AuthoriseAnswer, ReaderInfo, RoleProfileInfo, SelectedRoleProfile,
    SelfServiceStarted, TacInfo, Ticket,
};
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::{OwnedValue, Value};
use zbus::{Connection, interface};
use zeroize::Zeroizing;

use crate::agent::{Agent, AgentEvent};
use crate::callers::CallerCache;

/// The served object.
#[derive(Debug)]
pub struct AgentInterface {
    agent: Agent,
    restricted_group: String,
    callers: CallerCache,
}

impl AgentInterface {
    /// Serves `agent`; restricted methods need root or membership of `restricted_group`.
    pub fn new(agent: Agent, restricted_group: String) -> Self {
        AgentInterface {
            agent,
            restricted_group,
            callers: CallerCache::default(),
        }
    }
}

/// Whether `uid` is root or in `group` (primary group from `/etc/passwd`, supplementary
/// from `/etc/group`).
pub fn uid_in_group(uid: u32, group: &str) -> bool {
    if uid == 0 {
        return true;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let user = passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() > 3 && fields[2].parse() == Ok(uid))
            .then(|| (fields[0].to_owned(), fields[3].to_owned()))
    });
    let Some((user_name, primary_gid)) = user else {
        return false;
    };
    let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
    groups.lines().any(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        fields.len() > 3
            && fields[0] == group
            && (fields[2] == primary_gid || fields[3].split(',').any(|m| m == user_name))
    })
}

impl AgentInterface {
    async fn restricted(
        &self,
        connection: &Connection,
        header: &Header<'_>,
        method: &str,
    ) -> Result<CallerIdentity, AgentError> {
        let who = self.callers.identify(connection, header).await?;
        if uid_in_group(who.uid, &self.restricted_group) {
            Ok(who)
        } else {
            tracing::warn!(
                uid = who.uid,
                pid = who.pid,
                method,
                "restricted method refused"
            );
            Err(AgentError::NotPermitted(format!(
                "{method} is only for members of the \"{}\" group",
                self.restricted_group
            )))
        }
    }
}

fn owned(value: Value<'_>) -> Result<OwnedValue, AgentError> {
    OwnedValue::try_from(value).map_err(|e| AgentError::Internal(format!("Status: {e}")))
}

// The macro adds `<property>_changed`/`_invalidate` methods that cannot carry doc comments.
#[allow(missing_docs)]
#[interface(name = "org.cardgate.Agent1")]
impl AgentInterface {
    /// Everything the properties say, plus warnings.
    async fn status(&self) -> Result<HashMap<String, OwnedValue>, AgentError> {
        let s = self.agent.snapshot();
        let mut map = HashMap::new();
        map.insert("Readers".to_owned(), owned(Value::from(s.readers))?);
        map.insert(
            "CardPresent".to_owned(),
            owned(Value::from(s.card_present))?,
        );
        map.insert("HolderUuid".to_owned(), owned(Value::from(s.holder_uuid))?);
        map.insert("HolderName".to_owned(), owned(Value::from(s.holder_name))?);
        map.insert("State".to_owned(), owned(Value::from(s.state.as_str()))?);
        map.insert(
            "PasscodeTriesLeft".to_owned(),
            owned(Value::from(s.passcode_tries_left))?,
        );
        map.insert(
            "SelectedRoleProfile".to_owned(),
            owned(Value::from(s.selected_role_profile))?,
        );
        map.insert(
            "CertificateNotAfter".to_owned(),
            owned(Value::from(s.certificate_not_after))?,
        );
        map.insert(
            "SessionGeneration".to_owned(),
            owned(Value::from(s.session_generation))?,
        );
        map.insert("Warnings".to_owned(), owned(Value::from(s.warnings))?);
        Ok(map)
    }

    /// Host-typed passcode log-in. Restricted.
    async fn login(
        &self,
        passcode: String,
        confirm_final_try: bool,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<Vec<RoleProfileInfo>, AgentError> {
        let passcode = zeroize::Zeroizing::new(passcode);
        let who = self.restricted(connection, &header, "Login").await?;
        self.agent
            .login(&who, Some(passcode.as_str()), confirm_final_try)
            .await
    }

    /// PIN-pad log-in. Restricted.
    async fn login_with_pin_pad(
        &self,
        confirm_final_try: bool,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<Vec<RoleProfileInfo>, AgentError> {
        let who = self
            .restricted(connection, &header, "LoginWithPinPad")
            .await?;
        self.agent.login(&who, None, confirm_final_try).await
    }

    /// Selects or switches the role profile.
    async fn select_role_profile(
        &self,
        id: String,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), AgentError> {
        let who = self.callers.identify(connection, &header).await?;
        self.agent.select_role_profile(&who, &id).await
    }

    /// Ends the session.
    async fn logout(
        &self,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), AgentError> {
        let who = self.callers.identify(connection, &header).await?;
        self.agent.logout(&who).await
    }

    /// Changes the passcode. Restricted.
    async fn change_passcode(
        &self,
        current: String,
        new: String,
        confirm_final_try: bool,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), AgentError> {
        let current = zeroize::Zeroizing::new(current);
        let new = zeroize::Zeroizing::new(new);
        let who = self
            .restricted(connection, &header, "ChangePasscode")
            .await?;
        self.agent
            .change_passcode(&who, &current, &new, confirm_final_try)
            .await
    }

    /// The gate.
    async fn authorise(
        &self,
        action: String,
        ods_code: String,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<AuthoriseAnswer, AgentError> {
        let who = self.callers.identify(connection, &header).await?;
        self.agent.authorise_async(&who, &action, &ods_code).await
    }

    /// The session's ticket. Restricted.
    async fn get_ticket(
        &self,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<Ticket, AgentError> {
        self.restricted(connection, &header, "GetTicket").await?;
        self.agent.ticket()
    }

    /// Self-service unlock, step 1 (`agent/staff.rs`). Restricted.
    async fn start_self_service_unlock(
        &self,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<SelfServiceStarted, AgentError> {
        let who = self
            .restricted(connection, &header, "StartSelfServiceUnlock")
            .await?;
        self.agent.start_self_service_unlock(&who).await
    }

    /// Self-service unlock, step 2. Restricted.
    async fn unlock_with_one_time_code(
        &self,
        request_id: String,
        one_time_code: String,
        new_passcode: String,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), AgentError> {
        let (code, new) = (Zeroizing::new(one_time_code), Zeroizing::new(new_passcode));
        let who = self
            .restricted(connection, &header, "UnlockWithOneTimeCode")
            .await?;
        self.agent
            .unlock_with_one_time_code(&who, &request_id, &code, &new)
            .await
    }

    /// Unlock with the RA's unlock code. Restricted.
    async fn unlock_with_code(
        &self,
        unlock_code: String,
        new_passcode: String,
        confirm_final_try: bool,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), AgentError> {
        let (code, new) = (Zeroizing::new(unlock_code), Zeroizing::new(new_passcode));
        let who = self
            .restricted(connection, &header, "UnlockWithCode")
            .await?;
        self.agent
            .unlock_with_code(&who, &code, &new, confirm_final_try)
            .await
    }

    /// A Sponsor/LSA unlocks another holder's card in a reader here. Restricted.
    async fn sponsor_unlock(
        &self,
        holder_uuid: String,
        card_serial: String,
        new_passcode: String,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), AgentError> {
        let new = Zeroizing::new(new_passcode);
        let who = self
            .restricted(connection, &header, "SponsorUnlock")
            .await?;
        self.agent
            .sponsor_unlock(&who, &holder_uuid, &card_serial, &new)
            .await
    }

    /// Certificate self-renewal; progress as `RenewalProgress`. Restricted.
    async fn renew_certificate(
        &self,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<i64, AgentError> {
        let who = self
            .restricted(connection, &header, "RenewCertificate")
            .await?;
        self.agent.renew_certificate(&who).await
    }

    /// Activates a Temporary Access Card. Restricted.
    async fn tac_activate(
        &self,
        tac_serial: String,
        holder_uuid: String,
        custodian: String,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<TacInfo, AgentError> {
        self.restricted(connection, &header, "TacActivate").await?;
        self.agent
            .tac_activate(&tac_serial, &holder_uuid, &custodian)
            .await
    }

    /// Records a TAC's use in the custodian's register. Restricted.
    async fn tac_record_use(
        &self,
        tac_serial: String,
        used_by: String,
        from: i64,
        until: i64,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<TacInfo, AgentError> {
        self.restricted(connection, &header, "TacRecordUse").await?;
        self.agent
            .tac_record_use(&tac_serial, &used_by, from, until)
            .await
    }

    /// Returns a TAC to blank. Restricted.
    async fn tac_return(
        &self,
        tac_serial: String,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<TacInfo, AgentError> {
        self.restricted(connection, &header, "TacReturn").await?;
        self.agent.tac_return(&tac_serial).await
    }

    /// A TAC's record. Restricted.
    async fn tac_read(
        &self,
        tac_serial: String,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<TacInfo, AgentError> {
        self.restricted(connection, &header, "TacRead").await?;
        self.agent.tac_read(&tac_serial).await
    }

    /// A certificate renewal moved on.
    #[zbus(signal)]
    async fn renewal_progress(
        emitter: &SignalEmitter<'_>,
        step: &str,
        percent: u32,
    ) -> zbus::Result<()>;

    /// Each reader.
    #[zbus(property)]
    fn readers(&self) -> Vec<ReaderInfo> {
        self.agent.snapshot().readers
    }

    /// A card is in the active reader.
    #[zbus(property)]
    fn card_present(&self) -> bool {
        self.agent.snapshot().card_present
    }

    /// The holder's UUID.
    #[zbus(property)]
    fn holder_uuid(&self) -> String {
        self.agent.snapshot().holder_uuid
    }

    /// The holder's name.
    #[zbus(property)]
    fn holder_name(&self) -> String {
        self.agent.snapshot().holder_name
    }

    /// The state.
    #[zbus(property)]
    fn state(&self) -> String {
        self.agent.snapshot().state.as_str().to_owned()
    }

    /// Tries left.
    #[zbus(property)]
    fn passcode_tries_left(&self) -> i32 {
        self.agent.snapshot().passcode_tries_left
    }

    /// The selected role profile.
    #[zbus(property)]
    fn selected_role_profile(&self) -> SelectedRoleProfile {
        self.agent.snapshot().selected_role_profile
    }

    /// Certificate expiry.
    #[zbus(property)]
    fn certificate_not_after(&self) -> i64 {
        self.agent.snapshot().certificate_not_after
    }

    /// The session generation.
    #[zbus(property)]
    fn session_generation(&self) -> u64 {
        self.agent.snapshot().session_generation
    }

    /// A card was read.
    #[zbus(signal)]
    async fn card_inserted(
        emitter: &SignalEmitter<'_>,
        reader: &str,
        card_serial: &str,
        holder_uuid: &str,
    ) -> zbus::Result<()>;

    /// A card left a reader.
    #[zbus(signal)]
    async fn card_removed(
        emitter: &SignalEmitter<'_>,
        reader: &str,
        generation: u64,
    ) -> zbus::Result<()>;

    /// Log-in succeeded.
    #[zbus(signal)]
    async fn session_started(
        emitter: &SignalEmitter<'_>,
        holder_uuid: &str,
        generation: u64,
    ) -> zbus::Result<()>;

    /// A session ended.
    #[zbus(signal)]
    async fn session_ended(
        emitter: &SignalEmitter<'_>,
        reason: &str,
        generation: u64,
    ) -> zbus::Result<()>;

    /// The certificate expires soon.
    #[zbus(signal)]
    async fn certificate_expiring(
        emitter: &SignalEmitter<'_>,
        days_left: i32,
        message: &str,
    ) -> zbus::Result<()>;

    /// The passcode expires soon.
    #[zbus(signal)]
    async fn passcode_expiring(
        emitter: &SignalEmitter<'_>,
        days_left: i32,
        message: &str,
    ) -> zbus::Result<()>;

    /// A card was left in an idle workstation.
    #[zbus(signal)]
    async fn card_left_in_reader(
        emitter: &SignalEmitter<'_>,
        reader: &str,
        idle_seconds: u32,
    ) -> zbus::Result<()>;
}

/// Turns the agent's events into signals and `PropertiesChanged`, until the bus goes.
pub async fn forward_signals(connection: Connection, agent: Agent) {
    let mut events = agent.subscribe();
    let iface = match connection
        .object_server()
        .interface::<_, AgentInterface>(cardgate_ipc::OBJECT_PATH)
        .await
    {
        Ok(iface) => iface,
        Err(e) => {
            tracing::error!(error = %e, "the agent object is not served; no signals");
            return;
        }
    };
    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "signal forwarder lagged");
                AgentEvent::PropertiesChanged
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        let emitter = iface.signal_emitter();
        let sent = match &event {
            AgentEvent::CardInserted {
                reader,
                card_serial,
                holder_uuid,
            } => AgentInterface::card_inserted(emitter, reader, card_serial, holder_uuid).await,
            AgentEvent::CardRemoved { reader, generation } => {
                AgentInterface::card_removed(emitter, reader, *generation).await
            }
            AgentEvent::SessionStarted {
                holder_uuid,
                generation,
            } => AgentInterface::session_started(emitter, holder_uuid, *generation).await,
            AgentEvent::SessionEnded { reason, generation } => {
                AgentInterface::session_ended(emitter, reason.as_str(), *generation).await
            }
            AgentEvent::CertificateExpiring { days_left, message } => {
                AgentInterface::certificate_expiring(emitter, *days_left, message).await
            }
            AgentEvent::PasscodeExpiring { days_left, message } => {
                AgentInterface::passcode_expiring(emitter, *days_left, message).await
            }
            AgentEvent::CardLeftInReader {
                reader,
                idle_seconds,
            } => AgentInterface::card_left_in_reader(emitter, reader, *idle_seconds).await,
            AgentEvent::RenewalProgress { step, percent } => {
                AgentInterface::renewal_progress(emitter, step, *percent).await
            }
            AgentEvent::PropertiesChanged => Ok(()),
        };
        if let Err(e) = sent {
            tracing::warn!(error = %e, "signal not sent");
        }
        let object = iface.get().await;
        let changed = async {
            object.readers_changed(emitter).await?;
            object.card_present_changed(emitter).await?;
            object.holder_uuid_changed(emitter).await?;
            object.holder_name_changed(emitter).await?;
            object.state_changed(emitter).await?;
            object.passcode_tries_left_changed(emitter).await?;
            object.selected_role_profile_changed(emitter).await?;
            object.certificate_not_after_changed(emitter).await?;
            object.session_generation_changed(emitter).await
        };
        if let Err(e) = changed.await {
            tracing::warn!(error = %e, "PropertiesChanged not sent");
        }
    }
}
