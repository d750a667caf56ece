//! Every word the patient pages say, in one place. A language is one more `Texts` value and
//! one more arm in `for_request`; templates and handlers never spell out a sentence.
//! `{name}` placeholders are filled by `fill`.

use actix_web::http::header;
use actix_web::HttpRequest;

pub struct Texts {
    /// The `lang` attribute of the page.
    pub lang: &'static str,
    pub brand_note: &'static str,

    // Link states.
    pub unknown_title: &'static str,
    pub unknown_body: &'static str,
    pub expired_title: &'static str,
    pub expired_body: &'static str,
    pub replaced_title: &'static str,
    pub replaced_body: &'static str,
    pub used_title: &'static str,
    pub used_body: &'static str,

    // The invitation.
    pub invite_title: &'static str,
    pub invite_intro: &'static str,
    pub invite_until: &'static str,
    pub no_studies: &'static str,
    pub study_asks: &'static str,
    pub from_devices: &'static str,
    pub from_any_device: &'static str,
    pub study_paused: &'static str,
    pub yes: &'static str,
    pub no: &'static str,
    pub not_answered: &'static str,
    pub yes_all: &'static str,
    pub no_all: &'static str,
    pub save: &'static str,
    pub saved: &'static str,
    pub nothing_changed: &'static str,
    pub how_title: &'static str,
    pub how_body: &'static str,
    pub how_none: &'static str,
    pub connect_title: &'static str,
    pub connect_body: &'static str,
    pub connect_qr_alt: &'static str,
    pub open_in: &'static str,
    pub connected_title: &'static str,
    pub connected_body: &'static str,

    // Study sign-up.
    pub join_title: &'static str,
    pub join_intro: &'static str,
    pub join_personal: &'static str,
    pub join_details: &'static str,
    pub join_choices: &'static str,
    pub email: &'static str,
    pub given: &'static str,
    pub family: &'static str,
    pub birth: &'static str,
    pub birth_hint: &'static str,
    pub required: &'static str,
    pub join_button: &'static str,
    pub joined_title: &'static str,
    pub joined_new: &'static str,
    pub joined_existing: &'static str,
    pub join_bad_title: &'static str,
    pub join_bad_body: &'static str,
    pub join_paused_title: &'static str,
    pub join_paused_body: &'static str,
    pub join_closed_title: &'static str,
    pub join_closed_body: &'static str,
    pub fix_below: &'static str,
    pub err_email: &'static str,
    pub err_given: &'static str,
    pub err_family: &'static str,
    pub err_birth: &'static str,
    pub err_birth_future: &'static str,
    pub err_mismatch: &'static str,
    pub err_ref_taken: &'static str,
    pub err_practitioner: &'static str,
    pub err_form: &'static str,
}

pub static EN: Texts = Texts {
    lang: "en",
    brand_note: "Cohort · health research studies",

    unknown_title: "This link is not valid",
    unknown_body: "Check that you opened the whole link from your invitation. If it still does not work, ask the organization that invited you for a new one.",
    expired_title: "This link has expired",
    expired_body: "This link expired on {date}; ask {org} for a new one.",
    replaced_title: "This link was replaced by a newer one",
    replaced_body: "{org} sent you a newer link. Use the most recent invitation you received.",
    used_title: "This link was already used",
    used_body: "An app was connected with this link, so it no longer opens. To change your answers, use that app, or ask {org} for a new link.",

    invite_title: "Your invitation from {org}",
    invite_intro: "{org} asks whether you agree to share health data with its research studies. Answer yes or no for each item. Nothing is shared without your yes.",
    invite_until: "This link is personal. You can come back with it to change an answer until {date}.",
    no_studies: "You are not taking part in any study of {org} yet, so there is nothing to answer. {org} will let you know when there is.",
    study_asks: "This study asks to receive:",
    from_devices: "From: {devices}.",
    from_any_device: "From the device or app you connect.",
    study_paused: "This study is paused: nothing is collected until it resumes.",
    yes: "Yes, share",
    no: "No",
    not_answered: "Not answered yet",
    yes_all: "Yes to all",
    no_all: "No to all",
    save: "Save my answers",
    saved: "Your answers are saved.",
    nothing_changed: "Nothing changed: these were already your answers.",
    how_title: "How your data reaches the study",
    how_body: "Your app sends only the kinds of data you said yes to, and only while a study is active. You can change an answer here, or in the app, at any time; from then on nothing more of that kind is sent. Data already sent stays with the study.",
    how_none: "You have not said yes to anything, so nothing will be sent.",
    connect_title: "Connect an app",
    connect_body: "Open this link on the phone that has your health app, or scan the code with it. The app connects once; after that, this link no longer opens.",
    connect_qr_alt: "QR code of this link, for your phone",
    open_in: "Open in {app}",
    connected_title: "Your app is connected",
    connected_body: "You can close this page. Your app now sends what you agreed to share.",

    join_title: "Join {study}",
    join_intro: "{org} runs this study. Fill in your details and choose what you agree to share.",
    join_personal: "This link is personal: it joins you as participant {ref}.",
    join_details: "Your details",
    join_choices: "What you agree to share",
    email: "E-mail",
    given: "Given name",
    family: "Family name",
    birth: "Birth date",
    birth_hint: "Choose it in the calendar, or type it as year-month-day, such as 1980-04-23.",
    required: "required",
    join_button: "Join the study",
    joined_title: "You joined {study}",
    joined_new: "Thank you. {org} now has your details and your answers.",
    joined_existing: "We found your existing record and added you to {study}. Your answers are saved. {org} will send you a link to connect an app.",
    join_bad_title: "This sign-up link is not valid",
    join_bad_body: "The link was changed or is incomplete. Open the exact link you received, or ask the study team for a new one.",
    join_paused_title: "Enrolment is paused",
    join_paused_body: "{study} is not taking new participants at the moment. Try again later, or ask {org}.",
    join_closed_title: "This study has closed",
    join_closed_body: "{study} has ended and takes no new participants.",
    fix_below: "Please correct the fields marked below.",
    err_email: "Enter your e-mail address, such as name@example.org.",
    err_given: "Enter your given name.",
    err_family: "Enter your family name.",
    err_birth: "Enter your birth date as year-month-day, such as 1980-04-23.",
    err_birth_future: "A birth date cannot be in the future.",
    err_mismatch: "This e-mail belongs to an existing participant whose details differ. Check your birth date, or ask {org} to add you.",
    err_ref_taken: "This personal link was already used by someone else. Use the e-mail you joined with, or ask {org} for your own link.",
    err_practitioner: "This e-mail belongs to a staff account; use your personal e-mail address.",
    err_form: "The form could not be read. Reload the page and try again.",
};

/// Every language the patient pages speak; the first is the fallback. Adding one is a new
/// `Texts` value and an entry here.
pub static LANGUAGES: [&Texts; 1] = [&EN];

/// The texts for the request's preferred language, by `Accept-Language` (its order and
/// q-values), falling back to the first language.
pub fn for_request(req: &HttpRequest) -> &'static Texts {
    let header = req
        .headers()
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    choose(header)
}

pub fn choose(accept_language: &str) -> &'static Texts {
    let mut wanted: Vec<(f32, String)> = accept_language
        .split(',')
        .filter_map(|part| {
            let mut it = part.trim().split(';');
            let tag = it.next()?.trim().to_ascii_lowercase();
            let q = it
                .find_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.parse().ok()))
                .unwrap_or(1.0);
            (!tag.is_empty() && q > 0.0).then_some((q, tag))
        })
        .collect();
    wanted.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (_, tag) in wanted {
        let primary = tag.split('-').next().unwrap_or_default();
        if let Some(t) = LANGUAGES.iter().find(|t| t.lang == primary) {
            return t;
        }
    }
    LANGUAGES[0]
}

/// Fills `{name}` placeholders.
pub fn fill(text: &str, values: &[(&str, &str)]) -> String {
    let mut out = text.to_string();
    for (k, v) in values {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_language_falls_back_to_the_first() {
        assert_eq!(choose("").lang, "en");
        assert_eq!(choose("fr-CA, en-GB;q=0.8").lang, "en");
        assert_eq!(choose("xx;q=0, tlh").lang, "en");
    }

    #[test]
    fn placeholders_are_filled_and_others_left() {
        assert_eq!(
            fill(EN.expired_body, &[("date", "2026-12-01"), ("org", "North")]),
            "This link expired on 2026-12-01; ask North for a new one."
        );
        assert_eq!(fill("{a} {b}", &[("a", "1")]), "1 {b}");
    }
}
