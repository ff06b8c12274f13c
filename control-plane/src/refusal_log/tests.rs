//! The coalescing of refused calls, on a hand-moved clock.

use super::*;

const T0: Timestamp = Timestamp(1_800_000_000_000);

fn context(key: KeyId, request: u32) -> AuditContext {
    AuditContext {
        actor: Some(key),
        request_id: format!("req_{request}"),
        ..AuditContext::default()
    }
}

fn key(n: u32) -> KeyId {
    let mut bytes = [0u8; 16];
    bytes[..4].copy_from_slice(&n.to_be_bytes());
    KeyId::from_bytes(bytes)
}

const ORG: OrgId = OrgId::from_bytes([7; 16]);

#[test]
fn a_window_records_its_first_refusal_at_once_and_counts_the_rest_until_it_closes() {
    let log = RefusalLog::default();
    let k = key(1);
    let first = log.note(ORG, k, "insufficient_scope", &context(k, 0), T0);
    assert_eq!(first.len(), 1);
    assert_eq!(
        first[0].record.details,
        json!({"reason": "insufficient_scope", "count": 1})
    );
    for i in 1..=3 {
        let at = T0.plus_millis(i64::from(i) * 1000);
        assert!(
            log.note(ORG, k, "insufficient_scope", &context(k, i), at)
                .is_empty()
        );
    }
    // Another reason is another window.
    assert_eq!(
        log.note(ORG, k, "revoked_api_key", &context(k, 9), T0)
            .len(),
        1
    );
    assert!(log.take_closed(T0.plus_millis(WINDOW_MS - 1)).is_empty());
    // The key's next refusal after the window writes the summary, then itself.
    let next = log.note(
        ORG,
        k,
        "insufficient_scope",
        &context(k, 4),
        T0.plus_millis(WINDOW_MS),
    );
    assert_eq!(next.len(), 2);
    assert_eq!(next[0].record.details["count"], 3);
    assert_eq!(
        next[0].record.details["last_at"],
        T0.plus_millis(3000).as_millis()
    );
    assert_eq!(next[0].record.context.request_id, "req_3", "the last one's");
    assert_eq!(next[1].record.details["count"], 1);
    // The other reason's window had nothing more: closing it writes nothing.
    assert!(log.take_closed(T0.plus_millis(WINDOW_MS)).is_empty());
    assert_eq!(log.tracked_keys(), 1);
}

#[test]
fn past_the_bound_refusals_count_per_organization_and_memory_stays_bounded() {
    let log = RefusalLog::default();
    let n = u32::try_from(MAX_TRACKED_KEYS).expect("fits");
    for i in 0..n {
        assert_eq!(
            log.note(ORG, key(i), "invalid_api_key", &context(key(i), i), T0)
                .len(),
            1
        );
    }
    assert_eq!(log.tracked_keys(), MAX_TRACKED_KEYS);
    // A tracked key still counts in its own window.
    assert!(
        log.note(ORG, key(0), "invalid_api_key", &context(key(0), 0), T0)
            .is_empty()
    );
    // Further keys: the first is recorded at once as an overflow, the rest counted.
    let first = log.note(ORG, key(n), "invalid_api_key", &context(key(n), n), T0);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].record.details["overflow"], true);
    assert_eq!(first[0].record.context.actor, Some(key(n)));
    for i in n + 1..n + 100 {
        assert!(
            log.note(ORG, key(i), "invalid_api_key", &context(key(i), i), T0)
                .is_empty()
        );
    }
    assert_eq!(log.tracked_keys(), MAX_TRACKED_KEYS, "bounded");
    let summaries = log.take_all();
    assert_eq!(summaries.len(), 2, "key 0's window and the overflow");
    let overflow = summaries
        .iter()
        .find(|s| s.record.details["overflow"] == true)
        .expect("the overflow's summary");
    assert_eq!(overflow.record.details["count"], 99);
    assert_eq!(overflow.record.context.actor, None, "many keys: none named");
    assert_eq!(log.tracked_keys(), 0);
    assert!(log.take_all().is_empty());
}

#[test]
fn records_kept_after_a_failed_write_are_bounded_and_the_oldest_go_first() {
    let log = RefusalLog::default();
    // Kept in the order of their refusals, whatever the order they failed in.
    let pending = |n: u32| PendingRecord {
        org: ORG,
        at: T0.plus_millis(i64::from(n)),
        record: FailedAuth {
            details: json!({"reason": "insufficient_scope", "count": 2}),
            context: context(key(n), n),
        },
    };
    let total = u32::try_from(MAX_UNWRITTEN).expect("small") + 5;
    log.keep_unwritten((100..total).map(pending).collect());
    log.keep_unwritten((0..100).map(pending).collect());
    let kept = log.take_closed(T0);
    assert_eq!(kept.len(), MAX_UNWRITTEN);
    assert_eq!(
        kept[0].record.context.request_id, "req_5",
        "the oldest five dropped"
    );
    assert_eq!(
        kept[0].record.details["last_at"],
        T0.plus_millis(5).as_millis()
    );
    assert!(log.take_all().is_empty(), "taken once");
}
