//! Temporary Access Cards: activation for a holder, the custodian's usage register, return
//! to blank, and reading a TAC's record; each under a Sponsor/LSA session with `admin.tac`.

use cardgate_audit::{AuditEvent, CallerIdentity};
use cardgate_ipc::{TacHistoryEntry, TacInfo, TacUse};
use cardgate_piv::HolderUuid;
use cardgate_policy::Activity;
use cardgate_spine::wire::{TacAction, TacActivateRequest, TacRecord, TacState, TacUsageRequest};
use time::OffsetDateTime;

use crate::Agent;
use crate::agent::lock;
use crate::agent::staff::{
    SponsorSession, holder_argument, invalid, tac_serial_argument, text_argument,
};
use crate::error::CoreError;

pub(super) fn tac_info(record: &TacRecord) -> TacInfo {
    TacInfo {
        tac_serial: record.tac_serial.clone(),
        state: match record.state {
            TacState::Blank => "blank",
            _ => "active",
        }
        .to_owned(),
        holder_uid: record.holder_uid.clone().unwrap_or_default(),
        custodian: record.custodian.clone().unwrap_or_default(),
        usage: record
            .usage
            .iter()
            .map(|u| TacUse {
                used_by: u.used_by.clone(),
                from: u.from.unix_timestamp(),
                until: u.until.unix_timestamp(),
            })
            .collect(),
        history: record
            .history
            .iter()
            .map(|h| TacHistoryEntry {
                at: h.at.unix_timestamp(),
                action: match h.action {
                    TacAction::Activated => "activated",
                    TacAction::UsageRecorded => "usage_recorded",
                    TacAction::Returned => "returned",
                    _ => "other",
                }
                .to_owned(),
                by: h.by.clone(),
                holder_uid: h.holder_uid.clone().unwrap_or_default(),
            })
            .collect(),
    }
}

impl Agent {
    /// The sponsor's session for a TAC task, with `admin.tac` checked early.
    pub(super) fn tac_session(&self) -> Result<SponsorSession, CoreError> {
        let sponsor = self.sponsor_session("Temporary Access Cards")?;
        if !sponsor
            .activities
            .iter()
            .any(|a| a == Activity::ADMIN_TAC.as_str())
        {
            return Err(CoreError::NotPermitted(
                "the selected role profile does not allow Temporary Access Cards (admin.tac): \
                 select the Sponsor or LSA role"
                    .into(),
            ));
        }
        Ok(sponsor)
    }

    /// `TacActivate`.
    pub async fn tac_activate(
        &self,
        caller: &CallerIdentity,
        tac_serial: &str,
        holder_uuid: &str,
        custodian: &str,
    ) -> Result<TacInfo, CoreError> {
        let serial = tac_serial_argument(tac_serial)?;
        let holder = holder_argument("holder_uuid", holder_uuid)?;
        let custodian = text_argument("custodian", custodian)?;
        let sponsor = self.tac_session()?;
        let record = self
            .spine_client()?
            .activate_tac(
                &sponsor.spine,
                serial.as_str(),
                &TacActivateRequest {
                    holder_uid: holder.as_str().to_owned(),
                    custodian,
                },
            )
            .await
            .map_err(|e| self.session_call_error(&sponsor.spine, e))?;
        self.audit_async(AuditEvent::TacActivated {
            caller: Some(caller.clone()),
            tac_serial: serial,
            holder,
            sponsor: sponsor.holder,
        })
        .await?;
        Ok(tac_info(&record))
    }

    /// `TacRecordUse`.
    pub async fn tac_record_use(
        &self,
        caller: &CallerIdentity,
        tac_serial: &str,
        used_by: &str,
        from: i64,
        until: i64,
    ) -> Result<TacInfo, CoreError> {
        let serial = tac_serial_argument(tac_serial)?;
        let user = holder_argument("used_by", used_by)?;
        let time = |argument: &str, value: i64| {
            OffsetDateTime::from_unix_timestamp(value)
                .ok()
                .filter(|_| value > 0)
                .ok_or_else(|| invalid(argument, "must be a time in Unix seconds"))
        };
        let from_time = time("from", from)?;
        let until_time = time("until", until)?;
        if until < from {
            return Err(invalid("until", "must not be before from"));
        }
        let sponsor = self.tac_session()?;
        let record = self
            .spine_client()?
            .record_tac_usage(
                &sponsor.spine,
                serial.as_str(),
                &TacUsageRequest {
                    used_by: user.as_str().to_owned(),
                    from: from_time,
                    until: until_time,
                },
            )
            .await
            .map_err(|e| self.session_call_error(&sponsor.spine, e))?;
        let ods = lock(&self.shared.state)
            .live_session()
            .and_then(|s| s.selected.as_ref())
            .map(|p| p.ods_code.clone());
        self.audit_async(AuditEvent::TacUsed {
            caller: Some(caller.clone()),
            tac_serial: serial,
            holder: user,
            ods,
        })
        .await?;
        Ok(tac_info(&record))
    }

    /// `TacReturn`.
    pub async fn tac_return(
        &self,
        caller: &CallerIdentity,
        tac_serial: &str,
    ) -> Result<TacInfo, CoreError> {
        let serial = tac_serial_argument(tac_serial)?;
        let sponsor = self.tac_session()?;
        let client = self.spine_client()?;
        let before = client
            .tac(&sponsor.spine, serial.as_str())
            .await
            .map_err(|e| self.session_call_error(&sponsor.spine, e))?;
        let record = client
            .return_tac(&sponsor.spine, serial.as_str())
            .await
            .map_err(|e| self.session_call_error(&sponsor.spine, e))?;
        self.audit_async(AuditEvent::TacReturned {
            caller: Some(caller.clone()),
            tac_serial: serial,
            holder: before
                .holder_uid
                .as_deref()
                .and_then(|h| HolderUuid::new(h).ok()),
            sponsor: Some(sponsor.holder),
        })
        .await?;
        Ok(tac_info(&record))
    }

    /// `TacRead`.
    pub async fn tac_read(&self, tac_serial: &str) -> Result<TacInfo, CoreError> {
        let serial = tac_serial_argument(tac_serial)?;
        let sponsor = self.tac_session()?;
        let record = self
            .spine_client()?
            .tac(&sponsor.spine, serial.as_str())
            .await
            .map_err(|e| self.session_call_error(&sponsor.spine, e))?;
        Ok(tac_info(&record))
    }
}
