//! Tests of request and answer signing: what verifies, and every alteration that must not.

use super::*;

fn secret(byte: u8) -> SyncSecret {
    SyncSecret::new(vec![byte; 32]).expect("32 bytes")
}

const NOW: i64 = 1_800_000_000;

fn push(body: &[u8]) -> SignedRequest<'_> {
    SignedRequest {
        method: "POST",
        path_and_query: "/__keyplane/sync",
        body,
    }
}

#[test]
fn a_signature_verifies_and_returns_its_nonce() {
    let header = sign(&secret(1), NOW, [7; NONCE_LEN], &push(b"abc"));
    assert_eq!(
        verify(&secret(1), Some(&header), NOW + 10, &push(b"abc")),
        Ok(Verified {
            timestamp: NOW,
            nonce: [7; NONCE_LEN]
        })
    );
}

#[test]
fn any_altered_part_fails() {
    let request = push(b"abc");
    let header = sign(&secret(1), NOW, [7; NONCE_LEN], &request);
    let refused = |secret: &SyncSecret, header: &str, request: &SignedRequest<'_>| {
        verify(secret, Some(header), NOW, request)
    };
    assert_eq!(
        refused(&secret(2), &header, &request),
        Err(SyncAuthError::BadSignature)
    );
    assert_eq!(
        refused(&secret(1), &header, &push(b"abd")),
        Err(SyncAuthError::BadSignature)
    );
    let other_path = SignedRequest {
        path_and_query: "/__keyplane/sync?x=1",
        ..request
    };
    assert_eq!(
        refused(&secret(1), &header, &other_path),
        Err(SyncAuthError::BadSignature)
    );
    let other_method = SignedRequest {
        method: "PUT",
        ..request
    };
    assert_eq!(
        refused(&secret(1), &header, &other_method),
        Err(SyncAuthError::BadSignature)
    );
    let other_nonce = header.replace(&hex(&[7; NONCE_LEN]), &hex(&[8; NONCE_LEN]));
    assert_eq!(
        refused(&secret(1), &other_nonce, &request),
        Err(SyncAuthError::BadSignature)
    );
    let other_time = header.replacen(&NOW.to_string(), &(NOW + 1).to_string(), 1);
    assert_eq!(
        refused(&secret(1), &other_time, &request),
        Err(SyncAuthError::BadSignature)
    );
}

#[test]
fn the_window_is_enforced_both_ways() {
    let header = sign(&secret(1), NOW, [7; NONCE_LEN], &push(b""));
    let at = |now: i64| verify(&secret(1), Some(&header), now, &push(b""));
    assert!(at(NOW + REPLAY_WINDOW_SECS).is_ok());
    assert!(at(NOW - REPLAY_WINDOW_SECS).is_ok());
    assert_eq!(at(NOW + REPLAY_WINDOW_SECS + 1), Err(SyncAuthError::Stale));
    assert_eq!(at(NOW - REPLAY_WINDOW_SECS - 1), Err(SyncAuthError::Stale));
    assert_eq!(at(i64::MIN), Err(SyncAuthError::Stale));
}

#[test]
fn the_precheck_refuses_missing_malformed_and_stale_headers_whatever_the_body() {
    let header = sign(&secret(1), NOW, [7; NONCE_LEN], &push(b"body"));
    assert_eq!(precheck(Some(&header), NOW), Ok(()));
    assert_eq!(precheck(None, NOW), Err(SyncAuthError::Missing));
    assert_eq!(precheck(Some("t=1"), NOW), Err(SyncAuthError::Malformed));
    assert_eq!(
        precheck(Some(&header), NOW + REPLAY_WINDOW_SECS + 1),
        Err(SyncAuthError::Stale)
    );
    // It does not check the MAC: that needs the body, which `verify` then checks.
    let forged = format!("{}0", &header[..header.len() - 1]);
    assert_eq!(precheck(Some(&forged), NOW), Ok(()));
    assert_eq!(
        verify(&secret(1), Some(&forged), NOW, &push(b"body")),
        Err(SyncAuthError::BadSignature)
    );
}

#[test]
fn malformed_headers_are_refused_without_panicking() {
    let good = sign(&secret(1), NOW, [7; NONCE_LEN], &push(b""));
    let mac = good.rsplit_once("v1=").map(|(_, mac)| mac).unwrap_or("");
    let nonce = hex(&[7; NONCE_LEN]);
    for bad in [
        String::new(),
        "garbage".into(),
        format!("t={NOW},n={nonce}"),
        format!("t={NOW},n={nonce},v1={mac},x=1"),
        format!("n={nonce},t={NOW},v1={mac}"),
        format!("t=-5,n={nonce},v1={mac}"),
        format!("t=99999999999999999999,n={nonce},v1={mac}"),
        format!("t={NOW},n=zz,v1={mac}"),
        format!("t={NOW},n={nonce},v1={}", mac.to_uppercase()),
        format!("t={NOW},n={nonce},v1={}", &mac[..10]),
        "t=é,n=é,v1=é".into(),
    ] {
        assert_eq!(
            verify(&secret(1), Some(&bad), NOW, &push(b"")),
            Err(SyncAuthError::Malformed),
            "{bad}"
        );
    }
    assert_eq!(
        verify(&secret(1), None, NOW, &push(b"")),
        Err(SyncAuthError::Missing)
    );
}

#[test]
fn short_secrets_are_refused_and_debug_hides_the_secret() {
    assert!(matches!(
        SyncSecret::new(vec![1; 31]),
        Err(SyncAuthError::WeakSecret)
    ));
    assert_eq!(format!("{:?}", secret(0x41)), "SyncSecret(<redacted>)");
}

fn answer<'a>(status: u16, head: &'a str, body: &'a [u8]) -> SignedResponse<'a> {
    SignedResponse {
        status,
        fields: ["hst_x", head, "", "ab"],
        body,
    }
}

#[test]
fn an_answer_verifies_only_for_the_request_it_answers() {
    let nonce = [3; NONCE_LEN];
    let header = sign_response(&secret(1), NOW, &nonce, &answer(200, "5", b"body"));
    let check = |nonce: &[u8; NONCE_LEN], response: &SignedResponse<'_>| {
        verify_response(&secret(1), Some(&header), NOW + 1, nonce, response)
    };
    assert_eq!(check(&nonce, &answer(200, "5", b"body")), Ok(()));
    // Replayed to another request, or altered in status, a field or the body: refused.
    assert_eq!(
        check(&[4; NONCE_LEN], &answer(200, "5", b"body")),
        Err(SyncAuthError::BadSignature)
    );
    assert_eq!(
        check(&nonce, &answer(409, "5", b"body")),
        Err(SyncAuthError::BadSignature)
    );
    assert_eq!(
        check(&nonce, &answer(200, "6", b"body")),
        Err(SyncAuthError::BadSignature)
    );
    assert_eq!(
        check(&nonce, &answer(200, "5", b"bodz")),
        Err(SyncAuthError::BadSignature)
    );
    // A field's value cannot slide into the next one.
    let shifted = SignedResponse {
        status: 200,
        fields: ["hst_x", "5", "ab", ""],
        body: b"body",
    };
    assert_eq!(check(&nonce, &shifted), Err(SyncAuthError::BadSignature));
    assert_eq!(
        verify_response(
            &secret(2),
            Some(&header),
            NOW,
            &nonce,
            &answer(200, "5", b"body")
        ),
        Err(SyncAuthError::BadSignature)
    );
}

#[test]
fn unsigned_malformed_and_stale_answers_are_refused() {
    let nonce = [3; NONCE_LEN];
    let response = answer(200, "1", b"");
    let verify = |header: Option<&str>, now: i64| {
        verify_response(&secret(1), header, now, &nonce, &response)
    };
    assert_eq!(verify(None, NOW), Err(SyncAuthError::Missing));
    for bad in ["", "t=1", "v1=00", "t=x,v1=00", "t=1,v1=zz"] {
        assert_eq!(
            verify(Some(bad), NOW),
            Err(SyncAuthError::Malformed),
            "{bad}"
        );
    }
    let header = sign_response(&secret(1), NOW, &nonce, &response);
    assert_eq!(
        verify(Some(&header), NOW + REPLAY_WINDOW_SECS + 1),
        Err(SyncAuthError::Stale)
    );
}

#[test]
fn the_nonce_of_a_request_header_is_read_back() {
    let header = sign(&secret(1), NOW, [9; NONCE_LEN], &push(b""));
    assert_eq!(nonce_of(&header), Some([9; NONCE_LEN]));
    assert_eq!(nonce_of("garbage"), None);
}

#[test]
fn fresh_nonces_differ() {
    let a = sign_now(&secret(1), NOW, &push(b"")).expect("CSPRNG");
    let b = sign_now(&secret(1), NOW, &push(b"")).expect("CSPRNG");
    assert_ne!(a, b);
}

#[test]
fn an_answer_checked_in_pieces_passes_only_whole_and_unaltered() {
    let nonce = [7u8; NONCE_LEN];
    let body: Vec<u8> = (0..5_000u32).map(|n| (n % 251) as u8).collect();
    let header = sign_response(&secret(1), NOW, &nonce, &answer(200, "5", &body));
    let check = |pieces: &[&[u8]]| {
        let mut check = ResponseCheck::start(
            &secret(1),
            Some(&header),
            NOW,
            &nonce,
            &answer(200, "5", &[]),
        )?;
        for piece in pieces {
            check.body(piece);
        }
        check.finish()
    };
    assert_eq!(check(&[&body]), Ok(()));
    assert_eq!(
        check(&[&body[..1], &body[1..4_000], &body[4_000..]]),
        Ok(())
    );
    assert_eq!(
        check(&[&body[..4_999]]),
        Err(SyncAuthError::BadSignature),
        "a body cut short"
    );
    let mut altered = body.clone();
    altered[4_321] ^= 1;
    assert_eq!(
        check(&[&altered[..2_000], &altered[2_000..]]),
        Err(SyncAuthError::BadSignature)
    );
    assert_eq!(
        ResponseCheck::start(&secret(1), None, NOW, &nonce, &answer(200, "5", &[])).err(),
        Some(SyncAuthError::Missing)
    );
}
