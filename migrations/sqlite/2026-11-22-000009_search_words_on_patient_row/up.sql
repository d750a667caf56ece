-- A patient's search words were kept twice: keyed by patient (the table) and by word (an
-- index), about 40% of a large database and two b-tree inserts a word. Now the word index is
-- the table itself, and the patient's row keeps its own words as a JSON array
-- (patients.search_text, until now always empty). Checking one patient's words reads that
-- row; removing them (on an update, or when the patient is deleted, by a trigger that also
-- runs on cascades) looks each word up in the index.
CREATE TABLE patient_search_terms_new (
    term       TEXT   NOT NULL,
    patient_id BIGINT NOT NULL,
    PRIMARY KEY (term, patient_id)
) WITHOUT ROWID;
INSERT INTO patient_search_terms_new (term, patient_id)
    SELECT term, patient_id FROM patient_search_terms ORDER BY term, patient_id;
UPDATE patients SET search_text = (
    SELECT json_group_array(term)
      FROM (SELECT term FROM patient_search_terms t WHERE t.patient_id = patients.id ORDER BY term));
DROP TABLE patient_search_terms;
ALTER TABLE patient_search_terms_new RENAME TO patient_search_terms;

CREATE TRIGGER trg_patients_search_terms_delete AFTER DELETE ON patients
BEGIN
    DELETE FROM patient_search_terms
     WHERE patient_id = OLD.id
       AND term IN (SELECT value FROM json_each(NULLIF(OLD.search_text, '')));
END;
