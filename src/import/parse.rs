//! Reading a patient list: bytes to a table of named columns. Checks the file is UTF-8 text
//! (saying which line is not), finds the delimiter, maps header names people use to the
//! fields Cohort knows, and keeps each row's line number for messages.

use std::collections::BTreeMap;

/// A column Cohort reads from a patient list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    Email,
    Family,
    Given,
    BirthDate,
    Phone,
    Identifier,
    IdentifierSystem,
}

impl Field {
    pub const ALL: [Field; 7] = [
        Field::Email,
        Field::Family,
        Field::Given,
        Field::BirthDate,
        Field::Phone,
        Field::Identifier,
        Field::IdentifierSystem,
    ];

    /// The header the template file uses.
    pub fn header(self) -> &'static str {
        match self {
            Field::Email => "email",
            Field::Family => "family_name",
            Field::Given => "given_name",
            Field::BirthDate => "birth_date",
            Field::Phone => "phone",
            Field::Identifier => "identifier",
            Field::IdentifierSystem => "identifier_system",
        }
    }

    /// Header names that mean this column, compared with case, spaces and punctuation
    /// removed: "Last Name", "last_name" and "lastName" all read as `lastname`.
    fn aliases(self) -> &'static [&'static str] {
        match self {
            Field::Email => &["email", "emailaddress", "mail", "telecomemail"],
            Field::Family => &["familyname", "lastname", "surname", "namefamily", "family"],
            Field::Given => &["givenname", "firstname", "namegiven", "given", "forename"],
            Field::BirthDate => &["birthdate", "dob", "dateofbirth", "birthday"],
            Field::Phone => &[
                "phone",
                "cell",
                "mobile",
                "cellphone",
                "mobilephone",
                "telecomphone",
                "phonenumber",
            ],
            Field::Identifier => &[
                "identifier",
                "mrn",
                "externalid",
                "externalidentifier",
                "identifiervalue",
            ],
            Field::IdentifierSystem => &["identifiersystem", "system", "idsystem", "mrnsystem"],
        }
    }

    fn from_header(h: &str) -> Option<Field> {
        let key: String = h
            .chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect();
        Field::ALL
            .into_iter()
            .find(|f| f.aliases().contains(&key.as_str()))
    }
}

/// The columns every file needs.
pub const REQUIRED: [Field; 3] = [Field::Email, Field::Family, Field::Given];

/// One data row: its line in the file (of its first physical line) and its values, one
/// per field in `Field::ALL` order (empty when the file has no such column). The values
/// share one allocation: a large file is held once, not once per cell.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub line: u64,
    text: Box<str>,
    /// Where each field's value ends in `text`; it starts where the one before ends.
    ends: [u32; Field::ALL.len()],
}

impl Row {
    /// `values`: one per field, in `Field::ALL` order.
    fn new<'a>(line: u64, values: impl Iterator<Item = &'a str>) -> Row {
        let mut text = String::new();
        let mut ends = [0u32; Field::ALL.len()];
        for (end, v) in ends.iter_mut().zip(values) {
            text.push_str(v);
            // A file is far smaller than 4 GiB (its size is limited before it is read).
            *end = text.len() as u32;
        }
        Row {
            line,
            text: text.into_boxed_str(),
            ends,
        }
    }

    pub fn get(&self, f: Field) -> &str {
        let i = f as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        self.text.get(start..self.ends[i] as usize).unwrap_or("")
    }
}

#[derive(Clone, Debug)]
pub struct Table {
    pub delimiter: u8,
    /// Each header as found, with the field it was read as (None: ignored).
    pub headers: Vec<(String, Option<Field>)>,
    pub rows: Vec<Row>,
}

/// Why a file cannot be read at all; each says what to do.
#[derive(Clone, Debug, PartialEq)]
pub enum FileError {
    Empty,
    NotText,
    NotUtf8 {
        line: usize,
    },
    MissingColumns {
        found: Vec<String>,
        missing: Vec<Field>,
    },
    DuplicateColumn {
        header: String,
        field: Field,
    },
    TooManyRows {
        limit: usize,
    },
    Malformed {
        line: u64,
        message: String,
    },
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileError::Empty => write!(f, "The file is empty. Put a header row first, then one patient per row."),
            FileError::NotText => write!(f, "This is not a text file. Export the list as CSV (comma, semicolon or tab separated) and upload that."),
            FileError::NotUtf8 { line } => write!(f, "Line {line} has bytes that are not UTF-8 text. Save the file as \"CSV UTF-8\" and upload it again."),
            FileError::MissingColumns { found, missing } => write!(
                f,
                "The header row has no {} column. Found: {}. Needed: email, family name and given name; birth date, phone and identifier are optional. Download the template to see the expected headers.",
                missing.iter().map(|m| m.header()).collect::<Vec<_>>().join(", "),
                if found.is_empty() { "nothing".to_string() } else { found.iter().map(|h| format!("\"{h}\"")).collect::<Vec<_>>().join(", ") }
            ),
            FileError::DuplicateColumn { header, field } => write!(f, "Two columns mean {}: keep one (the second is \"{header}\").", field.header()),
            FileError::TooManyRows { limit } => write!(f, "The file has more than {limit} rows. Split it into files of at most {limit} rows and import each."),
            FileError::Malformed { line, message } => write!(f, "Line {line} cannot be read as CSV ({message}). Check its quotes."),
        }
    }
}

/// Line breaks in some bytes: CRLF, LF, or a lone CR (old Mac files) each count once.
fn line_breaks(bytes: &[u8]) -> u64 {
    let mut n = 0;
    for (i, b) in bytes.iter().enumerate() {
        match b {
            b'\n' => n += 1,
            b'\r' if bytes.get(i + 1) != Some(&b'\n') => n += 1,
            _ => {}
        }
    }
    n
}

/// The delimiter of the header line: the most frequent of comma, semicolon and tab outside
/// quotes; comma when there is none.
fn delimiter(text: &str) -> u8 {
    let first = text
        .split(['\r', '\n'])
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let mut counts = [(b',', 0usize), (b';', 0), (b'\t', 0)];
    let mut quoted = false;
    for c in first.bytes() {
        if c == b'"' {
            quoted = !quoted;
        } else if !quoted {
            for (d, n) in counts.iter_mut() {
                if *d == c {
                    *n += 1;
                }
            }
        }
    }
    counts
        .iter()
        .max_by_key(|(d, n)| (*n, *d == b','))
        .filter(|(_, n)| *n > 0)
        .map(|(d, _)| *d)
        .unwrap_or(b',')
}

/// Reads a patient list. `max_rows` bounds the data rows.
pub fn read(bytes: &[u8], max_rows: usize) -> Result<Table, FileError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(FileError::Empty);
    }
    if bytes.contains(&0) {
        return Err(FileError::NotText);
    }
    let text = std::str::from_utf8(bytes).map_err(|e| FileError::NotUtf8 {
        line: line_breaks(&bytes[..e.valid_up_to()]) as usize + 1,
    })?;
    let delimiter = delimiter(text);
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .has_headers(true)
        .from_reader(text.as_bytes());
    let raw_headers = reader
        .headers()
        .map_err(|e| FileError::Malformed {
            line: 1,
            message: e.to_string(),
        })?
        .clone();
    let mut headers = Vec::new();
    let mut seen: BTreeMap<Field, usize> = BTreeMap::new();
    for (i, h) in raw_headers.iter().enumerate() {
        let field = Field::from_header(h);
        if let Some(f) = field {
            if seen.insert(f, i).is_some() {
                return Err(FileError::DuplicateColumn {
                    header: h.trim().to_string(),
                    field: f,
                });
            }
        }
        headers.push((h.trim().to_string(), field));
    }
    let missing: Vec<Field> = REQUIRED
        .into_iter()
        .filter(|f| !seen.contains_key(f))
        .collect();
    if !missing.is_empty() {
        return Err(FileError::MissingColumns {
            found: headers
                .iter()
                .map(|(h, _)| h.clone())
                .filter(|h| !h.is_empty())
                .collect(),
            missing,
        });
    }
    let mut rows = Vec::new();
    let mut record = csv::StringRecord::new();
    // Lines are counted from byte offsets: the reader's own count skips line breaks inside
    // quoted fields.
    let (mut counted_to, mut counted_lines) = (0usize, 1u64);
    let mut line_at = |byte: u64| {
        // A record's offset can point at the line break before it (and blank lines).
        let mut byte = (byte as usize).min(text.len());
        while matches!(text.as_bytes().get(byte), Some(b'\r' | b'\n')) {
            byte += 1;
        }
        if byte >= counted_to {
            counted_lines += line_breaks(&text.as_bytes()[counted_to..byte]);
            counted_to = byte;
        }
        counted_lines
    };
    loop {
        let line = line_at(reader.position().byte());
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                return Err(FileError::Malformed {
                    line: e.position().map(|p| line_at(p.byte())).unwrap_or(line),
                    message: match e.kind() {
                        csv::ErrorKind::UnequalLengths { .. } => "wrong number of fields".into(),
                        _ => e.to_string(),
                    },
                })
            }
        }
        if record.iter().all(|v| v.trim().is_empty()) {
            continue;
        }
        if rows.len() >= max_rows {
            return Err(FileError::TooManyRows { limit: max_rows });
        }
        let values = Field::ALL.iter().map(|f| match seen.get(f) {
            Some(i) => record.get(*i).unwrap_or("").trim(),
            None => "",
        });
        let line = record.position().map(|p| line_at(p.byte())).unwrap_or(line);
        rows.push(Row::new(line, values));
    }
    Ok(Table {
        delimiter,
        headers,
        rows,
    })
}

/// A CSV with the expected headers and one example row, to download.
pub fn template() -> String {
    let head: Vec<&str> = Field::ALL.iter().map(|f| f.header()).collect();
    format!(
        "{}\r\nana.silva@example.org,Silva,Ana,1980-04-23,+1 617 555 0100,MRN-0001,urn:mrn\r\n",
        head.join(",")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(t: &Table) -> Vec<(u64, String, String)> {
        t.rows
            .iter()
            .map(|r| {
                (
                    r.line,
                    r.get(Field::Email).to_string(),
                    r.get(Field::Family).to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn headers_people_use_map_to_fields_in_any_case_and_spelling() {
        for (h, f) in [
            ("Last Name", Field::Family),
            ("last_name", Field::Family),
            ("family_name", Field::Family),
            ("nameFamily", Field::Family),
            ("DOB", Field::BirthDate),
            ("birthDate", Field::BirthDate),
            ("birth_date", Field::BirthDate),
            ("MRN", Field::Identifier),
            ("external_id", Field::Identifier),
            ("E-Mail", Field::Email),
            ("cell", Field::Phone),
            ("Mobile", Field::Phone),
            ("First Name", Field::Given),
        ] {
            assert_eq!(Field::from_header(h), Some(f), "{h}");
        }
        assert_eq!(Field::from_header("notes"), None);
    }

    #[test]
    fn a_bom_semicolons_crlf_quotes_and_line_breaks_are_read() {
        let file = "\u{feff}E-Mail;Last Name;First Name;Notes\r\n\
                    a@x.org;\"O'Brien; Jr\";Ann;\"said \"\"hi\"\"\r\nand left\"\r\n\
                    \r\n\
                    b@x.org;Åberg;Björn;\r\n";
        let t = read(file.as_bytes(), 100).expect("reads");
        assert_eq!(t.delimiter, b';');
        assert_eq!(
            rows(&t),
            [
                (2, "a@x.org".into(), "O'Brien; Jr".into()),
                (5, "b@x.org".into(), "Åberg".into())
            ]
        );
        assert_eq!(t.headers[3], ("Notes".to_string(), None));
    }

    #[test]
    fn old_mac_line_endings_count_as_lines() {
        let t = read(
            b"email,family_name,given_name\ra@x.org,Lee,Al\rb@x.org,Ma,Bo\r",
            10,
        )
        .expect("reads");
        assert_eq!(rows(&t)[1], (3, "b@x.org".into(), "Ma".into()));
        assert_eq!(line_breaks(b"a\r\nb\rc\n"), 3);
    }

    #[test]
    fn tabs_are_found_and_commas_win_ties() {
        let t = read(b"email\tfamily_name\tgiven_name\na@x.org\tLee\tAl\n", 10).expect("tabs");
        assert_eq!(t.delimiter, b'\t');
        assert_eq!(t.rows[0].get(Field::Given), "Al");
        assert_eq!(delimiter("a,b;c"), b',');
    }

    #[test]
    fn bytes_that_are_not_utf8_are_refused_with_their_line() {
        let mut file = b"email,family_name,given_name\na@x.org,Lee,Al\nb@x.org,M".to_vec();
        file.push(0xE9);
        file.extend_from_slice(b"ller,Bo\n");
        assert_eq!(read(&file, 10).unwrap_err(), FileError::NotUtf8 { line: 3 });
        assert_eq!(read(b"\x89PNG\0\0", 10).unwrap_err(), FileError::NotText);
        assert_eq!(read(b"  \r\n", 10).unwrap_err(), FileError::Empty);
    }

    #[test]
    fn unmappable_headers_say_what_was_found_and_what_is_needed() {
        let e = read(b"mail address,surname,notes\nx,y,z\n", 10).unwrap_err();
        assert_eq!(
            e,
            FileError::MissingColumns {
                found: vec!["mail address".into(), "surname".into(), "notes".into()],
                missing: vec![Field::Email, Field::Given],
            }
        );
        let said = e.to_string();
        assert!(said.contains("no email, given_name column"), "{said}");
        assert!(
            said.contains("Found: \"mail address\", \"surname\", \"notes\""),
            "{said}"
        );
        let dup = read(b"email,Last Name,surname,given\n", 10).unwrap_err();
        assert!(dup.to_string().contains("family_name"), "{dup}");
    }

    #[test]
    fn a_file_over_the_row_limit_says_how_to_split_it() {
        let mut file = String::from("email,family_name,given_name\n");
        for i in 0..4 {
            file.push_str(&format!("p{i}@x.org,F,G\n"));
        }
        assert_eq!(
            read(file.as_bytes(), 3).unwrap_err(),
            FileError::TooManyRows { limit: 3 }
        );
        assert!(read(file.as_bytes(), 4).is_ok());
    }

    #[test]
    fn the_template_reads_back_with_every_field() {
        let t = read(template().as_bytes(), 10).expect("template");
        assert!(t.headers.iter().all(|(_, f)| f.is_some()));
        assert_eq!(t.rows[0].get(Field::BirthDate), "1980-04-23");
    }

    #[test]
    fn no_input_makes_the_reader_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let alphabet: &[u8] = b"email,family_name;given\t\"\r\n a\xC3\xA9\xFF\x00x;,\"";
        for _ in 0..20_000 {
            let len = rng.gen_range(0..80);
            let mut bytes: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                .collect();
            if rng.gen_bool(0.5) {
                bytes.splice(0..0, b"email,family_name,given_name\n".iter().copied());
            }
            let _ = read(&bytes, 50);
        }
    }
}
