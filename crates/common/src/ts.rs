//! Timestamps of table data: the version of a row on a table shard is the commit timestamp of
//! the write that made it (docs/transactions.md). Distinct from a Raft log index, which versions
//! meta records: the two are never compared.
//!
//! A [`Ts`] is physical milliseconds (the high 46 bits) and a logical counter (the low 18 bits),
//! so timestamps order as their creation did on the one clock that issues them (the timestamp
//! oracle), and many fit in one millisecond.

use serde::{Deserialize, Serialize};

/// A commit or read timestamp: physical ms ‖ logical counter, compared as one `u64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Ts(pub u64);

impl Ts {
    /// Bits of the logical counter.
    pub const LOGICAL_BITS: u32 = 18;
    /// Below every timestamp a write can have: reading at it sees nothing.
    pub const MIN: Ts = Ts(0);
    /// Above every timestamp: reading at it sees the newest version of everything.
    pub const MAX: Ts = Ts(u64::MAX);

    /// The timestamp of logical tick `logical` in millisecond `physical_ms`. Panics (a bug in
    /// the caller) if either part does not fit.
    pub fn new(physical_ms: u64, logical: u64) -> Ts {
        assert!(physical_ms < 1 << (64 - Self::LOGICAL_BITS), "physical time {physical_ms} ms out of range");
        assert!(logical < 1 << Self::LOGICAL_BITS, "logical tick {logical} out of range");
        Ts((physical_ms << Self::LOGICAL_BITS) | logical)
    }

    pub fn physical_ms(self) -> u64 {
        self.0 >> Self::LOGICAL_BITS
    }

    pub fn logical(self) -> u64 {
        self.0 & ((1 << Self::LOGICAL_BITS) - 1)
    }

    /// The next timestamp (the logical counter carries into the milliseconds).
    pub fn next(self) -> Ts {
        Ts(self.0.checked_add(1).expect("timestamp overflow"))
    }
}

impl std::fmt::Display for Ts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.physical_ms(), self.logical())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip_and_order() {
        let t = Ts::new(1_764_000_000_000, 5);
        assert_eq!((t.physical_ms(), t.logical()), (1_764_000_000_000, 5));
        assert!(Ts::new(10, (1 << Ts::LOGICAL_BITS) - 1) < Ts::new(11, 0));
        assert_eq!(Ts::new(10, (1 << Ts::LOGICAL_BITS) - 1).next(), Ts::new(11, 0));
        assert!(Ts::MIN < t && t < Ts::MAX);
        assert_eq!(t.to_string(), "1764000000000.5");
    }

    #[test]
    #[should_panic(expected = "logical tick")]
    fn a_logical_part_too_large_is_a_bug() {
        Ts::new(1, 1 << Ts::LOGICAL_BITS);
    }
}
