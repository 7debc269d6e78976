//! udmabuf's rules (drivers/dma-buf/udmabuf.c): which ranges of which files make a
//! dma-buf, checked in the kernel's order so that a refusal names the rule and the item
//! instead of a bare `EINVAL`.

use crate::data::Seals;
use crate::error::{Error, Result};
use crate::traits::Memfd;

/// One range of a udmabuf: `size` bytes of `memfd` from `offset`
/// (`struct udmabuf_create_item`).
#[derive(Debug)]
pub struct UdmabufItem<'a, M> {
    /// The file whose pages the range takes.
    pub memfd: &'a M,
    /// Page-aligned offset into it.
    pub offset: u64,
    /// Page-aligned length.
    pub size: u64,
}

impl<M> Clone for UdmabufItem<'_, M> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<M> Copy for UdmabufItem<'_, M> {}

/// The driver's limits (its module parameters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdmabufLimits {
    /// `size_limit_mb` in bytes: the largest buffer.
    pub max_size: u64,
    /// `list_limit`: the most items in one `UDMABUF_CREATE_LIST`.
    pub max_items: usize,
}

impl Default for UdmabufLimits {
    /// The driver's defaults: 64 MiB, 1024 items.
    fn default() -> Self {
        UdmabufLimits { max_size: 64 << 20, max_items: 1024 }
    }
}

impl UdmabufLimits {
    /// Checks `items` against every rule the kernel applies, in the kernel's order
    /// (`udmabuf_ioctl_create_list`, then `udmabuf_create`: alignment and the size limit
    /// item by item, emptiness, then `check_memfd_seals` and the file's end item by item),
    /// and returns the buffer's size.
    pub fn check<M: Memfd>(&self, page_size: u64, items: &[UdmabufItem<'_, M>]) -> Result<u64> {
        if items.len() > self.max_items {
            return Err(Error::UdmabufTooManyItems { count: items.len(), limit: self.max_items });
        }
        let mut total = 0u64;
        for (index, item) in items.iter().enumerate() {
            if !item.offset.is_multiple_of(page_size) {
                return Err(Error::UdmabufOffsetNotAligned { index, offset: item.offset, page_size });
            }
            if !item.size.is_multiple_of(page_size) {
                return Err(Error::UdmabufSizeNotAligned { index, size: item.size, page_size });
            }
            total = total.saturating_add(item.size);
            if total > self.max_size {
                return Err(Error::UdmabufTooLarge { size: total, limit: self.max_size });
            }
        }
        if total == 0 {
            return Err(Error::UdmabufEmpty);
        }
        for (index, item) in items.iter().enumerate() {
            // check_memfd_seals: SEALS_WANTED is F_SEAL_SHRINK, SEALS_DENIED
            // F_SEAL_WRITE | F_SEAL_FUTURE_WRITE.
            let Some(seals) = item.memfd.seals()? else {
                return Err(Error::UdmabufNotMemfd { index });
            };
            if !seals.contains(Seals::SHRINK) {
                return Err(Error::UdmabufMissingShrinkSeal { index });
            }
            if seals.contains(Seals::WRITE) {
                return Err(Error::UdmabufWriteSealed { index, seal: "F_SEAL_WRITE" });
            }
            if seals.contains(Seals::FUTURE_WRITE) {
                return Err(Error::UdmabufWriteSealed { index, seal: "F_SEAL_FUTURE_WRITE" });
            }
            let file_size = item.memfd.size()?;
            if item.offset.checked_add(item.size).is_none_or(|end| end > file_size) {
                return Err(Error::UdmabufPastEnd { index, offset: item.offset, size: item.size, file_size });
            }
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::errno::Errno;

    const PAGE: u64 = 4096;

    /// A file as the rules see it: a size and its seals, or no seals at all (not a memfd).
    struct File {
        size: u64,
        seals: Cell<Option<Seals>>,
    }

    impl File {
        fn memfd(size: u64, seals: Seals) -> File {
            File { size, seals: Cell::new(Some(seals)) }
        }
    }

    impl Memfd for File {
        fn size(&self) -> Result<u64> {
            Ok(self.size)
        }
        fn seals(&self) -> Result<Option<Seals>> {
            Ok(self.seals.get())
        }
        fn add_seals(&self, seals: Seals) -> Result<()> {
            self.seals.set(self.seals.get().map(|s| s | seals));
            Ok(())
        }
        fn read_at(&self, _: u64, _: &mut [u8]) -> Result<()> {
            Ok(())
        }
        fn write_at(&self, _: u64, _: &[u8]) -> Result<()> {
            Ok(())
        }
    }

    fn item(memfd: &File, offset: u64, size: u64) -> UdmabufItem<'_, File> {
        UdmabufItem { memfd, offset, size }
    }

    #[test]
    fn a_sealed_page_aligned_range_passes() {
        let m = File::memfd(4 * PAGE, Seals::SHRINK);
        let l = UdmabufLimits::default();
        assert_eq!(l.check(PAGE, &[item(&m, 0, 4 * PAGE)]).ok(), Some(4 * PAGE));
        assert_eq!(l.check(PAGE, &[item(&m, PAGE, 2 * PAGE), item(&m, 0, PAGE)]).ok(), Some(3 * PAGE));
        // Other seals do not matter.
        let grow = File::memfd(PAGE, Seals::SHRINK | Seals::GROW | Seals::SEAL);
        assert!(l.check(PAGE, &[item(&grow, 0, PAGE)]).is_ok());
    }

    /// udmabuf selftest test-1 and test-2: offsets and sizes of whole pages only.
    #[test]
    fn udmabuf_create_refuses_unaligned_items() {
        let m = File::memfd(4 * PAGE, Seals::SHRINK);
        let l = UdmabufLimits::default();
        let e = l.check(PAGE, &[item(&m, PAGE / 2, PAGE)]).expect_err("offset");
        assert!(matches!(e, Error::UdmabufOffsetNotAligned { index: 0, .. }));
        assert_eq!(e.errno(), Some(Errno::EINVAL));
        assert!(matches!(l.check(PAGE, &[item(&m, 0, PAGE / 2)]), Err(Error::UdmabufSizeNotAligned { index: 0, .. })));
        assert!(matches!(
            l.check(PAGE, &[item(&m, 0, PAGE), item(&m, 0, 3)]),
            Err(Error::UdmabufSizeNotAligned { index: 1, .. })
        ));
        assert!(matches!(l.check::<File>(PAGE, &[]), Err(Error::UdmabufEmpty)));
        assert!(matches!(l.check(PAGE, &[item(&m, 0, 0)]), Err(Error::UdmabufEmpty)));
    }

    /// check_memfd_seals: F_SEAL_SHRINK wanted, F_SEAL_WRITE and F_SEAL_FUTURE_WRITE
    /// denied (EINVAL); a file that is not a memfd is EBADFD.
    #[test]
    fn check_memfd_seals_wants_shrink_and_denies_the_write_seals() {
        let l = UdmabufLimits::default();
        let unsealed = File::memfd(PAGE, Seals::NONE);
        assert!(matches!(
            l.check(PAGE, &[item(&unsealed, 0, PAGE)]),
            Err(Error::UdmabufMissingShrinkSeal { index: 0 })
        ));
        for (seal, name) in [(Seals::WRITE, "F_SEAL_WRITE"), (Seals::FUTURE_WRITE, "F_SEAL_FUTURE_WRITE")] {
            let m = File::memfd(PAGE, Seals::SHRINK | seal);
            let e = l.check(PAGE, &[item(&m, 0, PAGE)]).expect_err("write-sealed");
            assert!(matches!(e, Error::UdmabufWriteSealed { index: 0, seal } if seal == name), "{e:?}");
            assert_eq!(e.errno(), Some(Errno::EINVAL));
        }
        let file = File { size: PAGE, seals: Cell::new(None) };
        let ok = File::memfd(PAGE, Seals::SHRINK);
        let e = l.check(PAGE, &[item(&ok, 0, PAGE), item(&file, 0, PAGE)]).expect_err("not a memfd");
        assert!(matches!(e, Error::UdmabufNotMemfd { index: 1 }));
        assert_eq!(e.errno(), Some(Errno::EBADFD));
        // Alignment is checked over every item before any file is looked at.
        assert!(matches!(
            l.check(PAGE, &[item(&file, 0, PAGE), item(&ok, 1, PAGE)]),
            Err(Error::UdmabufOffsetNotAligned { index: 1, .. })
        ));
    }

    #[test]
    fn ranges_past_the_end_and_over_the_limits_are_refused() {
        let m = File::memfd(2 * PAGE, Seals::SHRINK);
        let l = UdmabufLimits { max_size: 4 * PAGE, max_items: 2 };
        assert!(matches!(l.check(PAGE, &[item(&m, PAGE, 2 * PAGE)]), Err(Error::UdmabufPastEnd { index: 0, .. })));
        assert!(matches!(
            l.check(PAGE, &[item(&m, u64::MAX - PAGE + 1, PAGE)]),
            Err(Error::UdmabufPastEnd { index: 0, .. })
        ));
        assert!(matches!(l.check(PAGE, &[item(&m, 0, 8 * PAGE)]), Err(Error::UdmabufTooLarge { .. })));
        let three = [item(&m, 0, PAGE), item(&m, 0, PAGE), item(&m, 0, PAGE)];
        assert!(matches!(l.check(PAGE, &three), Err(Error::UdmabufTooManyItems { count: 3, limit: 2 })));
        // Adding the seal later makes the same memfd acceptable.
        let late = File::memfd(PAGE, Seals::NONE);
        assert!(l.check(PAGE, &[item(&late, 0, PAGE)]).is_err());
        late.add_seals(Seals::SHRINK).expect("seal");
        assert!(l.check(PAGE, &[item(&late, 0, PAGE)]).is_ok());
    }
}
