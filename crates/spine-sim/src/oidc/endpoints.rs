//! The provider's handlers. The order of the authorization endpoint's checks follows RFC 6749
//! §4.1.2.1: the client and its redirect URI first (failures are an HTML page, never a
//! redirect), then everything else as an error redirect to that URI.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Path, RawQuery, Request, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use cardgate_webauth::{AuthToken, ChallengeNonce};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::check_card;
use crate::config::{OidcClientConfig, RoleProfileConfig, UserConfig};
use crate::state::{constant_time_eq, random_bytes};

use super::error::{ErrorPage, OAuthError};
use super::flow::{Authorization, FlowError, Grant, Holder, is_s256_challenge};
use super::{ACR_SATISFIED, ACR_SMARTCARD, AMR_SMARTCARD, Provider, pages, too_large};

type Shared = State<Arc<Provider>>;

/// Longest `state`, `nonce`, `scope` or `acr_values` accepted.
const MAX_PARAMETER_CHARS: usize = 1024;

pub(super) async fn discovery(State(p): Shared) -> Response {
    let issuer = p.issuer();
    let body = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "scopes_supported": ["openid", "profile", "nationalrbacaccess"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "code_challenge_methods_supported": ["S256"],
        "acr_values_supported": ACR_SATISFIED,
        "claims_supported": [
            "iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "name", "uid",
            "selected_roleid", "nhsid_nrbac_roles", "nhsid_user_orgs"
        ],
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}

pub(super) async fn jwks(State(p): Shared) -> Response {
    (StatusCode::OK, axum::Json(p.key.jwks())).into_response()
}

pub(super) async fn cardgate_js() -> Response {
    script(pages::CARDGATE_JS)
}

pub(super) async fn signin_js() -> Response {
    script(pages::SIGNIN_JS)
}

fn script(text: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (CACHE_CONTROL, "no-cache"),
        ],
        text,
    )
        .into_response()
}

/// Form or query parameters, each at most once (RFC 6749 §3.1).
fn parameters(text: &str) -> Result<HashMap<String, String>, String> {
    let mut out = HashMap::new();
    for (key, value) in url::form_urlencoded::parse(text.as_bytes()) {
        if out.insert(key.to_string(), value.into_owned()).is_some() {
            return Err(format!("the parameter {key} appears more than once"));
        }
    }
    Ok(out)
}

/// `uri` with `pairs` added to its query.
fn with_query(uri: &str, pairs: &[(&str, &str)]) -> String {
    match url::Url::parse(uri) {
        Ok(mut url) => {
            {
                let mut query = url.query_pairs_mut();
                for (k, v) in pairs {
                    query.append_pair(k, v);
                }
            }
            url.into()
        }
        // Registered URIs were checked when the configuration was read.
        Err(_) => uri.to_owned(),
    }
}

/// The error redirect of RFC 6749 §4.1.2.1 for a checked `redirect_uri`.
fn error_location(
    redirect_uri: &str,
    state: Option<&str>,
    error: &str,
    description: &str,
) -> String {
    let mut pairs = vec![("error", error), ("error_description", description)];
    if let Some(state) = state {
        pairs.push(("state", state));
    }
    with_query(redirect_uri, &pairs)
}

fn found(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(value) => (
            StatusCode::FOUND,
            [
                (LOCATION, value),
                (CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
        )
            .into_response(),
        Err(_) => OAuthError::server_error("a redirect location").into_response(),
    }
}

pub(super) async fn authorize(State(p): Shared, RawQuery(query): RawQuery) -> Response {
    let params = match parameters(query.as_deref().unwrap_or("")) {
        Ok(params) => params,
        Err(why) => {
            return ErrorPage::new(
                "invalid_request",
                format!("The request is malformed: {why}."),
            )
            .into_response();
        }
    };
    let Some(client_id) = params.get("client_id") else {
        return ErrorPage::new("invalid_request", "The request names no client_id.")
            .into_response();
    };
    let Some(client) = p.clients.get(client_id) else {
        return ErrorPage::new(
            "invalid_client",
            format!(
                "The application (client_id {:?}) is not registered with this provider: unknown client.",
                client_id.chars().take(64).collect::<String>()
            ),
        )
        .into_response();
    };
    let Some(redirect_uri) = params.get("redirect_uri") else {
        return ErrorPage::new("invalid_request", "The request names no redirect_uri.")
            .into_response();
    };
    if !client.redirect_uris.iter().any(|r| r == redirect_uri) {
        return ErrorPage::new(
            "invalid_request",
            format!(
                "The redirect_uri {:?} is not registered for {}: the provider never redirects to an \
                 unregistered address.",
                redirect_uri.chars().take(200).collect::<String>(),
                client.name
            ),
        )
        .into_response();
    }
    let state = params.get("state").cloned();
    let refuse = |error: &str, description: &str| {
        tracing::info!(error, client = %client.client_id, "authorization request refused by redirect");
        found(&error_location(
            redirect_uri,
            state.as_deref(),
            error,
            description,
        ))
    };
    match check_authorization(&params) {
        Ok(()) => {}
        Err((error, description)) => return refuse(error, &description),
    }
    let authorization = Authorization {
        client_id: client.client_id.clone(),
        redirect_uri: redirect_uri.clone(),
        state: state.clone(),
        nonce: params.get("nonce").cloned(),
        code_challenge: params.get("code_challenge").cloned().unwrap_or_default(),
        scope: params.get("scope").cloned().unwrap_or_default(),
    };
    let (Ok(challenge), Ok(request_id)) = (ChallengeNonce::generate(), p.app.random_id("ar-"))
    else {
        return refuse(
            "server_error",
            "The provider's random source failed; try again.",
        );
    };
    let now = p.app.clock.now();
    if p.flows()
        .start(request_id.clone(), authorization, challenge.clone(), now)
        .is_err()
    {
        return refuse(
            "temporarily_unavailable",
            "Too many sign-ins are in progress; try again shortly.",
        );
    }
    let mut response =
        pages::signin_page(&request_id, challenge.as_str(), &client.name).into_response();
    pages::harden(response.headers_mut());
    response
}

/// Every check of an authorization request after the client and redirect URI.
fn check_authorization(params: &HashMap<String, String>) -> Result<(), (&'static str, String)> {
    for (name, value) in params {
        if value.len() > MAX_PARAMETER_CHARS {
            return Err((
                "invalid_request",
                format!("{name} is longer than {MAX_PARAMETER_CHARS} characters."),
            ));
        }
    }
    match params.get("response_type").map(String::as_str) {
        Some("code") => {}
        Some(other) => {
            return Err((
                "unsupported_response_type",
                format!(
                    "response_type {other:?} is not supported: the authorization code flow (code) only."
                ),
            ));
        }
        None => {
            return Err((
                "invalid_request",
                "response_type is missing (use code).".into(),
            ));
        }
    }
    let scope = params.get("scope").map(String::as_str).unwrap_or("");
    if !scope.split(' ').any(|s| s == "openid") {
        return Err(("invalid_scope", "scope must include openid.".into()));
    }
    if params.contains_key("request") || params.contains_key("request_uri") {
        return Err((
            "request_not_supported",
            "Request objects are not supported.".into(),
        ));
    }
    if params
        .get("prompt")
        .is_some_and(|p| p.split(' ').any(|v| v == "none"))
    {
        return Err((
            "login_required",
            "prompt=none cannot be honoured: a smartcard sign-in always needs the holder.".into(),
        ));
    }
    let Some(challenge) = params.get("code_challenge") else {
        return Err((
            "invalid_request",
            "code_challenge is missing: this provider requires PKCE with S256.".into(),
        ));
    };
    match params.get("code_challenge_method").map(String::as_str) {
        Some("S256") => {}
        Some("plain") | None => {
            return Err((
                "invalid_request",
                "code_challenge_method must be S256: the plain PKCE method (the default when it is absent) is not accepted.".into(),
            ));
        }
        Some(other) => {
            return Err((
                "invalid_request",
                format!("code_challenge_method {other:?} is not supported: use S256."),
            ));
        }
    }
    if !is_s256_challenge(challenge) {
        return Err((
            "invalid_request",
            "code_challenge is not an S256 challenge (43 base64url characters).".into(),
        ));
    }
    if let Some(acr) = params.get("acr_values")
        && !acr.split(' ').any(|a| ACR_SATISFIED.contains(&a))
    {
        return Err((
            "invalid_request",
            format!(
                "acr_values {acr:?} cannot be met: this provider signs in with a smartcard ({ACR_SMARTCARD})."
            ),
        ));
    }
    Ok(())
}

/// A JSON body of the sign-in endpoints, size-limited, failures as OAuth errors.
pub(super) struct SigninJson<T>(T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for SigninJson<T> {
    type Rejection = OAuthError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, state).await?;
        serde_json::from_slice(&bytes).map(SigninJson).map_err(|e| {
            OAuthError::bad_request(
                "invalid_request",
                format!("The body is not the JSON expected: {e}"),
            )
        })
    }
}

async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, OAuthError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            OAuthError::bad_request(
                "invalid_request",
                format!("The body could not be read: {rejection}"),
            )
        }
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SigninBody {
    /// The token object `cardgate.authenticate` resolved with.
    token: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RoleBody {
    role_id: String,
}

/// The sign-in path id, checked for length.
fn request_id(id: &str) -> Result<&str, OAuthError> {
    if id.is_empty() || id.len() > 128 {
        return Err(OAuthError::bad_request(
            "invalid_request",
            "The sign-in id is malformed.",
        ));
    }
    Ok(id)
}

fn user_roles(user: &UserConfig) -> Vec<Value> {
    user.role_profiles.iter().map(role_claim).collect()
}

fn role_claim(r: &RoleProfileConfig) -> Value {
    json!({
        "person_roleid": r.id,
        "org_code": r.ods_code,
        "org_name": r.organisation_name,
        "role_name": r.job_role,
        "activities": r.activities,
    })
}

fn user_orgs(user: &UserConfig) -> Vec<Value> {
    let mut seen = std::collections::BTreeSet::new();
    user.role_profiles
        .iter()
        .filter(|r| seen.insert(r.ods_code.clone()))
        .map(|r| json!({"org_code": r.ods_code, "org_name": r.organisation_name}))
        .collect()
}

pub(super) async fn signin(
    State(p): Shared,
    Path(id): Path<String>,
    SigninJson(body): SigninJson<SigninBody>,
) -> Result<axum::Json<Value>, OAuthError> {
    let id = request_id(&id)?;
    let now = p.app.clock.now();
    let (authorization, taken) = {
        let mut flows = p.flows();
        let authorization = flows.authorization(id, now).cloned();
        (authorization, flows.take_challenge(id, now))
    };
    let Some(authorization) = authorization else {
        return Err(OAuthError::bad_request(
            "invalid_request",
            FlowError::UnknownRequest.description(),
        ));
    };
    // From here on the sign-in's one challenge is spent: any refusal ends it, with an error
    // redirect to the client.
    let deny = |error: &'static str, description: String| {
        p.flows().end(id);
        let location = error_location(
            &authorization.redirect_uri,
            authorization.state.as_deref(),
            error,
            &description,
        );
        tracing::info!(error, client = %authorization.client_id, "sign-in refused");
        OAuthError::bad_request(error, description).with_redirect(location)
    };
    let nonce = taken.map_err(|e| deny("access_denied", e.description()))?;
    let token = AuthToken::from_json(&body.token.to_string()).map_err(|e| {
        deny(
            "invalid_request",
            format!("The card's token is malformed: {e}."),
        )
    })?;
    let verified = token.verify(&p.origin, &nonce).map_err(|e| {
        deny(
            "access_denied",
            format!("The card's token was refused: {e}."),
        )
    })?;
    let checked = check_card(&p.app, &verified.certificate_der).map_err(|e| {
        deny(
            "access_denied",
            format!("The card was refused: {}", e.message()),
        )
    })?;
    let Some(user) = p.app.directory.users.get(&checked.uid) else {
        return Err(deny(
            "access_denied",
            format!(
                "User {} is not registered with the Care Identity Service; contact your RA.",
                checked.uid
            ),
        ));
    };
    if user.role_profiles.is_empty() {
        return Err(deny(
            "access_denied",
            format!(
                "User {} holds no role profile; ask your Sponsor or RA for one.",
                checked.uid
            ),
        ));
    }
    p.flows()
        .signed_in(
            id,
            Holder {
                uid: checked.uid.clone(),
                auth_time: time::OffsetDateTime::now_utc(),
            },
        )
        .map_err(|e| OAuthError::bad_request("invalid_request", e.description()))?;
    tracing::info!(uid = %checked.uid, client = %authorization.client_id, "card signed in");
    Ok(axum::Json(json!({
        "holder": {"uid": checked.uid, "name": user.name},
        "roles": user_roles(user),
    })))
}

pub(super) async fn choose_role(
    State(p): Shared,
    Path(id): Path<String>,
    SigninJson(body): SigninJson<RoleBody>,
) -> Result<axum::Json<Value>, OAuthError> {
    let id = request_id(&id)?;
    let now = p.app.clock.now();
    let uid = {
        let flows = p.flows();
        flows
            .holder(id, now)
            .map(|h| h.uid.clone())
            .map_err(|e| OAuthError::bad_request("invalid_request", e.description()))?
    };
    let user = p
        .app
        .directory
        .users
        .get(&uid)
        .ok_or_else(|| OAuthError::server_error("directory"))?;
    if !user.role_profiles.iter().any(|r| r.id == body.role_id) {
        return Err(OAuthError::bad_request(
            "invalid_request",
            format!(
                "{:?} is not one of your role profiles; choose one of those shown.",
                body.role_id.chars().take(64).collect::<String>()
            ),
        ));
    }
    let code = random_bytes(&p.app.rng, 32)
        .map(|b| URL_SAFE_NO_PAD.encode(b))
        .ok_or_else(|| OAuthError::server_error("random generator"))?;
    let grant = p
        .flows()
        .issue_code(id, body.role_id.clone(), &code, now)
        .map_err(|e| OAuthError::bad_request("invalid_request", e.description()))?;
    tracing::info!(%uid, role = %body.role_id, client = %grant.authorization.client_id, "authorization code issued");
    let mut pairs = vec![("code", code.as_str())];
    if let Some(state) = grant.authorization.state.as_deref() {
        pairs.push(("state", state));
    }
    Ok(axum::Json(json!({
        "redirect": with_query(&grant.authorization.redirect_uri, &pairs),
    })))
}

/// A form-encoded credential (`client_secret_basic` encodes both parts, RFC 6749 §2.3.1).
fn form_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("v={text}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// The client a token request authenticates as.
fn authenticate_client<'p>(
    p: &'p Provider,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<&'p OidcClientConfig, OAuthError> {
    let basic = match headers.get(AUTHORIZATION) {
        Some(value) => {
            let value = value
                .to_str()
                .ok()
                .and_then(|v| {
                    v.strip_prefix("Basic ")
                        .or_else(|| v.strip_prefix("basic "))
                })
                .ok_or_else(|| {
                    OAuthError::invalid_client("The Authorization header is not HTTP Basic.")
                })?;
            let decoded = STANDARD
                .decode(value.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    OAuthError::invalid_client("The Basic credentials are not base64 of id:secret.")
                })?;
            let (id, secret) = decoded.split_once(':').ok_or_else(|| {
                OAuthError::invalid_client("The Basic credentials are not id:secret.")
            })?;
            Some((form_decode(id), form_decode(secret)))
        }
        None => None,
    };
    let (client_id, secret) = match (basic, form.get("client_secret")) {
        (Some(_), Some(_)) => {
            return Err(OAuthError::bad_request(
                "invalid_request",
                "The client authenticated twice (Basic and client_secret): use one method.",
            ));
        }
        (Some((id, secret)), None) => {
            if form.get("client_id").is_some_and(|f| *f != id) {
                return Err(OAuthError::bad_request(
                    "invalid_request",
                    "client_id in the body differs from the Basic credentials.",
                ));
            }
            (id, Some(secret))
        }
        (None, secret) => {
            let id = form.get("client_id").cloned().ok_or_else(|| {
                OAuthError::invalid_client("No client_id and no client credentials.")
            })?;
            (id, secret.cloned())
        }
    };
    let client = p.clients.get(&client_id).ok_or_else(|| {
        OAuthError::invalid_client(format!(
            "Unknown client {:?}: it is not registered with this provider.",
            client_id.chars().take(64).collect::<String>()
        ))
    })?;
    match (&client.client_secret, secret) {
        (Some(expected), Some(given))
            if constant_time_eq(expected.expose().as_bytes(), given.as_bytes()) =>
        {
            Ok(client)
        }
        (Some(_), Some(_)) => Err(OAuthError::invalid_client("The client secret is wrong.")),
        (Some(_), None) => Err(OAuthError::invalid_client(
            "This is a confidential client: authenticate with its client secret.",
        )),
        (None, None) => Ok(client),
        (None, Some(_)) => Err(OAuthError::invalid_client(
            "This is a public client and has no secret: send client_id and PKCE only.",
        )),
    }
}

pub(super) async fn token(
    State(p): Shared,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, OAuthError> {
    let body = read_body(request, &()).await?;
    let text = std::str::from_utf8(&body).map_err(|_| {
        OAuthError::bad_request("invalid_request", "The body is not UTF-8 form data.")
    })?;
    let form = parameters(text).map_err(|why| {
        OAuthError::bad_request(
            "invalid_request",
            format!("The request is malformed: {why}."),
        )
    })?;
    let client = authenticate_client(&p, &headers, &form)?;
    match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {}
        Some(other) => {
            return Err(OAuthError::bad_request(
                "unsupported_grant_type",
                format!(
                    "grant_type {:?} is not supported: authorization_code only.",
                    other.chars().take(64).collect::<String>()
                ),
            ));
        }
        None => {
            return Err(OAuthError::bad_request(
                "invalid_request",
                "grant_type is missing.",
            ));
        }
    }
    let code = form
        .get("code")
        .ok_or_else(|| OAuthError::bad_request("invalid_request", "code is missing."))?;
    let verifier = form.get("code_verifier").ok_or_else(|| {
        OAuthError::bad_request(
            "invalid_request",
            "code_verifier is missing: this provider requires PKCE (S256) on every token request.",
        )
    })?;
    let access_token = random_bytes(&p.app.rng, 32)
        .map(|b| URL_SAFE_NO_PAD.encode(b))
        .ok_or_else(|| OAuthError::server_error("random generator"))?;
    let now = p.app.clock.now();
    let grant = p
        .flows()
        .redeem(
            code,
            &client.client_id,
            form.get("redirect_uri").map(String::as_str),
            verifier,
            &access_token,
            now,
        )
        .map_err(|e| {
            let error = if e == FlowError::VerifierMalformed {
                "invalid_request"
            } else {
                "invalid_grant"
            };
            OAuthError::bad_request(error, e.description())
        })?;
    let id_token = p
        .key
        .sign(&id_token_claims(&p, &grant)?)
        .map_err(|_| OAuthError::server_error("signing the ID token"))?;
    tracing::info!(uid = %grant.holder.uid, client = %client.client_id, "tokens issued");
    let body = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": p.token_lifetime.as_secs(),
        "id_token": id_token,
        "scope": grant.authorization.scope,
    });
    Ok((
        StatusCode::OK,
        [
            (CACHE_CONTROL, "no-store"),
            (axum::http::header::PRAGMA, "no-cache"),
        ],
        axum::Json(body),
    )
        .into_response())
}

/// The claims about the holder that the ID token and userinfo share.
fn holder_claims(
    p: &Provider,
    grant: &Grant,
) -> Result<serde_json::Map<String, Value>, OAuthError> {
    let user = p
        .app
        .directory
        .users
        .get(&grant.holder.uid)
        .ok_or_else(|| OAuthError::server_error("directory"))?;
    let mut claims = serde_json::Map::new();
    claims.insert("sub".into(), json!(grant.holder.uid));
    claims.insert("uid".into(), json!(grant.holder.uid));
    claims.insert("name".into(), json!(user.name));
    claims.insert("selected_roleid".into(), json!(grant.role_id));
    claims.insert("nhsid_nrbac_roles".into(), Value::Array(user_roles(user)));
    claims.insert("nhsid_user_orgs".into(), Value::Array(user_orgs(user)));
    Ok(claims)
}

fn id_token_claims(p: &Provider, grant: &Grant) -> Result<Value, OAuthError> {
    // Token times are real wall-clock seconds (the relying party checks them against its own
    // clock); the sim's advanced clock only ages codes and challenges.
    let iat = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut claims = holder_claims(p, grant)?;
    claims.insert("iss".into(), json!(p.issuer()));
    claims.insert("aud".into(), json!(grant.authorization.client_id));
    claims.insert("iat".into(), json!(iat));
    claims.insert("exp".into(), json!(iat + p.token_lifetime.as_secs() as i64));
    claims.insert(
        "auth_time".into(),
        json!(grant.holder.auth_time.unix_timestamp()),
    );
    claims.insert("acr".into(), json!(ACR_SMARTCARD));
    claims.insert("amr".into(), json!([AMR_SMARTCARD]));
    if let Some(nonce) = &grant.authorization.nonce {
        claims.insert("nonce".into(), json!(nonce));
    }
    Ok(Value::Object(claims))
}

pub(super) async fn userinfo(
    State(p): Shared,
    headers: HeaderMap,
) -> Result<axum::Json<Value>, OAuthError> {
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| OAuthError::invalid_token("No bearer access token."))?;
    let grant = p
        .flows()
        .token(token, p.app.clock.now())
        .cloned()
        .ok_or_else(|| {
            OAuthError::invalid_token("The access token is unknown, expired or revoked.")
        })?;
    Ok(axum::Json(Value::Object(holder_claims(&p, &grant)?)))
}
