//! Per-container statistics for `sgrun stats` and events for `sgrun events`.
