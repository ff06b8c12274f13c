//! The audit log's hash chain: each record carries an HMAC-SHA256 over its own fields and the
//! previous record's hash, so changing, removing or reordering any record breaks every hash after
//! it. The HMAC key is derived from the deployment's signing secret, which is not in the
//! database: someone who can write to the database alone cannot forge a consistent chain.
//!
//! Fields are hashed length-prefixed (never plain concatenation), so no two different records
//! hash the same input.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::records::AuditRecord;

/// The hash of "no previous record".
pub const GENESIS: [u8; 32] = [0; 32];

/// Computes and checks audit record hashes.
#[derive(Clone)]
pub struct AuditSealer {
    keyed: Hmac<Sha256>,
}

impl std::fmt::Debug for AuditSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditSealer(<secret>)")
    }
}

/// Where a chain stopped verifying.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    /// A record's hash does not match its contents.
    #[error("record {seq} does not match its hash (it was altered)")]
    Altered {
        /// The record.
        seq: u64,
    },
    /// A record does not point at the one before it.
    #[error("record {seq} does not follow record {previous} (a record was removed or reordered)")]
    Unlinked {
        /// The record.
        seq: u64,
        /// The record before it in the log.
        previous: u64,
    },
    /// The chain ends somewhere other than the head the organization row records.
    #[error("the log ends at record {last}, but its head says {head} (records were removed)")]
    Truncated {
        /// The last record present.
        last: u64,
        /// The head's sequence number.
        head: u64,
    },
}

impl AuditSealer {
    /// A sealer keyed with `secret` (the deployment's signing secret).
    pub fn new(secret: &[u8]) -> Self {
        // Domain-separate the audit key from other uses of the signing secret.
        let mut derive = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        derive.update(b"keyplane audit chain v1");
        let key = derive.finalize().into_bytes();
        let keyed = <Hmac<Sha256> as KeyInit>::new_from_slice(&key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        AuditSealer { keyed }
    }

    /// The hash of `record` given its `prev_hash` (its own `hash` field is ignored), in the
    /// record's format: format 1 (records written before users existed) seals what it always
    /// did, so those records still verify; format 2 starts with its format tag and also seals
    /// the acting user and the member concerned.
    pub fn hash(&self, record: &AuditRecord) -> [u8; 32] {
        let mut mac = self.keyed.clone();
        let mut field = |bytes: &[u8]| {
            mac.update(&(bytes.len() as u64).to_le_bytes());
            mac.update(bytes);
        };
        if record.format >= 2 {
            field(b"keyplane audit record");
            field(&[record.format]);
        }
        field(&record.prev_hash);
        field(&record.org_id.to_bytes());
        field(&record.seq.to_le_bytes());
        field(&record.at.as_millis().to_le_bytes());
        field(record.action.as_str().as_bytes());
        let actor = record.actor_key_id.map(|id| id.to_bytes());
        let target = record.target_key_id.map(|id| id.to_bytes());
        for value in [
            actor.as_ref().map(|bytes| bytes.as_slice()),
            target.as_ref().map(|bytes| bytes.as_slice()),
            record.ip.as_deref().map(str::as_bytes),
            record.user_agent.as_deref().map(str::as_bytes),
        ] {
            // Absent and empty must differ: a presence byte, then the value.
            match value {
                None => field(b"\x00"),
                Some(bytes) => {
                    field(b"\x01");
                    field(bytes);
                }
            }
        }
        field(record.request_id.as_bytes());
        field(record.details.to_string().as_bytes());
        if record.format >= 2 {
            for user in [record.actor_user_id, record.target_user_id] {
                match user {
                    None => field(b"\x00"),
                    Some(id) => {
                        field(b"\x01");
                        field(&id.to_bytes());
                    }
                }
            }
        }
        mac.finalize().into_bytes().into()
    }

    /// Checks a whole chain (records in sequence order) against the head stored for it.
    /// Returns the number of records verified.
    pub fn verify(
        &self,
        records: &[AuditRecord],
        head_seq: u64,
        head_hash: &[u8; 32],
    ) -> Result<u64, ChainBreak> {
        let mut verifier = ChainVerifier::new(self);
        for record in records {
            verifier.push(record);
        }
        verifier.finish(head_seq, head_hash)
    }
}

/// Verifies a chain fed to it a record at a time, in sequence order, holding only the last
/// record's hash: the whole log never needs to be in memory.
#[derive(Debug)]
pub struct ChainVerifier<'a> {
    sealer: &'a AuditSealer,
    previous_hash: [u8; 32],
    previous_seq: u64,
    seen: u64,
    broken: Option<ChainBreak>,
}

impl<'a> ChainVerifier<'a> {
    /// A verifier at the start of a chain.
    pub fn new(sealer: &'a AuditSealer) -> Self {
        ChainVerifier {
            sealer,
            previous_hash: GENESIS,
            previous_seq: 0,
            seen: 0,
            broken: None,
        }
    }

    /// Checks the next record. After the first break, records are only counted.
    pub fn push(&mut self, record: &AuditRecord) {
        self.seen += 1;
        if self.broken.is_some() {
            return;
        }
        if record.seq != self.previous_seq + 1 || record.prev_hash != self.previous_hash {
            self.broken = Some(ChainBreak::Unlinked {
                seq: record.seq,
                previous: self.previous_seq,
            });
        } else if self.sealer.hash(record) != record.hash {
            self.broken = Some(ChainBreak::Altered { seq: record.seq });
        } else {
            self.previous_hash = record.hash;
            self.previous_seq = record.seq;
        }
    }

    /// Records pushed so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// The sequence number of the last record verified (0 before any).
    pub fn last_seq(&self) -> u64 {
        self.previous_seq
    }

    /// The outcome, given the head stored for the chain: the number of records verified, or
    /// where it first broke.
    pub fn finish(self, head_seq: u64, head_hash: &[u8; 32]) -> Result<u64, ChainBreak> {
        if let Some(broken) = self.broken {
            return Err(broken);
        }
        if self.previous_seq != head_seq || &self.previous_hash != head_hash {
            return Err(ChainBreak::Truncated {
                last: self.previous_seq,
                head: head_seq,
            });
        }
        Ok(self.previous_seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::AuditAction;
    use keyplane_shared::Timestamp;
    use keyplane_shared::ids::{KeyId, OrgId, UserId};

    #[test]
    fn a_format_one_record_hashes_as_before_users_existed() {
        // The hash a format-1 record had when it was written (before the user fields): records
        // already in a database must still verify.
        let sealer = AuditSealer::new(b"secret");
        let mut record = chain(&sealer, 1).remove(0);
        assert_eq!(record.format, 1);
        let before = sealer.hash(&record);
        // The user fields are not part of a format-1 hash...
        record.actor_user_id = Some(UserId::from_bytes([5; 16]));
        assert_eq!(sealer.hash(&record), before);
        // ...but they are of a format-2 one, and a record cannot be re-labelled either way.
        record.format = 2;
        let sealed = sealer.hash(&record);
        assert_ne!(sealed, before);
        record.actor_user_id = Some(UserId::from_bytes([6; 16]));
        assert_ne!(sealer.hash(&record), sealed);
    }

    #[test]
    fn a_format_one_hash_is_the_one_written_before_this_version() {
        // Computed by the format-1 code (before users existed) for this record and secret.
        let sealer = AuditSealer::new(b"secret");
        let record = chain(&sealer, 1).remove(0);
        assert_eq!(hex(&sealer.hash(&record)), FORMAT_ONE_HASH);
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    const FORMAT_ONE_HASH: &str =
        "199dd3ab1dabfb3725f6164f58f03da12b84a7f55f3b92837246cdaa343b66e2";

    fn chain(sealer: &AuditSealer, n: u64) -> Vec<AuditRecord> {
        let mut records: Vec<AuditRecord> = Vec::new();
        for seq in 1..=n {
            let mut record = AuditRecord {
                org_id: OrgId::from_bytes([1; 16]),
                seq,
                at: Timestamp(1_700_000_000_000 + seq as i64),
                action: AuditAction::KeyCreated,
                // Records before users existed (format 1) and after (2) in one chain.
                format: if seq % 2 == 0 { 2 } else { 1 },
                actor_key_id: Some(KeyId::from_bytes([2; 16])),
                actor_user_id: (seq % 2 == 0).then_some(UserId::from_bytes([9; 16])),
                target_key_id: Some(KeyId::from_bytes([seq as u8; 16])),
                target_user_id: None,
                ip: Some("203.0.113.7".into()),
                user_agent: None,
                request_id: format!("req_{seq}"),
                details: serde_json::json!({ "name": format!("key {seq}") }),
                prev_hash: records.last().map_or(GENESIS, |r| r.hash),
                hash: [0; 32],
            };
            record.hash = sealer.hash(&record);
            records.push(record);
        }
        records
    }

    #[test]
    fn an_intact_chain_verifies() {
        let sealer = AuditSealer::new(b"secret");
        let records = chain(&sealer, 5);
        assert_eq!(sealer.verify(&records, 5, &records[4].hash), Ok(5));
        assert_eq!(sealer.verify(&[], 0, &GENESIS), Ok(0));
    }

    #[test]
    fn altering_removing_or_truncating_a_record_is_detected() {
        let sealer = AuditSealer::new(b"secret");
        let records = chain(&sealer, 5);
        let head = records[4].hash;

        let mut altered = records.clone();
        altered[2].details = serde_json::json!({ "name": "forged" });
        assert_eq!(
            sealer.verify(&altered, 5, &head),
            Err(ChainBreak::Altered { seq: 3 })
        );

        let mut nulled = records.clone();
        nulled[1].user_agent = Some(String::new());
        assert_eq!(
            sealer.verify(&nulled, 5, &head),
            Err(ChainBreak::Altered { seq: 2 })
        );

        let mut removed = records.clone();
        removed.remove(1);
        assert_eq!(
            sealer.verify(&removed, 5, &head),
            Err(ChainBreak::Unlinked {
                seq: 3,
                previous: 1
            })
        );

        assert_eq!(
            sealer.verify(&records[..4], 5, &head),
            Err(ChainBreak::Truncated { last: 4, head: 5 })
        );
    }

    #[test]
    fn a_chain_fed_a_record_at_a_time_reports_its_first_break_and_counts_the_rest() {
        let sealer = AuditSealer::new(b"secret");
        let records = chain(&sealer, 6);
        let head = records[5].hash;
        let mut intact = ChainVerifier::new(&sealer);
        for record in &records {
            intact.push(record);
        }
        assert_eq!((intact.seen(), intact.last_seq()), (6, 6));
        assert_eq!(intact.finish(6, &head), Ok(6));

        let mut altered = records.clone();
        altered[4].details = serde_json::json!({ "name": "forged" });
        altered[1].ip = None;
        let mut verifier = ChainVerifier::new(&sealer);
        for record in &altered {
            verifier.push(record);
        }
        assert_eq!(verifier.seen(), 6, "every record is counted");
        assert_eq!(verifier.last_seq(), 1, "the last one verified");
        assert_eq!(
            verifier.finish(6, &head),
            Err(ChainBreak::Altered { seq: 2 }),
            "the first break"
        );
    }

    #[test]
    fn a_chain_rehashed_without_the_secret_does_not_verify() {
        let sealer = AuditSealer::new(b"secret");
        let forger = AuditSealer::new(b"guess");
        let mut records = chain(&sealer, 3);
        records[1].details = serde_json::json!({ "name": "forged" });
        for i in 1..3 {
            records[i].prev_hash = records[i - 1].hash;
            records[i].hash = forger.hash(&records[i]);
        }
        let head = records[2].hash;
        assert_eq!(
            sealer.verify(&records, 3, &head),
            Err(ChainBreak::Altered { seq: 2 })
        );
    }
}
