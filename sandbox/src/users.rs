//! Seeded WeChat users and their three identities.
//!
//! One person has a mini-program openid, an official-account (OA) openid and, when both accounts
//! are bound to one Open Platform account, a unionid. The openids are unrelated strings: the only
//! way to join them is the unionid, exactly as on the real platform.

use serde::{Deserialize, Serialize};

/// What kind of user to seed. `Default` is a user with both openids, no unionid, not following.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SeedUser {
    /// Whether the user follows the official account. Ignored without an OA openid: a person the
    /// OA has never seen cannot follow it.
    pub follows_oa: bool,
    /// Whether the user has a unionid (both accounts bound to one Open Platform account).
    pub has_unionid: bool,
    /// Whether the user has used the mini-program (has a mini-program openid). Default `true`.
    pub has_mini_openid: bool,
    /// Whether the official account knows the user (has an OA openid). Default `true`.
    pub has_oa_openid: bool,
}

impl Default for SeedUser {
    fn default() -> Self {
        Self {
            follows_oa: false,
            has_unionid: false,
            has_mini_openid: true,
            has_oa_openid: true,
        }
    }
}

impl SeedUser {
    /// The typical linked user: both openids, a unionid, following the OA.
    pub fn follower() -> Self {
        Self {
            follows_oa: true,
            has_unionid: true,
            has_mini_openid: true,
            has_oa_openid: true,
        }
    }
}

/// The identities of a seeded user.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SeededUser {
    /// Mini-program openid (`oMP…`, 28 characters), if the user has one.
    pub mini_openid: Option<String>,
    /// Official-account openid (`oOA…`, 28 characters), if the user has one.
    pub oa_openid: Option<String>,
    /// Unionid (`oU…`, 28 characters), if the user has one.
    pub unionid: Option<String>,
}

/// One user as the sandbox keeps it.
#[derive(Debug, Clone)]
pub(crate) struct UserRecord {
    pub(crate) ids: SeededUser,
    pub(crate) following: bool,
    /// Unix seconds of the (last) follow.
    pub(crate) subscribe_time: i64,
    pub(crate) language: &'static str,
    /// Session key of the latest login, base64 of 16 bytes.
    pub(crate) session_key: Option<String>,
    /// The session key every login of this user gets, when a test pins one.
    pub(crate) pinned_session_key: Option<String>,
}

/// Index of a user in the directory.
pub(crate) type UserId = usize;

/// All users, in seeding order.
///
/// There are no openid → user maps: an id encodes its user's serial (see [`make_id`]), so a
/// lookup decodes it and compares with the stored id. That keeps seeding 100 000 followers well
/// under a second even in unoptimised test builds, and the memory per user small.
#[derive(Debug, Default)]
pub(crate) struct UserDirectory {
    users: Vec<UserRecord>,
    followers: usize,
}

/// Salts that make the three id kinds of one user unrelated-looking.
const MINI_SALT: u64 = 0x6d69_6e69_5f6f_7065;
const OA_SALT: u64 = 0x6f61_5f6f_7065_6e69;
const UNION_SALT: u64 = 0x756e_696f_6e69_6421;

impl UserDirectory {
    /// Adds one user. Its serial (index + 1) determines its ids, so seeding is reproducible.
    pub(crate) fn add(&mut self, seed: SeedUser, subscribe_time: i64) -> SeededUser {
        let serial = self.users.len() as u64 + 1;
        let ids = SeededUser {
            mini_openid: seed
                .has_mini_openid
                .then(|| make_id("oMP", MINI_SALT, serial)),
            oa_openid: seed.has_oa_openid.then(|| make_id("oOA", OA_SALT, serial)),
            unionid: seed.has_unionid.then(|| make_id("oU", UNION_SALT, serial)),
        };
        let following = seed.follows_oa && ids.oa_openid.is_some();
        self.followers += usize::from(following);
        self.users.push(UserRecord {
            ids: ids.clone(),
            following,
            subscribe_time,
            language: "zh_CN",
            session_key: None,
            pinned_session_key: None,
        });
        ids
    }

    pub(crate) fn len(&self) -> usize {
        self.users.len()
    }

    pub(crate) fn follower_count(&self) -> usize {
        self.followers
    }

    pub(crate) fn get(&self, id: UserId) -> &UserRecord {
        &self.users[id]
    }

    pub(crate) fn get_mut(&mut self, id: UserId) -> &mut UserRecord {
        &mut self.users[id]
    }

    /// The last `limit` users added (ids and follow state), oldest of them first.
    pub(crate) fn latest(&self, limit: usize) -> impl Iterator<Item = &UserRecord> {
        self.users[self.users.len().saturating_sub(limit)..].iter()
    }

    /// Reserves room for `additional` more users.
    pub(crate) fn reserve(&mut self, additional: usize) {
        self.users.reserve(additional);
    }

    pub(crate) fn by_mini_openid(&self, openid: &str) -> Option<UserId> {
        let id = self.decode(openid, "oMP", MINI_SALT)?;
        (self.users[id].ids.mini_openid.as_deref() == Some(openid)).then_some(id)
    }

    pub(crate) fn by_oa_openid(&self, openid: &str) -> Option<UserId> {
        let id = self.decode(openid, "oOA", OA_SALT)?;
        (self.users[id].ids.oa_openid.as_deref() == Some(openid)).then_some(id)
    }

    /// The user whose serial `openid` encodes, if that user exists (the caller still compares
    /// the full id: the filler characters and the user's id kinds are not checked here).
    fn decode(&self, openid: &str, prefix: &str, salt: u64) -> Option<UserId> {
        let encoded = openid
            .strip_prefix(prefix)?
            .as_bytes()
            .get(..UNIQUE_CHARS)?;
        let mut mixed: u64 = 0;
        for (i, &byte) in encoded.iter().enumerate() {
            let digit = ALPHABET.iter().position(|&c| c == byte)?;
            mixed |= u64::try_from(digit)
                .ok()?
                .checked_shl(6 * u32::try_from(i).ok()?)?;
        }
        let serial = unmix(mixed) ^ salt;
        let id = usize::try_from(serial.checked_sub(1)?).ok()?;
        (id < self.users.len()).then_some(id)
    }

    /// Changes the follow state; returns false for an unknown OA openid.
    pub(crate) fn set_following(&mut self, oa_openid: &str, following: bool, now: i64) -> bool {
        let Some(id) = self.by_oa_openid(oa_openid) else {
            return false;
        };
        let user = &mut self.users[id];
        if user.following != following {
            user.following = following;
            if following {
                user.subscribe_time = now;
                self.followers += 1;
            } else {
                self.followers -= 1;
            }
        }
        true
    }

    /// Up to `limit` followers' OA openids after user `after` (exclusive; `None` = from the
    /// start) in seeding order, which never changes, and whether the list ends within this page.
    pub(crate) fn followers_after(
        &self,
        after: Option<UserId>,
        limit: usize,
    ) -> (Vec<String>, bool) {
        let start = after.map_or(0, |id| id + 1);
        let mut followers = self.users[start.min(self.users.len())..]
            .iter()
            .filter(|user| user.following)
            .filter_map(|user| user.ids.oa_openid.as_ref());
        let page: Vec<String> = followers.by_ref().take(limit).cloned().collect();
        let at_end = followers.next().is_none();
        (page, at_end)
    }
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
/// Length of every openid and unionid.
const ID_LEN: usize = 28;
/// Characters after the prefix that encode the serial: 11 base-64 digits hold 64 bits.
const UNIQUE_CHARS: usize = 11;

/// A 28-character WeChat-looking id: `prefix` plus characters derived from `serial`.
///
/// Deterministic (tests are reproducible) and unique: the 11 characters after the prefix encode
/// `mix(serial ^ salt)`, a bijection, so the id decodes back to its serial; the rest is filler
/// so the ids have a realistic length. Consecutive users get unrelated-looking ids.
fn make_id(prefix: &str, salt: u64, serial: u64) -> String {
    let mut id = [0u8; ID_LEN];
    let (head, tail) = id.split_at_mut(prefix.len());
    head.copy_from_slice(prefix.as_bytes());
    let (unique_part, filler_part) = tail.split_at_mut(UNIQUE_CHARS);
    let mut unique = mix(serial ^ salt);
    for byte in unique_part {
        *byte = ALPHABET[(unique & 63) as usize];
        unique >>= 6;
    }
    let mut filler = mix(serial.wrapping_add(salt.rotate_left(17)));
    for byte in filler_part {
        *byte = ALPHABET[(filler & 63) as usize];
        filler = filler.rotate_right(6);
    }
    // Every byte comes from the ASCII prefix or ALPHABET, so nothing is ever replaced here.
    String::from_utf8_lossy(&id).into_owned()
}

const MIX_1: u64 = 0xbf58_476d_1ce4_e5b9;
const MIX_2: u64 = 0x94d0_49bb_1331_11eb;

/// The splitmix64 finaliser: a bijection on u64 that scatters consecutive serials.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(MIX_1);
    z = (z ^ (z >> 27)).wrapping_mul(MIX_2);
    z ^ (z >> 31)
}

/// The inverse of [`mix`].
fn unmix(mut z: u64) -> u64 {
    z = unshift(z, 31).wrapping_mul(inverse(MIX_2));
    z = unshift(z, 27).wrapping_mul(inverse(MIX_1));
    unshift(z, 30)
}

/// Inverts `z ^ (z >> shift)`.
fn unshift(z: u64, shift: u32) -> u64 {
    let mut x = z;
    let mut applied = shift;
    while applied < 64 {
        x = z ^ (x >> shift);
        applied += shift;
    }
    x
}

/// The multiplicative inverse of an odd number modulo 2^64 (Newton's iteration doubles the
/// correct low bits each step: 3 → 6 → … → 96 ≥ 64).
const fn inverse(odd: u64) -> u64 {
    let mut inv = odd; // correct to 3 bits for any odd number
    let mut step = 0;
    while step < 5 {
        inv = inv.wrapping_mul(2u64.wrapping_sub(odd.wrapping_mul(inv)));
        step += 1;
    }
    inv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_realistic_distinct_and_deterministic() {
        let mut dir = UserDirectory::default();
        let a = dir.add(SeedUser::follower(), 0);
        let b = dir.add(SeedUser::follower(), 0);
        let mini = a.mini_openid.as_deref().unwrap();
        let oa = a.oa_openid.as_deref().unwrap();
        let union = a.unionid.as_deref().unwrap();
        assert_eq!((mini.len(), oa.len(), union.len()), (28, 28, 28));
        assert!(mini.starts_with("oMP") && oa.starts_with("oOA") && union.starts_with("oU"));
        assert_ne!(a, b);
        let mut again = UserDirectory::default();
        assert_eq!(again.add(SeedUser::follower(), 0), a);
    }

    #[test]
    fn ids_decode_to_their_user_only() {
        for z in [0, 1, 42, u64::MAX, 0x0123_4567_89ab_cdef] {
            assert_eq!(unmix(mix(z)), z);
        }
        let mut dir = UserDirectory::default();
        let users: Vec<SeededUser> = (0..50).map(|_| dir.add(SeedUser::follower(), 0)).collect();
        let no_mini = dir.add(
            SeedUser {
                has_mini_openid: false,
                ..SeedUser::follower()
            },
            0,
        );
        for (id, user) in users.iter().enumerate() {
            let mini = user.mini_openid.as_deref().unwrap();
            let oa = user.oa_openid.as_deref().unwrap();
            assert_eq!(dir.by_mini_openid(mini), Some(id));
            assert_eq!(dir.by_oa_openid(oa), Some(id));
            // The other account's id never resolves.
            assert_eq!(dir.by_mini_openid(oa), None);
            assert_eq!(dir.by_oa_openid(mini), None);
            let mut forged = mini.to_owned();
            forged.replace_range(27.., if mini.ends_with('A') { "B" } else { "A" });
            assert_eq!(dir.by_mini_openid(&forged), None);
        }
        assert_eq!(no_mini.mini_openid, None);
        for bogus in [
            "",
            "oMP",
            "oMP\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}",
            "oMP___________________________",
        ] {
            assert_eq!(dir.by_mini_openid(bogus), None);
        }
    }
}
