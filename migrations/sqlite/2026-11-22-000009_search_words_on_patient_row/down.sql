DROP TRIGGER IF EXISTS trg_patients_search_terms_delete;
CREATE TABLE patient_search_terms_old (
    patient_id BIGINT NOT NULL REFERENCES patients(id) ON DELETE CASCADE,
    term TEXT NOT NULL,
    PRIMARY KEY (patient_id, term)
) WITHOUT ROWID;
INSERT INTO patient_search_terms_old (patient_id, term)
    SELECT patient_id, term FROM patient_search_terms ORDER BY patient_id, term;
DROP TABLE patient_search_terms;
ALTER TABLE patient_search_terms_old RENAME TO patient_search_terms;
CREATE INDEX idx_patient_search_terms_term ON patient_search_terms(term, patient_id);
UPDATE patients SET search_text = '';
