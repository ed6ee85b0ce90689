//! Temporary access cards (TACs): reading one, activation for a holder by a sponsor, usage
//! records while active, return to blank.

use axum::extract::State;
use axum::http::HeaderMap;
use cardgate_policy::Activity;
use cardgate_spine::wire::{
    ErrorCode, TacAction, TacActivateRequest, TacEvent, TacRecord, TacState, TacUsageRequest,
};

use super::extract::{ApiJson, ApiPath};
use super::{ApiError, AppResult, Shared};

fn check_tac_serial(serial: &str) -> AppResult<()> {
    if serial.len() > 20 || !serial.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::new(
            ErrorCode::MalformedRequest,
            "A TAC serial is 1 to 20 digits, as printed on the card.",
        ));
    }
    Ok(())
}

fn blank_tac(serial: &str) -> TacRecord {
    TacRecord {
        tac_serial: serial.to_owned(),
        state: TacState::Blank,
        holder_uid: None,
        custodian: None,
        usage: Vec::new(),
        history: Vec::new(),
    }
}

pub(super) async fn tac_read(
    State(state): Shared,
    headers: HeaderMap,
    ApiPath(serial): ApiPath,
) -> AppResult<axum::Json<TacRecord>> {
    state.authorise_activity(&headers, &Activity::ADMIN_TAC)?;
    check_tac_serial(&serial)?;
    let record = state
        .lock()
        .tacs
        .get(&serial)
        .cloned()
        .unwrap_or_else(|| blank_tac(&serial));
    Ok(axum::Json(record))
}

pub(super) async fn tac_activate(
    State(state): Shared,
    headers: HeaderMap,
    ApiPath(serial): ApiPath,
    ApiJson(request): ApiJson<TacActivateRequest>,
) -> AppResult<axum::Json<TacRecord>> {
    let session = state.authorise_activity(&headers, &Activity::ADMIN_TAC)?;
    check_tac_serial(&serial)?;
    if !state.directory.users.contains_key(&request.holder_uid) {
        return Err(ApiError::new(
            ErrorCode::UnknownUser,
            format!(
                "User {} is not registered: a TAC is activated for a registered team member.",
                request.holder_uid
            ),
        ));
    }
    if request.custodian.trim().is_empty() {
        return Err(ApiError::new(
            ErrorCode::MalformedRequest,
            "Name the custodian who keeps the TAC and its register.",
        ));
    }
    let at = state.clock.wall();
    let mut inner = state.lock();
    let record = inner
        .tacs
        .entry(serial.clone())
        .or_insert_with(|| blank_tac(&serial));
    if record.state == TacState::Active {
        return Err(ApiError::new(
            ErrorCode::TacInUse,
            format!(
                "TAC {serial} is already active for {}; return it to blank first.",
                record.holder_uid.as_deref().unwrap_or("someone")
            ),
        ));
    }
    record.state = TacState::Active;
    record.holder_uid = Some(request.holder_uid.clone());
    record.custodian = Some(request.custodian.clone());
    record.history.push(TacEvent {
        at,
        action: TacAction::Activated,
        by: session.uid.clone(),
        holder_uid: Some(request.holder_uid.clone()),
    });
    tracing::info!(tac = %serial, holder = %request.holder_uid, sponsor = %session.uid, "TAC activated");
    Ok(axum::Json(record.clone()))
}

pub(super) async fn tac_usage(
    State(state): Shared,
    headers: HeaderMap,
    ApiPath(serial): ApiPath,
    ApiJson(usage): ApiJson<TacUsageRequest>,
) -> AppResult<axum::Json<TacRecord>> {
    let session = state.authorise_activity(&headers, &Activity::ADMIN_TAC)?;
    check_tac_serial(&serial)?;
    if usage.until < usage.from {
        return Err(ApiError::new(
            ErrorCode::MalformedRequest,
            "`until` is before `from`.",
        ));
    }
    if usage.used_by.trim().is_empty() {
        return Err(ApiError::new(
            ErrorCode::MalformedRequest,
            "Say who used the TAC (`used_by`).",
        ));
    }
    let at = state.clock.wall();
    let mut inner = state.lock();
    let record = inner
        .tacs
        .get_mut(&serial)
        .filter(|r| r.state == TacState::Active)
        .ok_or_else(|| tac_not_active(&serial))?;
    record.usage.push(usage);
    record.history.push(TacEvent {
        at,
        action: TacAction::UsageRecorded,
        by: session.uid.clone(),
        holder_uid: record.holder_uid.clone(),
    });
    Ok(axum::Json(record.clone()))
}

fn tac_not_active(serial: &str) -> ApiError {
    ApiError::new(
        ErrorCode::TacNotActive,
        format!("TAC {serial} is blank: activate it first."),
    )
}

pub(super) async fn tac_return(
    State(state): Shared,
    headers: HeaderMap,
    ApiPath(serial): ApiPath,
) -> AppResult<axum::Json<TacRecord>> {
    let session = state.authorise_activity(&headers, &Activity::ADMIN_TAC)?;
    check_tac_serial(&serial)?;
    let at = state.clock.wall();
    let mut inner = state.lock();
    let record = inner
        .tacs
        .get_mut(&serial)
        .filter(|r| r.state == TacState::Active)
        .ok_or_else(|| tac_not_active(&serial))?;
    let holder = record.holder_uid.take();
    record.state = TacState::Blank;
    record.custodian = None;
    record.history.push(TacEvent {
        at,
        action: TacAction::Returned,
        by: session.uid.clone(),
        holder_uid: holder,
    });
    tracing::info!(tac = %serial, sponsor = %session.uid, "TAC returned to blank");
    Ok(axum::Json(record.clone()))
}
