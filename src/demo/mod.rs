//! Demo data: realistic fake patients in bulk, for trying Cohort out and for benchmarks.
//! `cohort seed-demo --patients N [--organization ID]`.

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
    pub terms: Vec<String>,
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
    let birth = birth_date.format("%Y-%m-%d").to_string();
    let terms = search::terms([
        family.as_str(),
        given.as_str(),
        email.as_str(),
        birth.as_str(),
        mrn.as_str(),
    ])
    .into_iter()
    .collect();
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
