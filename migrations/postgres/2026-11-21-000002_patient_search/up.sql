-- Keyword search over patients: one row per normalized word (lower case, accents folded) of a
-- patient's names, e-mail, identifiers and birth date. A query term matches the start of a
-- word through a range scan on (term, patient_id); COLLATE "C" makes that range byte-ordered,
-- as it is in SQLite.
CREATE TABLE patient_search_terms (
    patient_id BIGINT NOT NULL REFERENCES patients(id) ON DELETE CASCADE,
    term TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (patient_id, term)
);
CREATE INDEX idx_patient_search_terms_term ON patient_search_terms(term, patient_id);

-- Lists page an organization's patients by when they were added, and filter on archiving.
CREATE INDEX idx_patient_organizations_org_created ON patient_organizations(organization_id, created_at, patient_id);
