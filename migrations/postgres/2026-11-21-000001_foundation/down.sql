-- Drops everything up.sql created, children before parents.
DROP TABLE server_settings;
DROP TABLE audit_events;
DROP TABLE sign_in_tokens;
DROP TABLE api_tokens;
DROP TABLE invitations;
DROP TABLE clients;
DROP TABLE observations;
DROP TABLE consents;
DROP TABLE study_patients;
DROP TABLE study_data_sources;
DROP TABLE data_source_scopes;
DROP TABLE data_sources;
DROP TABLE study_scope_requests;
DROP TABLE codeable_concepts;
DROP TABLE patient_tags;
DROP TABLE tags;
DROP TABLE patient_organizations;
DROP TABLE patient_identifiers;
DROP TABLE patients;
DROP TABLE practitioner_organizations;
DROP TABLE practitioners;
DROP TABLE users;
DROP TABLE studies;
-- SQLite's DROP TABLE first deletes every row, and the RESTRICT on part_of would refuse to delete
-- a parent before its children; detach the tree first (harmless on PostgreSQL).
UPDATE organizations SET part_of = NULL;
DROP TABLE organizations;
