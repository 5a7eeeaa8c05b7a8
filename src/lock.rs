//! One writer at a time: the lock file shared by the daemon and one-shot commands.
