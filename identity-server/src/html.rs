//! Server-rendered pages: no template engine, no inline script or style, every dynamic
//! value escaped by [`esc`].

use std::fmt::Write;

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

fn page(title: &str, main: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{t} · Identity Service</title>\n\
         <link rel=\"stylesheet\" href=\"/static/site.css\">\n</head>\n<body>\n\
         <header><p class=\"brand\">Identity Service</p></header>\n\
         <main id=\"main\">\n<h1>{t}</h1>\n{main}\n</main>\n</body>\n</html>\n",
        t = esc(title)
    )
}

/// An error page with a message that is safe to show.
pub fn error_page(message: &str) -> String {
    page(
        "Something went wrong",
        &format!("<p role=\"alert\">{}</p>", esc(message)),
    )
}

/// What the login page shows.
pub struct LoginView<'a> {
    /// Where the form posts.
    pub action: &'a str,
    /// CSRF token.
    pub csrf: &'a str,
    /// The e-service asking, if any.
    pub client: Option<(&'a str, &'a str)>,
    /// Username to prefill.
    pub username: Option<&'a str>,
    /// An error to show.
    pub error: Option<&'a str>,
}

/// The password login form.
pub fn login_page(v: &LoginView<'_>) -> String {
    let mut body = String::new();
    if let Some((name, dept)) = v.client {
        let _ = write!(
            body,
            "<p><strong>{}</strong> ({}) asks you to log in.</p>",
            esc(name),
            esc(dept)
        );
    }
    if let Some(e) = v.error {
        let _ = write!(
            body,
            "<p class=\"error\" role=\"alert\" id=\"login-error\">{}</p>",
            esc(e)
        );
    }
    let _ = write!(
        body,
        "<form method=\"post\" action=\"{action}\">\n\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\n\
         <p><label for=\"username\">Username</label>\n\
         <input id=\"username\" name=\"username\" autocomplete=\"username\" required value=\"{user}\"></p>\n\
         <p><label for=\"password\">Password</label>\n\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required></p>\n\
         <p><button type=\"submit\">Log in</button></p>\n</form>",
        action = esc(v.action),
        csrf = esc(v.csrf),
        user = esc(v.username.unwrap_or("")),
    );
    page("Log in", &body)
}

fn scope_text(scope: &str) -> &'static str {
    match scope {
        "openid" => "Your identifier for this department",
        "profile" => "Your name in English and Chinese",
        "email" => "Your e-mail address",
        "phone" => "Your phone number",
        "address" => "Your address",
        "offline_access" => "Access while you are away (until you withdraw consent)",
        _ => "Other information",
    }
}

/// The consent form.
pub fn consent_page(
    action: &str,
    csrf: &str,
    client: &str,
    department: &str,
    scopes: &[String],
) -> String {
    let mut items = String::new();
    for s in scopes {
        let _ = write!(items, "<li>{}</li>", esc(scope_text(s)));
    }
    page(
        "Share your information?",
        &format!(
            "<p><strong>{c}</strong> ({d}) asks for:</p>\n<ul>{items}</ul>\n\
             <p>You can withdraw this consent at any time on your account page.</p>\n\
             <form method=\"post\" action=\"{a}\">\n\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\n\
             <button type=\"submit\" name=\"decision\" value=\"allow\">Allow</button>\n\
             <button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button>\n</form>",
            c = esc(client),
            d = esc(department),
            a = esc(action),
            csrf = esc(csrf),
        ),
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

/// The account page of a logged-in citizen.
pub fn account_page(csrf: &str, consents: &[ConsentRow<'_>]) -> String {
    let mut rows = String::new();
    for c in consents {
        let _ = write!(
            rows,
            "<tr><td>{n}</td><td>{d}</td><td>{s}</td><td>\
             <form method=\"post\" action=\"/account/consents/withdraw\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <input type=\"hidden\" name=\"client_id\" value=\"{id}\">\
             <button type=\"submit\">Withdraw</button></form></td></tr>",
            n = esc(c.name),
            d = esc(c.department),
            s = esc(c.scopes),
            csrf = esc(csrf),
            id = esc(c.client_id),
        );
    }
    let table = if consents.is_empty() {
        "<p>You have not shared information with any e-service.</p>".to_owned()
    } else {
        format!(
            "<table><caption>E-services you share information with</caption>\
             <thead><tr><th scope=\"col\">E-service</th><th scope=\"col\">Department</th>\
             <th scope=\"col\">Shared</th><th scope=\"col\">Action</th></tr></thead>\
             <tbody>{rows}</tbody></table>"
        )
    };
    page(
        "Your account",
        &format!(
            "<h2>Consents</h2>\n{table}\n<h2>Session</h2>\n\
             <form method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button type=\"submit\">Log out</button></form>",
            esc(csrf)
        ),
    )
}

/// A short notice page.
pub fn notice_page(title: &str, message: &str) -> String {
    page(title, &format!("<p>{}</p>", esc(message)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_dangerous() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        let p = error_page("<script>alert(1)</script>");
        assert!(!p.contains("<script>"));
    }
}
