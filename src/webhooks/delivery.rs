//! One HTTP attempt, and the one place that decides between success, retry and giving up.

use std::time::{Duration, SystemTime};

use rand::Rng;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;

use super::definition::Trigger;

/// A claimed delivery row.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: i64,
    pub trigger: String,
    pub event_id: String,
    pub body: String,
    /// Attempts including the one about to be made.
    pub attempts: i32,
}

/// The outcome of one attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A 2xx response.
    Delivered { status: u16 },
    /// A failure that may pass: a timeout, a connection error, 408, 429 or 5xx.
    Retry {
        status: Option<u16>,
        error: String,
        retry_after: Option<Duration>,
    },
    /// A failure that retrying cannot fix: another 4xx, or a 3xx (redirects are not
    /// followed).
    Fail { status: Option<u16>, error: String },
}

/// Builds the `webhook-id` header value. It is stable across retries, so receivers can use it
/// as an idempotency key.
pub fn webhook_id(trigger: &str, event_id: &str) -> String {
    format!("{trigger}:{event_id}")
}

/// Makes one attempt.
pub async fn attempt(http: &reqwest::Client, trigger: &Trigger, claimed: &Claimed) -> Outcome {
    let message_id = webhook_id(&trigger.name, &claimed.event_id);
    let timestamp = unix_seconds();
    let mut headers = HeaderMap::new();
    for (name, value) in &trigger.headers {
        headers.append(name.clone(), value.clone());
    }
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    insert_header(&mut headers, "webhook-id", &message_id);
    insert_header(&mut headers, "webhook-timestamp", &timestamp.to_string());
    if let Some(key) = &trigger.secret {
        let signature = key.sign(&message_id, timestamp, claimed.body.as_bytes());
        insert_header(&mut headers, "webhook-signature", &signature);
    }
    let request = http
        .post(trigger.webhook_url.clone())
        .headers(headers)
        .timeout(trigger.timeout)
        .body(claimed.body.clone());
    match request.send().await {
        Ok(response) => classify_response(response.status(), response.headers()),
        Err(err) => classify_error(&err),
    }
}

fn insert_header(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

fn unix_seconds() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or(0)
}

/// Maps a response status to an outcome.
pub fn classify_response(status: StatusCode, headers: &HeaderMap) -> Outcome {
    let code = status.as_u16();
    if status.is_success() {
        return Outcome::Delivered { status: code };
    }
    let error = format!("endpoint returned {status}");
    let retryable = status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error();
    if retryable {
        return Outcome::Retry {
            status: Some(code),
            error,
            retry_after: headers.get(RETRY_AFTER).and_then(parse_retry_after),
        };
    }
    let error = if status.is_redirection() {
        format!("{error}; redirects are not followed, so point webhook_url at the final address")
    } else {
        error
    };
    Outcome::Fail {
        status: Some(code),
        error,
    }
}

fn classify_error(err: &reqwest::Error) -> Outcome {
    let error = crate::report::error_chain(err);
    if err.is_builder() {
        return Outcome::Fail {
            status: None,
            error,
        };
    }
    // Timeouts, refused connections, resets and TLS failures may all pass.
    Outcome::Retry {
        status: None,
        error,
        retry_after: None,
    }
}

/// `Retry-After` as delay seconds or an HTTP date.
fn parse_retry_after(value: &HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = chrono::DateTime::parse_from_rfc2822(text).ok()?;
    let delay = date.timestamp() - unix_seconds();
    Some(Duration::from_secs(delay.max(0) as u64))
}

/// Retry timing.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Delay before the first retry; each further retry doubles it.
    pub base: Duration,
    /// Upper bound of a delay, `Retry-After` included.
    pub max: Duration,
}

impl RetryPolicy {
    /// The delay before the next attempt, after `attempts` attempts: exponential with up to
    /// 25 % jitter either way, or the endpoint's `Retry-After` when it asked for one; capped at
    /// `max`.
    pub fn delay(&self, attempts: i32, retry_after: Option<Duration>) -> Duration {
        if let Some(asked) = retry_after {
            return asked.min(self.max);
        }
        let exponent = attempts.saturating_sub(1).clamp(0, 30) as u32;
        let delay = self.base.saturating_mul(1 << exponent).min(self.max);
        let jitter = rand::thread_rng().gen_range(0.75..1.25);
        delay.mul_f64(jitter).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(code: u16) -> Outcome {
        classify_response(StatusCode::from_u16(code).unwrap(), &HeaderMap::new())
    }

    #[test]
    fn statuses_are_classified() {
        assert_eq!(outcome(200), Outcome::Delivered { status: 200 });
        assert_eq!(outcome(204), Outcome::Delivered { status: 204 });
        for code in [408, 429, 500, 502, 503] {
            assert!(matches!(outcome(code), Outcome::Retry { .. }), "{code}");
        }
        for code in [301, 302, 400, 401, 404, 410, 422] {
            assert!(matches!(outcome(code), Outcome::Fail { .. }), "{code}");
        }
    }

    #[test]
    fn retry_after_seconds_is_honoured() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        let Outcome::Retry { retry_after, .. } =
            classify_response(StatusCode::SERVICE_UNAVAILABLE, &headers)
        else {
            panic!("503 is retried");
        };
        assert_eq!(retry_after, Some(Duration::from_secs(7)));
    }

    #[test]
    fn delays_grow_and_cap() {
        let policy = RetryPolicy {
            base: Duration::from_secs(1),
            max: Duration::from_secs(60),
        };
        let first = policy.delay(1, None);
        assert!(first >= Duration::from_millis(750), "{first:?}");
        assert!(first <= Duration::from_millis(1250), "{first:?}");
        let fourth = policy.delay(4, None);
        assert!(fourth >= Duration::from_secs(6), "{fourth:?}");
        assert!(fourth <= Duration::from_secs(10), "{fourth:?}");
        assert!(policy.delay(40, None) <= Duration::from_secs(60));
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(600))),
            Duration::from_secs(60)
        );
    }
}
