//! Signing in and out: e-mailed codes (outbox and a real SMTP server), one-time links,
//! lockout, CSRF, sessions, and OIDC against a real provider.

mod common;

use common::*;

/// The six-digit code in the newest message of `dir`.
fn code_in(dir: &std::path::Path) -> String {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("outbox exists")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    files.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    let text = std::fs::read_to_string(files.last().expect("a message was written")).unwrap();
    code_in_text(&text)
}

fn code_in_text(text: &str) -> String {
    let at = text
        .find("sign-in code is ")
        .expect("the message states the code")
        + "sign-in code is ".len();
    text[at..at + 6].to_string()
}

async fn ask_for_code(app: &TestApp, client: &reqwest::Client, email: &str) -> reqwest::Response {
    app.post_form(
        client,
        "/auth/sign-in",
        "/auth/code/request",
        &[("email", email)],
    )
    .await
}

on_both_backends!(
    a_practitioner_signs_in_with_a_code_from_the_outbox,
    |app: TestApp| async move {
        app.practitioner("nurse@example.org", false);
        let client = browser();
        let res = ask_for_code(&app, &client, "Nurse@Example.org").await;
        assert_eq!(res.status(), 303);
        assert_eq!(res.headers()["location"], "/auth/code");
        let (_, page) = app.get_html(&client, "/auth/code").await;
        assert!(page.text("main").contains("nurse@example.org"));
        let code = code_in(&app.data_dir.join("outbox"));
        let res = app
            .post_form(
                &client,
                "/auth/code",
                "/auth/code/verify",
                &[("code", &code)],
            )
            .await;
        assert_eq!(res.status(), 303);
        let (status, page) = app.follow(&client, res).await;
        assert_eq!(status, 200);
        assert!(page.text(".user-menu").contains("nurse@example.org"));

        // The code is spent.
        let other = browser();
        ask_for_code(&app, &other, "nurse@example.org").await;
        let res = app
            .post_form(
                &other,
                "/auth/code",
                "/auth/code/verify",
                &[("code", &code)],
            )
            .await;
        assert_eq!(res.status(), 400, "an old code does not open a new attempt");
    }
);

on_both_backends!(
    an_unregistered_email_is_told_to_ask_a_manager_and_nothing_is_created,
    |app: TestApp| async move {
        let client = browser();
        let res = ask_for_code(&app, &client, "stranger@example.org").await;
        assert_eq!(res.status(), 403);
        let page = common::html::Page::new(&res.text().await.unwrap());
        assert_eq!(page.text("h1"), "This account is not registered");
        assert!(page.text("main").contains("manager"));
        let mut c = app.conn();
        assert!(
            cohort::practitioner::repo::find_by_email(&mut c, "stranger@example.org")
                .unwrap()
                .is_none()
        );
        assert!(app.audit_actions().contains(&"sign_in.failed".to_string()));
    }
);

on_both_backends!(
    a_bad_email_is_shown_again_with_a_message,
    |app: TestApp| async move {
        let client = browser();
        let res = ask_for_code(&app, &client, "not-an-email").await;
        assert_eq!(res.status(), 400);
        let page = common::html::Page::new(&res.text().await.unwrap());
        assert_eq!(
            page.attr("#f-email", "value").as_deref(),
            Some("not-an-email")
        );
        assert!(page.text(".error").contains("e-mail address"));
        assert_eq!(
            page.attr("#f-email", "aria-invalid").as_deref(),
            Some("true")
        );
    }
);

on_both_backends!(
    five_wrong_codes_lock_code_sign_in_for_a_while,
    |app: TestApp| async move {
        app.practitioner("doc@example.org", false);
        let client = browser();
        ask_for_code(&app, &client, "doc@example.org").await;
        let right = code_in(&app.data_dir.join("outbox"));
        let wrong = if right == "000000" {
            "111111"
        } else {
            "000000"
        };
        for left in (1..=4).rev() {
            let res = app
                .post_form(
                    &client,
                    "/auth/code",
                    "/auth/code/verify",
                    &[("code", wrong)],
                )
                .await;
            assert_eq!(res.status(), 400);
            let page = common::html::Page::new(&res.text().await.unwrap());
            assert!(
                page.text("main").contains(&format!("{left} tr")),
                "says how many tries are left"
            );
        }
        let res = app
            .post_form(
                &client,
                "/auth/code",
                "/auth/code/verify",
                &[("code", wrong)],
            )
            .await;
        assert!(common::html::Page::new(&res.text().await.unwrap())
            .text("main")
            .contains("locked"));
        // Even the right code is refused now, and so is a new code.
        let res = app
            .post_form(
                &client,
                "/auth/code",
                "/auth/code/verify",
                &[("code", &right)],
            )
            .await;
        assert_eq!(res.status(), 400);
        assert!(common::html::Page::new(&res.text().await.unwrap())
            .text("main")
            .contains("locked"));
        let res = ask_for_code(&app, &browser(), "doc@example.org").await;
        assert_eq!(res.status(), 400);
        assert!(common::html::Page::new(&res.text().await.unwrap())
            .text("main")
            .contains("locked"));
    }
);

on_both_backends!(
    a_form_without_its_csrf_token_is_refused_and_says_to_reload,
    |app: TestApp| async move {
        let (uid, _) = app.practitioner("ops@example.org", false);
        let client = app.signed_in(uid).await;
        let res = client
            .post(app.at("/profile/tokens"))
            .form(&[("label", "sneaky")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403);
        let page = common::html::Page::new(&res.text().await.unwrap());
        assert!(page.text("main").contains("Reload the page"));
        let res = client
            .post(app.at("/profile/tokens"))
            .form(&[("label", "sneaky"), ("csrf_token", "forged")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403);
        let mut c = app.conn();
        assert!(
            cohort::auth::token::list(&mut c, uid).unwrap().is_empty(),
            "nothing was created"
        );
    }
);

on_both_backends!(signing_out_ends_the_session, |app: TestApp| async move {
    let (uid, _) = app.practitioner("out@example.org", false);
    let client = app.signed_in(uid).await;
    let (status, _) = app.get_html(&client, "/profile").await;
    assert_eq!(status, 200);
    let res = app
        .post_form(&client, "/profile", "/auth/sign-out", &[])
        .await;
    assert_eq!(res.status(), 303);
    let (_, page) = app.follow(&client, res).await;
    assert!(page.text(".flashes").contains("signed out"));
    let res = client.get(app.at("/profile")).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert!(res.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/auth/sign-in?next=%2Fprofile"));
    assert!(app.audit_actions().contains(&"sign_out".to_string()));
});

on_both_backends!(
    the_session_cookie_is_http_only_and_renewed_at_sign_in,
    |app: TestApp| async move {
        let (uid, _) = app.practitioner("cookie@example.org", false);
        let client = browser();
        let res = client.get(app.at("/auth/sign-in")).send().await.unwrap();
        let before = res.headers()["set-cookie"].to_str().unwrap().to_string();
        assert!(
            before.contains("HttpOnly") && before.contains("SameSite=Lax"),
            "{before}"
        );
        assert!(
            !before.contains("Secure"),
            "plain http public URL: no Secure flag"
        );
        let secret = {
            let mut c = app.conn();
            cohort::auth::code::create_link(&mut c, uid).unwrap()
        };
        let res = client
            .get(app.at(&format!("/auth/link/{secret}")))
            .send()
            .await
            .unwrap();
        let after = res.headers()["set-cookie"].to_str().unwrap().to_string();
        assert_ne!(
            before.split(';').next(),
            after.split(';').next(),
            "a new session value after sign-in"
        );
    }
);

on_both_backends!(
    a_practitioner_creates_and_revokes_an_api_token_on_the_profile_page,
    |app: TestApp| async move {
        let (uid, _) = app.practitioner("tok@example.org", false);
        let client = app.signed_in(uid).await;
        let res = app
            .post_form(&client, "/profile", "/profile/tokens", &[("label", "")])
            .await;
        assert_eq!(res.status(), 400, "a token needs a name");
        let res = app
            .post_form(
                &client,
                "/profile",
                "/profile/tokens",
                &[("label", "notebook")],
            )
            .await;
        assert_eq!(res.status(), 303);
        let (_, page) = app.follow(&client, res).await;
        let token = page.text(".token-box code");
        assert!(token.starts_with("cohort_"));
        assert!(page.text("table.data").contains("notebook"));
        let api = script()
            .get(app.at("/api/v1/users/profile"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(api.status(), 200);
        // Shown once: a reload does not show it again.
        let (_, page) = app.get_html(&client, "/profile").await;
        assert!(!page.exists(".token-box"));
        let id = {
            let mut c = app.conn();
            cohort::auth::token::list(&mut c, uid).unwrap()[0].id
        };
        let res = app
            .post_form(
                &client,
                "/profile",
                &format!("/profile/tokens/{id}/revoke"),
                &[],
            )
            .await;
        assert_eq!(res.status(), 303);
        let api = script()
            .get(app.at("/api/v1/users/profile"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(api.status(), 401);
        assert!(
            page.unlabelled_inputs().is_empty(),
            "{:?}",
            page.unlabelled_inputs()
        );
    }
);

// ---- A real SMTP server ------------------------------------------------------------------

on_both_backends!(
    the_sign_in_code_arrives_at_a_real_smtp_server,
    |_unused: TestApp| async move {
        let Some(smtp) = common::fixtures::SmtpServer::start() else {
            return;
        };
        let Some(app) = spawn_with(_unused.backend, vec![("SMTP_URL", smtp.url())]).await else {
            return;
        };
        app.practitioner("mailme@example.org", false);
        let client = browser();
        let res = ask_for_code(&app, &client, "mailme@example.org").await;
        assert_eq!(res.status(), 303);
        let message = smtp
            .wait_for(1, std::time::Duration::from_secs(10))
            .expect("the message reached the SMTP server");
        assert!(message.contains("To: mailme@example.org"), "{message}");
        assert!(
            message.contains("Subject: Cohort sign-in code"),
            "{message}"
        );
        let code = code_in_text(&message);
        let res = app
            .post_form(
                &client,
                "/auth/code",
                "/auth/code/verify",
                &[("code", &code)],
            )
            .await;
        assert_eq!(res.status(), 303);
        assert!(
            !app.data_dir.join("outbox").exists()
                || std::fs::read_dir(app.data_dir.join("outbox"))
                    .unwrap()
                    .next()
                    .is_none(),
            "with SMTP configured nothing goes to the outbox"
        );
    }
);

// ---- OIDC against a real provider ----------------------------------------------------------

const CALLBACK: &str = "/auth/oidc/callback";

/// Cohort configured for OIDC, and the provider it trusts.
async fn with_provider(backend: Backend) -> Option<(TestApp, common::fixtures::OidcProvider)> {
    let port = common::fixtures::free_port();
    let app = spawn_with(
        backend,
        vec![
            ("OIDC_ISSUER_URL", format!("http://127.0.0.1:{port}")),
            ("OIDC_CLIENT_ID", "cohort-test".into()),
            ("OIDC_CLIENT_SECRET", "cohort-test-secret-0123456789".into()),
        ],
    )
    .await?;
    let provider = common::fixtures::OidcProvider::start(port, &app.at(CALLBACK))?;
    Some((app, provider))
}

/// Starts sign-in at Cohort and returns the provider URL it redirects to.
async fn start_oidc(app: &TestApp, client: &reqwest::Client) -> String {
    let (_, page) = app.get_html(client, "/auth/sign-in").await;
    let href = page
        .attr("a.btn-primary", "href")
        .expect("a sign-in button");
    assert_eq!(href, "/auth/oidc/start");
    assert!(
        !page.exists("input[name=email]"),
        "no code sign-in when OIDC is configured"
    );
    let res = client.get(app.at(&href)).send().await.unwrap();
    if res.status() != 303 {
        panic!(
            "sign-in did not start: {}",
            common::html::Page::new(&res.text().await.unwrap()).text("main")
        );
    }
    res.headers()["location"].to_str().unwrap().to_string()
}

macro_rules! oidc_test {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[actix_web::test]
            async fn sqlite() {
                if let Some((app, provider)) = with_provider(Backend::Sqlite).await {
                    ($body)(app, provider.issuer.clone()).await;
                    drop(provider);
                }
            }
            #[actix_web::test]
            async fn postgres() {
                if let Some((app, provider)) = with_provider(Backend::Postgres).await {
                    ($body)(app, provider.issuer.clone()).await;
                    drop(provider);
                }
            }
        }
    };
}

oidc_test!(
    oidc_sign_in_walks_the_provider_login_and_lands_signed_in,
    |app: TestApp, issuer: String| async move {
        app.practitioner("doc@example.org", false);
        let client = browser();
        let authorize = start_oidc(&app, &client).await;
        assert!(authorize.starts_with(&issuer), "{authorize}");
        for param in [
            "code_challenge=",
            "code_challenge_method=S256",
            "state=",
            "nonce=",
            "scope=openid",
        ] {
            assert!(
                authorize.contains(param),
                "the request carries {param}: {authorize}"
            );
        }
        let callback =
            common::fixtures::walk_provider(&authorize, "Doc@Example.org", &app.at(CALLBACK)).await;
        let res = client.get(&callback).send().await.unwrap();
        assert_eq!(
            res.status(),
            303,
            "{}",
            res.text().await.unwrap_or_default()
        );
        let (status, page) = app.follow(&client, res).await;
        assert_eq!(status, 200);
        assert!(page.text(".user-menu").contains("doc@example.org"));

        // The same answer from the provider cannot be used again.
        let replay = browser();
        let res = replay.get(&callback).send().await.unwrap();
        assert_eq!(res.status(), 400);
        assert!(common::html::Page::new(&res.text().await.unwrap())
            .text("main")
            .contains("Start again"));
    }
);

oidc_test!(
    a_replayed_code_is_refused_by_the_provider_and_by_cohort,
    |app: TestApp, _issuer: String| async move {
        app.practitioner("doc@example.org", false);
        let client = browser();
        let authorize = start_oidc(&app, &client).await;
        let callback =
            common::fixtures::walk_provider(&authorize, "doc@example.org", &app.at(CALLBACK)).await;
        assert_eq!(client.get(&callback).send().await.unwrap().status(), 303);
        // A second sign-in in a fresh browser, answered with the first one's code.
        let other = browser();
        let authorize2 = start_oidc(&app, &other).await;
        let state2 = url::Url::parse(&authorize2)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "state")
            .unwrap()
            .1
            .to_string();
        let code1 = url::Url::parse(&callback)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "code")
            .unwrap()
            .1
            .to_string();
        let forged = format!("{}?code={code1}&state={state2}", app.at(CALLBACK));
        let res = other.get(&forged).send().await.unwrap();
        assert_eq!(res.status(), 400);
        assert!(common::html::Page::new(&res.text().await.unwrap())
            .text("main")
            .contains("refused"));
        let res = other.get(app.at("/organizations")).send().await.unwrap();
        assert_eq!(res.status(), 303, "not signed in");
    }
);

oidc_test!(
    a_bad_state_is_refused,
    |app: TestApp, _issuer: String| async move {
        app.practitioner("doc@example.org", false);
        let client = browser();
        let authorize = start_oidc(&app, &client).await;
        let callback =
            common::fixtures::walk_provider(&authorize, "doc@example.org", &app.at(CALLBACK)).await;
        let mut url = url::Url::parse(&callback).unwrap();
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    if k == "state" {
                        "forged".to_string()
                    } else {
                        v.to_string()
                    },
                )
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
        let res = client.get(url.as_str()).send().await.unwrap();
        assert_eq!(res.status(), 400);
        assert!(common::html::Page::new(&res.text().await.unwrap())
            .text("main")
            .contains("could not be matched"));
        let r = client.get(app.at("/organizations")).send().await.unwrap();
        let st = r.status();
        assert_eq!(st, 303, "{}", r.text().await.unwrap());
        assert!(app.audit_actions().contains(&"sign_in.failed".to_string()));
    }
);

oidc_test!(
    an_id_token_with_the_wrong_nonce_is_refused,
    |app: TestApp, _issuer: String| async move {
        app.practitioner("doc@example.org", false);
        let client = browser();
        let authorize = start_oidc(&app, &client).await;
        let mut url = url::Url::parse(&authorize).unwrap();
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    if k == "nonce" {
                        "not-the-one-cohort-sent".to_string()
                    } else {
                        v.to_string()
                    },
                )
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
        let callback =
            common::fixtures::walk_provider(url.as_str(), "doc@example.org", &app.at(CALLBACK))
                .await;
        let res = client.get(&callback).send().await.unwrap();
        assert_eq!(res.status(), 400);
        let text = common::html::Page::new(&res.text().await.unwrap()).text("main");
        assert!(text.contains("could not be verified"), "{text}");
        assert_eq!(
            client
                .get(app.at("/organizations"))
                .send()
                .await
                .unwrap()
                .status(),
            303
        );
    }
);

oidc_test!(
    an_unknown_or_unverified_email_from_the_provider_signs_nobody_in,
    |app: TestApp, _issuer: String| async move {
        app.practitioner("doc@example.org", false);
        let client = browser();
        let authorize = start_oidc(&app, &client).await;
        let callback =
            common::fixtures::walk_provider(&authorize, "stranger@example.org", &app.at(CALLBACK))
                .await;
        let res = client.get(&callback).send().await.unwrap();
        assert_eq!(res.status(), 403);
        let page = common::html::Page::new(&res.text().await.unwrap());
        assert_eq!(page.text("h1"), "This account is not registered");
        {
            let mut c = app.conn();
            assert!(
                cohort::practitioner::repo::find_by_email(&mut c, "stranger@example.org")
                    .unwrap()
                    .is_none()
            );
        }

        let client = browser();
        let authorize = start_oidc(&app, &client).await;
        let callback = common::fixtures::walk_provider(
            &authorize,
            "unverified+doc@example.org",
            &app.at(CALLBACK),
        )
        .await;
        let res = client.get(&callback).send().await.unwrap();
        assert_eq!(res.status(), 400);
        assert!(common::html::Page::new(&res.text().await.unwrap())
            .text("main")
            .contains("verified e-mail"));
    }
);
