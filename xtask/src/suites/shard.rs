//! Which shard a test belongs to under `--shard K/N`, and the FNV-1a hash behind it (also the
//! requirement digests of [super::python]). The pytest plugin repeats the same hash in Python, so
//! the harness and the plugin agree on every split without talking to each other.
//!
//! Not here: passing the shard to the runners ([super::pytest], [super::nextest]: nextest splits
//! with its own `--partition hash:K/N`).

/// FNV-1a, 64 bits: stable across builds and platforms, and easy to repeat in Python.
pub(super) struct Fnv(u64);

impl Fnv {
    pub(super) fn new() -> Fnv {
        Fnv(0xcbf29ce484222325)
    }

    pub(super) fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x100000001b3);
        }
    }

    pub(super) fn finish(&self) -> u64 {
        self.0
    }
}

/// The shard (1-based) a test belongs to when the cases are split `count` ways.
pub fn shard_of(test_id: &str, count: u32) -> u32 {
    let mut hash = Fnv::new();
    hash.write(test_id.as_bytes());
    (hash.finish() % u64::from(count.max(1))) as u32 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_stable_and_in_range() {
        // The same FNV-1a as the pytest plugin: fnv1a("a") = 0xaf63dc4c8601ec8c.
        assert_eq!(
            shard_of("a", 1 << 31),
            (0xaf63dc4c8601ec8c_u64 % (1 << 31)) as u32 + 1
        );
        for id in ["x", "y::z", "tests/t.py::test_1"] {
            let shard = shard_of(id, 3);
            assert!((1..=3).contains(&shard));
            assert_eq!(shard, shard_of(id, 3));
        }
    }
}
