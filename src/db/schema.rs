//! Diesel table definitions, kept by hand so both backends share one typed schema.
//! Every column uses a type that diesel's MultiConnection carries on SQLite and PostgreSQL.

diesel::table! {
    organizations (id) {
        id -> BigInt,
        name -> Text,
        org_type -> Text,
        part_of -> Nullable<BigInt>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    users (id) {
        id -> BigInt,
        email -> Text,
        first_name -> Text,
        last_name -> Text,
        user_type -> Text,
        is_superuser -> Bool,
        is_active -> Bool,
        selected_organization_id -> Nullable<BigInt>,
        selected_study_id -> Nullable<BigInt>,
        created_at -> Timestamp,
        last_login_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    practitioners (id) {
        id -> BigInt,
        user_id -> BigInt,
        created_at -> Timestamp,
    }
}

diesel::table! {
    practitioner_organizations (id) {
        id -> BigInt,
        practitioner_id -> BigInt,
        organization_id -> BigInt,
        role -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    patients (id) {
        id -> BigInt,
        user_id -> BigInt,
        name_family -> Text,
        name_given -> Text,
        birth_date -> Nullable<Date>,
        telecom_phone -> Nullable<Text>,
        telecom_email -> Text,
        search_text -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    patient_identifiers (id) {
        id -> BigInt,
        patient_id -> BigInt,
        system -> Text,
        value -> Text,
    }
}

diesel::table! {
    patient_organizations (id) {
        id -> BigInt,
        patient_id -> BigInt,
        organization_id -> BigInt,
        archived_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
        sort_name -> Text,
        birth_date -> Nullable<Date>,
    }
}

diesel::table! {
    tags (id) {
        id -> BigInt,
        organization_id -> BigInt,
        name -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    patient_tags (id) {
        id -> BigInt,
        patient_id -> BigInt,
        tag_id -> BigInt,
        created_at -> Timestamp,
    }
}

diesel::table! {
    studies (id) {
        id -> BigInt,
        organization_id -> BigInt,
        name -> Text,
        description -> Text,
        icon_url -> Nullable<Text>,
        status -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        search_text -> Text,
    }
}

diesel::table! {
    codeable_concepts (id) {
        id -> BigInt,
        coding_system -> Text,
        coding_code -> Text,
        text -> Text,
    }
}

diesel::table! {
    study_scope_requests (id) {
        id -> BigInt,
        study_id -> BigInt,
        codeable_concept_id -> BigInt,
        created_at -> Timestamp,
    }
}

diesel::table! {
    data_sources (id) {
        id -> BigInt,
        name -> Text,
        source_type -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    data_source_scopes (id) {
        id -> BigInt,
        data_source_id -> BigInt,
        codeable_concept_id -> BigInt,
    }
}

diesel::table! {
    study_data_sources (id) {
        id -> BigInt,
        study_id -> BigInt,
        data_source_id -> BigInt,
        created_at -> Timestamp,
    }
}

diesel::table! {
    study_patients (id) {
        id -> BigInt,
        study_id -> BigInt,
        patient_id -> BigInt,
        created_at -> Timestamp,
        decisions -> BigInt,
        declines -> BigInt,
        invitation_status -> Nullable<Text>,
        invitation_expires_at -> Nullable<Timestamp>,
        invitations -> BigInt,
    }
}

diesel::table! {
    consents (id) {
        id -> BigInt,
        study_id -> BigInt,
        patient_id -> BigInt,
        codeable_concept_id -> BigInt,
        consented -> Bool,
        consented_at -> Timestamp,
        actor_user_id -> Nullable<BigInt>,
        reason -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    study_counts (study_id) {
        study_id -> BigInt,
        enrolled -> BigInt,
        responded -> BigInt,
        changes -> BigInt,
    }
}

diesel::table! {
    study_scope_counts (study_id, codeable_concept_id) {
        study_id -> BigInt,
        codeable_concept_id -> BigInt,
        consented -> BigInt,
        declined -> BigInt,
    }
}

diesel::table! {
    observations (id) {
        id -> BigInt,
        patient_id -> BigInt,
        codeable_concept_id -> BigInt,
        data_source_id -> Nullable<BigInt>,
        status -> Text,
        identifier_system -> Nullable<Text>,
        identifier_value -> Nullable<Text>,
        // Nullable in the table; migration 000005 filled it and every insert sets it.
        effective_start -> Timestamp,
        effective_end -> Nullable<Timestamp>,
        omh_data -> Text,
        created_at -> Timestamp,
        last_updated -> Timestamp,
    }
}

diesel::table! {
    clients (id) {
        id -> BigInt,
        name -> Text,
        client_id -> Text,
        redirect_uri -> Text,
        invitation_url_template -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    invitations (id) {
        id -> BigInt,
        patient_id -> BigInt,
        organization_id -> BigInt,
        client_id -> Nullable<BigInt>,
        token_hash -> Text,
        status -> Text,
        send_email -> Bool,
        created_by_user_id -> Nullable<BigInt>,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        redeemed_at -> Nullable<Timestamp>,
        last_updated -> Timestamp,
    }
}

diesel::table! {
    api_tokens (id) {
        id -> BigInt,
        user_id -> BigInt,
        label -> Text,
        token_hash -> Text,
        token_prefix -> Text,
        kind -> Text,
        created_at -> Timestamp,
        last_used_at -> Nullable<Timestamp>,
        expires_at -> Nullable<Timestamp>,
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    sign_in_tokens (id) {
        id -> BigInt,
        user_id -> BigInt,
        kind -> Text,
        secret_hash -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
        failed_attempts -> BigInt,
        locked_until -> Nullable<Timestamp>,
    }
}

diesel::table! {
    audit_events (id) {
        id -> BigInt,
        occurred_at -> Timestamp,
        actor_user_id -> Nullable<BigInt>,
        actor_email -> Nullable<Text>,
        action -> Text,
        object_type -> Nullable<Text>,
        object_id -> Nullable<Text>,
        organization_id -> Nullable<BigInt>,
        ip -> Nullable<Text>,
        detail -> Nullable<Text>,
    }
}

diesel::table! {
    server_settings (key) {
        key -> Text,
        value -> Text,
    }
}

diesel::table! {
    oauth_grants (id) {
        id -> BigInt,
        kind -> Text,
        secret_hash -> Text,
        client_id -> BigInt,
        user_id -> BigInt,
        invitation_id -> Nullable<BigInt>,
        code_challenge -> Nullable<Text>,
        redirect_uri -> Text,
        api_token_id -> Nullable<BigInt>,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    update_requests (id) {
        id -> BigInt,
        study_id -> BigInt,
        patient_id -> BigInt,
        requested_by_user_id -> Nullable<BigInt>,
        outcome -> Text,
        created_at -> Timestamp,
        seen_at -> Nullable<Timestamp>,
    }
}

diesel::joinable!(practitioners -> users (user_id));
diesel::joinable!(practitioner_organizations -> practitioners (practitioner_id));
diesel::joinable!(practitioner_organizations -> organizations (organization_id));
diesel::joinable!(patients -> users (user_id));
diesel::joinable!(patient_identifiers -> patients (patient_id));
diesel::joinable!(patient_organizations -> patients (patient_id));
diesel::joinable!(patient_organizations -> organizations (organization_id));
diesel::joinable!(tags -> organizations (organization_id));
diesel::joinable!(patient_tags -> patients (patient_id));
diesel::joinable!(patient_tags -> tags (tag_id));
diesel::joinable!(studies -> organizations (organization_id));
diesel::joinable!(study_scope_requests -> studies (study_id));
diesel::joinable!(study_scope_requests -> codeable_concepts (codeable_concept_id));
diesel::joinable!(data_source_scopes -> data_sources (data_source_id));
diesel::joinable!(data_source_scopes -> codeable_concepts (codeable_concept_id));
diesel::joinable!(study_data_sources -> studies (study_id));
diesel::joinable!(study_data_sources -> data_sources (data_source_id));
diesel::joinable!(study_patients -> studies (study_id));
diesel::joinable!(study_patients -> patients (patient_id));
diesel::joinable!(consents -> studies (study_id));
diesel::joinable!(study_counts -> studies (study_id));
diesel::joinable!(study_scope_counts -> studies (study_id));
diesel::joinable!(study_scope_counts -> codeable_concepts (codeable_concept_id));
diesel::joinable!(consents -> patients (patient_id));
diesel::joinable!(consents -> codeable_concepts (codeable_concept_id));
diesel::joinable!(observations -> patients (patient_id));
diesel::joinable!(observations -> codeable_concepts (codeable_concept_id));
diesel::joinable!(observations -> data_sources (data_source_id));
diesel::joinable!(invitations -> patients (patient_id));
diesel::joinable!(invitations -> organizations (organization_id));
diesel::joinable!(invitations -> clients (client_id));
diesel::joinable!(api_tokens -> users (user_id));
diesel::joinable!(update_requests -> studies (study_id));
diesel::joinable!(oauth_grants -> clients (client_id));
diesel::joinable!(sign_in_tokens -> users (user_id));

diesel::table! {
    patient_search_terms (patient_id, term) {
        patient_id -> BigInt,
        term -> Text,
    }
}

diesel::joinable!(patient_search_terms -> patients (patient_id));

diesel::table! {
    organization_patient_counts (organization_id, shard) {
        organization_id -> BigInt,
        active -> BigInt,
        archived -> BigInt,
        shard -> Integer,
    }
}

diesel::table! {
    imports (id) {
        id -> BigInt,
        organization_id -> BigInt,
        user_id -> Nullable<BigInt>,
        filename -> Text,
        content -> Text,
        status -> Text,
        study_id -> Nullable<BigInt>,
        invite -> Bool,
        result -> Nullable<Text>,
        outcome -> Nullable<Text>,
        created_at -> Timestamp,
        started_at -> Nullable<Timestamp>,
        finished_at -> Nullable<Timestamp>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    organizations,
    users,
    practitioners,
    practitioner_organizations,
    patients,
    patient_identifiers,
    patient_organizations,
    tags,
    patient_tags,
    studies,
    codeable_concepts,
    study_scope_requests,
    data_sources,
    data_source_scopes,
    study_data_sources,
    study_patients,
    consents,
    study_counts,
    study_scope_counts,
    observations,
    clients,
    invitations,
    api_tokens,
    sign_in_tokens,
    audit_events,
    server_settings,
    patient_search_terms,
    organization_patient_counts,
    imports,
    oauth_grants,
    update_requests,
);
