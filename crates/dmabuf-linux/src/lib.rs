//! The real Linux backend: dma-heaps, udmabuf, the dma-buf ioctls and sync_file.
