//! `identity-audit`: verify the identity service's audit log against a pinned key.

use clap::{Parser, Subcommand};
use identity_audit::{Auditor, Credential};
use identity_sdk::audit::VerifierKey;
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
    key: String,
    /// Auditor client id (client_credentials with the audit scope).
    #[arg(long, env = "IDENTITY_AUDIT_CLIENT_ID")]
    client_id: Option<String>,
    /// Auditor client secret.
    #[arg(long, env = "IDENTITY_AUDIT_CLIENT_SECRET")]
    client_secret: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
}

async fn run(cli: Cli) -> Result<String, String> {
    let key = VerifierKey::parse(&cli.key).map_err(|e| format!("--key: {e}"))?;
    let credential = match (cli.client_id, cli.client_secret) {
        (Some(id), Some(secret)) => Credential::Client { id, secret },
        _ => Credential::None,
    };
    let auditor = Auditor::connect(&cli.url, key, credential)
        .await
        .map_err(|e| e.to_string())?;
    match cli.command {
        Command::Checkpoint { state: None } => {
            let (cp, _) = auditor.checkpoint().await.map_err(|e| e.to_string())?;
            Ok(format!("checkpoint verified: {} entries", cp.size))
        }
        Command::Checkpoint { state: Some(state) } => {
            let report = auditor
                .check_against_saved(&state)
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!("OK: {}", report.summary))
        }
        Command::Verify { state } => {
            let report = auditor
                .verify_all(state.as_deref(), true)
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!("OK: {}", report.summary))
        }
        Command::Inclusion { index } => {
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
