//! WeChat cryptography: pure functions, no I/O.
//!
//! - Mini-program open data (`encryptedData` of `wx.getUserInfo` and friends): AES-128-CBC with
//!   the user's `session_key` ([`decrypt_user_data`]) and the `rawData` signature
//!   ([`raw_data_signature`]).
//! - Server push: the URL-verification `signature` ([`url_signature`]), the safe-mode
//!   `msg_signature` ([`msg_signature`]) and the safe-mode message encryption of the official
//!   `WXBizMsgCrypt` samples ([`MessageCrypt`]).
//!
//! Signatures are lowercase hex SHA-1; compare them with [`signature_matches`], never `==`.
//!
//! The algorithms and the test vectors are those of §2.2, §5.1 and §5.5 of
//! `docs/wechat-api.md`.

use std::borrow::Cow;
use std::fmt;
use subtle::ConstantTimeEq;

use aes::cipher::block_padding::NoPadding;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::DecodeSliceError;
use base64::Engine as _;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use sha1::{Digest, Sha1};

type Aes128CbcDec = cbc::Decryptor<aes::Aes128>;
type Aes256CbcDec = cbc::Decryptor<aes::Aes256>;
type Aes256CbcEnc = cbc::Encryptor<aes::Aes256>;

/// Base64 as WeChat's own (PHP, Python, Java) samples decode it: padding optional and non-zero
/// trailing bits accepted. The latter matters: an `EncodingAESKey` is 43 characters whose last
/// one usually carries two non-zero spare bits (`...ABCDEFG` in the official demo), which a
/// strict decoder rejects although every WeChat SDK accepts it.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// AES block size; open data is padded to it.
const AES_BLOCK: usize = 16;
/// Safe-mode messages are PKCS#7-padded to 32 bytes, not to the AES block.
const MSG_PAD_BLOCK: usize = 32;
/// Safe-mode plaintext header: 16 random bytes, then the message length (big-endian `u32`).
const RANDOM_LEN: usize = 16;
const HEADER_LEN: usize = RANDOM_LEN + 4;
/// Length of an `EncodingAESKey`: 43 base64 characters for 32 key bytes.
const ENCODING_AES_KEY_LEN: usize = 43;

/// Why a WeChat cryptographic operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CryptoError {
    /// A field is not valid base64; names the field (`session_key`, `iv`, `encryptedData`,
    /// `Encrypt`).
    InvalidBase64(&'static str),
    /// The `session_key` does not decode to 16 bytes (AES-128).
    InvalidKeyLength,
    /// The `EncodingAESKey` is not 43 base64 characters decoding to 32 bytes.
    InvalidAesKey,
    /// Decryption failed: the ciphertext is not whole AES blocks, or its PKCS#7 padding is
    /// invalid (wrong key, tampered or truncated data).
    Decrypt,
    /// The plaintext is not UTF-8.
    InvalidUtf8,
    /// The open-data plaintext is not JSON (a syntax error or truncated).
    InvalidJson,
    /// The open data was issued to another app: its `watermark.appid` is not ours.
    WatermarkMismatch {
        /// Our appid.
        expected: String,
        /// The appid in the watermark.
        found: String,
    },
    /// The safe-mode message is addressed to another app (or WeCom corp): its trailing receiver
    /// id is not ours.
    AppidMismatch {
        /// Our appid.
        expected: String,
        /// The receiver id in the message (lossily decoded if not UTF-8).
        found: String,
    },
    /// The decrypted data does not have the expected structure; says what is wrong.
    Malformed(&'static str),
}

impl fmt::Display for CryptoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidBase64(field) => write!(f, "{field} is not valid base64"),
            Self::InvalidKeyLength => f.write_str("session_key does not decode to 16 bytes"),
            Self::InvalidAesKey => f.write_str(
                "EncodingAESKey must be 43 base64 characters that decode to a 32-byte AES key",
            ),
            Self::Decrypt => f.write_str(
                "decryption failed: ciphertext length or padding is invalid \
                 (wrong key, or tampered or truncated data)",
            ),
            Self::InvalidUtf8 => f.write_str("decrypted data is not UTF-8"),
            Self::InvalidJson => f.write_str("decrypted data is not JSON"),
            Self::WatermarkMismatch { expected, found } => write!(
                f,
                "data was issued to appid {found:?}, not to this app ({expected:?})"
            ),
            Self::AppidMismatch { expected, found } => write!(
                f,
                "message is addressed to {found:?}, not to this app ({expected:?})"
            ),
            Self::Malformed(what) => write!(f, "malformed decrypted data: {what}"),
        }
    }
}

impl std::error::Error for CryptoError {}

/// Decrypts mini-program open data (`encryptedData` with its `iv`) with the user's
/// `session_key`, and checks that it was issued to `expected_appid`.
///
/// AES-128-CBC with PKCS#7 padding; key and IV are the base64-decoded `session_key` and `iv`
/// (16 bytes each). The plaintext is JSON carrying `watermark.appid`, which must equal
/// `expected_appid`: otherwise a client could replay data issued to another mini program.
/// `watermark.timestamp` is not checked; freshness is the caller's policy.
///
/// Returns the plaintext exactly as decrypted.
///
/// # Errors
///
/// [`CryptoError::InvalidBase64`] naming the field, [`CryptoError::InvalidKeyLength`],
/// [`CryptoError::Malformed`] for an IV that is not 16 bytes or JSON without a single, string
/// `watermark.appid`, [`CryptoError::Decrypt`], [`CryptoError::InvalidUtf8`],
/// [`CryptoError::InvalidJson`], [`CryptoError::WatermarkMismatch`].
pub fn decrypt_user_data(
    session_key_b64: &str,
    encrypted_data_b64: &str,
    iv_b64: &str,
    expected_appid: &str,
) -> Result<String, CryptoError> {
    let key: [u8; 16] = decode_fixed(session_key_b64).map_err(|e| match e {
        FixedDecodeError::Base64 => CryptoError::InvalidBase64("session_key"),
        FixedDecodeError::Length => CryptoError::InvalidKeyLength,
    })?;
    let iv: [u8; 16] = decode_fixed(iv_b64).map_err(|e| match e {
        FixedDecodeError::Base64 => CryptoError::InvalidBase64("iv"),
        FixedDecodeError::Length => CryptoError::Malformed("iv does not decode to 16 bytes"),
    })?;
    let mut buf = LENIENT
        .decode(encrypted_data_b64)
        .map_err(|_| CryptoError::InvalidBase64("encryptedData"))?;
    Aes128CbcDec::new(&key.into(), &iv.into())
        .decrypt_padded_mut::<NoPadding>(&mut buf)
        .map_err(|_| CryptoError::Decrypt)?;
    let len = pkcs7_unpadded_len(&buf, AES_BLOCK).ok_or(CryptoError::Decrypt)?;
    buf.truncate(len);
    let plaintext = String::from_utf8(buf).map_err(|_| CryptoError::InvalidUtf8)?;

    let data: OpenData<'_> = serde_json::from_str(&plaintext).map_err(|e| {
        if e.is_data() {
            CryptoError::Malformed("open data has an invalid or duplicated watermark")
        } else {
            CryptoError::InvalidJson
        }
    })?;
    let appid = data
        .watermark
        .and_then(|w| w.appid)
        .ok_or(CryptoError::Malformed("open data has no watermark.appid"))?;
    if appid != expected_appid {
        return Err(CryptoError::WatermarkMismatch {
            expected: expected_appid.to_owned(),
            found: appid.into_owned(),
        });
    }
    Ok(plaintext)
}

/// The part of open data we check; everything else is ignored. `Cow` borrows from the
/// plaintext unless the appid contains JSON escapes.
#[derive(serde::Deserialize)]
struct OpenData<'a> {
    #[serde(borrow)]
    watermark: Option<Watermark<'a>>,
}

#[derive(serde::Deserialize)]
struct Watermark<'a> {
    #[serde(borrow)]
    appid: Option<Cow<'a, str>>,
}

/// The `signature` WeChat sends with `rawData`: hex SHA-1 of `raw_data` followed by the
/// (base64, undecoded) `session_key`.
pub fn raw_data_signature(raw_data: &str, session_key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(raw_data);
    sha.update(session_key);
    hex(&sha.finalize())
}

/// The `signature` of a push or of URL verification: hex SHA-1 of `token`, `timestamp` and
/// `nonce` sorted lexicographically and concatenated.
pub fn url_signature(token: &str, timestamp: &str, nonce: &str) -> String {
    sorted_sha1_hex(&mut [token, timestamp, nonce])
}

/// The safe-mode `msg_signature`: hex SHA-1 of `token`, `timestamp`, `nonce` and the
/// base64 `encrypt` sorted lexicographically and concatenated.
///
/// Check it with [`signature_matches`] before [`MessageCrypt::decrypt`]: CBC has no integrity
/// of its own, so only this signature proves that WeChat produced the ciphertext.
pub fn msg_signature(token: &str, timestamp: &str, nonce: &str, encrypt: &str) -> String {
    sorted_sha1_hex(&mut [token, timestamp, nonce, encrypt])
}

/// Whether two hex signatures are equal, ignoring ASCII case, in time independent of where
/// they differ (so a forger cannot learn a valid signature byte by byte from response times).
///
/// An empty signature never matches: a missing query parameter must not verify.
pub fn signature_matches(expected_hex: &str, actual_hex: &str) -> bool {
    if expected_hex.is_empty() || expected_hex.len() != actual_hex.len() {
        return false;
    }
    let (expected, actual) = (
        expected_hex.to_ascii_lowercase(),
        actual_hex.to_ascii_lowercase(),
    );
    bool::from(expected.as_bytes().ct_eq(actual.as_bytes()))
}

/// Safe-mode ("安全模式") message encryption of official accounts, mini programs and WeCom,
/// compatible with the official `WXBizMsgCrypt` samples.
///
/// The plaintext is `random(16) + msg_len (4 bytes, big-endian) + msg + appid`, PKCS#7-padded
/// to a multiple of 32 bytes and encrypted with AES-256-CBC; the key is the base64-decoded
/// `EncodingAESKey` and the IV its first 16 bytes. The result travels base64-encoded as
/// `Encrypt`.
///
/// This type does not check `msg_signature`; use [`msg_signature`] and [`signature_matches`]
/// first.
#[derive(Clone)]
pub struct MessageCrypt {
    key: [u8; 32],
    appid: String,
}

impl fmt::Debug for MessageCrypt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key decrypts every push: keep it out of logs.
        f.debug_struct("MessageCrypt")
            .field("key", &"<redacted>")
            .field("appid", &self.appid)
            .finish()
    }
}

impl MessageCrypt {
    /// Prepares encryption for `appid` (the receiver id: mini-program or official-account
    /// appid, or the corpid in WeCom) with its 43-character `EncodingAESKey`.
    ///
    /// # Errors
    ///
    /// [`CryptoError::InvalidAesKey`] if the key is not 43 base64 characters decoding to
    /// 32 bytes.
    pub fn new(encoding_aes_key: &str, appid: &str) -> Result<Self, CryptoError> {
        if encoding_aes_key.len() != ENCODING_AES_KEY_LEN {
            return Err(CryptoError::InvalidAesKey);
        }
        // Decoding without the "=" the algorithm appends is the same thanks to the
        // padding-indifferent engine.
        let key = decode_fixed(encoding_aes_key).map_err(|_| CryptoError::InvalidAesKey)?;
        Ok(Self {
            key,
            appid: appid.to_owned(),
        })
    }

    /// The receiver id messages must carry.
    pub fn appid(&self) -> &str {
        &self.appid
    }

    /// Decrypts a safe-mode `Encrypt` value and returns the message (XML or JSON text).
    ///
    /// # Errors
    ///
    /// [`CryptoError::InvalidBase64`], [`CryptoError::Decrypt`] for a bad length or padding
    /// (pad byte 0, above 32, or inconsistent), [`CryptoError::Malformed`] when the length field
    /// does not fit, [`CryptoError::AppidMismatch`] when the message is for another receiver,
    /// [`CryptoError::InvalidUtf8`].
    pub fn decrypt(&self, encrypt_b64: &str) -> Result<String, CryptoError> {
        let mut buf = LENIENT
            .decode(encrypt_b64)
            .map_err(|_| CryptoError::InvalidBase64("Encrypt"))?;
        Aes256CbcDec::new(&self.key.into(), &self.iv().into())
            .decrypt_padded_mut::<NoPadding>(&mut buf)
            .map_err(|_| CryptoError::Decrypt)?;
        let len = pkcs7_unpadded_len(&buf, MSG_PAD_BLOCK).ok_or(CryptoError::Decrypt)?;
        let body = buf
            .get(RANDOM_LEN..len)
            .ok_or(CryptoError::Malformed("shorter than its 20-byte header"))?;
        let (msg_len, rest) = body
            .split_first_chunk::<4>()
            .ok_or(CryptoError::Malformed("shorter than its 20-byte header"))?;
        let msg_len = usize::try_from(u32::from_be_bytes(*msg_len))
            .map_err(|_| CryptoError::Malformed("message length does not fit in memory"))?;
        let appid = rest.get(msg_len..).ok_or(CryptoError::Malformed(
            "message length exceeds the decrypted data",
        ))?;
        if appid != self.appid.as_bytes() {
            return Err(CryptoError::AppidMismatch {
                expected: self.appid.clone(),
                found: String::from_utf8_lossy(appid).into_owned(),
            });
        }
        // Reuse the buffer for the result: drop the padding, appid and header in place.
        buf.truncate(HEADER_LEN + msg_len);
        buf.drain(..HEADER_LEN);
        String::from_utf8(buf).map_err(|_| CryptoError::InvalidUtf8)
    }

    /// Encrypts `msg` for a passive reply, with the caller's 16 random bytes (from a CSPRNG in
    /// production; fixed in tests to reproduce official vectors). Returns the base64 `Encrypt`.
    ///
    /// # Panics
    ///
    /// If `msg` is 4 GiB or longer, which its 32-bit length field cannot express.
    pub fn encrypt(&self, msg: &str, random16: [u8; 16]) -> String {
        let msg_len = u32::try_from(msg.len()).expect("a safe-mode message is shorter than 4 GiB");
        let unpadded = HEADER_LEN + msg.len() + self.appid.len();
        let pad = MSG_PAD_BLOCK - unpadded % MSG_PAD_BLOCK;
        let mut buf = Vec::with_capacity(unpadded + pad);
        buf.extend_from_slice(&random16);
        buf.extend_from_slice(&msg_len.to_be_bytes());
        buf.extend_from_slice(msg.as_bytes());
        buf.extend_from_slice(self.appid.as_bytes());
        // `pad` is 1..=32, so the cast is lossless.
        buf.resize(unpadded + pad, pad as u8);
        STANDARD.encode(self.encrypt_blocks(&mut buf))
    }

    /// AES-256-CBC over `buf`, which must already be whole blocks.
    fn encrypt_blocks<'b>(&self, buf: &'b mut [u8]) -> &'b [u8] {
        let len = buf.len();
        match Aes256CbcEnc::new(&self.key.into(), &self.iv().into())
            .encrypt_padded_mut::<NoPadding>(buf, len)
        {
            Ok(ciphertext) => ciphertext,
            Err(_) => unreachable!("callers pass whole AES blocks"),
        }
    }

    fn iv(&self) -> [u8; 16] {
        let mut iv = [0; 16];
        iv.copy_from_slice(&self.key[..16]);
        iv
    }
}

/// Length of `buf` without its PKCS#7 padding for `block`-byte blocks, or `None` if the
/// padding is invalid. Every pad byte is checked, not just the last one, so a tampered
/// ciphertext is more likely to be rejected here than decoded into garbage.
fn pkcs7_unpadded_len(buf: &[u8], block: usize) -> Option<usize> {
    let pad = usize::from(*buf.last()?);
    if pad == 0 || pad > block || pad > buf.len() {
        return None;
    }
    let len = buf.len() - pad;
    buf[len..]
        .iter()
        .all(|&b| usize::from(b) == pad)
        .then_some(len)
}

enum FixedDecodeError {
    Base64,
    Length,
}

/// Decodes base64 into exactly `N` (at most 64) bytes without allocating.
fn decode_fixed<const N: usize>(b64: &str) -> Result<[u8; N], FixedDecodeError> {
    // Room to spare, so that input decoding to more than N bytes is reported as the wrong
    // length rather than as bad base64.
    let mut out = [0u8; 64];
    match LENIENT.decode_slice(b64, &mut out) {
        Ok(n) if n == N => {
            let mut bytes = [0; N];
            bytes.copy_from_slice(&out[..N]);
            Ok(bytes)
        }
        Ok(_) | Err(DecodeSliceError::OutputSliceTooSmall) => Err(FixedDecodeError::Length),
        Err(DecodeSliceError::DecodeError(_)) => Err(FixedDecodeError::Base64),
    }
}

fn sorted_sha1_hex(parts: &mut [&str]) -> String {
    parts.sort_unstable();
    let mut sha = Sha1::new();
    for part in parts {
        sha.update(part);
    }
    hex(&sha.finalize())
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // §2.2: official open-data vector.
    const APPID: &str = "wx4f4bc4dec97d474b";
    const SESSION_KEY: &str = "tiihtNczf5v6AKRyjwEUhQ==";
    const IV: &str = "r7BXXKkLb8qrSNn05n0qiA==";
    const ENCRYPTED_DATA: &str = "CiyLU1Aw2KjvrjMdj8YKliAjtP4gsMZMQmRzooG2xrDcvSnxIMXFufNstNGTyaGS9uT5geRa0W4oTOb1WT7fJlAC+oNPdbB+3hVbJSRgv+4lGOETKUQz6OYStslQ142dNCuabNPGBzlooOmB231qMM85d2/fV6ChevvXvQP8Hkue1poOFtnEtpyxVLW1zAo6/1Xx1COxFvrc2d7UL/lmHInNlxuacJXwu0fjpXfz/YqYzBIBzD6WUfTIF9GRHpOn/Hz7saL8xz+W//FRAUid1OksQaQx4CMs8LOddcQhULW4ucetDf96JcR3g0gfRK4PC7E/r7Z6xNrXd2UIeorGj5Ef7b1pJAYB6Y5anaHqZ9J6nKEBvB4DnNLIVWSgARns/8wR2SiRS7MNACwTyrGvt9ts8p12PKFdlqYTopNHR1Vf7XjfhQlVsAJdNiKdYmYVoKlaRv85IfVunYzO0IKXsyl7JCUjCpoG20f0a04COwfneQAGGwd5oa+T8yO5hzuyDb/XcxxmK01EpqOyuxINew==";
    const USER_DATA: &str = r#"{"openId":"oGZUI0egBJY1zhBYw2KhdUfwVJJE","nickName":"Band","gender":1,"language":"zh_CN","city":"Guangzhou","province":"Guangdong","country":"CN","avatarUrl":"http://wx.qlogo.cn/mmopen/vi_32/aSKcBBPpibyKNicHNTMM0qJVh8Kjgiak2AHWr8MHM4WgMEm7GFhsf8OYrySdbvAMvTsw3mo8ibKicsnfN5pRjl1p8HQ/0","unionId":"ocMvos6NjeKLIBqg5Mr9QjxrP1FA","watermark":{"timestamp":1477314187,"appid":"wx4f4bc4dec97d474b"}}"#;

    // §5.5 S1: official mini-program vector (JSON, safe mode).
    const S1_TOKEN: &str = "AAAAA";
    const S1_KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    const S1_APPID: &str = "wxba5fad812f8e6fb9";
    const S1_ENCRYPT: &str = "+qdx1OKCy+5JPCBFWw70tm0fJGb2Jmeia4FCB7kao+/Q5c/ohsOzQHi8khUOb05JCpj0JB4RvQMkUyus8TPxLKJGQqcvZqzDpVzazhZv6JsXUnnR8XGT740XgXZUXQ7vJVnAG+tE8NUd4yFyjPy7GgiaviNrlCTj+l5kdfMuFUPpRSrfMZuMcp3Fn2Pede2IuQrKEYwKSqFIZoNqJ4M8EajAsjLY2km32IIjdf8YL/P50F7mStwntrA2cPDrM1kb6mOcfBgRtWygb3VIYnSeOBrebufAlr7F9mFUPAJGj04=";
    const S1_MSG: &str = r#"{"ToUserName":"gh_97417a04a28d","FromUserName":"o9AgO5Kd5ggOC-bXrbNODIiE3bGY","CreateTime":1714112445,"MsgType":"event","Event":"debug_demo","debug_str":"hello world"}"#;
    const S1_REPLY_ENCRYPT: &str =
        "ELGduP2YcVatjqIS+eZbp80MNLoAUWvzzyJxgGzxZO/5sAvd070Bs6qrLARC9nVHm48Y4hyRbtzve1L32tmxSQ==";

    // §5.5 S2, S3, S4 share this key.
    const DEMO_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

    fn s1() -> MessageCrypt {
        MessageCrypt::new(S1_KEY, S1_APPID).unwrap()
    }

    #[test]
    fn user_data_official_vector() {
        let plaintext = decrypt_user_data(SESSION_KEY, ENCRYPTED_DATA, IV, APPID).unwrap();
        assert_eq!(plaintext, USER_DATA);
    }

    #[test]
    fn user_data_for_another_app_is_refused() {
        let err = decrypt_user_data(SESSION_KEY, ENCRYPTED_DATA, IV, "wx0000000000000000");
        assert_eq!(
            err,
            Err(CryptoError::WatermarkMismatch {
                expected: "wx0000000000000000".to_owned(),
                found: APPID.to_owned(),
            })
        );
    }

    #[test]
    fn user_data_bad_inputs_are_errors() {
        let decrypt = |key: &str, data: &str, iv: &str| decrypt_user_data(key, data, iv, APPID);
        assert_eq!(
            decrypt("not base64!", ENCRYPTED_DATA, IV),
            Err(CryptoError::InvalidBase64("session_key"))
        );
        assert_eq!(
            decrypt(SESSION_KEY, ENCRYPTED_DATA, "%%%"),
            Err(CryptoError::InvalidBase64("iv"))
        );
        assert_eq!(
            decrypt(SESSION_KEY, "*", IV),
            Err(CryptoError::InvalidBase64("encryptedData"))
        );
        // 15 and 17 bytes; much too long.
        assert_eq!(
            decrypt("AAAAAAAAAAAAAAAAAAAA", ENCRYPTED_DATA, IV),
            Err(CryptoError::InvalidKeyLength)
        );
        assert_eq!(
            decrypt("AAAAAAAAAAAAAAAAAAAAAAA=", ENCRYPTED_DATA, IV),
            Err(CryptoError::InvalidKeyLength)
        );
        assert_eq!(
            decrypt(&"A".repeat(200), ENCRYPTED_DATA, IV),
            Err(CryptoError::InvalidKeyLength)
        );
        assert!(matches!(
            decrypt(SESSION_KEY, ENCRYPTED_DATA, "AAAA"),
            Err(CryptoError::Malformed(_))
        ));
        // Not whole blocks; empty.
        assert_eq!(decrypt(SESSION_KEY, "AAAA", IV), Err(CryptoError::Decrypt));
        assert_eq!(decrypt(SESSION_KEY, "", IV), Err(CryptoError::Decrypt));
        // Wrong key: the padding (almost surely) breaks.
        assert_eq!(
            decrypt("HyVFkGl5F5OQWJZZaNzBBg==", ENCRYPTED_DATA, IV),
            Err(CryptoError::Decrypt)
        );
        // Wrong IV only garbles the first block: the JSON no longer parses.
        assert!(matches!(
            decrypt(SESSION_KEY, ENCRYPTED_DATA, "AAAAAAAAAAAAAAAAAAAAAA=="),
            Err(CryptoError::InvalidUtf8 | CryptoError::InvalidJson)
        ));
    }

    /// Encrypts `plaintext` (already padded) with AES-128-CBC, for crafting open data.
    fn seal_user_data(plaintext: &[u8]) -> String {
        let key = LENIENT.decode(SESSION_KEY).unwrap();
        let iv = LENIENT.decode(IV).unwrap();
        let mut buf = plaintext.to_vec();
        let len = buf.len();
        cbc::Encryptor::<aes::Aes128>::new_from_slices(&key, &iv)
            .unwrap()
            .encrypt_padded_mut::<NoPadding>(&mut buf, len)
            .unwrap();
        STANDARD.encode(buf)
    }

    fn pad16(data: &[u8]) -> Vec<u8> {
        let pad = 16 - data.len() % 16;
        let mut out = data.to_vec();
        out.resize(data.len() + pad, pad as u8);
        out
    }

    #[test]
    fn user_data_structure_is_checked() {
        let decrypt =
            |plain: &[u8]| decrypt_user_data(SESSION_KEY, &seal_user_data(plain), IV, APPID);
        let ok = br#"{"watermark":{"appid":"wx4f4bc4dec97d474b"}}"#;
        assert_eq!(decrypt(&pad16(ok)).unwrap().as_bytes(), ok);
        // An escaped appid is compared after unescaping.
        let escaped = br#"{"watermark":{"appid":"wx4f4bc4dec97d474\u0062"}}"#;
        assert!(decrypt(&pad16(escaped)).is_ok());
        assert_eq!(decrypt(&pad16(b"not json")), Err(CryptoError::InvalidJson));
        assert_eq!(decrypt(&pad16(b"\xff\xfe")), Err(CryptoError::InvalidUtf8));
        assert!(matches!(
            decrypt(&pad16(br#"{"a":1}"#)),
            Err(CryptoError::Malformed(_))
        ));
        assert!(matches!(
            decrypt(&pad16(br#"{"watermark":{"timestamp":1}}"#)),
            Err(CryptoError::Malformed(_))
        ));
        // A duplicated watermark is refused rather than resolved one way or the other.
        let twice = br#"{"watermark":{"appid":"wx4f4bc4dec97d474b"},"watermark":{"appid":"x"}}"#;
        assert!(matches!(
            decrypt(&pad16(twice)),
            Err(CryptoError::Malformed(_))
        ));
        let not_object = br#"{"watermark":"wx4f4bc4dec97d474b"}"#;
        assert!(matches!(
            decrypt(&pad16(not_object)),
            Err(CryptoError::Malformed(_))
        ));
        assert_eq!(
            decrypt(&pad16(b"{\"watermark\":")),
            Err(CryptoError::InvalidJson)
        );
        // Padding: zero, too large, inconsistent.
        let mut bad = pad16(ok);
        *bad.last_mut().unwrap() = 0;
        assert_eq!(decrypt(&bad), Err(CryptoError::Decrypt));
        let mut bad = ok.to_vec();
        bad.resize(64, 17);
        assert_eq!(decrypt(&bad), Err(CryptoError::Decrypt));
        let mut bad = pad16(ok);
        let n = bad.len();
        bad[n - 2] ^= 1;
        assert_eq!(decrypt(&bad), Err(CryptoError::Decrypt));
    }

    #[test]
    fn raw_data_signature_official_vector() {
        let raw = r#"{"nickName":"Band","gender":1,"language":"zh_CN","city":"Guangzhou","province":"Guangdong","country":"CN","avatarUrl":"http://wx.qlogo.cn/mmopen/vi_32/1vZvI39NWFQ9XM4LtQpFrQJ1xlgZxx3w7bQxKARol6503Iuswjjn6nIGBiaycAjAtpujxyzYsrztuuICqIM5ibXQ/0"}"#;
        assert_eq!(
            raw_data_signature(raw, "HyVFkGl5F5OQWJZZaNzBBg=="),
            "75e81ceda165f4ffa64f4068af58c64b8f54b88c"
        );
    }

    #[test]
    fn url_signature_official_vectors() {
        // §5.1 URL verification and plain-mode push.
        assert_eq!(
            url_signature("AAAAA", "1714036504", "1514711492"),
            "f464b24fc39322e44b38aa78f5edd27bd1441696"
        );
        assert_eq!(
            url_signature("AAAAA", "1714037059", "486452656"),
            "899cf89e464efb63f54ddac96b0a0a235f53aa78"
        );
        // S1's push URL also carries the plain signature.
        assert_eq!(
            url_signature(S1_TOKEN, "1714112445", "415670741"),
            "6c5c811b55cc85e0e1b54100749188c20beb3f5d"
        );
        // S2 (computed, not published by WeChat).
        assert_eq!(
            url_signature("spamtest", "1409735669", "1320562132"),
            "16120ec1b8dbb870f510d87ce6bc2463eae6ca1a"
        );
        // Order of the arguments does not matter: they are sorted.
        assert_eq!(
            url_signature("1514711492", "AAAAA", "1714036504"),
            "f464b24fc39322e44b38aa78f5edd27bd1441696"
        );
    }

    #[test]
    fn signature_comparison() {
        let sig = "f464b24fc39322e44b38aa78f5edd27bd1441696";
        assert!(signature_matches(sig, sig));
        assert!(signature_matches(sig, &sig.to_ascii_uppercase()));
        assert!(signature_matches(&sig.to_ascii_uppercase(), sig));
        assert!(!signature_matches(
            sig,
            "f464b24fc39322e44b38aa78f5edd27bd1441697"
        ));
        assert!(!signature_matches(
            sig,
            "0464b24fc39322e44b38aa78f5edd27bd1441696"
        ));
        assert!(!signature_matches(sig, &sig[..39]));
        assert!(!signature_matches(sig, ""));
        assert!(!signature_matches("", ""));
        assert!(!signature_matches(
            sig,
            "é464b24fc39322e44b38aa78f5edd27bd144169"
        ));
    }

    #[test]
    fn s1_decrypt_and_signatures() {
        assert_eq!(s1().decrypt(S1_ENCRYPT).unwrap(), S1_MSG);
        // The push URL's msg_signature verifies against the body's Encrypt.
        let sig = msg_signature(S1_TOKEN, "1714112445", "415670741", S1_ENCRYPT);
        assert!(signature_matches(
            "046e02f8204d34f8ba5fa3b1db94908f3df2e9b3",
            &sig
        ));
        assert!(!signature_matches(
            "046e02f8204d34f8ba5fa3b1db94908f3df2e9b3",
            &msg_signature(S1_TOKEN, "1714112446", "415670741", S1_ENCRYPT)
        ));
    }

    #[test]
    fn s1_encrypt_reproduces_the_official_ciphertexts() {
        // The doc's "random" values are the 16 ASCII bytes of the strings shown, not hex: the
        // reply's FullStr is 63 bytes = 16 + 4 + 25 + 18.
        assert_eq!(s1().encrypt(S1_MSG, *b"a8eedb185eb2fecf"), S1_ENCRYPT);
        let reply = s1().encrypt(r#"{"demo_resp":"good luck"}"#, *b"707722b803182950");
        assert_eq!(reply, S1_REPLY_ENCRYPT);
        assert_eq!(
            msg_signature(S1_TOKEN, "1713424427", "415670741", &reply),
            "1b9339964ed2e271e7c7b6ff2b0ef902fc94dea1"
        );
        assert_eq!(
            s1().decrypt(S1_REPLY_ENCRYPT).unwrap(),
            r#"{"demo_resp":"good luck"}"#
        );
    }

    #[test]
    fn s2_official_oa_demo() {
        let encrypt = "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE=";
        let msg = "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName>\n\
                   <FromUserName><![CDATA[oyORnuP8q7ou2gfYjqLzSIWZf0rs]]></FromUserName>\n\
                   <CreateTime>1409735668</CreateTime>\n\
                   <MsgType><![CDATA[text]]></MsgType>\n\
                   <Content><![CDATA[abcdteT]]></Content>\n\
                   <MsgId>6054768590064713728</MsgId>\n\
                   </xml>";
        let crypt = MessageCrypt::new(DEMO_KEY, "wx2c2769f8efd9abc2").unwrap();
        assert_eq!(crypt.decrypt(encrypt).unwrap(), msg);
        assert_eq!(
            msg_signature("spamtest", "1409735669", "1320562132", encrypt),
            "5d197aaffba7e9b25a30732f161a50dee96bd5fa"
        );
        // The key decodes as documented, trailing bits of its last character included.
        assert_eq!(
            hex(&crypt.key),
            "69b71d79f8218a39259a7a29aabb2dbafc31cb3d35db7e39ebbf3d0010831051"
        );
        assert_eq!(crypt.encrypt(msg, *b"89465c840c5f116f"), encrypt);
    }

    #[test]
    fn s3_deterministic_encryption() {
        let crypt = MessageCrypt::new(DEMO_KEY, "wxb11529c136998cb6").unwrap();
        let encrypt = crypt.encrypt("我是中文abcd123", *b"aaaabbbbccccdddd");
        assert_eq!(
            encrypt,
            "jn1L23DB+6ELqJ+6bruv21Y6MD7KeIfP82D6gU39rmkgczbWwt5+3bnyg5K55bgVtVzd832WzZGMhkP72vVOfg=="
        );
        assert_eq!(
            msg_signature("pamtest", "1409304348", "xxxxxx", &encrypt),
            "82c962d39941aa48552f90ef55aa323dc620cc10"
        );
        assert_eq!(crypt.decrypt(&encrypt).unwrap(), "我是中文abcd123");
    }

    #[test]
    fn s4_easywechat() {
        let encrypt = "rTNFcsut4LfGuAFKEUVVpwcaCOTJzOd9twZdIW910jb3k+iicx2uvhttIZ3Qg9Qgty3BEF2xbOrz6boTfb30dMomcgrkTqdFPwnhqbk+kIQ7rZiwny9D7NUrTgA5kpX3KsZvrXzUZyP2x9YOlxbgm572lmxKvM7HAQQhIQ/p6HBmoY30bGXFK0BtIu1pW9TjhOYrLQoU18nWYjWqDA1ynkmOytpv7QRI1P1+0NoxL0q2zO1DgeSvnE8CZGo/o5Ap/WHK5W2RAsinpzN4/LjPnmB6U01I5XCoJoC0GK/yMZycd2Oh8Nq6+wBkC1U85oy0ktOY4nLvsQMLrourmMGdZHuTbqpeJ8Ao/5PRYJ+WBvRUwPfGKBL2+2IKZF49vAJqkcGWSHGE76ZN2erXeuNazf/o9o3lIE3q739o4c8t9QGPe31GT2Go/rOz1BsrASwvauNulCh+++yz+CQzBIuikA==";
        let crypt = MessageCrypt::new(DEMO_KEY, "wxb11529c136998cb6").unwrap();
        assert_eq!(
            crypt.decrypt(encrypt).unwrap(),
            "<xml><URL><![CDATA[http://wechat.laravel.so/server]]></URL><ToUserName><![CDATA[asdasdasd]]></ToUserName><FromUserName><![CDATA[asdasdasdsadasd]]></FromUserName><CreateTime>1234567898</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hello]]></Content><MsgId>12345</MsgId></xml>"
        );
        assert_eq!(
            msg_signature("pamtest", "1458300676", "260774613", encrypt),
            "4f3ad57b6989f09f4eb392acce4f9e93942ed890"
        );
    }

    #[test]
    fn wecom_official_sample() {
        let encrypt = "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3QczcdCUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2YoyyH2uyPIGHBZZIs2pDBS8R07+qN+E7Q==";
        let crypt = MessageCrypt::new(
            "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
            "wx5823bf96d3bd56c7",
        )
        .unwrap();
        let msg = "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>\n\
                   <FromUserName><![CDATA[mycreate]]></FromUserName>\n\
                   <CreateTime>1409659813</CreateTime>\n\
                   <MsgType><![CDATA[text]]></MsgType>\n\
                   <Content><![CDATA[hello]]></Content>\n\
                   <MsgId>4561255354251345929</MsgId>\n\
                   <AgentID>218</AgentID>\n\
                   </xml>";
        assert_eq!(crypt.decrypt(encrypt).unwrap(), msg);
        assert_eq!(
            msg_signature("QDG6eK", "1409659813", "1372623149", encrypt),
            "477715d11cdb4164915debcba66cb864d751f3e6"
        );
        assert_eq!(crypt.encrypt(msg, *b"0960688932c47ef1"), encrypt);
    }

    #[test]
    fn invalid_aes_keys_are_refused() {
        for key in [
            "",
            &S1_KEY[..42],
            &format!("{S1_KEY}A"),
            &format!("{S1_KEY}="),
            &format!("{}=", &S1_KEY[..42]),
            &"!".repeat(43),
            &format!("é{}", &S1_KEY[..41]),
        ] {
            assert_eq!(
                MessageCrypt::new(key, S1_APPID).map(|c| c.appid().to_owned()),
                Err(CryptoError::InvalidAesKey),
                "{key:?}"
            );
        }
    }

    #[test]
    fn debug_does_not_show_the_key() {
        let text = format!("{:?}", s1());
        assert!(text.contains(S1_APPID), "{text}");
        assert!(text.contains("redacted"), "{text}");
        assert!(!text.contains("[0, 0"), "{text}");
    }

    #[test]
    fn message_for_another_receiver_is_refused() {
        let other = MessageCrypt::new(S1_KEY, "wx0000000000000000").unwrap();
        assert_eq!(
            other.decrypt(S1_ENCRYPT),
            Err(CryptoError::AppidMismatch {
                expected: "wx0000000000000000".to_owned(),
                found: S1_APPID.to_owned(),
            })
        );
    }

    /// Encrypts a crafted, already padded safe-mode plaintext.
    fn seal(crypt: &MessageCrypt, mut plaintext: Vec<u8>) -> String {
        STANDARD.encode(crypt.encrypt_blocks(&mut plaintext))
    }

    /// random + length field + body, padded with `pad` bytes of value `pad_value`.
    fn crafted(msg_len: u32, body: &[u8], pad: usize, pad_value: u8) -> Vec<u8> {
        let mut out = vec![b'r'; RANDOM_LEN];
        out.extend_from_slice(&msg_len.to_be_bytes());
        out.extend_from_slice(body);
        out.resize(out.len() + pad, pad_value);
        out
    }

    #[test]
    fn tampered_messages_are_errors() {
        let crypt = s1();
        let appid = S1_APPID.as_bytes();
        let body = [b"hi".as_slice(), appid].concat();
        // 16 + 4 + 2 + 18 = 40 bytes, so 24 bytes of padding. Sanity check first.
        assert_eq!(
            crypt
                .decrypt(&seal(&crypt, crafted(2, &body, 24, 24)))
                .unwrap(),
            "hi"
        );

        let cases: [(Vec<u8>, CryptoError); 7] = [
            (crafted(2, &body, 24, 0), CryptoError::Decrypt),
            (crafted(2, &body, 24, 33), CryptoError::Decrypt),
            (
                [crafted(2, &body, 23, 24), vec![23]].concat(),
                CryptoError::Decrypt,
            ),
            (
                crafted(40, &body, 24, 24),
                CryptoError::Malformed("message length exceeds the decrypted data"),
            ),
            (
                crafted(u32::MAX, &body, 24, 24),
                CryptoError::Malformed("message length exceeds the decrypted data"),
            ),
            (
                [vec![b'r'; 16], vec![16; 16]].concat(),
                CryptoError::Malformed("shorter than its 20-byte header"),
            ),
            (
                crafted(2, &[b"\xff\xfe".as_slice(), appid].concat(), 24, 24),
                CryptoError::InvalidUtf8,
            ),
        ];
        for (plaintext, expected) in cases {
            assert_eq!(crypt.decrypt(&seal(&crypt, plaintext)), Err(expected));
        }
        // 16 + 4 + 26 + 18 = 64 bytes: a whole block of padding (32 × 32) follows.
        let body = [b"abcdefghijklmnopqrstuvwxyz".as_slice(), appid].concat();
        let plaintext = crafted(26, &body, 32, 32);
        assert_eq!(
            seal(&crypt, plaintext.clone()),
            crypt.encrypt("abcdefghijklmnopqrstuvwxyz", [b'r'; 16])
        );
        assert_eq!(
            crypt.decrypt(&seal(&crypt, plaintext)).unwrap(),
            "abcdefghijklmnopqrstuvwxyz"
        );
    }

    #[test]
    fn damaged_ciphertext_never_panics() {
        let crypt = s1();
        assert_eq!(
            crypt.decrypt("not base64!"),
            Err(CryptoError::InvalidBase64("Encrypt"))
        );
        assert_eq!(crypt.decrypt(""), Err(CryptoError::Decrypt));
        assert_eq!(crypt.decrypt("AAAA"), Err(CryptoError::Decrypt));
        let ciphertext = LENIENT.decode(S1_ENCRYPT).unwrap();
        // Truncated by a block, or cut short of one.
        let n = ciphertext.len();
        assert!(
            crypt
                .decrypt(&STANDARD.encode(&ciphertext[..n - 16]))
                .is_err()
        );
        assert_eq!(
            crypt.decrypt(&STANDARD.encode(&ciphertext[..n - 1])),
            Err(CryptoError::Decrypt)
        );
        // Every single-bit flip: CBC is malleable, so some flips may still decrypt (which is why
        // msg_signature is checked first), but none may panic, and a flip in the last block
        // always breaks the padding or the appid.
        for i in 0..n {
            let mut damaged = ciphertext.clone();
            damaged[i] ^= 0x01;
            let result = crypt.decrypt(&STANDARD.encode(&damaged));
            if i >= n - 16 {
                assert!(result.is_err(), "byte {i}");
            }
        }
    }

    #[test]
    fn round_trip_with_every_padding_length() {
        let crypt = MessageCrypt::new(DEMO_KEY, "wxb11529c136998cb6").unwrap();
        for len in 0..=70 {
            let msg = "x".repeat(len);
            let encrypt = crypt.encrypt(&msg, [7; 16]);
            assert_eq!(LENIENT.decode(&encrypt).unwrap().len() % MSG_PAD_BLOCK, 0);
            assert_eq!(crypt.decrypt(&encrypt).unwrap(), msg);
        }
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(
            CryptoError::InvalidBase64("iv").to_string(),
            "iv is not valid base64"
        );
        let err = CryptoError::WatermarkMismatch {
            expected: "wxA".to_owned(),
            found: "wxB".to_owned(),
        };
        assert_eq!(
            err.to_string(),
            "data was issued to appid \"wxB\", not to this app (\"wxA\")"
        );
        let boxed: Box<dyn std::error::Error> = Box::new(CryptoError::Malformed("x"));
        assert_eq!(boxed.to_string(), "malformed decrypted data: x");
    }
}
