//! A registration office's system enrolling a citizen, as the demo office:
//!
//! ```sh
//! cargo run -p identity-server -- demo &      # the service, with the demo data
//! cargo run -p identity-sdk --example registration -- http://localhost:8080
//! ```
//!
//! The office authenticates with `private_key_jwt` (the demo key is published in
//! `seeds/keys/`; a real office keeps its own where only its system reads it) and every
//! request carries a DPoP proof, which `ServiceClient::send` makes.

use identity_sdk::login::ClientKey;
use identity_sdk::service::ServiceClient;
use serde_json::json;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let issuer = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://localhost:8080".into());
    let key = ClientKey::from_pem(include_str!("../../seeds/keys/demo-registration.pem"))?;
    let office = ServiceClient::connect(&issuer, "demo-registration", key, "registration").await?;
    let enrolled = office
        .send(
            office
                .request(
                    reqwest::Method::POST,
                    &format!("{issuer}/registration/citizens"),
                )
                // The officer at the counter, recorded in the audit entry.
                .header("officer", "officer-1")
                .json(&json!({
                    "username": "wong", "name_en": "WONG Ka Yan", "name_zh": "黃嘉欣",
                    "date_of_birth": "1990-05-17", "gender": "female",
                    "id_document": "A123456(7)", "email": "wong@example.hk",
                })),
        )
        .await?;
    println!("{}\n{}", enrolled.status(), enrolled.text().await?);
    Ok(())
}
