//! Keyword search rules: how a patient's words are stored and how a query is read. Every
//! query term must match the start of one of the patient's words, ignoring case and accents.

use std::collections::BTreeSet;

/// Lower case with Latin accents folded away: "Ünal Çelik" -> "unal celik".
pub fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().flat_map(char::to_lowercase) {
        match c {
            // Combining marks: a decomposed "é" (e + U+0301) folds like the composed one.
            '\u{300}'..='\u{36f}' => {}
            'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => out.push('a'),
            'ç' | 'ć' | 'ĉ' | 'ċ' | 'č' => out.push('c'),
            'ď' | 'đ' => out.push('d'),
            'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ĕ' | 'ė' | 'ę' | 'ě' => out.push('e'),
            'ĝ' | 'ğ' | 'ġ' | 'ģ' => out.push('g'),
            'ĥ' | 'ħ' => out.push('h'),
            'ì' | 'í' | 'î' | 'ï' | 'ĩ' | 'ī' | 'ĭ' | 'į' | 'ı' => out.push('i'),
            'ĵ' => out.push('j'),
            'ķ' => out.push('k'),
            'ĺ' | 'ļ' | 'ľ' | 'ŀ' | 'ł' => out.push('l'),
            'ñ' | 'ń' | 'ņ' | 'ň' => out.push('n'),
            'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ŏ' | 'ő' => out.push('o'),
            'ŕ' | 'ŗ' | 'ř' => out.push('r'),
            'ś' | 'ŝ' | 'ş' | 'š' | 'ș' => out.push('s'),
            'ţ' | 'ť' | 'ŧ' | 'ț' => out.push('t'),
            'ù' | 'ú' | 'û' | 'ü' | 'ũ' | 'ū' | 'ŭ' | 'ů' | 'ű' | 'ų' => out.push('u'),
            'ŵ' => out.push('w'),
            'ý' | 'ÿ' | 'ŷ' => out.push('y'),
            'ź' | 'ż' | 'ž' => out.push('z'),
            'ß' => out.push_str("ss"),
            'æ' => out.push_str("ae"),
            'œ' => out.push_str("oe"),
            'þ' => out.push_str("th"),
            'ð' => out.push('d'),
            other => out.push(other),
        }
    }
    out
}

/// The words stored for a patient: each whitespace-separated token whole, and its pieces
/// between punctuation after the first ("smith-jones" gives that and "jones"; an e-mail
/// gives its domain's pieces too). The first piece is the token's own start, which the
/// prefix match on the whole token already finds, so it is not stored twice. A date gives
/// only itself: its prefix already finds "1980" or "1980-05", and pieces such as "05"
/// would only make searches wade through everyone.
pub fn terms<'a>(fields: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let add_with_pieces = |token: &str, out: &mut BTreeSet<String>| {
        out.insert(truncate(token));
        // Tokens are trimmed to start with a letter or digit: the first piece is a prefix.
        for part in token.split(|c: char| !c.is_alphanumeric()).skip(1) {
            if !part.is_empty() {
                out.insert(truncate(part));
            }
        }
    };
    for field in fields {
        for token in fold(field).split(|c: char| c.is_whitespace() || c == ',' || c == ';') {
            let token = token.trim_matches(|c: char| !c.is_alphanumeric());
            if token.is_empty() {
                continue;
            }
            if is_date(token) {
                out.insert(truncate(token));
            } else {
                add_with_pieces(token, &mut out);
            }
        }
    }
    out
}

/// YYYY-MM-DD.
fn is_date(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

/// Terms are capped so one long value cannot bloat the index.
fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

/// The terms of a query, most selective first (longest), at most eight.
pub fn query_terms(q: &str) -> Vec<String> {
    let mut t: Vec<String> = fold(q)
        .split_whitespace()
        .map(|w| truncate(w.trim_matches(|c: char| !c.is_alphanumeric())))
        .filter(|w| !w.is_empty())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    t.sort_by_key(|w| std::cmp::Reverse(w.chars().count()));
    t.truncate(8);
    t
}

/// A patient's words as kept on the patient's own row (`patients.search_text`): a JSON
/// array. SQL reads it back to remove exactly these words from the word index, and
/// `word_start_pattern` checks one patient's words without the index.
pub fn words_json(words: &BTreeSet<String>) -> String {
    serde_json::to_string(words).unwrap_or_else(|_| "[]".to_string())
}

/// A LIKE pattern (escape character `\`) that matches a `words_json` array holding a word
/// that starts with `term`: the term as JSON writes it, opening quote included and closing
/// quote left off. JSON escapes character by character, so the escaped start of a word is
/// the start of the escaped word.
pub fn word_start_pattern(term: &str) -> String {
    let quoted = serde_json::to_string(term).unwrap_or_default();
    let open = quoted.strip_suffix('"').unwrap_or(&quoted);
    let mut out = String::with_capacity(open.len() + 4);
    out.push('%');
    for c in open.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// The exclusive upper bound of the range of words starting with `prefix`.
pub fn prefix_end(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_patterns_quote_the_term_as_the_stored_words_do() {
        let words: BTreeSet<String> = ["o'brien", "a\"b", "50%_off"]
            .iter()
            .map(|w| w.to_string())
            .collect();
        assert_eq!(words_json(&words), r#"["50%_off","a\"b","o'brien"]"#);
        assert_eq!(word_start_pattern("smith"), r#"%"smith%"#);
        assert_eq!(word_start_pattern("a\"b"), r#"%"a\\"b%"#);
        assert_eq!(word_start_pattern("50%_"), r#"%"50\%\_%"#);
        assert_eq!(words_json(&BTreeSet::new()), "[]");
    }

    #[test]
    fn case_and_accents_fold_away() {
        assert_eq!(fold("Ünal Çelik Søren"), "unal celik soren");
        assert_eq!(fold("José Müller-Lüdenscheidt"), "jose muller-ludenscheidt");
        assert_eq!(fold("Zoe\u{301} Ine\u{301}s"), "zoe ines");
    }

    #[test]
    fn a_patient_is_found_by_the_start_of_any_word() {
        let t = terms([
            "John",
            "Smith-Jones",
            "john.smith@example.org",
            "MRN-00123",
            "1980-01-01",
        ]);
        for w in [
            "john",
            "smith-jones",
            "jones",
            "john.smith@example.org",
            "example",
            "org",
            "mrn-00123",
            "00123",
            "1980-01-01",
        ] {
            assert!(t.contains(w), "{w} in {t:?}");
        }
        // A token's first piece is found by the prefix of the whole token, not stored again.
        for w in ["smith", "mrn", "john.smith"] {
            assert!(
                t.iter().any(|x| x.starts_with(w)),
                "{w} starts one of {t:?}"
            );
        }
        assert!(!t.contains("mrn"), "{t:?}");
        // Noise that would match everyone is not stored; prefixes of the whole still match.
        for w in ["01", "1980"] {
            assert!(!t.contains(w), "{w} not in {t:?}");
        }
        assert!(t.iter().any(|x| x.starts_with("1980")));
    }

    #[test]
    fn query_terms_are_folded_deduplicated_and_longest_first() {
        assert_eq!(
            query_terms("  smith 1980-01-01 SMITH "),
            vec!["1980-01-01", "smith"]
        );
        assert_eq!(query_terms("Müller"), vec!["muller"]);
        assert!(query_terms("  ").is_empty());
        assert!("smithson" < prefix_end("smith").as_str() && "smith" <= "smithson");
    }
}
