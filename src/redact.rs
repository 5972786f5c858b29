//! What may be shown of a value webhookd did not choose: URLs without their
//! credentials, and values a client sent cut to a length that cannot flood a
//! log line or an error body. Every place that prints such a value goes
//! through here.

use url::Url;

/// Longest part of a client-sent value echoed in an answer or a log line, in characters.
pub const ECHO_MAX_CHARS: usize = 100;

/// `url` as scheme, host, port and path: userinfo (`user:pass@`), query
/// (`?token=`) and fragment dropped.
pub fn url(url: &Url) -> String {
    let mut shown = url.clone();
    // Both fail only for URLs that cannot carry userinfo, which then have none.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// As `url`, for text that may not even parse as a URL (a configuration
/// error shows what was wrong without showing what it held).
pub fn url_str(raw: &str) -> String {
    // `user:pass@host` parses too, as scheme `user` with an opaque path. An
    // '@' past the host means a password holding '/', '?' or '#' ended the
    // host early: the "port" and "path" would be pieces of it.
    if let Some(parsed) =
        Url::parse(raw).ok().filter(|u| !u.cannot_be_a_base() && !u[url::Position::BeforePath..].contains('@'))
    {
        return url(&parsed);
    }
    let (scheme, rest) = match raw.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, raw),
    };
    // Everything up to the last '@' may be userinfo, whatever it holds.
    let rest = rest.rsplit_once('@').map_or(rest, |(_, after)| after);
    let rest = &rest[..rest.find(['?', '#']).unwrap_or(rest.len())];
    let shown = match scheme {
        Some(scheme) => format!("{scheme}://{rest}"),
        None => rest.to_owned(),
    };
    echo(&shown)
}

/// `value` cut to `ECHO_MAX_CHARS` characters, with an ellipsis and the
/// full length when it was longer.
pub fn echo(value: &str) -> String {
    match value.char_indices().nth(ECHO_MAX_CHARS) {
        None => value.to_owned(),
        Some((cut, _)) => format!("{}… ({} bytes)", &value[..cut], value.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_userinfo_query_and_fragment_but_keep_the_rest() {
        let parsed = Url::parse("https://user:PASS@ghe.example:8443/api/v3/?token=T#frag").expect("valid");
        assert_eq!(url(&parsed), "https://ghe.example:8443/api/v3/");
        assert_eq!(url_str("https://user:PASS@ghe.example/api?token=T"), "https://ghe.example/api");
        assert_eq!(url_str("https://api.github.com"), "https://api.github.com/");
    }

    #[test]
    fn unparseable_urls_are_redacted_too() {
        // An out-of-range port makes the URL invalid, yet it still holds a password.
        let shown = url_str("https://user:PASS@host:99999/x?token=T");
        assert_eq!(shown, "https://host:99999/x");
        assert_eq!(url_str("user:PASS@host/p?q=1"), "host/p");
        assert_eq!(url_str("nonsense"), "nonsense");
    }

    #[test]
    fn passwords_holding_url_delimiters_are_not_shown() {
        // Unencoded '/', '?' or '#' end the host part early; base64 passwords hold '/'.
        for raw in [
            "postgres://app:ab/cd+==@db:5432/hooks",
            "postgres://app:ab?cd@db:5432/hooks",
            "postgres://app:ab#cd@db:5432/hooks",
            // Digits first: parses, as host `app`, port 12 and path `/cd@db…`.
            "postgres://app:12/cd@db:5432/hooks",
            "https://x:12/cd@ghe.example/api",
        ] {
            let shown = url_str(raw);
            assert!(!shown.contains("ab") && !shown.contains("cd") && !shown.contains("12"), "{raw} -> {shown}");
            assert!(shown.contains("db:5432/hooks") || shown.contains("ghe.example/api"), "{raw} -> {shown}");
        }
    }

    #[test]
    fn long_values_are_cut_with_an_ellipsis() {
        assert_eq!(echo("text/plain"), "text/plain");
        let long = "é".repeat(100_000);
        let shown = echo(&long);
        assert!(shown.starts_with(&"é".repeat(ECHO_MAX_CHARS)), "{shown}");
        assert!(shown.ends_with("… (200000 bytes)"), "{shown}");
        assert!(shown.chars().count() < ECHO_MAX_CHARS + 20);
        assert_eq!(echo(&"x".repeat(ECHO_MAX_CHARS)), "x".repeat(ECHO_MAX_CHARS));
    }
}
