UPDATE patients SET search_text = '';
