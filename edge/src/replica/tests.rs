//! Tests of the isolate copy: claims, the freshness bound, and answers overtaken by others.

use super::*;

fn loaded_at(read_at_ms: f64) {
    REPLICA.with(|replica| {
        let mut replica = replica.borrow_mut();
        replica.loaded = true;
        replica.read_at_ms = read_at_ms;
        replica.failed_until_ms = 0.0;
        replica.refresh = ClaimSlot::default();
    });
}

#[test]
fn one_background_refresh_at_a_time_unless_the_running_one_is_stale() {
    REPLICA.with(|replica| *replica.borrow_mut() = Replica::default());
    assert!(claim_refresh(5_000.0, 50.0).is_none(), "nothing loaded yet");
    loaded_at(4_900.0);
    let abandoned = claim_refresh(5_000.0, 50.0).expect("due");
    assert!(claim_refresh(5_010.0, 50.0).is_none(), "one is running");
    let newer = claim_refresh(5_000.0 + STALE_REFRESH_MS, 50.0)
        .expect("a claim the runtime abandoned gives way");
    // The abandoned refresh ending late does not free the newer one's claim.
    drop(abandoned);
    assert!(claim_refresh(5_000.0 + STALE_REFRESH_MS, 50.0).is_none());
    drop(newer);
    assert!(claim_refresh(5_000.0 + STALE_REFRESH_MS, 50.0).is_some());
}

#[test]
fn a_copy_decides_only_within_the_bound_from_when_its_read_was_sent() {
    REPLICA.with(|replica| *replica.borrow_mut() = Replica::default());
    assert_eq!(freshness(1_000.0, 100.0), Freshness::Unloaded);
    loaded_at(1_000.0);
    assert_eq!(freshness(1_099.0, 100.0), Freshness::Fresh);
    assert_eq!(freshness(1_100.0, 100.0), Freshness::Stale);
    assert!(
        claim_refresh(1_040.0, 50.0).is_none(),
        "not yet half the bound"
    );
    assert!(
        claim_refresh(1_050.0, 50.0).is_some(),
        "refreshed ahead from half the bound"
    );
}

fn remove(seq: u64) -> keyplane_shared::Change {
    keyplane_shared::Change {
        seq,
        op: keyplane_shared::ChangeOp::Remove(keyplane_shared::LookupDigest::from_bytes(
            [seq as u8; 32],
        )),
    }
}

fn table_at(seq: u64) -> KeyTable {
    let mut table = KeyTable::new();
    let changes: Vec<_> = (1..=seq).map(remove).collect();
    table.apply_all(&changes).expect("in order");
    table
}

#[test]
fn an_answer_overtaken_by_another_generations_snapshot_is_dropped() {
    let mut replica = Replica::default();
    assert!(replica.absorb(
        replica.send().0,
        StoreAnswer::Snapshot {
            generation: 7,
            table: Box::new(table_at(5))
        },
        1_000.0
    ));
    // Two reads leave, both asking for the changes after 5 of generation 7.
    let (first, after) = replica.send();
    let second = replica.send().0;
    assert_eq!((first.generation, after), (Some(7), 5));
    // The store reloaded (another history): the second read's snapshot lands first.
    assert!(replica.absorb(
        second,
        StoreAnswer::Snapshot {
            generation: 9,
            table: Box::new(table_at(3))
        },
        1_010.0
    ));
    // The first read's changes of generation 7 must not land on generation 9's table.
    let late = StoreAnswer::Changes {
        generation: 7,
        changes: vec![remove(6), remove(7)],
    };
    assert!(!replica.absorb(first, late, 1_005.0));
    assert_eq!((replica.generation, replica.table.applied_seq()), (9, 3));
    // Nor may a late snapshot of generation 7.
    let late = StoreAnswer::Snapshot {
        generation: 7,
        table: Box::new(table_at(8)),
    };
    assert!(!replica.absorb(first, late, 1_005.0));
    assert_eq!((replica.generation, replica.table.applied_seq()), (9, 3));
    assert_eq!(replica.read_at_ms, 1_010.0);
}

#[test]
fn within_a_generation_the_copy_never_goes_back_and_a_gap_asks_for_a_snapshot() {
    let mut replica = Replica::default();
    replica.absorb(
        replica.send().0,
        StoreAnswer::Snapshot {
            generation: 1,
            table: Box::new(table_at(5)),
        },
        1_000.0,
    );
    let older = StoreAnswer::Snapshot {
        generation: 1,
        table: Box::new(table_at(4)),
    };
    assert!(replica.absorb(replica.send().0, older, 1_100.0));
    assert_eq!(replica.table.applied_seq(), 5);
    let gap = StoreAnswer::Changes {
        generation: 1,
        changes: vec![remove(7)],
    };
    assert!(!replica.absorb(replica.send().0, gap, 1_200.0));
    assert_eq!(replica.read_at_ms, 1_100.0, "a gap does not count as fresh");
    let (sent, after) = replica.send();
    assert_eq!(
        (sent.generation, after),
        (None, 0),
        "the next read asks for a snapshot"
    );
    assert!(replica.absorb(
        sent,
        StoreAnswer::Snapshot {
            generation: 1,
            table: Box::new(table_at(7))
        },
        1_300.0
    ));
    assert_eq!(replica.send().0.generation, Some(1));
}

#[test]
fn after_a_failed_read_the_copy_is_used_until_the_retry() {
    REPLICA.with(|replica| *replica.borrow_mut() = Replica::default());
    loaded_at(1_000.0);
    REPLICA.with(|replica| {
        replica.borrow_mut().failed_until_ms = 2_000.0 + RETRY_AFTER_FAILURE_MS;
    });
    assert_eq!(freshness(2_500.0, 100.0), Freshness::Fresh);
    assert!(claim_refresh(2_500.0, 50.0).is_none());
    assert_eq!(
        freshness(2_000.0 + RETRY_AFTER_FAILURE_MS, 100.0),
        Freshness::Stale
    );
}

#[test]
fn a_copy_over_the_bound_is_dropped_before_a_build_and_no_earlier_read_lands_on_it() {
    let mut replica = Replica::default();
    let big = table_at(40);
    let bytes = big.heap_bytes();
    replica.absorb(
        replica.send().0,
        StoreAnswer::Snapshot {
            generation: 1,
            table: Box::new(big),
        },
        1_000.0,
    );
    // A read of the changes after 40 leaves; a later one is answered with a snapshot, while a
    // third read has brought the copy's freshness to 1,030.
    let changes_read = replica.send().0;
    let snapshot_read = replica.send().0;
    replica.read_at_ms = 1_030.0;
    // A copy within the bound stays, and keeps deciding while the new table is built.
    assert_eq!(replica.make_room(snapshot_read, bytes), snapshot_read);
    assert!(replica.loaded && replica.table.applied_seq() == 40);
    // A larger one goes before the build.
    let rebuilt = replica.make_room(snapshot_read, bytes - 1);
    assert_eq!(rebuilt.generation, None);
    assert_ne!(rebuilt.epoch, snapshot_read.epoch);
    assert!(!replica.loaded);
    assert_eq!((replica.table.len(), replica.table.applied_seq()), (0, 0));
    // The changes read against the dropped copy never load the empty one (they do not follow
    // its sequence, 0).
    let late = || StoreAnswer::Changes {
        generation: 1,
        changes: vec![remove(41)],
    };
    assert!(!replica.absorb(changes_read, late(), 1_010.0));
    assert!(!replica.loaded);
    // Not even an empty page of them, which follows any sequence.
    let empty = StoreAnswer::Changes {
        generation: 1,
        changes: Vec::new(),
    };
    assert!(!replica.absorb(changes_read, empty, 1_010.0));
    assert!(!replica.loaded, "an empty page loaded the dropped copy");
    // A snapshot read sent before the drop is overtaken: its table is not built.
    assert!(replica.overtaken(snapshot_read) && !replica.overtaken(rebuilt));
    // The snapshot's read was sent at 1,020: the new copy is as fresh as that read, not as the
    // dropped copy was (a revocation between 1,020 and 1,030 is not in it).
    let snapshot = StoreAnswer::Snapshot {
        generation: 1,
        table: Box::new(table_at(42)),
    };
    assert!(replica.absorb(rebuilt, snapshot, 1_020.0));
    assert_eq!(replica.read_at_ms, 1_020.0);
    assert_eq!(replica.table.applied_seq(), 42);
    // Nor do those changes land on the new table later.
    assert!(!replica.absorb(changes_read, late(), 1_040.0));
    assert_eq!(replica.table.applied_seq(), 42);
}
