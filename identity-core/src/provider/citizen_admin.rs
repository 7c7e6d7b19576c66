//! Citizen administration by the operator (adding, unlocking), and the keyed throttle keys
//! of accounts, addresses and ceremonies.

use super::*;

impl Provider {
    /// Adds a citizen with a password, checked against the policy.
    pub async fn add_citizen(&self, new: NewCitizen, password: &Password) -> Result<String> {
        let username = normalize_username(&new.username);
        if username.is_empty() || username.len() > 64 {
            return Err(Error::InvalidRequest(
                "username must be 1-64 characters".into(),
            ));
        }
        let context = [
            username.as_str(),
            new.email.as_deref().unwrap_or(""),
            new.name_en.as_str(),
        ];
        self.inner.config.policy.check(password, &context)?;
        // A taken username is refused before the hash, which costs 19 MiB and tens of
        // milliseconds (the demo's seeding met it at every start). The insert below still
        // refuses one taken in between.
        let name = username.clone();
        let taken = self
            .run(move |this, _| {
                this.inner.db.with(|conn| {
                    Ok(citizens::table
                        .filter(citizens::username.eq(&name))
                        .select(citizens::id)
                        .get_result::<String>(conn)
                        .optional()?
                        .is_some())
                })
            })
            .await?;
        if taken {
            return Err(Error::Conflict(format!("user {username} already exists")));
        }
        let phc = self.inner.hasher.hash(password).await?;
        self.run(move |this, ev| {
            let id = crate::crypto::random_name();
            let now = this.inner.clock.now();
            this.audited_tx(ev, |conn, ev| {
                ev.push(Event::new("citizen.registered", Audited::Success).citizen(&id));
                diesel::insert_into(citizens::table)
                    .values((
                        citizens::id.eq(&id),
                        citizens::username.eq(&username),
                        citizens::name_en.eq(&new.name_en),
                        citizens::name_zh.eq(&new.name_zh),
                        citizens::email.eq(&new.email),
                        citizens::email_verified.eq(i32::from(new.email.is_some())),
                        citizens::phone.eq(&new.phone),
                        citizens::phone_verified.eq(i32::from(new.phone.is_some())),
                        citizens::address.eq(&new.address),
                        citizens::status.eq("active"),
                        citizens::created_at.eq(now),
                    ))
                    .execute(conn)
                    .map_err(|e| match Error::from(e) {
                        Error::Conflict(_) => {
                            Error::Conflict(format!("user {username} already exists"))
                        }
                        other => other,
                    })?;
                diesel::insert_into(password_credentials::table)
                    .values((
                        password_credentials::citizen_id.eq(&id),
                        password_credentials::phc.eq(&phc),
                        password_credentials::updated_at.eq(now),
                    ))
                    .execute(conn)?;
                Ok(id)
            })
        })
        .await
    }

    /// Clears the failure counter of a locked account.
    pub async fn unlock(&self, username: &str) -> Result<()> {
        let username = normalize_username(username);
        self.run(move |this, ev| {
            let key = this.account_key(&username);
            this.audited_tx(ev, |conn, ev| {
                this.inner.config.throttle.reset(conn, &key)?;
                let citizen: Option<String> = citizens::table
                    .filter(citizens::username.eq(&username))
                    .select(citizens::id)
                    .get_result(conn)
                    .optional()?;
                let event = Event::new("account.unlocked", Audited::Success);
                ev.push(match citizen {
                    Some(c) => event.citizen(c),
                    None => event.detail("unknown account"),
                });
                Ok(())
            })
        })
        .await
    }

    pub(super) fn account_key(&self, username: &str) -> String {
        self.inner
            .throttle_key
            .hash(&[b"account", username.as_bytes()])
    }

    pub(super) fn address_key(&self, address: &str) -> String {
        self.address_key_for(b"address", address)
    }

    /// The counter of unauthenticated passkey ceremonies begun from an address, apart from
    /// its failed logins.
    pub(super) fn ceremony_key(&self, address: &str) -> String {
        self.address_key_for(b"ceremony", address)
    }

    fn address_key_for(&self, what: &[u8], address: &str) -> String {
        // An IPv6 subscriber is given a whole /64, so counting per address would give one
        // machine 2^64 counters: the /64 is the unit.
        let unit = match address.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                format!("{}/64", std::net::Ipv6Addr::from(octets))
            }
            _ => address.to_owned(),
        };
        self.inner.throttle_key.hash(&[what, unit.as_bytes()])
    }
}
