//! Keeping tokens out of everything a check shows: the token given or obtained, and the value
//! of any `token=`-like query parameter of a URL, become `***` in messages, URLs and failures.
//!
//! Not here: the JUnit report's own redaction of the run's secrets ([crate::junit::redact]).

use super::WsFailure;

/// Removes secrets from text: each given token, and the value of any `token=`-like query
/// parameter (`token`, `access_token`, `auth`, `key`, ...).
pub fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_owned();
    for secret in secrets {
        if !secret.is_empty() {
            out = out.replace(secret, "***");
        }
    }
    let mut result = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(position) = rest.find(['?', '&']) {
        let (before, after) = rest.split_at(position + 1);
        result.push_str(before);
        let end = after.find(['&', ' ', '#', '\n']).unwrap_or(after.len());
        let pair = &after[..end];
        match pair.split_once('=') {
            Some((key, value)) if is_secret_key(key) && !value.is_empty() => {
                result.push_str(key);
                result.push_str("=***");
            }
            _ => result.push_str(pair),
        }
        rest = &after[end..];
    }
    result.push_str(rest);
    result
}

fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["token", "auth", "key", "secret", "password", "jwt", "sig"]
        .iter()
        .any(|word| key.contains(word))
}

pub(super) fn scrub_failure(failure: WsFailure, secrets: &[String]) -> WsFailure {
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    match failure {
        WsFailure::ErrorEvent { event } => WsFailure::ErrorEvent {
            event: scrub(&event, &secrets),
        },
        WsFailure::Malformed { detail, frame } => WsFailure::Malformed {
            detail,
            frame: scrub(&frame, &secrets),
        },
        WsFailure::Closed {
            code,
            reason,
            waiting_for,
        } => WsFailure::Closed {
            code,
            reason: scrub(&reason, &secrets),
            waiting_for,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_hides_tokens_and_token_parameters() {
        assert_eq!(
            scrub("ws://h/ws?token=abc.def&x=1", &[]),
            "ws://h/ws?token=***&x=1"
        );
        assert_eq!(
            scrub("ws://h/ws?x=1&access_token=zz", &[]),
            "ws://h/ws?x=1&access_token=***"
        );
        assert_eq!(
            scrub("bad token s3cr3t here", &["s3cr3t"]),
            "bad token *** here"
        );
        assert_eq!(scrub("ws://h/ws", &[]), "ws://h/ws");
    }
}
