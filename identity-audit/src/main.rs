//! `identity-audit`: verify the identity service's audit log against a pinned key.

use base64::Engine;
use clap::{Parser, Subcommand};
use identity_audit::{Auditor, Credential};
use identity_sdk::audit::VerifierKey;
use identity_sdk::login::ClientKey;
use std::path::PathBuf;
use std::process::ExitCode;

/// Verifies the identity service's signed audit log without trusting the server.
#[derive(Parser)]
#[command(name = "identity-audit", version)]
struct Cli {
    /// The identity service's URL.
    #[arg(long, default_value = "http://localhost:8080")]
    url: String,
    /// The pinned verifier key (`name+id+key`), obtained out of band.
    #[arg(long, env = "IDENTITY_AUDIT_KEY")]
    key: Option<String>,
    /// Auditor client id (client_credentials with the audit scope).
    #[arg(long, env = "IDENTITY_AUDIT_CLIENT_ID")]
    client_id: Option<String>,
    /// The auditor client's private key, a PEM file (PKCS#8 P-256; `new-client-key` makes
    /// one): it signs the client assertion, and every token is DPoP-bound.
    #[arg(long, env = "IDENTITY_AUDIT_CLIENT_KEY")]
    client_key: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Log(LogCommand),
    /// Make a private key for an auditor client: the PEM goes to FILE (readable by its
    /// owner only), and the public JWKS to register (`identity-server client add --jwks`)
    /// is printed.
    NewClientKey {
        /// Where to write the private key; an existing file is never overwritten.
        file: PathBuf,
    },
    /// Print the public JWKS to register for an existing client key (a PEM P-256 PKCS#8
    /// file, from `new-client-key` or `openssl genpkey`); its `kid` is the key's RFC 7638
    /// thumbprint, as the tool names the key when it signs.
    ClientJwks {
        /// The private key file.
        file: PathBuf,
    },
}

/// The commands that talk to the log.
#[derive(Subcommand)]
enum LogCommand {
    /// Check the latest checkpoint's signature (and, with --state, that the log extends
    /// the checkpoint saved there, by a consistency proof).
    Checkpoint {
        /// A file holding the checkpoint of the last run; replaced by the new one.
        #[arg(long)]
        state: Option<PathBuf>,
    },
    /// Fetch every entry, recompute the tree and compare with the signed checkpoint.
    Verify {
        /// A file holding the checkpoint of the last run: the log must extend it, and the
        /// new checkpoint replaces it.
        #[arg(long)]
        state: Option<PathBuf>,
    },
    /// Check that one entry is in the signed log.
    Inclusion {
        /// The entry's index.
        #[arg(long)]
        index: u64,
    },
    /// Print the entries [start, end) as the server gives them, one `index base64` line
    /// each, unverified (for scripts that read the log; `verify` is the audit).
    Entries {
        /// The first index.
        #[arg(long, default_value_t = 0)]
        start: u64,
        /// One past the last index.
        #[arg(long)]
        end: u64,
    },
}

/// The public JWKS of the client key in `file`.
fn client_jwks(file: &std::path::Path) -> Result<String, String> {
    let pem = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let key = ClientKey::from_pem(&pem).map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(key.jwks())
}

/// Writes a new client key to `file`, which must not exist; returns its public JWKS.
fn new_client_key(file: &std::path::Path) -> Result<String, String> {
    use std::io::Write;
    let key = ClientKey::generate_named_by_thumbprint();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut out = options
        .open(file)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    out.write_all(key.to_pem().as_bytes())
        .map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(key.jwks())
}

async fn run(cli: Cli) -> Result<String, String> {
    let command = match cli.command {
        Command::NewClientKey { file } => return new_client_key(&file),
        Command::ClientJwks { file } => return client_jwks(&file),
        Command::Log(command) => command,
    };
    let key = cli
        .key
        .ok_or("--key: the pinned verifier key is required")?;
    let key = VerifierKey::parse(&key).map_err(|e| format!("--key: {e}"))?;
    let credential = match (cli.client_id, cli.client_key) {
        (Some(id), Some(path)) => {
            let pem = std::fs::read_to_string(&path)
                .map_err(|e| format!("--client-key: {}: {e}", path.display()))?;
            let key = ClientKey::from_pem(&pem)
                .map_err(|e| format!("--client-key: {}: {e}", path.display()))?;
            Credential::Client {
                id,
                key: Box::new(key),
            }
        }
        (None, None) => Credential::None,
        _ => return Err("--client-id and --client-key go together".into()),
    };
    let auditor = Auditor::connect(&cli.url, key, credential)
        .await
        .map_err(|e| e.to_string())?;
    match command {
        LogCommand::Checkpoint { state: None } => {
            let (cp, _) = auditor.checkpoint().await.map_err(|e| e.to_string())?;
            Ok(format!("checkpoint verified: {} entries", cp.size))
        }
        LogCommand::Checkpoint { state: Some(state) } => {
            let report = auditor
                .check_against_saved(&state)
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!("OK: {}", report.summary))
        }
        LogCommand::Verify { state } => {
            let report = auditor
                .verify_all(state.as_deref(), true)
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!("OK: {}", report.summary))
        }
        LogCommand::Entries { start, end } => {
            let entries = auditor
                .entries(start, end)
                .await
                .map_err(|e| e.to_string())?;
            Ok(entries
                .iter()
                .map(|(i, e)| {
                    format!(
                        "{i} {}",
                        base64::engine::general_purpose::STANDARD.encode(e)
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"))
        }
        LogCommand::Inclusion { index } => {
            let report = auditor
                .verify_inclusion(index)
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!("OK: {}", report.summary))
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("identity-audit: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(msg) => {
            println!("{msg}");
            ExitCode::SUCCESS
        }
        Err(msg) => {
            eprintln!("identity-audit: {msg}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_client_key_is_private_readable_and_never_overwrites() {
        let dir = std::env::temp_dir().join(format!("identity-audit-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("auditor.pem");
        let _ = std::fs::remove_file(&file);
        let jwks = new_client_key(&file).unwrap();
        let key = ClientKey::from_pem(&std::fs::read_to_string(&file).unwrap()).unwrap();
        assert_eq!(key.jwks(), jwks, "the printed JWKS is the file's key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{mode:o}");
        }
        assert!(new_client_key(&file).is_err(), "an existing key is kept");
        assert_eq!(
            client_jwks(&file).unwrap(),
            jwks,
            "the JWKS of the file's key"
        );
        assert_eq!(
            ClientKey::from_pem(&std::fs::read_to_string(&file).unwrap())
                .unwrap()
                .jwks(),
            jwks
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
