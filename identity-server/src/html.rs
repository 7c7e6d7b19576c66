//! Server-rendered pages: no template engine, no inline script or style, every dynamic
//! value escaped by [`esc`]. Each page has landmarks (header, nav, main), a skip link,
//! labelled controls in reading order, and a language switch; the passkey parts are driven
//! by `/static/passkey.js` and explain themselves where WebAuthn is unavailable.

use std::fmt::Write;

use crate::i18n::{Lang, Texts};

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// A text template with `{key}` holes, each filled with an escaped value.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = esc(template);
    for (k, v) in values {
        out = out.replace(&format!("{{{k}}}"), &format!("<strong>{}</strong>", esc(v)));
    }
    out
}

/// Where a page is and in which language.
#[derive(Clone, Copy)]
pub struct Frame<'a> {
    /// The page language.
    pub lang: Lang,
    /// This page's path and query, for the language switch to come back to.
    pub here: &'a str,
}

impl Frame<'_> {
    fn t(&self) -> &'static Texts {
        self.lang.texts()
    }
}

fn url_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn page(f: &Frame<'_>, title: &str, main: &str, script: bool) -> String {
    let t = f.t();
    let other = f.lang.other();
    format!(
        "<!DOCTYPE html>\n<html lang=\"{lang}\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title} · {brand}</title>\n\
         <link rel=\"stylesheet\" href=\"/static/site.css\">\n{script}</head>\n<body>\n\
         <a class=\"skip\" id=\"skip\" href=\"#main\">{skip}</a>\n\
         <header><p class=\"brand\">{brand}</p>\n\
         <nav aria-label=\"{language}\"><a href=\"/lang/{other_tag}?back={back}\" lang=\"{other_tag}\" hreflang=\"{other_tag}\" id=\"switch-language\">{other_name}</a></nav>\n\
         </header>\n\
         <main id=\"main\" tabindex=\"-1\">\n<h1>{title}</h1>\n{main}\n</main>\n</body>\n</html>\n",
        lang = f.lang.tag(),
        title = esc(title),
        brand = esc(t.brand),
        skip = esc(t.skip),
        language = esc(t.language),
        other_tag = other.tag(),
        other_name = esc(other.texts().name_of_language),
        back = url_encode(f.here),
        script = if script {
            "<script src=\"/static/passkey.js\" defer></script>\n"
        } else {
            ""
        },
    )
}

/// The error page when the request's language is not at hand (an error raised before its
/// handler could pick one): the specific message in English, what to do in both languages.
/// An error page in the citizen's language, for an error of `status` described by
/// `detail` (English: it names fields and values). In English the detail is the message;
/// in another language the message says what kind of error it is, and the detail follows,
/// marked `lang="en"` so that a screen reader reads it as English.
pub fn error_page(lang: Lang, status: u16, detail: &str) -> String {
    let t = lang.texts();
    let body = if lang == Lang::En {
        format!(
            "<p role=\"alert\" id=\"error-message\">{}</p>\n<p>{}</p>",
            esc(detail),
            esc(t.error_next)
        )
    } else {
        let kind = match status {
            401 | 403 => t.error_denied,
            404 => t.error_not_found,
            429 => t.error_too_many,
            503 => t.error_unavailable,
            500..=599 => t.error_internal,
            _ => t.error_request,
        };
        format!(
            "<p role=\"alert\" id=\"error-message\">{}</p>\n<p lang=\"en\">{}</p>\n<p>{}</p>",
            esc(kind),
            esc(detail),
            esc(t.error_next)
        )
    };
    page(
        &Frame {
            lang,
            here: "/account",
        },
        t.error_title,
        &body,
        false,
    )
}

/// What the login page shows.
pub struct LoginView<'a> {
    /// Where the password form posts.
    pub action: &'a str,
    /// Where the passkey answer posts.
    pub passkey_action: &'a str,
    /// CSRF token.
    pub csrf: &'a str,
    /// The e-service asking, if any.
    pub client: Option<(&'a str, &'a str)>,
    /// Username to prefill.
    pub username: Option<&'a str>,
    /// An error to show.
    pub error: Option<&'a str>,
    /// Only a passkey will do (the e-service needs the higher assurance).
    pub passkey_required: bool,
}

/// The login page: a passkey (offered first, and in the username field's autofill) or a
/// password.
pub fn login_page(f: &Frame<'_>, v: &LoginView<'_>) -> String {
    let t = f.t();
    let mut body = String::new();
    if let Some((name, dept)) = v.client {
        let _ = write!(
            body,
            "<p>{}</p>",
            fill(t.asks_login, &[("client", name), ("dept", dept)])
        );
    }
    if let Some(e) = v.error {
        let _ = write!(
            body,
            "<p class=\"error\" role=\"alert\" id=\"login-error\">{}</p>",
            esc(e)
        );
    }
    if v.passkey_required {
        let _ = write!(
            body,
            "<p class=\"notice\" id=\"passkey-required\">{}</p><p>{}</p>",
            esc(t.passkey_required),
            esc(t.passkey_required_none)
        );
    }
    // The passkey answer goes back as an ordinary form post, so the server's redirect
    // continues the sign-in exactly as after a password.
    let _ = write!(
        body,
        "<section aria-labelledby=\"passkey-heading\">\n<h2 id=\"passkey-heading\">{heading}</h2>\n\
         <p>{intro}</p>\n\
         <p id=\"passkey-unavailable\" class=\"notice\">{unavailable}</p>\n\
         <p id=\"passkey-error\" class=\"error\" role=\"alert\" tabindex=\"-1\" hidden></p>\n\
         <form id=\"passkey-form\" method=\"post\" action=\"{action}\" data-start=\"/webauthn/login/start\" \
         data-failed=\"{failed}\">\n\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\n\
         <input type=\"hidden\" name=\"ceremony\" value=\"\">\n\
         <input type=\"hidden\" name=\"credential\" value=\"\">\n\
         <button type=\"button\" id=\"passkey-login\" class=\"needs-passkey\" hidden>{button}</button>\n\
         </form>\n</section>\n",
        heading = esc(t.passkey_heading),
        intro = esc(t.passkey_intro),
        unavailable = esc(t.passkey_unavailable),
        action = esc(v.passkey_action),
        failed = esc(t.passkey_failed),
        csrf = esc(v.csrf),
        button = esc(t.passkey_button),
    );
    if !v.passkey_required {
        let _ = write!(
            body,
            "<section aria-labelledby=\"password-heading\">\n<h2 id=\"password-heading\">{heading}</h2>\n\
             <form method=\"post\" action=\"{action}\" id=\"password-form\">\n\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\n\
             <p><label for=\"username\">{username}</label>\n\
             <input id=\"username\" name=\"username\" autocomplete=\"username webauthn\" required value=\"{user}\"></p>\n\
             <p><label for=\"password\">{password}</label>\n\
             <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required></p>\n\
             <p><button type=\"submit\" id=\"password-login\">{button}</button></p>\n</form>\n</section>",
            heading = esc(t.password_heading),
            action = esc(v.action),
            csrf = esc(v.csrf),
            username = esc(t.username),
            user = esc(v.username.unwrap_or("")),
            password = esc(t.password),
            button = esc(t.login_button),
        );
    }
    page(f, t.login_title, &body, true)
}

fn scope_text(t: &Texts, scope: &str) -> &'static str {
    match scope {
        "openid" => t.scope_openid,
        "profile" => t.scope_profile,
        "email" => t.scope_email,
        "phone" => t.scope_phone,
        "address" => t.scope_address,
        "offline_access" => t.scope_offline,
        "identity_document" => t.scope_identity_document,
        "signing" => t.scope_signing,
        _ => t.scope_other,
    }
}

/// The consent form.
pub fn consent_page(
    f: &Frame<'_>,
    action: &str,
    csrf: &str,
    client: &str,
    department: &str,
    scopes: &[String],
) -> String {
    let t = f.t();
    let mut items = String::new();
    for s in scopes {
        let _ = write!(items, "<li>{}</li>", esc(scope_text(t, s)));
    }
    page(
        f,
        t.consent_title,
        &format!(
            "<p>{asks}</p>\n<ul>{items}</ul>\n<p>{note}</p>\n\
             <form method=\"post\" action=\"{a}\">\n\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\n\
             <button type=\"submit\" name=\"decision\" value=\"allow\" id=\"allow\">{allow}</button>\n\
             <button type=\"submit\" name=\"decision\" value=\"deny\" id=\"deny\">{deny}</button>\n</form>",
            asks = fill(t.consent_asks, &[("client", client), ("dept", department)]),
            note = esc(t.consent_note),
            a = esc(action),
            csrf = esc(csrf),
            allow = esc(t.allow),
            deny = esc(t.deny),
        ),
        false,
    )
}

/// One consent on the account page.
pub struct ConsentRow<'a> {
    /// Client id.
    pub client_id: &'a str,
    /// Name.
    pub name: &'a str,
    /// Department.
    pub department: &'a str,
    /// Scopes.
    pub scopes: &'a str,
}

/// One passkey on the account page.
pub struct PasskeyRow<'a> {
    /// Credential id.
    pub id: &'a str,
    /// Name.
    pub name: &'a str,
    /// Added, Unix seconds.
    pub created_at: i64,
    /// Last used, Unix seconds.
    pub last_used_at: Option<i64>,
    /// Synced or device-bound.
    pub synced: bool,
}

/// One security event on the account page.
pub struct EventRow<'a> {
    /// When, Unix milliseconds.
    pub time_ms: i64,
    /// The event kind from the audit log.
    pub event: &'a str,
    /// Whether it succeeded.
    pub success: bool,
    /// Who and what, for a release of the citizen's data: the e-service and the claims it
    /// received, or the officer who read the record.
    pub about: Option<String>,
}

/// What the account page shows.
pub struct AccountView<'a> {
    /// CSRF token of the session.
    pub csrf: &'a str,
    /// How the session logged in: `passkey`, `password` or `code` (activation).
    pub logged_in_with: &'a str,
    /// The citizen's passkeys.
    pub passkeys: &'a [PasskeyRow<'a>],
    /// The citizen's consents.
    pub consents: &'a [ConsentRow<'a>],
    /// The citizen's latest security events.
    pub events: &'a [EventRow<'a>],
}

/// A Unix time as a UTC date, `YYYY-MM-DD` (days to civil date, proleptic Gregorian).
pub fn date(unix: i64) -> String {
    let z = unix.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// A Unix time in milliseconds as `YYYY-MM-DD HH:MM UTC`.
pub fn date_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let of_day = secs.rem_euclid(86_400);
    format!(
        "{} {:02}:{:02} UTC",
        date(secs),
        of_day / 3600,
        (of_day % 3600) / 60
    )
}

fn hidden_csrf(csrf: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(csrf)
    )
}

/// The account page of a logged-in citizen.
pub fn account_page(f: &Frame<'_>, v: &AccountView<'_>) -> String {
    let t = f.t();
    let csrf = hidden_csrf(v.csrf);
    let mut keys = String::new();
    for (i, p) in v.passkeys.iter().enumerate() {
        let _ = write!(
            keys,
            "<tr><th scope=\"row\">{name}</th><td>{added}</td><td>{used}</td><td>{kind}</td><td>\
             <form method=\"post\" action=\"/account/passkeys/rename\" class=\"inline\">{csrf}\
             <input type=\"hidden\" name=\"id\" value=\"{id}\">\
             <label for=\"rename-{i}\" class=\"visually-hidden\">{label}</label>\
             <input id=\"rename-{i}\" name=\"name\" maxlength=\"64\" required value=\"{name}\">\
             <button type=\"submit\">{rename}</button></form>\
             <form method=\"post\" action=\"/account/passkeys/remove\" class=\"inline\">{csrf}\
             <input type=\"hidden\" name=\"id\" value=\"{id}\">\
             <button type=\"submit\" aria-label=\"{remove}: {name}\">{remove}</button></form></td></tr>",
            name = esc(p.name),
            added = date(p.created_at),
            used = p.last_used_at.map_or_else(|| esc(t.never), date),
            kind = esc(if p.synced { t.synced } else { t.device_bound }),
            id = esc(p.id),
            label = esc(&t.new_name_for.replace("{name}", p.name)),
            rename = esc(t.rename),
            remove = esc(t.remove),
        );
    }
    let passkeys = if v.passkeys.is_empty() {
        format!("<p id=\"no-passkeys\">{}</p>", esc(t.no_passkeys))
    } else {
        format!(
            "<table id=\"passkeys\"><caption>{cap}</caption><thead><tr>\
             <th scope=\"col\">{n}</th><th scope=\"col\">{a}</th><th scope=\"col\">{u}</th>\
             <th scope=\"col\">{k}</th><th scope=\"col\">{x}</th></tr></thead><tbody>{keys}</tbody></table>",
            cap = esc(t.passkeys_caption),
            n = esc(t.col_name),
            a = esc(t.col_added),
            u = esc(t.col_last_used),
            k = esc(t.col_kind),
            x = esc(t.col_actions),
        )
    };
    let add = format!(
        "<h3>{heading}</h3>\n<p>{intro}</p>\n\
         <p id=\"passkey-unavailable\" class=\"notice\">{unavailable}</p>\n\
         <p id=\"passkey-error\" class=\"error\" role=\"alert\" tabindex=\"-1\" hidden></p>\n\
         <form id=\"passkey-register\" method=\"post\" action=\"/account/passkeys\" \
         data-start=\"/account/passkeys/start\" data-failed=\"{failed}\" class=\"needs-passkey\" hidden>\n{csrf}\n\
         <input type=\"hidden\" name=\"ceremony\" value=\"\">\n\
         <input type=\"hidden\" name=\"credential\" value=\"\">\n\
         <p><label for=\"passkey-name\">{label}</label>\n\
         <input id=\"passkey-name\" name=\"name\" maxlength=\"64\" required value=\"{default}\"></p>\n\
         <p><button type=\"submit\" id=\"add-passkey\">{button}</button></p>\n</form>",
        heading = esc(t.add_passkey_heading),
        intro = esc(t.add_passkey_intro),
        unavailable = esc(t.passkey_unavailable),
        failed = esc(t.passkey_failed),
        label = esc(t.passkey_name),
        default = esc(t.passkey_name_default),
        button = esc(t.add_passkey_button),
    );
    let mut rows = String::new();
    for c in v.consents {
        let _ = write!(
            rows,
            "<tr><th scope=\"row\">{n}</th><td>{d}</td><td>{s}</td><td>\
             <form method=\"post\" action=\"/account/consents/withdraw\">{csrf}\
             <input type=\"hidden\" name=\"client_id\" value=\"{id}\">\
             <button type=\"submit\" aria-label=\"{w}: {n}\">{w}</button></form></td></tr>",
            n = esc(c.name),
            d = esc(c.department),
            s = esc(c.scopes),
            id = esc(c.client_id),
            w = esc(t.withdraw),
        );
    }
    let consents = if v.consents.is_empty() {
        format!("<p>{}</p>", esc(t.no_consents))
    } else {
        format!(
            "<table><caption>{cap}</caption>\
             <thead><tr><th scope=\"col\">{e}</th><th scope=\"col\">{d}</th>\
             <th scope=\"col\">{s}</th><th scope=\"col\">{a}</th></tr></thead>\
             <tbody>{rows}</tbody></table>",
            cap = esc(t.consents_caption),
            e = esc(t.col_eservice),
            d = esc(t.col_department),
            s = esc(t.col_shared),
            a = esc(t.col_actions),
        )
    };
    let password = format!(
        "<form method=\"post\" action=\"/account/password\" id=\"password-set\">{csrf}\n\
         <p><label for=\"new-password\">{label}</label>\n\
         <span class=\"hint\" id=\"new-password-hint\">{hint}</span>\n\
         <input id=\"new-password\" name=\"new_password\" type=\"password\" autocomplete=\"new-password\" \
         aria-describedby=\"new-password-hint\" required></p>\n\
         <p><button type=\"submit\" id=\"set-password\">{button}</button></p></form>",
        label = esc(t.new_password),
        hint = esc(t.new_password_hint),
        button = esc(t.set_password),
    );
    let mut event_rows = String::new();
    for e in v.events {
        let _ = write!(
            event_rows,
            "<tr><td>{when}</td><td>{what}{about}</td><td>{result}</td></tr>",
            when = date_time(e.time_ms),
            what = esc(crate::i18n::event_label(f.lang, e.event)),
            about = e
                .about
                .as_deref()
                .map(|a| format!(": {}", esc(a)))
                .unwrap_or_default(),
            result = esc(if e.success { t.succeeded } else { t.failed }),
        );
    }
    let events = if v.events.is_empty() {
        String::new()
    } else {
        format!(
            "<table id=\"events\"><caption>{cap}</caption><thead><tr>\
             <th scope=\"col\">{w}</th><th scope=\"col\">{e}</th><th scope=\"col\">{r}</th>\
             </tr></thead><tbody>{event_rows}</tbody></table>",
            cap = esc(t.events_caption),
            w = esc(t.col_when),
            e = esc(t.col_event),
            r = esc(t.col_result),
        )
    };
    page(
        f,
        t.account_title,
        &format!(
            "<p id=\"assurance\">{level}</p>\n\
             <section aria-labelledby=\"passkeys-heading\"><h2 id=\"passkeys-heading\">{ph}</h2>\n{passkeys}\n{add}</section>\n\
             <section aria-labelledby=\"password-heading\"><h2 id=\"password-heading\">{pwh}</h2>\n{password}</section>\n\
             <section aria-labelledby=\"consents-heading\"><h2 id=\"consents-heading\">{ch}</h2>\n{consents}</section>\n\
             <section aria-labelledby=\"events-heading\"><h2 id=\"events-heading\">{eh}</h2>\n{events}</section>\n\
             <section aria-labelledby=\"session-heading\"><h2 id=\"session-heading\">{sh}</h2>\n\
             <form method=\"post\" action=\"/logout\">{csrf}\
             <button type=\"submit\" id=\"logout\">{logout}</button></form></section>",
            level = esc(match v.logged_in_with {
                "passkey" => t.level_passkey,
                "code" => t.level_code,
                _ => t.level_password,
            }),
            ph = esc(t.passkeys_heading),
            pwh = esc(t.password_section),
            eh = esc(t.events_heading),
            ch = esc(t.consents_heading),
            sh = esc(t.session_heading),
            logout = esc(t.logout),
        ),
        true,
    )
}

/// The activation page: the one-time code and the date of birth.
pub fn activation_page(
    f: &Frame<'_>,
    csrf: &str,
    code: Option<&str>,
    error: Option<&str>,
) -> String {
    let t = f.t();
    let mut body = format!("<p>{}</p>", esc(t.activate_intro));
    if let Some(e) = error {
        let _ = write!(
            body,
            "<p class=\"error\" role=\"alert\" id=\"activation-error\">{}</p>",
            esc(e)
        );
    }
    let _ = write!(
        body,
        "<form method=\"post\" action=\"/activate\" id=\"activation-form\">\n{csrf}\n\
         <p><label for=\"code\">{code_label}</label>\n\
         <input id=\"code\" name=\"code\" autocomplete=\"one-time-code\" required value=\"{code}\"></p>\n\
         <p><label for=\"date-of-birth\">{dob_label}</label>\n\
         <span class=\"hint\" id=\"dob-hint\">{dob_hint}</span>\n\
         <input id=\"date-of-birth\" name=\"date_of_birth\" autocomplete=\"bday\" inputmode=\"numeric\" \
         placeholder=\"YYYY-MM-DD\" aria-describedby=\"dob-hint\" required></p>\n\
         <p><button type=\"submit\" id=\"activate\">{button}</button></p>\n</form>",
        csrf = hidden_csrf(csrf),
        code_label = esc(t.activation_code),
        code = esc(code.unwrap_or("")),
        dob_label = esc(t.date_of_birth),
        dob_hint = esc(t.date_of_birth_hint),
        button = esc(t.activate_button),
    );
    page(f, t.activate_title, &body, false)
}

/// What the approval page of a signing request shows.
pub struct SigningView<'a> {
    /// Request id.
    pub id: &'a str,
    /// CSRF token bound to the request.
    pub csrf: &'a str,
    /// The e-service's name.
    pub client: &'a str,
    /// Its department.
    pub department: &'a str,
    /// The document's name.
    pub document: &'a str,
    /// Its description.
    pub description: Option<&'a str>,
    /// `SHA-256` or `SHA-512`.
    pub hash_alg: &'a str,
    /// The hash, shortened.
    pub hash_short: &'a str,
    /// The identification code.
    pub code: &'a str,
}

/// The approval page: who asks, what document, the identification code to compare, and
/// approval with a passkey (a password cannot sign) or rejection.
pub fn signing_page(f: &Frame<'_>, v: &SigningView<'_>) -> String {
    let t = f.t();
    let description = v.description.map_or_else(String::new, |d| {
        format!(
            "<dt>{}</dt><dd id=\"sign-description\">{}</dd>",
            esc(t.sign_description),
            esc(d)
        )
    });
    let body = format!(
        "<p>{asks}</p>\n\
         <dl><dt>{doc_label}</dt><dd id=\"sign-document\">{doc}</dd>{description}\
         <dt>{hash_label}</dt><dd><code>{alg} {hash}</code></dd></dl>\n\
         <p>{code_label}</p><p class=\"code\" id=\"sign-code\" aria-describedby=\"code-hint\">{code}</p>\n\
         <p id=\"code-hint\">{code_hint}</p>\n\
         <p id=\"passkey-unavailable\" class=\"notice\">{unavailable}</p>\n\
         <p id=\"passkey-error\" class=\"error\" role=\"alert\" tabindex=\"-1\" hidden></p>\n\
         <form id=\"sign-form\" method=\"post\" action=\"/sign/{id}/approve\" data-start=\"/sign/{id}/start\" data-failed=\"{failed}\">\n{csrf}\n\
         <input type=\"hidden\" name=\"ceremony\" value=\"\">\n\
         <input type=\"hidden\" name=\"credential\" value=\"\">\n\
         <button type=\"button\" id=\"passkey-approve\" class=\"needs-passkey\" hidden>{approve}</button>\n</form>\n\
         <p>{password_note}</p>\n\
         <form method=\"post\" action=\"/sign/{id}/reject\">{csrf}\
         <button type=\"submit\" id=\"reject\">{reject}</button></form>",
        asks = fill(t.sign_asks, &[("client", v.client), ("dept", v.department)]),
        doc_label = esc(t.sign_document),
        doc = esc(v.document),
        hash_label = esc(t.sign_hash),
        alg = esc(v.hash_alg),
        hash = esc(v.hash_short),
        code_label = esc(t.sign_code),
        code = esc(v.code),
        code_hint = esc(t.sign_code_hint),
        unavailable = esc(t.passkey_unavailable),
        failed = esc(t.passkey_failed),
        id = esc(v.id),
        csrf = hidden_csrf(v.csrf),
        approve = esc(t.sign_approve),
        password_note = esc(t.sign_password_note),
        reject = esc(t.sign_reject),
    );
    page(f, t.sign_title, &body, true)
}

/// Asks before logging out at an e-service's request that did not prove it speaks for this
/// citizen (no valid `id_token_hint`), so a link elsewhere cannot log anyone out.
pub fn end_session_page(
    f: &Frame<'_>,
    csrf: &str,
    client: Option<&str>,
    keep: &[(&str, String)],
) -> String {
    let t = f.t();
    let asks = match client {
        Some(c) => fill(t.end_asks, &[("client", c)]),
        None => esc(t.end_asks_unknown),
    };
    let mut hidden = hidden_csrf(csrf);
    for (k, v) in keep {
        let _ = write!(
            hidden,
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            esc(k),
            esc(v)
        );
    }
    page(
        f,
        t.end_title,
        &format!(
            "<p>{asks}</p>\n<form method=\"post\" action=\"/end-session/confirm\">{hidden}\
             <button type=\"submit\" id=\"confirm-logout\">{yes}</button></form>\n\
             <p><a href=\"/account\" id=\"stay\">{no}</a></p>",
            yes = esc(t.logout),
            no = esc(t.end_cancel),
        ),
        false,
    )
}

/// A short notice page.
pub fn notice_page(f: &Frame<'_>, title: &str, message: &str) -> String {
    page(f, title, &format!("<p>{}</p>", esc(message)), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EN: Frame<'static> = Frame {
        lang: Lang::En,
        here: "/account",
    };

    #[test]
    fn escapes_everything_dangerous() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        for lang in [Lang::En, Lang::ZhHant] {
            let p = error_page(lang, 400, "<script>alert(1)</script>");
            assert!(!p.contains("<script>alert"));
        }
        let filled = fill("{client} asks", &[("client", "<b>")]);
        assert_eq!(filled, "<strong>&lt;b&gt;</strong> asks");
    }

    #[test]
    fn dates_are_utc_calendar_days() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(951_782_400), "2000-02-29");
        assert_eq!(date(1_795_564_800), "2026-11-25");
        assert_eq!(date(1_795_564_799), "2026-11-24");
    }

    #[test]
    fn pages_have_their_language_and_landmarks() {
        let zh = Frame {
            lang: Lang::ZhHant,
            here: "/account?x=1&y=2",
        };
        let p = notice_page(&zh, "已登出", "你已登出。");
        assert!(p.contains("<html lang=\"zh-Hant\">"));
        assert!(p.contains("href=\"/lang/en?back=%2Faccount%3Fx%3D1%26y%3D2\""));
        assert!(p.contains("<main id=\"main\""));
        assert!(p.contains("class=\"skip\" id=\"skip\" href=\"#main\""));
        // No inline script anywhere: only the external file.
        let login = login_page(
            &EN,
            &LoginView {
                action: "/a",
                passkey_action: "/b",
                csrf: "c",
                client: None,
                username: None,
                error: None,
                passkey_required: true,
            },
        );
        assert!(login.contains("<script src=\"/static/passkey.js\" defer></script>"));
        assert_eq!(login.matches("<script").count(), 1);
        assert!(
            !login.contains("id=\"password-form\""),
            "a passkey is required"
        );
    }
}
