//! The text form of a pepper set, as `KEYPLANE_PEPPERS` gives it to the control plane and to
//! every edge: `<id>:<base64 secret>` items, comma-separated, current first (standard base64
//! alphabet, padded). Blanks around an item, its id and its secret are ignored. One parser, so
//! the two sides cannot read one value two ways.

use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use thiserror::Error;

use super::{Pepper, PepperError, PepperId, PepperSet};

/// Why a `KEYPLANE_PEPPERS` value is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PepperTextError {
    /// Nothing but blanks.
    #[error("no pepper given")]
    Empty,
    /// An item without a `:`.
    #[error("expected `<id>:<base64 secret>` items")]
    NotAnItem,
    /// An id that is not 0..=255.
    #[error("a pepper id must be 0..=255")]
    BadId,
    /// A secret that is not base64.
    #[error("a pepper secret is not valid base64 (standard alphabet, padded)")]
    NotBase64,
    /// A secret too short, or an id given twice.
    #[error("{0}")]
    Pepper(#[from] PepperError),
}

impl FromStr for PepperSet {
    type Err = PepperTextError;

    fn from_str(text: &str) -> Result<Self, PepperTextError> {
        if text.trim().is_empty() {
            return Err(PepperTextError::Empty);
        }
        let mut peppers = text.split(',').map(|item| {
            let (id, secret) = item
                .trim()
                .split_once(':')
                .ok_or(PepperTextError::NotAnItem)?;
            let id = id
                .trim()
                .parse::<u8>()
                .map_err(|_| PepperTextError::BadId)?;
            let secret = BASE64
                .decode(secret.trim())
                .map_err(|_| PepperTextError::NotBase64)?;
            Ok(Pepper::new(PepperId(id), &secret)?)
        });
        let current = peppers.next().ok_or(PepperTextError::Empty)??;
        let older = peppers.collect::<Result<Vec<_>, PepperTextError>>()?;
        Ok(PepperSet::new(current, older)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(set: &PepperSet) -> Vec<u8> {
        set.iter().map(|pepper| pepper.id().0).collect()
    }

    #[test]
    fn a_set_reads_in_order_with_blanks_ignored() {
        let text = format!(
            "2:{},1:{}",
            BASE64.encode([1u8; 32]),
            BASE64.encode([2u8; 32])
        );
        let set: PepperSet = text.parse().expect("valid");
        assert_eq!(ids(&set), [2, 1]);
        let spaced = text.replace(',', " , ").replace(':', " : ");
        let set: PepperSet = format!("  {spaced}\n").parse().expect("blanks ignored");
        assert_eq!(ids(&set), [2, 1]);
    }

    #[test]
    fn each_malformed_value_names_its_problem() {
        let secret = BASE64.encode([7u8; 32]);
        let refused = |text: &str| text.parse::<PepperSet>().expect_err("refused");
        assert_eq!(refused(" "), PepperTextError::Empty);
        assert_eq!(refused("AAAA"), PepperTextError::NotAnItem);
        assert_eq!(refused(&format!("x:{secret}")), PepperTextError::BadId);
        assert_eq!(refused(&format!("256:{secret}")), PepperTextError::BadId);
        assert_eq!(refused("1:not base64!"), PepperTextError::NotBase64);
        assert!(matches!(
            refused("1:c2hvcnQ="),
            PepperTextError::Pepper(PepperError::TooShort(5))
        ));
        assert!(matches!(
            refused(&format!("1:{secret},1:{secret}")),
            PepperTextError::Pepper(PepperError::DuplicateId(1))
        ));
        assert_eq!(refused(&format!("1:{secret},")), PepperTextError::NotAnItem);
    }
}
