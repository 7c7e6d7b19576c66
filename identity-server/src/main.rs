//! The `identity-server` binary: the OpenID Connect provider and its administration commands.

mod api;
mod config;
mod errors;
mod html;
mod i18n;
mod metrics;
mod oauth;
mod openapi;
mod ops;
mod outbound;
mod pages;
mod params;
mod plumbing;
mod seed;
mod server;
mod web;
mod wire;

use clap::{Parser, Subcommand};
use identity_core::audit::{Event, Outcome};
use identity_core::crypto::Kek;
use identity_core::model::{NewCitizen, NewClient, SigningAlg};
use identity_core::password::Password;
use identity_core::provider::{AccountStatus, ActivationCode, Registration};
use identity_core::storage::{Backend, Db};
use identity_core::{Clock, Provider};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use config::{Overrides, Settings};

/// A single digital identity service: an OpenID Connect provider for a city's e-services.
#[derive(Parser)]
#[command(name = "identity-server", version)]
struct Cli {
    /// Configuration file (TOML); `IDENTITY_*` environment variables override it.
    #[arg(long, global = true, env = "IDENTITY_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the provider (applies pending migrations first).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Run on 127.0.0.1:8080 with the demo data of seeds/ and a throwaway key (never in production).
    Demo {
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Data directory (holds the SQLite file and the demo's key).
        #[arg(long, default_value = "./demo-data")]
        data_dir: PathBuf,
    },
    /// Register, list and remove e-services.
    Client {
        #[command(subcommand)]
        command: ClientCommand,
    },
    /// Manage citizens.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Load seed data (the built-in demo data when no file is given).
    Seed {
        /// A seed file in the format of seeds/demo.toml.
        file: Option<PathBuf>,
    },
    /// Manage token-signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

// Parsed once per run: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum ClientCommand {
    /// Register an e-service; prints its client id and, once, its secret.
    Add {
        /// Display name shown to citizens.
        #[arg(long)]
        name: String,
        /// The department that runs it (also its pairwise-subject sector by default).
        #[arg(long)]
        department: String,
        /// Redirect URI (repeat for several); matched exactly. Required unless the client
        /// never logs citizens in (scopes without openid: an auditor, an office's system).
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// Client id (generated when absent).
        #[arg(long)]
        id: Option<String>,
        /// Pairwise-subject sector, when not the department.
        #[arg(long)]
        sector: Option<String>,
        /// Space-separated scopes the client may ask for.
        #[arg(long)]
        scopes: Option<String>,
        /// A public client (no secret; PKCE only), such as a mobile app.
        #[arg(long)]
        public: bool,
        /// ID token algorithm: ES256 (default) or EdDSA.
        #[arg(long)]
        id_token_alg: Option<String>,
        /// The lowest assurance the e-service accepts, whatever its requests ask:
        /// urn:identity-service:acr:2 makes every login to it use a passkey.
        #[arg(long)]
        min_acr: Option<String>,
        /// A file holding the client's public keys (a JWKS) for private_key_jwt; the client
        /// then gets no secret.
        #[arg(long)]
        jwks: Option<PathBuf>,
        /// Where the client publishes its public keys (https), instead of --jwks.
        #[arg(long)]
        jwks_uri: Option<String>,
        /// Register as FAPI 2.0: private_key_jwt (needs --jwks) and pushed authorization
        /// requests only.
        #[arg(long)]
        fapi: bool,
        /// Where the browser may return after logout (repeat for several); matched exactly.
        #[arg(long = "post-logout-redirect-uri")]
        post_logout_redirect_uris: Vec<String>,
        /// Where a back-channel logout token is POSTed when a citizen's session ends.
        #[arg(long)]
        backchannel_logout_uri: Option<String>,
        /// Where a signing request may send the citizen back (repeat for several); a
        /// request's return_uri must be one of these, exactly.
        #[arg(long = "signing-return-uri")]
        signing_return_uris: Vec<String>,
        /// Where the outcome of a signing request may be POSTed (repeat for several); a
        /// request's callback_uri must be one of these, exactly.
        #[arg(long = "signing-callback-uri")]
        signing_callback_uris: Vec<String>,
    },
    /// Replace where an e-service's signing requests may return the citizen and POST their
    /// outcome (each list replaced whole; give none to clear it).
    SigningUris {
        /// Client id.
        id: String,
        /// A return URI (repeat for several).
        #[arg(long = "signing-return-uri")]
        return_uris: Vec<String>,
        /// A callback URI (repeat for several).
        #[arg(long = "signing-callback-uri")]
        callback_uris: Vec<String>,
    },
    /// Give a client public keys in place of its secret (or new keys): it then
    /// authenticates with private_key_jwt only. Registration and audit clients need keys.
    Keys {
        /// Client id.
        id: String,
        /// A file holding the client's public keys (a JWKS).
        #[arg(long, conflicts_with = "jwks_uri")]
        jwks: Option<PathBuf>,
        /// Where the client publishes its public keys (https), instead of --jwks.
        #[arg(long)]
        jwks_uri: Option<String>,
    },
    /// List registered e-services.
    List,
    /// Remove an e-service and everything issued to it.
    Remove {
        /// Client id.
        id: String,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a citizen; the password is read from the first line of standard input.
    Add {
        /// Login name.
        #[arg(long)]
        username: String,
        /// Name in English.
        #[arg(long)]
        name_en: String,
        /// Name in Chinese.
        #[arg(long)]
        name_zh: String,
        /// E-mail address.
        #[arg(long)]
        email: Option<String>,
        /// Phone number.
        #[arg(long)]
        phone: Option<String>,
        /// Postal address.
        #[arg(long)]
        address: Option<String>,
    },
    /// Unlock an account locked after too many failed logins.
    Unlock {
        /// Login name.
        username: String,
    },
    /// Enrol a citizen whose identity was verified at a registration counter; prints the
    /// one-time activation code and link to hand over.
    Enrol {
        /// Login name for password logins.
        #[arg(long)]
        username: String,
        /// Name in English.
        #[arg(long)]
        name_en: String,
        /// Name in Chinese.
        #[arg(long)]
        name_zh: String,
        /// Date of birth, YYYY-MM-DD.
        #[arg(long)]
        date_of_birth: String,
        /// Identity document number (stored encrypted; one account per document).
        #[arg(long)]
        id_document: String,
        /// female, male or other.
        #[arg(long)]
        gender: Option<String>,
        /// E-mail address.
        #[arg(long)]
        email: Option<String>,
        /// Phone number.
        #[arg(long)]
        phone: Option<String>,
        /// Postal address.
        #[arg(long)]
        address: Option<String>,
    },
    /// Show a citizen's record (the document number masked).
    Show {
        /// Citizen id.
        id: String,
    },
    /// Set an account to active, suspended or closed (the last two end every session and grant).
    Status {
        /// Citizen id.
        id: String,
        /// active, suspended or closed.
        status: String,
    },
    /// Ask for a recovery, which a different officer approves with `user approve-recovery`;
    /// until then nothing changes. Prints the request's id.
    Recover {
        /// Citizen id.
        id: String,
        /// Also remove the citizen's passkeys (a lost or stolen phone).
        #[arg(long)]
        remove_passkeys: bool,
    },
    /// Approve another officer's recovery request: every session and grant ends, the
    /// password goes, and a new one-time code is printed.
    ApproveRecovery {
        /// The recovery request's id.
        request: String,
    },
}

/// Who the audit log names for changes made on the command line: the operating system
/// account that runs the command (by user id, which the caller cannot choose as it can
/// `USER`), so that a second approval needs a second account.
fn cli_officer() -> String {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self")
        .map(|m| m.uid().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let name = std::env::var("USER").unwrap_or_default();
    format!("cli:uid-{uid}/{name}")
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Replace the signing key of an algorithm now.
    Rotate {
        /// ES256 or EdDSA.
        #[arg(long, default_value = "ES256")]
        alg: String,
        /// Seconds the new key is published before it signs (longer than relying parties
        /// cache the JWKS, which says max-age=300).
        #[arg(long, default_value_t = 900)]
        prepublish: i64,
        /// Replace the key at once (a compromised key); same as --prepublish 0.
        #[arg(long)]
        now: bool,
    },
    /// Revoke a signing key at once (compromised): no replica publishes or trusts it from
    /// now, tokens it signed are refused, and a new key signs if it was the signing one.
    Revoke {
        /// The key's id (`keys list`).
        kid: String,
    },
    /// List signing keys.
    List,
}

/// Opens the database; a SQLite file's directory is created first.
fn open_db(settings: &Settings, pool_size: u32) -> Result<Db, String> {
    if Backend::of(&settings.database_url) == Backend::Sqlite {
        if let Some(dir) = Path::new(&settings.database_url)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("data_dir: cannot create {}: {e}", dir.display()))?;
        }
    }
    Db::open(&settings.database_url, pool_size).map_err(|e| format!("database_url: {e}"))
}

/// Fetches a client's published JWKS for `private_key_jwt`: https only (loopback excepted,
/// as registration checked), a 5-second timeout, no redirects, at most 16 KiB. Each fetch
/// runs its own small runtime on its own thread, since the core calls it from a blocking
/// thread and fetches are rare (the core caches the result for minutes).
#[derive(Debug)]
struct HttpJwks(outbound::Policy);

impl identity_core::client_auth::JwksFetcher for HttpJwks {
    fn fetch(&self, uri: &str) -> Result<String, String> {
        let uri = uri.to_owned();
        let policy = self.0.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async move {
                // A client of its own on this thread's runtime: a reqwest client's
                // connections belong to the runtime that made them.
                let http = outbound::Outbound::new(policy, std::time::Duration::from_secs(5))?;
                let r = http.get(&uri)?.send().await.map_err(|e| e.to_string())?;
                if !r.status().is_success() {
                    return Err(format!("{uri}: status {}", r.status()));
                }
                if r.content_length().is_some_and(|n| n > 16 * 1024) {
                    return Err(format!("{uri}: too large"));
                }
                let body = r.bytes().await.map_err(|e| e.to_string())?;
                if body.len() > 16 * 1024 {
                    return Err(format!("{uri}: too large"));
                }
                String::from_utf8(body.to_vec()).map_err(|e| e.to_string())
            })
        })
        .join()
        .map_err(|_| "the JWKS fetch thread failed".to_owned())?
    }
}

fn open(settings: &Settings) -> Result<Provider, String> {
    if let Some(dir) = settings
        .provider
        .audit_witness
        .as_ref()
        .and_then(|w| w.parent())
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("data_dir: cannot create {}: {e}", dir.display()))?;
    }
    let db = open_db(settings, settings.db_pool_size)?;
    db.migrate().map_err(|e| e.to_string())?;
    let mut config = settings.provider.clone();
    config.jwks_fetcher = Some(std::sync::Arc::new(HttpJwks(outbound::Policy::new(
        settings.outbound_allow.clone(),
    ))));
    let provider = Provider::new(db, settings.kek.clone(), Clock::system(), config)
        .map_err(|e| e.to_string())?;
    provider.keys().ensure_keys().map_err(|e| e.to_string())?;
    Ok(provider)
}

/// The demo's throwaway key, kept in its data directory so a restart can read its own keys.
fn demo_kek(dir: &Path) -> Result<Kek, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("data_dir: {e}"))?;
    let path = dir.join("demo-kek.hex");
    if let Ok(text) = std::fs::read_to_string(&path) {
        return Kek::parse(&text).map_err(|e| format!("{}: {e}", path.display()));
    }
    let kek = Kek::generate();
    std::fs::write(&path, kek.to_hex()).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(kek)
}

async fn run(cli: Cli) -> Result<(), String> {
    let config = cli.config.as_deref();
    match cli.command {
        Command::Serve => {
            let settings = Settings::load(config, Overrides::default())?;
            let provider = open(&settings)?;
            server::run(settings, provider).await
        }
        Command::Migrate => {
            let settings = Settings::load(config, Overrides::default())?;
            let db = open_db(&settings, 1)?;
            let n = db.migrate().map_err(|e| e.to_string())?;
            println!("applied {n} migration(s)");
            Ok(())
        }
        Command::Demo { listen, data_dir } => {
            let kek = demo_kek(&data_dir)?;
            let settings = Settings::load(
                config,
                Overrides {
                    listen: Some(listen),
                    data_dir: Some(data_dir.clone()),
                    kek: Some(kek),
                    public_url: None,
                },
            )?;
            let provider = open(&settings)?;
            seed::load_demo(&provider, settings.listen).await?;
            println!(
                "DEMO MODE: a throwaway key-encryption key is kept in {}; never use demo mode for real citizens.\n\
                 Demo e-service: client_id demo-eservice, secret demo-eservice-secret, redirect URI http://localhost:8081/callback\n\
                 Demo citizen:   username demo, password Lion-Rock-Harbour-2020\n\
                 Discovery:      {}/.well-known/openid-configuration",
                data_dir.join("demo-kek.hex").display(),
                settings.provider.issuer
            );
            server::run(settings, provider).await
        }
        Command::Client { command } => {
            let settings = Settings::load(config, Overrides::default())?;
            let provider = open(&settings)?;
            match command {
                ClientCommand::Add {
                    name,
                    department,
                    redirect_uris,
                    id,
                    sector,
                    scopes,
                    public,
                    id_token_alg,
                    min_acr,
                    jwks,
                    jwks_uri,
                    fapi,
                    post_logout_redirect_uris,
                    backchannel_logout_uri,
                    signing_return_uris,
                    signing_callback_uris,
                } => {
                    let jwks = read_jwks(jwks)?;
                    let (client, secret) = provider
                        .register_client(NewClient {
                            id,
                            name,
                            department,
                            sector,
                            redirect_uris,
                            scopes,
                            public,
                            id_token_alg,
                            secret: None,
                            min_acr,
                            jwks,
                            jwks_uri,
                            fapi,
                            post_logout_redirect_uris,
                            backchannel_logout_uri,
                            signing_return_uris,
                            signing_callback_uris,
                        })
                        .await
                        .map_err(|e| e.to_string())?;
                    println!("client_id: {}", client.id);
                    match secret {
                        Some(s) => println!(
                            "client_secret: {}\n(shown once: only a keyed hash is stored)",
                            s.expose()
                        ),
                        None if client.uses_keys() => {
                            println!(
                                "private_key_jwt client: authenticates with its registered keys"
                            )
                        }
                        None => println!("public client: no secret; PKCE is required"),
                    }
                }
                ClientCommand::List => {
                    for c in provider.list_clients().map_err(|e| e.to_string())? {
                        println!(
                            "{}\t{}\t{}\t{}\t{}",
                            c.id,
                            if c.is_confidential() {
                                "confidential"
                            } else {
                                "public"
                            },
                            c.name,
                            c.department,
                            c.redirect_uris.join(",")
                        );
                    }
                }
                ClientCommand::SigningUris {
                    id,
                    return_uris,
                    callback_uris,
                } => {
                    provider
                        .set_signing_uris(&id, return_uris, callback_uris)
                        .await
                        .map_err(|e| format!("client {id}: {e}"))?;
                    println!("signing URIs of {id} replaced");
                }
                ClientCommand::Keys { id, jwks, jwks_uri } => {
                    provider
                        .set_client_keys(&id, read_jwks(jwks)?, jwks_uri)
                        .await
                        .map_err(|e| format!("client {id}: {e}"))?;
                    println!(
                        "{id} now authenticates with private_key_jwt; its secret no longer works"
                    );
                }
                ClientCommand::Remove { id } => {
                    provider
                        .remove_client(&id)
                        .await
                        .map_err(|e| format!("client {id}: {e}"))?;
                    println!("removed {id}");
                }
            }
            Ok(())
        }
        Command::User { command } => {
            let settings = Settings::load(config, Overrides::default())?;
            let provider = open(&settings)?;
            match command {
                UserCommand::Add {
                    username,
                    name_en,
                    name_zh,
                    email,
                    phone,
                    address,
                } => {
                    let mut line = String::new();
                    std::io::stdin()
                        .lock()
                        .read_line(&mut line)
                        .map_err(|e| e.to_string())?;
                    let password = Password::new(line.trim_end_matches(['\r', '\n']));
                    provider
                        .add_citizen(
                            NewCitizen {
                                username: username.clone(),
                                name_en,
                                name_zh,
                                email,
                                phone,
                                address,
                            },
                            &password,
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                    println!("added {username}");
                }
                UserCommand::Unlock { username } => {
                    provider
                        .unlock(&username)
                        .await
                        .map_err(|e| e.to_string())?;
                    println!("unlocked {username}");
                }
                UserCommand::Enrol {
                    username,
                    name_en,
                    name_zh,
                    date_of_birth,
                    id_document,
                    gender,
                    email,
                    phone,
                    address,
                } => {
                    let (id, code) = provider
                        .enrol(
                            &cli_officer(),
                            Registration {
                                username,
                                name_en,
                                name_zh,
                                date_of_birth,
                                gender,
                                id_document,
                                email,
                                phone,
                                address,
                            },
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                    println!("citizen_id: {id}");
                    print_code(&settings, &code);
                }
                UserCommand::Show { id } => {
                    let r = provider
                        .registration(&cli_officer(), &id)
                        .await
                        .map_err(|e| e.to_string())?;
                    println!(
                        "citizen_id: {}\nusername: {}\nname: {} / {}\ndate_of_birth: {}\nid_document: {}\nstatus: {}\npasskeys: {}\npassword: {}",
                        r.id,
                        r.username,
                        r.name_en,
                        r.name_zh,
                        r.date_of_birth.unwrap_or_default(),
                        r.id_document_masked.unwrap_or_default(),
                        r.status,
                        r.passkeys,
                        if r.has_password { "yes" } else { "no" }
                    );
                }
                UserCommand::Status { id, status } => {
                    let s = AccountStatus::parse(&status).map_err(|e| e.to_string())?;
                    provider
                        .set_account_status(&cli_officer(), &id, s)
                        .await
                        .map_err(|e| e.to_string())?;
                    println!("{id}: {status}");
                }
                UserCommand::Recover {
                    id,
                    remove_passkeys,
                } => {
                    let request = provider
                        .request_recovery(&cli_officer(), &id, remove_passkeys)
                        .await
                        .map_err(|e| e.to_string())?;
                    println!(
                        "recovery request: {request}\n(a different officer approves it: user approve-recovery {request})"
                    );
                }
                UserCommand::ApproveRecovery { request } => {
                    let code = provider
                        .approve_recovery(&cli_officer(), &request)
                        .await
                        .map_err(|e| e.to_string())?;
                    print_code(&settings, &code);
                }
            }
            Ok(())
        }
        Command::Seed { file } => {
            let settings = Settings::load(config, Overrides::default())?;
            let provider = open(&settings)?;
            let added = match file {
                Some(f) => {
                    let text =
                        std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
                    seed::load(&provider, &text).await?
                }
                None => seed::load_demo(&provider, settings.listen).await?,
            };
            for a in added {
                println!("added {a}");
            }
            Ok(())
        }
        Command::Keys { command } => {
            let settings = Settings::load(config, Overrides::default())?;
            let provider = open(&settings)?;
            match command {
                KeysCommand::Rotate {
                    alg,
                    prepublish,
                    now,
                } => {
                    let alg = SigningAlg::parse(&alg).map_err(|e| e.to_string())?;
                    let delay = if now { 0 } else { prepublish };
                    let kid = provider
                        .keys()
                        .rotate(alg, delay)
                        .map_err(|e| e.to_string())?;
                    provider
                        .audit()
                        .record(
                            Event::new("key.rotated", Outcome::Success)
                                .detail(format!("{} {kid} in {delay}s", alg.as_str())),
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                    println!(
                        "new {} key {kid} is published and signs in {delay} s",
                        alg.as_str()
                    );
                }
                KeysCommand::Revoke { kid } => {
                    let new = provider.revoke_key(&kid).await.map_err(|e| e.to_string())?;
                    println!("key {kid} is revoked: no replica publishes or trusts it");
                    if let Some(new) = new {
                        println!("new key {new} signs from now");
                    }
                }
                KeysCommand::List => {
                    for k in provider.keys().list().map_err(|e| e.to_string())? {
                        let status = if k.revoked_at.is_some() {
                            "revoked"
                        } else if k.retired_at.is_some() {
                            "retired"
                        } else {
                            "active"
                        };
                        println!("{}\t{}\t{}\tcreated {}", k.kid, k.alg, status, k.created_at);
                    }
                }
            }
            Ok(())
        }
    }
}

/// The JWKS file given to `--jwks`, read.
fn read_jwks(path: Option<PathBuf>) -> Result<Option<String>, String> {
    path.map(|path| {
        std::fs::read_to_string(&path)
            .map_err(|e| format!("--jwks: cannot read {}: {e}", path.display()))
    })
    .transpose()
}

fn main() -> ExitCode {
    // Logs go to standard error: human-readable by default, one JSON object per line with
    // IDENTITY_LOG_FORMAT=json (for a log collector). IDENTITY_LOG sets the filter.
    let filter = tracing_subscriber::EnvFilter::try_from_env("IDENTITY_LOG")
        .unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("IDENTITY_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
    let cli = Cli::parse();
    let result = actix_web::rt::System::new().block_on(run(cli));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("identity-server: {e}");
            ExitCode::from(2)
        }
    }
}

/// Prints a one-time code the way an officer hands it over.
fn print_code(settings: &Settings, code: &ActivationCode) {
    println!(
        "activation_code: {}\nactivation_link: {}/activate?code={}\nexpires_at: {} (Unix time)\n(shown once: only a hash is stored)",
        code.expose(),
        settings.provider.issuer,
        code.expose(),
        code.expires_at
    );
}
