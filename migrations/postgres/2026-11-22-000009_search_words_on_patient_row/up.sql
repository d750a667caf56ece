-- The patient's row keeps its own search words as a JSON array (patients.search_text, until
-- now always empty), as on SQLite: a broad search checks a patient's words on the row it
-- reads anyway. PostgreSQL keeps its word table keyed by patient as well.
UPDATE patients p SET search_text = COALESCE(
    (SELECT json_agg(t.term ORDER BY t.term)::text FROM patient_search_terms t WHERE t.patient_id = p.id),
    '[]');
