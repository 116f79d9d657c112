//! Synchronisation that parks coroutines, not threads (and works from plain threads too).
