//! Page sizes of listings: `limit`, from 1 to a listing's maximum, with its default.

use super::invalid;
use crate::error::ApiError;

/// The bounds of one listing's `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageBounds {
    /// When `limit` is absent.
    pub default: u32,
    /// The largest accepted.
    pub max: u32,
}

/// Keys and audit records: 1 to 200, default 50.
pub const LISTING: PageBounds = PageBounds {
    default: 50,
    max: 200,
};

impl PageBounds {
    /// The page size `limit` asks for, within these bounds.
    pub fn size(self, limit: Option<u32>) -> Result<u32, ApiError> {
        match limit.unwrap_or(self.default) {
            limit if (1..=self.max).contains(&limit) => Ok(limit),
            other => Err(invalid(format!(
                "`limit` must be 1 to {}, got {other}",
                self.max
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_size_is_within_its_bounds_or_refused() {
        assert_eq!(LISTING.size(None).expect("default"), 50);
        assert_eq!(LISTING.size(Some(200)).expect("max"), 200);
        let refused = LISTING.size(Some(0)).expect_err("zero").to_string();
        assert!(refused.contains("1 to 200, got 0"), "{refused}");
        assert!(LISTING.size(Some(201)).is_err());
    }
}
