//! Embedded store (stub: the store helper replaces this file).
