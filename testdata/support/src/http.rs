//! HTTP requests to the servers tests start, through [`ureq`]: plain HTTP to loopback only
//! (an address anywhere else is refused, so a test never sends traffic off the machine), no
//! proxy, no pooled connections (a test kills servers between requests), and every status
//! returned as a value rather than an error.

use std::time::Duration;

pub use ureq;

/// The status and the body of an answer.
pub type Answer = (u16, String);

/// How long a whole exchange may take unless the caller says otherwise.
const EXCHANGE: Duration = Duration::from_secs(5);

/// The agent every request goes through: 2 s to connect, `timeout` for the whole exchange.
fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .max_idle_connections(0)
        .timeout_connect(Some(Duration::from_secs(2)))
        .timeout_global(Some(timeout))
        .user_agent("berth-tests")
        .build()
        .into()
}

/// Refuses `url` unless it is plain HTTP to 127.0.0.1.
fn loopback(url: &str) -> Result<(), String> {
    let authority = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("not an http:// URL: {url}"))?;
    let host = authority.split(['/', ':']).next().unwrap_or_default();
    if host == "127.0.0.1" {
        Ok(())
    } else {
        Err(format!(
            "{url} is not on 127.0.0.1; tests only talk to loopback"
        ))
    }
}

fn answer(
    url: &str,
    sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<Answer, String> {
    let mut response = sent.map_err(|e| format!("{url}: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("{url}: reading the body: {e}"))?;
    Ok((status, body))
}

/// GETs `url` (on 127.0.0.1): the status and the body.
pub fn get(url: &str) -> Result<Answer, String> {
    get_within(url, EXCHANGE)
}

/// GETs `url` (on 127.0.0.1), giving up after `timeout`: the status and the body.
pub fn get_within(url: &str, timeout: Duration) -> Result<Answer, String> {
    loopback(url)?;
    answer(url, agent(timeout).get(url).call())
}

/// POSTs the JSON text `body` to `url` (on 127.0.0.1), sent as it is (even when it is not
/// valid JSON): the status and the body.
pub fn post_json(url: &str, body: &str) -> Result<Answer, String> {
    loopback(url)?;
    answer(
        url,
        agent(EXCHANGE)
            .post(url)
            .header("Content-Type", "application/json")
            .send(body),
    )
}

/// GETs `{endpoint}/models` for an OpenAI-style endpoint URL such as
/// `http://127.0.0.1:8080/v1`.
pub fn get_models(endpoint: &str) -> Result<Answer, String> {
    get(&format!("{}/models", endpoint.trim_end_matches('/')))
}
