//! Numbers an attacker sends: every numeric query parameter of every list endpoint, with values
//! at and past the edges of every integer type, answers 200 or 400, never a 500.

use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use serde_json::json;

use crate::backends;
use crate::helpers::TestApp;

backends!(
    out_of_range_numbers_in_list_queries_answer_400_never_500,
    cursors_forged_with_extreme_numbers_answer_200_or_400_never_500,
);

/// Numbers no parameter accepts: past i64 and u64, negative, fractional, exponent, hex.
const ABSURD: [&str; 11] = [
    "18446744073709551615",
    "18446744073709551616",
    "9223372036854775808",
    "99999999999999999999",
    "-1",
    "-9223372036854775809",
    "1.5",
    "1e3",
    "0x10",
    "NaN",
    "%20%2B1",
];

async fn out_of_range_numbers_in_list_queries_answer_400_never_500(app: TestApp) {
    let (_, record) = app
        .create_key(json!({"name": "k", "environment": "live"}))
        .await;
    let id = record["id"].as_str().expect("id");
    let keys = "/v1/keys".to_owned();
    let audit = "/v1/audit".to_owned();
    let usage = format!("/v1/keys/{id}/usage");
    // (endpoint, numeric parameter, whether it is a 32-bit or smaller number)
    let parameters = [
        (&keys, "limit", true),
        (&audit, "limit", true),
        (&audit, "cursor", false),
        (&usage, "limit", true),
        (&usage, "status", true),
    ];
    for (path, parameter, small) in parameters {
        let past_u32 = small.then_some("4294967296");
        for value in ABSURD.into_iter().chain(past_u32) {
            let url = format!("{path}?{parameter}={value}");
            let reply = app.get(&url).await;
            assert_eq!(
                (reply.status, reply.code()),
                (StatusCode::BAD_REQUEST, "invalid_request"),
                "{url}: {:?}",
                reply.body
            );
            assert!(
                reply.body["error"]["message"]
                    .as_str()
                    .is_some_and(|message| message.contains(&format!("`{parameter}`"))
                        || message.contains(parameter)),
                "{url}: the message names the parameter: {:?}",
                reply.body
            );
        }
    }
    // The largest values that are in range are answered, not refused (an audit cursor is 1 to
    // 18 digits, as the document says: the sequence never gets near 19).
    for url in [
        "/v1/audit?cursor=999999999999999999".to_owned(),
        "/v1/audit?cursor=0".to_owned(),
        "/v1/keys?limit=200".to_owned(),
        "/v1/audit?limit=200".to_owned(),
        format!("{usage}?limit=1000"),
    ] {
        let reply = app.get(&url).await;
        assert_eq!(reply.status, StatusCode::OK, "{url}: {:?}", reply.body);
    }
    // Limits just past their maximum are refused, like the absurd ones.
    for url in [
        "/v1/audit?cursor=1000000000000000000".to_owned(),
        "/v1/keys?limit=201".to_owned(),
        "/v1/audit?limit=201".to_owned(),
        format!("{usage}?limit=1001"),
        format!("{usage}?status=65536"),
    ] {
        let reply = app.get(&url).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{url}");
    }
}

async fn cursors_forged_with_extreme_numbers_answer_200_or_400_never_500(app: TestApp) {
    let (_, record) = app
        .create_key(json!({"name": "k", "environment": "live"}))
        .await;
    let id = record["id"].as_str().expect("id");
    for at in [i64::MIN, -1, 0, i64::MAX] {
        // A keys cursor: creation time (8 bytes) and key id (16).
        let mut key_cursor = at.to_be_bytes().to_vec();
        key_cursor.extend([0xff; 16]);
        let url = format!("/v1/keys?cursor={}", BASE64URL.encode(&key_cursor));
        let reply = app.get(&url).await;
        assert_eq!(reply.status, StatusCode::OK, "{url}: {:?}", reply.body);
        for from in [i64::MIN, 0, i64::MAX] {
            // A usage cursor: time (8), request id (16), window start (8).
            let mut usage_cursor = at.to_be_bytes().to_vec();
            usage_cursor.extend([0x01; 16]);
            usage_cursor.extend(from.to_be_bytes());
            let url = format!(
                "/v1/keys/{id}/usage?cursor={}",
                BASE64URL.encode(&usage_cursor)
            );
            let reply = app.get(&url).await;
            assert!(
                matches!(reply.status, StatusCode::OK | StatusCode::BAD_REQUEST),
                "{url}: {:?}",
                reply.body
            );
        }
    }
    // Times at the ends of what RFC 3339 can write.
    for (parameter, value) in [
        ("since", "0000-01-01T00:00:00Z"),
        ("until", "9999-12-31T23:59:59.999Z"),
    ] {
        let reply = app.get(&format!("/v1/audit?{parameter}={value}")).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{parameter}: {:?}",
            reply.body
        );
    }
    for (from, to) in [
        ("0000-01-01T00:00:00Z", "9999-12-31T23:59:59Z"),
        ("9999-12-31T23:59:59Z", "9999-12-31T23:59:59.999Z"),
    ] {
        let reply = app
            .get(&format!("/v1/keys/{id}/usage?from={from}&to={to}"))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{from}..{to}: {:?}",
            reply.body
        );
        let reply = app
            .get(&format!("/v1/keys/{id}/usage/daily?from={from}&to={to}"))
            .await;
        assert!(
            matches!(reply.status, StatusCode::OK | StatusCode::BAD_REQUEST),
            "daily {from}..{to}: {:?}",
            reply.body
        );
    }
    let reply = app
        .get("/v1/keys?last_used_before=9999-12-31T23:59:59Z")
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
}
