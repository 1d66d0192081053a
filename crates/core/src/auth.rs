//! Bearer-token checks for slate's HTTP endpoints (the analyst API, event ingest).

use axum::http::{HeaderMap, header};

/// Whether the headers carry `Authorization: Bearer <expected>` (scheme case-insensitive, as
/// RFC 7235 has it). The token is compared without an early exit on the first differing byte,
/// so response timing reveals at most its length.
pub fn bearer_authorized(headers: &HeaderMap, expected: &str) -> bool {
    let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else { return false };
    let Some((scheme, token)) = value.split_once(' ') else { return false };
    scheme.eq_ignore_ascii_case("bearer") && same_bytes(token.trim().as_bytes(), expected.as_bytes())
}

/// Equal lengths and no differing byte, looking at every byte whatever it finds.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    std::hint::black_box(a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y))) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_auth(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn bearer_tokens_must_match_exactly() {
        let token = "0123456789abcdef0123";
        assert!(bearer_authorized(&with_auth("Bearer 0123456789abcdef0123"), token));
        assert!(bearer_authorized(&with_auth("bearer 0123456789abcdef0123"), token));
        assert!(!bearer_authorized(&with_auth("Bearer 0123456789abcdef0124"), token));
        assert!(!bearer_authorized(&with_auth("Bearer 0123456789abcdef012"), token), "a prefix is not the token");
        assert!(!bearer_authorized(&with_auth("Basic 0123456789abcdef0123"), token));
        assert!(!bearer_authorized(&with_auth("0123456789abcdef0123"), token));
        assert!(!bearer_authorized(&HeaderMap::new(), token));
    }
}
