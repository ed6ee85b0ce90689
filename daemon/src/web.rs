//! `org.cardgate.Web1` (docs/ipc.md "Web sign-in", docs/web.md): what the browsers' native
//! messaging host `cardgate-web-bridge` calls for a web page, each call carrying the page's
//! origin as the browser reported it.
//!
//! Every method checks the origin first (`Agent::web_origin`: HTTPS, `[web]
//! allowed_origins`). `Authenticate` then checks the nonce (shape, never seen before), finds
//! the passcode dialog of the caller's desktop session as `Login1.RequestLogin` does (the
//! bridge runs in the browser's session), checks a card is in, and only then asks the holder
//! through the broker shared with `Login1` (`prompts.rs`): "Sign in to ORIGIN", the passcode
//! every time. Each `Authenticate` is audited (`web_sign_in`) with its outcome.

use std::sync::Arc;

use cardgate_ipc::AgentError;
use zbus::message::Header;
use zbus::{Connection, interface};

use crate::agent::Agent;
use crate::callers::CallerCache;
use crate::prompts::{Broker, Granted, Opening, Purpose, requester_in_words, sender};

/// `org.cardgate.Web1`, served beside `org.cardgate.Agent1` and `org.cardgate.Login1`.
#[derive(Debug)]
pub(crate) struct WebInterface {
    agent: Agent,
    callers: CallerCache,
    broker: Arc<Broker>,
}

impl WebInterface {
    /// Serves web pages' requests for `agent`, asking the holder through `broker`.
    pub(crate) fn new(agent: Agent, broker: Arc<Broker>) -> WebInterface {
        WebInterface {
            agent,
            callers: CallerCache::default(),
            broker,
        }
    }

    /// `Authenticate` without its audit entry.
    async fn sign_in(
        &self,
        origin: &str,
        nonce: &str,
        connection: &Connection,
        header: &Header<'_>,
        who: &cardgate_audit::CallerIdentity,
    ) -> Result<String, AgentError> {
        let origin = self.agent.web_origin(origin)?;
        let nonce = self.agent.take_nonce(nonce)?;
        let requester = sender(header)?;
        let prompt = self
            .broker
            .dialog_of(connection, who, "Authenticate")
            .await?;
        if !self.agent.snapshot().card_present {
            return Err(AgentError::NoCard(
                "Insert your smartcard to sign in.".into(),
            ));
        }
        let in_words = requester_in_words(who.pid, who.executable.as_deref());
        let granted = self
            .broker
            .ask_holder(
                &self.agent,
                connection,
                &prompt,
                &requester,
                Purpose::Web {
                    origin: origin.clone(),
                    nonce,
                    requester: who.clone(),
                },
                Opening::Web {
                    origin: origin.as_str(),
                    requester: &in_words,
                },
            )
            .await?;
        match granted {
            Granted::Token(token) => Ok(token),
            Granted::Profiles(_) => Err(AgentError::Internal(
                "a web sign-in was answered with a log-in".into(),
            )),
        }
    }

    /// Announces changed properties on `org.cardgate.Agent1` (a role change, a session
    /// started by a sign-in).
    async fn announce(&self, connection: &Connection) {
        if let Ok(agent) = connection
            .object_server()
            .interface::<_, crate::dbus::AgentInterface>(cardgate_ipc::OBJECT_PATH)
            .await
        {
            agent.get().await.announce(agent.signal_emitter()).await;
        }
    }
}

#[interface(name = "org.cardgate.Web1")]
impl WebInterface {
    /// The card signs a sign-in for the page at `origin` over the identity provider's
    /// `nonce`, once the holder typed the passcode in the agent's dialog.
    #[zbus(out_args("token"))]
    async fn authenticate(
        &self,
        origin: String,
        nonce: String,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<String, AgentError> {
        let who = self.callers.identify(connection, &header).await?;
        let result = self
            .sign_in(&origin, &nonce, connection, &header, &who)
            .await;
        self.announce(connection).await;
        let outcome = match &result {
            Ok(_) => "signed",
            Err(e) => e.short_name(),
        };
        tracing::info!(uid = who.uid, pid = who.pid, origin = %origin.chars().take(64).collect::<String>(), outcome, "Web1.Authenticate answered");
        let audited = self.agent.audit_web_sign_in(&who, &origin, outcome).await;
        match (result, audited) {
            // A token whose request is not on the audit trail is never handed out.
            (Ok(_), Err(e)) => Err(e.into()),
            (result, _) => result,
        }
    }

    /// Selects the role the holder chose at the identity provider (`selected_roleid`), as
    /// `Agent1.SelectRoleProfile` does: only one of the session's profiles.
    async fn select_role(
        &self,
        origin: String,
        role_id: String,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), AgentError> {
        let who = self.callers.identify(connection, &header).await?;
        self.agent.web_origin(&origin)?;
        let result = self.agent.select_role_profile(&who, &role_id).await;
        self.announce(connection).await;
        result.map_err(AgentError::from)
    }

    /// The gate for a web page: `Agent1.Authorise`'s answer, audited with the origin.
    #[zbus(out_args("allowed", "reason", "message", "generation"))]
    async fn authorise(
        &self,
        origin: String,
        action: String,
        ods: String,
        #[zbus(connection)] connection: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(bool, String, String, u64), AgentError> {
        let who = self.callers.identify(connection, &header).await?;
        let origin = self.agent.web_origin(&origin)?;
        let answer = self
            .agent
            .authorise_for_origin(&who, &origin, &action, &ods)
            .await?;
        Ok(answer.into_out_args())
    }

    /// Card presence, the agent's state and the session generation; nothing of the holder.
    #[zbus(out_args("card_present", "state", "generation"))]
    async fn status(&self, origin: String) -> Result<(bool, String, u64), AgentError> {
        self.agent.web_origin(&origin)?;
        let s = self.agent.snapshot();
        Ok((
            s.card_present,
            s.state.as_str().to_owned(),
            s.session_generation,
        ))
    }
}
