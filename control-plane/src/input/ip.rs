//! Client addresses in filters: as the edge reports them (at most [`MAX_IP_BYTES`] bytes).

pub use keyplane_shared::usage::MAX_IP_BYTES;

use super::invalid;
use crate::error::ApiError;

/// A client address to match exactly: not blank, at most 64 bytes (what the edge keeps).
pub fn ip(text: &str) -> Result<String, ApiError> {
    if text.trim().is_empty() || text.len() > MAX_IP_BYTES {
        return Err(invalid(format!(
            "`ip` must be an address of 1 to {MAX_IP_BYTES} bytes"
        )));
    }
    Ok(text.to_owned())
}

/// Most addresses in a `last_used_ip_not` list.
pub const MAX_IP_LIST: usize = 50;

/// A comma-separated list of client addresses (each as [`ip`] takes it, blanks around commas
/// ignored): 1 to [`MAX_IP_LIST`] of them.
pub fn ip_list(text: &str) -> Result<Vec<String>, ApiError> {
    let addresses: Vec<String> = text
        .split(',')
        .map(str::trim)
        .map(|address| {
            ip(address).map_err(|_| {
                invalid(format!(
                    "`last_used_ip_not` must list 1 to {MAX_IP_LIST} addresses of 1 to \
                     {MAX_IP_BYTES} bytes, comma-separated"
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    if addresses.len() > MAX_IP_LIST {
        return Err(invalid(format!(
            "`last_used_ip_not` lists at most {MAX_IP_LIST} addresses, got {}",
            addresses.len()
        )));
    }
    Ok(addresses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_lists_are_trimmed_bounded_and_never_empty() {
        assert_eq!(
            ip_list(" 192.0.2.1 ,2001:db8::1").expect("valid"),
            ["192.0.2.1", "2001:db8::1"]
        );
        assert!(ip_list("").is_err());
        assert!(ip_list("192.0.2.1,").is_err());
        let fifty: Vec<String> = (0..50).map(|n| format!("192.0.2.{n}")).collect();
        assert_eq!(ip_list(&fifty.join(",")).expect("50 fit"), fifty);
        assert!(ip_list(&format!("{},192.0.2.99", fifty.join(","))).is_err());
    }
}
