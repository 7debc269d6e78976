//! A simulated memory system for reasoning about DMA cache coherency.
