-- Consent review totals, kept exact by triggers on every enrolment and consent change, so a
-- study of a hundred thousand patients shows its totals without counting them.
-- `responded`: enrolled patients with at least one consent decision in the study.
CREATE TABLE study_counts (
    study_id  BIGINT PRIMARY KEY NOT NULL REFERENCES studies (id) ON DELETE CASCADE,
    enrolled  BIGINT NOT NULL DEFAULT 0,
    responded BIGINT NOT NULL DEFAULT 0
);
-- Decisions per (study, scope); pending is enrolled minus both.
CREATE TABLE study_scope_counts (
    study_id            BIGINT NOT NULL REFERENCES studies (id) ON DELETE CASCADE,
    codeable_concept_id BIGINT NOT NULL REFERENCES codeable_concepts (id) ON DELETE CASCADE,
    consented           BIGINT NOT NULL DEFAULT 0,
    declined            BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (study_id, codeable_concept_id)
);

INSERT INTO study_counts (study_id, enrolled, responded)
SELECT s.id,
       (SELECT COUNT(*) FROM study_patients sp WHERE sp.study_id = s.id),
       (SELECT COUNT(DISTINCT c.patient_id) FROM consents c WHERE c.study_id = s.id)
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
    UPDATE study_counts SET enrolled = enrolled + 1 WHERE study_id = NEW.study_id;
END;
-- An enrolment that goes before its decisions (a patient deleted) takes its "responded" along.
CREATE TRIGGER trg_study_patients_counts_delete AFTER DELETE ON study_patients
BEGIN
    UPDATE study_counts
       SET enrolled = enrolled - 1,
           responded = responded - (CASE WHEN OLD.decisions > 0 THEN 1 ELSE 0 END)
     WHERE study_id = OLD.study_id;
END;

-- Each enrolment carries how many decisions the patient made in the study; the consent
-- triggers keep it, and the review totals read "responded" off it.
ALTER TABLE study_patients ADD COLUMN decisions BIGINT NOT NULL DEFAULT 0;
UPDATE study_patients SET decisions = (SELECT COUNT(*) FROM consents c
    WHERE c.study_id = study_patients.study_id AND c.patient_id = study_patients.patient_id);
CREATE INDEX idx_study_patients_study_id_patient_id_decisions
    ON study_patients (study_id, patient_id, decisions);
UPDATE study_counts SET responded = (SELECT COUNT(*) FROM study_patients sp
    WHERE sp.study_id = study_counts.study_id AND sp.decisions > 0);

CREATE TRIGGER trg_consents_counts_insert AFTER INSERT ON consents
BEGIN
    INSERT OR IGNORE INTO study_scope_counts (study_id, codeable_concept_id)
        VALUES (NEW.study_id, NEW.codeable_concept_id);
    UPDATE study_scope_counts
       SET consented = consented + (CASE WHEN NEW.consented THEN 1 ELSE 0 END),
           declined = declined + (CASE WHEN NEW.consented THEN 0 ELSE 1 END)
     WHERE study_id = NEW.study_id AND codeable_concept_id = NEW.codeable_concept_id;
    UPDATE study_patients SET decisions = decisions + 1
     WHERE study_id = NEW.study_id AND patient_id = NEW.patient_id;
    UPDATE study_counts SET responded = responded + 1
     WHERE study_id = NEW.study_id
       AND (SELECT decisions FROM study_patients
             WHERE study_id = NEW.study_id AND patient_id = NEW.patient_id) = 1;
END;
CREATE TRIGGER trg_consents_counts_update AFTER UPDATE OF consented ON consents
WHEN OLD.consented <> NEW.consented
BEGIN
    UPDATE study_scope_counts
       SET consented = consented + (CASE WHEN NEW.consented THEN 1 ELSE -1 END),
           declined = declined + (CASE WHEN NEW.consented THEN -1 ELSE 1 END)
     WHERE study_id = NEW.study_id AND codeable_concept_id = NEW.codeable_concept_id;
END;
CREATE TRIGGER trg_consents_counts_delete AFTER DELETE ON consents
BEGIN
    UPDATE study_scope_counts
       SET consented = consented - (CASE WHEN OLD.consented THEN 1 ELSE 0 END),
           declined = declined - (CASE WHEN OLD.consented THEN 0 ELSE 1 END)
     WHERE study_id = OLD.study_id AND codeable_concept_id = OLD.codeable_concept_id;
    UPDATE study_patients SET decisions = decisions - 1
     WHERE study_id = OLD.study_id AND patient_id = OLD.patient_id;
    UPDATE study_counts SET responded = responded - 1
     WHERE study_id = OLD.study_id
       AND (SELECT decisions FROM study_patients
             WHERE study_id = OLD.study_id AND patient_id = OLD.patient_id) = 0;
END;

-- The Studies list searches names and filters by status inside one organization.
CREATE INDEX idx_studies_organization_id_status ON studies (organization_id, status);
-- Invitation totals of a study walk its organization's invitations by patient.
CREATE INDEX idx_invitations_organization_id_patient_id
    ON invitations (organization_id, patient_id, status, expires_at);
-- The matrix and its export read decisions by enrolment without visiting the table.
CREATE INDEX idx_consents_study_id_patient_id_cover
    ON consents (study_id, patient_id, codeable_concept_id, consented, consented_at);
