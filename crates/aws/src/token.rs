//! Opaque pagination tokens. A token names the position after the last item returned and is
//! bound by an HMAC to the operation and partition that issued it, so a forged token, or one
//! from another list, is refused instead of silently listing from the wrong place.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

#[derive(Clone)]
pub struct TokenCodec {
    key: [u8; 32],
}

impl std::fmt::Debug for TokenCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCodec")
    }
}

impl TokenCodec {
    pub fn new(key: [u8; 32]) -> Self {
        TokenCodec { key }
    }

    fn mac(&self, binding: &str, position: &str) -> [u8; 16] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("any key length");
        mac.update(binding.as_bytes());
        mac.update(&[0]);
        mac.update(position.as_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
    }

    /// A token for resuming after `position` in the list named by `binding`.
    pub fn encode(&self, binding: &str, position: &str) -> String {
        let mut raw = self.mac(binding, position).to_vec();
        raw.extend_from_slice(position.as_bytes());
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// The position a token names, if this server issued it for `binding`.
    pub fn decode(&self, binding: &str, token: &str) -> Option<String> {
        let raw = URL_SAFE_NO_PAD.decode(token.as_bytes()).ok()?;
        if raw.len() < 16 {
            return None;
        }
        let (mac, position) = raw.split_at(16);
        let position = std::str::from_utf8(position).ok()?;
        let expected = self.mac(binding, position);
        bool::from(subtle::ConstantTimeEq::ct_eq(mac, &expected[..])).then(|| position.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() {
        let c = TokenCodec::new([7; 32]);
        let t = c.encode("ecs.ListClusters/000000000000/us-east-1", "alpha");
        assert_eq!(
            c.decode("ecs.ListClusters/000000000000/us-east-1", &t)
                .as_deref(),
            Some("alpha")
        );
        assert_eq!(
            c.decode("ecs.ListServices/000000000000/us-east-1", &t),
            None
        );
        assert_eq!(
            c.decode("ecs.ListClusters/000000000000/us-east-1", "garbage"),
            None
        );
        let other = TokenCodec::new([8; 32]);
        assert_eq!(
            other.decode("ecs.ListClusters/000000000000/us-east-1", &t),
            None
        );
    }
}
