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
    /// Parses `application/x-www-form-urlencoded` text (a query string or a form body).
    /// Empty values count as absent, as RFC 6749 §3.1 says.
    pub fn parse(bytes: &[u8]) -> Self {
        let mut p = Params::default();
        for (k, v) in url::form_urlencoded::parse(bytes) {
            // No parameter of ours may hold control characters, and PostgreSQL refuses NUL
            // in text outright; refuse them here rather than fail in the database.
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
        let p = Self::parse(bytes);
        p.check()?;
        if let Some(name) = p.repeated().first() {
            return Err(identity_core::Error::InvalidRequest(format!(
                "the {name} parameter is repeated"
            )));
        }
        Ok(p)
    }

    /// Refuses parameters that hold control characters.
    pub fn check(&self) -> Result<(), identity_core::Error> {
        match &self.control {
            Some(name) => Err(identity_core::Error::InvalidRequest(format!(
                "the {name} parameter contains control characters"
            ))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_and_empties() {
        let p = Params::parse(b"a=1&b=&a=2&c=%zz&d=x+y");
        assert_eq!(p.get("a").as_deref(), Some("1"));
        assert!(p.get("b").is_none());
        assert_eq!(p.repeated(), ["a".to_string()]);
        assert_eq!(p.get("c").as_deref(), Some("%zz"));
        assert_eq!(p.get("d").as_deref(), Some("x y"));
        assert!(p.check().is_ok());
        assert!(Params::parse(b"client_id=%00").check().is_err());
        assert!(Params::parse(b"state=a%0Ab").check().is_err());
        assert!(
            Params::parse(b"%00=").check().is_err(),
            "a control key with no value"
        );
    }
}
