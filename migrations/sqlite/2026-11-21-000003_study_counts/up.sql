-- Consent review totals, kept exact by triggers on every enrolment and consent change, so a
-- study of a hundred thousand patients shows its totals and filters without counting them.
-- `responded`: enrolled patients with at least one decision; `changes` moves on every change,
-- so a cached figure knows when it is stale.
CREATE TABLE study_counts (
    study_id  BIGINT PRIMARY KEY NOT NULL REFERENCES studies (id) ON DELETE CASCADE,
    enrolled  BIGINT NOT NULL DEFAULT 0,
    responded BIGINT NOT NULL DEFAULT 0,
    changes   BIGINT NOT NULL DEFAULT 0
);
-- Decisions per (study, scope); pending is enrolled minus both.
CREATE TABLE study_scope_counts (
    study_id            BIGINT NOT NULL REFERENCES studies (id) ON DELETE CASCADE,
    codeable_concept_id BIGINT NOT NULL REFERENCES codeable_concepts (id) ON DELETE CASCADE,
    consented           BIGINT NOT NULL DEFAULT 0,
    declined            BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (study_id, codeable_concept_id)
);

-- Each enrolment carries how many decisions the patient made in the study and how many of
-- them are declines: "pending" and "declined" filters read them off one covering index.
-- (A study's decisions are only ever about scopes it requests: removing a scope request
-- removes its decisions.)
ALTER TABLE study_patients ADD COLUMN decisions BIGINT NOT NULL DEFAULT 0;
ALTER TABLE study_patients ADD COLUMN declines BIGINT NOT NULL DEFAULT 0;
UPDATE study_patients SET
    decisions = (SELECT COUNT(*) FROM consents c
                  WHERE c.study_id = study_patients.study_id AND c.patient_id = study_patients.patient_id),
    declines = (SELECT COUNT(*) FROM consents c
                 WHERE c.study_id = study_patients.study_id AND c.patient_id = study_patients.patient_id
                   AND NOT c.consented);
CREATE INDEX idx_study_patients_study_id_patient_id_decisions
    ON study_patients (study_id, patient_id, decisions, declines);

INSERT INTO study_counts (study_id, enrolled, responded)
SELECT s.id,
       (SELECT COUNT(*) FROM study_patients sp WHERE sp.study_id = s.id),
       (SELECT COUNT(*) FROM study_patients sp WHERE sp.study_id = s.id AND sp.decisions > 0)
FROM studies s;
INSERT INTO study_scope_counts (study_id, codeable_concept_id, consented, declined)
SELECT study_id, codeable_concept_id,
       SUM(CASE WHEN consented THEN 1 ELSE 0 END), SUM(CASE WHEN consented THEN 0 ELSE 1 END)
FROM consents GROUP BY study_id, codeable_concept_id;

CREATE TRIGGER trg_studies_counts AFTER INSERT ON studies
BEGIN
    INSERT INTO study_counts (study_id) VALUES (NEW.id);
END;

CREATE TRIGGER trg_study_patients_counts_insert AFTER INSERT ON study_patients
BEGIN
    UPDATE study_counts SET enrolled = enrolled + 1, changes = changes + 1
     WHERE study_id = NEW.study_id;
END;
-- An enrolment that goes before its decisions (a patient deleted) takes its "responded" along.
CREATE TRIGGER trg_study_patients_counts_delete AFTER DELETE ON study_patients
BEGIN
    UPDATE study_counts
       SET enrolled = enrolled - 1,
           responded = responded - (CASE WHEN OLD.decisions > 0 THEN 1 ELSE 0 END),
           changes = changes + 1
     WHERE study_id = OLD.study_id;
END;

-- SQLite runs row triggers as each row changes, so the per-enrolment counts are exact here.
CREATE TRIGGER trg_consents_counts_insert AFTER INSERT ON consents
BEGIN
    INSERT OR IGNORE INTO study_scope_counts (study_id, codeable_concept_id)
        VALUES (NEW.study_id, NEW.codeable_concept_id);
    UPDATE study_scope_counts
       SET consented = consented + (CASE WHEN NEW.consented THEN 1 ELSE 0 END),
           declined = declined + (CASE WHEN NEW.consented THEN 0 ELSE 1 END)
     WHERE study_id = NEW.study_id AND codeable_concept_id = NEW.codeable_concept_id;
    UPDATE study_patients
       SET decisions = decisions + 1, declines = declines + (CASE WHEN NEW.consented THEN 0 ELSE 1 END)
     WHERE study_id = NEW.study_id AND patient_id = NEW.patient_id;
    UPDATE study_counts
       SET responded = responded + (CASE WHEN (SELECT decisions FROM study_patients
                WHERE study_id = NEW.study_id AND patient_id = NEW.patient_id) = 1 THEN 1 ELSE 0 END),
           changes = changes + 1
     WHERE study_id = NEW.study_id;
END;
CREATE TRIGGER trg_consents_counts_update AFTER UPDATE OF consented ON consents
WHEN OLD.consented <> NEW.consented
BEGIN
    UPDATE study_scope_counts
       SET consented = consented + (CASE WHEN NEW.consented THEN 1 ELSE -1 END),
           declined = declined + (CASE WHEN NEW.consented THEN -1 ELSE 1 END)
     WHERE study_id = NEW.study_id AND codeable_concept_id = NEW.codeable_concept_id;
    UPDATE study_patients SET declines = declines + (CASE WHEN NEW.consented THEN -1 ELSE 1 END)
     WHERE study_id = NEW.study_id AND patient_id = NEW.patient_id;
    UPDATE study_counts SET changes = changes + 1 WHERE study_id = NEW.study_id;
END;
CREATE TRIGGER trg_consents_counts_delete AFTER DELETE ON consents
BEGIN
    UPDATE study_scope_counts
       SET consented = consented - (CASE WHEN OLD.consented THEN 1 ELSE 0 END),
           declined = declined - (CASE WHEN OLD.consented THEN 0 ELSE 1 END)
     WHERE study_id = OLD.study_id AND codeable_concept_id = OLD.codeable_concept_id;
    UPDATE study_patients
       SET decisions = decisions - 1, declines = declines - (CASE WHEN OLD.consented THEN 0 ELSE 1 END)
     WHERE study_id = OLD.study_id AND patient_id = OLD.patient_id;
    UPDATE study_counts
       SET responded = responded - (CASE WHEN (SELECT decisions FROM study_patients
                WHERE study_id = OLD.study_id AND patient_id = OLD.patient_id) = 0 THEN 1 ELSE 0 END),
           changes = changes + 1
     WHERE study_id = OLD.study_id;
END;

-- The Studies list searches name and description folded for case and accents (the
-- application writes this column; SQLite's lower() knows only ASCII).
ALTER TABLE studies ADD COLUMN search_text TEXT NOT NULL DEFAULT '';
UPDATE studies SET search_text = lower(name || ' ' || description);
-- The Studies list filters by status inside one organization.
CREATE INDEX idx_studies_organization_id_status ON studies (organization_id, status);
-- The matrix and its export read decisions by enrolment without visiting the table; the
-- "declined this scope" filter walks only the declines.
CREATE INDEX idx_consents_study_id_patient_id_cover
    ON consents (study_id, patient_id, codeable_concept_id, consented, consented_at);
DROP INDEX idx_consents_study_id_codeable_concept_id;
CREATE INDEX idx_consents_study_id_codeable_concept_id_consented
    ON consents (study_id, codeable_concept_id, consented, patient_id);

-- Each enrolment also carries what became of the patient's latest invitation from the
-- study's organization, kept by triggers on invitations and on enrolment, so response-rate
-- figures are one walk over the study's enrolments instead of a join with the invitations.
ALTER TABLE study_patients ADD COLUMN invitation_status TEXT;
ALTER TABLE study_patients ADD COLUMN invitation_expires_at TIMESTAMP;
ALTER TABLE study_patients ADD COLUMN invitations BIGINT NOT NULL DEFAULT 0;
UPDATE study_patients SET
    invitations = (SELECT COUNT(*) FROM invitations i JOIN studies s ON s.id = study_patients.study_id
        WHERE i.patient_id = study_patients.patient_id AND i.organization_id = s.organization_id),
    invitation_status = (SELECT i.status FROM invitations i JOIN studies s ON s.id = study_patients.study_id
        WHERE i.patient_id = study_patients.patient_id AND i.organization_id = s.organization_id
        ORDER BY i.id DESC LIMIT 1),
    invitation_expires_at = (SELECT i.expires_at FROM invitations i JOIN studies s ON s.id = study_patients.study_id
        WHERE i.patient_id = study_patients.patient_id AND i.organization_id = s.organization_id
        ORDER BY i.id DESC LIMIT 1);
CREATE INDEX idx_study_patients_study_id_invitation
    ON study_patients (study_id, invitation_status, invitation_expires_at, decisions, invitations);

CREATE TRIGGER trg_study_patients_invitation AFTER INSERT ON study_patients
BEGIN
    UPDATE study_patients SET
        invitations = (SELECT COUNT(*) FROM invitations i
            WHERE i.patient_id = NEW.patient_id
              AND i.organization_id = (SELECT organization_id FROM studies WHERE id = NEW.study_id)),
        invitation_status = (SELECT i.status FROM invitations i
            WHERE i.patient_id = NEW.patient_id
              AND i.organization_id = (SELECT organization_id FROM studies WHERE id = NEW.study_id)
            ORDER BY i.id DESC LIMIT 1),
        invitation_expires_at = (SELECT i.expires_at FROM invitations i
            WHERE i.patient_id = NEW.patient_id
              AND i.organization_id = (SELECT organization_id FROM studies WHERE id = NEW.study_id)
            ORDER BY i.id DESC LIMIT 1)
     WHERE id = NEW.id;
END;
CREATE TRIGGER trg_invitations_latest_insert AFTER INSERT ON invitations
BEGIN
    UPDATE study_patients
       SET invitation_status = NEW.status, invitation_expires_at = NEW.expires_at,
           invitations = invitations + 1
     WHERE patient_id = NEW.patient_id
       AND study_id IN (SELECT id FROM studies WHERE organization_id = NEW.organization_id);
    UPDATE study_counts SET changes = changes + 1
     WHERE study_id IN (SELECT sp.study_id FROM study_patients sp JOIN studies s ON s.id = sp.study_id
                         WHERE sp.patient_id = NEW.patient_id AND s.organization_id = NEW.organization_id);
END;
CREATE TRIGGER trg_invitations_latest_update AFTER UPDATE OF status, expires_at ON invitations
WHEN NOT EXISTS (SELECT 1 FROM invitations j
                  WHERE j.patient_id = NEW.patient_id AND j.organization_id = NEW.organization_id
                    AND j.id > NEW.id)
BEGIN
    UPDATE study_patients SET invitation_status = NEW.status, invitation_expires_at = NEW.expires_at
     WHERE patient_id = NEW.patient_id
       AND study_id IN (SELECT id FROM studies WHERE organization_id = NEW.organization_id);
    UPDATE study_counts SET changes = changes + 1
     WHERE study_id IN (SELECT sp.study_id FROM study_patients sp JOIN studies s ON s.id = sp.study_id
                         WHERE sp.patient_id = NEW.patient_id AND s.organization_id = NEW.organization_id);
END;
CREATE TRIGGER trg_invitations_latest_delete AFTER DELETE ON invitations
BEGIN
    UPDATE study_patients SET
        invitations = invitations - 1,
        invitation_status = (SELECT j.status FROM invitations j
            WHERE j.patient_id = OLD.patient_id AND j.organization_id = OLD.organization_id
            ORDER BY j.id DESC LIMIT 1),
        invitation_expires_at = (SELECT j.expires_at FROM invitations j
            WHERE j.patient_id = OLD.patient_id AND j.organization_id = OLD.organization_id
            ORDER BY j.id DESC LIMIT 1)
     WHERE patient_id = OLD.patient_id
       AND study_id IN (SELECT id FROM studies WHERE organization_id = OLD.organization_id);
    UPDATE study_counts SET changes = changes + 1
     WHERE study_id IN (SELECT sp.study_id FROM study_patients sp JOIN studies s ON s.id = sp.study_id
                         WHERE sp.patient_id = OLD.patient_id AND s.organization_id = OLD.organization_id);
END;
