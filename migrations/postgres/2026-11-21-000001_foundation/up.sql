-- Cohort foundation schema (PostgreSQL).
-- Mirrors src/db/schema.rs; the SQLite tree has the same tables, columns, constraints and seeds.
-- Timestamps are TIMESTAMP WITHOUT TIME ZONE holding UTC; defaults are taken in UTC so they do
-- not depend on the session's TimeZone setting.

-- Organization tree; id 0 is the implicit root, top-level organizations sit under it.
CREATE TABLE organizations (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT      NOT NULL,
    org_type    TEXT      NOT NULL,
    part_of     BIGINT             REFERENCES organizations (id) ON DELETE RESTRICT,
    created_at  TIMESTAMP NOT NULL DEFAULT (CURRENT_TIMESTAMP AT TIME ZONE 'UTC'),
    updated_at  TIMESTAMP NOT NULL DEFAULT (CURRENT_TIMESTAMP AT TIME ZONE 'UTC')
);
CREATE INDEX idx_organizations_part_of_name ON organizations (part_of, name);

-- Research studies, each owned by one organization.
CREATE TABLE studies (
    id               BIGSERIAL PRIMARY KEY,
    organization_id  BIGINT    NOT NULL REFERENCES organizations (id) ON DELETE RESTRICT,
    name             TEXT      NOT NULL,
    description      TEXT      NOT NULL,
    icon_url         TEXT,
    status           TEXT      NOT NULL DEFAULT 'active'
                     CONSTRAINT ck_studies_status CHECK (status IN ('active', 'paused', 'closed')),
    created_at       TIMESTAMP NOT NULL DEFAULT (CURRENT_TIMESTAMP AT TIME ZONE 'UTC'),
    updated_at       TIMESTAMP NOT NULL DEFAULT (CURRENT_TIMESTAMP AT TIME ZONE 'UTC')
);
CREATE INDEX idx_studies_organization_id_name ON studies (organization_id, name);

-- Login accounts, practitioners and patients alike, with the console's current selection.
CREATE TABLE users (
    id                        BIGSERIAL PRIMARY KEY,
    email                     TEXT      NOT NULL,
    first_name                TEXT      NOT NULL,
    last_name                 TEXT      NOT NULL,
    user_type                 TEXT      NOT NULL
                              CONSTRAINT ck_users_user_type CHECK (user_type IN ('practitioner', 'patient')),
    is_superuser              BOOLEAN   NOT NULL DEFAULT FALSE,
    is_active                 BOOLEAN   NOT NULL DEFAULT TRUE,
    selected_organization_id  BIGINT             REFERENCES organizations (id) ON DELETE SET NULL,
    selected_study_id         BIGINT             REFERENCES studies (id) ON DELETE SET NULL,
    created_at                TIMESTAMP NOT NULL DEFAULT (CURRENT_TIMESTAMP AT TIME ZONE 'UTC'),
    last_login_at             TIMESTAMP,
    CONSTRAINT uq_users_email UNIQUE (email)
);

-- Practitioner profile of a user (one per user).
CREATE TABLE practitioners (
    id          BIGSERIAL PRIMARY KEY,
    user_id     BIGINT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  TIMESTAMP NOT NULL DEFAULT (CURRENT_TIMESTAMP AT TIME ZONE 'UTC'),
    CONSTRAINT uq_practitioners_user_id UNIQUE (user_id)
);

-- Membership of a practitioner in an organization, with its role.
CREATE TABLE practitioner_organizations (
    id               BIGSERIAL PRIMARY KEY,
    practitioner_id  BIGINT    NOT NULL REFERENCES practitioners (id) ON DELETE CASCADE,
    organization_id  BIGINT    NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    role             TEXT      NOT NULL
                     CONSTRAINT ck_practitioner_organizations_role CHECK (role IN ('manager', 'member', 'viewer')),
    created_at       TIMESTAMP NOT NULL DEFAULT (CURRENT_TIMESTAMP AT TIME ZONE 'UTC'),
    CONSTRAINT uq_practitioner_organizations_practitioner_id_organization_id
        UNIQUE (practitioner_id, organization_id)
);
CREATE INDEX idx_practitioner_organizations_organization_id
    ON practitioner_organizations (organization_id);

-- Patient profile of a user (one per user); search_text is the lower-cased name/email/identifier blob.
CREATE TABLE patients (
    id             BIGSERIAL PRIMARY KEY,
    user_id        BIGINT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name_family    TEXT      NOT NULL,
    name_given     TEXT      NOT NULL,
    birth_date     DATE,
    telecom_phone  TEXT,
    telecom_email  TEXT      NOT NULL,
    search_text    TEXT      NOT NULL,
    created_at     TIMESTAMP NOT NULL DEFAULT (CURRENT_TIMESTAMP AT TIME ZONE 'UTC'),
    updated_at     TIMESTAMP NOT NULL DEFAULT (CURRENT_TIMESTAMP AT TIME ZONE 'UTC'),
    CONSTRAINT uq_patients_user_id UNIQUE (user_id),
    CONSTRAINT uq_patients_telecom_email UNIQUE (telecom_email)
);
CREATE INDEX idx_patients_name_family_name_given ON patients (name_family, name_given);
CREATE INDEX idx_patients_birth_date ON patients (birth_date);
CREATE INDEX idx_patients_created_at ON patients (created_at);

-- External identifiers of a patient (e.g. MRN); (system, value) is unique across the exchange.
CREATE TABLE patient_identifiers (
    id          BIGSERIAL PRIMARY KEY,
    patient_id  BIGINT NOT NULL REFERENCES patients (id) ON DELETE CASCADE,
    system      TEXT   NOT NULL,
    value       TEXT   NOT NULL,
    CONSTRAINT uq_patient_identifiers_system_value UNIQUE (system, value)
);
CREATE INDEX idx_patient_identifiers_patient_id ON patient_identifiers (patient_id);

-- Membership of a patient in an organization (archived_at set when hidden but kept).
-- Deleting an organization that still has patients is refused (RESTRICT).
CREATE TABLE patient_organizations (
    id               BIGSERIAL PRIMARY KEY,
    patient_id       BIGINT    NOT NULL REFERENCES patients (id) ON DELETE CASCADE,
    organization_id  BIGINT    NOT NULL REFERENCES organizations (id) ON DELETE RESTRICT,
    archived_at      TIMESTAMP,
    created_at       TIMESTAMP NOT NULL DEFAULT (CURRENT_TIMESTAMP AT TIME ZONE 'UTC'),
    CONSTRAINT uq_patient_organizations_patient_id_organization_id
        UNIQUE (patient_id, organization_id)
);
CREATE INDEX idx_patient_organizations_organization_id_patient_id
    ON patient_organizations (organization_id, patient_id);

-- Free-form labels an organization puts on its patients.
CREATE TABLE tags (
    id               BIGSERIAL PRIMARY KEY,
    organization_id  BIGINT    NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name             TEXT      NOT NULL,
    created_at       TIMESTAMP NOT NULL DEFAULT (CURRENT_TIMESTAMP AT TIME ZONE 'UTC'),
    CONSTRAINT uq_tags_organization_id_name UNIQUE (organization_id, name)
);

-- Tag assignments (tag <-> patient).
CREATE TABLE patient_tags (
    id          BIGSERIAL PRIMARY KEY,
    patient_id  BIGINT    NOT NULL REFERENCES patients (id) ON DELETE CASCADE,
    tag_id      BIGINT    NOT NULL REFERENCES tags (id) ON DELETE CASCADE,
    created_at  TIMESTAMP NOT NULL DEFAULT (CURRENT_TIMESTAMP AT TIME ZONE 'UTC'),
    CONSTRAINT uq_patient_tags_tag_id_patient_id UNIQUE (tag_id, patient_id)
);
CREATE INDEX idx_patient_tags_patient_id ON patient_tags (patient_id);

-- Data scopes (Open mHealth / IEEE 1752 schema codes); seeded below, ids 1..15.
CREATE TABLE codeable_concepts (
    id             BIGSERIAL PRIMARY KEY,
    coding_system  TEXT NOT NULL,
    coding_code    TEXT NOT NULL,
    text           TEXT NOT NULL,
    CONSTRAINT uq_codeable_concepts_coding_system_coding_code UNIQUE (coding_system, coding_code)
);

-- Scopes a study asks its patients to consent to.
CREATE TABLE study_scope_requests (
    id                   BIGSERIAL PRIMARY KEY,
    study_id             BIGINT    NOT NULL REFERENCES studies (id) ON DELETE CASCADE,
    codeable_concept_id  BIGINT    NOT NULL REFERENCES codeable_concepts (id) ON DELETE RESTRICT,
    created_at           TIMESTAMP NOT NULL DEFAULT (CURRENT_TIMESTAMP AT TIME ZONE 'UTC'),
    CONSTRAINT uq_study_scope_requests_study_id_codeable_concept_id
        UNIQUE (study_id, codeable_concept_id)
);

-- Data sources (FHIR Device): apps and devices that upload observations.
CREATE TABLE data_sources (
    id           BIGSERIAL PRIMARY KEY,
    name         TEXT      NOT NULL,
    source_type  TEXT      NOT NULL
                 CONSTRAINT ck_data_sources_source_type
                 CHECK (source_type IN ('personal_device', 'medical_device', 'patient_app')),
    created_at   TIMESTAMP NOT NULL DEFAULT (CURRENT_TIMESTAMP AT TIME ZONE 'UTC')
);

-- Scopes a data source can supply.
CREATE TABLE data_source_scopes (
    id                   BIGSERIAL PRIMARY KEY,
    data_source_id       BIGINT NOT NULL REFERENCES data_sources (id) ON DELETE CASCADE,
    codeable_concept_id  BIGINT NOT NULL REFERENCES codeable_concepts (id) ON DELETE RESTRICT,
    CONSTRAINT uq_data_source_scopes_data_source_id_codeable_concept_id
        UNIQUE (data_source_id, codeable_concept_id)
);

-- Data sources a study accepts.
CREATE TABLE study_data_sources (
    id              BIGSERIAL PRIMARY KEY,
    study_id        BIGINT    NOT NULL REFERENCES studies (id) ON DELETE CASCADE,
    data_source_id  BIGINT    NOT NULL REFERENCES data_sources (id) ON DELETE CASCADE,
    created_at      TIMESTAMP NOT NULL DEFAULT (CURRENT_TIMESTAMP AT TIME ZONE 'UTC'),
    CONSTRAINT uq_study_data_sources_study_id_data_source_id UNIQUE (study_id, data_source_id)
);

-- Enrolment of a patient in a study.
CREATE TABLE study_patients (
    id          BIGSERIAL PRIMARY KEY,
    study_id    BIGINT    NOT NULL REFERENCES studies (id) ON DELETE CASCADE,
    patient_id  BIGINT    NOT NULL REFERENCES patients (id) ON DELETE CASCADE,
    created_at  TIMESTAMP NOT NULL DEFAULT (CURRENT_TIMESTAMP AT TIME ZONE 'UTC'),
    CONSTRAINT uq_study_patients_study_id_patient_id UNIQUE (study_id, patient_id)
);
CREATE INDEX idx_study_patients_patient_id ON study_patients (patient_id);

-- A patient's decision per (study, scope): consented true/false; no row means pending.
CREATE TABLE consents (
    id                   BIGSERIAL PRIMARY KEY,
    study_id             BIGINT    NOT NULL REFERENCES studies (id) ON DELETE CASCADE,
    patient_id           BIGINT    NOT NULL REFERENCES patients (id) ON DELETE CASCADE,
    codeable_concept_id  BIGINT    NOT NULL REFERENCES codeable_concepts (id) ON DELETE RESTRICT,
    consented            BOOLEAN   NOT NULL,
    consented_at         TIMESTAMP NOT NULL,
    actor_user_id        BIGINT             REFERENCES users (id) ON DELETE SET NULL,
    reason               TEXT,
    created_at           TIMESTAMP NOT NULL DEFAULT (CURRENT_TIMESTAMP AT TIME ZONE 'UTC'),
    updated_at           TIMESTAMP NOT NULL DEFAULT (CURRENT_TIMESTAMP AT TIME ZONE 'UTC'),
    CONSTRAINT uq_consents_study_id_patient_id_codeable_concept_id
        UNIQUE (study_id, patient_id, codeable_concept_id)
);
CREATE INDEX idx_consents_patient_id ON consents (patient_id);
CREATE INDEX idx_consents_study_id_codeable_concept_id ON consents (study_id, codeable_concept_id);

-- Health observations; omh_data is the Open mHealth JSON document {header, body} as text.
CREATE TABLE observations (
    id                   BIGSERIAL PRIMARY KEY,
    patient_id           BIGINT    NOT NULL REFERENCES patients (id) ON DELETE CASCADE,
    codeable_concept_id  BIGINT    NOT NULL REFERENCES codeable_concepts (id) ON DELETE RESTRICT,
    data_source_id       BIGINT             REFERENCES data_sources (id) ON DELETE SET NULL,
    status               TEXT      NOT NULL DEFAULT 'final',
    identifier_system    TEXT,
    identifier_value     TEXT,
    effective_start      TIMESTAMP,
    effective_end        TIMESTAMP,
    omh_data             TEXT      NOT NULL,
    created_at           TIMESTAMP NOT NULL DEFAULT (CURRENT_TIMESTAMP AT TIME ZONE 'UTC'),
    last_updated         TIMESTAMP NOT NULL DEFAULT (CURRENT_TIMESTAMP AT TIME ZONE 'UTC'),
    CONSTRAINT uq_observations_identifier_system_identifier_value
        UNIQUE (identifier_system, identifier_value)
);
CREATE INDEX idx_observations_patient_id_effective_start_id
    ON observations (patient_id, effective_start, id);
CREATE INDEX idx_observations_codeable_concept_id_effective_start_id
    ON observations (codeable_concept_id, effective_start, id);
CREATE INDEX idx_observations_last_updated_id ON observations (last_updated, id);
-- Keeps ON DELETE SET NULL from scanning every observation when a data source is deleted.
CREATE INDEX idx_observations_data_source_id ON observations (data_source_id);

-- Registered client applications that patients are invited into.
CREATE TABLE clients (
    id                       BIGSERIAL PRIMARY KEY,
    name                     TEXT      NOT NULL,
    client_id                TEXT      NOT NULL,
    redirect_uri             TEXT      NOT NULL,
    invitation_url_template  TEXT      NOT NULL,
    created_at               TIMESTAMP NOT NULL DEFAULT (CURRENT_TIMESTAMP AT TIME ZONE 'UTC'),
    CONSTRAINT uq_clients_client_id UNIQUE (client_id)
);

-- Invitations sent to patients; only the token's hash is stored.
CREATE TABLE invitations (
    id                  BIGSERIAL PRIMARY KEY,
    patient_id          BIGINT    NOT NULL REFERENCES patients (id) ON DELETE CASCADE,
    organization_id     BIGINT    NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    client_id           BIGINT             REFERENCES clients (id) ON DELETE SET NULL,
    token_hash          TEXT      NOT NULL,
    status              TEXT      NOT NULL
                        CONSTRAINT ck_invitations_status
                        CHECK (status IN ('issued', 'redeemed', 'expired', 'cancelled', 'reissued')),
    send_email          BOOLEAN   NOT NULL,
    created_by_user_id  BIGINT             REFERENCES users (id) ON DELETE SET NULL,
    created_at          TIMESTAMP NOT NULL DEFAULT (CURRENT_TIMESTAMP AT TIME ZONE 'UTC'),
    expires_at          TIMESTAMP NOT NULL,
    redeemed_at         TIMESTAMP,
    last_updated        TIMESTAMP NOT NULL DEFAULT (CURRENT_TIMESTAMP AT TIME ZONE 'UTC'),
    CONSTRAINT uq_invitations_token_hash UNIQUE (token_hash)
);
CREATE INDEX idx_invitations_patient_id_created_at ON invitations (patient_id, created_at);
CREATE INDEX idx_invitations_organization_id_status ON invitations (organization_id, status);

-- Bearer tokens for the API (personal access tokens and patient app tokens); hash only.
CREATE TABLE api_tokens (
    id            BIGSERIAL PRIMARY KEY,
    user_id       BIGINT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    label         TEXT      NOT NULL,
    token_hash    TEXT      NOT NULL,
    token_prefix  TEXT      NOT NULL,
    kind          TEXT      NOT NULL DEFAULT 'personal'
                  CONSTRAINT ck_api_tokens_kind CHECK (kind IN ('personal', 'patient')),
    created_at    TIMESTAMP NOT NULL DEFAULT (CURRENT_TIMESTAMP AT TIME ZONE 'UTC'),
    last_used_at  TIMESTAMP,
    expires_at    TIMESTAMP,
    revoked_at    TIMESTAMP,
    CONSTRAINT uq_api_tokens_token_hash UNIQUE (token_hash)
);
CREATE INDEX idx_api_tokens_user_id ON api_tokens (user_id);

-- One-time sign-in codes and magic links; hash only, with brute-force lockout.
CREATE TABLE sign_in_tokens (
    id               BIGSERIAL PRIMARY KEY,
    user_id          BIGINT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind             TEXT      NOT NULL
                     CONSTRAINT ck_sign_in_tokens_kind CHECK (kind IN ('code', 'link')),
    secret_hash      TEXT      NOT NULL,
    created_at       TIMESTAMP NOT NULL DEFAULT (CURRENT_TIMESTAMP AT TIME ZONE 'UTC'),
    expires_at       TIMESTAMP NOT NULL,
    used_at          TIMESTAMP,
    failed_attempts  BIGINT    NOT NULL DEFAULT 0,
    locked_until     TIMESTAMP
);
CREATE INDEX idx_sign_in_tokens_user_id_created_at ON sign_in_tokens (user_id, created_at);

-- Append-only audit trail. No foreign keys on purpose: it must outlive what it describes.
CREATE TABLE audit_events (
    id               BIGSERIAL PRIMARY KEY,
    occurred_at      TIMESTAMP NOT NULL DEFAULT (CURRENT_TIMESTAMP AT TIME ZONE 'UTC'),
    actor_user_id    BIGINT,
    actor_email      TEXT,
    action           TEXT      NOT NULL,
    object_type      TEXT,
    object_id        TEXT,
    organization_id  BIGINT,
    ip               TEXT,
    detail           TEXT
);
CREATE INDEX idx_audit_events_occurred_at_id ON audit_events (occurred_at, id);
CREATE INDEX idx_audit_events_actor_user_id_occurred_at ON audit_events (actor_user_id, occurred_at);
CREATE INDEX idx_audit_events_action_occurred_at ON audit_events (action, occurred_at);
CREATE INDEX idx_audit_events_object_type_object_id ON audit_events (object_type, object_id);
CREATE INDEX idx_audit_events_organization_id_occurred_at ON audit_events (organization_id, occurred_at);

-- Key/value settings the server keeps across restarts.
CREATE TABLE server_settings (
    key    TEXT NOT NULL PRIMARY KEY,
    value  TEXT NOT NULL
);

-- Seed: the implicit root organization (id 0; the id sequence still starts at 1).
INSERT INTO organizations (id, name, org_type, part_of) VALUES (0, 'Root', 'root', NULL);

-- Seed: the scope codes, in this order so their ids are 1..15.
INSERT INTO codeable_concepts (coding_system, coding_code, text) VALUES
    ('https://w3id.org/openmhealth', 'omh:blood-glucose:4.0', 'Blood glucose'),
    ('https://w3id.org/openmhealth', 'omh:blood-pressure:4.0', 'Blood pressure'),
    ('https://w3id.org/openmhealth', 'omh:body-temperature:4.0', 'Body temperature'),
    ('https://w3id.org/openmhealth', 'omh:heart-rate:2.0', 'Heart rate'),
    ('https://w3id.org/openmhealth', 'omh:oxygen-saturation:2.0', 'Oxygen saturation'),
    ('https://w3id.org/openmhealth', 'omh:respiratory-rate:2.0', 'Respiratory rate'),
    ('https://w3id.org/openmhealth', 'omh:rr-interval:1.0', 'RR interval'),
    ('https://w3id.org/openmhealth', 'omh:body-weight:3.0', 'Body weight'),
    ('https://w3id.org/openmhealth', 'omh:forced-vital-capacity:1.0', 'Forced vital capacity'),
    ('https://w3id.org/openmhealth', 'omh:forced-expiratory-volume-1-second:1.0', 'Forced expiratory volume in 1 second'),
    ('https://w3id.org/openmhealth', 'omh:physical-activity:1.2', 'Physical activity'),
    ('https://w3id.org/openmhealth', 'omh:step-count:3.0', 'Step count'),
    ('https://w3id.org/openmhealth', 'omh:sleep-episode:1.1', 'Sleep episode'),
    ('https://w3id.org/openmhealth', 'omh:sleep-duration:2.0', 'Sleep duration'),
    ('https://w3id.org/ieee1752', 'ieee:sleep-stage-summary:1.0', 'Sleep stage summary');
