//! DogStatsD sockets: UDP and Unix datagram, read in batches (`recvmmsg`), with the kernel's
//! receive-queue drops counted (`SO_RXQ_OVFL`). Being written.
