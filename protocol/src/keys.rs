//! Ed25519 public keys and signatures as plain bytes, written in base58 on the wire (as Solana
//! writes them), so this crate and the worker daemon need no Solana crate to name an account or
//! check a signature.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A 32-byte public key or account address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Key(pub [u8; 32]);

/// A 64-byte Ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a base58 {what} of {len} bytes")]
pub struct ParseKeyError {
    text: String,
    what: &'static str,
    len: usize,
}

fn decode<const N: usize>(text: &str, what: &'static str) -> Result<[u8; N], ParseKeyError> {
    let err = || ParseKeyError {
        text: text.to_string(),
        what,
        len: N,
    };
    let bytes = bs58::decode(text.trim()).into_vec().map_err(|_| err())?;
    bytes.try_into().map_err(|_| err())
}

impl FromStr for Key {
    type Err = ParseKeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        decode(s, "key").map(Key)
    }
}

impl FromStr for Signature {
    type Err = ParseKeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        decode(s, "signature").map(Signature)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bs58::encode(self.0).into_string())
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({self})")
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bs58::encode(self.0).into_string())
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({self})")
    }
}

macro_rules! serde_as_base58 {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

serde_as_base58!(Key);
serde_as_base58!(Signature);

/// Checks a strict Ed25519 signature by `key` over `message`.
pub fn verify(key: &Key, message: &[u8], signature: &Signature) -> bool {
    let Ok(k) = ed25519_dalek::VerifyingKey::from_bytes(&key.0) else {
        return false;
    };
    k.verify_strict(message, &ed25519_dalek::Signature::from_bytes(&signature.0))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_base58_and_refuse_other_lengths() {
        let k = Key([7; 32]);
        assert_eq!(k.to_string().parse::<Key>(), Ok(k));
        let err = "3yZe7d".parse::<Key>().unwrap_err().to_string();
        assert!(err.contains("32 bytes"), "{err}");
        assert!("not base58!".parse::<Key>().is_err());
        let s = Signature([1; 64]);
        assert_eq!(s.to_string().parse::<Signature>(), Ok(s));
    }
}
