//! Client addresses in filters: as the edge reports them (at most [`MAX_IP_BYTES`] bytes of
//! printable ASCII, which every address is).

pub use keyplane_shared::usage::MAX_IP_BYTES;

use super::invalid;
use crate::error::ApiError;

/// Whether every character is printable ASCII (space to `~`).
fn printable_ascii(text: &str) -> bool {
    text.bytes().all(|byte| (b' '..=b'~').contains(&byte))
}

/// A client address to match exactly: 1 to 64 characters of printable ASCII (what the edge
/// keeps of an address, which has no other), not blank.
pub fn ip(text: &str) -> Result<String, ApiError> {
    if text.trim().is_empty() || text.len() > MAX_IP_BYTES || !printable_ascii(text) {
        return Err(invalid(format!(
            "`ip` must be an address: 1 to {MAX_IP_BYTES} characters of printable ASCII"
        )));
    }
    Ok(text.to_owned())
}

/// Most addresses in a `last_used_ip_not` list.
pub const MAX_IP_LIST: usize = 50;

/// A comma-separated list of client addresses (each as [`ip`] takes it, spaces around commas
/// ignored): 1 to [`MAX_IP_LIST`] of them, all printable ASCII.
pub fn ip_list(text: &str) -> Result<Vec<String>, ApiError> {
    let refused = || {
        invalid(format!(
            "`last_used_ip_not` must list 1 to {MAX_IP_LIST} addresses of 1 to {MAX_IP_BYTES} \
             characters of printable ASCII, comma-separated"
        ))
    };
    if !printable_ascii(text) {
        return Err(refused());
    }
    let addresses: Vec<String> = text
        .split(',')
        .map(str::trim)
        .map(|address| ip(address).map_err(|_| refused()))
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
        assert!(ip_list("192.0.2.1,\u{0}").is_err(), "a control character");
        assert!(ip_list("192.0.2.1,\t192.0.2.2").is_err(), "a tab");
        assert!(ip_list("192.0.2.1,é").is_err(), "not ASCII");
        assert!(ip("é").is_err() && ip("a\u{0}").is_err() && ip(" ").is_err());
        assert_eq!(ip(" 192.0.2.1 ").expect("spaces are kept"), " 192.0.2.1 ");
        let fifty: Vec<String> = (0..50).map(|n| format!("192.0.2.{n}")).collect();
        assert_eq!(ip_list(&fifty.join(",")).expect("50 fit"), fifty);
        assert!(ip_list(&format!("{},192.0.2.99", fifty.join(","))).is_err());
    }
}
