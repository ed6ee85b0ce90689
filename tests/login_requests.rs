//! A program asking for a log-in the recommended way (`RequestLogin`, docs/ipc.md), as the
//! prompted-login and desktop suites play it: the request runs in its own task while the suite
//! answers the dialog, then the suite collects the answer; errors by their short name.

use std::time::Duration;

use cardgate_ipc::{LoginProxy, RoleProfileInfo};
use libtest_mimic::Failed;

use crate::daemon_harness::fail;

/// The short name of a failed call's error (`NoPrompt`), or what the call returned.
pub fn error_name<T: std::fmt::Debug>(result: &zbus::Result<T>) -> String {
    match result {
        Err(zbus::Error::MethodError(name, _, _)) => name
            .as_str()
            .trim_start_matches(cardgate_ipc::ERROR_PREFIX)
            .trim_start_matches('.')
            .to_owned(),
        other => format!("{other:?}"),
    }
}

/// A `RequestLogin` under way.
pub type Request = tokio::task::JoinHandle<zbus::Result<Vec<RoleProfileInfo>>>;

/// `program` asks for a log-in for `reason`; the answer comes with [`answered`].
pub fn request(program: &LoginProxy<'static>, reason: &'static str) -> Request {
    let program = program.clone();
    tokio::spawn(async move { program.request_login(reason).await })
}

/// The answer to `request`, which must come within 20 s.
pub async fn answered(request: Request) -> Result<zbus::Result<Vec<RoleProfileInfo>>, Failed> {
    tokio::time::timeout(Duration::from_secs(20), request)
        .await
        .map_err(|_| Failed::from("RequestLogin did not answer within 20 s"))?
        .map_err(|e| fail("request task", e))
}
