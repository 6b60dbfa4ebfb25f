//! The client side of `syncore apply FILE`, `syncore get KEY` and `syncore status`: plain
//! HTTP requests to a running service, answers printed as they come.

use std::time::Duration;

/// A client of one service.
#[derive(Debug)]
pub struct Client {
    url: String,
    token: Option<String>,
    agent: ureq::Agent,
}

/// What a request gave: the HTTP status and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The body (JSON).
    pub body: String,
}

impl Answer {
    /// Whether the status is 2xx.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

impl Client {
    /// A client of the service at `url` (`http://127.0.0.1:7070`), sending `token` as a
    /// bearer token when given.
    pub fn new(url: &str, token: Option<String>) -> Client {
        Client {
            url: url.trim_end_matches('/').to_string(),
            token,
            agent: ureq::Agent::new_with_config(
                ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(60)))
                    .build(),
            ),
        }
    }

    fn finish(
        &self,
        r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Answer, String> {
        let mut r = r.map_err(|e| format!("{}: {e}", self.url))?;
        let status = r.status().as_u16();
        let body = r
            .body_mut()
            .read_to_string()
            .map_err(|e| format!("{}: {e}", self.url))?;
        Ok(Answer { status, body })
    }

    /// `GET path`.
    ///
    /// # Errors
    /// The connection's error.
    pub fn get(&self, path: &str) -> Result<Answer, String> {
        let mut req = self.agent.get(format!("{}{path}", self.url));
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        self.finish(req.call())
    }

    /// `POST path` with a JSON body.
    ///
    /// # Errors
    /// The connection's error.
    pub fn post(&self, path: &str, body: &str) -> Result<Answer, String> {
        let mut req = self
            .agent
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/json");
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        self.finish(req.send(body))
    }

    /// Applies the change set in `text`.
    ///
    /// # Errors
    /// The connection's error.
    pub fn apply(&self, text: &str) -> Result<Answer, String> {
        self.post("/v1/changes", text)
    }

    /// One object.
    ///
    /// # Errors
    /// The connection's error.
    pub fn object(&self, key: &str) -> Result<Answer, String> {
        let mut k = String::new();
        for b in key.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                k.push(b as char);
            } else {
                k.push_str(&format!("%{b:02X}"));
            }
        }
        self.get(&format!("/v1/objects/{k}"))
    }

    /// The status summary.
    ///
    /// # Errors
    /// The connection's error.
    pub fn status(&self) -> Result<Answer, String> {
        self.get("/v1/status")
    }
}
