-- Patients were indexed by creation time, and nothing reads them in that order: lists sort by
-- the link row's own time (idx_patient_organizations_org_created). The index only cost every
-- create and every imported row one more B-tree insert.
DROP INDEX IF EXISTS idx_patients_created_at;
