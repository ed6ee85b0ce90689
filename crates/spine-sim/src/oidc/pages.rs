//! What the provider serves a browser: the sign-in page and its script, the error page, the
//! page library (`/cardgate.js`, one source: `web/lib/cardgate.js`), and the headers that keep
//! them from being framed or fed other scripts. Every interpolated value is HTML-escaped.

use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, X_FRAME_OPTIONS};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::Html;

/// The page library the browser bridge provides (replaced by the bridge's own at merge).
pub(crate) const CARDGATE_JS: &str = include_str!("../../../../web/lib/cardgate.js");

/// The sign-in page's script.
pub(crate) const SIGNIN_JS: &str = include_str!("signin.js");

/// Text made safe for HTML content and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// No framing (a sign-in page in someone else's frame is clickjacking), scripts from this
/// origin only, nothing cached.
pub(crate) fn harden(headers: &mut HeaderMap) {
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;\
padding:0 1rem;line-height:1.5}button{font-size:1rem;padding:.5rem 1rem;margin:.25rem 0;\
display:block}#error{color:#a00;font-weight:bold}.note{color:#555}";

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n",
        title = escape(title),
    ))
}

/// The sign-in page of one authorization request: `data-request` names the sign-in,
/// `data-nonce` is the challenge the card signs.
pub(crate) fn signin_page(request_id: &str, nonce: &str, client_name: &str) -> Html<String> {
    page(
        "Sign in with your smartcard",
        &format!(
            "<main id=\"signin-page\" data-request=\"{request}\" data-nonce=\"{nonce}\">\n\
             <h1>Sign in with your smartcard</h1>\n\
             <p><strong>{client}</strong> asks you to sign in to the NHS Care Identity Service \
             (simulated).</p>\n\
             <p class=\"note\">Keep your card in the reader. Your passcode is asked in the \
             cardgate dialog on your desktop, never on this page.</p>\n\
             <button id=\"signin\" type=\"button\">Sign in with smartcard</button>\n\
             <p id=\"status\" role=\"status\" aria-live=\"polite\"></p>\n\
             <section id=\"roles\" aria-labelledby=\"roles-title\" hidden>\n\
             <h2 id=\"roles-title\">Choose your role</h2>\n\
             <p id=\"holder-name\"></p>\n<div id=\"role-list\"></div>\n</section>\n\
             <p id=\"error\" role=\"alert\" hidden></p>\n\
             <p><a id=\"return\" hidden>Return to {client}</a></p>\n\
             </main>\n\
             <script src=\"/cardgate.js\"></script>\n<script src=\"/signin.js\"></script>",
            request = escape(request_id),
            nonce = escape(nonce),
            client = escape(client_name),
        ),
    )
}

/// The page for an authorization request that cannot be redirected.
pub(crate) fn error_page(error: &str, description: &str) -> Html<String> {
    page(
        "Sign-in refused",
        &format!(
            "<main>\n<h1>Sign-in refused</h1>\n\
             <p id=\"error\" role=\"alert\" data-error=\"{code}\">{description}</p>\n\
             <p class=\"note\">Error: <code>{code}</code>. Go back to the application and \
             start again; if it keeps happening, tell its supplier.</p>\n</main>",
            code = escape(error),
            description = escape(description),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolated_values_are_escaped() {
        let Html(page) = signin_page("r\"><script>", "n", "<b>PMR</b>");
        assert!(!page.contains("<script>\""), "{page}");
        assert!(page.contains("&lt;b&gt;PMR&lt;/b&gt;"));
        let Html(page) = error_page("invalid_request", "<img src=x>");
        assert!(page.contains("&lt;img src=x&gt;"));
    }
}
