//! The algorithms offered, to clients and to upstream servers alike. Modern only by
//! default; `legacy_algorithms` adds what old clients need (RSA keys, SHA-1 signatures and
//! MACs, finite-field Diffie-Hellman).

use russh::keys::{Algorithm, EcdsaCurve, HashAlg};
use russh::{Preferred, cipher, kex, mac};
use std::borrow::Cow;

const KEX: &[kex::Name] = &[
    kex::MLKEM768X25519_SHA256,
    kex::CURVE25519,
    kex::CURVE25519_PRE_RFC_8731,
    kex::EXTENSION_SUPPORT_AS_CLIENT,
    kex::EXTENSION_SUPPORT_AS_SERVER,
    kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT,
    kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER,
];

const LEGACY_KEX: &[kex::Name] = &[
    kex::MLKEM768X25519_SHA256,
    kex::CURVE25519,
    kex::CURVE25519_PRE_RFC_8731,
    kex::ECDH_SHA2_NISTP256,
    kex::ECDH_SHA2_NISTP384,
    kex::ECDH_SHA2_NISTP521,
    kex::DH_GEX_SHA256,
    kex::DH_G16_SHA512,
    kex::DH_G14_SHA256,
    kex::DH_G14_SHA1,
    kex::EXTENSION_SUPPORT_AS_CLIENT,
    kex::EXTENSION_SUPPORT_AS_SERVER,
    kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT,
    kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER,
];

const KEYS: &[Algorithm] = &[
    Algorithm::Ed25519,
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP256,
    },
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP384,
    },
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP521,
    },
];

/// RSA goes through the `rsa` crate (timing advisory RUSTSEC-2023-0071 open): legacy only.
const LEGACY_KEYS: &[Algorithm] = &[
    Algorithm::Rsa {
        hash: Some(HashAlg::Sha512),
    },
    Algorithm::Rsa {
        hash: Some(HashAlg::Sha256),
    },
    Algorithm::Rsa { hash: None },
];

/// AES-GCM first: where we are the client (upstream) our order chooses, and AES-GCM costs a
/// fraction of ChaCha20-Poly1305 on CPUs with AES instructions (every server CPU a bank runs);
/// as a server the client's order chooses (OpenSSH's puts ChaCha20 first).
const CIPHERS: &[cipher::Name] = &[
    cipher::AES_256_GCM,
    cipher::AES_128_GCM,
    cipher::CHACHA20_POLY1305,
    cipher::AES_256_CTR,
    cipher::AES_128_CTR,
];

const MACS: &[mac::Name] = &[mac::HMAC_SHA512_ETM, mac::HMAC_SHA256_ETM];

const LEGACY_MACS: &[mac::Name] = &[
    mac::HMAC_SHA512_ETM,
    mac::HMAC_SHA256_ETM,
    mac::HMAC_SHA512,
    mac::HMAC_SHA256,
    mac::HMAC_SHA1_ETM,
    mac::HMAC_SHA1,
];

/// What is offered, in order of preference.
pub fn preferred(legacy: bool) -> Preferred {
    // Legacy adds RSA (SHA-1 signatures last) after the modern keys.
    let key = match legacy {
        false => Cow::Borrowed(KEYS),
        true => Cow::Owned([KEYS, LEGACY_KEYS].concat()),
    };
    Preferred {
        kex: Cow::Borrowed(if legacy { LEGACY_KEX } else { KEX }),
        key,
        cipher: Cow::Borrowed(CIPHERS),
        mac: Cow::Borrowed(if legacy { LEGACY_MACS } else { MACS }),
        ..Preferred::DEFAULT
    }
}
