//! Table definitions shared by both backends (kept by hand to match `migrations/`).

diesel::table! {
    citizens (id) {
        id -> Text,
        username -> Text,
        name_en -> Text,
        name_zh -> Text,
        email -> Nullable<Text>,
        email_verified -> Integer,
        phone -> Nullable<Text>,
        phone_verified -> Integer,
        address -> Nullable<Text>,
        status -> Text,
        created_at -> BigInt,
        webauthn_id -> Nullable<Text>,
        date_of_birth -> Nullable<Text>,
        gender -> Nullable<Text>,
        id_doc_sealed -> Nullable<Text>,
        id_doc_hash -> Nullable<Text>,
    }
}

diesel::table! {
    password_credentials (citizen_id) {
        citizen_id -> Text,
        phc -> Text,
        updated_at -> BigInt,
    }
}

diesel::table! {
    clients (id) {
        id -> Text,
        name -> Text,
        department -> Text,
        sector -> Text,
        secret_hash -> Nullable<Text>,
        redirect_uris -> Text,
        scopes -> Text,
        id_token_alg -> Text,
        created_at -> BigInt,
        min_acr -> Nullable<Text>,
        jwks -> Nullable<Text>,
        fapi -> Integer,
        post_logout_redirect_uris -> Nullable<Text>,
        backchannel_logout_uri -> Nullable<Text>,
        jwks_uri -> Nullable<Text>,
        signing_return_uris -> Nullable<Text>,
        signing_callback_uris -> Nullable<Text>,
        keys_set_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    sessions (id_hash) {
        id_hash -> Text,
        citizen_id -> Text,
        auth_time -> BigInt,
        amr -> Text,
        acr -> Text,
        created_at -> BigInt,
        last_seen_at -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::table! {
    auth_requests (id) {
        id -> Text,
        client_id -> Text,
        redirect_uri -> Text,
        scope -> Text,
        state -> Nullable<Text>,
        nonce -> Nullable<Text>,
        code_challenge -> Text,
        prompt -> Nullable<Text>,
        max_age -> Nullable<BigInt>,
        login_hint -> Nullable<Text>,
        ui_locales -> Nullable<Text>,
        created_at -> BigInt,
        expires_at -> BigInt,
        acr_required -> Nullable<Text>,
        dpop_jkt -> Nullable<Text>,
    }
}

diesel::table! {
    auth_codes (code_hash) {
        code_hash -> Text,
        client_id -> Text,
        citizen_id -> Text,
        redirect_uri -> Text,
        scope -> Text,
        nonce -> Nullable<Text>,
        code_challenge -> Text,
        auth_time -> BigInt,
        amr -> Text,
        acr -> Text,
        family_id -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        used_at -> Nullable<BigInt>,
        dpop_jkt -> Nullable<Text>,
    }
}

diesel::table! {
    token_families (id) {
        id -> Text,
        client_id -> Text,
        citizen_id -> Text,
        created_at -> BigInt,
        revoked_at -> Nullable<BigInt>,
        revoked_reason -> Nullable<Text>,
        dpop_jkt -> Nullable<Text>,
    }
}

diesel::table! {
    refresh_tokens (token_hash) {
        token_hash -> Text,
        family_id -> Text,
        scope -> Text,
        auth_time -> BigInt,
        amr -> Text,
        acr -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        used_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    consents (citizen_id, client_id) {
        citizen_id -> Text,
        client_id -> Text,
        scopes -> Text,
        granted_at -> BigInt,
    }
}

diesel::table! {
    signing_keys (kid) {
        kid -> Text,
        alg -> Text,
        private_key -> Text,
        public_jwk -> Text,
        created_at -> BigInt,
        active_from -> BigInt,
        retired_at -> Nullable<BigInt>,
        revoked_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    throttles (key) {
        key -> Text,
        failures -> BigInt,
        window_start -> BigInt,
        last_failure_at -> BigInt,
        next_allowed_at -> BigInt,
    }
}

diesel::table! {
    passkeys (cred_id) {
        cred_id -> Text,
        citizen_id -> Text,
        name -> Text,
        credential -> Text,
        synced -> Integer,
        created_at -> BigInt,
        last_used_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    webauthn_ceremonies (handle_hash) {
        handle_hash -> Text,
        purpose -> Text,
        citizen_id -> Nullable<Text>,
        state -> Text,
        expires_at -> BigInt,
    }
}

diesel::table! {
    activation_codes (code_hash) {
        code_hash -> Text,
        citizen_id -> Text,
        purpose -> Text,
        created_by -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        used_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    subjects (sector, subject) {
        sector -> Text,
        subject -> Text,
        citizen_id -> Text,
    }
}

diesel::table! {
    signing_ca (id) {
        id -> Text,
        certificate -> Text,
        private_key -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    citizen_signing_keys (citizen_id) {
        citizen_id -> Text,
        private_key -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    signing_requests (id) {
        id -> Text,
        client_id -> Text,
        citizen_id -> Text,
        subject -> Text,
        hash_alg -> Text,
        document_hash -> Text,
        document_name -> Text,
        description -> Nullable<Text>,
        return_uri -> Nullable<Text>,
        code -> Text,
        state -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        decided_at -> Nullable<BigInt>,
        signature -> Nullable<Text>,
        certificate -> Nullable<Text>,
        evidence -> Nullable<Text>,
        audit_from -> Nullable<BigInt>,
        callback_uri -> Nullable<Text>,
    }
}

diesel::table! {
    jti_records (key) {
        key -> Text,
        expires_at -> BigInt,
    }
}

diesel::table! {
    par_requests (request_uri_hash) {
        request_uri_hash -> Text,
        client_id -> Text,
        params -> Text,
        expires_at -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    citizens,
    password_credentials,
    clients,
    sessions,
    auth_requests,
    auth_codes,
    token_families,
    refresh_tokens,
    consents,
    signing_keys,
    throttles,
    passkeys,
    webauthn_ceremonies,
    activation_codes,
    subjects,
    signing_ca,
    citizen_signing_keys,
    signing_requests,
    jti_records,
    par_requests,
);

diesel::joinable!(password_credentials -> citizens (citizen_id));
diesel::joinable!(sessions -> citizens (citizen_id));
diesel::joinable!(passkeys -> citizens (citizen_id));
diesel::joinable!(activation_codes -> citizens (citizen_id));
diesel::joinable!(consents -> clients (client_id));
diesel::joinable!(signing_requests -> clients (client_id));

diesel::table! {
    clients_generation (id) {
        id -> Integer,
        generation -> BigInt,
    }
}

diesel::table! {
    audit_entries (idx) {
        idx -> BigInt,
        entry -> Text,
        created_at -> BigInt,
        subject -> Nullable<Text>,
    }
}

diesel::table! {
    audit_nodes (node_key) {
        node_key -> BigInt,
        hash -> Text,
    }
}

diesel::table! {
    audit_checkpoints (size) {
        size -> BigInt,
        root -> Text,
        note -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    audit_keys (name) {
        name -> Text,
        private_key -> Text,
        public_key -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    audit_outbox (id) {
        id -> Text,
        entry -> Text,
        created_ms -> BigInt,
    }
}

diesel::table! {
    recovery_requests (id) {
        id -> Text,
        citizen_id -> Text,
        remove_passkeys -> Integer,
        requested_by -> Text,
        requested_at -> BigInt,
        expires_at -> BigInt,
        approved_by -> Nullable<Text>,
        approved_at -> Nullable<BigInt>,
    }
}
