//! Java's `String.hashCode()`.
//!
//! RocketMQ stores the hash of a message's tag in its ConsumeQueue entry, hashes index keys with it and
//! selects a queue for an ordering key with it. A Java producer and a Tern gateway must pick the same
//! queue for the same key, so this must match the JVM exactly: the hash runs over UTF-16 code units
//! (not bytes, not chars) with wrapping 32-bit arithmetic.

/// `s.hashCode()` as the JVM computes it: `h = 31 * h + c` over UTF-16 code units, wrapping.
pub fn string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// The hash of the concatenation of `parts`, without concatenating them.
pub fn string_hash_parts(parts: &[&str]) -> i32 {
    parts
        .iter()
        .flat_map(|p| p.encode_utf16())
        .fold(0i32, |h, unit| {
            h.wrapping_mul(31).wrapping_add(i32::from(unit))
        })
}

/// `Math.abs(h)`, except that Java leaves `i32::MIN` negative; RocketMQ's index maps that case to
/// 0, which is what this returns.
pub fn abs_hash(h: i32) -> u32 {
    if h == i32::MIN { 0 } else { h.unsigned_abs() }
}

/// `abs_hash(string_hash(s))`.
pub fn abs_string_hash(s: &str) -> u32 {
    abs_hash(string_hash(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values printed by a JVM (OpenJDK 17, `"...".hashCode()`), so a regression in the arithmetic or the
    /// UTF-16 walk fails here rather than as misrouted messages.
    #[test]
    fn matches_known_jvm_values() {
        assert_eq!(string_hash(""), 0);
        assert_eq!(string_hash("a"), 97);
        assert_eq!(string_hash("TagA"), 2598919);
        assert_eq!(string_hash("hello"), 99162322);
        assert_eq!(string_hash("order-42"), 1234255197);
        assert_eq!(string_hash("TopicTest#key"), 85128477);
        assert_eq!(string_hash("negative-key-zz"), -1614302714);
        assert_eq!(string_hash("Java hashCode"), -1630971847);
        assert_eq!(string_hash("polygenelubricants"), i32::MIN);
        // A character outside the BMP is two UTF-16 units: 😀 = U+D83D U+DE00.
        assert_eq!(string_hash("😀"), 1772899);
        assert_eq!(string_hash("é"), 0xE9);
    }

    #[test]
    fn parts_hash_like_their_concatenation() {
        assert_eq!(
            string_hash_parts(&["TopicTest", "#", "key"]),
            string_hash("TopicTest#key")
        );
        assert_eq!(string_hash_parts(&[]), 0);
        assert_eq!(string_hash_parts(&["é", "😀"]), string_hash("é😀"));
    }

    #[test]
    fn abs_maps_min_to_zero() {
        assert_eq!(abs_string_hash("polygenelubricants"), 0);
        assert_eq!(abs_string_hash("order-42"), 1234255197);
        assert_eq!(abs_string_hash("é"), 233);
    }
}
