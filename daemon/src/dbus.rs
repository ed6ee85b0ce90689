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
    AgentError, ReaderInfo, RoleProfileInfo, SelectedRoleProfile, TacHistoryEntry, TacInfo, TacUse,
};
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::{OwnedValue, Value};
use zbus::{Connection, interface};
use zeroize::Zeroizing;

use crate::agent::{Agent, AgentEvent, Snapshot};
use crate::callers::CallerCache;

/// The served object.
#[derive(Debug)]
pub struct AgentInterface {
    agent: Agent,
    restricted_group: String,
    callers: CallerCache,
    /// The properties as last announced; see [`AgentInterface::announce`].
    announced: tokio::sync::Mutex<Snapshot>,
}

impl AgentInterface {
    /// Serves `agent`; restricted methods need root or membership of `restricted_group`.
    pub fn new(agent: Agent, restricted_group: String) -> Self {
        let announced = tokio::sync::Mutex::new(agent.snapshot());
        AgentInterface {
            agent,
            restricted_group,
            callers: CallerCache::default(),
            announced,
        }
    }

    /// Sends one `PropertiesChanged` carrying exactly the properties that differ from the
    /// last announcement, all read from one snapshot (so a new `State` never travels without
    /// the `SessionGeneration` it belongs to); nothing when nothing changed. Methods that
    /// change the state call it before they answer, so a client has the new values (and the
    /// signal) before the reply; the signal forwarder calls it after every agent event.
    /// Announcements are serialised, so they arrive in the order the state changed.
    pub(crate) async fn announce(&self, emitter: &SignalEmitter<'_>) {
        let mut last = self.announced.lock().await;
        let now = self.agent.snapshot();
        let changed = changed_properties(&last, &now);
        if changed.is_empty() {
            return;
        }
        let interface =
            zbus::names::InterfaceName::from_static_str_unchecked(cardgate_ipc::INTERFACE);
        let sent = zbus::fdo::Properties::properties_changed(
            emitter,
            interface,
            changed,
            std::borrow::Cow::Borrowed(&[]),
        )
        .await;
        match sent {
            Ok(()) => *last = now,
            Err(e) => tracing::warn!(error = %e, "PropertiesChanged not sent"),
        }
    }
}

/// The properties whose values differ between two snapshots, by their D-Bus names.
/// (`Warnings` is not a property: it is only in `Status`.)
fn changed_properties(before: &Snapshot, now: &Snapshot) -> HashMap<&'static str, Value<'static>> {
    use cardgate_ipc::property as p;
    let mut changed = HashMap::new();
    let mut put = |name: &'static str, differs: bool, value: Value<'static>| {
        if differs {
            changed.insert(name, value);
        }
    };
    put(
        p::READERS,
        before.readers != now.readers,
        Value::from(now.readers.clone()),
    );
    put(
        p::CARD_PRESENT,
        before.card_present != now.card_present,
        Value::from(now.card_present),
    );
    put(
        p::HOLDER_UUID,
        before.holder_uuid != now.holder_uuid,
        Value::from(now.holder_uuid.clone()),
    );
    put(
        p::HOLDER_NAME,
        before.holder_name != now.holder_name,
        Value::from(now.holder_name.clone()),
    );
    put(
        p::STATE,
        before.state != now.state,
        Value::from(now.state.as_str()),
    );
    put(
        p::PASSCODE_TRIES_LEFT,
        before.passcode_tries_left != now.passcode_tries_left,
        Value::from(now.passcode_tries_left),
    );
    put(
        p::SELECTED_ROLE_PROFILE,
        before.selected_role_profile != now.selected_role_profile,
        Value::from(now.selected_role_profile.clone()),
    );
    put(
        p::CERTIFICATE_NOT_AFTER,
        before.certificate_not_after != now.certificate_not_after,
        Value::from(now.certificate_not_after),
    );
    put(
        p::SESSION_GENERATION,
        before.session_generation != now.session_generation,
        Value::from(now.session_generation),
    );
    changed
}

impl AgentInterface {
    async fn restricted(
        &self,
        connection: &Connection,
        header: &Header<'_>,
        method: &str,
    ) -> Result<CallerIdentity, AgentError> {
        let caller = self
            .callers
            .identify_in_group(connection, header, &self.restricted_group)
            .await?;
        let who = caller.identity;
        if caller.member {
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
    #[zbus(out_args("status"))]
    async fn status(&self) -> Result<HashMap<String, OwnedValue>, AgentError> {
        use cardgate_ipc::property as p;
        let s = self.agent.snapshot();
        let entries = [
            (p::READERS, Value::from(s.readers)),
            (p::CARD_PRESENT, Value::from(s.card_present)),
            (p::HOLDER_UUID, Value::from(s.holder_uuid)),
            (p::HOLDER_NAME, Value::from(s.holder_name)),
            (p::STATE, Value::from(s.state.as_str())),
            (p::PASSCODE_TRIES_LEFT, Value::from(s.passcode_tries_left)),
            (
                p::SELECTED_ROLE_PROFILE,
                Value::from(s.selected_role_profile),
            ),
            (
                p::CERTIFICATE_NOT_AFTER,
                Value::from(s.certificate_not_after),
            ),
            (p::SESSION_GENERATION, Value::from(s.session_generation)),
            (
                p::WORKSTATION_ODS_CODES,
                Value::from(s.workstation_ods_codes),
            ),
            (p::WARNINGS, Value::from(s.warnings)),
        ];
        entries
            .into_iter()
            .map(|(name, value)| Ok((name.to_owned(), owned(value)?)))
            .collect()
    }

    /// Host-typed passcode log-in. Restricted.
    #[zbus(out_args("role_profiles"))]
    async fn login(
        &self,
        passcode: String,
        confirm_final_try: bool,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<Vec<RoleProfileInfo>, AgentError> {
        let passcode = zeroize::Zeroizing::new(passcode);
        let who = self.restricted(connection, &header, "Login").await?;
        let result = self
            .agent
            .login(&who, Some(passcode.as_str()), confirm_final_try)
            .await;
        self.announce(&emitter).await;
        result.map_err(AgentError::from)
    }

    /// PIN-pad log-in. Restricted.
    #[zbus(out_args("role_profiles"))]
    async fn login_with_pin_pad(
        &self,
        confirm_final_try: bool,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<Vec<RoleProfileInfo>, AgentError> {
        let who = self
            .restricted(connection, &header, "LoginWithPinPad")
            .await?;
        let result = self.agent.login(&who, None, confirm_final_try).await;
        self.announce(&emitter).await;
        result.map_err(AgentError::from)
    }

    /// Selects or switches the role profile.
    async fn select_role_profile(
        &self,
        id: String,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), AgentError> {
        let who = self.callers.identify(connection, &header).await?;
        let result = self.agent.select_role_profile(&who, &id).await;
        self.announce(&emitter).await;
        result.map_err(AgentError::from)
    }

    /// Ends the session.
    async fn logout(
        &self,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), AgentError> {
        let who = self.callers.identify(connection, &header).await?;
        let result = self.agent.logout(&who).await;
        self.announce(&emitter).await;
        result.map_err(AgentError::from)
    }

    /// Changes the passcode. Restricted.
    async fn change_passcode(
        &self,
        current: String,
        new: String,
        confirm_final_try: bool,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), AgentError> {
        let current = zeroize::Zeroizing::new(current);
        let new = zeroize::Zeroizing::new(new);
        let who = self
            .restricted(connection, &header, "ChangePasscode")
            .await?;
        let result = self
            .agent
            .change_passcode(&who, &current, &new, confirm_final_try)
            .await;
        self.announce(&emitter).await;
        result.map_err(AgentError::from)
    }

    /// Changes the passcode, both keyed on the reader's PIN pad. Restricted.
    async fn change_passcode_with_pin_pad(
        &self,
        confirm_final_try: bool,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), AgentError> {
        let who = self
            .restricted(connection, &header, "ChangePasscodeWithPinPad")
            .await?;
        let result = self
            .agent
            .change_passcode_with_pin_pad(&who, confirm_final_try)
            .await;
        self.announce(&emitter).await;
        result.map_err(AgentError::from)
    }

    /// The gate.
    #[zbus(out_args("allowed", "reason", "message", "generation"))]
    async fn authorise(
        &self,
        action: String,
        ods_code: String,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(bool, String, String, u64), AgentError> {
        let who = self.callers.identify(connection, &header).await?;
        let answer = self.agent.authorise_async(&who, &action, &ods_code).await?;
        Ok(answer.into_out_args())
    }

    /// The session's ticket. Restricted.
    #[zbus(out_args("token", "holder_uuid", "role_profile_id", "job_role", "ods_code"))]
    async fn get_ticket(
        &self,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(String, String, String, String, String), AgentError> {
        self.restricted(connection, &header, "GetTicket").await?;
        Ok(self.agent.ticket()?.into_out_args())
    }

    /// Self-service unlock, step 1 (`agent/staff.rs`). Restricted.
    #[zbus(out_args("request_id", "sent_to"))]
    async fn start_self_service_unlock(
        &self,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(String, String), AgentError> {
        let who = self
            .restricted(connection, &header, "StartSelfServiceUnlock")
            .await?;
        let started = self.agent.start_self_service_unlock(&who).await?;
        Ok(started.into_out_args())
    }

    /// Self-service unlock, step 2. Restricted.
    async fn unlock_with_one_time_code(
        &self,
        request_id: String,
        one_time_code: String,
        new_passcode: String,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), AgentError> {
        let (code, new) = (Zeroizing::new(one_time_code), Zeroizing::new(new_passcode));
        let who = self
            .restricted(connection, &header, "UnlockWithOneTimeCode")
            .await?;
        let result = self
            .agent
            .unlock_with_one_time_code(&who, &request_id, &code, &new)
            .await;
        self.announce(&emitter).await;
        result.map_err(AgentError::from)
    }

    /// Unlock with the RA's unlock code. Restricted.
    async fn unlock_with_code(
        &self,
        unlock_code: String,
        new_passcode: String,
        confirm_final_try: bool,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), AgentError> {
        let (code, new) = (Zeroizing::new(unlock_code), Zeroizing::new(new_passcode));
        let who = self
            .restricted(connection, &header, "UnlockWithCode")
            .await?;
        let result = self
            .agent
            .unlock_with_code(&who, &code, &new, confirm_final_try)
            .await;
        self.announce(&emitter).await;
        result.map_err(AgentError::from)
    }

    /// Unlock with the RA's unlock code and a new passcode keyed on the reader's PIN pad.
    /// Restricted.
    async fn unlock_with_code_on_pin_pad(
        &self,
        confirm_final_try: bool,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), AgentError> {
        let who = self
            .restricted(connection, &header, "UnlockWithCodeOnPinPad")
            .await?;
        let result = self
            .agent
            .unlock_with_code_on_pin_pad(&who, confirm_final_try)
            .await;
        self.announce(&emitter).await;
        result.map_err(AgentError::from)
    }

    /// A Sponsor/LSA unlocks another holder's card in a reader here. Restricted.
    async fn sponsor_unlock(
        &self,
        holder_uuid: String,
        card_serial: String,
        new_passcode: String,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), AgentError> {
        let new = Zeroizing::new(new_passcode);
        let who = self
            .restricted(connection, &header, "SponsorUnlock")
            .await?;
        let result = self
            .agent
            .sponsor_unlock(&who, &holder_uuid, &card_serial, &new)
            .await;
        self.announce(&emitter).await;
        result.map_err(AgentError::from)
    }

    /// Certificate self-renewal; progress as `RenewalProgress`. Restricted.
    #[zbus(out_args("not_after"))]
    async fn renew_certificate(
        &self,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<i64, AgentError> {
        let who = self
            .restricted(connection, &header, "RenewCertificate")
            .await?;
        let result = self.agent.renew_certificate(&who).await;
        self.announce(&emitter).await;
        result.map_err(AgentError::from)
    }

    /// Activates a Temporary Access Card. Restricted.
    #[zbus(out_args("tac_serial", "state", "holder_uid", "custodian", "usage", "history"))]
    async fn tac_activate(
        &self,
        tac_serial: String,
        holder_uuid: String,
        custodian: String,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<
        (
            String,
            String,
            String,
            String,
            Vec<TacUse>,
            Vec<TacHistoryEntry>,
        ),
        AgentError,
    > {
        let who = self.restricted(connection, &header, "TacActivate").await?;
        self.agent
            .tac_activate(&who, &tac_serial, &holder_uuid, &custodian)
            .await
            .map(TacInfo::into_out_args)
            .map_err(AgentError::from)
    }

    /// Records a TAC's use in the custodian's register. Restricted.
    #[zbus(out_args("tac_serial", "state", "holder_uid", "custodian", "usage", "history"))]
    async fn tac_record_use(
        &self,
        tac_serial: String,
        used_by: String,
        from: i64,
        until: i64,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<
        (
            String,
            String,
            String,
            String,
            Vec<TacUse>,
            Vec<TacHistoryEntry>,
        ),
        AgentError,
    > {
        let who = self.restricted(connection, &header, "TacRecordUse").await?;
        self.agent
            .tac_record_use(&who, &tac_serial, &used_by, from, until)
            .await
            .map(TacInfo::into_out_args)
            .map_err(AgentError::from)
    }

    /// Returns a TAC to blank. Restricted.
    #[zbus(out_args("tac_serial", "state", "holder_uid", "custodian", "usage", "history"))]
    async fn tac_return(
        &self,
        tac_serial: String,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<
        (
            String,
            String,
            String,
            String,
            Vec<TacUse>,
            Vec<TacHistoryEntry>,
        ),
        AgentError,
    > {
        let who = self.restricted(connection, &header, "TacReturn").await?;
        self.agent
            .tac_return(&who, &tac_serial)
            .await
            .map(TacInfo::into_out_args)
            .map_err(AgentError::from)
    }

    /// A TAC's record. Restricted.
    #[zbus(out_args("tac_serial", "state", "holder_uid", "custodian", "usage", "history"))]
    async fn tac_read(
        &self,
        tac_serial: String,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<
        (
            String,
            String,
            String,
            String,
            Vec<TacUse>,
            Vec<TacHistoryEntry>,
        ),
        AgentError,
    > {
        self.restricted(connection, &header, "TacRead").await?;
        self.agent
            .tac_read(&tac_serial)
            .await
            .map(TacInfo::into_out_args)
            .map_err(AgentError::from)
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

    /// The ODS codes this workstation serves (the configuration's, so constant).
    #[zbus(property(emits_changed_signal = "const"))]
    fn workstation_ods_codes(&self) -> Vec<String> {
        self.agent.snapshot().workstation_ods_codes
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
        iface.get().await.announce(emitter).await;
    }
}
