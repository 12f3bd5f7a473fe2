//! Endpoint URLs from the bases people configure, for the formats that hang off a station's
//! `/v1` (chat completions, Messages, Responses): `https://HOST` gets `/v1/TAIL`, a base
//! ending in `/v1` gets `/TAIL`, a URL that already ends in `/TAIL` is used as it is, and a
//! query (`?api-version=…`) is kept. The model list is the `models` beside the endpoint.

/// The endpoint `tail` (`/chat/completions`, `/messages`, `/responses`) at `base`.
pub fn endpoint_url(base: &str, tail: &str) -> String {
    let (path, query) = split_query(base);
    let trimmed = path.trim_end_matches('/');
    let url = if trimmed.ends_with(tail) {
        trimmed.to_owned()
    } else if trimmed.ends_with("/v1") {
        format!("{trimmed}{tail}")
    } else {
        format!("{trimmed}/v1{tail}")
    };
    with_query(url, query)
}

/// The `GET …/models` URL beside the endpoint `tail` at `base` (see `endpoint_url`).
pub fn models_url_beside(base: &str, tail: &str) -> String {
    let endpoint = endpoint_url(base, tail);
    let (path, query) = split_query(&endpoint);
    let url = match path.strip_suffix(tail) {
        Some(prefix) => format!("{prefix}/models"),
        None => format!("{path}/models"),
    };
    with_query(url, query)
}

fn split_query(url: &str) -> (&str, Option<&str>) {
    let url = url.trim();
    match url.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (url, None),
    }
}

fn with_query(url: String, query: Option<&str>) -> String {
    match query {
        Some(q) => format!("{url}?{q}"),
        None => url,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bases_and_endpoints() {
        for base in [
            "https://r.example",
            "https://r.example/",
            "https://r.example/v1",
            "https://r.example/v1/",
            "https://r.example/v1/messages",
        ] {
            assert_eq!(
                endpoint_url(base, "/messages"),
                "https://r.example/v1/messages"
            );
            assert_eq!(
                models_url_beside(base, "/messages"),
                "https://r.example/v1/models"
            );
        }
        assert_eq!(
            endpoint_url("https://r.example/openai/v1?api-version=2", "/responses"),
            "https://r.example/openai/v1/responses?api-version=2"
        );
        assert_eq!(
            models_url_beside("https://r.example/v1?x=1", "/responses"),
            "https://r.example/v1/models?x=1"
        );
    }
}
