//! The C side of `pam_cardgate.so`: the six `pam_sm_*` entry points libpam calls, and the
//! three libpam calls the module makes (`pam_get_user`, `pam_get_item(PAM_CONV)`,
//! `pam_getenv`). This is the crate's only `unsafe` code, allowed here alone (the workspace
//! lints deny it everywhere, and every other library crate forbids it at its root):
//!
//! - libpam hands us raw pointers (the handle, `argv`) that are valid for the call;
//! - the conversation function is a C function pointer we call with a message we own and
//!   whose answer (allocated with `malloc` by the application, per the PAM specification) we
//!   copy into a zeroizing buffer, wipe and `free`.
//!
//! Everything else is in safe Rust (`module.rs`). A panic never crosses into C: each entry
//! point catches it and answers `PAM_SYSTEM_ERR`.
//!
//! A thin layer of our own rather than the `pam-bindings` crate: that crate's last release is
//! old, and its conversation API hands back passcodes as plain `CString`s that are never
//! wiped; this layer is small enough to read in full.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};

use zeroize::Zeroizing;

use crate::client::AgentClient;
use crate::error::{PamError, code};
use crate::module::{self, Conversation};
use crate::options::Options;

/// libpam's opaque handle.
#[repr(C)]
pub struct PamHandle {
    _private: [u8; 0],
}

/// `struct pam_message`.
#[repr(C)]
struct PamMessage {
    msg_style: c_int,
    msg: *const c_char,
}

/// `struct pam_response`.
#[repr(C)]
struct PamResponse {
    resp: *mut c_char,
    resp_retcode: c_int,
}

/// The conversation function's type.
type ConvFn = unsafe extern "C" fn(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata_ptr: *mut c_void,
) -> c_int;

/// `struct pam_conv`.
#[repr(C)]
struct PamConv {
    conv: Option<ConvFn>,
    appdata_ptr: *mut c_void,
}

const PAM_CONV: c_int = 5;
const PAM_PROMPT_ECHO_OFF: c_int = 1;
const PAM_PROMPT_ECHO_ON: c_int = 2;
const PAM_ERROR_MSG: c_int = 3;
const PAM_TEXT_INFO: c_int = 4;
const PAM_SILENT: c_int = 0x8000;

#[link(name = "pam")]
unsafe extern "C" {
    fn pam_get_user(pamh: *mut PamHandle, user: *mut *const c_char, prompt: *const c_char)
    -> c_int;
    fn pam_get_item(pamh: *const PamHandle, item_type: c_int, item: *mut *const c_void) -> c_int;
    fn pam_getenv(pamh: *mut PamHandle, name: *const c_char) -> *const c_char;
}

/// One PAM call's view of the handle.
struct Handle {
    pamh: *mut PamHandle,
    silent: bool,
}

impl Handle {
    fn user(&self) -> Result<String, PamError> {
        let mut user: *const c_char = std::ptr::null();
        // SAFETY: pamh is the live handle libpam passed us; user is a valid out-pointer.
        let rc = unsafe { pam_get_user(self.pamh, &mut user, std::ptr::null()) };
        if rc != code::SUCCESS || user.is_null() {
            return Err(PamError::Pam("no user name".into()));
        }
        // SAFETY: libpam returned a NUL-terminated string it owns, valid during this call.
        let user = unsafe { CStr::from_ptr(user) };
        user.to_str()
            .map(str::to_owned)
            .map_err(|_| PamError::Pam("the user name is not UTF-8".into()))
    }

    /// `XDG_SESSION_ID` from the PAM environment (set by pam_systemd earlier in the session
    /// stack), else from the process's (a screen locker runs inside the session).
    fn session_id(&self) -> Option<String> {
        let name = c"XDG_SESSION_ID";
        // SAFETY: pamh is live; name is NUL-terminated.
        let value = unsafe { pam_getenv(self.pamh, name.as_ptr()) };
        if !value.is_null() {
            // SAFETY: libpam returned a NUL-terminated string valid during this call.
            let value = unsafe { CStr::from_ptr(value) };
            return value.to_str().ok().map(str::to_owned);
        }
        std::env::var("XDG_SESSION_ID").ok()
    }

    fn conv(&self) -> Result<&PamConv, PamError> {
        let mut item: *const c_void = std::ptr::null();
        // SAFETY: pamh is live; item is a valid out-pointer.
        let rc = unsafe { pam_get_item(self.pamh, PAM_CONV, &mut item) };
        if rc != code::SUCCESS || item.is_null() {
            return Err(PamError::Conversation("no conversation function".into()));
        }
        // SAFETY: PAM_CONV's item is a `struct pam_conv` owned by libpam for the handle's
        // lifetime, which outlives this call.
        Ok(unsafe { &*item.cast::<PamConv>() })
    }

    /// Sends one message; returns the answer for prompts.
    fn send(&self, style: c_int, text: &str) -> Result<Option<Zeroizing<String>>, PamError> {
        let conv = self.conv()?;
        let function = conv
            .conv
            .ok_or_else(|| PamError::Conversation("no conversation function".into()))?;
        let text = CString::new(text.replace('\0', " "))
            .map_err(|e| PamError::Conversation(e.to_string()))?;
        let message = PamMessage {
            msg_style: style,
            msg: text.as_ptr(),
        };
        let mut messages = [&message as *const PamMessage];
        let mut response: *mut PamResponse = std::ptr::null_mut();
        // SAFETY: one valid message (its text outlives the call), a valid out-pointer, and
        // the application's own appdata pointer, as the PAM specification prescribes.
        let rc = unsafe { function(1, messages.as_mut_ptr(), &mut response, conv.appdata_ptr) };
        let answer = if response.is_null() {
            None
        } else {
            // SAFETY: the application allocated one pam_response with malloc; its resp, if
            // not null, is a malloc'd NUL-terminated string. We copy it into a zeroizing
            // buffer, wipe it in place and free both, as the module owns them now.
            unsafe {
                let resp = (*response).resp;
                let copied = if resp.is_null() {
                    None
                } else {
                    let bytes = CStr::from_ptr(resp).to_bytes();
                    let copy = Zeroizing::new(String::from_utf8_lossy(bytes).into_owned());
                    for i in 0..bytes.len() {
                        std::ptr::write_volatile(resp.add(i), 0);
                    }
                    libc::free(resp.cast());
                    Some(copy)
                };
                libc::free(response.cast());
                copied
            }
        };
        if rc != code::SUCCESS {
            return Err(PamError::Conversation(format!(
                "the application answered {rc}"
            )));
        }
        Ok(answer)
    }
}

impl Conversation for Handle {
    fn prompt(&mut self, text: &str, echo: bool) -> Result<Zeroizing<String>, PamError> {
        let style = if echo {
            PAM_PROMPT_ECHO_ON
        } else {
            PAM_PROMPT_ECHO_OFF
        };
        self.send(style, text)?
            .ok_or_else(|| PamError::Conversation("no answer".into()))
    }

    fn info(&mut self, text: &str) {
        if !self.silent {
            let _ = self.send(PAM_TEXT_INFO, text);
        }
    }

    fn error(&mut self, text: &str) {
        if !self.silent {
            let _ = self.send(PAM_ERROR_MSG, text);
        }
    }
}

/// The module arguments from `argc`/`argv`.
///
/// # Safety
/// `argv` must point to `argc` NUL-terminated strings (libpam guarantees this).
unsafe fn arguments(argc: c_int, argv: *const *const c_char) -> Result<Options, PamError> {
    let count = usize::try_from(argc).unwrap_or(0);
    let mut args = Vec::with_capacity(count);
    for i in 0..count {
        // SAFETY: the caller guarantees argc valid entries.
        let arg = unsafe { *argv.add(i) };
        if arg.is_null() {
            continue;
        }
        // SAFETY: each entry is NUL-terminated.
        let arg = unsafe { CStr::from_ptr(arg) };
        args.push(
            arg.to_str()
                .map_err(|_| PamError::Pam("a module argument is not UTF-8".into()))?
                .to_owned(),
        );
    }
    Options::parse(args.iter().map(String::as_str))
}

/// Which stack is calling.
#[derive(Clone, Copy)]
enum Stack {
    Auth,
    Account,
    OpenSession,
    CloseSession,
}

/// One entry point, in safe terms once the arguments are read.
///
/// # Safety
/// As for the `pam_sm_*` functions.
unsafe fn entry(
    stack: Stack,
    pamh: *mut PamHandle,
    flags: c_int,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    if pamh.is_null() {
        return code::SYSTEM_ERR;
    }
    let mut handle = Handle {
        pamh,
        silent: flags & PAM_SILENT != 0,
    };
    // SAFETY: libpam passes argc/argv of the module line.
    let options = unsafe { arguments(argc, argv) };
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let options = options?;
        let user = handle.user()?;
        match stack {
            Stack::Auth => {
                let mut daemon = AgentClient::connect(&options.bus, options.timeout)?;
                module::authenticate(&user, &options, &mut handle, &mut daemon)
                    .map(|()| code::SUCCESS)
            }
            Stack::Account => {
                let mut daemon = AgentClient::connect(&options.bus, options.timeout)?;
                module::account(&user, &options, &mut daemon).map(|()| code::SUCCESS)
            }
            Stack::OpenSession | Stack::CloseSession => {
                let Some(id) = handle.session_id() else {
                    return Ok(code::IGNORE);
                };
                let mut daemon = AgentClient::connect(&options.bus, options.timeout)?;
                let done = if matches!(stack, Stack::OpenSession) {
                    module::open_session(&user, Some(&id), &mut daemon)?
                } else {
                    module::close_session(Some(&id), &mut daemon)?
                };
                Ok(if done { code::SUCCESS } else { code::IGNORE })
            }
        }
    }));
    match outcome {
        Ok(Ok(rc)) => rc,
        Ok(Err(e)) => {
            if !matches!(e, PamError::Conversation(_)) {
                handle.error(&e.to_string());
            }
            match stack {
                Stack::Auth => e.code(),
                Stack::Account => match e.code() {
                    code::SERVICE_ERR | code::SYSTEM_ERR | code::ACCT_EXPIRED => e.code(),
                    _ => code::PERM_DENIED,
                },
                Stack::OpenSession | Stack::CloseSession => match e.code() {
                    code::SERVICE_ERR | code::SYSTEM_ERR => e.code(),
                    _ => code::SESSION_ERR,
                },
            }
        }
        Err(_) => code::SYSTEM_ERR,
    }
}

/// `auth`: card, mapping, passcode through the agent.
///
/// # Safety
/// Called by libpam with a live handle and the module line's `argc`/`argv`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pam_sm_authenticate(
    pamh: *mut PamHandle,
    flags: c_int,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    // SAFETY: forwarded from libpam.
    unsafe { entry(Stack::Auth, pamh, flags, argc, argv) }
}

/// `auth` credentials: nothing to set (the agent holds the session).
///
/// # Safety
/// Called by libpam.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pam_sm_setcred(
    _pamh: *mut PamHandle,
    _flags: c_int,
    _argc: c_int,
    _argv: *const *const c_char,
) -> c_int {
    code::SUCCESS
}

/// `account`: card in, holder mapped, not locked, certificate usable.
///
/// # Safety
/// Called by libpam with a live handle and the module line's `argc`/`argv`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pam_sm_acct_mgmt(
    pamh: *mut PamHandle,
    flags: c_int,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    // SAFETY: forwarded from libpam.
    unsafe { entry(Stack::Account, pamh, flags, argc, argv) }
}

/// `session` open: registers the logind session with the agent.
///
/// # Safety
/// Called by libpam with a live handle and the module line's `argc`/`argv`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pam_sm_open_session(
    pamh: *mut PamHandle,
    flags: c_int,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    // SAFETY: forwarded from libpam.
    unsafe { entry(Stack::OpenSession, pamh, flags, argc, argv) }
}

/// `session` close: forgets the logind session.
///
/// # Safety
/// Called by libpam with a live handle and the module line's `argc`/`argv`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pam_sm_close_session(
    pamh: *mut PamHandle,
    flags: c_int,
    argc: c_int,
    argv: *const *const c_char,
) -> c_int {
    // SAFETY: forwarded from libpam.
    unsafe { entry(Stack::CloseSession, pamh, flags, argc, argv) }
}

/// `password`: not this module's business (`cardgate passcode` changes the card's passcode).
///
/// # Safety
/// Called by libpam.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pam_sm_chauthtok(
    _pamh: *mut PamHandle,
    _flags: c_int,
    _argc: c_int,
    _argv: *const *const c_char,
) -> c_int {
    code::IGNORE
}
