-- Uploaded patient lists, kept from preview to commit so any instance can finish the job;
-- after the commit they hold the summary and the per-row outcome report.
CREATE TABLE imports (
    id               BIGSERIAL PRIMARY KEY,
    organization_id  BIGINT    NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id          BIGINT             REFERENCES users (id) ON DELETE SET NULL,
    filename         TEXT      NOT NULL,
    content          TEXT      NOT NULL,
    status           TEXT      NOT NULL
                     CONSTRAINT ck_imports_status CHECK (status IN ('previewed', 'imported', 'cancelled')),
    study_id         BIGINT             REFERENCES studies (id) ON DELETE SET NULL,
    invite           BOOLEAN   NOT NULL DEFAULT FALSE,
    result           TEXT,
    outcome          TEXT,
    created_at       TIMESTAMP NOT NULL DEFAULT (CURRENT_TIMESTAMP AT TIME ZONE 'UTC'),
    finished_at      TIMESTAMP
);
CREATE INDEX idx_imports_organization_id_created_at ON imports (organization_id, created_at);
