-- What a patient's app holds: authorization codes (from redeeming an invitation, exchanged
-- once with PKCE) and refresh tokens. Only hashes of the secrets are kept.
CREATE TABLE oauth_grants (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    kind            TEXT      NOT NULL
                    CONSTRAINT ck_oauth_grants_kind CHECK (kind IN ('code', 'refresh')),
    secret_hash     TEXT      NOT NULL,
    client_id       BIGINT    NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    user_id         BIGINT    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    invitation_id   BIGINT             REFERENCES invitations (id) ON DELETE SET NULL,
    code_challenge  TEXT,
    redirect_uri    TEXT      NOT NULL,
    api_token_id    BIGINT             REFERENCES api_tokens (id) ON DELETE CASCADE,
    created_at      TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    expires_at      TIMESTAMP NOT NULL,
    used_at         TIMESTAMP,
    CONSTRAINT uq_oauth_grants_secret_hash UNIQUE (secret_hash)
);
CREATE INDEX idx_oauth_grants_user_id ON oauth_grants (user_id);

-- A practitioner's request for fresh data from a patient in a study, with the answer given
-- then; the patient's app reads the open ones.
CREATE TABLE update_requests (
    id                    INTEGER PRIMARY KEY AUTOINCREMENT,
    study_id              BIGINT    NOT NULL REFERENCES studies (id) ON DELETE CASCADE,
    patient_id            BIGINT    NOT NULL REFERENCES patients (id) ON DELETE CASCADE,
    requested_by_user_id  BIGINT             REFERENCES users (id) ON DELETE SET NULL,
    outcome               TEXT      NOT NULL
                          CONSTRAINT ck_update_requests_outcome
                          CHECK (outcome IN ('IN_PROGRESS_NO_ACTION_NEEDED', 'PATIENT_ACTION_NEEDED')),
    created_at            TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    seen_at               TIMESTAMP
);
CREATE INDEX idx_update_requests_patient_id ON update_requests (patient_id, created_at);
CREATE INDEX idx_update_requests_study_id ON update_requests (study_id);

-- Patient tokens are looked up by holder when asking whether an app is connected.
CREATE INDEX idx_api_tokens_user_id_kind ON api_tokens (user_id, kind);

-- Cohort's own invitation page is the default client: a link without another client leads
-- there. Relative addresses are completed with the server's public URL.
INSERT INTO clients (name, client_id, redirect_uri, invitation_url_template)
VALUES ('Cohort', 'cohort', '/invite/connected', '/invite/CODE');
