DELETE FROM clients WHERE client_id = 'cohort';
DROP INDEX idx_api_tokens_user_id_kind;
DROP TABLE update_requests;
DROP TABLE oauth_grants;
