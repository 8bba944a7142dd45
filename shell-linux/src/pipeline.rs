//! The aggregate, release and cleanup ticks (stub).
