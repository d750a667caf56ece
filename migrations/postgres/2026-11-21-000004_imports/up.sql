-- Uploaded patient lists, kept from preview to commit so any instance can finish the job;
-- after the commit they hold the summary and the per-row outcome report. A large file is
-- imported in the background ('running', with its start time, so a run cut short by a
-- restart shows as stopped and can be started again).
CREATE TABLE imports (
    id               BIGSERIAL PRIMARY KEY,
    organization_id  BIGINT    NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id          BIGINT             REFERENCES users (id) ON DELETE SET NULL,
    filename         TEXT      NOT NULL,
    content          TEXT      NOT NULL,
    status           TEXT      NOT NULL
                     CONSTRAINT ck_imports_status CHECK (status IN ('previewed', 'running', 'imported', 'cancelled', 'failed')),
    study_id         BIGINT             REFERENCES studies (id) ON DELETE SET NULL,
    invite           BOOLEAN   NOT NULL DEFAULT FALSE,
    result           TEXT,
    outcome          TEXT,
    created_at       TIMESTAMP NOT NULL DEFAULT (CURRENT_TIMESTAMP AT TIME ZONE 'UTC'),
    started_at       TIMESTAMP,
    finished_at      TIMESTAMP
);
CREATE INDEX idx_imports_organization_id_created_at ON imports (organization_id, created_at);
