//! The global allocator: mimalloc, called for each allocation the cheapest way it allows.
//!
//! Shared by the `mailcode` binary and the benchmark's floor (`bench/floor`, through `#[path]`),
//! so that the floor stays what mailcode's stack does at the least (docs/benchmarks.md).

/// The `mimalloc` crate's `MiMalloc` asks mimalloc for an aligned block on every allocation;
/// this asks for a plain one whenever a word's alignment suffices, which every block mimalloc
/// hands out has (its size classes are multiples of a word). `bench/callgrind-me` counted 54.1k
/// instructions per `GET /api/me` with `MiMalloc` and 51.7k with this (docs/benchmarks.md).
pub struct Mimalloc;

const WORD: usize = std::mem::size_of::<usize>();

// SAFETY: each method hands the layout's size (and its alignment, when a word's does not
// suffice) to the matching mimalloc function, which returns null on failure, as `GlobalAlloc`
// requires; `mi_free` and `mi_realloc` take any block either kind of call returned.
unsafe impl std::alloc::GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        use libmimalloc_sys as mi;
        if layout.align() <= WORD {
            mi::mi_malloc(layout.size()).cast()
        } else {
            mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        use libmimalloc_sys as mi;
        if layout.align() <= WORD {
            mi::mi_zalloc(layout.size()).cast()
        } else {
            mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: std::alloc::Layout) {
        libmimalloc_sys::mi_free(ptr.cast());
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        use libmimalloc_sys as mi;
        if layout.align() <= WORD {
            mi::mi_realloc(ptr.cast(), new_size).cast()
        } else {
            mi::mi_realloc_aligned(ptr.cast(), new_size, layout.align()).cast()
        }
    }
}
