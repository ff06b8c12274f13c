//! Tests of the usage buffer: bounds, refusal limits, flush claims and batches.

use super::*;
use keyplane_shared::Timestamp;
use keyplane_shared::ids::{KeyId, OrgId, RequestId};

fn event(key: bool) -> UsageEvent {
    UsageEvent::new(
        RequestId::from_bytes([1; 16]),
        key.then(|| (KeyId::from_bytes([2; 16]), OrgId::from_bytes([3; 16]))),
        Timestamp(1),
        "GET",
        "/x",
        200,
        None,
    )
}

#[test]
fn refusals_of_one_key_are_recorded_up_to_the_bound_and_counted_beyond() {
    BUFFER.with(|buffer| *buffer.borrow_mut() = Buffer::default());
    let bound = RateLimit::new(60, 5).expect("valid limit");
    for _ in 0..50 {
        let mut refused = event(true);
        refused.status = 401;
        record(refused, 10_000, Some(bound));
    }
    // Admitted requests are not subject to it (the key's own limit bounds them).
    for _ in 0..3 {
        record(event(true), 10_000, None);
    }
    let stats = stats();
    assert_eq!((stats.buffered, stats.suppressed), (5 + 3, 45));
    // A second later the bound has refilled by one (60 a minute).
    let mut later = event(true);
    later.status = 403;
    later.at = Timestamp(1_001);
    record(later, 10_000, Some(bound));
    assert_eq!(self::stats().buffered, 9);
    BUFFER.with(|buffer| *buffer.borrow_mut() = Buffer::default());
}

#[test]
fn a_full_buffer_drops_the_oldest_and_counts_them_and_keyless_events_are_only_counted() {
    for serial in 0..5 {
        let mut e = event(true);
        e.status = 200 + serial;
        record(e, 3, None);
    }
    record(event(false), 3, None);
    let stats = stats();
    assert_eq!(
        (stats.buffered, stats.dropped, stats.unattributed),
        (3, 2, 1)
    );
    let kept: Vec<u16> = BUFFER.with(|b| b.borrow().events.iter().map(|(_, e)| e.status).collect());
    assert_eq!(kept, vec![202, 203, 204]);
    let claim = claim_flush(2_000.0).expect("events are waiting");
    assert!(claim_flush(2_000.0).is_none(), "one flusher at a time");
    drop(claim);
    assert!(
        claim_flush(2_000.0).is_some(),
        "the claim is released when dropped"
    );
}

#[test]
fn nothing_to_send_claims_nothing() {
    assert!(claim_flush(0.0).is_none());
    assert_eq!(due_in(0.0, 1_000.0), None);
}

#[test]
fn a_stale_claim_gives_way_and_its_late_release_keeps_the_new_claim() {
    record(event(true), 10, None);
    let lost = claim_flush(2_000.0).expect("due");
    assert!(claim_flush(2_000.0 + STALE_CLAIM_MS - 1.0).is_none());
    let newer = claim_flush(2_000.0 + STALE_CLAIM_MS).expect("the old claim is stale");
    assert!(!lost.is_current(), "the superseded flusher stops");
    assert!(newer.is_current());
    drop(lost);
    assert!(
        claim_flush(2_000.0 + STALE_CLAIM_MS).is_none(),
        "the newer flusher still holds its claim"
    );
    drop(newer);
    assert!(claim_flush(2_000.0 + STALE_CLAIM_MS).is_some());
}

#[test]
fn batches_go_at_once_then_every_interval_and_back_off_after_failures() {
    record(event(true), 10_000, None);
    assert_eq!(
        due_in(5_000.0, 200.0),
        Some(0.0),
        "the first event goes at once"
    );
    let batch = next_batch("fra").expect("one event");
    assert_eq!(batch.count, 1);
    let sent: keyplane_shared::usage::UsageBatch =
        serde_json::from_slice(&batch.body).expect("a UsageBatch");
    assert_eq!(
        (sent.edge.as_str(), sent.events),
        ("fra", vec![event(true)])
    );
    let last = batch.last_serial;
    // Two more arrive while the batch is in flight: due one interval after the send.
    record(event(true), 10_000, None);
    record(event(true), 10_000, None);
    settle(&Ok(()), last, 5_010.0);
    assert_eq!((stats().sent, stats().buffered), (1, 2));
    assert_eq!(due_in(5_010.0, 200.0), Some(200.0));
    assert_eq!(due_in(5_300.0, 200.0), Some(0.0));
    // Failures keep the events and back off, 1 s then 2 s; no claim while backing off.
    let last = next_batch("fra").expect("two events").last_serial;
    let failed = Err(SendError::Retry("down".into()));
    settle(&failed, last, 6_000.0);
    assert_eq!(due_in(6_000.0, 200.0), Some(1_000.0));
    settle(&failed, last, 7_000.0);
    assert_eq!(due_in(7_000.0, 200.0), Some(2_000.0));
    assert_eq!((stats().buffered, stats().failures), (2, 2));
    assert!(claim_flush(8_999.0).is_none(), "backing off");
    assert!(claim_flush(9_000.0).is_some());
    // A refused batch is dropped and counted; the buffer is empty.
    settle(&Err(SendError::Refused(400)), last, 9_000.0);
    assert_eq!(
        (stats().dropped, stats().buffered, stats().failures),
        (2, 0, 0)
    );
    assert_eq!(due_in(9_000.0, 200.0), None);
}

#[test]
fn a_full_batch_does_not_wait_for_the_interval() {
    record(event(true), 10_000, None);
    let last = next_batch("fra").expect("one event").last_serial;
    settle(&Ok(()), last, 1_000.0);
    for _ in 0..MAX_BATCH_EVENTS + 5 {
        record(event(true), 10_000, None);
    }
    assert_eq!(due_in(1_001.0, 1_000.0), Some(0.0));
    let batch = next_batch("fra").expect("events");
    assert_eq!(batch.count, MAX_BATCH_EVENTS);
}

#[test]
fn backoff_doubles_up_to_thirty_seconds() {
    let delays: Vec<f64> = (1..=7).map(backoff_ms).collect();
    assert_eq!(
        delays,
        vec![
            1_000.0, 2_000.0, 4_000.0, 8_000.0, 16_000.0, 30_000.0, 30_000.0
        ]
    );
    assert_eq!(backoff_ms(u32::MAX), 30_000.0);
}
