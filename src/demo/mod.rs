//! Demo data: realistic fake patients in bulk, for trying Cohort out and for benchmarks.
//! `cohort seed-demo --patients N [--organization ID] [--study]`.

pub mod observations;
pub mod repo;

use chrono::NaiveDate;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::db::DbConnection;
use crate::error::AppError;
use crate::patient::search;

const FAMILY: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
    "Green",
    "Adams",
    "Nelson",
    "Baker",
    "Hall",
    "Rivera",
    "Campbell",
    "Mitchell",
    "Carter",
    "Roberts",
    "Müller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weber",
    "Rossi",
    "Russo",
    "Ferrari",
    "Esposito",
    "Bianchi",
    "Dubois",
    "Lefèvre",
    "Moreau",
    "Laurent",
    "Kowalski",
    "Nowak",
    "Wiśniewski",
    "Tanaka",
    "Suzuki",
    "Takahashi",
    "Watanabe",
    "Kim",
    "Park",
    "Choi",
    "Chen",
    "Wang",
    "Li",
    "Zhang",
    "Liu",
    "Okafor",
    "Adeyemi",
    "Mensah",
    "Haddad",
    "Nasser",
    "Khan",
    "Patel",
    "Singh",
    "Sharma",
    "Gupta",
    "O'Brien",
    "Murphy",
    "Kelly",
    "Sullivan",
    "Jensen",
    "Nielsen",
    "Hansen",
    "Andersson",
    "Johansson",
    "Novák",
    "Horváth",
    "Muñoz",
    "Álvarez",
    "Romero",
    "Navarro",
    "Çelik",
    "Yılmaz",
    "Öztürk",
];

const GIVEN: &[&str] = &[
    "James",
    "Mary",
    "John",
    "Patricia",
    "Robert",
    "Jennifer",
    "Michael",
    "Linda",
    "William",
    "Elizabeth",
    "David",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Charles",
    "Karen",
    "Daniel",
    "Nancy",
    "Matthew",
    "Lisa",
    "Anthony",
    "Betty",
    "Mark",
    "Sandra",
    "Paul",
    "Ashley",
    "Steven",
    "Emily",
    "Andrew",
    "Michelle",
    "Joshua",
    "Amanda",
    "José",
    "María",
    "Ana",
    "Luis",
    "Carmen",
    "Jürgen",
    "Anna",
    "Lukas",
    "Sofia",
    "Marco",
    "Giulia",
    "Léa",
    "Chloé",
    "Hugo",
    "Zofia",
    "Jakub",
    "Hiro",
    "Yuki",
    "Mei",
    "Wei",
    "Min-jun",
    "Ji-woo",
    "Chidi",
    "Ngozi",
    "Kwame",
    "Amina",
    "Omar",
    "Layla",
    "Arjun",
    "Priya",
    "Seán",
    "Aoife",
    "Freya",
    "Lars",
    "Astrid",
    "Björn",
    "Noah",
    "Emma",
    "Liam",
    "Olivia",
    "Elif",
    "Emre",
];

/// One fake patient, ready for the bulk insert.
pub struct FakePatient {
    pub email: String,
    pub family: String,
    pub given: String,
    pub birth_date: NaiveDate,
    pub phone: String,
    pub mrn: String,
    pub terms: std::collections::BTreeSet<String>,
}

pub fn fake(rng: &mut StdRng, n: i64) -> FakePatient {
    let family = FAMILY[rng.gen_range(0..FAMILY.len())].to_string();
    let given = GIVEN[rng.gen_range(0..GIVEN.len())].to_string();
    let birth_date = NaiveDate::from_ymd_opt(
        rng.gen_range(1930..2015),
        rng.gen_range(1..=12),
        rng.gen_range(1..=28),
    )
    .unwrap_or_default();
    let local: String = format!("{}.{}", search::fold(&given), search::fold(&family))
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
        .collect();
    let email = format!("{local}.{n}@example.org");
    let mrn = format!("MRN-{:08}", n);
    let birth = birth_date.to_string();
    let terms = search::terms([
        family.as_str(),
        given.as_str(),
        email.as_str(),
        birth.as_str(),
        mrn.as_str(),
    ]);
    FakePatient {
        phone: format!("+1617{:07}", n % 10_000_000),
        email,
        family,
        given,
        birth_date,
        mrn,
        terms,
    }
}

/// Adds `count` patients to `org_id` (made if absent), in batches. Returns (org id, seconds).
pub fn seed(
    conn: &mut DbConnection,
    org_id: Option<i64>,
    count: i64,
    mut progress: impl FnMut(i64),
) -> Result<(i64, f64), AppError> {
    let started = std::time::Instant::now();
    let org_id = match org_id {
        Some(id) => {
            crate::organization::repo::find(conn, id)?
                .ok_or_else(|| AppError::not_found("Organization"))?;
            id
        }
        None => crate::organization::repo::create(
            conn,
            "Demo Clinic",
            "prov",
            crate::organization::ROOT_ID,
            None,
        )?,
    };
    let (mut next_user, mut next_patient, first_n) = repo::next_ids(conn)?;
    let mut rng = StdRng::seed_from_u64(first_n as u64);
    let batch = 2000;
    let mut done = 0;
    while done < count {
        let size = batch.min(count - done);
        let people: Vec<FakePatient> = (0..size)
            .map(|i| fake(&mut rng, first_n + done + i))
            .collect();
        repo::insert_batch(conn, org_id, next_user, next_patient, &people)?;
        next_user += size;
        next_patient += size;
        done += size;
        progress(done);
    }
    repo::after_bulk(conn)?;
    Ok((org_id, started.elapsed().as_secs_f64()))
}

/// A demo study in `org_id` requesting five scopes, with every patient of the organization
/// enrolled, a spread of decisions (most consent to all, some decline one, the rest are
/// partly pending) and invitations (redeemed, open and expired). Returns (study id, seconds).
pub fn seed_study(conn: &mut DbConnection, org_id: i64) -> Result<(i64, f64), AppError> {
    let started = std::time::Instant::now();
    let study = crate::study::ValidStudy {
        name: "Demo Study".into(),
        description: "Blood pressure, heart rate and activity at home.".into(),
        icon_url: None,
        status: crate::study::Status::Active,
    };
    let study_id = crate::study::repo::insert(conn, org_id, &study)?;
    let scopes: [i64; 5] = [1, 2, 4, 11, 12];
    for s in scopes {
        crate::study::repo::add_scope_request(conn, study_id, s)?;
    }
    let ids = repo::patients_of(conn, org_id)?;
    let mut rng = StdRng::seed_from_u64(study_id as u64);
    for chunk in ids.chunks(2000) {
        let plan: Vec<repo::Plan> = chunk
            .iter()
            .map(|pid| {
                let roll: u32 = rng.gen_range(0..100);
                let decisions: Vec<Option<bool>> = scopes
                    .iter()
                    .enumerate()
                    .map(|(i, _)| match roll {
                        0..=59 => Some(true),
                        60..=69 => Some(i != 2),
                        70..=84 => (i < 2).then_some(true),
                        _ => None,
                    })
                    .collect();
                let invitation = match roll {
                    0..=69 => Some("redeemed"),
                    70..=84 => Some("issued"),
                    85..=94 => Some("expired"),
                    _ => None,
                };
                repo::Plan {
                    patient_id: *pid,
                    decisions,
                    invitation,
                }
            })
            .collect();
        repo::insert_study_batch(conn, study_id, org_id, &scopes, &plan)?;
    }
    repo::after_bulk(conn)?;
    Ok((study_id, started.elapsed().as_secs_f64()))
}
