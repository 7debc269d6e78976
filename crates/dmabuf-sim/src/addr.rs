//! Address spaces and ranges.
//!
//! Three address spaces never mix: [`PhysAddr`] is where bytes live in a memory region,
//! [`BusAddr`] is what a DMA master drives on its bus (equal to the physical address for a
//! device without an IOMMU), and [`Iova`] is an address in one device's IOMMU space. Each
//! is a newtype so that handing a physical address to a device, or an IOVA to the CPU, is
//! a type error rather than a corrupted frame.

use std::fmt;

/// The size of a page, the unit of CPU mappings, IOMMU mappings and the sparse store.
pub const PAGE_SIZE: u64 = 4096;

macro_rules! address {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[derive(serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// The address as a number, for arithmetic the type does not offer.
            pub const fn raw(self) -> u64 {
                self.0
            }

            /// `self + off`, or `None` on overflow.
            pub const fn checked_add(self, off: u64) -> Option<Self> {
                match self.0.checked_add(off) {
                    Some(a) => Some(Self(a)),
                    None => None,
                }
            }

            /// `self + off`. Callers have validated the range this address belongs to.
            pub const fn add(self, off: u64) -> Self {
                Self(self.0 + off)
            }

            /// The distance from `base` to `self`; `self` must not be below `base`.
            pub const fn offset_from(self, base: Self) -> u64 {
                self.0 - base.0
            }

            /// Rounds down to a multiple of `align` (a power of two).
            pub const fn align_down(self, align: u64) -> Self {
                Self(self.0 & !(align - 1))
            }

            /// Whether the address is a multiple of `align` (a power of two).
            pub const fn is_aligned(self, align: u64) -> bool {
                self.0 & (align - 1) == 0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, ":{:#x}"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }
    };
}

address!(
    /// A physical address: where bytes live in a memory region.
    PhysAddr,
    "phys"
);
address!(
    /// A bus (DMA) address: what a device drives. Behind an IOMMU it is an IOVA; without
    /// one it equals the physical address.
    BusAddr,
    "bus"
);
address!(
    /// An I/O virtual address in one device's IOMMU space.
    Iova,
    "iova"
);

impl From<Iova> for BusAddr {
    fn from(iova: Iova) -> Self {
        BusAddr(iova.0)
    }
}

/// A half-open range `[start, start + len)` in one address space.
#[derive(Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Range<A> {
    /// The first address.
    pub start: A,
    /// The length in bytes.
    pub len: u64,
}

/// A range of physical addresses.
pub type PhysRange = Range<PhysAddr>;
/// A range of bus addresses.
pub type BusRange = Range<BusAddr>;

macro_rules! range_impl {
    ($a:ident) => {
        impl Range<$a> {
            /// A range, or `None` if `start + len` overflows.
            pub const fn new(start: $a, len: u64) -> Option<Self> {
                match start.0.checked_add(len) {
                    Some(_) => Some(Self { start, len }),
                    None => None,
                }
            }

            /// The range `[start, end)`, or `None` if `end < start`.
            pub const fn from_bounds(start: $a, end: $a) -> Option<Self> {
                if end.0 < start.0 { None } else { Some(Self { start, len: end.0 - start.0 }) }
            }

            /// One past the last address.
            pub const fn end(&self) -> $a {
                $a(self.start.0 + self.len)
            }

            /// Whether the range holds no byte.
            pub const fn is_empty(&self) -> bool {
                self.len == 0
            }

            /// Whether `addr` lies inside the range.
            pub const fn contains(&self, addr: $a) -> bool {
                addr.0 >= self.start.0 && addr.0 < self.start.0 + self.len
            }

            /// Whether `other` lies entirely inside the range.
            pub const fn covers(&self, other: &Self) -> bool {
                other.start.0 >= self.start.0 && other.start.0 + other.len <= self.start.0 + self.len
            }

            /// Whether the two ranges share a byte.
            pub const fn overlaps(&self, other: &Self) -> bool {
                self.start.0 < other.start.0 + other.len && other.start.0 < self.start.0 + self.len
            }

            /// The bytes both ranges hold, if any.
            pub fn intersect(&self, other: &Self) -> Option<Self> {
                let s = self.start.0.max(other.start.0);
                let e = (self.start.0 + self.len).min(other.start.0 + other.len);
                (s < e).then(|| Self { start: $a(s), len: e - s })
            }

            /// The range rounded out to whole units of `align` (a power of two): the lines a
            /// maintenance operation on this range touches.
            pub const fn align_out(&self, align: u64) -> Self {
                let s = self.start.0 & !(align - 1);
                let e = (self.start.0 + self.len + align - 1) & !(align - 1);
                Self { start: $a(s), len: e - s }
            }

            /// The number of `align`-sized units the range touches.
            pub const fn units(&self, align: u64) -> u64 {
                if self.len == 0 { 0 } else { self.align_out(align).len / align }
            }
        }

        impl fmt::Debug for Range<$a> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}..{:#x}", self.start, self.start.0 + self.len)
            }
        }

        impl fmt::Display for Range<$a> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "[{:#x}, {:#x})", self.start.0, self.start.0 + self.len)
            }
        }
    };
}

range_impl!(PhysAddr);
range_impl!(BusAddr);
range_impl!(Iova);

/// Splits `[start, start + len)` into pieces that do not cross a page boundary, yielding
/// `(address, offset into the whole range, length)`.
pub(crate) fn page_chunks(start: u64, len: u64) -> impl Iterator<Item = (u64, usize, usize)> {
    let mut addr = start;
    let end = start + len;
    let mut off = 0usize;
    std::iter::from_fn(move || {
        if addr >= end {
            return None;
        }
        let page_end = (addr | (PAGE_SIZE - 1)) + 1;
        let n = (end.min(page_end) - addr) as usize;
        let item = (addr, off, n);
        addr += n as u64;
        off += n;
        Some(item)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn align_out_rounds_to_whole_lines() {
        let r = PhysRange::new(PhysAddr(0x1010), 0x30).unwrap();
        let a = r.align_out(64);
        assert_eq!(a.start, PhysAddr(0x1000));
        assert_eq!(a.len, 64);
        assert_eq!(r.units(64), 1);
        let r = PhysRange::new(PhysAddr(0x103f), 2).unwrap();
        assert_eq!(r.units(64), 2);
        assert_eq!(PhysRange::new(PhysAddr(0), 0).unwrap().units(64), 0);
    }

    #[test]
    fn overflowing_range_is_refused() {
        assert!(PhysRange::new(PhysAddr(u64::MAX - 1), 2).is_none());
        assert!(PhysRange::from_bounds(PhysAddr(10), PhysAddr(9)).is_none());
    }

    #[test]
    fn overlap_and_intersection() {
        let a = PhysRange::new(PhysAddr(0), 100).unwrap();
        let b = PhysRange::new(PhysAddr(99), 10).unwrap();
        let c = PhysRange::new(PhysAddr(100), 10).unwrap();
        assert!(a.overlaps(&b));
        assert!(!a.overlaps(&c));
        assert_eq!(a.intersect(&b), PhysRange::new(PhysAddr(99), 1));
        assert_eq!(a.intersect(&c), None);
        assert!(a.covers(&PhysRange::new(PhysAddr(10), 90).unwrap()));
    }

    #[test]
    fn page_chunks_split_at_page_boundaries() {
        let v: Vec<_> = page_chunks(4000, 5000).collect();
        assert_eq!(v, vec![(4000, 0, 96), (4096, 96, 4096), (8192, 4192, 808)]);
        assert_eq!(page_chunks(0, 0).count(), 0);
    }
}
