//! The connection to a running control plane: its URL (`--url` / `KEYPLANE_URL`), the
//! credential (from the environment only, never a flag `ps` would show), and the HTTP calls.
//!
//! Reads (GET) are retried on network errors only — a connection refused or reset, a timeout —
//! twice, after 250 ms and 1 s; an HTTP error answer is never retried, and nothing that changes
//! state is ever sent twice.

use std::time::{Duration, SystemTime};

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use reqwest::{Method, Url};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::Value;

use super::failure::{ApiFailure, CliError, usage};

/// The variable holding a management key.
pub const API_KEY_VARIABLE: &str = "KEYPLANE_API_KEY";
/// The variable holding a host product's token (a JWT the control plane trusts).
pub const TOKEN_VARIABLE: &str = "KEYPLANE_TOKEN";

/// Waits before the second and third attempt of a read.
const RETRY_DELAYS: [Duration; 2] = [Duration::from_millis(250), Duration::from_secs(1)];

/// Where the control plane is, for every client command.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectionArgs {
    /// The control plane's base URL, e.g. `http://127.0.0.1:7070`.
    #[arg(
        long,
        env = "KEYPLANE_URL",
        global = true,
        value_name = "URL",
        help_heading = "Connection"
    )]
    pub url: Option<String>,
}

/// How the CLI proves who it is.
enum Credential {
    /// A management key, sent as `x-api-key`.
    ApiKey(SecretString),
    /// A host product's token, sent as `Authorization: Bearer`.
    HostToken(SecretString),
}

impl Credential {
    /// Reads the credential from the environment: exactly one of the two variables.
    fn from_env(read: impl Fn(&str) -> Option<String>) -> Result<Self, CliError> {
        let present = |name: &str| read(name).filter(|value| !value.trim().is_empty());
        match (present(API_KEY_VARIABLE), present(TOKEN_VARIABLE)) {
            (Some(key), None) => Ok(Credential::ApiKey(SecretString::from(
                key.trim().to_owned(),
            ))),
            (None, Some(token)) => Ok(Credential::HostToken(SecretString::from(
                token.trim().to_owned(),
            ))),
            (Some(_), Some(_)) => Err(usage(format!(
                "both {API_KEY_VARIABLE} and {TOKEN_VARIABLE} are set: unset one"
            ))),
            (None, None) => Err(usage(format!(
                "no credential: set {API_KEY_VARIABLE} to a management key (one holding \
                 `api-keys:manage` or `admin:full`), or {TOKEN_VARIABLE} to a token from your \
                 product's sign-in (credentials are never taken from flags, which `ps` shows)"
            ))),
        }
    }

    fn headers(&self) -> Result<HeaderMap, CliError> {
        let (name, text) = match self {
            Credential::ApiKey(key) => ("x-api-key", key.expose_secret().to_owned()),
            Credential::HostToken(token) => (
                AUTHORIZATION.as_str(),
                format!("Bearer {}", token.expose_secret()),
            ),
        };
        let mut value = HeaderValue::from_str(&text).map_err(|_| {
            usage(format!(
                "{API_KEY_VARIABLE} / {TOKEN_VARIABLE} holds characters a header cannot carry"
            ))
        })?;
        value.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(name, value);
        Ok(headers)
    }
}

/// An answer from the API: its JSON body and the control plane's clock.
#[derive(Debug)]
pub struct Answer {
    /// The JSON body (`Null` when empty).
    pub body: Value,
    /// The `Date` header: the control plane's time when it answered.
    pub date: Option<SystemTime>,
}

/// A connection to one control plane with one credential.
pub struct Connection {
    base: Url,
    client: reqwest::Client,
}

impl Connection {
    /// From `--url` / `KEYPLANE_URL` and the credential in the environment.
    pub fn open(args: &ConnectionArgs) -> Result<Self, CliError> {
        Self::open_with(args, |name| std::env::var(name).ok())
    }

    /// As [`Connection::open`], reading variables through `read`.
    pub fn open_with(
        args: &ConnectionArgs,
        read: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, CliError> {
        let text = args.url.as_deref().map(str::trim).unwrap_or_default();
        if text.is_empty() {
            return Err(usage(
                "no control plane: pass --url or set KEYPLANE_URL (e.g. http://127.0.0.1:7070)",
            ));
        }
        let base = Url::parse(text)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && url.has_host())
            .ok_or_else(|| usage(format!("--url `{text}` is not an http(s) URL")))?;
        let credential = Credential::from_env(read)?;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .user_agent(concat!("keyplane-cli/", env!("CARGO_PKG_VERSION")))
            .default_headers(credential.headers()?)
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| usage(format!("cannot build the HTTP client: {error}")))?;
        Ok(Connection { base, client })
    }

    fn url(&self, path: &str, query: &[(&str, String)]) -> Result<Url, CliError> {
        let mut url = self.base.clone();
        let joined = format!("{}{path}", url.path().trim_end_matches('/'));
        url.set_path(&joined);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    /// A read, retried on network errors.
    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Answer, CliError> {
        let url = self.url(path, query)?;
        let mut delays = RETRY_DELAYS.iter();
        loop {
            match self.once(Method::GET, url.clone(), None).await {
                Err(CliError::Network { url, detail }) => match delays.next() {
                    Some(delay) => {
                        eprintln!("keyplane: {detail}; retrying in {delay:?}");
                        tokio::time::sleep(*delay).await;
                    }
                    None => return Err(CliError::Network { url, detail }),
                },
                other => return other,
            }
        }
    }

    /// A change: sent once, never retried.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Answer, CliError> {
        let url = self.url(path, &[])?;
        self.once(method, url, body).await
    }

    async fn once(
        &self,
        method: Method,
        url: Url,
        body: Option<Value>,
    ) -> Result<Answer, CliError> {
        let shown = url.to_string();
        let network = |error: reqwest::Error| CliError::Network {
            url: shown.clone(),
            detail: describe(&error),
        };
        let mut request = self.client.request(method, url.clone());
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.map_err(network)?;
        let status = response.status().as_u16();
        let request_id = header_text(response.headers(), "x-request-id");
        let date = header_text(response.headers(), "date")
            .and_then(|text| httpdate::parse_http_date(&text).ok());
        let bytes = response.bytes().await.map_err(network)?;
        let parsed: Option<Value> = if bytes.is_empty() {
            Some(Value::Null)
        } else {
            serde_json::from_slice(&bytes).ok()
        };
        if (200..300).contains(&status) {
            return match parsed {
                Some(body) => Ok(Answer { body, date }),
                None => Err(CliError::Unexpected(format!(
                    "HTTP {status} from {shown} with a body that is not JSON"
                ))),
            };
        }
        let error = parsed.as_ref().map(|body| &body["error"]);
        let text = |field: &str| {
            error
                .and_then(|error| error[field].as_str())
                .map(str::to_owned)
        };
        Err(CliError::Api(ApiFailure {
            status,
            code: text("code").unwrap_or_else(|| format!("http_{status}")),
            message: text("message").unwrap_or_else(|| {
                let head = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
                format!("{shown} answered HTTP {status}: {}", head.trim())
            }),
            request_id: text("request_id").or(request_id),
        }))
    }
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// A network error's cause chain in one line.
fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "could not connect".to_owned()
    } else {
        "the connection failed".to_owned()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(url: &str) -> ConnectionArgs {
        ConnectionArgs {
            url: Some(url.to_owned()),
        }
    }

    fn open(url: &str, variables: &[(&str, &str)]) -> Result<Connection, CliError> {
        let variables: Vec<(String, String)> = variables
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        Connection::open_with(&args(url), |name| {
            variables
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, value)| value.clone())
        })
    }

    #[test]
    fn missing_url_or_credential_is_a_usage_error_that_says_what_to_set() {
        let key = [(API_KEY_VARIABLE, "sk_live_x")];
        for (url, variables, expected) in [
            ("", &key[..], "KEYPLANE_URL"),
            ("ftp://host", &key[..], "not an http(s) URL"),
            ("not a url", &key[..], "not an http(s) URL"),
            ("http://127.0.0.1:1", &[][..], "KEYPLANE_API_KEY"),
            (
                "http://127.0.0.1:1",
                &[(API_KEY_VARIABLE, "a"), (TOKEN_VARIABLE, "b")][..],
                "both",
            ),
        ] {
            match open(url, variables) {
                Err(CliError::Usage(message)) => assert!(message.contains(expected), "{message}"),
                Err(other) => panic!("{url}: {other}"),
                Ok(_) => panic!("{url}: accepted"),
            }
        }
        assert!(open("http://127.0.0.1:1", &[(TOKEN_VARIABLE, "eyJ")]).is_ok());
    }

    #[test]
    fn paths_join_a_base_url_with_or_without_a_prefix() {
        let at = |base: &str| {
            open(base, &[(API_KEY_VARIABLE, "k")])
                .expect("opens")
                .url("/v1/keys", &[("name", "a b&c".to_owned())])
                .expect("url")
                .to_string()
        };
        assert_eq!(at("http://h:1"), "http://h:1/v1/keys?name=a+b%26c");
        assert_eq!(at("http://h:1/"), "http://h:1/v1/keys?name=a+b%26c");
        assert_eq!(at("https://h/kp/"), "https://h/kp/v1/keys?name=a+b%26c");
    }
}
