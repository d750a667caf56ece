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
-- removes its decisions.) The consent triggers update this row, which also locks it, so
-- concurrent decisions for one patient count in turn.
ALTER TABLE study_patients ADD COLUMN decisions BIGINT NOT NULL DEFAULT 0;
ALTER TABLE study_patients ADD COLUMN declines BIGINT NOT NULL DEFAULT 0;
UPDATE study_patients sp SET
    decisions = (SELECT COUNT(*) FROM consents c
                  WHERE c.study_id = sp.study_id AND c.patient_id = sp.patient_id),
    declines = (SELECT COUNT(*) FROM consents c
                 WHERE c.study_id = sp.study_id AND c.patient_id = sp.patient_id AND NOT c.consented);
CREATE INDEX idx_study_patients_study_id_patient_id_decisions
    ON study_patients (study_id, patient_id, decisions, declines);

INSERT INTO study_counts (study_id, enrolled, responded)
SELECT s.id,
       (SELECT COUNT(*) FROM study_patients sp WHERE sp.study_id = s.id),
       (SELECT COUNT(*) FROM study_patients sp WHERE sp.study_id = s.id AND sp.decisions > 0)
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

-- Statement-level with transition tables: a bulk change touches each counter row once.
CREATE FUNCTION cohort_sp_counts_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE study_counts c SET enrolled = c.enrolled + n.k, changes = c.changes + 1
      FROM (SELECT study_id, COUNT(*) AS k FROM new_rows GROUP BY study_id) n
     WHERE c.study_id = n.study_id;
    RETURN NULL;
END $$;
-- An enrolment that goes before its decisions (a patient deleted) takes its "responded" along.
CREATE FUNCTION cohort_sp_counts_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE study_counts c
       SET enrolled = c.enrolled - o.k, responded = c.responded - o.r, changes = c.changes + 1
      FROM (SELECT study_id, COUNT(*) AS k, COUNT(*) FILTER (WHERE decisions > 0) AS r
              FROM old_rows GROUP BY study_id) o
     WHERE c.study_id = o.study_id;
    RETURN NULL;
END $$;
CREATE TRIGGER trg_study_patients_counts_insert AFTER INSERT ON study_patients
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION cohort_sp_counts_insert();
CREATE TRIGGER trg_study_patients_counts_delete AFTER DELETE ON study_patients
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION cohort_sp_counts_delete();

CREATE FUNCTION cohort_consents_counts_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO study_scope_counts AS s (study_id, codeable_concept_id, consented, declined)
    SELECT study_id, codeable_concept_id,
           COUNT(*) FILTER (WHERE consented), COUNT(*) FILTER (WHERE NOT consented)
      FROM new_rows GROUP BY study_id, codeable_concept_id
    ON CONFLICT (study_id, codeable_concept_id) DO UPDATE
       SET consented = s.consented + EXCLUDED.consented, declined = s.declined + EXCLUDED.declined;
    WITH n AS (SELECT study_id, patient_id, COUNT(*) AS k, COUNT(*) FILTER (WHERE NOT consented) AS d
                 FROM new_rows GROUP BY study_id, patient_id),
         u AS (UPDATE study_patients sp
                  SET decisions = sp.decisions + n.k, declines = sp.declines + n.d
                 FROM n WHERE sp.study_id = n.study_id AND sp.patient_id = n.patient_id
               RETURNING sp.study_id, sp.decisions = n.k AS first)
    UPDATE study_counts c SET responded = c.responded + f.k, changes = c.changes + 1
      FROM (SELECT s.study_id, COUNT(u.study_id) FILTER (WHERE u.first) AS k
              FROM (SELECT DISTINCT study_id FROM new_rows) s
              LEFT JOIN u ON u.study_id = s.study_id GROUP BY s.study_id) f
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
    UPDATE study_patients sp SET declines = sp.declines + d.delta
      FROM (SELECT study_id, patient_id, SUM(delta) AS delta
              FROM (SELECT study_id, patient_id, (NOT consented)::int AS delta FROM new_rows
                    UNION ALL
                    SELECT study_id, patient_id, -((NOT consented)::int) FROM old_rows) x
             GROUP BY study_id, patient_id) d
     WHERE sp.study_id = d.study_id AND sp.patient_id = d.patient_id AND d.delta <> 0;
    UPDATE study_counts c SET changes = c.changes + 1
     WHERE c.study_id IN (SELECT study_id FROM new_rows);
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
    WITH n AS (SELECT study_id, patient_id, COUNT(*) AS k, COUNT(*) FILTER (WHERE NOT consented) AS d
                 FROM old_rows GROUP BY study_id, patient_id),
         u AS (UPDATE study_patients sp
                  SET decisions = sp.decisions - n.k, declines = sp.declines - n.d
                 FROM n WHERE sp.study_id = n.study_id AND sp.patient_id = n.patient_id
               RETURNING sp.study_id, sp.decisions = 0 AS last)
    UPDATE study_counts c SET responded = c.responded - f.k, changes = c.changes + 1
      FROM (SELECT s.study_id, COUNT(u.study_id) FILTER (WHERE u.last) AS k
              FROM (SELECT DISTINCT study_id FROM old_rows) s
              LEFT JOIN u ON u.study_id = s.study_id GROUP BY s.study_id) f
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
UPDATE study_patients sp SET
    invitations = (SELECT COUNT(*) FROM invitations i JOIN studies s ON s.id = sp.study_id
        WHERE i.patient_id = sp.patient_id AND i.organization_id = s.organization_id),
    invitation_status = (SELECT i.status FROM invitations i JOIN studies s ON s.id = sp.study_id
        WHERE i.patient_id = sp.patient_id AND i.organization_id = s.organization_id
        ORDER BY i.id DESC LIMIT 1),
    invitation_expires_at = (SELECT i.expires_at FROM invitations i JOIN studies s ON s.id = sp.study_id
        WHERE i.patient_id = sp.patient_id AND i.organization_id = s.organization_id
        ORDER BY i.id DESC LIMIT 1);
CREATE INDEX idx_study_patients_study_id_invitation
    ON study_patients (study_id, invitation_status, invitation_expires_at, decisions, invitations);

CREATE FUNCTION cohort_sp_invitation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE study_patients sp
       SET invitation_status = l.status, invitation_expires_at = l.expires_at, invitations = c.n
      FROM new_rows n
      JOIN studies s ON s.id = n.study_id
      CROSS JOIN LATERAL (SELECT i.status, i.expires_at FROM invitations i
                           WHERE i.organization_id = s.organization_id AND i.patient_id = n.patient_id
                           ORDER BY i.id DESC LIMIT 1) l
      CROSS JOIN LATERAL (SELECT COUNT(*) AS n FROM invitations i
                           WHERE i.organization_id = s.organization_id AND i.patient_id = n.patient_id) c
     WHERE sp.id = n.id;
    RETURN NULL;
END $$;
CREATE TRIGGER trg_study_patients_invitation AFTER INSERT ON study_patients
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION cohort_sp_invitation();

-- One function for insert, update and delete: each trigger names its rows `changed_rows`,
-- and the latest invitation of every (patient, organization) they touch is read again.
CREATE FUNCTION cohort_invitations_latest() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH pairs AS (SELECT DISTINCT patient_id, organization_id FROM changed_rows),
         touched AS (
            UPDATE study_patients sp
               SET invitation_status = l.status, invitation_expires_at = l.expires_at,
                   invitations = c.n
              FROM pairs p
              JOIN studies s ON s.organization_id = p.organization_id
              LEFT JOIN LATERAL (SELECT i.status, i.expires_at FROM invitations i
                                  WHERE i.patient_id = p.patient_id AND i.organization_id = p.organization_id
                                  ORDER BY i.id DESC LIMIT 1) l ON TRUE
              CROSS JOIN LATERAL (SELECT COUNT(*) AS n FROM invitations i
                                   WHERE i.patient_id = p.patient_id AND i.organization_id = p.organization_id) c
             WHERE sp.study_id = s.id AND sp.patient_id = p.patient_id
            RETURNING sp.study_id)
    UPDATE study_counts c SET changes = c.changes + 1
     WHERE c.study_id IN (SELECT study_id FROM touched);
    RETURN NULL;
END $$;
CREATE TRIGGER trg_invitations_latest_insert AFTER INSERT ON invitations
    REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION cohort_invitations_latest();
CREATE TRIGGER trg_invitations_latest_update AFTER UPDATE ON invitations
    REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION cohort_invitations_latest();
CREATE TRIGGER trg_invitations_latest_delete AFTER DELETE ON invitations
    REFERENCING OLD TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION cohort_invitations_latest();
