//! Form and query parameters, parsed by hand so that a repeated parameter is noticed
//! (RFC 6749 §3.1: parameters must not be included more than once) instead of one copy
//! silently winning.

use std::collections::HashMap;

/// Parameters of one request.
#[derive(Debug, Default)]
pub struct Params {
    values: HashMap<String, String>,
    repeated: Vec<String>,
    control: Option<String>,
}

impl Params {
    /// Parses `application/x-www-form-urlencoded` text (a query string or a form body),
    /// refusing control characters in any name or value: no parameter of ours may hold
    /// one, a browser silently strips tabs and newlines from a URL (so `/\t/evil` is
    /// `//evil` to it), and PostgreSQL refuses NUL in text outright. Checking here, and
    /// nowhere else, means no handler can forget to. Empty values count as absent, as
    /// RFC 6749 §3.1 says.
    pub fn parse(bytes: &[u8]) -> Result<Self, identity_core::Error> {
        let p = Self::parse_unchecked(bytes);
        match &p.control {
            Some(name) => Err(identity_core::Error::InvalidRequest(format!(
                "the {name} parameter contains control characters"
            ))),
            None => Ok(p),
        }
    }

    /// The parameters of a request that may come as a form (POST) or a query (GET), as
    /// `/authorize` and `/end-session` do.
    pub fn of_request(
        req: &actix_web::HttpRequest,
        body: &[u8],
    ) -> Result<Self, identity_core::Error> {
        if req.method() == actix_web::http::Method::POST {
            Self::parse(body)
        } else {
            Self::parse(req.query_string().as_bytes())
        }
    }

    fn parse_unchecked(bytes: &[u8]) -> Self {
        let mut p = Params::default();
        for (k, v) in url::form_urlencoded::parse(bytes) {
            if p.control.is_none()
                && (k.chars().any(char::is_control) || v.chars().any(char::is_control))
            {
                p.control = Some(k.chars().filter(|c| !c.is_control()).collect());
            }
            if v.is_empty() {
                continue;
            }
            if p.values.contains_key(k.as_ref()) {
                if !p.repeated.iter().any(|r| r == k.as_ref()) {
                    p.repeated.push(k.into_owned());
                }
                continue;
            }
            p.values.insert(k.into_owned(), v.into_owned());
        }
        p
    }

    /// A parameter's value.
    pub fn get(&self, name: &str) -> Option<String> {
        self.values.get(name).cloned()
    }

    /// Names given more than once.
    pub fn repeated(&self) -> &[String] {
        &self.repeated
    }

    /// Parses a form or query that must name each parameter once (RFC 6749 §3.1, §3.2) and
    /// hold no control characters; anything else is `invalid_request`.
    pub fn parse_strict(bytes: &[u8]) -> Result<Self, identity_core::Error> {
        let p = Self::parse(bytes)?;
        if let Some(name) = p.repeated().first() {
            return Err(identity_core::Error::InvalidRequest(format!(
                "the {name} parameter is repeated"
            )));
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_and_empties() {
        let p = Params::parse(b"a=1&b=&a=2&c=%zz&d=x+y").unwrap();
        assert_eq!(p.get("a").as_deref(), Some("1"));
        assert!(p.get("b").is_none());
        assert_eq!(p.repeated(), ["a".to_string()]);
        assert_eq!(p.get("c").as_deref(), Some("%zz"));
        assert_eq!(p.get("d").as_deref(), Some("x y"));
        assert!(Params::parse(b"client_id=%00").is_err());
        assert!(Params::parse(b"state=a%0Ab").is_err());
        assert!(Params::parse(b"back=/%09/evil.example").is_err());
        assert!(
            Params::parse(b"%00=").is_err(),
            "a control key with no value"
        );
    }
}
