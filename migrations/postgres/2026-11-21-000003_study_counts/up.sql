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
       COUNT(*) FILTER (WHERE consented), COUNT(*) FILTER (WHERE NOT consented)
FROM consents GROUP BY study_id, codeable_concept_id;

CREATE FUNCTION cohort_study_counts_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO study_counts (study_id) VALUES (NEW.id);
    RETURN NEW;
END $$;
CREATE TRIGGER trg_studies_counts AFTER INSERT ON studies
    FOR EACH ROW EXECUTE FUNCTION cohort_study_counts_row();

-- Statement-level with transition tables: a bulk enrolment touches each counter row once.
CREATE FUNCTION cohort_sp_counts_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE study_counts c SET enrolled = c.enrolled + n.k
      FROM (SELECT study_id, COUNT(*) AS k FROM new_rows GROUP BY study_id) n
     WHERE c.study_id = n.study_id;
    RETURN NULL;
END $$;
-- An enrolment that goes before its decisions (a patient deleted) takes its "responded" along.
CREATE FUNCTION cohort_sp_counts_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE study_counts c SET enrolled = c.enrolled - o.k, responded = c.responded - o.r
      FROM (SELECT study_id, COUNT(*) AS k, COUNT(*) FILTER (WHERE decisions > 0) AS r
              FROM old_rows GROUP BY study_id) o
     WHERE c.study_id = o.study_id;
    RETURN NULL;
END $$;
CREATE TRIGGER trg_study_patients_counts_insert AFTER INSERT ON study_patients
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION cohort_sp_counts_insert();
CREATE TRIGGER trg_study_patients_counts_delete AFTER DELETE ON study_patients
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION cohort_sp_counts_delete();

-- Each enrolment carries how many decisions the patient made in the study; the consent
-- triggers keep it, and the review totals read "responded" off it. Updating the enrolment
-- row also locks it, so concurrent decisions for one patient count in turn.
ALTER TABLE study_patients ADD COLUMN decisions BIGINT NOT NULL DEFAULT 0;
UPDATE study_patients sp SET decisions = (SELECT COUNT(*) FROM consents c
    WHERE c.study_id = sp.study_id AND c.patient_id = sp.patient_id);
CREATE INDEX idx_study_patients_study_id_patient_id_decisions
    ON study_patients (study_id, patient_id, decisions);
UPDATE study_counts c SET responded = (SELECT COUNT(*) FROM study_patients sp
    WHERE sp.study_id = c.study_id AND sp.decisions > 0);

CREATE FUNCTION cohort_consents_counts_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO study_scope_counts AS s (study_id, codeable_concept_id, consented, declined)
    SELECT study_id, codeable_concept_id,
           COUNT(*) FILTER (WHERE consented), COUNT(*) FILTER (WHERE NOT consented)
      FROM new_rows GROUP BY study_id, codeable_concept_id
    ON CONFLICT (study_id, codeable_concept_id) DO UPDATE
       SET consented = s.consented + EXCLUDED.consented, declined = s.declined + EXCLUDED.declined;
    WITH n AS (SELECT study_id, patient_id, COUNT(*) AS k FROM new_rows GROUP BY study_id, patient_id),
         u AS (UPDATE study_patients sp SET decisions = sp.decisions + n.k
                 FROM n WHERE sp.study_id = n.study_id AND sp.patient_id = n.patient_id
               RETURNING sp.study_id, sp.decisions = n.k AS first)
    UPDATE study_counts c SET responded = c.responded + f.k
      FROM (SELECT study_id, COUNT(*) AS k FROM u WHERE first GROUP BY study_id) f
     WHERE c.study_id = f.study_id;
    RETURN NULL;
END $$;
CREATE FUNCTION cohort_consents_counts_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE study_scope_counts s
       SET consented = s.consented + d.consented, declined = s.declined + d.declined
      FROM (SELECT study_id, codeable_concept_id, SUM(consented) AS consented, SUM(declined) AS declined
              FROM (SELECT study_id, codeable_concept_id, consented::int AS consented, (NOT consented)::int AS declined FROM new_rows
                    UNION ALL
                    SELECT study_id, codeable_concept_id, -(consented::int), -((NOT consented)::int) FROM old_rows) x
             GROUP BY study_id, codeable_concept_id) d
     WHERE s.study_id = d.study_id AND s.codeable_concept_id = d.codeable_concept_id;
    RETURN NULL;
END $$;
CREATE FUNCTION cohort_consents_counts_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE study_scope_counts s
       SET consented = s.consented - o.consented, declined = s.declined - o.declined
      FROM (SELECT study_id, codeable_concept_id,
                   COUNT(*) FILTER (WHERE consented) AS consented,
                   COUNT(*) FILTER (WHERE NOT consented) AS declined
              FROM old_rows GROUP BY study_id, codeable_concept_id) o
     WHERE s.study_id = o.study_id AND s.codeable_concept_id = o.codeable_concept_id;
    WITH n AS (SELECT study_id, patient_id, COUNT(*) AS k FROM old_rows GROUP BY study_id, patient_id),
         u AS (UPDATE study_patients sp SET decisions = sp.decisions - n.k
                 FROM n WHERE sp.study_id = n.study_id AND sp.patient_id = n.patient_id
               RETURNING sp.study_id, sp.decisions = 0 AS last)
    UPDATE study_counts c SET responded = c.responded - f.k
      FROM (SELECT study_id, COUNT(*) AS k FROM u WHERE last GROUP BY study_id) f
     WHERE c.study_id = f.study_id;
    RETURN NULL;
END $$;
CREATE TRIGGER trg_consents_counts_insert AFTER INSERT ON consents
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION cohort_consents_counts_insert();
CREATE TRIGGER trg_consents_counts_update AFTER UPDATE ON consents
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION cohort_consents_counts_update();
CREATE TRIGGER trg_consents_counts_delete AFTER DELETE ON consents
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION cohort_consents_counts_delete();

-- The Studies list searches names and filters by status inside one organization.
CREATE INDEX idx_studies_organization_id_status ON studies (organization_id, status);
-- Invitation totals of a study walk its organization's invitations by patient.
CREATE INDEX idx_invitations_organization_id_patient_id
    ON invitations (organization_id, patient_id, status, expires_at);
-- The matrix and its export read decisions by enrolment without visiting the table.
CREATE INDEX idx_consents_study_id_patient_id_cover
    ON consents (study_id, patient_id, codeable_concept_id, consented, consented_at);
