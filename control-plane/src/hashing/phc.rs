//! Argon2id hashes as PHC strings, computed in a caller's work area instead of a fresh 19 MiB
//! allocation per hash. The strings are exactly what the argon2 crate's own `hash_password`
//! makes and its `verify_password` accepts (tested both ways below), so stored hashes are
//! unaffected.

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};

use super::HashingError;

/// Salt length, the PHC format's recommendation.
const SALT_BYTES: usize = 16;

/// A work area for the default parameters: 19 MiB of Argon2 blocks.
pub fn work_area() -> Vec<Block> {
    vec![Block::default(); Params::default().block_count()]
}

/// The PHC string of `secret` under the default parameters and a fresh random salt,
/// computed in `area`.
pub fn hash(secret: &[u8], area: &mut [Block]) -> Result<String, HashingError> {
    let failed = |error: &dyn std::fmt::Display| HashingError::Argon2(error.to_string());
    let params = Params::default();
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let mut salt = [0u8; SALT_BYTES];
    getrandom::fill(&mut salt).map_err(|error| failed(&error))?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    let blocks = area
        .get_mut(..params.block_count())
        .ok_or_else(|| HashingError::Argon2("the work area is too small".into()))?;
    argon2
        .hash_password_into_with_memory(secret, &salt, &mut out, blocks)
        .map_err(|error| failed(&error))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|error| failed(&error))?,
        salt: Some(Salt::new(&salt).map_err(|error| failed(&error))?),
        hash: Some(Output::new(&out).map_err(|error| failed(&error))?),
    };
    Ok(phc.to_string())
}

/// Whether `secret` matches the PHC string `stored` (false for a malformed one), computed
/// in `area` when its parameters fit there (else in memory of its own), and compared in
/// constant time.
pub fn verify(secret: &[u8], stored: &str, area: &mut [Block]) -> bool {
    let Ok(phc) = PasswordHash::new(stored) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&phc.salt, &phc.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(phc.algorithm.as_str()) else {
        return false;
    };
    let Ok(version) = phc
        .version
        .map_or(Ok(Version::default()), Version::try_from)
    else {
        return false;
    };
    let Ok(params) = Params::try_from(&phc) else {
        return false;
    };
    let blocks = params.block_count();
    let argon2 = Argon2::new(algorithm, version, params);
    let mut out = vec![0u8; expected.len()];
    let computed = match area.get_mut(..blocks) {
        Some(area) => argon2.hash_password_into_with_memory(secret, salt.as_ref(), &mut out, area),
        None => argon2.hash_password_into(secret, salt.as_ref(), &mut out),
    };
    // `Output`'s equality is constant-time.
    computed.is_ok() && Output::new(&out).is_ok_and(|computed| &computed == expected)
}

#[cfg(test)]
mod tests {
    use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};

    use super::*;

    #[test]
    fn the_crate_verifies_our_hashes_and_we_verify_the_crates() {
        let mut area = work_area();
        let ours = hash(b"correct horse", &mut area).expect("hashed");
        assert!(
            ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{ours}"
        );
        let parsed = PasswordHash::new(&ours).expect("a PHC string");
        assert!(
            Argon2::default()
                .verify_password(b"correct horse", &parsed)
                .is_ok()
        );
        assert!(
            Argon2::default()
                .verify_password(b"wrong", &parsed)
                .is_err()
        );

        let theirs = Argon2::default()
            .hash_password(b"battery staple")
            .expect("hashed")
            .to_string();
        assert!(verify(b"battery staple", &theirs, &mut area));
        assert!(!verify(b"battery stapler", &theirs, &mut area));
        // The area holds the last computation, not the first: reuse changes nothing.
        assert!(verify(b"correct horse", &ours, &mut area));
    }

    #[test]
    fn hashes_of_other_parameters_verify_in_or_beside_the_area() {
        let mut area = work_area();
        for (memory_kib, time) in [(8_192, 1), (32_768, 3)] {
            let params = Params::new(memory_kib, time, 1, None).expect("params");
            let stored = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                .hash_password(b"secret")
                .expect("hashed")
                .to_string();
            assert!(verify(b"secret", &stored, &mut area), "m={memory_kib}");
            assert!(!verify(b"other", &stored, &mut area), "m={memory_kib}");
        }
    }

    #[test]
    fn malformed_or_incomplete_strings_match_nothing() {
        let mut area = work_area();
        for stored in [
            "",
            "not a phc string",
            "$argon2id$v=19$m=19456,t=2,p=1",
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0",
            "$scrypt$ln=15,r=8,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
        ] {
            assert!(!verify(b"", stored, &mut area), "{stored:?}");
        }
    }
}
