CREATE INDEX idx_patients_created_at ON patients (created_at);
