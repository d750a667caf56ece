//! OIDC sign-in: authorization-code flow with PKCE, state and nonce. The ID token's signature,
//! issuer, audience, expiry and nonce are checked by `openidconnect`; we then require a
//! verified e-mail and match it to a practitioner.

use std::time::{Duration, Instant};

use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;

use crate::config::OidcSettings;

/// Provider keys rotate; discovery is refreshed this often.
const METADATA_TTL: Duration = Duration::from_secs(3600);

pub struct Oidc {
    settings: OidcSettings,
    redirect_url: String,
    http: openidconnect::reqwest::Client,
    metadata: RwLock<Option<(Instant, CoreProviderMetadata)>>,
}

/// What we remember between sending the browser to the provider and its return.
#[derive(Serialize, Deserialize)]
pub struct Pending {
    pub state: String,
    pub nonce: String,
    pub verifier: String,
    pub next: String,
}

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("The sign-in provider could not be reached: {0}")]
    Provider(String),
    #[error("The sign-in provider refused the sign-in: {0}")]
    Exchange(String),
    #[error("The identity token could not be verified: {0}")]
    Token(String),
    #[error("The sign-in provider did not give a verified e-mail address.")]
    NoVerifiedEmail,
}

impl Oidc {
    pub fn new(settings: OidcSettings, public_url: &str) -> Result<Oidc, String> {
        let http = openidconnect::reqwest::ClientBuilder::new()
            // Following redirects from the provider would open the server to SSRF.
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("OIDC HTTP client: {e}"))?;
        Ok(Oidc {
            settings,
            redirect_url: format!("{public_url}/auth/oidc/callback"),
            http,
            metadata: RwLock::new(None),
        })
    }

    async fn metadata(&self, refresh: bool) -> Result<CoreProviderMetadata, OidcError> {
        if !refresh {
            if let Some((at, m)) = self.metadata.read().await.as_ref() {
                if at.elapsed() < METADATA_TTL {
                    return Ok(m.clone());
                }
            }
        }
        let issuer = IssuerUrl::new(self.settings.issuer_url.clone())
            .map_err(|e| OidcError::Provider(e.to_string()))?;
        let m = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| OidcError::Provider(error_chain(&e)))?;
        *self.metadata.write().await = Some((Instant::now(), m.clone()));
        Ok(m)
    }

    fn client(
        &self,
        m: CoreProviderMetadata,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        OidcError,
    > {
        let redirect = RedirectUrl::new(self.redirect_url.clone())
            .map_err(|e| OidcError::Provider(e.to_string()))?;
        Ok(CoreClient::from_provider_metadata(
            m,
            ClientId::new(self.settings.client_id.clone()),
            Some(ClientSecret::new(self.settings.client_secret.clone())),
        )
        .set_redirect_uri(redirect))
    }

    /// The provider URL to send the browser to, and what to remember until it comes back.
    pub async fn start(&self, next: String) -> Result<(String, Pending), OidcError> {
        let client = self.client(self.metadata(false).await?)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("email".into()))
            .add_scope(Scope::new("profile".into()))
            .set_pkce_challenge(challenge)
            .url();
        Ok((
            url.to_string(),
            Pending {
                state: state.secret().clone(),
                nonce: nonce.secret().clone(),
                verifier: verifier.secret().clone(),
                next,
            },
        ))
    }

    /// Exchanges the code and verifies the ID token; returns the verified e-mail and names.
    pub async fn finish(
        &self,
        pending: &Pending,
        code: &str,
    ) -> Result<(String, String, String), OidcError> {
        let client = self.client(self.metadata(false).await?)?;
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| OidcError::Exchange(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(|e| OidcError::Exchange(error_chain(&e)))?;
        let id_token = response
            .id_token()
            .ok_or_else(|| OidcError::Token("the provider sent no ID token".into()))?;
        let nonce = Nonce::new(pending.nonce.clone());
        let claims = match id_token.claims(&client.id_token_verifier(), &nonce) {
            Ok(c) => c.clone(),
            Err(first) => {
                // The provider may have rotated its keys since discovery: refresh once.
                let client = self.client(self.metadata(true).await?)?;
                let verifier = client.id_token_verifier();
                let claims = id_token
                    .claims(&verifier, &nonce)
                    .map_err(|_| OidcError::Token(first.to_string()))?
                    .clone();
                claims
            }
        };
        let email = claims
            .email()
            .filter(|_| claims.email_verified() == Some(true))
            .map(|e| crate::util::normalize_email(e.as_str()))
            .ok_or(OidcError::NoVerifiedEmail)?;
        let given = claims
            .given_name()
            .and_then(|n| n.get(None))
            .map(|n| n.to_string())
            .unwrap_or_default();
        let family = claims
            .family_name()
            .and_then(|n| n.get(None))
            .map(|n| n.to_string())
            .unwrap_or_default();
        Ok((email, given, family))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
