DROP INDEX IF EXISTS idx_patient_organizations_org_created;
DROP TABLE IF EXISTS patient_search_terms;
