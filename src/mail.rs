//! Outgoing e-mail: through SMTP when `SMTP_URL` is set, otherwise into `<data dir>/outbox/`
//! as .eml files, so a first run works without a mail server.

use std::path::PathBuf;

use lettre::message::{header::ContentType, Mailbox, MultiPart};
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

pub enum Mailer {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Outbox(PathBuf),
}

/// Where a message went.
#[derive(Debug)]
pub enum Delivery {
    Sent,
    Outbox(PathBuf),
}

pub struct Mail {
    from: Mailbox,
    transport: Mailer,
}

impl Mail {
    pub fn new(
        smtp_url: Option<&str>,
        from: &str,
        data_dir: &std::path::Path,
    ) -> Result<Mail, String> {
        let from: Mailbox = from.parse().map_err(|e| format!("COHORT_MAIL_FROM: {e}"))?;
        let transport = match smtp_url {
            Some(url) => Mailer::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .map_err(|e| format!("SMTP_URL: {e}"))?
                    .build(),
            ),
            None => {
                let dir = data_dir.join("outbox");
                std::fs::create_dir_all(&dir).map_err(|e| {
                    format!("COHORT_DATA_DIR: cannot create {}: {e}", dir.display())
                })?;
                Mailer::Outbox(dir)
            }
        };
        Ok(Mail { from, transport })
    }

    pub async fn send(&self, to: &str, subject: &str, body: String) -> Result<Delivery, String> {
        let to: Mailbox = to.parse().map_err(|e| format!("bad recipient {to}: {e}"))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| format!("could not build the message: {e}"))?;
        self.deliver(message).await
    }

    /// A message with a plain-text and an HTML version of the same words.
    pub async fn send_html(
        &self,
        to: &str,
        subject: &str,
        text: String,
        html: String,
    ) -> Result<Delivery, String> {
        let to: Mailbox = to.parse().map_err(|e| format!("bad recipient {to}: {e}"))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .multipart(MultiPart::alternative_plain_html(text, html))
            .map_err(|e| format!("could not build the message: {e}"))?;
        self.deliver(message).await
    }

    async fn deliver(&self, message: Message) -> Result<Delivery, String> {
        match &self.transport {
            Mailer::Smtp(t) => {
                t.send(message)
                    .await
                    .map_err(|e| format!("the mail server refused it: {e}"))?;
                Ok(Delivery::Sent)
            }
            Mailer::Outbox(dir) => {
                let id = AsyncFileTransport::<Tokio1Executor>::new(dir)
                    .send(message)
                    .await
                    .map_err(|e| format!("could not write to {}: {e}", dir.display()))?;
                let path = dir.join(format!("{id}.eml"));
                tracing::info!(path = %path.display(), "no SMTP_URL set: e-mail written to the outbox");
                Ok(Delivery::Outbox(path))
            }
        }
    }
}
