//! Unlocking a blocked card: self-service (a one-time code sent to the holder's registered
//! contact through the outbox, then the unlock code released against it) and through a
//! sponsor or LSA with the right activity (never their own card).

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use cardgate_policy::Activity;
use cardgate_spine::wire::{
    ErrorCode, OutboxMessage, Secret, SelfServiceUnlockConfirm, SelfServiceUnlockRequest,
    SelfServiceUnlockStarted, SponsorUnlockRequest, UnlockCodeResponse,
};

use crate::state::{
    MAX_WRONG_CODES, UNLOCK_REQUEST_LIFETIME, UnlockRequest, constant_time_eq, random_bytes,
};

use super::extract::{ApiJson, ApiPath};
use super::{ApiError, AppResult, Shared, card_for, old_generation};

/// `asha.patel@nhs.example` → `a***@nhs.example`; `07700900123` → `*******0123`.
fn mask_contact(contact: &str) -> String {
    match contact.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => {
            let chars: Vec<char> = contact.chars().collect();
            let keep = chars.len().saturating_sub(4);
            chars
                .iter()
                .enumerate()
                .map(|(i, c)| if i < keep { '*' } else { *c })
                .collect()
        }
    }
}

pub(super) async fn self_service_unlock(
    State(state): Shared,
    ApiJson(request): ApiJson<SelfServiceUnlockRequest>,
) -> AppResult<(StatusCode, axum::Json<SelfServiceUnlockStarted>)> {
    let card = card_for(&state, &request.uid, &request.card_serial)?;
    if cardgate_certs::is_old_generation(&card.serial) {
        return Err(old_generation(&card.serial));
    }
    let user = state
        .directory
        .users
        .get(&request.uid)
        .ok_or_else(|| ApiError::internal("directory"))?;
    let contact = user
        .email
        .as_deref()
        .or(user.mobile.as_deref())
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::NoRegisteredContact,
                "No email or mobile number is registered for self-service unlock: ask your \
                 Sponsor or Local Smartcard Administrator, or your RA.",
            )
        })?;
    let number = random_bytes(&state.rng, 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) % 1_000_000)
        .ok_or_else(|| ApiError::internal("random generator"))?;
    let code = Secret::new(format!("{number:06}"));
    let request_id = state.random_id("u-")?;
    let message = OutboxMessage {
        to: contact.to_owned(),
        uid: request.uid.clone(),
        one_time_code: code.clone(),
        at: state.clock.wall(),
    };
    append_outbox(&state.outbox, &message)?;
    let now = state.clock.now();
    state.lock().add_unlock_request(
        request_id.clone(),
        UnlockRequest {
            card_serial: card.serial.clone(),
            code,
            wrong: 0,
            expires: now + UNLOCK_REQUEST_LIFETIME,
        },
        now,
    );
    tracing::info!(uid = %request.uid, card = %card.serial, "self-service unlock: one-time code sent");
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(SelfServiceUnlockStarted {
            request_id,
            sent_to: mask_contact(contact),
        }),
    ))
}

fn append_outbox(path: &std::path::Path, message: &OutboxMessage) -> AppResult<()> {
    let mut line = serde_json::to_vec(message).map_err(|_| ApiError::internal("outbox line"))?;
    line.push(b'\n');
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(&line))
        .map_err(|e| {
            tracing::error!(path = %path.display(), error = %e, "cannot write the outbox");
            ApiError::new(
                ErrorCode::Internal,
                "The one-time code could not be sent; try again later.",
            )
        })
}

pub(super) async fn self_service_confirm(
    State(state): Shared,
    ApiPath(request_id): ApiPath,
    ApiJson(confirm): ApiJson<SelfServiceUnlockConfirm>,
) -> AppResult<axum::Json<UnlockCodeResponse>> {
    let now = state.clock.now();
    let serial = {
        let mut inner = state.lock();
        let no_request = || {
            ApiError::new(
                ErrorCode::WrongOneTimeCode,
                "No such unlock request (it expired or was voided after three wrong codes); \
                 start again.",
            )
        };
        let request = inner
            .unlock_requests
            .get_mut(&request_id)
            .ok_or_else(no_request)?;
        if now > request.expires {
            inner.unlock_requests.remove(&request_id);
            return Err(no_request());
        }
        if !constant_time_eq(
            confirm.one_time_code.expose().as_bytes(),
            request.code.expose().as_bytes(),
        ) {
            request.wrong += 1;
            let left = MAX_WRONG_CODES.saturating_sub(request.wrong);
            if left == 0 {
                inner.unlock_requests.remove(&request_id);
                return Err(ApiError::new(
                    ErrorCode::WrongOneTimeCode,
                    "Wrong code, three times: this request is void; start again.",
                ));
            }
            return Err(ApiError::new(
                ErrorCode::WrongOneTimeCode,
                format!("Wrong code; {left} tries left."),
            ));
        }
        let request = inner
            .unlock_requests
            .remove(&request_id)
            .ok_or_else(no_request)?;
        request.card_serial
    };
    let card = state
        .directory
        .cards
        .get(&serial)
        .ok_or_else(|| ApiError::internal("directory"))?;
    tracing::info!(uid = %card.uid, card = %serial, "self-service unlock: unlock code released");
    Ok(axum::Json(UnlockCodeResponse {
        unlock_code: card.unlock_code.clone(),
    }))
}

pub(super) async fn sponsor_unlock(
    State(state): Shared,
    headers: HeaderMap,
    ApiJson(request): ApiJson<SponsorUnlockRequest>,
) -> AppResult<axum::Json<UnlockCodeResponse>> {
    let session = state.authorise_activity(&headers, &Activity::ADMIN_UNLOCK)?;
    let own_card_error = || {
        ApiError::new(
            ErrorCode::OwnCard,
            "You cannot unlock your own card: ask another Sponsor or LSA, or use self-service \
             unlock.",
        )
    };
    if request.uid == session.uid {
        return Err(own_card_error());
    }
    if state
        .directory
        .cards
        .get(&request.card_serial)
        .is_some_and(|c| c.uid == session.uid)
    {
        return Err(own_card_error());
    }
    let card = card_for(&state, &request.uid, &request.card_serial)?;
    if cardgate_certs::is_old_generation(&card.serial) {
        return Err(old_generation(&card.serial));
    }
    tracing::info!(
        sponsor = %session.uid,
        uid = %card.uid,
        card = %card.serial,
        "sponsor unlock: unlock code released"
    );
    Ok(axum::Json(UnlockCodeResponse {
        unlock_code: card.unlock_code.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contacts_are_masked() {
        assert_eq!(mask_contact("asha.patel@nhs.example"), "a***@nhs.example");
        assert_eq!(mask_contact("07700900123"), "*******0123");
        assert_eq!(mask_contact("12"), "12");
    }
}
