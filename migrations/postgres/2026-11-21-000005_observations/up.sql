-- Observations are listed newest first (by effective time) under filters that the indexes
-- below serve without sorting: everything, one patient, one data type, one patient's type.
-- Lists page by key (effective_start, id), so every observation needs an effective time.
UPDATE observations SET effective_start = created_at WHERE effective_start IS NULL;
CREATE INDEX idx_observations_effective_start_id ON observations (effective_start, id);
CREATE INDEX idx_observations_patient_concept_effective
    ON observations (patient_id, codeable_concept_id, effective_start, id);
-- An upload checks that the patient consented to the data type in some active study.
CREATE INDEX idx_consents_patient_id_concept ON consents (patient_id, codeable_concept_id, consented);
